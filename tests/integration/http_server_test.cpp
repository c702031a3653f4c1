// Loopback tests of the server around the HTTP core: listen and attach errors,
// stop, deferred responses (timers, thread pool), streamed bodies with
// backpressure, and peers that vanish mid-response.

#include <atomic>
#include <csignal>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include "harness.h"

using namespace spry::test;
using spry::App;
using spry::BodyWriter;
using spry::Deferred;
using spry::HttpOptions;
using spry::ListenOptions;
using spry::Request;
using spry::Response;

namespace {

// Reads a chunked body slowly: `pause` after every read.
std::optional<std::string> readChunkedSlowly(RawClient& c, std::chrono::milliseconds pause) {
  std::string body;
  for (;;) {
    auto sizeLine = c.readUntil("\r\n", 3000ms);
    if (!sizeLine) return std::nullopt;
    std::size_t n = std::stoul(*sizeLine, nullptr, 16);
    if (n == 0) {
      if (!c.readUntil("\r\n", 3000ms)) return std::nullopt;
      return body;
    }
    if (!c.fill(n + 2, 3000ms)) return std::nullopt;
    body += c.take(n);
    c.take(2);
    if (pause.count()) std::this_thread::sleep_for(pause);
  }
}

char patternAt(std::size_t i) {
  return static_cast<char>('A' + (i * 7 + i / 4096) % 26);
}

}  // namespace

// ---------------------------------------------------------------- listen

TEST_CASE("listen errors: a port in use throws, naming the address and the cause") {
  App first;
  first.get("/", [](Request&) { return "first"; });
  TestServer server(first);
  const std::string where = "127.0.0.1:" + std::to_string(server.port());

  SUBCASE("attach") {
    App second;
    try {
      TestServer clash(second, {.port = server.port()});
      FAIL("attach on a used port did not throw");
    } catch (const std::runtime_error& e) {
      std::string what = e.what();
      CHECK_MESSAGE(what.find(where) != std::string::npos, what);
      CHECK_MESSAGE(what.find("address already in use") != std::string::npos, what);
    }
    CHECK_FALSE(second.isListening());
    CHECK(second.port() == 0);
  }
  SUBCASE("listen") {
    App second;
    try {
      second.listen({.port = server.port(), .handleSignals = false});
      FAIL("listen on a used port did not throw");
    } catch (const std::runtime_error& e) {
      std::string what = e.what();
      CHECK_MESSAGE(what.find(where) != std::string::npos, what);
      CHECK_MESSAGE(what.find("address already in use") != std::string::npos, what);
    }
    CHECK_FALSE(second.isListening());
  }
  // The first server is unaffected.
  auto r = request(server.port(), get("/"));
  REQUIRE(r);
  CHECK(r->body == "first");
}

TEST_CASE("listen errors: an invalid host throws, naming it") {
  for (const char* host : {"256.1.1.1", "example.invalid", "", "::zz"}) {
    CAPTURE(std::string(host));
    App app;
    try {
      TestServer server(app, {.host = host, .port = 0});
      FAIL("an invalid host was accepted");
    } catch (const std::runtime_error& e) {
      CHECK_MESSAGE(std::string(e.what()).find("'" + std::string(host) + "'") != std::string::npos,
                    e.what());
    }
  }
  App app;
  CHECK_THROWS_AS(app.listen({.host = "not an address", .port = 0, .handleSignals = false}),
                  std::runtime_error);
}

TEST_CASE("listen on IPv6 ::1") {
  App app;
  app.get("/who", [](Request& req) { return std::string(req.remoteAddress()); });
  TestServer server(app, {.host = "::1", .port = 0});
  RawClient c(server.port(), "::1");
  c.send(get("/who"));
  auto r = readResponse(c);
  REQUIRE(r);
  CHECK(r->body == "::1");
}

