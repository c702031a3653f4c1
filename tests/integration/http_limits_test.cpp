// Loopback tests of the HTTP core's defences: size limits, timeouts, malformed
// input, lingering close after an error, pipelining and split packets.

#include <atomic>
#include <string>
#include <vector>

#include "harness.h"
#include "strings.h"

using namespace spry::test;
using spry::App;
using spry::HttpOptions;
using spry::Request;
using spry::Response;

namespace {

HttpOptions smallLimits() {
  HttpOptions o;
  o.maxHeaderBytes = 1024;
  o.maxUrlBytes = 256;
  o.maxHeaderCount = 8;
  o.maxBodyBytes = 1000;
  return o;
}

// An error response: the status, a plain-text reason, Connection: close, and
// then the server closes the connection.
void expectErrorAndClose(RawClient& c, int status) {
  auto r = readResponse(c);
  REQUIRE_MESSAGE(r, "no complete error response (a reset would lose it)");
  CHECK(r->status == status);
  CHECK(r->headers.get("Connection") == "close");
  CHECK(r->headers.get("Content-Type") == "text/plain; charset=utf-8");
  CHECK(r->body == std::string(r->head.substr(13, r->head.find("\r\n") - 13)));
  CHECK_MESSAGE(c.waitClosed(1500ms), "the server kept the connection open after an error");
  CHECK(c.buffer().empty());
}

void echoRoutes(App& app) {
  app.all("/**", [](Request& req) {
    return std::string(req.method()) + " " + std::string(req.target()) + " " +
           std::string(req.text());
  });
}

}  // namespace

// ---------------------------------------------------------------- limits

TEST_CASE("limits: request line and headers over maxHeaderBytes is 431") {
  App app({}, smallLimits());
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  c.send("GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n");
  expectErrorAndClose(c, 431);
  // Just under the limit is fine.
  std::string head = "GET / HTTP/1.1\r\nHost: t\r\nX-Big: \r\n\r\n";
  auto ok = request(server.port(), "GET / HTTP/1.1\r\nHost: t\r\nX-Big: " +
                                       std::string(1024 - head.size(), 'a') + "\r\n\r\n");
  REQUIRE(ok);
  CHECK(ok->status == 200);
}

TEST_CASE("limits: headers that trickle in are counted as a whole") {
  App app({}, smallLimits());
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  c.send("GET / HTTP/1.1\r\nHost: t\r\n");
  // Six lines of 200 bytes, each in its own packet: under the field count,
  // over the byte limit in total.
  for (int i = 0; i < 6 && !c.readable(); ++i) {
    if (!c.send("X-Filler-" + std::to_string(i) + ": " + std::string(186, 'x') + "\r\n")) break;
    std::this_thread::sleep_for(5ms);
  }
  expectErrorAndClose(c, 431);
}

TEST_CASE("limits: a URL over maxUrlBytes is 414") {
  App app({}, smallLimits());
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/" + std::string(300, 'u')));
  expectErrorAndClose(c, 414);
  auto ok = request(server.port(), get("/" + std::string(255, 'u')));
  REQUIRE(ok);
  CHECK(ok->status == 200);
}

TEST_CASE("limits: more header fields than maxHeaderCount is 431") {
  App app({}, smallLimits());
  echoRoutes(app);
  TestServer server(app);
  std::string fields;
  for (int i = 0; i < 7; ++i) fields += "X-" + std::to_string(i) + ": v\r\n";
  auto ok = request(server.port(), get("/", fields));  // Host + 7 = 8
  REQUIRE(ok);
  CHECK(ok->status == 200);
  RawClient c(server.port());
  c.send(get("/", fields + "X-Last: v\r\n"));
  expectErrorAndClose(c, 431);
}

TEST_CASE("limits: a body over maxBodyBytes is 413") {
  App app({}, smallLimits());
  echoRoutes(app);
  TestServer server(app);
  SUBCASE("Content-Length, refused before the body arrives") {
    RawClient c(server.port());
    c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n");
    expectErrorAndClose(c, 413);
  }
  SUBCASE("Content-Length at the limit passes") {
    auto r = request(server.port(), post("/", std::string(1000, 'b')));
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  SUBCASE("chunked, in total over the limit") {
    RawClient c(server.port());
    std::string chunk = "1f4\r\n" + std::string(500, 'c') + "\r\n";
    c.send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk);
    c.send("1\r\nc\r\n0\r\n\r\n");
    expectErrorAndClose(c, 413);
  }
}

// ---------------------------------------------------------------- timeouts

