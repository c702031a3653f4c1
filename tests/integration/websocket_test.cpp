// Loopback tests of the WebSocket API: routes, middleware before the
// upgrade, handshake answers, messages, the handle, close and auto-close.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "strings.h"
#include "ws_client.h"

using namespace spry::test;
using spry::Message;
using spry::ReadyState;
using spry::WebSocket;

namespace {

std::size_t countLines(const LogCapture& logs, std::string_view text) {
  auto lines = logs.lines();
  return static_cast<std::size_t>(std::count_if(lines.begin(), lines.end(), [&](const auto& l) {
    return l.find(text) != std::string::npos;
  }));
}

}  // namespace

// ------------------------------------------------------------------ routes

TEST_CASE("ws: the route is a GET route: other methods get 405, a GET route on it is a duplicate") {
  spry::App app;
  Probe p;
  app.ws("/chat", [&p](WebSocket ws, spry::Request&) { echo(p, ws); });
  CHECK_THROWS_AS(app.get("/chat", [](spry::Request&) { return "x"; }), std::invalid_argument);
  app.post("/other", [](spry::Request&) { return "x"; });
  TestServer server(app);

  auto r = request(server.port(), "POST /chat HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(r);
  CHECK(r->status == 405);
  CHECK(r->headers.get("Allow").find("GET") != std::string_view::npos);

  WsClient c(server.port());
  REQUIRE(c.open("/chat"));
  REQUIRE(c.sendText("hi"));
  auto f = c.readFrame();
  REQUIRE(f);
  CHECK(f->opcode == ws::kText);
  CHECK(f->payload == "hi");
  CHECK(p.opened == 1);
}

TEST_CASE("ws: group middleware runs before the upgrade: it can refuse with 401 or fill locals") {
  struct User {
    std::string name;
  };
  spry::App app;
  std::atomic<int> middlewareCalls{0};
  std::atomic<int> handlerCalls{0};
  auto secure = app.group("/secure", {[&](spry::Request& req, const spry::Next& next) {
                            ++middlewareCalls;
                            if (req.header("X-Token") != "ok")
                              throw spry::HttpError(401, "no token");
                            req.locals().set(User{"alice"});
                            auto res = next();
                            res.header("X-Middleware", "seen");
                            return res;
                          }});
  secure.ws("/room/:name", [&](WebSocket ws, spry::Request& req) {
    ++handlerCalls;
    ws.add("user=" + req.locals().get<User>().name + " room=" + std::string(req.param("name")));
  });
  TestServer server(app);

  {
    WsClient c(server.port());
    auto r = c.handshake("/secure/room/lobby");
    REQUIRE(r);
    CHECK(r->status == 401);
    CHECK(r->body == "no token");
    CHECK(r->headers.get("Upgrade").empty());
    CHECK(r->headers.get("Sec-WebSocket-Accept").empty());
  }
  CHECK(handlerCalls == 0);

  WsClient c(server.port());
  auto r = c.handshake("/secure/room/lobby", "X-Token: ok\r\n");
  REQUIRE(r);
  CHECK(r->status == 101);
  CHECK(r->headers.get("X-Middleware") == "seen");
  auto f = c.readFrame();
  REQUIRE(f);
  CHECK(f->payload == "user=alice room=lobby");
  CHECK(middlewareCalls.load() == 2);
  CHECK(handlerCalls.load() == 1);
}

TEST_CASE("ws: the Request in the handler: no body, defer() throws std::logic_error") {
  spry::App app;
  Probe p;
  app.ws("/r", [&p](WebSocket ws, spry::Request& req) {
    p.watch(ws);
    p.note("method=" + std::string(req.method()));
    p.note("text=" + std::string(req.text()) + " bytes=" + std::to_string(req.bytes().size()));
    p.note("query=" + std::string(req.query("q").value_or("?")));
    try {
      req.defer();
      p.note("defer did not throw");
    } catch (const std::logic_error& e) {
      p.note(std::string("defer: ") + e.what());
    }
    ws.add("ready");
  });
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/r?q=1"));
  auto f = c.readFrame();
  REQUIRE(f);
  CHECK(f->payload == "ready");
  auto notes = p.takeNotes();
  REQUIRE(notes.size() == 4);
  CHECK(notes[0] == "method=GET");
  CHECK(notes[1] == "text= bytes=0");
  CHECK(notes[2] == "query=1");
  CHECK(notes[3].find("defer: spry: Request::defer() in a ws route") == 0);
}

TEST_CASE("ws: per-socket user data: setData, data<T>, readable in onClose, gone after") {
  spry::App app;
  Probe p;
  std::vector<WebSocket> table;  // loop thread only
  app.ws("/d", [&](WebSocket ws, spry::Request&) {
    p.watch(ws);
    table.push_back(ws);
    ws.setData<int>(41);
    if (ws.data<std::string>() != nullptr) p.note("data<string> is not null");
    ws.listen([ws](const Message&) {
      int* n = ws.data<int>();
      ws.add(n ? std::to_string(++*n) : std::string("null"));
    });
    ws.onClose([ws, &p](std::uint16_t, std::string_view) {
      int* n = ws.data<int>();
      p.note(n ? "onClose data=" + std::to_string(*n) : std::string("onClose data=null"));
      ++p.closed;
    });
  });
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/d"));
  c.sendText("a");
  c.sendText("b");
  auto f1 = c.readFrame();
  auto f2 = c.readFrame();
  REQUIRE(f1);
  REQUIRE(f2);
  CHECK(f1->payload == "42");
  CHECK(f2->payload == "43");
  c.sendClose(1000);
  REQUIRE(p.waitClosed());
  auto notes = p.takeNotes();
  REQUIRE(notes.size() == 1);
  CHECK(notes[0] == "onClose data=43");
  CHECK(server.onLoop([&] { return table.at(0).data<int>() == nullptr; }));
}

// --------------------------------------------------------------- handshake

TEST_CASE("ws: handshake answers: 426, fallback, version, key, origin, token lists") {
  spry::App app;
  Probe p;
  app.ws("/plain", [&p](WebSocket ws, spry::Request&) { echo(p, ws); });
  app.ws("/fb", [&p](WebSocket ws, spry::Request&) { echo(p, ws); },
         {.fallback = [](spry::Request& req) {
           return spry::Response::text("fallback " + std::string(req.method()));
         }});
  app.ws("/origin", [&p](WebSocket ws, spry::Request&) { echo(p, ws); },
         {.allowedOrigins = {"https://good.example"}});
  app.ws("/own", [&p](WebSocket ws, spry::Request&) { echo(p, ws); }, {.allowOwnOrigin = true});
  app.ws("/own-and-listed", [&p](WebSocket ws, spry::Request&) { echo(p, ws); },
         {.allowedOrigins = {"https://good.example"}, .allowOwnOrigin = true});
  TestServer server(app);
  const auto port = server.port();

  SUBCASE("a GET without upgrade headers gets 426 with Upgrade: websocket") {
    auto r = request(port, get("/plain"));
    REQUIRE(r);
    CHECK(r->status == 426);
    CHECK(r->headers.get("Upgrade") == "websocket");
  }
  SUBCASE("or the route's fallback handler") {
    auto r = request(port, get("/fb"));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "fallback GET");
    WsClient c(port);
    REQUIRE(c.open("/fb"));
  }
  SUBCASE("Sec-WebSocket-Version 8 gets 426 with Sec-WebSocket-Version: 13") {
    WsClient c(port);
    auto r = c.handshakeRaw(
        "GET /plain HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 426);
    CHECK(r->headers.get("Sec-WebSocket-Version") == "13");
  }
  SUBCASE("a missing or malformed key gets 400") {
    for (std::string key :
         {"", "Sec-WebSocket-Key: abc\r\n", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n",
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!=\r\n"}) {
      CAPTURE(key);
      WsClient c(port);
      auto r = c.handshakeRaw(
          "GET /plain HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key +
          "Sec-WebSocket-Version: 13\r\n\r\n");
      REQUIRE(r);
      CHECK(r->status == 400);
    }
  }
  SUBCASE("an Origin outside allowedOrigins gets 403; an allowed one or none is accepted") {
    WsClient bad(port);
    auto r = bad.handshake("/origin", "Origin: https://evil.example\r\n");
    REQUIRE(r);
    CHECK(r->status == 403);
    WsClient good(port);
    CHECK(good.open("/origin", "Origin: https://good.example\r\n"));
    WsClient none(port);
    CHECK(none.open("/origin"));
    CHECK(waitUntil([&] { return p.opened == 2; }));
  }
  SUBCASE("allowOwnOrigin: the server's own origins at its bound port (here port 0), no others") {
    const std::string own = "http://127.0.0.1:" + std::to_string(port);
    const std::string alias = "http://localhost:" + std::to_string(port);
    const std::string otherPort = "http://127.0.0.1:" + std::to_string(port + 1);
    CHECK(server.onLoop([&] { return app.isOwnOrigin(own); }));
    CHECK_FALSE(server.onLoop([&] { return app.isOwnOrigin(otherPort); }));
    struct Case {
      std::string path, origin;
      int status;
    };
    for (const Case& k : std::vector<Case>{
             {"/own", own, 101},
             {"/own", alias, 101},
             {"/own", otherPort, 403},
             {"/own", "https://good.example", 403},  // an empty list no longer means any
             {"/own-and-listed", own, 101},
             {"/own-and-listed", "https://good.example", 101},
             {"/own-and-listed", "https://evil.example", 403},
         }) {
      CAPTURE(k.path);
      CAPTURE(k.origin);
      WsClient c(port);
      auto r = c.handshake(k.path, "Origin: " + k.origin + "\r\n");
      REQUIRE(r);
      CHECK(r->status == k.status);
    }
    CHECK(waitUntil([&] { return p.opened == 4; }));
  }
  SUBCASE("Upgrade and Connection are token lists in any case") {
    WsClient c(port);
    auto r = c.handshakeRaw(
        "GET /plain HTTP/1.1\r\nHost: t\r\nUpgrade: WebSocket\r\n"
        "Connection: keep-alive, Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 101);
    CHECK(r->headers.get("Sec-WebSocket-Accept") == ws::kAccept);
    c.sendText("x");
    auto f = c.readFrame();
    REQUIRE(f);
    CHECK(f->payload == "x");
  }
}

TEST_CASE("ws: an upgrade after a keep-alive request, and one that carries a body") {
  spry::App app;
  Probe p;
  app.get("/plain", [](spry::Request&) { return "plain"; });
  app.ws("/e", [&p](WebSocket ws, spry::Request& req) {
    p.note("body=" + std::string(req.text()));
    echo(p, ws);
  });
  TestServer server(app);

  SUBCASE("keep-alive request first") {
    WsClient c(server.port());
    REQUIRE(c.raw().send(get("/plain")));
    auto r = readResponse(c.raw());
    REQUIRE(r);
    CHECK(r->body == "plain");
    REQUIRE(c.open("/e"));
    c.sendText("x");
    auto f = c.readFrame();
    REQUIRE(f);
    CHECK(f->payload == "x");
    CHECK(p.takeNotes() == std::vector<std::string>{"body="});
  }
  SUBCASE("a request and the upgrade pipelined in one write") {
    WsClient c(server.port());
    REQUIRE(c.raw().send(get("/plain") + WsClient::handshakeRequest("/e") +
                         WsClient::frame(ws::kText, "piped")));
    auto r = readResponse(c.raw());
    REQUIRE(r);
    CHECK(r->body == "plain");
    auto head = c.raw().readUntil("\r\n\r\n");
    REQUIRE(head);
    CHECK(head->rfind("HTTP/1.1 101", 0) == 0);
    auto f = c.readFrame();
    REQUIRE(f);
    CHECK(f->payload == "piped");
  }
  SUBCASE("a body on the upgrade request is not WebSocket data") {
    WsClient c(server.port());
    auto r = c.handshakeRaw(WsClient::handshakeRequest("/e", "Content-Length: 5\r\n") + "hello" +
                            WsClient::frame(ws::kText, "after body"));
    REQUIRE(r);
    CHECK(r->status == 101);
    auto f = c.readFrame();
    REQUIRE(f);
    CHECK(f->payload == "after body");
    CHECK(p.takeNotes() == std::vector<std::string>{"body="});
  }
}

TEST_CASE("ws: a frame sent together with the handshake is not lost") {
  spry::App app;
  Probe p;
  app.ws("/e", [&p](WebSocket ws, spry::Request&) { echo(p, ws); });
  TestServer server(app);
  WsClient c(server.port());
  REQUIRE(c.raw().send(WsClient::handshakeRequest("/e") + WsClient::frame(ws::kText, "early")));
  auto head = c.raw().readUntil("\r\n\r\n");
  REQUIRE(head);
  CHECK(head->rfind("HTTP/1.1 101", 0) == 0);
  auto f = c.readFrame();
  REQUIRE(f);
  CHECK(f->payload == "early");
}

TEST_CASE("ws: subprotocols: only one the client offered is chosen, in server order") {
  spry::App app;
  app.ws("/p", [](WebSocket ws, spry::Request&) { ws.add("protocol=" + ws.protocol()); },
         {.protocols = {"chat.v2", "chat.v1"}});
  TestServer server(app);

  auto check = [&](std::string offer, std::string expected) {
    CAPTURE(offer);
    WsClient c(server.port());
    auto r = c.handshake("/p", offer);
    REQUIRE(r);
    REQUIRE(r->status == 101);
    CHECK(r->headers.get("Sec-WebSocket-Protocol") == expected);
    CHECK(r->headers.getAll("Sec-WebSocket-Protocol").size() == (expected.empty() ? 0u : 1u));
    auto f = c.readFrame();
    REQUIRE(f);
    CHECK(f->payload == "protocol=" + expected);
  };
  check("Sec-WebSocket-Protocol: other, chat.v1\r\n", "chat.v1");
  check("Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n", "chat.v2");
  check("Sec-WebSocket-Protocol: chat.v1\r\nSec-WebSocket-Protocol: chat.v2\r\n", "chat.v2");
  check("Sec-WebSocket-Protocol: other\r\n", "");
  check("Sec-WebSocket-Protocol: CHAT.V1\r\n", "");
  check("", "");
}

// ---------------------------------------------------------------- messages

TEST_CASE("ws: text and binary messages arrive with their type and echo with it") {
  spry::App app;
  Probe p;
  std::vector<std::string> seen;  // loop thread
  app.ws("/m", [&](WebSocket ws, spry::Request&) {
    p.watch(ws);
    ws.listen([ws, &seen](const Message& m) {
      seen.push_back(std::string(m.isText() ? "T:" : "") + (m.isBinary() ? "B:" : "") +
                     std::to_string(m.size()));
      ws.add(m);
    });
  });
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/m"));
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  c.sendText("héllo");
  c.sendBinary(binary);
  c.sendBinary("");
  c.sendFrame(ws::kText, "frag", /*fin=*/false);
  c.sendPing("between");
  c.sendFrame(ws::kContinuation, "mented", /*fin=*/true);
  c.sendText(std::string(70000, 'x'));

  auto f = c.readFrame();
  REQUIRE(f);
  CHECK(f->opcode == ws::kText);
  CHECK(f->payload == "héllo");
  f = c.readFrame();
  REQUIRE(f);
  CHECK(f->opcode == ws::kBinary);
  CHECK(f->payload == binary);
  f = c.readFrame();
  REQUIRE(f);
  CHECK(f->opcode == ws::kBinary);
  CHECK(f->payload.empty());
  // The pong may go out before or after the message the ping interrupted.
  auto g = c.readFrame();
  f = c.readFrame();
  REQUIRE(f);
  REQUIRE(g);
  if (g->opcode == ws::kText) std::swap(f, g);
  CHECK(g->opcode == ws::kPong);
  CHECK(g->payload == "between");
  CHECK(f->opcode == ws::kText);
  CHECK(f->fin);
  CHECK(f->payload == "fragmented");
  f = c.readFrame();
  REQUIRE(f);
  CHECK(f->opcode == ws::kText);
  CHECK(f->payload.size() == 70000);

  auto s = server.onLoop([&] { return seen; });
  CHECK(s == std::vector<std::string>{"T:6", "B:256", "B:0", "T:10", "T:70000"});
}

TEST_CASE("ws: add(text), add(bytes), add(Message) send the right opcode; bad arguments throw") {
  spry::App app;
  Probe p;
  app.ws("/a", [&p](WebSocket ws, spry::Request&) {
    p.watch(ws);
    const std::byte raw[] = {std::byte{1}, std::byte{2}, std::byte{0xFF}};
    bool ok = ws.add("text") && ws.add(std::string_view("view")) &&
              ws.add(std::span<const std::byte>(raw)) && ws.add(Message::text("mt")) &&
              ws.add(Message::binary(std::string("mb"))) &&
              ws.add(Message::view(Message::Type::kBinary, "vb"));
    p.note(ok ? "adds ok" : "an add returned false");
    auto expectInvalid = [&](const char* what, const std::function<void()>& fn) {
      try {
        fn();
        p.note(std::string(what) + ": no throw");
      } catch (const std::invalid_argument&) {
        p.note(std::string(what) + ": invalid_argument");
      }
    };
    expectInvalid("add bad utf8", [&] { ws.add(std::string_view("\xC3\x28", 2)); });
    expectInvalid("add Message bad utf8", [&] { ws.add(Message::text("\xED\xA0\x80")); });
    expectInvalid("close 1005", [&] { ws.close(1005); });
    expectInvalid("close 1006", [&] { ws.close(1006); });
    expectInvalid("close 999", [&] { ws.close(999); });
    expectInvalid("close 2000", [&] { ws.close(2000); });
    expectInvalid("close 5000", [&] { ws.close(5000); });
    expectInvalid("close reason 124", [&] { ws.close(1000, std::string(124, 'r')); });
    expectInvalid("close reason utf8", [&] { ws.close(1000, "\xFF"); });
    expectInvalid("ping 126", [&] { ws.ping(std::string(126, 'p')); });
    p.note(ws.isOpen() ? "still open" : "not open");
    p.note(ws.ping("abc") ? "ping ok" : "ping false");
  });
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/a"));
  std::vector<std::pair<int, std::string>> got;
  for (int i = 0; i < 7; ++i) {
    auto f = c.readFrame();
    REQUIRE(f);
    got.emplace_back(f->opcode, f->payload);
  }
  CHECK(got == std::vector<std::pair<int, std::string>>{{ws::kText, "text"},
                                                        {ws::kText, "view"},
                                                        {ws::kBinary, "\x01\x02\xFF"},
                                                        {ws::kText, "mt"},
                                                        {ws::kBinary, "mb"},
                                                        {ws::kBinary, "vb"},
                                                        {ws::kPing, "abc"}});
  auto notes = p.takeNotes();
  CHECK(notes == std::vector<std::string>{
                     "adds ok", "add bad utf8: invalid_argument",
                     "add Message bad utf8: invalid_argument", "close 1005: invalid_argument",
                     "close 1006: invalid_argument", "close 999: invalid_argument",
                     "close 2000: invalid_argument", "close 5000: invalid_argument",
                     "close reason 124: invalid_argument", "close reason utf8: invalid_argument",
                     "ping 126: invalid_argument", "still open", "ping ok"});
  // Nothing else was sent: the failed calls left no frame behind.
  c.sendText("end");
  CHECK(!c.readFrame(100ms));
}

// ------------------------------------------------------------------- close

TEST_CASE("ws: exactly one onClose per open, with the right code") {
  spry::App app;
  Probe p;
  app.ws("/c", [&p](WebSocket ws, spry::Request&) {
    p.watch(ws);
    ws.listen([ws](const Message& m) {
      if (m.data() == "close-me") ws.close(4000, "x");
    });
  });
  TestServer server(app);

  SUBCASE("client-initiated: the server echoes, onClose gets the client's code and reason") {
    WsClient c(server.port());
    REQUIRE(c.open("/c"));
    c.sendClose(4001, "bye");
    auto f = c.readClose();
    REQUIRE(f);
    CHECK(f->closeCode() == 4001);
    CHECK(c.raw().waitClosed());
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 4001);
    CHECK(p.reason() == "bye");
  }
  SUBCASE("an empty Close is reported as 1005 and echoed empty") {
    WsClient c(server.port());
    REQUIRE(c.open("/c"));
    c.sendClose(0);
    auto f = c.readClose();
    REQUIRE(f);
    CHECK(f->payload.empty());
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 1005);
  }
  SUBCASE("server close(4000, \"x\") and the client's echo: onClose gets 4000") {
    WsClient c(server.port());
    REQUIRE(c.open("/c"));
    c.sendText("close-me");
    auto f = c.readClose();
    REQUIRE(f);
    CHECK(f->closeCode() == 4000);
    CHECK(f->closeReason() == "x");
    c.sendClose(4000, "x");
    CHECK(c.raw().waitClosed());
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 4000);
    CHECK(p.reason() == "x");
  }
  SUBCASE("TCP reset without a Close: 1006") {
    WsClient c(server.port());
    REQUIRE(c.open("/c"));
    c.raw().reset();
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 1006);
  }
  SUBCASE("TCP FIN without a Close: 1006") {
    WsClient c(server.port());
    REQUIRE(c.open("/c"));
    c.raw().shutdownWrite();
    CHECK(c.raw().waitClosed());
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 1006);
  }
  std::this_thread::sleep_for(20ms);
  CHECK(p.opened == 1);
  CHECK(p.closed == 1);
  CHECK(p.takeNotes().empty());
}