TEST_CASE("listen(): runs on the calling thread until stop(), onListening gets the port") {
  App app;
  app.get("/", [](Request& req) { return req.loop().isCurrentThread() ? "on loop" : "elsewhere"; });
  std::promise<std::uint16_t> bound;
  std::thread runner([&] {
    app.listen({.port = 0,
                .threads = 1,
                .handleSignals = false,
                .onListening = [&](const std::string& host, std::uint16_t port) {
                  CHECK(host == "127.0.0.1");
                  bound.set_value(port);
                }});
  });
  auto port = bound.get_future().get();
  CHECK(port != 0);
  CHECK(app.port() == port);
  CHECK(app.isListening());
  CHECK(app.loops().size() == 1);
  auto r = request(port, get("/"));
  REQUIRE(r);
  CHECK(r->body == "on loop");
  app.stop(500ms);
  runner.join();
  CHECK_FALSE(app.isListening());
  CHECK(app.port() == 0);
  CHECK(app.loops().empty());
}

// ---------------------------------------------------------------- attach / stop

TEST_CASE("attach: stop closes idle connections and finishes the response in flight") {
  App app;
  std::promise<void> handlerRan;
  app.get("/idle", [](Request&) { return "idle"; });
  app.get("/slow", [&](Request& req) {
    auto d = req.defer();
    req.loop().setTimeout(200ms, [d] { d.send(Response::text("late but whole")); });
    handlerRan.set_value();
    return d;
  });
  auto server = std::make_unique<TestServer>(app);
  auto port = server->port();
  CHECK(app.isListening());

  LogCapture logs;
  std::thread stopper;
  {
    RawClient idle(port);
    idle.send(get("/idle"));
    REQUIRE(readResponse(idle));
    RawClient busy(port);
    busy.send(get("/slow"));
    handlerRan.get_future().wait();

    stopper = std::thread([&] { server->stop(2000ms); });
    CHECK(idle.waitClosed(150ms));  // closed at once, not after a timeout
    auto r = readResponse(busy, false, 2000ms);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "late but whole");
    CHECK(r->headers.get("Connection") == "close");
    CHECK(busy.waitClosed(1000ms));
  }
  stopper.join();               // checks that the loop closed cleanly
  CHECK(logs.lines().empty());  // nothing was dropped at the deadline
  CHECK_FALSE(app.isListening());
  // Nothing listens any more.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0);
  ::close(fd);
}

