// Live counters and the connection cap.

#include "ws_client.h"

using namespace spry::test;

TEST_CASE("maxConnections: past the cap a new connection gets 503 and is closed") {
  spry::App app;
  app.get("/", [](spry::Request&) { return "ok"; });
  TestServer server(app, {.port = 0, .maxConnections = 2});
  RawClient a(server.port());
  RawClient b(server.port());
  // Make sure both are accepted before the third arrives.
  a.send(get("/"));
  b.send(get("/"));
  REQUIRE(readResponse(a));
  REQUIRE(readResponse(b));
  RawClient c(server.port());
  auto refused = readResponse(c);
  REQUIRE(refused);
  CHECK(refused->status == 503);
  CHECK(c.waitClosed());
  // The first two still work.
  a.send(get("/"));
  auto again = readResponse(a);
  REQUIRE(again);
  CHECK(again->status == 200);
}

TEST_CASE("stats: counters rise with connections and return to baseline") {
  spry::App app;
  app.get("/", [](spry::Request&) { return "ok"; });
  app.ws("/ws", [](spry::WebSocket ws, spry::Request&) {
    ws.subscribe("t");
    ws.listen([ws](const spry::Message& m) { ws.add(m); });
  });
  TestServer server(app);
  CHECK(app.stats().connections == 0);
  {
    RawClient http(server.port());
    WsClient ws(server.port());
    auto hs = ws.handshake("/ws");
    REQUIRE(hs);
    REQUIRE(hs->status == 101);
    http.send(get("/"));
    REQUIRE(readResponse(http));
    auto s = app.stats();
    CHECK(s.connections == 2);
    CHECK(s.webSockets == 1);
    CHECK(s.subscribedTopics == 1);
    CHECK(app.subscriberCount("t") == 1);
  }
  // Both clients are gone: wait for the server to notice.
  for (int i = 0; i < 200 && app.stats().connections != 0; ++i) std::this_thread::sleep_for(10ms);
  auto s = app.stats();
  CHECK(s.connections == 0);
  CHECK(s.webSockets == 0);
  CHECK(s.subscribedTopics == 0);
  CHECK(s.writeQueueBytes == 0);
  CHECK(s.wslayContexts == 0);
}
