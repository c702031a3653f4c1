// Loopback tests of the HTTP core: connection semantics (keep-alive, HTTP/1.0,
// bodies, 100-continue, HEAD), routing, middleware, exception filters and
// what handlers can read from a request and return as a response.

#include <atomic>
#include <stdexcept>

#include "harness.h"
#include "strings.h"

using namespace spry::test;
using spry::App;
using spry::HttpError;
using spry::Next;
using spry::Request;
using spry::Response;

namespace {

std::string send(std::uint16_t port, const std::string& raw) {
  auto r = request(port, raw);
  REQUIRE(r);
  return r->body;
}

// Reads one response and checks nothing else follows it (each request is
// answered exactly once).
HttpResponse only(RawClient& c, bool head = false) {
  auto r = readResponse(c, head);
  REQUIRE(r);
  return *r;
}

// "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 5.6.7).
bool isImfFixdate(std::string_view d) {
  static constexpr std::string_view kShape = "Aaa, 00 Aaa 0000 00:00:00 GMT";
  if (d.size() != kShape.size()) return false;
  for (std::size_t i = 0; i < d.size(); ++i) {
    char want = kShape[i], c = d[i];
    bool ok = want == '0'   ? (c >= '0' && c <= '9')
              : want == 'A' ? (c >= 'A' && c <= 'Z')
              : want == 'a' ? (c >= 'a' && c <= 'z')
                            : c == want;
    if (i >= 26) ok = c == want;  // "GMT"
    if (!ok) return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------- connection

TEST_CASE("keep-alive: each request on one connection is answered exactly once") {
  App app;
  std::atomic<int> calls{0};
  app.get("/n", [&](Request&) { return std::to_string(++calls); });
  TestServer server(app);
  RawClient c(server.port());
  for (int i = 1; i <= 3; ++i) {
    REQUIRE(c.send(get("/n")));
    auto r = only(c);
    CHECK(r.status == 200);
    CHECK(r.body == std::to_string(i));
    CHECK_FALSE(r.headers.has("Connection"));  // HTTP/1.1 keep-alive is the default
    CHECK(r.headers.get("Content-Type") == "text/plain; charset=utf-8");
    CHECK(r.headers.get("Content-Length") == "1");
  }
  CHECK(c.readSome(100ms).empty());
  CHECK(c.buffer().empty());
  CHECK_FALSE(c.closed());
  CHECK(calls == 3);
}

TEST_CASE("every response carries a Date header in IMF-fixdate") {
  App app;
  app.get("/", [](Request&) { return "x"; });
  TestServer server(app);
  for (const auto& raw : {get("/"), get("/missing")}) {
    auto r = request(server.port(), raw);
    REQUIRE(r);
    std::string date(r->headers.get("Date"));
    CHECK_MESSAGE(isImfFixdate(date), date);
    CHECK(r->headers.getAll("Date").size() == 1);
  }
}

TEST_CASE("Connection: close from an HTTP/1.1 client closes after the response") {
  App app;
  app.get("/", [](Request&) { return "bye"; });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/", "Connection: close\r\n") + get("/"));  // the second must be ignored
  auto r = only(c);
  CHECK(r.status == 200);
  CHECK(r.body == "bye");
  CHECK(r.headers.get("Connection") == "close");
  CHECK(c.waitClosed(1000ms));
  CHECK(c.buffer().empty());
}

TEST_CASE("HTTP/1.0 closes by default and keeps alive when asked") {
  App app;
  app.get("/v", [](Request& req) { return std::to_string(req.httpMinorVersion()); });
  TestServer server(app);

  SUBCASE("default: close") {
    RawClient c(server.port());
    c.send("GET /v HTTP/1.0\r\n\r\n");  // no Host needed in 1.0
    auto r = only(c);
    CHECK(r.status == 200);
    CHECK(r.body == "0");
    CHECK(r.head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(r.headers.get("Connection") == "close");
    CHECK(c.waitClosed(1000ms));
  }
  SUBCASE("Connection: keep-alive") {
    RawClient c(server.port());
    for (int i = 0; i < 2; ++i) {
      c.send("GET /v HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      auto r = only(c);
      CHECK(r.status == 200);
      CHECK(r.body == "0");
      CHECK(r.headers.get("Connection") == "keep-alive");
    }
    CHECK(c.readSome(100ms).empty());
    CHECK_FALSE(c.closed());
  }
}

TEST_CASE("request bodies: Content-Length and chunked are delivered whole") {
  App app;
  app.post("/echo", [](Request& req) {
    return std::string(req.text()) + "|" + std::to_string(req.bytes().size());
  });
  TestServer server(app);

  SUBCASE("Content-Length") {
    CHECK(send(server.port(), post("/echo", "hello world")) == "hello world|11");
  }
  SUBCASE("empty body") {
    CHECK(send(server.port(), post("/echo", "")) == "|0");
  }
  SUBCASE("binary with NUL bytes") {
    std::string body("a\0b\r\n\0", 6);
    CHECK(send(server.port(), post("/echo", body)) == body + "|6");
  }
  SUBCASE("chunked, with an extension and a trailer") {
    std::string raw =
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    CHECK(send(server.port(), raw) == "hello world|11");
  }
  SUBCASE("two bodies back to back on one connection") {
    RawClient c(server.port());
    c.send(post("/echo", "one") + post("/echo", "three"));
    CHECK(only(c).body == "one|3");
    CHECK(only(c).body == "three|5");
  }
}

TEST_CASE("Expect: 100-continue: the client waits for 100 Continue, then sends the body") {
  App app;
  app.post("/up", [](Request& req) { return "got " + std::string(req.text()); });
  spry::HttpOptions http;
  http.maxBodyBytes = 100;
  App limited({}, http);
  limited.post("/up", [](Request&) { return "never"; });
  TestServer server(app);
  TestServer small(limited);

  SUBCASE("continue, then the final response") {
    RawClient c(server.port());
    c.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    auto interim = c.readUntil("\r\n\r\n", 1000ms);
    REQUIRE(interim);
    CHECK(*interim == "HTTP/1.1 100 Continue\r\n\r\n");
    CHECK(c.readSome(50ms).empty());  // nothing more until the body arrives
    c.send("ping");
    auto r = only(c);
    CHECK(r.status == 200);
    CHECK(r.body == "got ping");
  }
  SUBCASE("no interim response without a body") {
    RawClient c(server.port());
    c.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n");
    auto r = only(c);
    CHECK(r.status == 200);
    CHECK(r.body == "got ");
  }
  SUBCASE("a body over the limit is refused at once, without 100 Continue") {
    RawClient c(small.port());
    c.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n");
    auto r = only(c);
    CHECK(r.status == 413);
    CHECK(r.headers.get("Connection") == "close");
  }
}

TEST_CASE("HEAD falls back to GET: same headers and Content-Length, no body") {
  App app;
  app.get("/doc", [](Request&) { return Response::html("<p>hello</p>"); });
  TestServer server(app);
  RawClient c(server.port());
  c.send("HEAD /doc HTTP/1.1\r\nHost: t\r\n\r\n");
  auto h = only(c, true);
  CHECK(h.status == 200);
  CHECK(h.headers.get("Content-Length") == "12");
  CHECK(h.headers.get("Content-Type") == "text/html; charset=utf-8");
  CHECK(h.headers.has("Date"));
  // No body followed: the next response starts right away.
  c.send(get("/doc"));
  auto g = only(c);
  CHECK(g.status == 200);
  CHECK(g.body == "<p>hello</p>");
}

// ---------------------------------------------------------------- routing

TEST_CASE("routing: 404, 405 with Allow, automatic OPTIONS") {
  App app;
  app.get("/r", [](Request&) { return "get"; });
  app.post("/r", [](Request&) { return "post"; });
  app.options("/own", [](Request&) { return "mine"; });
  TestServer server(app);

  auto nf = request(server.port(), get("/nope"));
  REQUIRE(nf);
  CHECK(nf->status == 404);
  CHECK(nf->body == "Not Found");

  auto na = request(server.port(), "DELETE /r HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(na);
  CHECK(na->status == 405);
  CHECK(na->headers.get("Allow") == "GET, HEAD, POST");
  CHECK(na->body == "Method Not Allowed");

  auto opt = request(server.port(), "OPTIONS /r HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(opt);
  CHECK(opt->status == 204);
  CHECK(opt->headers.get("Allow") == "GET, HEAD, POST, OPTIONS");
  CHECK(opt->body.empty());
  CHECK_FALSE(opt->headers.has("Content-Length"));

  auto own = request(server.port(), "OPTIONS /own HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(own);
  CHECK(own->status == 200);
  CHECK(own->body == "mine");

  auto optMissing = request(server.port(), "OPTIONS /nope HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(optMissing);
  CHECK(optMissing->status == 404);

  auto bad = request(server.port(), get("/r%zz"));
  REQUIRE(bad);
  CHECK(bad->status == 400);
}

TEST_CASE("routing: OPTIONS * answers for the whole server, other methods on * are 400") {
  App app;
  app.get("/a", [](Request&) { return "a"; });
  app.post("/b/:id", [](Request&) { return "b"; });
  app.on("PROPFIND", "/c", [](Request&) { return "c"; });
  app.all("/d", [](Request&) { return "d"; });
  Recorder seen;
  app.use([&seen](Request& req, const Next& next) {
    Response r = next();
    seen.add(std::string(req.method()) + " " + std::string(req.target()) + " " +
             std::to_string(r.status()));
    return r;
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
  auto r = only(c);
  CHECK(r.status == 200);
  CHECK(r.headers.get("Allow") == "GET, HEAD, OPTIONS, POST, PROPFIND");
  CHECK(r.headers.get("Content-Length") == "0");
  CHECK(r.body.empty());
  c.send(get("/a"));  // the connection stays usable
  CHECK(only(c).body == "a");

  auto g = request(server.port(), "GET * HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(g);
  CHECK(g->status == 400);
  CHECK(seen.events() == std::vector<std::string>{"OPTIONS * 200", "GET /a 200", "GET * 400"});
}

TEST_CASE("routing: the app answers OPTIONS * itself through global middleware") {
  App app;
  app.get("/a", [](Request&) { return "a"; });
  app.use([](Request& req, const Next& next) {
    if (req.method() == "OPTIONS" && req.target() == "*") {
      Response r(204);
      r.header("Allow", "GET, OPTIONS");
      r.header("Accept-Patch", "application/json");
      return r;
    }
    return next();
  });
  TestServer server(app);
  auto r = request(server.port(), "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(r);
  CHECK(r->status == 204);
  CHECK(r->headers.get("Allow") == "GET, OPTIONS");
  CHECK(r->headers.get("Accept-Patch") == "application/json");
}

TEST_CASE("routing: parameters are decoded, %2F stays inside its segment") {
  App app;
  app.get("/files/:name", [](Request& req) { return "file:" + std::string(req.param("name")); });
  app.get("/users/:id/posts/:post", [](Request& req) {
    std::string out;
    for (const auto& [k, v] : req.params()) out.append(k).append("=").append(v).append(";");
    return out;
  });
  TestServer server(app);
  CHECK(send(server.port(), get("/files/a%2Fb")) == "file:a/b");
  CHECK(send(server.port(), get("/files/hello%20world")) == "file:hello world");
  CHECK(send(server.port(), get("/users/7/posts/x%3Ay")) == "id=7;post=x:y;");
  auto twoSegments = request(server.port(), get("/files/a/b"));
  REQUIRE(twoSegments);
  CHECK(twoSegments->status == 404);
}

TEST_CASE("routing: ** catches the rest of the path") {
  App app;
  app.get("/static/**", [](Request& req) { return "rest:" + std::string(req.param("**")); });
  app.get("/static/fixed", [](Request&) { return "fixed"; });
  TestServer server(app);
  CHECK(send(server.port(), get("/static/css/site.css")) == "rest:css/site.css");
  CHECK(send(server.port(), get("/static/a%20b/c")) == "rest:a b/c");
  CHECK(send(server.port(), get("/static/fixed")) == "fixed");  // a constant wins
}

TEST_CASE("routing: groups join paths and nest") {
  App app;
  auto users = app.group("users");
  users.get("/", [](Request&) { return "users"; });
  users.get(":id", [](Request& req) { return "user " + std::string(req.param("id")); });
  auto v1 = app.group("/api/").group("v1");
  v1.get("items", [](Request&) { return "items"; });
  TestServer server(app);
  CHECK(send(server.port(), get("/users")) == "users");
  CHECK(send(server.port(), get("/users/42")) == "user 42");
  CHECK(send(server.port(), get("/api/v1/items")) == "items");
  auto slash = request(server.port(), get("/users/"));
  REQUIRE(slash);
  CHECK(slash->status == 404);  // strict trailing slash by default
}

TEST_CASE("registration: duplicates throw at once, and nothing registers after listen") {
  App app;
  app.get("/a/:id", [](Request&) { return "a"; });
  CHECK_THROWS_AS(app.get("/a/:id", [](Request&) { return "again"; }), std::invalid_argument);
  CHECK_THROWS_AS(app.get("/a/:other", [](Request&) { return "same shape"; }),
                  std::invalid_argument);
  CHECK_NOTHROW(app.post("/a/:id", [](Request&) { return "other method"; }));
  auto g = app.group("a");
  CHECK_THROWS_AS(g.get(":x", [](Request&) { return "via group"; }), std::invalid_argument);
  CHECK_THROWS_AS(app.get("/b/**/c", [](Request&) { return ""; }), std::invalid_argument);

  TestServer server(app);
  CHECK_THROWS_AS(app.get("/late", [](Request&) { return "late"; }), std::logic_error);
  CHECK_THROWS_AS(g.get("/late", [](Request&) { return "late"; }), std::logic_error);
  CHECK_THROWS_AS(app.use([](Request& r, const Next& n) {
    (void)r;
    return n();
  }),
                  std::logic_error);
  CHECK_THROWS_AS(app.group("late"), std::logic_error);
  CHECK_THROWS_AS(app.filter<std::exception>(
                      [](const std::exception&, Request&) { return std::optional<Response>(); }),
                  std::logic_error);
  // The failed registrations changed nothing.
  CHECK(send(server.port(), get("/a/1")) == "a");
  auto late = request(server.port(), get("/late"));
  REQUIRE(late);
  CHECK(late->status == 404);
}

// ---------------------------------------------------------------- request

TEST_CASE("request: query parameters are decoded, repeated keys kept in order") {
  App app;
  app.get("/q", [](Request& req) {
    std::string out = std::string(req.query("q").value_or("<none>"));
    for (auto v : req.queryAll("x")) out += spry::test::cat(",", v);
    out += spry::test::cat("|", req.query("missing").value_or("<none>"));
    out += spry::test::cat("|", req.query("empty").value_or("<none>"));
    out += spry::test::cat("|", req.path());
    return out;
  });
  TestServer server(app);
  CHECK(send(server.port(), get("/q?q=a+b%21&x=1&x=2&empty=&x=%26")) == "a b!,1,2,&|<none>||/q");
  CHECK(send(server.port(), get("/q")) == "<none>|<none>|<none>|/q");
}

TEST_CASE("request: a fragment is cut from the path as from the query") {
  App app;
  app.get("/a", [](Request& req) {
    return std::string(req.path()) + "|" + std::string(req.query("x").value_or("-"));
  });
  TestServer server(app);
  CHECK(send(server.port(), get("/a#frag")) == "/a|-");
  CHECK(send(server.port(), get("/a?x=1#frag")) == "/a|1");
  CHECK(send(server.port(), get("/a?x=1#f?x=2")) == "/a|1");
  CHECK(send(server.port(), "GET http://t/a#f HTTP/1.1\r\nHost: t\r\n\r\n") == "/a|-");
}

TEST_CASE("request: an absolute-form target routes on its path") {
  App app;
  app.get("/a/b", [](Request& req) {
    return std::string(req.path()) + "|" + std::string(req.query("x").value_or("-")) + "|" +
           std::string(req.target());
  });
  app.get("/", [](Request& req) { return "root " + std::string(req.path()); });
  TestServer server(app);
  CHECK(send(server.port(), "GET http://t/a/b?x=1 HTTP/1.1\r\nHost: t\r\n\r\n") ==
        "/a/b|1|http://t/a/b?x=1");
  CHECK(send(server.port(), "GET http://t:8080 HTTP/1.1\r\nHost: t\r\n\r\n") == "root /");
  CHECK(send(server.port(), "GET http://t?y HTTP/1.1\r\nHost: t\r\n\r\n") == "root /");
}

TEST_CASE("request: cookies, headers, target and peer address") {
  App app;
  app.get("/c", [](Request& req) {
    std::string out = std::string(req.cookie("session").value_or("-"));
    out += spry::test::cat(",", req.cookie("c").value_or("-"));
    out += spry::test::cat(",", req.cookie("nope").value_or("-"));
    out += spry::test::cat(",", req.header("x-custom"));
    out += spry::test::cat(",", std::to_string(req.headers().getAll("X-Multi").size()));
    out += spry::test::cat(",", req.target());
    out += spry::test::cat(",", req.remoteAddress());
    out += spry::test::cat(":", std::to_string(req.remotePort()));
    return out;
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/c?z=1",
             "Cookie: a=1; session=\"xyz\"\r\nCookie: c=3\r\nX-Custom:   padded  \r\n"
             "X-Multi: 1\r\nX-Multi: 2\r\n"));
  auto r = only(c);
  CHECK(r.body == "xyz,3,-,padded,2,/c?z=1,127.0.0.1:" + std::to_string(c.localPort()));
}

TEST_CASE("request: JSON bodies, invalid JSON is a 400 through HttpError") {
  App app;
  app.post("/json", [](Request& req) {
    auto j = req.json();
    return nlohmann::json{{"sum", j.at("a").get<int>() + j.at("b").get<int>()}};
  });
  TestServer server(app);
  auto ok = request(server.port(), post("/json", R"({"a": 2, "b": 40})"));
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(ok->headers.get("Content-Type") == "application/json");
  CHECK(ok->body == R"({"sum":42})");

  auto bad = request(server.port(), post("/json", "{not json"));
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(bad->body == "request body is not valid JSON");
  CHECK(bad->headers.get("Content-Type") == "text/plain; charset=utf-8");
  CHECK_FALSE(bad->headers.has("Connection"));  // an application error keeps the connection
}

// ---------------------------------------------------------------- middleware

namespace {
struct User {
  std::string name;
};
}  // namespace

TEST_CASE("middleware: locals set by middleware are read by the handler") {
  App app;
  auto authed = app.group("me", {[](Request& req, const Next& next) {
                            req.locals().set(User{std::string(req.header("X-User"))});
                            return next();
                          }});
  authed.get("/", [](Request& req) { return "hello " + req.locals().get<User>().name; });
  app.get("/nobody", [](Request& req) { return req.locals().find<User>() ? "found" : "none"; });
  app.get("/crash", [](Request& req) { return req.locals().get<User>().name; });
  TestServer server(app);
  CHECK(send(server.port(), get("/me", "X-User: ann\r\n")) == "hello ann");
  CHECK(send(server.port(), get("/nobody")) == "none");
  auto crash = request(server.port(), get("/crash"));
  REQUIRE(crash);
  CHECK(crash->status == 500);  // a missing local is a programming error
}

TEST_CASE("middleware: the onion runs global, outer group, inner group, handler, then unwinds") {
  App app;
  Recorder order;
  auto layer = [&order](std::string name) {
    return [&order, name](Request&, const Next& next) {
      order.add(name + ">");
      Response r = next();
      order.add("<" + name);
      return r;
    };
  };
  app.use(layer("global1"));
  auto outer = app.group("outer", {layer("outer")});
  auto inner = outer.group("inner", {layer("inner1")});
  inner.use(layer("inner2"));
  inner.get("h", [&order](Request&) {
    order.add("handler");
    return "ok";
  });
  app.use(layer("global2"));  // applies to routes registered before, too
  TestServer server(app);
  CHECK(send(server.port(), get("/outer/inner/h")) == "ok");
  CHECK(order.events() == std::vector<std::string>{"global1>", "global2>", "outer>", "inner1>",
                                                   "inner2>", "handler", "<inner2", "<inner1",
                                                   "<outer", "<global2", "<global1"});
}

TEST_CASE("middleware: next() returns 404 and 405 alike, so code after it sees them") {
  App app;
  Recorder seen;
  app.use([&seen](Request& req, const Next& next) {
    Response r = next();  // a logger: records the status the client gets
    seen.add(std::string(req.method()) + " " + std::string(req.path()) + " " +
             std::to_string(r.status()));
    r.header("X-Seen", std::to_string(r.status()));
    return r;
  });
  app.use([](Request& req, const Next& next) {
    Response r = next();
    if (r.status() == 404 && req.path() == "/replace") return Response::text("replaced", 410);
    return r;
  });
  app.get("/only-get", [](Request&) { return "x"; });
  TestServer server(app);
  auto nf = request(server.port(), get("/missing"));
  REQUIRE(nf);
  CHECK(nf->status == 404);
  CHECK(nf->body == "Not Found");
  CHECK(nf->headers.get("X-Seen") == "404");
  auto na =
      request(server.port(), "PUT /only-get HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(na);
  CHECK(na->status == 405);
  CHECK(na->headers.get("X-Seen") == "405");
  CHECK(na->headers.get("Allow") == "GET, HEAD");
  auto bad = request(server.port(), get("/a%zz"));
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(bad->headers.get("X-Seen") == "400");
  auto replaced = request(server.port(), get("/replace"));
  REQUIRE(replaced);
  CHECK(replaced->status == 410);
  CHECK(replaced->body == "replaced");
  CHECK(seen.events() == std::vector<std::string>{"GET /missing 404", "PUT /only-get 405",
                                                  "GET /a%zz 400", "GET /replace 410"});
}

TEST_CASE("middleware: a 405 runs the middleware its path's routes share, a 404 only the app's") {
  App app;
  Recorder ran;
  auto cors = [&ran](Request& req, const Next& next) {
    ran.add("cors " + std::string(req.method()) + " " + std::string(req.path()));
    Response r = next();
    r.header("Access-Control-Allow-Origin", "*");
    return r;
  };
  auto tag = [&ran](std::string name) {
    return [&ran, name](Request&, const Next& next) {
      ran.add(name);
      return next();
    };
  };
  app.use(tag("app"));
  auto api = app.group("api", {cors});
  api.group("", {tag("items-only")}).get("items", [](Request&) { return "[]"; });
  api.post("items", [](Request&) { return "created"; });
  api.get("users", [](Request&) { return "[]"; });
  TestServer server(app);

  // The CORS preflight of a group's route gets the group's headers.
  auto pre = request(server.port(),
                     "OPTIONS /api/items HTTP/1.1\r\nHost: t\r\n"
                     "Origin: http://x\r\n"
                     "Access-Control-Request-Method: PUT\r\n\r\n");
  REQUIRE(pre);
  CHECK(pre->status == 204);
  CHECK(pre->headers.get("Allow") == "GET, HEAD, POST, OPTIONS");
  CHECK(pre->headers.get("Access-Control-Allow-Origin") == "*");
  auto del = request(server.port(), "DELETE /api/users HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(del);
  CHECK(del->status == 405);
  CHECK(del->headers.get("Access-Control-Allow-Origin") == "*");
  // No route at all: no group owns the path, only the app's middleware runs.
  auto nf = request(server.port(), get("/api/nothing"));
  REQUIRE(nf);
  CHECK(nf->status == 404);
  CHECK_FALSE(nf->headers.has("Access-Control-Allow-Origin"));
  // "items-only" is on GET /api/items alone, not shared with POST: it stays out.
  CHECK(ran.events() == std::vector<std::string>{"app", "cors OPTIONS /api/items", "app",
                                                 "cors DELETE /api/users", "app"});
}

TEST_CASE("middleware: short-circuit, and changing the response after next()") {
  App app;
  Recorder ran;
  auto guarded = app.group("admin", {[&ran](Request& req, const Next& next) -> Response {
                             ran.add("guard");
                             if (req.header("Authorization") != "Bearer ok") {
                               auto r = Response::text("no", 401);
                               r.header("WWW-Authenticate", "Bearer");
                               return r;
                             }
                             return next();
                           }});
  guarded.use([&ran](Request&, const Next& next) {
    ran.add("inner");
    return next();
  });
  guarded.get("/", [&ran](Request&) {
    ran.add("handler");
    return "secret";
  });
  app.use([](Request&, const Next& next) {
    Response r = next();
    r.header("X-Powered-By", "spry");
    if (r.status() == 401) r.setStatus(403).setBody("forbidden");
    return r;
  });
  TestServer server(app);

  auto denied = request(server.port(), get("/admin"));
  REQUIRE(denied);
  CHECK(denied->status == 403);
  CHECK(denied->body == "forbidden");
  CHECK(denied->headers.get("Content-Length") == "9");
  CHECK(denied->headers.get("WWW-Authenticate") == "Bearer");
  CHECK(denied->headers.get("X-Powered-By") == "spry");
  CHECK(ran.events() == std::vector<std::string>{"guard"});

  auto allowed = request(server.port(), get("/admin", "Authorization: Bearer ok\r\n"));
  REQUIRE(allowed);
  CHECK(allowed->status == 200);
  CHECK(allowed->body == "secret");
  CHECK(allowed->headers.get("X-Powered-By") == "spry");
  CHECK(ran.events() == std::vector<std::string>{"guard", "guard", "inner", "handler"});
}

TEST_CASE("middleware: a throw in middleware goes through the filters, outer layers see it") {
  App app;
  app.use([](Request&, const Next& next) {
    try {
      return next();
    } catch (const HttpError& e) {
      auto r = Response::text(std::string("caught ") + e.what(), e.status());
      return r;
    }
  });
  app.group("g", {[](Request&, const Next&) -> Response { throw HttpError(429, "slow down"); }})
      .get("x", [](Request&) { return "unreachable"; });
  TestServer server(app);
  auto r = request(server.port(), get("/g/x"));
  REQUIRE(r);
  CHECK(r->status == 429);
  CHECK(r->body == "caught slow down");
}

// ---------------------------------------------------------------- filters

namespace {
struct QuotaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

TEST_CASE("exception filters: HttpError maps to its status and message") {
  App app;
  app.get("/teapot", [](Request&) -> std::string { throw HttpError(418, "short and stout"); });
  app.get("/bare", [](Request&) -> std::string { throw HttpError(503); });
  TestServer server(app);
  auto t = request(server.port(), get("/teapot"));
  REQUIRE(t);
  CHECK(t->status == 418);
  CHECK(t->body == "short and stout");
  auto b = request(server.port(), get("/bare"));
  REQUIRE(b);
  CHECK(b->status == 503);
  CHECK(b->body == "Service Unavailable");
  CHECK_THROWS_AS(HttpError(200, "not an error"), std::invalid_argument);
}

TEST_CASE("exception filters: by type, first match wins, nullopt passes on") {
  App app;
  Recorder seen;
  app.filter<QuotaError>([&seen](const QuotaError& e, Request&) -> std::optional<Response> {
    seen.add(std::string("quota:") + e.what());
    if (std::string_view(e.what()) == "pass") return std::nullopt;
    return Response::text("quota exceeded", 429);
  });
  app.filter<std::runtime_error>(
      [&seen](const std::runtime_error& e, Request& req) -> std::optional<Response> {
        seen.add(std::string("runtime:") + e.what());
        return Response::text("runtime at " + std::string(req.path()), 502);
      });
  app.filter<QuotaError>([&seen](const QuotaError&, Request&) -> std::optional<Response> {
    seen.add("shadowed");
    return Response(500);
  });
  app.filter<HttpError>([&seen](const HttpError& e, Request&) -> std::optional<Response> {
    seen.add("http:" + std::to_string(e.status()));
    if (e.status() == 404) return Response::html("<h1>custom 404</h1>", 404);
    return std::nullopt;
  });
  app.get("/quota", [](Request&) -> std::string { throw QuotaError("limit"); });
  app.get("/pass", [](Request&) -> std::string { throw QuotaError("pass"); });
  app.get("/runtime", [](Request&) -> std::string { throw std::runtime_error("boom"); });
  app.get("/http", [](Request&) -> std::string { throw HttpError(409, "conflict"); });
  TestServer server(app);

  auto q = request(server.port(), get("/quota"));
  REQUIRE(q);
  CHECK(q->status == 429);
  CHECK(q->body == "quota exceeded");

  auto p = request(server.port(), get("/pass"));
  REQUIRE(p);
  CHECK(p->status == 502);  // passed on to the runtime_error filter
  CHECK(p->body == "runtime at /pass");

  auto r = request(server.port(), get("/runtime"));
  REQUIRE(r);
  CHECK(r->status == 502);

  auto h = request(server.port(), get("/http"));
  REQUIRE(h);
  CHECK(h->status == 409);  // the filter passed: default HttpError mapping
  CHECK(h->body == "conflict");

  auto nf = request(server.port(), get("/missing"));  // router 404s go through filters too
  REQUIRE(nf);
  CHECK(nf->status == 404);
  CHECK(nf->body == "<h1>custom 404</h1>");

  CHECK(seen.events() == std::vector<std::string>{"quota:limit", "quota:pass", "runtime:pass",
                                                  "runtime:boom", "http:409", "http:404"});
}

namespace {
struct NotYours : HttpError {
  NotYours() : HttpError(403, "not yours") {}
};
}  // namespace

TEST_CASE("exception filters: an HttpError only reaches filters for HttpError") {
  App app;
  Recorder seen;
  app.filter<std::exception>([&seen](const std::exception& e, Request&) -> std::optional<Response> {
    seen.add(std::string("exception:") + e.what());
    return Response::text("oops", 500);
  });
  app.filter<std::runtime_error>(
      [&seen](const std::runtime_error& e, Request&) -> std::optional<Response> {
        seen.add(std::string("runtime:") + e.what());
        return Response::text("oops", 500);
      });
  app.get("/forbidden", [](Request&) -> std::string { throw HttpError(403, "go away"); });
  app.get("/derived", [](Request&) -> std::string { throw NotYours(); });
  app.get("/boom", [](Request&) -> std::string { throw std::runtime_error("boom"); });
  TestServer server(app);

  auto f = request(server.port(), get("/forbidden"));
  REQUIRE(f);
  CHECK(f->status == 403);
  CHECK(f->body == "go away");
  auto d = request(server.port(), get("/derived"));
  REQUIRE(d);
  CHECK(d->status == 403);
  CHECK(d->body == "not yours");
  auto nf = request(server.port(), get("/missing"));
  REQUIRE(nf);
  CHECK(nf->status == 404);
  auto b = request(server.port(), get("/boom"));
  REQUIRE(b);
  CHECK(b->status == 500);
  CHECK(b->body == "oops");
  CHECK(seen.events() == std::vector<std::string>{"exception:boom"});
}

TEST_CASE("exception filters: a type derived from HttpError, and a 405 page keeps its Allow") {
  App app;
  Recorder seen;
  app.filter<NotYours>([&seen](const NotYours& e, Request&) -> std::optional<Response> {
    seen.add(std::string("mine:") + e.what());
    return Response::html("<p>not yours</p>", e.status());
  });
  app.filter<HttpError>([&seen](const HttpError& e, Request&) -> std::optional<Response> {
    seen.add("http:" + std::to_string(e.status()));
    return Response::html("<p>" + std::string(e.what()) + "</p>", e.status());
  });
  app.get("/derived", [](Request&) -> std::string { throw NotYours(); });
  app.get("/plain", [](Request&) -> std::string { throw HttpError(409, "conflict"); });
  TestServer server(app);
  auto d = request(server.port(), get("/derived"));
  REQUIRE(d);
  CHECK(d->status == 403);
  CHECK(d->body == "<p>not yours</p>");
  auto p = request(server.port(), get("/plain"));
  REQUIRE(p);
  CHECK(p->body == "<p>conflict</p>");
  auto na = request(server.port(), "POST /plain HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(na);
  CHECK(na->status == 405);
  CHECK(na->body == "<p>Method Not Allowed</p>");
  CHECK(na->headers.get("Allow") == "GET, HEAD");
  CHECK(seen.events() == std::vector<std::string>{"mine:not yours", "http:409", "http:405"});
}

TEST_CASE("exception filters: other exceptions are a generic 500 and a log line") {
  LogCapture logs;
  App app;
  app.get("/boom",
          [](Request&) -> std::string { throw std::runtime_error("db password is hunter2"); });
  app.get("/int", [](Request&) -> std::string { throw 42; });
  app.filter<std::logic_error>([](const std::logic_error&, Request&) -> std::optional<Response> {
    throw std::runtime_error("filter failed");
  });
  app.get("/logic", [](Request&) -> std::string { throw std::logic_error("bug"); });
  TestServer server(app);

  auto r = request(server.port(), get("/boom"));
  REQUIRE(r);
  CHECK(r->status == 500);
  CHECK(r->body == "Internal Server Error");
  CHECK(r->head.find("hunter2") == std::string::npos);
  CHECK(logs.contains({"GET /boom", "hunter2"}));

  auto i = request(server.port(), get("/int"));
  REQUIRE(i);
  CHECK(i->status == 500);
  CHECK(i->body == "Internal Server Error");
  CHECK(logs.contains({"GET /int"}));

  auto l = request(server.port(), get("/logic"));  // a throwing filter does not hide the error
  REQUIRE(l);
  CHECK(l->status == 500);
  CHECK(l->body == "Internal Server Error");
  CHECK(logs.contains({"filter", "GET /logic"}));
  CHECK(logs.contains({"GET /logic", "bug"}));
}

// ---------------------------------------------------------------- responses

TEST_CASE("responses: void is 204, bytes are octet-stream, json, html, custom status") {
  App app;
  app.del("/void", [](Request&) {});
  app.get("/bytes", [](Request&) {
    return std::vector<std::byte>{std::byte{0}, std::byte{0xff}, std::byte{'a'}};
  });
  app.get("/u8", [](Request&) { return std::vector<std::uint8_t>{1, 2, 3}; });
  app.get("/json", [](Request&) { return nlohmann::json{{"a", 1}, {"b", {true, nullptr}}}; });
  app.get("/typed",
          [](Request&) { return Response::bytes(std::string("GIF89a"), "image/gif", 201); });
  app.get("/created", [](Request&) { return Response::text("made", 201); });
  app.get("/empty", [](Request&) { return Response(200); });
  app.get("/304", [](Request&) { return Response::text("ignored body", 304); });
  TestServer server(app);

  RawClient c(server.port());
  c.send("DELETE /void HTTP/1.1\r\nHost: t\r\n\r\n");
  auto v = only(c);
  CHECK(v.status == 204);
  CHECK(v.body.empty());
  CHECK_FALSE(v.headers.has("Content-Length"));
  CHECK_FALSE(v.headers.has("Transfer-Encoding"));

  c.send(get("/bytes"));
  auto b = only(c);
  CHECK(b.headers.get("Content-Type") == "application/octet-stream");
  CHECK(b.body == std::string("\0\xff"
                              "a",
                              3));

  c.send(get("/u8"));
  auto u = only(c);
  CHECK(u.headers.get("Content-Type") == "application/octet-stream");
  CHECK(u.body == "\x01\x02\x03");

  c.send(get("/json"));
  auto j = only(c);
  CHECK(j.headers.get("Content-Type") == "application/json");
  CHECK(j.body == R"({"a":1,"b":[true,null]})");

  c.send(get("/typed"));
  auto t = only(c);
  CHECK(t.status == 201);
  CHECK(t.headers.get("Content-Type") == "image/gif");
  CHECK(t.body == "GIF89a");

  c.send(get("/created"));
  CHECK(only(c).status == 201);

  c.send(get("/empty"));
  auto e = only(c);
  CHECK(e.status == 200);
  CHECK(e.headers.get("Content-Length") == "0");

  c.send(get("/304"));
  auto n = only(c);
  CHECK(n.status == 304);
  CHECK_FALSE(n.headers.has("Content-Length"));
  // A 304 carries no body: the connection is still in sync.
  c.send(get("/created"));
  CHECK(only(c).body == "made");
}

TEST_CASE("responses: redirect") {
  App app;
  app.get("/old", [](Request&) { return Response::redirect("/new"); });
  app.get("/moved", [](Request&) { return Response::redirect("https://example.com/x?y=1", 301); });
  TestServer server(app);
  auto r = request(server.port(), get("/old"));
  REQUIRE(r);
  CHECK(r->status == 302);
  CHECK(r->head.rfind("HTTP/1.1 302 Found\r\n", 0) == 0);
  CHECK(r->headers.get("Location") == "/new");
  CHECK(r->headers.get("Content-Length") == "0");
  auto m = request(server.port(), get("/moved"));
  REQUIRE(m);
  CHECK(m->status == 301);
  CHECK(m->headers.get("Location") == "https://example.com/x?y=1");
  CHECK_THROWS_AS(Response::redirect("/x", 200), std::invalid_argument);
  CHECK_THROWS_AS(Response(200).setStatus(600), std::invalid_argument);
}

TEST_CASE("responses: headers the framing owns cannot be forged, CR/LF cannot split") {
  App app;
  app.get("/h", [](Request&) {
    auto r = Response::text("abc");
    r.header("Content-Length", "999");
    r.header("Transfer-Encoding", "chunked");
    r.header("X-Evil", "a\r\nInjected: yes");
    r.headers().add("Set-Cookie", "a=1");
    r.headers().add("Set-Cookie", "b=2");
    return r;
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/h"));
  auto r = only(c);
  CHECK(r.headers.get("Content-Length") == "3");
  CHECK_FALSE(r.headers.has("Transfer-Encoding"));
  CHECK_FALSE(r.headers.has("Injected"));
  CHECK_FALSE(r.headers.has("X-Evil"));
  CHECK(r.headers.getAll("Set-Cookie") == std::vector<std::string_view>{"a=1", "b=2"});
  CHECK(r.body == "abc");
  c.send(get("/h"));
  CHECK(only(c).body == "abc");
}

// ---------------------------------------------------------------- request lifetime

TEST_CASE("a request that outlives its handler keeps its views: deferred and streamed") {
  // While a handler runs, the request's method, path, parameters and headers
  // point into the connection's input; a deferred or streamed response
  // copies them once. Later requests on the same connection (pipelined
  // behind it, in the same read) must not show through.
  App app;
  app.get("/later/:id", [](Request& req) {
    auto d = req.defer();
    req.loop().setTimeout(50ms, [d, &req] {
      std::string out = cat(req.method(), " ", req.path(), " id=", req.param("id"),
                            " token=", req.header("X-Token"), " q=", req.query("q").value_or(""),
                            " from=", req.remoteAddress());
      for (const auto& [name, value] : req.headers()) out += cat(" ", name, ":", value);
      d.send(Response::text(out));
    });
    return d;
  });
  app.get("/stream/:id", [](Request& req) {
    return Response::stream([&req](spry::BodyWriter w) {
      w.write(cat("id=", req.param("id"), " token=", req.header("X-Token"), "\n"));
      req.loop().setTimeout(50ms, [w, &req] {
        w.write(cat("later id=", req.param("id"), " token=", req.header("X-Token"), "\n"));
        w.end();
      });
    });
  });
  app.get("/now/:id", [](Request& req) { return cat("now ", req.param("id")); });
  TestServer server(app);

  RawClient c(server.port());
  // Three requests in one write: the first is deferred, the others wait.
  REQUIRE(
      c.send("GET /later/a%20b?q=1 HTTP/1.1\r\nHost: x\r\nX-Token: first\r\n\r\n"
             "GET /stream/s1 HTTP/1.1\r\nHost: x\r\nX-Token: second\r\n\r\n"
             "GET /now/zzzzzzzzzzzzzzzzzzzzzzzzzzzz HTTP/1.1\r\nHost: x\r\nX-Token: "
             "third-token-long\r\n\r\n"));
  auto first = only(c);
  CHECK(first.body ==
        "GET /later/a%20b id=a b token=first q=1 from=127.0.0.1 Host:x X-Token:first");
  auto second = only(c);
  CHECK(second.body == "id=s1 token=second\nlater id=s1 token=second\n");
  auto third = only(c);
  CHECK(third.body == "now zzzzzzzzzzzzzzzzzzzzzzzzzzzz");

  // A head that arrives in pieces, one byte per write: the parser keeps its
  // own copy, and the deferred request copies again when it outlives it.
  const std::string slow = "GET /later/slow HTTP/1.1\r\nHost: x\r\nX-Token: trickled\r\n\r\n";
  for (char ch : slow) {
    REQUIRE(c.send(std::string(1, ch)));
    std::this_thread::sleep_for(1ms);
  }
  auto fourth = only(c);
  CHECK(fourth.body ==
        "GET /later/slow id=slow token=trickled q= from=127.0.0.1 Host:x X-Token:trickled");
}
