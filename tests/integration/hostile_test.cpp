// Hostile clients over loopback: slow-loris (headers and WebSocket frames),
// clients that never read, floods of tiny frames, absurd frame lengths, close
// storms, half-open and connect-and-drop clients, pipelined garbage, running
// out of file descriptors, and a flood past maxConnections.
//
// Every case ends the same way: the server is alive, the offending
// connections were closed with the right status or code, a well-behaved
// client is still served, and "nothing lost, nothing leaked": the live
// counters of App::stats() return to their baseline (connections 0,
// webSockets 0, writeQueueBytes 0, wslayContexts as before the case). The
// last case also checks that the process RSS returns within kRssTolerance of
// its pre-burst value once a load burst has left.

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ws_client.h"

using namespace spry::test;
using spry::App;
using spry::BackpressurePolicy;
using spry::HttpOptions;
using spry::Message;
using spry::Request;
using spry::Response;
using spry::WebSocket;
using spry::WebSocketOptions;

#if defined(__SANITIZE_ADDRESS__)
#define HOSTILE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOSTILE_ASAN 1
#endif
#endif

namespace {

// RSS may exceed its pre-burst value by this much once the burst has left:
// glibc keeps some freed memory in its arenas and thread caches even after
// malloc_trim(0), and the loop's buffers stay allocated. A leak of one
// connection or one message per client of the burst is well above it.
[[maybe_unused]] constexpr std::size_t kRssTolerance = 8u << 20;

// Short timeouts, so that every defence fires within a test's time.
HttpOptions shortHttp() {
  HttpOptions o;
  o.headerTimeout = 200ms;
  o.bodyTimeout = 200ms;
  o.keepAliveTimeout = 1000ms;
  o.lingerTimeout = 300ms;
  return o;
}

WebSocketOptions shortWs() {
  WebSocketOptions o;
  o.maxMessageBytes = 64 * 1024;
  o.idleTimeout = 300ms;
  o.pingInterval = 0ms;
  o.closeTimeout = 200ms;
  o.maxBackpressureBytes = 64 * 1024;
  return o;
}

// GET / → "ok"; POST /size → the body's size; ws /echo (with `ws` options).
void routes(App& app, Probe& p, const WebSocketOptions& ws = shortWs()) {
  app.get("/", [](Request&) { return "ok"; });
  app.post("/size", [](Request& req) { return std::to_string(req.text().size()); });
  app.ws(
      "/echo", [&p](WebSocket ws, Request&) { echo(p, ws); }, ws);
}

// A well-behaved client gets correct service: an HTTP request and a full
// WebSocket round trip with a clean close handshake.
void expectService(std::uint16_t port) {
  auto r = request(port, get("/"));
  REQUIRE_MESSAGE(r, "a well-behaved HTTP client got no answer");
  CHECK(r->status == 200);
  CHECK(r->body == "ok");
  WsClient c(port);
  REQUIRE_MESSAGE(c.open("/echo"), "a well-behaved WebSocket client could not connect");
  REQUIRE(c.sendText("still here"));
  auto f = c.readMessage();
  REQUIRE_MESSAGE(f, "a well-behaved WebSocket client got no echo");
  CHECK(f->payload == "still here");
  REQUIRE(c.sendClose(1000));
  auto closing = c.readClose();
  REQUIRE(closing);
  CHECK(closing->closeCode() == 1000);
  CHECK(c.raw().waitClosed());
}

// The live counters return to `base` (polled for up to `timeout`: generous,
// as a loaded CI machine may starve the server's thread for a while).
void expectBaseline(const App& app, const spry::Stats& base,
                    std::chrono::milliseconds timeout = 3000ms) {
  waitUntil(
      [&] {
        auto s = app.stats();
        return s.connections == 0 && s.webSockets == 0 && s.writeQueueBytes == 0 &&
               s.wslayContexts == base.wslayContexts && s.subscribedTopics == base.subscribedTopics;
      },
      timeout);
  auto s = app.stats();
  CHECK(s.connections == 0);
  CHECK(s.webSockets == 0);
  CHECK(s.writeQueueBytes == 0);
  CHECK(s.wslayContexts == base.wslayContexts);
  CHECK(s.subscribedTopics == base.subscribedTopics);
}

// Resident set size of this process (server and clients both), in bytes.
std::size_t rssBytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// Open descriptors of this process.
struct FdCount {
  int count = 0;
  std::vector<int> fds;
  // The descriptor limit that leaves `room` free numbers below it.
  rlim_t limitLeaving(int room) const {
    int limit = 0;
    while (limit - static_cast<int>(
                       std::count_if(fds.begin(), fds.end(), [&](int fd) { return fd < limit; })) <
           room) {
      ++limit;
    }
    return static_cast<rlim_t>(limit);
  }
};
FdCount openFds() {
  FdCount out;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return out;
  const int own = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd == own) continue;
    ++out.count;
    out.fds.push_back(fd);
  }
  ::closedir(d);
  return out;
}

double cpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

}  // namespace

// ------------------------------------------------------------ slow-loris

TEST_CASE("hostile: slow-loris on headers gets 408 after headerTimeout, others are served") {
  App app({}, shortHttp());
  Probe p;
  routes(app, p);
  TestServer server(app);
  const auto base = app.stats();

  // Headers that would take 5 s to drip; the deadline counts from the first
  // byte, not the last, so each loris is answered long before.
  constexpr int kLoris = 20;
  const std::string head = "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + std::string(100, 'a');
  std::vector<std::unique_ptr<RawClient>> loris;
  for (int i = 0; i < kLoris; ++i) loris.push_back(std::make_unique<RawClient>(server.port()));
  std::vector<std::string> got(kLoris);
  std::vector<bool> answered(kLoris, false);
  int served = 0;
  auto start = std::chrono::steady_clock::now();
  for (std::size_t pos = 0; pos < head.size(); ++pos) {
    if (std::all_of(answered.begin(), answered.end(), [](bool b) { return b; })) break;
    if (std::chrono::steady_clock::now() - start > 2500ms) break;
    for (int i = 0; i < kLoris; ++i) {
      if (answered[i]) continue;
      // An attacker stops once answered; a send into a lingering or closed
      // connection may fail, which is fine.
      loris[i]->send(head.substr(pos, 1));
      if (loris[i]->readable()) {
        got[i] += loris[i]->readSome(0ms);
        if (got[i].find("\r\n\r\n") != std::string::npos || loris[i]->closed()) answered[i] = true;
      }
    }
    // A well-behaved client meanwhile.
    auto r = request(server.port(), get("/"));
    if (r && r->status == 200) ++served;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(served > 0);
  for (int i = 0; i < kLoris; ++i) {
    CAPTURE(i);
    CHECK_MESSAGE(answered[i], "a slow-loris client was not answered within 2.5 s");
    CHECK(got[i].rfind("HTTP/1.1 408 ", 0) == 0);
    CHECK(got[i].find("Connection: close") != std::string::npos);
    CHECK(loris[i]->waitClosed(1500ms));
  }
  loris.clear();
  expectService(server.port());
  expectBaseline(app, base);
}

TEST_CASE("hostile: WebSocket slow-loris") {
  App app({}, shortHttp());
  Probe p;
  WebSocketOptions o = shortWs();
  o.maxMessageBytes = 1024;
  routes(app, p, o);
  TestServer server(app);
  const auto base = app.stats();

  SUBCASE("a frame dripped a byte every 50 ms is not idle: it arrives whole, the socket stays") {
    // idleTimeout counts from the last byte received: a dripping client is
    // not idle, and spry has no message-completion timeout, so one byte per
    // idleTimeout keeps a socket open for ever. What bounds the damage is
    // maxMessageBytes (checked at the frame header, next subcase: a half-sent
    // message never holds more) and maxConnections.
    WsClient c(server.port());
    REQUIRE(c.open("/echo"));
    const std::string payload = "drip-drip-drip";  // 20 bytes framed: ~1 s > idleTimeout
    auto start = std::chrono::steady_clock::now();
    REQUIRE(c.raw().sendSlowly(WsClient::frame(ws::kText, payload), 50ms));
    CHECK(std::chrono::steady_clock::now() - start > o.idleTimeout);
    auto f = c.readMessage();
    REQUIRE(f);
    CHECK(f->payload == payload);
    CHECK(p.closed == 0);
    // A client that stops mid-frame is idle: Close 1001, and as it never
    // answers (its bytes would be taken as payload), TCP is dropped after
    // closeTimeout. Other clients are served meanwhile.
    REQUIRE(c.raw().send(WsClient::frame(ws::kText, "never finished").substr(0, 9)));
    expectService(server.port());
    auto closing = c.readClose(1500ms, false);
    REQUIRE(closing);
    CHECK(closing->closeCode() == 1001);
    CHECK(c.raw().waitClosed(1500ms));
    REQUIRE(p.waitClosed(2));  // expectService's socket too
    auto codes = p.takeCodes();
    CHECK(std::count(codes.begin(), codes.end(), 1001) == 1);
  }
  SUBCASE("a header announcing more than maxMessageBytes is refused before any payload") {
    // So a dripping client never makes the server hold more than
    // maxMessageBytes of a message, whether one frame or fragments.
    WsClient one(server.port());
    REQUIRE(one.open("/echo"));
    REQUIRE(one.raw().send(WsClient::frame(ws::kBinary, std::string(1025, 'x')).substr(0, 8)));
    CHECK(one.readCloseCode() == 1009);
    CHECK(one.raw().waitClosed());

    WsClient frag(server.port());
    REQUIRE(frag.open("/echo"));
    REQUIRE(frag.sendFrame(ws::kBinary, std::string(1000, 'x'), false));
    REQUIRE(frag.raw().send(
        WsClient::frame(ws::kContinuation, std::string(100, 'x'), false).substr(0, 6)));
    CHECK(frag.readCloseCode() == 1009);
    CHECK(frag.raw().waitClosed());
    REQUIRE(p.waitClosed(2));
    CHECK(p.takeCodes() == std::vector<int>{1009, 1009});
    expectService(server.port());
  }
  expectBaseline(app, base);
}

// ------------------------------------------------------ clients that never read

TEST_CASE("hostile: a client that never reads while the server keeps sending") {
  constexpr std::size_t kChunk = 16 * 1024;
  constexpr std::size_t kLimit = 64 * 1024;
  App app({}, shortHttp());
  Probe p;
  routes(app, p);
  std::atomic<std::size_t> peak{0};
  std::atomic<int> aborted{0};
  // A timer sends 16 KiB every millisecond, whatever add() says.
  WebSocketOptions firehose = shortWs();
  firehose.idleTimeout = 0ms;
  firehose.maxBackpressureBytes = kLimit;
  firehose.backpressure = BackpressurePolicy::kClose;
  app.ws(
      "/firehose",
      [&](WebSocket ws, Request&) {
        ++p.opened;
        auto timer = std::make_shared<spry::Timer>();
        *timer = ws.loop().setInterval(1ms, [ws, &peak] {
          ws.add(Message::binary(std::string(kChunk, 'f')));
          peak = std::max(peak.load(), ws.bufferedAmount());
        });
        ws.onClose([timer, &p](std::uint16_t code, std::string_view) {
          timer->cancel();
          p.record(code);
        });
      },
      firehose);
  // An endless stream that respects BodyWriter backpressure.
  app.get("/stream", [&](Request&) {
    return Response::stream([&](spry::BodyWriter w) {
      auto pump = std::make_shared<std::function<void()>>();
      *pump = [w, &peak] {
        while (w.write(std::string(kChunk, 's'))) peak = std::max(peak.load(), w.bufferedAmount());
        peak = std::max(peak.load(), w.bufferedAmount());
      };
      w.onDrain([pump] { (*pump)(); });
      w.onAbort([&aborted, w] {
        ++aborted;
        w.onDrain({});  // drops the pump
      });
      (*pump)();
    });
  });
  TestServer server(app);
  const auto base = app.stats();

  SUBCASE("WebSocket, kClose: the send buffer stays bounded, then 1008") {
    WsClient c(server.port());
    c.raw().setReceiveBuffer(4096);
    REQUIRE(c.open("/firehose"));
    // Never reads. The kernel buffers fill, then the limit closes it; as the
    // client does not answer the Close either, TCP is dropped after closeTimeout.
    REQUIRE(p.waitClosed(1, 5000ms));
    CHECK(p.lastCode == 1008);
    CHECK(peak.load() > kLimit);
    CHECK(peak.load() <= kLimit + kChunk + 16);
    expectService(server.port());
  }
  SUBCASE("HTTP stream: output bounded by streamHighWaterBytes; the client's reset aborts it") {
    RawClient c(server.port());
    c.setReceiveBuffer(4096);
    REQUIRE(c.send(get("/stream")));
    // Wait until the kernel buffers are full and the stream waits for a drain.
    std::size_t maxQueued = 0;
    auto until = std::chrono::steady_clock::now() + 600ms;
    while (std::chrono::steady_clock::now() < until) {
      maxQueued = std::max(maxQueued, app.stats().writeQueueBytes);
      std::this_thread::sleep_for(5ms);
    }
    const std::size_t bound = shortHttp().streamHighWaterBytes + kChunk + 32;
    CHECK(peak.load() > 0);
    CHECK(peak.load() <= bound);
    CHECK(maxQueued <= bound);
    // Well inside sendTimeout (30 s): the stream waits for the client.
    CHECK(app.stats().connections == 1);
    expectService(server.port());
    c.reset();
    CHECK(waitUntil([&] { return aborted == 1; }));
  }
  expectBaseline(app, base);
}

// --------------------------------------------------------------- floods

TEST_CASE("hostile: a flood of 100k one-byte frames in one write is echoed in order") {
  constexpr int kFrames = 100'000;
  constexpr std::size_t kLimit = 64 * 1024;
  App app({}, shortHttp());
  Probe p;
  std::atomic<std::size_t> peak{0};
  WebSocketOptions o = shortWs();
  o.maxBackpressureBytes = kLimit;  // kPauseReading
  app.get("/", [](Request&) { return "ok"; });
  app.ws(
      "/echo",
      [&](WebSocket ws, Request&) {
        p.watch(ws);
        ws.listen([ws, &p, &peak](const Message& m) {
          ++p.messages;
          ws.add(m);
          peak = std::max(peak.load(), ws.bufferedAmount());
        });
      },
      o);
  TestServer server(app);
  const auto base = app.stats();

  WsClient c(server.port());
  REQUIRE(c.open("/echo"));
  std::string flood;
  flood.reserve(kFrames * 7);
  for (int i = 0; i < kFrames; ++i) {
    flood += WsClient::frame(ws::kBinary, std::string(1, static_cast<char>(i % 251)));
  }
  std::thread sender([&] { c.raw().send(flood); });
  // Parse the echoes in place (each is 0x82 0x01 <byte>).
  std::string in;
  std::size_t at = 0;
  int echoed = 0;
  bool inOrder = true;
  auto until = std::chrono::steady_clock::now() + 8000ms;
  while (echoed < kFrames && inOrder && std::chrono::steady_clock::now() < until) {
    std::string got = c.raw().readSome(500ms);
    if (got.empty() && c.raw().closed()) break;
    in += got;
    while (in.size() - at >= 3) {
      if (in[at] != '\x82' || in[at + 1] != '\x01' ||
          in[at + 2] != static_cast<char>(echoed % 251)) {
        inOrder = false;
        break;
      }
      at += 3;
      ++echoed;
    }
    if (at > (1u << 20)) {
      in.erase(0, at);
      at = 0;
    }
  }
  sender.join();
  CHECK(inOrder);
  CHECK(echoed == kFrames);
  CHECK(p.messages == kFrames);
  // Reading paused at the limit: at most one read buffer's worth of echoes over it.
  CHECK(peak.load() <= kLimit + 64 * 1024);
  CHECK(p.closed == 0);
  expectService(server.port());
  REQUIRE(c.sendClose(1000));
  CHECK(c.readCloseCode() == 1000);
  CHECK(c.raw().waitClosed());
  expectBaseline(app, base);
}

TEST_CASE("hostile: absurd frame lengths: 2^63 and more is 1002, 2^62 is 1009") {
  App app({}, shortHttp());
  Probe p;
  routes(app, p);
  TestServer server(app);
  const auto base = app.stats();

  struct Case {
    std::uint64_t length;
    int code;
  };
  const Case cases[] = {
      {std::uint64_t{1} << 63, 1002},  // the most significant bit must be 0
      {~std::uint64_t{0}, 1002},
      {std::uint64_t{1} << 62, 1009},  // valid, but over maxMessageBytes
      {std::uint64_t{1} << 32, 1009},
  };
  int n = 0;
  for (const auto& k : cases) {
    CAPTURE(k.length);
    WsClient c(server.port());
    REQUIRE(c.open("/echo"));
    REQUIRE(c.raw().send(WsClient::frameHeader(ws::kBinary, k.length) + "some payload"));
    CHECK(c.readCloseCode() == k.code);
    CHECK(c.raw().waitClosed());
    REQUIRE(p.waitClosed(++n));
    CHECK(p.lastCode == k.code);
  }
  expectService(server.port());
  expectBaseline(app, base);
}

TEST_CASE("hostile: close storm: 500 clients upgrade, send Close and drop at once") {
  constexpr int kClients = 500;
  App app({}, shortHttp());
  Probe p;
  // Opening 500 clients one after another can take longer than shortWs()'s
  // 300 ms idle timeout on a loaded machine (seen under ASan in CI): the
  // first sockets were then closed as idle (1001) before their Close. This
  // test is about the storm, not the idle timeout.
  WebSocketOptions ws = shortWs();
  ws.idleTimeout = 10s;
  routes(app, p, ws);
  TestServer server(app);
  const auto base = app.stats();

  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<WsClient>(server.port()));
    REQUIRE(clients.back()->open("/echo"));
  }
  REQUIRE(waitUntil([&] { return p.opened == kClients; }));
  for (int i = 0; i < kClients; ++i) {
    clients[i]->sendClose(1000, "bye");
    if (i % 2) clients[i]->raw().reset();  // RST: the Close may be lost
    clients[i].reset();                    // FIN
  }
  CHECK(p.waitClosed(kClients, 3000ms));
  auto codes = p.takeCodes();
  CHECK(codes.size() == static_cast<std::size_t>(kClients));
  CHECK(std::all_of(codes.begin(), codes.end(), [](int c) { return c == 1000 || c == 1006; }));
  CHECK(std::count(codes.begin(), codes.end(), 1000) >= kClients / 2);  // all FIN ones
  expectBaseline(app, base);
  expectService(server.port());
  expectBaseline(app, base);
}

