#include "harness.h"

using namespace spry::test;

TEST_CASE("keep-alive: one request answered once") {
  spry::App app;
  int calls = 0;
  app.get("/n", [&](spry::Request&) { return std::to_string(++calls); });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/n"));
  auto r = readResponse(c);
  REQUIRE(r);
  CHECK(r->body == "1");
  auto extra = c.readSome(300ms);
  CHECK(extra == "");
  c.send(get("/n"));
  auto r2 = readResponse(c);
  REQUIRE(r2);
  CHECK(r2->body == "2");
}

TEST_CASE("pipelining probe") {
  spry::App app;
  int calls = 0;
  app.get("/n", [&](spry::Request& req) { return std::to_string(++calls) + std::string(req.target()); });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/n?a") + get("/n?b") + get("/n?c"));
  for (int i = 0; i < 3; ++i) {
    auto r = readResponse(c);
    REQUIRE(r);
    MESSAGE(r->body);
  }
  auto extra = c.readSome(300ms);
  CHECK(extra == "");
}