TEST_CASE("timeouts: headers sent slower than headerTimeout get 408 (slow loris)") {
  HttpOptions o;
  o.headerTimeout = 200ms;
  App app({}, o);
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  // One byte every 20 ms: each byte arrives in time, the whole head does not.
  std::string head = get("/", "X-Slow: " + std::string(40, 's') + "\r\n");
  auto start = std::chrono::steady_clock::now();
  for (char ch : head) {
    if (c.readable()) break;
    if (!c.send(std::string_view(&ch, 1))) break;
    std::this_thread::sleep_for(20ms);
  }
  auto r = readResponse(c);
  REQUIRE(r);
  CHECK(r->status == 408);
  CHECK(r->body == "Request Timeout");
  CHECK(r->headers.get("Connection") == "close");
  CHECK(std::chrono::steady_clock::now() - start >= 200ms);
  CHECK(c.waitClosed(1500ms));
}

TEST_CASE("timeouts: a body slower than bodyTimeout gets 408") {
  HttpOptions o;
  o.bodyTimeout = 150ms;
  App app({}, o);
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
  auto r = readResponse(c, false, 1500ms);
  REQUIRE(r);
  CHECK(r->status == 408);
  CHECK(c.waitClosed(1500ms));
}

TEST_CASE("timeouts: a connection that never sends is closed without a response") {
  HttpOptions o;
  o.headerTimeout = 150ms;
  App app({}, o);
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  CHECK(c.waitClosed(1500ms));
  CHECK(c.buffer().empty());
}

TEST_CASE("timeouts: an idle keep-alive connection is closed after keepAliveTimeout") {
  HttpOptions o;
  o.keepAliveTimeout = 200ms;
  App app({}, o);
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/1"));
  REQUIRE(readResponse(c));
  std::this_thread::sleep_for(50ms);
  c.send(get("/2"));  // activity restarts the idle clock
  auto r = readResponse(c);
  REQUIRE(r);
  CHECK(r->body == "GET /2 ");
  auto idleFrom = std::chrono::steady_clock::now();
  CHECK(c.waitClosed(1500ms));
  CHECK(c.buffer().empty());
  CHECK(std::chrono::steady_clock::now() - idleFrom >= 150ms);
}

TEST_CASE("timeouts: a handler that takes long is not a timeout") {
  HttpOptions o;
  o.headerTimeout = 100ms;
  o.bodyTimeout = 100ms;
  o.keepAliveTimeout = 100ms;
  App app({}, o);
  app.get("/slow", [](Request& req) {
    auto d = req.defer();
    req.loop().setTimeout(400ms, [d] { d.send(Response::text("finally")); });
    return d;
  });
  TestServer server(app);
  auto r = request(server.port(), get("/slow"));
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "finally");
}

// ---------------------------------------------------------------- malformed