TEST_CASE("ws: readyState, closeCode and closeReason before and after close") {
  spry::App app;
  Probe p;
  std::vector<WebSocket> table;  // loop thread
  app.ws("/s", [&](WebSocket ws, spry::Request&) {
    p.watch(ws);
    table.push_back(ws);
    p.note(ws.readyState() == ReadyState::kOpen ? "open" : "not open");
    p.note(ws.closeCode() ? "code" : "no code");
    p.note("reason=" + ws.closeReason());
    ws.listen([ws, &p](const Message&) {
      p.note(ws.close(4000, "x") ? "close true" : "close false");
      p.note(ws.readyState() == ReadyState::kClosing ? "closing" : "not closing");
      p.note(ws.close(4001) ? "second close true" : "second close false");
      p.note(ws.add("after close") ? "add true" : "add false");
    });
  });
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/s"));
  c.sendText("go");
  auto f = c.readFrame();  // the first frame after "go" is the Close
  REQUIRE(f);
  CHECK(f->opcode == ws::kClose);
  CHECK(f->closeCode() == 4000);
  CHECK(server.onLoop([&] { return table[0].readyState() == ReadyState::kClosing; }));
  c.sendClose(4000, "echo");
  REQUIRE(p.waitClosed());
  CHECK(p.takeNotes() == std::vector<std::string>{"open", "no code", "reason=", "close true",
                                                  "closing", "second close false", "add false"});
  CHECK(server.onLoop([&] { return table[0].readyState() == ReadyState::kClosed; }));
  // The connection may be gone already; while it is not, the code is reported.
  auto code = server.onLoop([&] { return table[0].closeCode(); });
  if (code) {
    CHECK(*code == 4000);
  }
}

