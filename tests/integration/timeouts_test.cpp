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
