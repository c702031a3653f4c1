#include "spry/headers.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using spry::Headers;

namespace {

std::vector<std::pair<std::string, std::string>> fieldsOf(const Headers& h) {
  return {h.begin(), h.end()};
}

using Fields = std::vector<std::pair<std::string, std::string>>;

// The first field's name: the start of the list's buffer, which tells
// whether two lists (or one list over time) use the same storage.
const char* bufferStart(const Headers& h) {
  return (*h.begin()).first.data();
}

std::string numbered(int i) {
  std::string name = "F";
  name += std::to_string(i);
  return name;
}

}  // namespace

TEST_CASE("Headers: add keeps order and repeats; lookups ignore case") {
  Headers h;
  CHECK(h.empty());
  CHECK(h.begin() == h.end());
  h.add("Content-Type", "text/plain");
  h.add("Set-Cookie", "a=1");
  h.add("set-cookie", "b=2");
  CHECK(h.size() == 3);
  CHECK_FALSE(h.empty());
  CHECK(h.get("content-type") == "text/plain");
  CHECK(h.get("SET-COOKIE") == "a=1");
  CHECK(h.getAll("Set-Cookie") == std::vector<std::string_view>{"a=1", "b=2"});
  CHECK(h.has("CONTENT-TYPE"));
  CHECK_FALSE(h.has("Content-Length"));
  CHECK(h.get("Content-Length").empty());
  CHECK(h.getAll("Content-Length").empty());
  CHECK(fieldsOf(h) ==
        Fields{{"Content-Type", "text/plain"}, {"Set-Cookie", "a=1"}, {"set-cookie", "b=2"}});
}

TEST_CASE("Headers: set replaces every field of the name with one, placed last") {
  Headers h;
  h.set("Server", "spry");  // absent: appends
  CHECK(fieldsOf(h) == Fields{{"Server", "spry"}});
  h.add("X-A", "1");
  h.add("x-a", "2");
  h.add("Date", "today");
  h.set("X-a", "3");
  CHECK(fieldsOf(h) == Fields{{"Server", "spry"}, {"Date", "today"}, {"X-a", "3"}});
  h.set("server", "other");
  CHECK(fieldsOf(h) == Fields{{"Date", "today"}, {"X-a", "3"}, {"server", "other"}});
  CHECK(h.size() == 3);
}

TEST_CASE("Headers: set and remove accept views into the list itself") {
  Headers h;
  h.add("A", "short");
  h.add("B", std::string(100, 'b'));
  h.add("A", "again");
  h.set("C", h.get("A"));  // short value: lives inside the field
  h.set("D", h.get("B"));  // long value: on the heap
  CHECK(h.get("C") == "short");
  CHECK(h.get("D") == std::string(100, 'b'));
  h.set((*h.begin()).first, h.get("C"));  // name and value both from the list
  CHECK(fieldsOf(h) == Fields{{"B", std::string(100, 'b')},
                              {"C", "short"},
                              {"D", std::string(100, 'b')},
                              {"A", "short"}});
  CHECK(h.remove((*h.begin()).first) == 1);  // the name is a view into the list
  CHECK(fieldsOf(h) == Fields{{"C", "short"}, {"D", std::string(100, 'b')}, {"A", "short"}});
}

TEST_CASE("Headers: a name viewed in a later field survives the gaps closing before it") {
  Headers h;
  h.add("X-Gone", std::string(40, 'g'));
  h.add("Keep", "1");
  h.add("x-gone", "2");
  h.add("Tail", std::string(30, 't'));
  const std::string_view later = h.at(2).first;  // "x-gone", after a field it removes
  CHECK(h.remove(later) == 2);
  CHECK(fieldsOf(h) == Fields{{"Keep", "1"}, {"Tail", std::string(30, 't')}});
  h.add("X-Gone", "3");
  h.set(h.at(1).first, h.at(2).second);  // Tail := "3", moved last over its old place
  CHECK(fieldsOf(h) == Fields{{"Keep", "1"}, {"X-Gone", "3"}, {"Tail", "3"}});
}

TEST_CASE("Headers: remove keeps the order of the others") {
  Headers h;
  h.add("A", "1");
  h.add("B", "2");
  h.add("a", "3");
  h.add("C", "4");
  h.add("A", "5");
  CHECK(h.remove("a") == 3);
  CHECK(fieldsOf(h) == Fields{{"B", "2"}, {"C", "4"}});
  CHECK(h.remove("A") == 0);
  CHECK(h.size() == 2);
  CHECK_FALSE(h.has("A"));
}

TEST_CASE("Headers: a cleared list reuses its buffer; removed bytes are reclaimed") {
  Headers h;
  h.add("X-Long", std::string(200, 'v'));
  h.add("X-Other", "1");
  const char* start = bufferStart(h);

  CHECK(h.remove("X-Long") == 1);
  CHECK(fieldsOf(h) == Fields{{"X-Other", "1"}});
  h.add("X-New", std::string(150, 'n'));
  CHECK(fieldsOf(h) == Fields{{"X-Other", "1"}, {"X-New", std::string(150, 'n')}});

  h.clear();
  CHECK(h.empty());
  CHECK(h.begin() == h.end());
  CHECK_FALSE(h.has("X-New"));
  h.add("A", "1");
  h.add("B", std::string(180, 'b'));
  CHECK(fieldsOf(h) == Fields{{"A", "1"}, {"B", std::string(180, 'b')}});
  CHECK(bufferStart(h) == start);  // the same buffer, not a new one

  // set() in a loop drops the old bytes now and then: the list stays small.
  for (int i = 0; i < 100000; ++i) h.set("X-Counter", std::string(100, char('a' + i % 26)));
  CHECK(h.size() == 3);
  CHECK(h.get("X-Counter") == std::string(100, char('a' + 99999 % 26)));
  CHECK(h.get("B") == std::string(180, 'b'));
  const char* low = h.get("X-Counter").data();
  const char* high = low;
  for (const auto& [name, value] : h) {
    low = std::min(low, name.data());
    high = std::max(high, value.data() + value.size());
  }
  CHECK(high - low < 4096);
}

