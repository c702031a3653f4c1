// Loopback tests of coroutine WebSocket handlers: co_await ws.next(),
// ws.drain() and ws.closed(), their backpressure, errors, lifetimes at app
// stop, and what an idle coroutine socket costs.

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ws_client.h"

using namespace spry::test;
using spry::CloseInfo;
using spry::Message;
using spry::Task;
using spry::WebSocket;

#if defined(__SANITIZE_ADDRESS__)
#define SPRY_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPRY_TEST_ASAN 1
#endif
#endif

namespace {

long vmRssKb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// The handler of the issue: echo through next(), with drain() between.
Task<> echoTask(WebSocket ws, Probe* p) {
  while (auto msg = co_await ws.next()) {
    ++p->messages;
    ws.add(*msg);
    co_await ws.drain();
  }
  p->note("next: nullopt");
  CloseInfo info = co_await ws.closed();
  p->record(info.code);
}

// An event the server's loop resumes a coroutine on (opened from the loop).
class Gate {
 public:
  struct Awaiter {
    Gate* gate;
    bool await_ready() const noexcept { return gate->open_; }
    void await_suspend(std::coroutine_handle<> h) noexcept { gate->waiter_ = h; }
    void await_resume() const noexcept {}
  };
  Awaiter operator co_await() noexcept { return Awaiter{this}; }
  void open() {
    open_ = true;
    if (auto h = std::exchange(waiter_, {})) h.resume();
  }

 private:
  bool open_ = false;
  std::coroutine_handle<> waiter_;
};

// Counts the frames alive: each coroutine under test holds one.
struct FrameGuard {
  explicit FrameGuard(std::atomic<int>& n) : n_(n) { ++n_; }
  ~FrameGuard() { --n_; }
  std::atomic<int>& n_;
};

}  // namespace

// ------------------------------------------------------------------ pulling messages

TEST_CASE("co ws: next() echoes text, binary, fragmented and 1 MB messages, then nullopt") {
  spry::App app;
  Probe p;
  app.ws("/echo", [&p](WebSocket ws, spry::Request&) -> Task<> { return echoTask(ws, &p); },
         {.maxMessageBytes = 2 << 20});
  TestServer srv(app);
  WsClient c(srv.port());
  REQUIRE(c.open("/echo"));

  REQUIRE(c.sendText("hello"));
  auto m = c.readMessage();
  REQUIRE(m);
  CHECK(m->opcode == ws::kText);
  CHECK(m->payload == "hello");

  REQUIRE(c.sendBinary(std::string("\x00\x01\xff", 3)));
  m = c.readMessage();
  REQUIRE(m);
  CHECK(m->opcode == ws::kBinary);
  CHECK(m->payload == std::string("\x00\x01\xff", 3));

  REQUIRE(c.sendFrame(ws::kText, "frag", false));
  REQUIRE(c.sendFrame(ws::kContinuation, "men", false));
  REQUIRE(c.sendFrame(ws::kContinuation, "ted", true));
  m = c.readMessage();
  REQUIRE(m);
  CHECK(m->payload == "fragmented");

  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 4096);
  REQUIRE(c.sendBinary(big));
  m = c.readMessage(5000ms);
  REQUIRE(m);
  CHECK(m->payload.size() == big.size());
  CHECK(m->payload == big);

  // Several in one write: the first resumes the coroutine inline, the rest
  // of the read is queued and taken in order.
  REQUIRE(c.raw().send(WsClient::frame(ws::kText, "a") + WsClient::frame(ws::kText, "b") +
                       WsClient::frame(ws::kText, "c")));
  for (const char* want : {"a", "b", "c"}) {
    m = c.readMessage();
    REQUIRE(m);
    CHECK(m->payload == want);
  }
  CHECK(p.messages == 7);

  REQUIRE(c.sendClose(1000, "done"));
  CHECK(c.readCloseCode() == 1000);
  REQUIRE(p.waitClosed());
  CHECK(p.takeCodes() == std::vector<int>{1000});
  CHECK(p.takeNotes() == std::vector<std::string>{"next: nullopt"});
}

