// Loopback tests of WebSocket limits and liveness: message size, idle, ping
// and close timeouts, backpressure policies, addStream and graceful stop.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "strings.h"
#include "ws_client.h"

using namespace spry::test;
using spry::BackpressurePolicy;
using spry::Message;
using spry::WebSocket;

namespace {

// Reads data frames until `bytes` payload bytes arrived (pings answered).
std::size_t drain(WsClient& c, std::size_t bytes) {
  std::size_t got = 0;
  while (got < bytes) {
    auto f = c.readMessage();
    if (!f) break;
    got += f->payload.size();
  }
  return got;
}

constexpr std::size_t kLimit = 64 * 1024;

}  // namespace

// ------------------------------------------------------------ message size

TEST_CASE("ws limits: maxMessageBytes closes with 1009, for one frame or fragments") {
  spry::App app;
  Probe p;
  app.ws("/m", [&p](WebSocket ws, spry::Request&) { echo(p, ws); }, {.maxMessageBytes = 1000});
  TestServer server(app);

  SUBCASE("a message of exactly the limit is delivered") {
    WsClient c(server.port());
    REQUIRE(c.open("/m"));
    c.sendBinary(std::string(1000, 'b'));
    auto f = c.readFrame();
    REQUIRE(f);
    CHECK(f->payload.size() == 1000);
    c.sendFrame(ws::kText, std::string(500, 't'), false);
    c.sendFrame(ws::kContinuation, std::string(500, 't'), true);
    f = c.readFrame();
    REQUIRE(f);
    CHECK(f->payload.size() == 1000);
    CHECK(p.messages == 2);
    CHECK(p.closed == 0);
  }
  SUBCASE("one frame over the limit") {
    WsClient c(server.port());
    REQUIRE(c.open("/m"));
    c.sendBinary(std::string(1001, 'b'));
    auto f = c.readClose();
    REQUIRE(f);
    CHECK(f->closeCode() == 1009);
    CHECK(c.raw().waitClosed());
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 1009);
    CHECK(p.messages == 0);
  }
  SUBCASE("fragments that sum over the limit") {
    WsClient c(server.port());
    REQUIRE(c.open("/m"));
    c.sendFrame(ws::kText, std::string(600, 't'), false);
    c.sendFrame(ws::kContinuation, std::string(600, 't'), true);
    auto f = c.readClose();
    REQUIRE(f);
    CHECK(f->closeCode() == 1009);
    CHECK(c.raw().waitClosed());
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 1009);
    CHECK(p.messages == 0);
  }
}

// --------------------------------------------------------------- liveness

TEST_CASE("ws limits: idleTimeout closes a silent socket with 1001") {
  spry::App app;
  Probe p;
  app.ws("/i", [&p](WebSocket ws, spry::Request&) { echo(p, ws); }, {.idleTimeout = 300ms});
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/i"));
  // Traffic keeps it open past the idle time...
  for (int i = 0; i < 6; ++i) {
    c.sendText(std::to_string(i));
    auto f = c.readFrame();
    REQUIRE(f);
    CHECK(f->payload == std::to_string(i));
    std::this_thread::sleep_for(60ms);
  }
  CHECK(p.closed == 0);
  // ...silence closes it.
  CHECK(c.closeHandshake() == 1001);
  REQUIRE(p.waitClosed());
  CHECK(p.lastCode == 1001);
}

TEST_CASE("ws limits: pings keep a live peer open and drop a dead one with 1006") {
  spry::App app;
  Probe p;
  app.ws("/p", [&p](WebSocket ws, spry::Request&) { echo(p, ws); },
         {.idleTimeout = 0ms, .pingInterval = 60ms, .pongTimeout = 120ms});
  TestServer server(app);

  SUBCASE("a client that answers pings stays connected past several intervals") {
    WsClient c(server.port());
    REQUIRE(c.open("/p"));
    int pings = 0;
    auto until = std::chrono::steady_clock::now() + 600ms;
    while (std::chrono::steady_clock::now() < until) {
      auto f = c.readFrame(50ms);
      if (!f) continue;
      REQUIRE(f->opcode == ws::kPing);
      ++pings;
      c.sendPong(f->payload);
    }
    CHECK(pings >= 3);
    c.sendText("alive");
    auto f = c.readMessage();
    REQUIRE(f);
    CHECK(f->payload == "alive");
    CHECK(p.closed == 0);
  }
  SUBCASE("a client that never answers is dropped (TCP, no Close) and onClose gets 1006") {
    WsClient c(server.port());
    REQUIRE(c.open("/p"));
    auto f = c.readFrame(1000ms);
    REQUIRE(f);
    CHECK(f->opcode == ws::kPing);
    while ((f = c.readFrame(2000ms))) CHECK(f->opcode == ws::kPing);
    CHECK(c.raw().closed());
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 1006);
  }
}