TEST_CASE("Headers: copies hold the live fields only; moves leave the source empty") {
  Headers a;
  a.add("A", "1");
  a.add("B", std::string(300, 'b'));
  a.add("C", "3");
  a.remove("C");  // a spare field, not to be copied

  Headers b(a);
  CHECK(fieldsOf(b) == fieldsOf(a));
  CHECK(b.size() == 2);
  b.add("D", "4");
  CHECK(a.size() == 2);  // independent

  Headers c;
  c.add("Z", "26");
  c.add("Y", "25");
  c.add("X", "24");
  c = a;
  CHECK(fieldsOf(c) == Fields{{"A", "1"}, {"B", std::string(300, 'b')}});
  const Headers& self = c;  // through a reference: compilers warn about `c = c`
  c = self;                 // self-assignment is harmless
  CHECK(c.size() == 2);

  Headers empty;
  c = empty;
  CHECK(c.empty());

  const char* buffer = a.get("B").data();
  Headers d(std::move(a));
  CHECK(fieldsOf(d) == Fields{{"A", "1"}, {"B", std::string(300, 'b')}});
  CHECK(d.get("B").data() == buffer);  // moved, not copied
  CHECK(a.empty());                    // NOLINT(bugprone-use-after-move)
  CHECK(a.begin() == a.end());
  a.add("Again", "yes");  // the moved-from list is usable
  CHECK(fieldsOf(a) == Fields{{"Again", "yes"}});

  Headers e;
  e.add("Old", "x");
  e = std::move(d);
  CHECK(fieldsOf(e) == Fields{{"A", "1"}, {"B", std::string(300, 'b')}});
  CHECK(d.empty());  // NOLINT(bugprone-use-after-move)
  d.set("New", "y");
  CHECK(fieldsOf(d) == Fields{{"New", "y"}});
}

TEST_CASE("Headers: long names and values round-trip") {
  const std::string name = std::string("X-").append(5000, 'N');
  const std::string value(70000, 'V');
  Headers h;
  for (int i = 0; i < 40; ++i) h.add(numbered(i), std::to_string(i));
  h.add(name, value);
  CHECK(h.get(name) == value);
  CHECK(h.size() == 41);
  Headers copy = h;
  CHECK(copy.get(name) == value);
  h.set(name, "short");
  CHECK(h.get(name) == "short");
  h.clear();
  h.add("Tiny", "t");
  h.add(name, value);
  CHECK(h.get(name) == value);
  CHECK(h.get("Tiny") == "t");
}

TEST_CASE("Headers: a destroyed list's storage serves the next list on the thread") {
  // A fresh thread: its pool holds nothing from other tests.
  bool reused = false;
  bool reusedAfterMoveAssign = false;
  bool trimmedRoundTrip = false;
  std::thread([&] {
    const char* buffer = nullptr;
    {
      Headers a;
      a.add("X-Long", std::string(100, 'v'));
      a.add("X-Two", "2");
      a.add("X-Three", "3");
      buffer = bufferStart(a);
    }
    Headers b;  // takes a's buffers
    b.add("X-Other", std::string(90, 'w'));
    reused = bufferStart(b) == buffer && fieldsOf(b) == Fields{{"X-Other", std::string(90, 'w')}};

    Headers c;
    c.add("C", std::string(120, 'c'));
    const char* cBuffer = bufferStart(c);
    c = Headers();  // move-assigned over: its storage goes to the pool
    Headers d;
    d.add("D", std::string(110, 'd'));
    reusedAfterMoveAssign = bufferStart(d) == cBuffer && c.empty();

    // Oversized lists are trimmed on the way into the pool; what comes back works.
    {
      Headers big;
      for (int i = 0; i < 100; ++i) big.add(numbered(i), std::string(4096, 'x'));
    }
    for (int round = 0; round < 40; ++round) {
      std::vector<Headers> lists(40);
      for (auto& h : lists) {
        h.add("Content-Type", "text/plain; charset=utf-8");
        h.add("Server", "spry");
      }
    }
    Headers e;
    e.add("Content-Type", "text/plain; charset=utf-8");
    e.set("Server", "spry");
    trimmedRoundTrip =
        fieldsOf(e) == Fields{{"Content-Type", "text/plain; charset=utf-8"}, {"Server", "spry"}};
  }).join();
  CHECK(reused);
  CHECK(reusedAfterMoveAssign);
  CHECK(trimmedRoundTrip);
}

TEST_CASE("Headers: a list destroyed after the thread's pool does not touch it") {
  // A thread_local Headers constructed before the pool is destroyed after it
  // at thread exit (reverse order of construction).
  bool ran = false;
  std::thread([&] {
    thread_local Headers early;
    early.add("X-First", std::string(64, 'f'));  // creates the pool after `early`
    Headers other;
    other.add("X-Second", "2");
    ran = early.size() == 1;
  }).join();
  CHECK(ran);
}