TEST_CASE("co ws: the issue's /chat/:room handler reads req before its first suspension") {
  spry::App app;
  std::atomic<int> ended{0};
  app.ws("/chat/:room", [&ended](WebSocket ws, spry::Request& req) -> Task<> {
    std::string room(req.param("room"));  // req is valid until the first suspension
    while (auto msg = co_await ws.next()) {
      ws.add(room + ": " + std::string(msg->data()));
      co_await ws.drain();
    }
    ++ended;
  });
  TestServer srv(app);
  WsClient a(srv.port());
  WsClient b(srv.port());
  REQUIRE(a.open("/chat/lobby"));
  REQUIRE(b.open("/chat/kitchen"));
  REQUIRE(a.sendText("hi"));
  REQUIRE(b.sendText("yo"));
  auto m = a.readMessage();
  REQUIRE(m);
  CHECK(m->payload == "lobby: hi");
  m = b.readMessage();
  REQUIRE(m);
  CHECK(m->payload == "kitchen: yo");
  a.raw().reset();
  b.raw().reset();
  CHECK(waitUntil([&] { return ended.load() == 2; }));
}

TEST_CASE("co ws: next() gives nullopt on the client's close (1000) and on a dropped TCP (1006)") {
  spry::App app;
  Probe p;
  app.ws("/echo", [&p](WebSocket ws, spry::Request&) -> Task<> { return echoTask(ws, &p); });
  TestServer srv(app);
  {
    WsClient c(srv.port());
    REQUIRE(c.open("/echo"));
    REQUIRE(c.sendClose(1000, "bye"));
    CHECK(c.readCloseCode() == 1000);
    REQUIRE(p.waitClosed(1));
  }
  {
    WsClient c(srv.port());
    REQUIRE(c.open("/echo"));
    REQUIRE(c.sendText("x"));
    REQUIRE(c.readMessage());
    c.raw().reset();
    REQUIRE(p.waitClosed(2));
  }
  CHECK(p.takeCodes() == std::vector<int>{1000, 1006});
  CHECK(p.takeNotes() == std::vector<std::string>{"next: nullopt", "next: nullopt"});
}

TEST_CASE(
    "co ws: closed() resumes with onClose's code and reason, after onClose, and at once later") {
  spry::App app;
  Probe p;
  app.ws("/wait",
         [&p](WebSocket ws, spry::Request&) -> Task<> {
           bool onCloseRan = false;
           ws.onClose([&onCloseRan](std::uint16_t, std::string_view) { onCloseRan = true; });
           CloseInfo info = co_await ws.closed();
           if (!onCloseRan) p.note("closed() before onClose");
           CloseInfo again = co_await ws.closed();  // at once now
           if (again.code != info.code || again.reason != info.reason) p.note("second differs");
           {
             std::lock_guard lock(p.mutex);
             p.lastReason = info.reason;
           }
           p.record(info.code);
         },
         {.maxMessageBytes = 1000});
  TestServer srv(app);
  {
    WsClient c(srv.port());
    REQUIRE(c.open("/wait"));
    REQUIRE(c.sendClose(4001, "see you"));
    CHECK(c.readCloseCode() == 4001);
    REQUIRE(p.waitClosed(1));
    CHECK(p.reason() == "see you");
  }
  {
    WsClient c(srv.port());  // a message too big: the server fails it with 1009
    REQUIRE(c.open("/wait"));
    REQUIRE(c.sendBinary(std::string(2000, 'x')));
    CHECK(c.closeHandshake() == 1009);
    REQUIRE(p.waitClosed(2));
  }
  {
    WsClient c(srv.port());
    REQUIRE(c.open("/wait"));
    c.raw().reset();
    REQUIRE(p.waitClosed(3));
  }
  {
    WsClient c(srv.port());  // the server stops: 1001
    REQUIRE(c.open("/wait"));
    srv.stop(300ms);
    REQUIRE(p.waitClosed(4));
  }
  CHECK(p.takeCodes() == std::vector<int>{4001, 1009, 1006, 1001});
  CHECK(p.takeNotes().empty());
}