TEST_CASE(
    "ws: the handle is copyable, kept in a table, a no-op after close, never keeps it alive") {
  spry::App app;
  Probe p;
  std::unordered_set<WebSocket> table;  // loop thread
  std::vector<WebSocket> copies;
  app.ws("/h", [&](WebSocket ws, spry::Request&) {
    p.watch(ws);
    table.insert(ws);
    WebSocket copy = ws;
    copies.push_back(copy);
    // Self-references in callbacks must not keep the connection alive.
    ws.listen([ws, copy](const Message& m) { ws.add(m); });
    ws.onDrain([copy] { copy.add("drained"); });
  });
  TestServer server(app);

  {
    WsClient c(server.port());
    REQUIRE(c.open("/h"));
    c.sendText("a");
    REQUIRE(c.readFrame());
    CHECK(server.onLoop([&] {
      return table.size() == 1 && table.count(copies.at(0)) == 1 && copies[0].id() != 0 &&
             copies[0].isOpen() && !copies[0].remoteAddress().empty() &&
             copies[0].loop().isCurrentThread();
    }));
    c.sendClose(1000);
    REQUIRE(c.readClose());
  }
  REQUIRE(p.waitClosed());
  // The connection object is destroyed although handles to it remain.
  CHECK(waitUntil([&] { return server.onLoop([&] { return copies[0].loop() == spry::Loop(); }); }));
  auto results = server.onLoop([&] {
    const WebSocket ws = *table.begin();
    std::vector<int> r;
    r.push_back(ws.listen([](const Message&) {}));
    r.push_back(ws.onClose([](std::uint16_t, std::string_view) {}));
    r.push_back(ws.onDrain([] {}));
    r.push_back(ws.add("x"));
    r.push_back(ws.add(Message::binary(std::string("y"))));
    r.push_back(ws.addStream([] { return std::optional<Message>(); }));
    r.push_back(ws.close());
    r.push_back(ws.ping());
    r.push_back(ws.readyState() == ReadyState::kClosed);
    r.push_back(ws.bufferedAmount() == 0);
    r.push_back(ws.remoteAddress().empty());
    r.push_back(ws.protocol().empty());
    ws.setData<int>(1);
    r.push_back(ws.data<int>() == nullptr);
    r.push_back(ws.id() == copies[0].id() && ws == copies[0]);
    return r;
  });
  CHECK(results == std::vector<int>{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1});

  // An empty handle is a no-op too.
  WebSocket empty;
  CHECK(!empty.add("x"));
  CHECK(!empty.close());
  CHECK(empty.readyState() == ReadyState::kClosed);
  CHECK(empty.id() == 0);
  CHECK(!empty.closeCode());
}

