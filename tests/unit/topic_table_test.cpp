#include "pubsub.h"

#include <doctest/doctest.h>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ws/frame_writer.h"

using namespace spry::detail;

namespace {

// A subscriber that records what it receives (in a shared log too, for the
// order across subscribers) and can run an action from inside deliver().
struct FakeSubscriber {
  explicit FakeSubscriber(std::string n = {}, std::vector<std::string>* l = nullptr)
      : name(std::move(n)), log(l) {}

  std::string name;
  std::vector<std::string>* log = nullptr;  // "name:payload", in delivery order
  std::vector<std::string> received;        // the frames' payloads
  bool accept = true;                       // what deliver() returns
  std::function<void(const SharedFrame&)> onDeliver;

  bool deliver(PublishFrames& frames) {
    const SharedFrame& frame = frames.plain();
    // makeSharedFrame's frames here are short text frames: a 2-byte header.
    REQUIRE(frame);
    REQUIRE(frame->size() >= 2);
    std::string payload = frame->substr(2);
    received.push_back(payload);
    if (log) log->push_back(name + ":" + payload);
    if (onDeliver) onDeliver(frame);
    return accept;
  }
};

using Table = BasicTopicTable<FakeSubscriber>;
using TopicMap =
    std::unordered_map<std::string, std::vector<FakeSubscriber*>, StringHash, std::equal_to<>>;

// Read access to the table's private state (its topics and the topics with
// null slots), so the tests can see that compaction erases what it should.
// An explicit instantiation may name private members; the friend function it
// defines hands the member pointers out.
struct TopicsTag {
  using type = TopicMap Table::*;
  friend type member(TopicsTag);
};
struct HolesTag {
  using type = std::vector<std::string> Table::*;
  friend type member(HolesTag);
};
template <class Tag, typename Tag::type M>
struct Expose {
  friend typename Tag::type member(Tag) { return M; }
};
template struct Expose<TopicsTag, &Table::topics_>;
template struct Expose<HolesTag, &Table::holes_>;

const TopicMap& topicsOf(const Table& t) {
  return t.*member(TopicsTag{});
}
const std::vector<std::string>& holesOf(const Table& t) {
  return t.*member(HolesTag{});
}
bool hasTopic(const Table& t, std::string_view topic) {
  return topicsOf(t).find(topic) != topicsOf(t).end();
}
// Slots in a topic's list, null ones included; 0 when the topic is gone.
std::size_t slots(const Table& t, std::string_view topic) {
  auto it = topicsOf(t).find(topic);
  return it == topicsOf(t).end() ? 0 : it->second.size();
}
std::size_t nullSlots(const Table& t, std::string_view topic) {
  auto it = topicsOf(t).find(topic);
  if (it == topicsOf(t).end()) return 0;
  std::size_t n = 0;
  for (auto* s : it->second) n += s == nullptr ? 1 : 0;
  return n;
}

SharedFrame frame(std::string_view payload) {
  return makeSharedFrame(WsOpcode::kText, payload);
}

using Strings = std::vector<std::string>;

}  // namespace

TEST_CASE("subscribe and unsubscribe report whether anything changed") {
  Table t;
  FakeSubscriber a{"a"}, b{"b"};

  CHECK(t.subscribe(&a, "news"));
  CHECK_FALSE(t.subscribe(&a, "news"));  // duplicate
  CHECK(t.subscribe(&b, "news"));
  CHECK(t.subscribe(&a, "sport"));  // the same subscriber on another topic
  CHECK(slots(t, "news") == 2);
  CHECK(slots(t, "sport") == 1);

  CHECK_FALSE(t.unsubscribe(&b, "sport"));    // not subscribed to it
  CHECK_FALSE(t.unsubscribe(&a, "weather"));  // no such topic
  CHECK_FALSE(hasTopic(t, "weather"));        // not made by the failed calls

  CHECK(t.unsubscribe(&a, "news"));
  CHECK_FALSE(t.unsubscribe(&a, "news"));  // already gone
  CHECK(slots(t, "news") == 1);

  // The duplicate check still holds after a swap-remove.
  CHECK_FALSE(t.subscribe(&b, "news"));
  CHECK(t.subscribe(&a, "news"));
  CHECK(slots(t, "news") == 2);

  // A topic is erased with its last subscriber.
  CHECK(t.unsubscribe(&a, "news"));
  CHECK(t.unsubscribe(&b, "news"));
  CHECK_FALSE(hasTopic(t, "news"));
  CHECK(t.unsubscribe(&a, "sport"));
  CHECK(topicsOf(t).empty());
  CHECK(t.deliver("news", frame("x"), nullptr) == 0);
  CHECK(a.received.empty());
  CHECK(b.received.empty());

  // And can be made again.
  CHECK(t.subscribe(&b, "news"));
  CHECK(t.deliver("news", frame("y"), nullptr) == 1);
  CHECK(b.received == Strings{"y"});
}