TEST_CASE("co ws: listen() plus co_await closed() in one coroutine handler") {
  spry::App app;
  Probe p;
  app.ws("/l", [&p](WebSocket ws, spry::Request&) -> Task<> {
    ws.listen([ws, &p](const Message& m) {
      ++p.messages;
      ws.add(m);
    });
    CloseInfo info = co_await ws.closed();
    p.record(info.code);
  });
  TestServer srv(app);
  WsClient c(srv.port());
  REQUIRE(c.open("/l"));
  for (const char* s : {"one", "two"}) {
    REQUIRE(c.sendText(s));
    auto m = c.readMessage();
    REQUIRE(m);
    CHECK(m->payload == s);
  }
  REQUIRE(c.sendClose(1000));
  CHECK(c.readCloseCode() == 1000);
  REQUIRE(p.waitClosed());
  CHECK(p.lastCode == 1000);
  CHECK(p.messages == 2);
}

TEST_CASE("co ws: messages before listen() are buffered and go to the listener in order") {
  spry::App app;
  Gate gate;
  std::atomic<bool> parked{false};
  app.ws("/late", [&](WebSocket ws, spry::Request&) -> Task<> {
    parked = true;
    co_await gate;
    ws.listen([ws](const Message& m) { ws.add(m); });
  });
  TestServer srv(app);
  WsClient c(srv.port());
  REQUIRE(c.open("/late"));
  REQUIRE(waitUntil([&] { return parked.load(); }));
  REQUIRE(c.raw().send(WsClient::frame(ws::kText, "1") + WsClient::frame(ws::kText, "2")));
  CHECK_FALSE(c.readMessage(100ms));
  srv.onLoop([&] { gate.open(); });
  for (const char* want : {"1", "2"}) {
    auto m = c.readMessage();
    REQUIRE(m);
    CHECK(m->payload == want);
  }
  REQUIRE(c.sendText("3"));
  auto m = c.readMessage();
  REQUIRE(m);
  CHECK(m->payload == "3");
}

TEST_CASE(
    "co ws: a coroutine that returns leaves an open socket that drops messages and reads on") {
  spry::App app;
  std::atomic<int> ended{0};
  app.ws("/once", [&ended](WebSocket ws, spry::Request&) -> Task<> {
    auto m = co_await ws.next();
    if (m) ws.add(*m);
    ++ended;
  });
  TestServer srv(app);
  WsClient c(srv.port());
  REQUIRE(c.open("/once"));
  REQUIRE(c.sendText("first"));
  auto m = c.readMessage();
  REQUIRE(m);
  CHECK(m->payload == "first");
  REQUIRE(waitUntil([&] { return ended.load() == 1; }));
  REQUIRE(c.sendText("dropped"));
  REQUIRE(c.sendPing("alive"));
  auto f = c.readFrame();
  REQUIRE(f);
  CHECK(f->opcode == ws::kPong);
  CHECK(f->payload == "alive");
  REQUIRE(c.sendClose(1000));
  CHECK(c.readCloseCode() == 1000);
}

// ------------------------------------------------------------------ drain

TEST_CASE("co ws: drain() is ready at once below half, waits above it, resumes on close") {
  spry::App app;
  Recorder events;
  constexpr std::size_t kMax = 64 * 1024;
  app.ws("/d",
         [&events](WebSocket ws, spry::Request&) -> Task<> {
           {
             auto a = ws.drain();
             events.add(a.await_ready() ? "ready at once" : "not ready");
           }
           co_await ws.drain();
           auto first = co_await ws.next();  // "go": fill the send buffer
           for (int i = 0; i < 16; ++i) ws.add(std::string(1 << 20, 'x'));
           events.add(ws.bufferedAmount() > kMax / 2 ? "above half" : "below half");
           co_await ws.drain();
           events.add(ws.bufferedAmount() <= kMax / 2 ? "drained" : "resumed above half");
           for (int i = 0; i < 16; ++i) ws.add(std::string(1 << 20, 'y'));
           co_await ws.drain();  // the client drops the connection meanwhile
           events.add(ws.add("late") ? "add after close" : "resumed closed");
         },
         {.maxBackpressureBytes = kMax});
  TestServer srv(app);
  WsClient c(srv.port());
  c.raw().setReceiveBuffer(64 * 1024);
  REQUIRE(c.open("/d"));
  REQUIRE(c.sendText("go"));
  REQUIRE(waitUntil([&] { return events.size() >= 2; }));
  std::this_thread::sleep_for(100ms);  // the client reads nothing: drain() must still wait
  CHECK(events.events() == std::vector<std::string>{"ready at once", "above half"});
  for (int i = 0; i < 16; ++i) {
    auto m = c.readFrame(5000ms);
    REQUIRE(m);
    CHECK(m->opcode == ws::kText);
    CHECK(m->payload.size() == 1 << 20);
  }
  REQUIRE(waitUntil([&] { return events.size() >= 3; }));
  CHECK(events.events().at(2) == "drained");
  std::this_thread::sleep_for(50ms);
  c.raw().reset();
  REQUIRE(waitUntil([&] { return events.size() >= 4; }));
  CHECK(events.events().at(3) == "resumed closed");
}