TEST_CASE("ws: add() outside a spry callback never runs onClose inside add()") {
  spry::App app;
  Probe p;
  std::unordered_set<WebSocket> room;  // loop thread
  bool inAdd = false;
  std::atomic<int> closedInsideAdd{0};
  app.ws("/room", [&](WebSocket ws, spry::Request&) {
    p.watch(ws);
    room.insert(ws);
    ws.onClose([&, ws](std::uint16_t code, std::string_view) {
      if (inAdd) ++closedInsideAdd;
      room.erase(ws);  // the usual room bookkeeping: must not run under a broadcast
      p.lastCode = code;
      ++p.closed;
    });
  });
  TestServer server(app);

  WsClient dead(server.port());
  WsClient alive(server.port());
  REQUIRE(dead.open("/room"));
  REQUIRE(alive.open("/room"));
  REQUIRE(waitUntil([&] { return p.opened == 2; }));

  // The loop is held inside a posted function (like a timer) while the first
  // client resets, so the broadcast is what meets the dead socket first.
  std::promise<void> go;
  std::atomic<int> sent{0};
  std::atomic<bool> broadcastDone{false};
  REQUIRE(server.loop().post([&, ready = go.get_future().share()] {
    ready.wait();
    // A copy, so that a failure shows as a count rather than a crash.
    const std::vector<WebSocket> members(room.begin(), room.end());
    for (const auto& ws : members) {
      inAdd = true;
      for (int i = 0; i < 4; ++i) sent += ws.add(std::string(1000, 'b'));
      inAdd = false;
    }
    broadcastDone = true;
  }));
  dead.raw().reset();
  std::this_thread::sleep_for(50ms);
  go.set_value();
  REQUIRE(waitUntil([&] { return broadcastDone.load(); }));
  REQUIRE(p.waitClosed());
  CHECK(closedInsideAdd == 0);
  CHECK(p.lastCode == 1006);
  std::size_t got = 0;
  while (got < 4) {
    auto f = alive.readFrame();
    if (!f) break;
    ++got;
  }
  CHECK(got == 4);
}