TEST_CASE("deliver reaches every subscriber but skip and counts the ones that took it") {
  Strings log;
  FakeSubscriber a{"a", &log}, b{"b", &log}, c{"c", &log}, d{"d", &log};
  Table t;
  for (auto* s : {&a, &b, &c, &d}) REQUIRE(t.subscribe(s, "t"));
  FakeSubscriber other{"other", &log};
  REQUIRE(t.subscribe(&other, "elsewhere"));

  SUBCASE("all take it") {
    CHECK(t.deliver("t", frame("1"), nullptr) == 4);
    // Subscription order (nothing was removed yet).
    CHECK(log == Strings{"a:1", "b:1", "c:1", "d:1"});
  }
  SUBCASE("skip") {
    CHECK(t.deliver("t", frame("1"), &c) == 3);
    CHECK(log == Strings{"a:1", "b:1", "d:1"});
    CHECK(c.received.empty());
    // Skipping one that is not subscribed skips nobody.
    log.clear();
    CHECK(t.deliver("t", frame("2"), &other) == 4);
    CHECK(log == Strings{"a:2", "b:2", "c:2", "d:2"});
  }
  SUBCASE("refusals are not counted but still delivered") {
    b.accept = false;
    d.accept = false;
    CHECK(t.deliver("t", frame("1"), nullptr) == 2);
    CHECK(log == Strings{"a:1", "b:1", "c:1", "d:1"});
    CHECK(t.deliver("t", frame("2"), &a) == 1);  // only c counts
    CHECK(b.received == Strings{"1", "2"});
  }
  SUBCASE("unknown topic") {
    CHECK(t.deliver("nobody", frame("1"), nullptr) == 0);
    CHECK(log.empty());
  }
  // The frame itself is passed through, shared, not copied.
  SUBCASE("the same frame object") {
    auto f = frame("shared");
    const std::string* seen = nullptr;
    b.onDeliver = [&](const SharedFrame& g) { seen = g.get(); };
    CHECK(t.deliver("t", f, nullptr) == 4);
    CHECK(seen == f.get());
    CHECK(f.use_count() == 1);  // nobody kept a reference
  }
  CHECK(other.received.empty());
}

TEST_CASE("a subscriber unsubscribing itself during delivery") {
  Strings log;
  FakeSubscriber a{"a", &log}, b{"b", &log}, c{"c", &log};
  Table t;
  for (auto* s : {&a, &b, &c}) REQUIRE(t.subscribe(s, "t"));

  bool result = false;
  b.onDeliver = [&](const SharedFrame&) {
    result = t.unsubscribe(&b, "t");
    // A null hole, not a removal: the list being iterated keeps its size.
    CHECK(slots(t, "t") == 3);
    CHECK(nullSlots(t, "t") == 1);
    CHECK_FALSE(t.unsubscribe(&b, "t"));  // already gone
    CHECK_FALSE(t.subscribe(&c, "t"));    // c is still there
  };
  CHECK(t.deliver("t", frame("1"), nullptr) == 3);  // b took this one
  CHECK(result);
  CHECK(log == Strings{"a:1", "b:1", "c:1"});
  // Compacted after the delivery.
  CHECK(slots(t, "t") == 2);
  CHECK(nullSlots(t, "t") == 0);
  CHECK(holesOf(t).empty());

  log.clear();
  CHECK(t.deliver("t", frame("2"), nullptr) == 2);
  CHECK(log == Strings{"a:2", "c:2"});
  CHECK(b.received == Strings{"1"});
}

