// Loopback tests of coroutine HTTP handlers and middleware (issue 14): every
// return type ready and suspended, co_await next() around handlers that
// finish later, sync and coroutine middleware mixed, exception filters on a
// later throw, a dropped placeholder, Deferred under coroutine middleware,
// a client that leaves, pipelining, groups, and an app stopping while a
// handler sleeps.

#include <atomic>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "strings.h"

using namespace spry::test;
using spry::App;
using spry::HttpError;
using spry::Next;
using spry::Request;
using spry::Response;
using spry::Task;

namespace {

HttpResponse fetch(std::uint16_t port, const std::string& raw) {
  auto r = request(port, raw);
  REQUIRE(r);
  return *r;
}

HttpResponse only(RawClient& c) {
  auto r = readResponse(c);
  REQUIRE(r);
  return *r;
}

struct Teapot : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

TEST_CASE("coroutine handlers return every type a sync handler may, ready or suspended") {
  App app;
  app.get("/text/ready", [](Request&) -> Task<std::string> { co_return "ready"; });
  app.get("/text/later", [](Request& req) -> Task<std::string> {
    co_await req.loop().sleep(5ms);
    co_return std::string("later ") + std::string(req.path());
  });
  app.get("/cstr", [](Request& req) -> Task<const char*> {
    co_await req.loop().sleep(1ms);
    co_return "c string";
  });
  app.get("/json", [](Request& req) -> Task<nlohmann::json> {
    int v = co_await req.loop().work([] { return 41 + 1; });
    co_return nlohmann::json{{"v", v}};
  });
  app.get("/bytes", [](Request& req) -> Task<std::vector<std::byte>> {
    co_await req.loop().sleep(1ms);
    co_return std::vector<std::byte>{std::byte{'a'}, std::byte{0}, std::byte{'b'}};
  });
  app.get("/response", [](Request& req) -> Task<Response> {
    co_await req.loop().sleep(1ms);
    auto r = Response::text("made", 201);
    r.header("X-Made", "yes");
    co_return r;
  });
  app.get("/void/ready", [](Request&) -> Task<> { co_return; });
  app.get("/void/later", [](Request& req) -> Task<> { co_await req.loop().sleep(1ms); });
  app.get("/deferred", [](Request& req) -> Task<spry::Deferred> {
    co_await req.loop().sleep(1ms);
    auto d = req.defer();
    req.loop().setTimeout(5ms, [d] { d.send(Response::text("sent later")); });
    co_return d;
  });
  TestServer server(app);

  CHECK(fetch(server.port(), get("/text/ready")).body == "ready");
  CHECK(fetch(server.port(), get("/text/later")).body == "later /text/later");
  CHECK(fetch(server.port(), get("/cstr")).body == "c string");
  auto json = fetch(server.port(), get("/json"));
  CHECK(json.headers.get("Content-Type") == "application/json");
  CHECK(json.body == R"({"v":42})");
  auto bytes = fetch(server.port(), get("/bytes"));
  CHECK(bytes.headers.get("Content-Type") == "application/octet-stream");
  CHECK(bytes.body == std::string("a\0b", 3));
  auto made = fetch(server.port(), get("/response"));
  CHECK(made.status == 201);
  CHECK(made.body == "made");
  CHECK(made.headers.get("X-Made") == "yes");
  CHECK(fetch(server.port(), get("/void/ready")).status == 204);
  CHECK(fetch(server.port(), get("/void/later")).status == 204);
  CHECK(fetch(server.port(), get("/deferred")).body == "sent later");
  CHECK(server.onLoop([&] { return server.loop().isCurrentThread(); }));
}

TEST_CASE("the issue's /sum/:n: sleep, then the thread pool; the request's views stay valid") {
  App app;
  app.get("/sum/:n", [](Request& req) -> Task<Response> {
    co_await req.loop().sleep(10ms);
    int n = std::stoi(std::string(req.param("n")));
    int s = co_await req.loop().work([n] {
      int s = 0;
      for (int i = 1; i <= n; ++i) s += i;
      return s;
    });
    co_return Response::text(cat(std::to_string(s), " ", req.header("X-Tag")));
  });
  TestServer server(app);
  // Another request on the same connection follows at once: the first
  // request's views must not point into input that has been reused.
  RawClient c(server.port());
  c.send(get("/sum/100", "X-Tag: first\r\n") + get("/sum/10", "X-Tag: second\r\n"));
  CHECK(only(c).body == "5050 first");
  CHECK(only(c).body == "55 second");
}

TEST_CASE("coroutine middleware: co_await next() yields the final response of a later handler") {
  App app;
  std::atomic<int> sawPlaceholder{0};
  app.use([&](Request&, const Next& next) -> Task<Response> {
    Response pending = next();
    if (pending.isDeferred()) ++sawPlaceholder;
    auto res = co_await std::move(pending);
    res.header("X-Took", std::to_string(res.body().size()));
    co_return res;
  });
  app.get("/slow", [](Request& req) -> Task<std::string> {
    co_await req.loop().sleep(20ms);
    co_return "slow body";
  });
  app.get("/fast", [](Request&) { return "fast"; });
  TestServer server(app);
  auto slow = fetch(server.port(), get("/slow"));
  CHECK(slow.body == "slow body");
  CHECK(slow.headers.get("X-Took") == "9");
  CHECK(sawPlaceholder == 1);
  auto fast = fetch(server.port(), get("/fast"));
  CHECK(fast.headers.get("X-Took") == "4");
  CHECK(sawPlaceholder == 1);
}

TEST_CASE("coroutine middleware catches what a handler throws after suspending") {
  App app;
  app.use([](Request&, const Next& next) -> Task<Response> {
    try {
      co_return co_await next();
    } catch (const std::exception& e) {
      co_return Response::text(cat("caught: ", e.what()), 503);
    }
  });
  app.get("/throws", [](Request& req) -> Task<std::string> {
    co_await req.loop().sleep(5ms);
    throw std::runtime_error("later");
  });
  app.get("/throws-now", [](Request&) -> Task<std::string> {
    throw std::runtime_error("at once");
    co_return "never";
  });
  TestServer server(app);
  auto later = fetch(server.port(), get("/throws"));
  CHECK(later.status == 503);
  CHECK(later.body == "caught: later");
  auto now = fetch(server.port(), get("/throws-now"));
  CHECK(now.status == 503);
  CHECK(now.body == "caught: at once");
}

TEST_CASE("sync middleware around a suspended handler: its headers reach the final response") {
  App app;
  std::atomic<bool> wasPending{false};
  app.use([&](Request&, const Next& next) {
    Response res = next();
    wasPending = res.isDeferred();
    res.header("X-Sync", "1");
    res.header("X-Both", "from-sync");  // the final response's own value wins
    return res;
  });
  app.get("/later", [](Request& req) -> Task<Response> {
    co_await req.loop().sleep(5ms);
    auto r = Response::text("final", 202);
    r.header("X-Both", "from-handler");
    co_return r;
  });
  TestServer server(app);
  auto r = fetch(server.port(), get("/later"));
  CHECK(wasPending);
  CHECK(r.status == 202);
  CHECK(r.body == "final");
  CHECK(r.headers.get("X-Sync") == "1");
  CHECK(r.headers.get("X-Both") == "from-handler");
}

TEST_CASE("sync and coroutine middleware mix in any order") {
  // Each middleware appends its name to X-Order on the way out: the order
  // shows each ran once, around the right layer.
  auto sync = [](std::string name) {
    return [name](Request&, const Next& next) {
      Response res = next();
      res.header(cat("X-", name), "1");
      return res;
    };
  };
  auto co = [](std::string name) {
    return [name](Request& req, const Next& next) -> Task<Response> {
      // Captures die at the first suspension (CP.51): copy what is needed.
      std::string me = name;
      co_await req.loop().sleep(1ms);
      auto res = co_await next();
      std::string order(res.headers().get("X-Order"));
      res.header("X-Order", order.empty() ? me : order + "," + me);
      co_return res;
    };
  };
  App app;
  app.group("/so", {sync("s"), co("c")}).get("/x", [](Request& req) -> Task<std::string> {
    co_await req.loop().sleep(2ms);
    co_return "so";
  });
  app.group("/os", {co("c"), sync("s")}).get("/x", [](Request& req) -> Task<std::string> {
    co_await req.loop().sleep(2ms);
    co_return "os";
  });
  auto twice = app.group("/cc", {co("outer")});
  twice.use(co("inner"));
  twice.get("/x", [](Request& req) -> Task<std::string> {
    co_await req.loop().sleep(2ms);
    co_return "cc";
  });
  twice.get("/sync", [](Request&) { return "sync handler"; });
  TestServer server(app);

  auto so = fetch(server.port(), get("/so/x"));
  CHECK(so.body == "so");
  CHECK(so.headers.get("X-Order") == "c");
  CHECK(so.headers.get("X-s") == "1");
  auto os = fetch(server.port(), get("/os/x"));
  CHECK(os.body == "os");
  CHECK(os.headers.get("X-Order") == "c");
  CHECK(os.headers.get("X-s") == "1");
  auto cc = fetch(server.port(), get("/cc/x"));
  CHECK(cc.body == "cc");
  CHECK(cc.headers.get("X-Order") == "inner,outer");
  auto cs = fetch(server.port(), get("/cc/sync"));
  CHECK(cs.body == "sync handler");
  CHECK(cs.headers.get("X-Order") == "inner,outer");
}

TEST_CASE("exception filters apply to what a coroutine throws after suspending") {
  App app;
  app.filter<Teapot>([](const Teapot& e, Request&) -> std::optional<Response> {
    return Response::text(cat("filtered ", e.what()), 299);
  });
  app.get("/418", [](Request& req) -> Task<std::string> {
    co_await req.loop().sleep(2ms);
    throw HttpError(418, "short and stout");
  });
  app.get("/500", [](Request& req) -> Task<std::string> {
    co_await req.loop().sleep(2ms);
    throw std::runtime_error("boom");
  });
  app.get("/418-now", [](Request&) -> Task<std::string> {
    throw HttpError(418, "before suspending");
    co_return "never";
  });
  app.get("/custom", [](Request& req) -> Task<> {
    co_await req.loop().sleep(2ms);
    throw Teapot("teapot");
  });
  // A sync middleware sees only the placeholder: the later throw still
  // reaches the filters, with its headers.
  app.use([](Request&, const Next& next) {
    Response r = next();
    r.header("X-Mw", "1");
    return r;
  });
  TestServer server(app);
  LogCapture logs(spry::LogLevel::kError);
  auto teapot = fetch(server.port(), get("/418"));
  CHECK(teapot.status == 418);
  CHECK(teapot.body == "short and stout");
  CHECK(teapot.headers.get("X-Mw") == "1");
  auto now = fetch(server.port(), get("/418-now"));
  CHECK(now.status == 418);
  CHECK(now.body == "before suspending");
  CHECK(now.headers.get("X-Mw").empty());  // a sync throw unwinds through the middleware
  auto boom = fetch(server.port(), get("/500"));
  CHECK(boom.status == 500);
  CHECK(boom.body == "Internal Server Error");
  auto custom = fetch(server.port(), get("/custom"));
  CHECK(custom.status == 299);
  CHECK(custom.body == "filtered teapot");
}

TEST_CASE("a sync middleware that drops the placeholder answers; the coroutine still completes") {
  App app;
  std::atomic<int> completed{0};
  std::atomic<bool> viewsValid{false};
  app.use([](Request&, const Next& next) {
    Response ignored = next();
    return Response::text("mine");
  });
  app.get("/dropped/:id", [&](Request& req) -> Task<std::string> {
    co_await req.loop().sleep(30ms);
    if (req.param("id") == "7") viewsValid = req.header("X-Keep") == "kept" && !req.isAborted();
    ++completed;
    co_return "discarded";
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/dropped/7", "X-Keep: kept\r\n"));
  CHECK(only(c).body == "mine");
  // The connection goes on (the next request reuses pooled requests) while
  // the first one's coroutine still sleeps on its request.
  c.send(get("/dropped/8"));
  CHECK(only(c).body == "mine");
  CHECK(waitUntil([&] { return completed == 2; }));
  CHECK(viewsValid);
  CHECK_FALSE(c.readable(50ms));  // the discarded answers never reach the client
}

TEST_CASE("req.defer() under a coroutine middleware: co_await next() gets what send() sends") {
  App app;
  app.use([](Request&, const Next& next) -> Task<Response> {
    auto res = co_await next();
    res.header("X-Seen", res.body());
    co_return res;
  });
  app.get("/deferred", [](Request& req) {
    auto d = req.defer();
    req.loop().setTimeout(10ms, [d] { d.send(Response::text("by timer")); });
    return d;
  });
  app.get("/early", [](Request& req) {
    auto d = req.defer();
    CHECK(d.send(Response::text("before return")));
    return d;
  });
  TestServer server(app);
  auto r = fetch(server.port(), get("/deferred"));
  CHECK(r.body == "by timer");
  CHECK(r.headers.get("X-Seen") == "by timer");
  auto e = fetch(server.port(), get("/early"));
  CHECK(e.body == "before return");
  CHECK(e.headers.get("X-Seen") == "before return");
}

TEST_CASE("the client leaves while a handler is suspended: it completes, isAborted() is true") {
  App app;
  std::atomic<int> started{0}, completed{0}, middlewareDone{0};
  std::atomic<bool> abortedBefore{true}, abortedAfter{false};
  app.use([&](Request&, const Next& next) -> Task<Response> {
    auto res = co_await next();
    ++middlewareDone;
    co_return res;
  });
  app.get("/slow", [&](Request& req) -> Task<std::string> {
    abortedBefore = req.isAborted();
    ++started;
    co_await req.loop().sleep(100ms);
    abortedAfter = req.isAborted();
    ++completed;
    co_return std::string(req.path());
  });
  TestServer server(app);
  {
    RawClient c(server.port());
    c.send(get("/slow"));
    REQUIRE(waitUntil([&] { return started == 1; }));
    c.reset();
  }
  CHECK(waitUntil([&] { return completed == 1 && middlewareDone == 1; }));
  CHECK_FALSE(abortedBefore);
  CHECK(abortedAfter);
  // The server goes on serving.
  auto next = request(server.port(), get("/slow"));
  REQUIRE(next);
  CHECK(next->body == "/slow");
}

TEST_CASE("keep-alive and pipelining: suspended handlers are answered in order") {
  App app;
  app.get("/after/:ms", [](Request& req) -> Task<std::string> {
    int ms = std::stoi(std::string(req.param("ms")));
    co_await req.loop().sleep(std::chrono::milliseconds(ms));
    co_return cat("slept ", std::to_string(ms));
  });
  app.get("/now", [](Request&) { return "now"; });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/after/30") + get("/now") + get("/after/1") + get("/after/10"));
  CHECK(only(c).body == "slept 30");
  CHECK(only(c).body == "now");
  CHECK(only(c).body == "slept 1");
  CHECK(only(c).body == "slept 10");
  c.send(get("/after/2"));  // still alive
  CHECK(only(c).body == "slept 2");
}

TEST_CASE("no route: coroutine middleware that suspends before next() still gets the 404/405") {
  App app;
  app.use([](Request& req, const Next& next) -> Task<Response> {
    co_await req.loop().sleep(5ms);
    auto res = co_await next();
    res.header("X-Co", "1");
    co_return res;
  });
  app.post("/only-post", [](Request&) { return "posted"; });
  TestServer server(app);
  auto missing = fetch(server.port(), get("/nope"));
  CHECK(missing.status == 404);
  CHECK(missing.headers.get("X-Co") == "1");
  auto wrong = fetch(server.port(), get("/only-post"));
  CHECK(wrong.status == 405);
  CHECK(wrong.headers.get("Allow") == "POST");
  CHECK(wrong.headers.get("X-Co") == "1");
}

TEST_CASE("the app stops while a handler sleeps: its frame is destroyed, never resumed") {
  struct Guard {
    std::atomic<int>* destroyed;
    ~Guard() { ++*destroyed; }
  };
  App app;
  std::atomic<int> started{0}, resumed{0}, destroyed{0}, mwResumed{0};
  app.use([&](Request&, const Next& next) -> Task<Response> {
    Guard g{&destroyed};
    auto res = co_await next();
    ++mwResumed;
    co_return res;
  });
  app.get("/forever", [&](Request& req) -> Task<std::string> {
    Guard g{&destroyed};
    ++started;
    co_await req.loop().sleep(60s);
    ++resumed;
    co_return "never";
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/forever"));
  REQUIRE(waitUntil([&] { return started == 1; }));
  server.stop(100ms);
  CHECK(destroyed == 2);
  CHECK(resumed == 0);
  CHECK(mwResumed == 0);
}