TEST_CASE("attach: stop drops what is still pending at the deadline") {
  LogCapture logs;
  App app;
  std::promise<void> handlerRan;
  std::atomic<bool> sendResult{true};
  app.get("/never", [&](Request& req) {
    auto d = req.defer();
    req.loop().setTimeout(5s, [d, &sendResult] { sendResult = d.send(Response::text("no")); });
    handlerRan.set_value();
    return d;
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/never"));
  handlerRan.get_future().wait();
  auto start = std::chrono::steady_clock::now();
  server.stop(150ms);
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(c.waitClosed(1000ms));
  CHECK(c.buffer().empty());
  CHECK(logs.contains({"shutdown deadline passed", "dropping 1 connection"}));
  CHECK(sendResult);  // the timer was closed with the loop: its callback never ran
}

// ---------------------------------------------------------------- deferred

TEST_CASE("deferred: answered from a timer, with middleware headers on the placeholder") {
  App app;
  app.use([](Request&, const spry::Next& next) {
    Response r = next();
    r.header("X-Mw", "1");
    r.header("X-Both", "placeholder");
    return r;
  });
  app.get("/later", [](Request& req) {
    auto d = req.defer();
    CHECK(d.isPending());
    req.loop().setTimeout(50ms, [d] {
      auto r = Response::text("done", 202);
      r.header("X-Both", "final");
      CHECK(d.send(std::move(r)));
      CHECK_FALSE(d.isPending());
      CHECK_FALSE(d.send(Response::text("twice")));  // only once
    });
    return d;
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/later"));
  auto r = readResponse(c);
  REQUIRE(r);
  CHECK(r->status == 202);
  CHECK(r->body == "done");
  CHECK(r->headers.get("X-Mw") == "1");
  CHECK(r->headers.get("X-Both") == "final");
  // The connection goes on after a deferred response.
  c.send(get("/later"));
  auto again = readResponse(c);
  REQUIRE(again);
  CHECK(again->body == "done");
}

TEST_CASE("deferred: send() before the handler returns") {
  App app;
  app.get("/now", [](Request& req) {
    auto d = req.defer();
    CHECK(d.send(Response::text("immediately")));
    return d;
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/now") + get("/now"));
  for (int i = 0; i < 2; ++i) {
    auto r = readResponse(c, false, 1000ms);
    REQUIRE_MESSAGE(r, "a Deferred sent before the handler returned was never answered");
    CHECK(r->body == "immediately");
  }
}

TEST_CASE("deferred: work on the thread pool, then send() on the loop") {
  App app;
  app.get("/work/:n", [](Request& req) {
    auto d = req.defer();
    auto loop = req.loop();
    auto n = std::stoi(std::string(req.param("n")));
    auto result = std::make_shared<long>(0);
    auto workThread = std::make_shared<bool>(false);
    loop.queueWork(
        [result, n, workThread, loop] {
          *workThread = !loop.isCurrentThread();
          for (int i = 1; i <= n; ++i) *result += i;
        },
        [d, result, workThread, loop] {
          CHECK(loop.isCurrentThread());
          d.send(Response::text(std::to_string(*result) + (*workThread ? " pool" : " loop")));
        });
    return d;
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/work/100") + get("/work/10"));
  auto a = readResponse(c);
  auto b = readResponse(c);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->body == "5050 pool");
  CHECK(b->body == "55 pool");
}

TEST_CASE("deferred: send() after the client is gone returns false") {
  App app;
  std::promise<void> handlerRan;
  std::promise<std::pair<bool, bool>> outcome;  // {isPending, send}
  app.get("/gone", [&](Request& req) {
    auto d = req.defer();
    req.loop().setTimeout(150ms, [d, &outcome] {
      bool pending = d.isPending();
      outcome.set_value({pending, d.send(Response::text("too late"))});
    });
    handlerRan.set_value();
    return d;
  });
  app.get("/ok", [](Request&) { return "ok"; });
  TestServer server(app);
  {
    RawClient c(server.port());
    c.send(get("/gone"));
    handlerRan.get_future().wait();
    c.reset();
  }
  auto f = outcome.get_future();
  REQUIRE(f.wait_for(2s) == std::future_status::ready);
  auto [pending, sent] = f.get();
  CHECK_FALSE(pending);
  CHECK_FALSE(sent);
  auto r = request(server.port(), get("/ok"));
  REQUIRE(r);
  CHECK(r->body == "ok");
}

TEST_CASE("deferred: the request stays valid until send(), even when the client is gone") {
  App app;
  std::promise<void> handlerRan;
  std::promise<std::string> seen;
  app.get("/hold/:name", [&](Request& req) {
    auto d = req.defer();
    // Documented: the request is valid until send(); capturing it is allowed.
    req.loop().setTimeout(150ms, [&req, d, &seen] {
      std::string what = std::string(req.param("name")) + "," + std::string(req.header("X-Tag")) +
                         "," + std::string(req.path());
      bool sent = d.send(Response::text("late"));
      seen.set_value(what + (sent ? ",sent" : ",dropped"));
    });
    handlerRan.set_value();
    return d;
  });
  TestServer server(app);
  {
    RawClient c(server.port());
    c.send(get("/hold/ann", "X-Tag: " + std::string(200, 't') + "\r\n"));
    handlerRan.get_future().wait();
    c.reset();
  }
  auto f = seen.get_future();
  REQUIRE(f.wait_for(2s) == std::future_status::ready);
  CHECK(f.get() == "ann," + std::string(200, 't') + ",/hold/ann,dropped");
}

TEST_CASE("deferred: defer() twice is a programming error answered with 500") {
  LogCapture logs;
  App app;
  app.get("/twice", [](Request& req) {
    auto d = req.defer();
    (void)req.defer();
    return d;
  });
  app.get("/foreign", [](Request&) -> Response {
    return Response::text("x").setStatus(200);  // a plain response is fine
  });
  TestServer server(app);
  auto r = request(server.port(), get("/twice"));
  REQUIRE(r);
  CHECK(r->status == 500);
  CHECK(r->body == "Internal Server Error");
  CHECK(logs.contains({"GET /twice", "defer"}));
}

// ---------------------------------------------------------------- streaming

TEST_CASE("streaming: 8 MiB with backpressure to a slow reader stays bounded") {
  constexpr std::size_t kTotal = 8 << 20;
  constexpr std::size_t kChunk = 16 * 1024;
  HttpOptions o;
  o.streamHighWaterBytes = 64 * 1024;
  App app({}, o);
  struct Stats {
    std::size_t maxBuffered = 0;
    int refusals = 0;
    int drains = 0;
    bool aborted = false;
  };
  auto stats = std::make_shared<Stats>();
  std::promise<Stats> finished;
  auto token = std::make_shared<int>(0);  // held by the callbacks, see below
  std::weak_ptr<int> watch = token;
  app.get("/stream", [&](Request&) {
    return Response::stream(
        [stats, &finished, token](BodyWriter w) {
          auto sent = std::make_shared<std::size_t>(0);
          auto pump = std::make_shared<std::function<void()>>();
          *pump = [w, sent, stats, &finished, token] {
            while (*sent < kTotal) {
              std::string chunk(kChunk, '\0');
              for (std::size_t i = 0; i < kChunk; ++i) chunk[i] = patternAt(*sent + i);
              *sent += kChunk;
              bool more = w.write(chunk);
              stats->maxBuffered = std::max(stats->maxBuffered, w.bufferedAmount());
              if (!more) {
                ++stats->refusals;
                return;  // onDrain resumes
              }
            }
            w.end();
            CHECK_FALSE(w.isOpen());
            CHECK_FALSE(w.write("after end"));
            finished.set_value(*stats);
          };
          w.onDrain([pump, stats] {
            ++stats->drains;
            (*pump)();
          });
          w.onAbort([stats] { stats->aborted = true; });
          (*pump)();
        },
        "application/x-pattern");
  });
  app.get("/after", [](Request&) { return "after"; });
  TestServer server(app);
  RawClient c(server.port());
  c.setReceiveBuffer(32 * 1024);
  c.send(get("/stream") + get("/after"));
  auto head = c.readUntil("\r\n\r\n");
  REQUIRE(head);
  CHECK(head->rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(head->find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(head->find("Content-Type: application/x-pattern\r\n") != std::string::npos);
  auto body = readChunkedSlowly(c, std::chrono::milliseconds(0));
  REQUIRE(body);
  REQUIRE(body->size() == kTotal);
  bool intact = true;
  for (std::size_t i = 0; i < kTotal && intact; ++i) intact = (*body)[i] == patternAt(i);
  CHECK(intact);
  auto f = finished.get_future();
  REQUIRE(f.wait_for(2s) == std::future_status::ready);
  Stats s = f.get();
  CHECK(s.refusals > 0);          // the reader was slow enough to push back
  CHECK(s.drains == s.refusals);  // every refusal was followed by one drain
  CHECK_FALSE(s.aborted);
  // At most one chunk (plus its framing) above the high-water mark.
  CHECK(s.maxBuffered <= o.streamHighWaterBytes + kChunk + 16);
  // The pipelined request behind the stream is answered after it.
  auto after = readResponse(c);
  REQUIRE(after);
  CHECK(after->body == "after");
  // The callbacks hold the writer; once the stream ended spry let them go.
  token.reset();
  CHECK(waitUntil([&] { return watch.expired(); }, 1000ms));
}

TEST_CASE("streaming: the producer may finish synchronously, and a later write is refused") {
  App app;
  app.get("/sync", [](Request&) {
    return Response::stream([](BodyWriter w) {
      CHECK(w.isOpen());
      w.write("hello ");
      w.write("");
      w.write("world");
      w.end();
      w.end();
      CHECK_FALSE(w.write("!"));
    });
  });
  app.get("/deferred-stream", [](Request& req) {
    auto d = req.defer();
    req.loop().setTimeout(20ms, [d] {
      d.send(Response::stream([](BodyWriter w) {
        w.write("streamed later");
        w.end();
      }));
    });
    return d;
  });
  app.get("/deferred-wait", [](Request& req) {
    auto d = req.defer();
    req.loop().setTimeout(20ms, [d] { d.send(Response::text("waited")); });
    return d;
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/sync") + get("/deferred-stream") + get("/deferred-wait") + get("/sync"));
  for (const char* want : {"hello world", "streamed later", "waited", "hello world"}) {
    auto r = readResponse(c);
    REQUIRE(r);
    CHECK(r->body == want);
  }
  CHECK(c.readSome(100ms).empty());
}

TEST_CASE("streaming: HTTP/1.0 gets a close-delimited body, HEAD gets none") {
  App app;
  app.get("/s", [](Request&) {
    return Response::stream([](BodyWriter w) {
      w.write("abc");
      w.write("def");
      w.end();
    });
  });
  TestServer server(app);

  RawClient old(server.port());
  old.send("GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  auto r = readResponse(old);
  REQUIRE(r);
  CHECK_FALSE(r->headers.has("Transfer-Encoding"));
  CHECK(r->headers.get("Connection") == "close");
  CHECK(r->body == "abcdef");
  CHECK(old.closed());

  RawClient head(server.port());
  head.send("HEAD /s HTTP/1.1\r\nHost: t\r\n\r\n" + get("/s"));
  auto h = readResponse(head, true);
  REQUIRE(h);
  CHECK(h->status == 200);
  auto g = readResponse(head);
  REQUIRE(g);
  CHECK(g->body == "abcdef");
}

TEST_CASE("streaming: a client that disconnects mid-stream triggers onAbort once") {
  App app;
  std::promise<void> aborted;
  auto aborts = std::make_shared<std::atomic<int>>(0);
  auto lateWrite = std::make_shared<std::atomic<int>>(-1);
  // Held by the callbacks, which hold the writer: spry must break that cycle.
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  app.get("/endless", [&](Request&) {
    return Response::stream([&aborted, aborts, lateWrite, token](BodyWriter w) {
      auto pump = std::make_shared<std::function<void()>>();
      *pump = [w, token] {
        while (w.write(std::string(8192, 'e'))) {
        }
      };
      w.onDrain([pump] { (*pump)(); });
      w.onAbort([w, &aborted, aborts, lateWrite] {
        if (aborts->fetch_add(1) == 0) {
          *lateWrite = w.write("x") ? 1 : 0;
          CHECK_FALSE(w.isOpen());
          aborted.set_value();
        }
      });
      (*pump)();
    });
  });
  app.get("/ok", [](Request&) { return "ok"; });
  TestServer server(app);
  {
    RawClient c(server.port());
    c.setReceiveBuffer(16 * 1024);
    c.send(get("/endless"));
    REQUIRE(c.fill(100 * 1024));
    c.reset();
  }
  auto f = aborted.get_future();
  REQUIRE(f.wait_for(2s) == std::future_status::ready);
  CHECK(*lateWrite == 0);
  auto r = request(server.port(), get("/ok"));
  REQUIRE(r);
  CHECK(r->body == "ok");
  server.stop();
  CHECK(*aborts == 1);
  token.reset();
  CHECK_MESSAGE(watch.expired(), "the stream's callbacks were never released");
}

TEST_CASE("streaming: a producer that throws truncates the body and closes") {
  LogCapture logs;
  App app;
  app.get("/throws", [](Request&) {
    return Response::stream([](BodyWriter w) {
      w.write("partial");
      throw std::runtime_error("producer broke");
    });
  });
  TestServer server(app);
  RawClient c(server.port());
  c.send(get("/throws"));
  auto head = c.readUntil("\r\n\r\n");
  REQUIRE(head);
  CHECK(head->find("Transfer-Encoding: chunked") != std::string::npos);
  CHECK(c.waitClosed(1000ms));
  CHECK(c.buffer() == "7\r\npartial\r\n");  // no last chunk: the client sees truncation
  CHECK(logs.contains({"/throws", "producer broke"}));
}

// ---------------------------------------------------------------- resets

TEST_CASE("a peer resetting mid-write of a large response does not kill the process") {
  App app;
  std::string big(16 << 20, 'z');
  app.get("/big", [&big](Request&) { return Response::bytes(big); });
  app.get("/ok", [](Request&) { return "still here"; });
  TestServer server(app);
  struct sigaction current {};
  REQUIRE(sigaction(SIGPIPE, nullptr, &current) == 0);
  bool ignored = current.sa_handler == SIG_IGN;
  CHECK(ignored);  // attach() ignored SIGPIPE
  for (int i = 0; i < 3; ++i) {
    RawClient c(server.port());
    c.setReceiveBuffer(16 * 1024);
    c.send(get("/big"));
    REQUIRE(c.fill(64 * 1024));
    c.reset();
    std::this_thread::sleep_for(20ms);  // the server writes into the reset socket
  }
  auto r = request(server.port(), get("/ok"));
  REQUIRE(r);
  CHECK(r->body == "still here");
}