TEST_CASE("a subscriber unsubscribing others during delivery") {
  Strings log;
  FakeSubscriber a{"a", &log}, b{"b", &log}, c{"c", &log}, d{"d", &log};
  Table t;
  for (auto* s : {&a, &b, &c, &d}) REQUIRE(t.subscribe(s, "t"));

  SUBCASE("one not yet reached is not delivered to") {
    b.onDeliver = [&](const SharedFrame&) { CHECK(t.unsubscribe(&d, "t")); };
    CHECK(t.deliver("t", frame("1"), nullptr) == 3);
    CHECK(log == Strings{"a:1", "b:1", "c:1"});
    CHECK(d.received.empty());
    CHECK(slots(t, "t") == 3);
    b.onDeliver = nullptr;
    log.clear();
    CHECK(t.deliver("t", frame("2"), nullptr) == 3);
    CHECK(log.size() == 3);
    CHECK(d.received.empty());
  }
  SUBCASE("one already reached") {
    c.onDeliver = [&](const SharedFrame&) { CHECK(t.unsubscribe(&a, "t")); };
    CHECK(t.deliver("t", frame("1"), nullptr) == 4);
    CHECK(log == Strings{"a:1", "b:1", "c:1", "d:1"});
    CHECK(slots(t, "t") == 3);
    c.onDeliver = nullptr;
    log.clear();
    CHECK(t.deliver("t", frame("2"), nullptr) == 3);
    CHECK(a.received == Strings{"1"});
    CHECK(b.received == Strings{"1", "2"});
    CHECK(c.received == Strings{"1", "2"});
    CHECK(d.received == Strings{"1", "2"});
  }
  SUBCASE("everyone, so the topic is erased afterwards") {
    a.onDeliver = [&](const SharedFrame&) {
      for (auto* s : {&d, &c, &b, &a}) CHECK(t.unsubscribe(s, "t"));
      CHECK(hasTopic(t, "t"));  // never erased during a delivery
      CHECK(nullSlots(t, "t") == 4);
      CHECK(t.deliver("t", frame("inner"), nullptr) == 0);  // all holes
      CHECK(holesOf(t) == Strings{"t"});                    // listed once
    };
    CHECK(t.deliver("t", frame("1"), nullptr) == 1);
    CHECK(log == Strings{"a:1"});
    CHECK_FALSE(hasTopic(t, "t"));
    CHECK(topicsOf(t).empty());
    CHECK(holesOf(t).empty());
    CHECK(t.deliver("t", frame("2"), nullptr) == 0);
    CHECK(log == Strings{"a:1"});
    // Subscribing again makes a fresh topic.
    CHECK(t.subscribe(&b, "t"));
    CHECK(t.deliver("t", frame("3"), nullptr) == 1);
    CHECK(b.received == Strings{"3"});
  }
  SUBCASE("from another topic, which is compacted too") {
    FakeSubscriber x{"x", &log}, y{"y", &log};
    REQUIRE(t.subscribe(&x, "u"));
    REQUIRE(t.subscribe(&y, "u"));
    REQUIRE(t.subscribe(&y, "v"));
    a.onDeliver = [&](const SharedFrame&) {
      CHECK(t.unsubscribe(&x, "u"));
      CHECK(t.unsubscribe(&y, "u"));
      CHECK(t.unsubscribe(&y, "v"));
      CHECK(hasTopic(t, "u"));
      CHECK(hasTopic(t, "v"));
    };
    CHECK(t.deliver("t", frame("1"), nullptr) == 4);
    CHECK_FALSE(hasTopic(t, "u"));
    CHECK_FALSE(hasTopic(t, "v"));
    CHECK(slots(t, "t") == 4);
    CHECK(topicsOf(t).size() == 1);
  }
}

