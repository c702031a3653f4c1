#include "harness.h"

using namespace spry::test;

TEST_CASE("smoke: a route answers over loopback and the loop closes cleanly") {
  spry::App app;
  app.get("/hello/:name",
          [](spry::Request& req) { return "Hello, " + std::string(req.param("name")); });
  TestServer server(app);
  auto r = request(server.port(), get("/hello/world"));
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "Hello, world");
}