// ------------------------------------------------------------------ misuse

TEST_CASE("co ws: listen with next, two next() at once, next() off the loop: std::logic_error") {
  spry::App app;
  spry::App other;  // another loop
  Recorder events;
  app.ws("/listen-then-next", [&events](WebSocket ws, spry::Request&) -> Task<> {
    ws.listen([](const Message&) {});
    try {
      co_await ws.next();
      events.add("no throw");
    } catch (const std::logic_error& e) {
      events.add(std::string("listen+next: ") + e.what());
    }
  });
  app.ws("/next-then-listen", [&events](WebSocket ws, spry::Request&) -> Task<> {
    auto m = co_await ws.next();
    try {
      ws.listen([](const Message&) {});
      events.add("no throw");
    } catch (const std::logic_error& e) {
      events.add(std::string("next+listen: ") + e.what());
    }
  });
  app.ws("/two", [&events](WebSocket ws, spry::Request&) -> Task<> {
    auto puller = [&events](WebSocket s) -> Task<> {
      try {
        auto m = co_await s.next();
        events.add(m ? "pulled" : "pulled nullopt");
      } catch (const std::logic_error& e) {
        events.add(std::string("twice: ") + e.what());
      }
    };
    ws.loop().spawn(puller(ws));
    ws.loop().spawn(puller(ws));
    co_return;
  });
  Task<> (*offLoop)(WebSocket, Recorder*) = [](WebSocket s, Recorder* ev) -> Task<> {
    try {
      co_await s.next();
      ev->add("no throw");
    } catch (const std::logic_error& e) {
      ev->add(std::string("off loop: ") + e.what());
    }
  };
  app.ws("/off",
         [&](WebSocket ws, spry::Request&) { other.loops().at(0).spawn(offLoop(ws, &events)); });
  TestServer srv(app);
  TestServer srv2(other);

  auto has = [&](std::string_view prefix, std::string_view words) {
    for (const auto& e : events.events()) {
      if (e.rfind(prefix, 0) == 0 && e.find(words) != std::string::npos) return true;
    }
    return false;
  };
  {
    WsClient c(srv.port());
    REQUIRE(c.open("/listen-then-next"));
    REQUIRE(waitUntil([&] { return events.size() == 1; }));
    CHECK(has("listen+next: ", "not both"));
  }
  {
    WsClient c(srv.port());
    REQUIRE(c.open("/next-then-listen"));
    REQUIRE(c.sendText("x"));
    REQUIRE(waitUntil([&] { return events.size() == 2; }));
    CHECK(has("next+listen: ", "not both"));
  }
  {
    WsClient c(srv.port());
    REQUIRE(c.open("/two"));
    REQUIRE(waitUntil([&] { return events.size() == 3; }));
    CHECK(has("twice: ", "one coroutine at a time"));
    REQUIRE(c.sendText("x"));
    REQUIRE(waitUntil([&] { return events.size() == 4; }));
    CHECK(events.events().back() == "pulled");
  }
  {
    WsClient c(srv.port());
    REQUIRE(c.open("/off"));
    REQUIRE(waitUntil([&] { return events.size() == 5; }));
    CHECK(has("off loop: ", "off the socket's loop"));
  }
  CHECK(events.size() == 5);
}

TEST_CASE(
    "co ws: an exception escaping the coroutine closes with 1011, before or after suspending") {
  LogCapture logs;
  spry::App app;
  app.ws("/early", [](WebSocket, spry::Request&) -> Task<> {
    throw std::runtime_error("early boom");
    co_return;
  });
  app.ws("/late", [](WebSocket ws, spry::Request&) -> Task<> {
    auto m = co_await ws.next();
    throw std::runtime_error("late boom");
  });
  TestServer srv(app);
  {
    WsClient c(srv.port());
    REQUIRE(c.open("/early"));
    CHECK(c.closeHandshake() == 1011);
  }
  {
    WsClient c(srv.port());
    REQUIRE(c.open("/late"));
    REQUIRE(c.sendText("x"));
    CHECK(c.closeHandshake() == 1011);
  }
  CHECK(logs.contains({"early boom", "1011"}));
  CHECK(logs.contains({"late boom", "1011"}));
}