TEST_CASE("ws limits: closeTimeout drops TCP when the peer never answers our Close") {
  spry::App app;
  Probe p;
  app.ws("/c",
         [&p](WebSocket ws, spry::Request&) {
           p.watch(ws);
           ws.listen([ws](const Message&) { ws.close(1000); });
         },
         {.closeTimeout = 200ms});
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/c"));
  c.sendText("close");
  auto f = c.readClose();
  REQUIRE(f);
  CHECK(f->closeCode() == 1000);
  CHECK(c.raw().waitClosed());
  REQUIRE(p.waitClosed());
  CHECK(p.lastCode == 1006);
}

// ------------------------------------------------------------ backpressure

TEST_CASE("ws limits: kPauseReading stops reading until the client drains") {
  spry::App app;
  Probe p;
  std::atomic<std::size_t> queued{0};
  app.ws("/b",
         [&](WebSocket ws, spry::Request&) {
           p.watch(ws);
           ws.listen([ws, &p, &queued](const Message& m) {
             ++p.messages;
             if (m.data() != "fill") return;
             // More than loopback's socket buffers take from a client that does
             // not read: the rest stays queued and reading pauses.
             for (int i = 0; i < 256; ++i) ws.add(Message::binary(std::string(256 * 1024, 'f')));
             queued = ws.bufferedAmount();
           });
         },
         {.maxBackpressureBytes = kLimit});
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/b"));
  c.sendText("fill");
  REQUIRE(waitUntil([&] { return p.messages == 1; }));
  // Give the loop time to push what the kernel takes; much must remain.
  std::this_thread::sleep_for(100ms);
  CHECK(server.onLoop([&] { return queued.load(); }) > kLimit);
  for (int i = 0; i < 50; ++i) REQUIRE(c.sendText(spry::test::cat("m", std::to_string(i))));
  std::this_thread::sleep_for(200ms);
  CHECK(p.messages == 1);  // paused: nothing more was read
  CHECK(drain(c, 256u * 256 * 1024) == 256u * 256 * 1024);
  CHECK(waitUntil([&] { return p.messages == 51; }));
  CHECK(p.closed == 0);
}

TEST_CASE("ws limits: kClose closes with 1008 when the send buffer is full") {
  spry::App app;
  Probe p;
  std::atomic<int> accepted{0};
  app.ws("/b",
         [&](WebSocket ws, spry::Request&) {
           p.watch(ws);
           ws.listen([ws, &accepted](const Message&) {
             while (ws.add(Message::binary(std::string(16 * 1024, 'c')))) ++accepted;
           });
         },
         {.maxBackpressureBytes = kLimit, .backpressure = BackpressurePolicy::kClose});
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/b"));
  c.sendText("go");
  std::size_t got = 0;
  std::optional<WsFrame> f;
  while ((f = c.readFrame()) && f->opcode == ws::kBinary) got += f->payload.size();
  REQUIRE(f);
  CHECK(f->opcode == ws::kClose);
  CHECK(f->closeCode() == 1008);
  CHECK(accepted.load() > 0);
  CHECK(got == static_cast<std::size_t>(accepted.load()) * 16 * 1024);
  c.sendClose(1008);
  CHECK(c.raw().waitClosed());
  REQUIRE(p.waitClosed());
  CHECK(p.lastCode == 1008);
}

TEST_CASE("ws limits: kDrop makes add() return false, onDrain fires once the client reads") {
  spry::App app;
  Probe p;
  std::atomic<int> accepted{0};
  std::atomic<int> dropped{0};
  std::atomic<int> drains{0};
  std::atomic<std::size_t> peak{0};
  std::atomic<std::size_t> atDrain{1};
  app.ws("/b",
         [&](WebSocket ws, spry::Request&) {
           p.watch(ws);
           ws.onDrain([ws, &drains, &atDrain] {
             // Replacing itself must not destroy the running callback.
             ws.onDrain([ws] { ws.add("second drain"); });
             ++drains;
             atDrain = ws.bufferedAmount();
             ws.add("after drain");
           });
           ws.listen([ws, &accepted, &dropped, &peak](const Message&) {
             for (int i = 0; i < 64; ++i) {
               if (ws.add(Message::binary(std::string(16 * 1024, 'd')))) {
                 ++accepted;
               } else {
                 ++dropped;
               }
               peak = std::max(peak.load(), ws.bufferedAmount());
             }
           });
         },
         {.maxBackpressureBytes = kLimit, .backpressure = BackpressurePolicy::kDrop});
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/b"));
  c.sendText("go");
  REQUIRE(waitUntil([&] { return accepted + dropped == 64; }));
  CHECK(dropped.load() > 0);
  CHECK(peak.load() > kLimit);
  CHECK(peak.load() <= kLimit + 16 * 1024 + 4);
  std::size_t got = 0;
  std::optional<WsFrame> f;
  while ((f = c.readFrame()) && f->opcode == ws::kBinary) got += f->payload.size();
  REQUIRE(f);
  CHECK(f->opcode == ws::kText);
  CHECK(f->payload == "after drain");
  CHECK(got == static_cast<std::size_t>(accepted.load()) * 16 * 1024);
  CHECK(drains == 1);
  CHECK(atDrain == 0);
  CHECK(server.onLoop([&] { return p.closed.load(); }) == 0);
}

// -------------------------------------------------------------- addStream