TEST_CASE("unsubscribe and subscribe again during delivery") {
  Strings log;
  FakeSubscriber a{"a", &log}, b{"b", &log}, c{"c", &log};
  Table t;
  for (auto* s : {&a, &b, &c}) REQUIRE(t.subscribe(s, "t"));
  // a drops c and takes it back: c's old slot is a hole, its new one is
  // past the delivery's end, so c misses this message but not the next.
  a.onDeliver = [&](const SharedFrame&) {
    CHECK(t.unsubscribe(&c, "t"));
    CHECK(t.subscribe(&c, "t"));
    CHECK_FALSE(t.subscribe(&c, "t"));
    CHECK(slots(t, "t") == 4);
  };
  CHECK(t.deliver("t", frame("1"), nullptr) == 2);
  CHECK(log == Strings{"a:1", "b:1"});
  CHECK(slots(t, "t") == 3);
  CHECK(nullSlots(t, "t") == 0);
  a.onDeliver = nullptr;
  log.clear();
  CHECK(t.deliver("t", frame("2"), nullptr) == 3);
  CHECK(c.received == Strings{"2"});
  CHECK(a.received == Strings{"1", "2"});
  CHECK(b.received == Strings{"1", "2"});
}

TEST_CASE("a subscriber added during delivery gets the next message only") {
  Strings log;
  FakeSubscriber a{"a", &log}, b{"b", &log};
  std::vector<FakeSubscriber> late(20);
  for (std::size_t i = 0; i < late.size(); ++i) {
    late[i].name = "late" + std::to_string(i);
    late[i].log = &log;
  }
  Table t;
  REQUIRE(t.subscribe(&a, "t"));
  REQUIRE(t.subscribe(&b, "t"));
  int calls = 0;
  a.onDeliver = [&](const SharedFrame&) {
    if (calls++ > 0) return;
    // Enough to make the vector reallocate under the running delivery.
    for (auto& s : late) CHECK(t.subscribe(&s, "t"));
    // And a new topic: the map may rehash while "t" is iterated.
    for (int i = 0; i < 100; ++i) CHECK(t.subscribe(&a, "other" + std::to_string(i)));
  };
  CHECK(t.deliver("t", frame("1"), nullptr) == 2);
  CHECK(log == Strings{"a:1", "b:1"});
  for (auto& s : late) CHECK(s.received.empty());

  log.clear();
  CHECK(t.deliver("t", frame("2"), nullptr) == 22);
  CHECK(log.size() == 22);
  for (auto& s : late) CHECK(s.received == Strings{"2"});
  CHECK(a.received == Strings{"1", "2"});
  CHECK(t.deliver("other7", frame("3"), nullptr) == 1);
  CHECK(a.received.back() == "3");
}

TEST_CASE("nested delivery: a subscriber publishes to another topic") {
  Strings log;
  FakeSubscriber a{"a", &log}, b{"b", &log}, c{"c", &log}, x{"x", &log}, y{"y", &log};
  Table t;
  for (auto* s : {&a, &b, &c}) REQUIRE(t.subscribe(s, "outer"));
  REQUIRE(t.subscribe(&x, "inner"));
  REQUIRE(t.subscribe(&y, "inner"));

  std::size_t innerCount = 99;
  b.onDeliver = [&](const SharedFrame&) {
    innerCount = t.deliver("inner", frame("from-b"), &a);
    // The inner delivery ended but the outer one runs: no compaction yet.
    CHECK(slots(t, "inner") == 2);
    CHECK(nullSlots(t, "inner") == 1);
    CHECK(slots(t, "outer") == 3);
    CHECK(nullSlots(t, "outer") == 1);
    CHECK(holesOf(t).size() == 2);
  };
  // x, reached by the inner delivery, unsubscribes itself and c (not yet
  // reached by the outer one).
  x.onDeliver = [&](const SharedFrame&) {
    CHECK(t.unsubscribe(&x, "inner"));
    CHECK(t.unsubscribe(&c, "outer"));
  };
  CHECK(t.deliver("outer", frame("1"), nullptr) == 2);
  CHECK(innerCount == 2);
  CHECK(log == Strings{"a:1", "b:1", "x:from-b", "y:from-b"});
  CHECK(c.received.empty());
  // Compacted by the outermost delivery.
  CHECK(slots(t, "inner") == 1);
  CHECK(slots(t, "outer") == 2);
  CHECK(nullSlots(t, "inner") == 0);
  CHECK(nullSlots(t, "outer") == 0);
  CHECK(holesOf(t).empty());

  // Delivering to the topic being delivered: the nested one reaches the
  // current list, the outer one goes on afterwards.
  log.clear();
  b.onDeliver = nullptr;
  x.onDeliver = nullptr;
  int depth = 0;
  a.onDeliver = [&](const SharedFrame&) {
    if (depth++ == 0) CHECK(t.deliver("outer", frame("again"), &a) == 1);
  };
  CHECK(t.deliver("outer", frame("2"), nullptr) == 2);
  CHECK(log == Strings{"a:2", "b:again", "b:2"});
}