// ------------------------------------------------------------------ backpressure

TEST_CASE("co ws: a parked coroutine stops reading; 100 MB later arrive in order") {
  spry::App app;
  Gate gate;
  std::atomic<bool> parked{false};
  std::atomic<long long> received{0};
  std::atomic<bool> inOrder{true};
  std::atomic<bool> done{false};
  constexpr std::size_t kChunk = 64 * 1024;
  constexpr std::size_t kCount = 1600;  // 100 MB
  app.ws("/slow", [&](WebSocket ws, spry::Request&) -> Task<> {
    parked = true;
    co_await gate;
    std::uint32_t expect = 0;
    while (auto m = co_await ws.next()) {
      std::uint32_t seq = 0;
      std::memcpy(&seq, m->data().data(), sizeof(seq));
      if (seq != expect++ || m->size() != kChunk) inOrder = false;
      received += static_cast<long long>(m->size());
      if (expect == kCount) {
        done = true;
        ws.add("all");
      }
    }
  });
  TestServer srv(app);
  WsClient c(srv.port());
  REQUIRE(c.open("/slow"));
  REQUIRE(waitUntil([&] { return parked.load(); }));
  const long rssBefore = vmRssKb();

  std::atomic<long long> sent{0};
  std::thread writer([&] {
    std::string payload(kChunk, 'z');
    for (std::uint32_t i = 0; i < kCount; ++i) {
      std::memcpy(payload.data(), &i, sizeof(i));
      if (!c.sendBinary(payload)) return;
      sent += static_cast<long long>(kChunk);
    }
  });
  // Wait until the client's writes stop moving: the kernel buffers are full.
  long long last = -1;
  for (int stable = 0; stable < 5;) {
    std::this_thread::sleep_for(50ms);
    const long long now = sent.load();
    stable = now == last ? stable + 1 : 0;
    last = now;
  }
  const long rssParked = vmRssKb();
  MESSAGE("sent while parked: " << sent.load() / 1024 << " KiB; server RSS " << rssBefore / 1024
                                << " -> " << rssParked / 1024 << " MiB");
  CHECK(sent.load() < 32ll * 1024 * 1024);
  CHECK(received.load() == 0);
#ifndef SPRY_TEST_ASAN
  CHECK(rssParked - rssBefore < 20 * 1024);
#endif
  srv.onLoop([&] { gate.open(); });
  writer.join();
  CHECK(sent.load() == static_cast<long long>(kChunk * kCount));
  auto m = c.readMessage(20000ms);
  REQUIRE(m);
  CHECK(m->payload == "all");
  CHECK(done.load());
  CHECK(inOrder.load());
  CHECK(received.load() == static_cast<long long>(kChunk * kCount));
}

// ------------------------------------------------------------------ app stop

TEST_CASE("co ws: stopping the app ends coroutines parked in next, drain, closed and sleep") {
  spry::App app;
  std::atomic<int> frames{0};
  std::atomic<int> parked{0};
  Recorder events;
  app.ws("/next", [&](WebSocket ws, spry::Request&) -> Task<> {
    FrameGuard g(frames);
    ++parked;
    auto m = co_await ws.next();
    events.add(m ? "next: message" : "next: nullopt");
  });
  app.ws("/drain",
         [&](WebSocket ws, spry::Request&) -> Task<> {
           FrameGuard g(frames);
           for (int i = 0; i < 16; ++i) ws.add(std::string(1 << 20, 'x'));
           ++parked;
           co_await ws.drain();
           events.add("drain: resumed");
         },
         {.maxBackpressureBytes = 64 * 1024});
  app.ws("/closed", [&](WebSocket ws, spry::Request&) -> Task<> {
    FrameGuard g(frames);
    ++parked;
    CloseInfo info = co_await ws.closed();
    events.add("closed: " + std::to_string(info.code));
  });
  app.ws("/sleep", [&](WebSocket ws, spry::Request&) -> Task<> {
    FrameGuard g(frames);
    ++parked;
    co_await ws.loop().sleep(60s);
    events.add("sleep: resumed");
  });
  TestServer srv(app);
  std::vector<std::unique_ptr<WsClient>> clients;
  for (const char* path : {"/next", "/drain", "/closed", "/sleep"}) {
    clients.push_back(std::make_unique<WsClient>(srv.port()));
    clients.back()->raw().setReceiveBuffer(4096);
    REQUIRE(clients.back()->open(path));
  }
  REQUIRE(waitUntil([&] { return parked.load() == 4; }));
  CHECK(frames.load() == 4);
  const auto t0 = std::chrono::steady_clock::now();
  srv.stop(300ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 2s);
  CHECK(frames.load() == 0);
  auto seen = events.events();
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<std::string>{"closed: 1001", "drain: resumed", "next: nullopt"});
}