TEST_CASE("ws limits: addStream sends every message in order within the backpressure bound") {
  constexpr int kCount = 2000;
  constexpr std::size_t kSize = 4096;
  spry::App app;
  Probe p;
  std::atomic<int> done{0};
  std::atomic<std::size_t> maxBuffered{0};
  app.ws("/s",
         [&](WebSocket ws, spry::Request&) {
           p.watch(ws);
           auto i = std::make_shared<int>(0);
           ws.addStream(
               [ws, i, &maxBuffered]() -> std::optional<Message> {
                 maxBuffered = std::max(maxBuffered.load(), ws.bufferedAmount());
                 if (*i == kCount) return std::nullopt;
                 std::string payload(kSize, static_cast<char>('a' + *i % 26));
                 std::string n = std::to_string((*i)++);
                 payload.replace(0, n.size(), n);
                 return Message::binary(std::move(payload));
               },
               [&done] { ++done; });
         },
         {.maxBackpressureBytes = kLimit});
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/s"));
  int next = 0;
  bool inOrder = true;
  for (; next < kCount; ++next) {
    if (next % 64 == 0) std::this_thread::sleep_for(1ms);  // a slow reader
    auto f = c.readFrame();
    if (!f) break;
    std::string n = std::to_string(next);
    if (f->opcode != ws::kBinary || f->payload.size() != kSize ||
        f->payload.compare(0, n.size(), n) != 0 ||
        f->payload.back() != static_cast<char>('a' + next % 26)) {
      inOrder = false;
      break;
    }
  }
  CHECK(inOrder);
  CHECK(next == kCount);
  CHECK(waitUntil([&] { return done == 1; }));
  CHECK(!c.readFrame(50ms));  // nothing after the last one
  CHECK(done == 1);
  // The source is pulled only while the buffer is under half the limit.
  CHECK(maxBuffered.load() < kLimit / 2 + kSize + 16);
}

TEST_CASE("ws limits: addStream while one runs throws; done may start another; close stops it") {
  spry::App app;
  Probe p;
  app.ws("/s",
         [&p](WebSocket ws, spry::Request&) {
           p.watch(ws);
           auto sent = std::make_shared<int>(0);
           ws.addStream(
               [ws, sent, &p]() -> std::optional<Message> {
                 if (*sent == 0) {
                   try {
                     ws.addStream([] { return std::optional<Message>(); });
                     p.note("second addStream did not throw");
                   } catch (const std::logic_error& e) {
                     p.note(std::string("logic_error: ") + e.what());
                   }
                 }
                 // The big message fills half the limit: the stream ends on a
                 // later pull, after the buffer has drained.
                 switch ((*sent)++) {
                   case 0:
                     return Message::text("first 0");
                   case 1:
                     return Message::binary(std::string(kLimit / 2 + 1, 'B'));
                   default:
                     return std::nullopt;
                 }
               },
               [ws, &p] {
                 p.note("first done");
                 // A new stream from the done callback runs like any other.
                 auto n = std::make_shared<int>(0);
                 ws.addStream(
                     [ws, n]() -> std::optional<Message> {
                       if (*n == 2) {
                         ws.close(4000, "stream over");
                         // The captures must outlive close(), which drops the stream.
                         return Message::text("unsent " + std::to_string(*n));
                       }
                       return Message::text("second " + std::to_string((*n)++));
                     },
                     [&p] { p.note("second done"); });
               });
         },
         {.maxBackpressureBytes = kLimit});
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/s"));
  std::vector<std::string> got;
  std::optional<WsFrame> f;
  while ((f = c.readFrame()) && f->opcode != ws::kClose) {
    got.push_back(f->opcode == ws::kBinary ? std::to_string(f->payload.size()) : f->payload);
  }
  CHECK(got == std::vector<std::string>{"first 0", std::to_string(kLimit / 2 + 1), "second 0",
                                        "second 1"});
  REQUIRE(f);
  CHECK(f->opcode == ws::kClose);
  CHECK(f->closeCode() == 4000);
  c.sendClose(4000);
  REQUIRE(p.waitClosed());
  auto notes = p.takeNotes();
  REQUIRE(notes.size() == 2);
  CHECK(notes[0].find("logic_error: spry: WebSocket::addStream") == 0);
  CHECK(notes[1] == "first done");
}

// ---------------------------------------------------------------- shutdown

TEST_CASE("ws limits: a graceful stop sends 1001 to every open socket") {
  spry::App app;
  Probe p;
  app.ws("/g", [&p](WebSocket ws, spry::Request&) { echo(p, ws); });
  TestServer server(app);

  WsClient a(server.port());
  WsClient b(server.port());
  REQUIRE(a.open("/g"));
  REQUIRE(b.open("/g"));
  REQUIRE(waitUntil([&] { return p.opened == 2; }));
  auto stopped = std::async(std::launch::async, [&] { server.stop(2000ms); });
  CHECK(a.closeHandshake() == 1001);
  CHECK(b.closeHandshake() == 1001);
  stopped.get();
  CHECK(p.closed == 2);
  CHECK(p.lastCode == 1001);
}
