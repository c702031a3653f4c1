// hello: routes, a group with middleware, and an exception filter.
//   GET /hello/:name        → "Hello, NAME"
//   GET /api/time           → JSON, behind an API-key middleware (key: "letmein")
//   GET /api/users/:id      → 404 through an exception filter for unknown users
//   GET /slow               → answered 200 ms later without blocking the loop

#include <chrono>
#include <stdexcept>
#include <string>

#include "../common/server_cli.h"

namespace {

struct UnknownUser : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ApiClient {
  std::string key;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"spry hello example"};
  examples::ServerFlags flags;
  examples::addServerFlags(cli, flags);
  if (int status = examples::parseFlags(cli, argc, argv); status >= 0) return status;

  spry::App app;

  // Global middleware: every response says who served it.
  app.use([](spry::Request&, const spry::Next& next) {
    auto res = next();
    res.header("Server", "spry");
    return res;
  });

  app.get("/", [](spry::Request&) { return "spry says hi. Try /hello/world\n"; });

  app.get("/hello/:name",
          [](spry::Request& req) { return "Hello, " + std::string(req.param("name")); });

  app.get("/slow", [](spry::Request& req) {
    auto later = req.defer();
    req.loop().setTimeout(std::chrono::milliseconds(200),
                          [later] { later.send(spry::Response::text("slept 200 ms\n")); });
    return later;
  });

  auto requireKey = [](spry::Request& req, const spry::Next& next) -> spry::Response {
    auto key = req.header("X-Api-Key");
    if (key != "letmein") throw spry::HttpError(401, "missing or wrong X-Api-Key");
    req.locals().set(ApiClient{std::string(key)});
    return next();
  };
  auto api = app.group("api", {requireKey});
  api.get("/time", [](spry::Request&) {
    auto now = std::chrono::system_clock::now().time_since_epoch();
    return nlohmann::json{
        {"unix_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now).count()}};
  });
  api.get("/users/:id", [](spry::Request& req) -> nlohmann::json {
    if (req.param("id") != "1") throw UnknownUser(std::string(req.param("id")));
    return {{"id", 1}, {"name", "Ada"}, {"client", req.locals().get<ApiClient>().key}};
  });

  app.filter<UnknownUser>(
      [](const UnknownUser& e, spry::Request&) -> std::optional<spry::Response> {
        return spry::Response::json({{"error", "no such user"}, {"id", e.what()}}, 404);
      });

  return examples::serve(app, flags);
}
