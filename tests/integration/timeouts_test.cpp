// Send and message timeouts: a client that stops reading, or trickles one
// WebSocket message forever, loses its connection; one that reads slowly but
// steadily, or finishes its message in time, keeps it.

#include <atomic>
#include <memory>
#include <string>

#include "harness.h"
#include "ws_client.h"

using namespace spry;
using namespace spry::test;

namespace {

constexpr std::size_t kChunk = 16 * 1024;

HttpOptions http(std::chrono::milliseconds sendTimeout) {
  HttpOptions o;
  o.sendTimeout = sendTimeout;
  return o;
}

// A large response: far more than the kernel buffers of both sides hold.
std::string bigBody() {
  return std::string(32u << 20, 'b');
}

}  // namespace

TEST_CASE("sendTimeout: an HTTP client that reads nothing of a large response is dropped") {
  App app({}, http(300ms));
  const std::string body = bigBody();
  app.get("/big", [&](Request&) { return Response::text(body); });
  TestServer server(app);
  const auto base = app.stats();

  RawClient c(server.port());
  c.setReceiveBuffer(4096);
  REQUIRE(c.send(get("/big")));
  // Queued in libuv, then no progress: closed after ~300 ms (+ a sweep period).
  CHECK(waitUntil([&] { return app.stats().connections == base.connections; }, 3000ms));
  CHECK(app.stats().writeQueueBytes == 0);
}

TEST_CASE("sendTimeout: a slow but steady reader keeps its connection") {
  App app({}, http(500ms));
  const std::string body = bigBody();
  app.get("/big", [&](Request&) { return Response::text(body); });
  TestServer server(app);

  RawClient c(server.port());
  // A small window: each read below frees all of it, so the client's TCP
  // acknowledges progress every time (with a huge buffer it would only
  // announce a window once much of it was free, and look stalled meanwhile).
  c.setReceiveBuffer(64 * 1024);
  REQUIRE(c.send(get("/big")));
  // Reads a little every 50 ms for 1.5 s, three times the send timeout.
  for (int i = 0; i < 30; ++i) {
    std::this_thread::sleep_for(50ms);
    c.buffer() += c.readSome(20ms);
  }
  CHECK(c.buffer().size() > 0);
  CHECK(app.stats().connections == 1);
  CHECK(app.stats().writeQueueBytes > 0);  // the server did wait on this client
  // Then it reads the rest at full speed: the whole response arrives.
  auto head = c.readUntil("\r\n\r\n", 2000ms);
  REQUIRE(head);
  CHECK(head->find("Content-Length: " + std::to_string(body.size())) != std::string::npos);
  const bool filled = c.fill(body.size(), 20000ms);
  CAPTURE(c.buffer().size());
  CAPTURE(c.closed());
  REQUIRE(filled);
  CHECK(c.take(body.size()) == body);
}

TEST_CASE("sendTimeout: 0 disables it; the stream waits as long as the client lives") {
  App app({}, http(0ms));
  const std::string body = bigBody();
  app.get("/big", [&](Request&) { return Response::text(body); });
  TestServer server(app);

  RawClient c(server.port());
  c.setReceiveBuffer(4096);
  REQUIRE(c.send(get("/big")));
  std::this_thread::sleep_for(800ms);
  CHECK(app.stats().connections == 1);
  CHECK(app.stats().writeQueueBytes > 0);
}