// --------------------------------------------------------------- auto-close

TEST_CASE("ws: a throw closes that socket with 1011, other sockets are untouched") {
  LogCapture logs;
  spry::App app;
  Probe p;
  std::atomic<int> afterBoom{0};
  app.ws("/throw-handler", [&p](WebSocket ws, spry::Request&) {
    p.watch(ws);
    throw std::runtime_error("handler failed");
  });
  app.ws("/echo", [&](WebSocket ws, spry::Request&) {
    p.watch(ws);
    ws.listen([ws, &afterBoom](const Message& m) {
      if (m.data() == "boom") throw std::runtime_error("listen failed");
      if (m.data() == "after") ++afterBoom;
      ws.add(m);
    });
  });
  app.ws("/drain",
         [&p](WebSocket ws, spry::Request&) {
           p.watch(ws);
           ws.onDrain([] { throw 42; });
           ws.listen([ws](const Message&) {
             // Queue past the limit so that onDrain fires once the client reads.
             for (int i = 0; i < 1024 && ws.bufferedAmount() <= 64 * 1024; ++i) {
               ws.add(Message::binary(std::string(64 * 1024, 'd')));
             }
           });
         },
         {.maxBackpressureBytes = 64 * 1024});
  app.ws("/source", [&p](WebSocket ws, spry::Request&) {
    p.watch(ws);
    auto n = std::make_shared<int>(0);
    ws.addStream([n]() -> std::optional<Message> {
      if (++*n == 3) throw std::runtime_error("source failed");
      return Message::text(spry::test::cat("s", std::to_string(*n)));
    });
  });
  app.ws("/on-close", [](WebSocket ws, spry::Request&) {
    ws.onClose([](std::uint16_t, std::string_view) { throw std::runtime_error("onClose failed"); });
  });
  TestServer server(app);

  WsClient other(server.port());
  REQUIRE(other.open("/echo"));

  SUBCASE("thrown by the ws handler") {
    WsClient c(server.port());
    REQUIRE(c.open("/throw-handler"));
    CHECK(c.closeHandshake() == 1011);
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 1011);
    CHECK(countLines(logs, "ws handler threw: handler failed") == 1);
  }
  SUBCASE("thrown by a listen callback: later messages of the same read are not delivered") {
    WsClient c(server.port());
    REQUIRE(c.open("/echo"));
    REQUIRE(c.raw().send(WsClient::frame(ws::kText, "boom") + WsClient::frame(ws::kText, "after")));
    CHECK(c.closeHandshake() == 1011);
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 1011);
    CHECK(afterBoom == 0);
    CHECK(countLines(logs, "ws listen callback threw: listen failed") == 1);
  }
  SUBCASE("thrown by an addStream source: what it gave before is sent") {
    WsClient c(server.port());
    REQUIRE(c.open("/source"));
    auto f = c.readFrame();
    REQUIRE(f);
    CHECK(f->payload == "s1");
    f = c.readFrame();
    REQUIRE(f);
    CHECK(f->payload == "s2");
    CHECK(c.closeHandshake() == 1011);
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 1011);
    CHECK(countLines(logs, "addStream source threw: source failed") == 1);
  }
  SUBCASE("thrown by onClose: logged, nothing else happens") {
    WsClient c(server.port());
    REQUIRE(c.open("/on-close"));
    c.sendClose(1000);
    CHECK(c.readCloseCode() == 1000);
    CHECK(
        waitUntil([&] { return countLines(logs, "onClose callback threw: onClose failed") == 1; }));
    ++p.closed;  // for the count below
  }
  SUBCASE("thrown by onDrain") {
    WsClient c(server.port());
    REQUIRE(c.open("/drain"));
    c.sendText("fill");
    std::size_t data = 0;
    std::optional<WsFrame> f;
    while ((f = c.readFrame()) && f->opcode == ws::kBinary) data += f->payload.size();
    REQUIRE(f);
    CHECK(data >= 64 * 1024);
    CHECK(data % (64 * 1024) == 0);
    CHECK(f->opcode == ws::kClose);
    CHECK(f->closeCode() == 1011);
    c.sendClose(1011);
    REQUIRE(p.waitClosed());
    CHECK(p.lastCode == 1011);
    CHECK(countLines(logs, "ws onDrain callback threw") == 1);
  }
  // The other socket still echoes.
  REQUIRE(other.sendText("still here"));
  auto f = other.readFrame();
  REQUIRE(f);
  CHECK(f->payload == "still here");
  CHECK(p.closed == 1);
}