TEST_CASE("many topics") {
  constexpr int kSubs = 50;
  constexpr int kTopics = 200;
  constexpr auto kTopicCount = static_cast<std::size_t>(kTopics);
  std::vector<FakeSubscriber> subs(kSubs);
  Table t;
  // Subscriber i takes topic j when j % (i + 1) == 0.
  std::vector<std::size_t> expected(kTopics, 0);
  for (int i = 0; i < kSubs; ++i) {
    subs[i].name = std::to_string(i);
    for (int j = 0; j < kTopics; ++j) {
      if (j % (i + 1) == 0) {
        REQUIRE(t.subscribe(&subs[i], "topic" + std::to_string(j)));
        ++expected[j];
      }
    }
  }
  CHECK(topicsOf(t).size() == kTopicCount);
  for (int j = 0; j < kTopics; ++j) {
    CHECK(t.deliver("topic" + std::to_string(j), frame(std::to_string(j)), nullptr) == expected[j]);
  }
  for (int i = 0; i < kSubs; ++i) {
    Strings want;
    for (int j = 0; j < kTopics; ++j) {
      if (j % (i + 1) == 0) want.push_back(std::to_string(j));
    }
    CHECK(subs[i].received == want);
  }
  // Subscriber 0 is alone on the topics no other divides: unsubscribing it
  // everywhere erases exactly those.
  std::size_t alone = 0;
  for (int j = 0; j < kTopics; ++j) {
    REQUIRE(t.unsubscribe(&subs[0], "topic" + std::to_string(j)));
    if (expected[j] == 1) ++alone;
  }
  CHECK(alone > 0);
  CHECK(topicsOf(t).size() == kTopicCount - alone);
  CHECK(t.deliver("topic0", frame("z"), nullptr) == static_cast<std::size_t>(kSubs - 1));
  CHECK(t.deliver("topic1", frame("z"), nullptr) == 0);  // only subscriber 0 took 1
}

TEST_CASE("SubscriberCounts") {
  SubscriberCounts counts;
  CHECK(counts.topics() == 0);
  CHECK(counts.count("a") == 0);

  counts.add("a", 1);
  counts.add("a", 2);
  counts.add("b", 5);
  CHECK(counts.count("a") == 3);
  CHECK(counts.count("b") == 5);
  CHECK(counts.count("c") == 0);
  CHECK(counts.topics() == 2);

  // Zero and negative deltas never make a topic.
  counts.add("c", 0);
  CHECK(counts.count("c") == 0);
  CHECK(counts.topics() == 2);
  counts.add("d", -4);
  CHECK(counts.count("d") == 0);
  CHECK(counts.topics() == 2);

  counts.add("a", -1);
  CHECK(counts.count("a") == 2);
  counts.add("a", 0);
  CHECK(counts.count("a") == 2);
  CHECK(counts.topics() == 2);
  counts.add("a", -2);  // down to zero: erased
  CHECK(counts.count("a") == 0);
  CHECK(counts.topics() == 1);

  counts.add("b", -7);  // below zero: erased too, not wrapped around
  CHECK(counts.count("b") == 0);
  CHECK(counts.topics() == 0);

  counts.add("b", 1);  // and made again from scratch
  CHECK(counts.count("b") == 1);
  CHECK(counts.topics() == 1);
}