TEST_CASE("sendTimeout: a WebSocket that reads nothing, under kDrop, is dropped") {
  App app;
  std::atomic<int> closes{0};
  std::atomic<int> lastCode{0};
  WebSocketOptions o;
  o.backpressure = BackpressurePolicy::kDrop;
  o.maxBackpressureBytes = 256 * 1024;
  o.sendTimeout = 300ms;
  app.ws(
      "/firehose",
      [&](WebSocket ws, Request&) {
        auto timer = std::make_shared<spry::Timer>();
        *timer =
            ws.loop().setInterval(1ms, [ws] { ws.add(Message::binary(std::string(kChunk, 'f'))); });
        ws.onClose([timer, &closes, &lastCode](std::uint16_t code, std::string_view) {
          timer->cancel();
          lastCode = code;
          ++closes;
        });
      },
      o);
  TestServer server(app);

  WsClient c(server.port());
  c.raw().setReceiveBuffer(4096);
  REQUIRE(c.open("/firehose"));
  // The client keeps its socket open and reads nothing. kDrop alone would keep
  // the socket forever; the send timeout drops TCP (no Close can get through).
  CHECK(waitUntil([&] { return closes == 1; }, 3000ms));
  CHECK(lastCode == 1006);
}

namespace {

struct MessageTimeoutApp {
  App app;
  std::atomic<int> messages{0};
  std::atomic<int> closes{0};
  std::atomic<int> lastCode{0};

  explicit MessageTimeoutApp(std::chrono::milliseconds messageTimeout) {
    WebSocketOptions o;
    o.messageTimeout = messageTimeout;
    o.idleTimeout = 0ms;
    o.closeTimeout = 300ms;  // the trickling client never answers our Close
    app.ws(
        "/ws",
        [this](WebSocket ws, Request&) {
          ws.listen([this](const Message&) { ++messages; });
          ws.onClose([this](std::uint16_t code, std::string_view) {
            lastCode = code;
            ++closes;
          });
        },
        o);
  }
};

}  // namespace

TEST_CASE("messageTimeout: a message trickled a byte at a time is closed with 1008") {
  MessageTimeoutApp t(300ms);
  TestServer server(t.app);
  WsClient c(server.port());
  REQUIRE(c.open("/ws"));
  // A first fragment, then the next frame one byte every 50 ms: every byte
  // resets the idle clock, none finishes the message.
  REQUIRE(c.sendFrame(ws::kText, "part one", false));
  const std::string rest = WsClient::frame(ws::kContinuation, std::string(200, 'x'));
  std::size_t sent = 0;
  std::uint16_t code = 0;
  for (; sent < rest.size() && code == 0; ++sent) {
    c.raw().send(rest.substr(sent, 1));
    if (c.raw().readable(50ms)) code = c.readCloseCode(500ms);
  }
  CHECK(code == 1008);
  CHECK(sent < 60);  // well before the message could finish (~3 s)
  CHECK(t.messages == 0);
  CHECK(waitUntil([&] { return t.closes == 1; }, 3000ms));
  CHECK(t.lastCode == 1008);
}

TEST_CASE("messageTimeout: a steady stream of messages cut mid-frame by every write is kept") {
  MessageTimeoutApp t(300ms);
  TestServer server(t.app);
  WsClient c(server.port());
  REQUIRE(c.open("/ws"));
  // Every write ends inside a frame, so the server is never between messages
  // after a read; each message still completes well within the timeout.
  std::string stream;
  for (int i = 0; i < 40; ++i) stream += WsClient::frame(ws::kText, "message " + std::to_string(i));
  const std::size_t step = stream.size() / 40 + 3;
  for (std::size_t at = 0; at < stream.size(); at += step) {
    c.raw().send(stream.substr(at, step));
    std::this_thread::sleep_for(30ms);  // 1.2 s in all, four times the timeout
  }
  CHECK(waitUntil([&] { return t.messages == 40; }));
  CHECK(t.closes == 0);
  REQUIRE(c.sendClose(1000));
  CHECK(c.readCloseCode() == 1000);
}

TEST_CASE("messageTimeout: 0 disables it") {
  MessageTimeoutApp t(0ms);
  TestServer server(t.app);
  WsClient c(server.port());
  REQUIRE(c.open("/ws"));
  REQUIRE(c.sendFrame(ws::kText, "part one", false));
  std::this_thread::sleep_for(600ms);
  CHECK(t.closes == 0);
  REQUIRE(c.sendFrame(ws::kContinuation, " and two"));
  CHECK(waitUntil([&] { return t.messages == 1; }));
}