TEST_CASE("ws: close() and add() inside a listen callback are safe") {
  spry::App app;
  Probe p;
  app.ws("/l", [&p](WebSocket ws, spry::Request&) {
    p.watch(ws);
    ws.listen([ws, &p](const Message& m) {
      ++p.messages;
      if (m.data() == "bye") {
        ws.add("last");
        ws.close(1000, "done");
        p.note(ws.add("ignored") ? "add after close true" : "add after close false");
      } else {
        ws.add("echo:" + std::string(m.data()));
      }
    });
  });
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/l"));
  REQUIRE(c.raw().send(WsClient::frame(ws::kText, "one") + WsClient::frame(ws::kText, "bye") +
                       WsClient::frame(ws::kText, "unseen")));
  auto f = c.readFrame();
  REQUIRE(f);
  CHECK(f->payload == "echo:one");
  f = c.readFrame();
  REQUIRE(f);
  CHECK(f->payload == "last");
  f = c.readFrame();
  REQUIRE(f);
  CHECK(f->opcode == ws::kClose);
  CHECK(f->closeCode() == 1000);
  CHECK(f->closeReason() == "done");
  c.sendClose(1000);
  CHECK(c.raw().waitClosed());
  REQUIRE(p.waitClosed());
  CHECK(p.messages == 2);
  CHECK(p.lastCode == 1000);
  CHECK(p.takeNotes() == std::vector<std::string>{"add after close false"});
}

TEST_CASE("ws: a listen callback may replace itself; its captures stay valid during the call") {
  spry::App app;
  Probe p;
  app.ws("/swap", [&p](WebSocket ws, spry::Request&) {
    p.watch(ws);
    std::string tag(64, 'a');  // heap-allocated: a destroyed capture is caught by ASan
    ws.listen([ws, tag, &p](const Message& m) {
      ws.listen([ws](const Message& m2) { ws.add("second:" + std::string(m2.data())); });
      p.note(tag.substr(0, 1) + ":" + std::string(m.data()));
      ws.add("first:" + std::string(m.data()));
    });
  });
  TestServer server(app);

  WsClient c(server.port());
  REQUIRE(c.open("/swap"));
  c.sendText("1");
  c.sendText("2");
  auto f = c.readFrame();
  REQUIRE(f);
  CHECK(f->payload == "first:1");
  f = c.readFrame();
  REQUIRE(f);
  CHECK(f->payload == "second:2");
  CHECK(p.takeNotes() == std::vector<std::string>{"a:1"});
}