TEST_CASE("malformed requests are 400 and close") {
  App app;
  echoRoutes(app);
  TestServer server(app);
  struct Case {
    const char* name;
    std::string raw;
    int status;
  };
  std::vector<Case> cases = {
      {"garbage", "HELLO\r\n\r\n", 400},
      {"HTTP/0.9 request line", "GET /\r\n\r\n", 505},
      {"bad header name", "GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400},
      {"header without colon", "GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400},
      {"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"Content-Length and Transfer-Encoding",
       "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\n",
       400},
      {"conflicting Content-Lengths",
       "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
      {"negative Content-Length", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400},
      {"bad chunk size", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       400},
      {"chunk without CRLF",
       "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n", 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  continued\r\n\r\n", 400},
      {"control byte in a value", std::string("GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x01z\r\n\r\n"),
       400},
      {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505},
      {"unknown method", "BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n", 501},
  };
  for (const auto& tc : cases) {
    std::string name = tc.name;
    CAPTURE(name);
    RawClient c(server.port());
    c.send(tc.raw);
    expectErrorAndClose(c, tc.status);
  }
}

TEST_CASE("an error after good pipelined requests: earlier answers arrive, then the error") {
  App app;
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/a") + get("/b") + "GET /c HTTP/1.1\r\nBad Header: x\r\n\r\n" + get("/never"));
  auto a = readResponse(c);
  auto b = readResponse(c);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->body == "GET /a ");
  CHECK(b->body == "GET /b ");
  expectErrorAndClose(c, 400);
}

TEST_CASE("lingering close: the client reads the whole error response despite unread input") {
  // Closing a socket with unread input sends RST, which would destroy the
  // error response in flight; the server must shut down its side and drain.
  App app({}, smallLimits());
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  // A 413 by Content-Length, with the (refused) body sent anyway, in full.
  std::string body(512 * 1024, 'x');
  c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n");
  std::this_thread::sleep_for(20ms);  // the error is already on its way
  std::thread sender([&] { c.send(body); });
  auto r = readResponse(c);
  sender.join();
  REQUIRE_MESSAGE(r, "the error response was lost");
  CHECK(r->status == 413);
  CHECK(r->body == "Content Too Large");
  CHECK(c.waitClosed(2500ms));
}

TEST_CASE("lingering close ends after lingerTimeout if the client keeps sending") {
  HttpOptions o = smallLimits();
  o.lingerTimeout = 200ms;
  App app({}, o);
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/" + std::string(300, 'u')));
  auto r = readResponse(c);
  REQUIRE(r);
  CHECK(r->status == 414);
  auto until = std::chrono::steady_clock::now() + 2s;
  bool closed = false;
  while (std::chrono::steady_clock::now() < until) {
    if (!c.send(std::string(100, 'z'))) {  // reset once the server really closes
      closed = true;
      break;
    }
    c.readSome(10ms);
    if (c.closed()) {
      closed = true;
      break;
    }
  }
  CHECK(closed);
}

// ---------------------------------------------------------------- split input

TEST_CASE("split packets: a request sent one byte at a time") {
  App app;
  echoRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  SUBCASE("Content-Length body") {
    REQUIRE(c.sendSlowly(post("/split?x=1", "hello body", "X-A: b\r\n"), 200us));
    auto r = readResponse(c);
    REQUIRE(r);
    CHECK(r->body == "POST /split?x=1 hello body");
  }
  SUBCASE("chunked body") {
    REQUIRE(
        c.sendSlowly("PUT /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\n",
                     200us));
    auto r = readResponse(c);
    REQUIRE(r);
    CHECK(r->body == "PUT /c abc0123456789");
  }
  SUBCASE("two requests, the second split across the first's last packet") {
    std::string both = get("/one") + get("/two");
    c.send(both.substr(0, both.size() / 2 + 3));
    std::this_thread::sleep_for(20ms);
    c.send(both.substr(both.size() / 2 + 3));
    auto one = readResponse(c);
    auto two = readResponse(c);
    REQUIRE(one);
    REQUIRE(two);
    CHECK(one->body == "GET /one ");
    CHECK(two->body == "GET /two ");
  }
  CHECK(c.readSome(50ms).empty());
}

// ---------------------------------------------------------------- pipelining

TEST_CASE("pipelining: many requests in one write, answered once each, in order") {
  App app;
  std::atomic<int> calls{0};
  app.get("/n/:i", [&](Request& req) {
    ++calls;
    return std::string(req.param("i"));
  });
  app.post("/p/:i", [](Request& req) {
    return std::string(req.param("i")) + ":" + std::string(req.text());
  });
  TestServer server(app);
  RawClient c(server.port());
  std::string all;
  for (int i = 0; i < 100; ++i) {
    all += i % 3 == 0 ? post(spry::test::cat("/p/", std::to_string(i)),
                             spry::test::cat("b", std::to_string(i)))
                      : get("/n/" + std::to_string(i));
  }
  c.send(all);
  for (int i = 0; i < 100; ++i) {
    auto r = readResponse(c);
    REQUIRE(r);
    CHECK(r->body ==
          (i % 3 == 0 ? std::to_string(i) + ":b" + std::to_string(i) : std::to_string(i)));
  }
  CHECK(c.readSome(100ms).empty());
  CHECK(c.buffer().empty());
  CHECK(calls == 66);
}

TEST_CASE("pipelining: a deferred response in the middle keeps the order") {
  App app;
  Recorder handled;
  app.get("/fast/:i", [&](Request& req) {
    handled.add("fast" + std::string(req.param("i")));
    return "fast" + std::string(req.param("i"));
  });
  app.get("/slow/:i", [&](Request& req) {
    handled.add("slow" + std::string(req.param("i")));
    auto d = req.defer();
    std::string i(req.param("i"));
    req.loop().setTimeout(100ms, [d, i] { d.send(Response::text("slow" + i)); });
    return d;
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/fast/1") + get("/slow/2") + get("/fast/3") + get("/slow/4") + get("/fast/5"));
  for (const char* want : {"fast1", "slow2", "fast3", "slow4", "fast5"}) {
    auto r = readResponse(c);
    REQUIRE(r);
    CHECK(r->body == want);
  }
  // Requests behind a pending response wait: handlers ran in order, one at a time.
  CHECK(handled.events() == std::vector<std::string>{"fast1", "slow2", "fast3", "slow4", "fast5"});
  CHECK(c.readSome(100ms).empty());
}

TEST_CASE("pipelining: input beyond maxPipelinedBytes pauses reading, then resumes") {
  HttpOptions o;
  o.maxPipelinedBytes = 2048;
  App app({}, o);
  app.get("/n/:i", [](Request& req) {
    if (req.param("i") == "0") {
      auto d = req.defer();
      req.loop().setTimeout(150ms, [d] { d.send(Response::text("0")); });
      return Response(d);
    }
    return Response::text(std::string(req.param("i")));
  });
  TestServer server(app);
  RawClient c(server.port());
  std::string all;
  for (int i = 0; i < 400; ++i)
    all += get("/n/" + std::to_string(i), "X-Pad: " + std::string(100, 'p') + "\r\n");
  std::thread sender([&] { c.send(all); });  // ~60 KB: more than the server will buffer
  for (int i = 0; i < 400; ++i) {
    auto r = readResponse(c);
    REQUIRE(r);
    REQUIRE(r->body == std::to_string(i));
  }
  sender.join();
  CHECK(c.readSome(100ms).empty());
}

TEST_CASE("pipelining: the client half-closes after its last request") {
  HttpOptions o;
  o.keepAliveTimeout = 10s;  // the close must come from the half-close, not a timeout
  App app({}, o);
  app.get("/fast", [](Request&) { return "fast"; });
  app.get("/slow", [](Request& req) {
    auto d = req.defer();
    req.loop().setTimeout(100ms, [d] { d.send(Response::text("slow")); });
    return d;
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/slow") + get("/fast") + get("/slow") + get("/fast"));
  c.shutdownWrite();
  for (const char* want : {"slow", "fast", "slow", "fast"}) {
    auto r = readResponse(c);
    REQUIRE(r);
    CHECK(r->body == want);
  }
  CHECK_MESSAGE(c.waitClosed(1500ms), "answered everything but did not close after the FIN");
  CHECK(c.buffer().empty());
}

TEST_CASE("slow client: a large response reaches a client that reads slowly") {
  App app;
  std::string big(4 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  app.get("/big", [&big](Request&) { return Response::bytes(big); });
  app.get("/small", [](Request&) { return "small"; });
  TestServer server(app);
  RawClient c(server.port());
  c.setReceiveBuffer(16 * 1024);
  c.send(get("/big") + get("/small"));
  std::this_thread::sleep_for(100ms);  // let the server's output back up
  auto head = c.readUntil("\r\n\r\n");
  REQUIRE(head);
  CHECK(head->find("Content-Length: 4194304\r\n") != std::string::npos);
  std::string body;
  while (body.size() < big.size()) {
    if (c.buffer().empty()) {
      std::string got = c.readSome(2000ms);
      REQUIRE_FALSE(got.empty());
      c.buffer() += got;
    }
    std::size_t n = std::min(c.buffer().size(), big.size() - body.size());
    body += c.take(n);
  }
  CHECK(body == big);
  auto small = readResponse(c);
  REQUIRE(small);
  CHECK(small->body == "small");
}

TEST_CASE("timeouts: keepAliveTimeout does not cut off a response the client is still reading") {
  HttpOptions o;
  o.keepAliveTimeout = 100ms;
  App app({}, o);
  // More than the kernel's socket buffers hold, so that some of it waits in spry.
  std::string big(12 << 20, 'k');
  app.get("/big", [&big](Request&) { return Response::bytes(big); });
  TestServer server(app);
  RawClient c(server.port());
  c.setReceiveBuffer(64 * 1024);
  c.send(get("/big"));
  REQUIRE(c.readUntil("\r\n\r\n"));
  std::this_thread::sleep_for(300ms);  // a reader that stalls past the keep-alive timeout
  std::size_t got = c.buffer().size();
  c.buffer().clear();
  while (got < big.size()) {
    std::string part = c.readSome(1000ms);
    if (part.empty()) break;
    got += part.size();
  }
  CHECK(got == big.size());
}

TEST_CASE("slow client: pipelined requests wait while their answers cannot be delivered") {
  HttpOptions o;
  o.streamHighWaterBytes = 64 * 1024;
  o.maxPipelinedBytes = 4096;
  App app({}, o);
  std::atomic<int> handled{0};
  app.get("/big/:i", [&handled](Request& req) {
    ++handled;
    return Response::bytes(std::string(
        256 * 1024, static_cast<char>('a' + std::stoi(std::string(req.param("i"))) % 26)));
  });
  TestServer server(app);
  RawClient c(server.port());
  c.setReceiveBuffer(16 * 1024);
  std::string all;
  for (int i = 0; i < 64; ++i) all += get("/big/" + std::to_string(i));
  c.send(all);
  c.shutdownWrite();  // and the FIN must not cut the queue short either
  std::this_thread::sleep_for(300ms);
  // 64 answers of 256 KiB are 16 MiB: a server without output backpressure
  // would have queued all of them for a client that reads nothing.
  auto queued = app.stats().writeQueueBytes;
  CHECK_MESSAGE(queued <= o.streamHighWaterBytes + 256 * 1024 + 1024, queued);
  CHECK(handled < 64);
  for (int i = 0; i < 64; ++i) {
    auto r = readResponse(c);
    REQUIRE(r);
    REQUIRE(r->body.size() == 256 * 1024);
    CHECK(r->body[0] == static_cast<char>('a' + i % 26));
  }
  CHECK(handled == 64);
  CHECK(c.waitClosed(1000ms));
}