// ------------------------------------------------------ silent and vanishing peers

TEST_CASE("hostile: half-open clients are closed by the timeouts") {
  App app({}, shortHttp());
  Probe p;
  routes(app, p);
  // A route whose liveness is pings only: a peer that vanished never answers.
  WebSocketOptions pinged = shortWs();
  pinged.idleTimeout = 0ms;
  pinged.pingInterval = 100ms;
  pinged.pongTimeout = 100ms;
  app.ws(
      "/pinged", [&p](WebSocket ws, Request&) { p.watch(ws); }, pinged);
  TestServer server(app);
  const auto base = app.stats();

  // Clients that connect and then go silent without closing. (A peer that
  // vanished without FIN looks the same to the server: nothing arrives.)
  std::vector<std::unique_ptr<RawClient>> silent, partial;
  std::vector<std::unique_ptr<WsClient>> idle, dead;
  for (int i = 0; i < 10; ++i) {
    silent.push_back(std::make_unique<RawClient>(server.port()));
    partial.push_back(std::make_unique<RawClient>(server.port()));
    REQUIRE(partial.back()->send("GET / HTTP/1.1\r\nHost:"));
    idle.push_back(std::make_unique<WsClient>(server.port()));
    REQUIRE(idle.back()->open("/echo"));
    dead.push_back(std::make_unique<WsClient>(server.port()));
    REQUIRE(dead.back()->open("/pinged"));
  }
  // The server closes them all while the clients still hold their sockets.
  REQUIRE(p.waitClosed(20, 3000ms));
  expectBaseline(app, base);
  auto codes = p.takeCodes();
  CHECK(std::count(codes.begin(), codes.end(), 1001) == 10);  // idleTimeout
  CHECK(std::count(codes.begin(), codes.end(), 1006) == 10);  // no pong: TCP dropped
  for (int i = 0; i < 10; ++i) {
    CAPTURE(i);
    // Never sent a byte: closed after headerTimeout without an answer.
    CHECK(silent[i]->waitClosed(100ms));
    CHECK(silent[i]->buffer().empty());
    // Began a request: 408.
    auto r = readResponse(*partial[i], false, 100ms);
    REQUIRE(r);
    CHECK(r->status == 408);
    // Idle WebSocket: Close 1001, unanswered, then TCP closed.
    auto f = idle[i]->readClose(100ms, false);
    REQUIRE(f);
    CHECK(f->closeCode() == 1001);
    CHECK(idle[i]->raw().waitClosed(100ms));
    // Unanswered pings, then TCP closed without a Close.
    std::optional<WsFrame> g;
    int pings = 0;
    while ((g = dead[i]->readFrame(100ms))) pings += g->opcode == ws::kPing;
    CHECK(pings == 1);
    CHECK(dead[i]->raw().closed());
  }
  expectService(server.port());
  expectBaseline(app, base);
}

