// hello: routes, a group with middleware, and an exception filter.
//   GET /hello/:name        → "Hello, NAME"
//   GET /api/time           → JSON, behind an API-key middleware (key: "letmein")
//   GET /api/users/:id      → 404 through an exception filter for unknown users
//   GET /slow               → answered 200 ms later without blocking the loop
//   GET /calc/sum/:n        → 1 + 2 + ... + n, as a coroutine: it sleeps 10 ms
//                             on the loop, then sums on the thread pool; its
//                             group's coroutine middleware adds X-Took-Us

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

  // A coroutine middleware (it sees the final response even when the
  // handler answers later) on a group of coroutine routes. The app-wide
  // middleware above stays synchronous: it is on every request's path.
  auto timed = app.group(
      "calc", {[](spry::Request&, const spry::Next& next) -> spry::Task<spry::Response> {
        const auto start = std::chrono::steady_clock::now();
        auto res = co_await next();
        const auto took = std::chrono::steady_clock::now() - start;
        res.header(
            "X-Took-Us",
            std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
        co_return res;
      }});
  timed.get("/sum/:n", [](spry::Request& req) -> spry::Task<std::string> {
    co_await req.loop().sleep(std::chrono::milliseconds(10));
    long n = 0;
    try {
      n = std::stol(std::string(req.param("n")));
    } catch (const std::exception&) {
      throw spry::HttpError(400, "n must be a number");
    }
    if (n < 0 || n > 100'000'000) throw spry::HttpError(400, "n must be in 0..100000000");
    long s = co_await req.loop().work([n] {
      long s = 0;
      for (long i = 1; i <= n; ++i) s += i;
      return s;
    });
    co_return std::to_string(s) + "\n";
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