// ------------------------------------------------------------------ memory

namespace {
Task<> parkedInNext(WebSocket ws, std::atomic<int>* parked) {
  ++*parked;
  while (auto m = co_await ws.next()) ws.add(*m);
}

std::size_t heapInUse() {
  return mallinfo2().uordblks;
}
}  // namespace

TEST_CASE("co ws: an idle socket parked in next() costs at most 128 B over a callback socket") {
  constexpr int kSockets = 2000;
  spry::App app;
  std::atomic<int> parked{0};
  app.ws("/cb", [&parked](WebSocket ws, spry::Request&) {
    ws.listen([ws](const Message& m) { ws.add(m); });
    ++parked;
  });
  app.ws("/co",
         [&parked](WebSocket ws, spry::Request&) -> Task<> { return parkedInNext(ws, &parked); });
  TestServer srv(app);

  std::size_t frame = 0;
  {
    // Lazy tasks: just their frames (many, so that malloc's caches do not hide them).
    std::atomic<int> unused{0};
    std::vector<Task<>> tasks;
    tasks.reserve(1000);
    const std::size_t before = heapInUse();
    for (int i = 0; i < 1000; ++i) tasks.push_back(parkedInNext(WebSocket(), &unused));
    frame = (heapInUse() - before) / 1000;
  }

  struct Figure {
    double heap;
    double rss;
  };
  auto measure = [&](const char* path) {
    std::vector<std::unique_ptr<WsClient>> clients;
    clients.reserve(kSockets);
    parked = 0;
    // Warm-up: the server's and the client's first allocations out of the way.
    for (int i = 0; i < 50; ++i) {
      clients.push_back(std::make_unique<WsClient>(srv.port()));
      REQUIRE(clients.back()->open(path));
    }
    REQUIRE(waitUntil([&] { return parked.load() == 50; }));
    const std::size_t heap0 = heapInUse();
    const long rss0 = vmRssKb();
    for (int i = 50; i < kSockets + 50; ++i) {
      clients.push_back(std::make_unique<WsClient>(srv.port()));
      REQUIRE(clients.back()->open(path));
    }
    REQUIRE(waitUntil([&] { return parked.load() == kSockets + 50; }, 10000ms));
    const std::size_t heap1 = heapInUse();
    const long rss1 = vmRssKb();
    Figure f{(static_cast<double>(heap1) - static_cast<double>(heap0)) / kSockets,
             static_cast<double>(rss1 - rss0) * 1024.0 / kSockets};
    for (auto& c : clients) c->raw().reset();
    clients.clear();
    return f;
  };
  const Figure cb = measure("/cb");
  REQUIRE(waitUntil([&] { return app.stats().connections == 0; }, 5000ms));
  const Figure co = measure("/co");
  const double share = co.heap - cb.heap - static_cast<double>(frame);
  std::printf(
      "idle socket (heap incl. client side, per socket): callback %.0f B, coroutine %.0f B "
      "(frame %zu B); framework share over callback %.0f B; RSS callback %.0f B, coroutine %.0f "
      "B\n",
      cb.heap, co.heap, frame, share, cb.rss, co.rss);
#ifndef SPRY_TEST_ASAN
  CHECK(share <= 128.0);
  CHECK(share >= 0.0);  // the measure works: the pull state and task root cost something
#endif
}