TEST_CASE("hostile: 3,000 connect-and-drop clients leave nothing behind") {
  constexpr int kClients = 3000;
  App app({}, shortHttp());
  Probe p;
  routes(app, p);
  TestServer server(app);
  const auto base = app.stats();
  const FdCount fdsBefore = openFds();

  const std::string upgrade = WsClient::handshakeRequest("/echo");
  for (int i = 0; i < kClients; ++i) {
    // Bursts of 250: more than the listen backlog (511) at once would have
    // the kernel drop handshakes, and those connections arrive seconds later
    // (SYN-ACK retransmits), after the check below.
    if (i % 250 == 0) waitUntil([&] { return app.stats().connections == 0; }, 5000ms);
    RawClient c(server.port());
    switch (i % 5) {
      case 0:
        break;  // connect, FIN
      case 1:
        c.reset();
        break;  // connect, RST
      case 2:
        c.send("GET / HT");
        break;  // half a request, FIN
      case 3:
        c.send(get("/"));
        c.reset();
        break;  // a request, RST before the answer
      case 4:
        c.send(upgrade);
        c.reset();
        break;  // an upgrade, RST
    }
  }
  // 10 s: a handshake the kernel had to retry (SYN-ACK resent after 1, 3
  // and 7 s on a loaded machine) is accepted that late, and closed at once.
  expectBaseline(app, base, 10'000ms);
  CHECK(p.opened == p.closed);
  // The server's descriptors are all released (the clients' too).
  CHECK(waitUntil([&] { return openFds().count == fdsBefore.count; }));
  expectService(server.port());
  expectBaseline(app, base);
}

TEST_CASE("hostile: pipelined garbage after valid requests: answers, then 400, then close") {
  App app({}, shortHttp());
  Probe p;
  routes(app, p);
  TestServer server(app);
  const auto base = app.stats();

  const std::string garbage[] = {
      std::string("\x01\x02\xff\xfe garbage\r\n\r\n", 15),
      "GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
      "POST /size HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
  };
  for (const auto& junk : garbage) {
    CAPTURE(junk);
    RawClient c(server.port());
    REQUIRE(c.send(get("/") + post("/size", "12345") + junk + get("/")));
    auto a = readResponse(c);
    REQUIRE(a);
    CHECK(a->status == 200);
    CHECK(a->body == "ok");
    auto b = readResponse(c);
    REQUIRE(b);
    CHECK(b->status == 200);
    CHECK(b->body == "5");
    auto e = readResponse(c);
    REQUIRE(e);
    CHECK(e->status == 400);
    CHECK(e->headers.get("Connection") == "close");
    // Nothing after the 400: the trailing valid request is not answered.
    CHECK(c.waitClosed());
    CHECK(c.buffer().empty());
  }
  expectService(server.port());
  expectBaseline(app, base);
}

// ------------------------------------------------------ out of descriptors

namespace {

struct Exhaustion {
  double cpu = 0;        // CPU seconds of this process while at the limit
  double wall = 0;       // over this many seconds
  std::size_t held = 0;  // connections the server held then
};

// Lowers this process's descriptor limit to `limit`, while a child process
// (with the normal limit) opens 200 connections at once, then one more every
// 250 us while the CPU time of this process is measured over one second;
// then the child exits (closing every connection) and the limit is restored.
Exhaustion exhaustDescriptors(const App& app, std::uint16_t port, rlim_t limit) {
  Exhaustion out;
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit low = saved;
  low.rlim_cur = limit;
  int ready[2], go[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(go) == 0);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Plain system calls only: this is a fork of a multithreaded process.
    ::setrlimit(RLIMIT_NOFILE, &saved);
    ::close(ready[0]);
    ::close(go[1]);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    auto connectOne = [&] {
      // Non-blocking: with a full backlog a blocking connect would hang.
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (s >= 0) ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    };
    for (int i = 0; i < 200; ++i) connectOne();
    ::usleep(50'000);
    (void)!::write(ready[1], "r", 1);
    ::fcntl(go[0], F_SETFL, O_NONBLOCK);
    char b;
    for (int i = 0; i < 8000 && ::read(go[0], &b, 1) != 1; ++i) {
      connectOne();
      ::usleep(250);
    }
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(go[0]);
  if (pid > 0) {
    char b = 0;
    CHECK(::read(ready[0], &b, 1) == 1);
    std::this_thread::sleep_for(100ms);
    const double cpu0 = cpuSeconds();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(1000ms);
    out.cpu = cpuSeconds() - cpu0;
    out.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out.held = app.stats().connections;
    (void)!::write(go[1], "g", 1);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
  ::close(ready[0]);
  ::close(go[1]);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  REQUIRE(pid > 0);
  return out;
}

// The server thread must not busy-loop: a bound on this process's CPU time
// (the test thread sleeps meanwhile), not a performance benchmark. A server
// that does not spin uses about 2% of the second here; one that spins used
// 35% on a loaded 2-core machine and a whole core on an idle one.
void expectNoBusyLoop(const Exhaustion& r, std::size_t room) {
  CAPTURE(r.cpu);
  CAPTURE(r.wall);
  CAPTURE(r.held);
  CHECK_MESSAGE(r.cpu < 0.2 * r.wall, "the server busy-loops when accept() fails with EMFILE");
  // Only what fitted under the limit was accepted (about `room`: a few
  // descriptors open or close around the count), not the 200+ clients.
  CHECK(r.held > 0);
  CHECK(r.held <= room + 8);
}

}  // namespace

TEST_CASE("hostile: out of file descriptors: no busy loop, and service resumes") {
  // Idle connections keep their descriptors for the whole case.
  HttpOptions http = shortHttp();
  http.headerTimeout = 10'000ms;
  http.keepAliveTimeout = 10'000ms;
  App app({}, http);
  Probe p;
  routes(app, p);
  LogCapture logs(spry::LogLevel::kWarn);  // "accept failed" lines

  SUBCASE("one loop: accepting pauses while accept() fails with EMFILE") {
    // spry accepts on its own (no libuv reserve descriptor): every EMFILE
    // reaches the server, which logs it and pauses accepting.
    TestServer server(app, {.port = 0, .maxConnections = 100'000});
    const auto base = app.stats();
    expectNoBusyLoop(exhaustDescriptors(app, server.port(), openFds().limitLeaving(32)), 32);
    CHECK(logs.contains({"accept failed", "too many open files"}));
    // The child's exit closed everything: service resumes.
    expectBaseline(app, base, 5000ms);
    expectService(server.port());
    expectBaseline(app, base);
  }
  SUBCASE("two loops in one process") {
    // Both loops accept from the same port (SO_REUSEPORT) and both hit the
    // limit: each pauses on its own.
    std::thread listener([&] {
      app.listen({.port = 0, .threads = 2, .handleSignals = false, .maxConnections = 100'000});
    });
    REQUIRE(waitUntil([&] { return app.isListening() && app.port() != 0; }));
    const auto base = app.stats();
    expectNoBusyLoop(exhaustDescriptors(app, app.port(), openFds().limitLeaving(32)), 32);
    expectBaseline(app, base, 5000ms);
    expectService(app.port());
    expectBaseline(app, base);
    app.stop(2000ms);
    listener.join();
  }
}

// ------------------------------------------------------ the connection cap

TEST_CASE("hostile: a flood past maxConnections gets 503s; served again once below the cap") {
  constexpr std::size_t kCap = 10;
  App app({}, shortHttp());
  Probe p;
  routes(app, p);
  TestServer server(app, {.port = 0, .maxConnections = kCap});
  const auto base = app.stats();

  std::vector<std::unique_ptr<RawClient>> held;
  for (std::size_t i = 0; i < kCap; ++i) {
    held.push_back(std::make_unique<RawClient>(server.port()));
    REQUIRE(held.back()->send(get("/")));
    auto r = readResponse(*held.back());
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  for (int i = 0; i < 50; ++i) {
    CAPTURE(i);
    RawClient c(server.port());
    auto r = readResponse(c);
    REQUIRE(r);
    CHECK(r->status == 503);
    CHECK(c.waitClosed());
  }
  // The held clients were not disturbed.
  for (auto& c : held) {
    REQUIRE(c->send(get("/")));
    auto r = readResponse(*c);
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  held.clear();
  REQUIRE(waitUntil([&] { return app.stats().connections == 0; }));
  expectService(server.port());
  expectBaseline(app, base);
}

// ------------------------------------------------------ memory after a burst

TEST_CASE("hostile: RSS returns near its pre-burst value after a load burst leaves") {
  // Every client connects before any sends: no timeout may fire meanwhile.
  HttpOptions http = shortHttp();
  http.headerTimeout = 10'000ms;
  App app({}, http);
  Probe p;
  WebSocketOptions o = shortWs();
  o.maxMessageBytes = 1 << 20;
  o.maxBackpressureBytes = 1 << 20;
  o.idleTimeout = 10'000ms;
  routes(app, p, o);
  TestServer server(app);
  const auto base = app.stats();

  // 300 WebSockets that each send and get back 64 KiB, and 300 HTTP
  // requests with 64 KiB bodies, all connected at once.
  std::size_t during = 0;
  auto burst = [&](int n) {
    const std::string big(64 * 1024, 'm');
    std::vector<std::unique_ptr<WsClient>> sockets;
    std::vector<std::unique_ptr<RawClient>> https;
    for (int i = 0; i < n; ++i) {
      sockets.push_back(std::make_unique<WsClient>(server.port()));
      REQUIRE(sockets.back()->open("/echo"));
      https.push_back(std::make_unique<RawClient>(server.port()));
    }
    for (int i = 0; i < n; ++i) {
      REQUIRE(sockets[i]->sendBinary(big));
      REQUIRE(https[i]->send(post("/size", big)));
    }
    for (int i = 0; i < n; ++i) {
      auto f = sockets[i]->readMessage();
      REQUIRE(f);
      CHECK(f->payload.size() == big.size());
      auto r = readResponse(*https[i]);
      REQUIRE(r);
      CHECK(r->body == std::to_string(big.size()));
    }
    during = rssBytes();
    for (int i = 0; i < n; ++i) {
      sockets[i]->sendClose(1000);
      if (i % 2) sockets[i]->raw().reset();
    }
  };
  burst(50);  // warm-up: the loop's buffers, the allocator's arenas
  expectBaseline(app, base);
  ::malloc_trim(0);
  const std::size_t before = rssBytes();
  burst(300);
  expectBaseline(app, base, 5000ms);
  ::malloc_trim(0);
  const std::size_t after = rssBytes();
  CAPTURE(before);
  CAPTURE(during);
  CAPTURE(after);
#ifdef HOSTILE_ASAN
  // ASan's quarantine keeps freed memory resident on purpose.
  MESSAGE("RSS before " << before << ", during " << during << ", after " << after
                        << " (not checked under ASan)");
#else
  CHECK(after <= before + kRssTolerance);
#endif
  expectService(server.port());
  expectBaseline(app, base);
}
