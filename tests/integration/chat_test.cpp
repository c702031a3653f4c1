// Protocol-level tests of the chat example (examples/chat/chat_app.cpp) over
// loopback: the page, nickname refusals, join/leave/members, rooms, history
// replay, rate and size limits, the Origin check, and rooms across loops.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat_app.h"
#include "strings.h"
#include "ws_client.h"

using namespace spry::test;
using json = nlohmann::json;

namespace {

std::string chatPath(std::string_view room, std::string_view nick) {
  return "/chat/" + std::string(room) + "?nick=" + std::string(nick);
}

std::int64_t nowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

json parse(const std::string& body) {
  return json::parse(body, nullptr, false);
}

// One chat participant: a WsClient that speaks the JSON protocol.
class Chatter {
 public:
  Chatter(std::uint16_t port, std::string room, std::string nick)
      : ws_(port), room_(std::move(room)), nick_(std::move(nick)) {}

  // Opens the socket and reads the welcome; false when either fails.
  bool join(std::string_view extraHeaders = {}) {
    if (!ws_.open(chatPath(room_, nick_), extraHeaders)) return false;
    welcome = next();
    return welcome.value("type", "") == "welcome";
  }

  // The next JSON message; null on timeout or close.
  json next(std::chrono::milliseconds timeout = 2000ms) {
    auto f = ws_.readMessage(timeout);
    if (!f) return nullptr;
    return parse(f->payload);
  }

  // The next message of `type`, skipping others; null when none came.
  json nextOf(std::string_view type, std::chrono::milliseconds timeout = 2000ms) {
    for (;;) {
      json m = next(timeout);
      if (m.is_null() || m.value("type", "") == type) return m;
    }
  }

  bool say(std::string_view text) {
    return ws_.sendText(json{{"type", "message"}, {"text", text}}.dump());
  }

  WsClient& ws() noexcept { return ws_; }
  json welcome;

 private:
  WsClient ws_;
  std::string room_;
  std::string nick_;
};

std::vector<std::string> texts(const json& messages) {
  std::vector<std::string> out;
  for (const auto& m : messages) out.push_back(m.at("text").get<std::string>());
  return out;
}

// The chat on a test-owned loop (TestServer): one loop, leak-checked on stop.
struct ChatFixture {
  explicit ChatFixture(chat::Options options = {}) {
    chat::install(app, std::move(options));
    server.emplace(app);
  }
  std::uint16_t port() const { return server->port(); }
  spry::App app;
  std::optional<TestServer> server;
};

}  // namespace

TEST_CASE("chat: the page and its files, with a strict content security policy") {
  ChatFixture f;
  auto page = request(f.port(), get("/"));
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->headers.get("Content-Type") == "text/html; charset=utf-8");
  CHECK(page->body.find("<script src=\"/static/chat.js\" defer></script>") != std::string::npos);
  CHECK(page->headers.get("Content-Security-Policy").find("script-src 'self'") !=
        std::string_view::npos);
  CHECK(page->headers.get("X-Content-Type-Options") == "nosniff");

  auto js = request(f.port(), get("/static/chat.js"));
  REQUIRE(js);
  CHECK(js->status == 200);
  CHECK(js->headers.get("Content-Type") == "text/javascript; charset=utf-8");
  CHECK(js->body.find("textContent") != std::string::npos);
  CHECK(js->body.find("innerHTML") == std::string::npos);

  auto css = request(f.port(), get("/static/chat.css"));
  REQUIRE(css);
  CHECK(css->headers.get("Content-Type") == "text/css; charset=utf-8");

  CHECK(request(f.port(), get("/static/nope.js"))->status == 404);
}

TEST_CASE("chat: the nickname middleware refuses with a reason, by plain GET and by upgrade") {
  ChatFixture f;
  struct Case {
    std::string path;
    int status;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"/chat/lobby", 400, "missing"},
      {"/chat/lobby?nick=", 400, "missing"},
      {chatPath("lobby", std::string(25, 'a')), 400, "too_long"},
      {"/chat/lobby?nick=a%20b", 400, "invalid"},
      {"/chat/lobby?nick=%3Cb%3E", 400, "invalid"},
      {"/chat/lobby%20x?nick=ok", 400, "bad_room"},
      {chatPath(std::string(33, 'r'), "ok"), 400, "bad_room"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.path);
    auto plain = request(f.port(), get(c.path));
    REQUIRE(plain);
    CHECK(plain->status == c.status);
    json body = parse(plain->body);
    CHECK(body.value("ok", true) == false);
    CHECK(body.value("reason", "") == c.reason);
    CHECK_FALSE(body.value("message", "").empty());

    WsClient ws(f.port());
    auto r = ws.handshake(c.path);
    REQUIRE(r);
    CHECK(r->status == c.status);
    CHECK(parse(r->body).value("reason", "") == c.reason);
  }

  // Allowed: the plain GET says so, with the names it checked.
  auto ok = request(f.port(), get(chatPath("lobby", std::string(24, 'a'))));
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(parse(ok->body) == json{{"ok", true}, {"room", "lobby"}, {"nick", std::string(24, 'a')}});
  CHECK(request(f.port(), get(chatPath("lobby", "A.b-c_9")))->status == 200);

  // Taken: in that room, ignoring case; free again once its holder leaves.
  {
    Chatter ada(f.port(), "lobby", "Ada");
    REQUIRE(ada.join());
    for (const char* nick : {"Ada", "ada", "ADA"}) {
      CAPTURE(nick);
      auto taken = request(f.port(), get(chatPath("lobby", nick)));
      REQUIRE(taken);
      CHECK(taken->status == 409);
      json body = parse(taken->body);
      CHECK(body.value("reason", "") == "taken");
      CHECK(body.value("message", "").find("already taken") != std::string::npos);
      WsClient again(f.port());
      auto r = again.handshake(chatPath("lobby", nick));
      REQUIRE(r);
      CHECK(r->status == 409);
    }
    CHECK(request(f.port(), get(chatPath("elsewhere", "ada")))->status == 200);
    ada.ws().sendClose(1000);
    CHECK(ada.ws().readCloseCode() == 1000);
  }
  CHECK(waitUntil([&] { return request(f.port(), get(chatPath("lobby", "ada")))->status == 200; }));
}

TEST_CASE("chat: join, messages, join and leave notices and the member list") {
  ChatFixture f;
  Chatter alice(f.port(), "lobby", "alice");
  REQUIRE(alice.join());
  const json& w = alice.welcome;
  CHECK(w["room"] == "lobby");
  CHECK(w["nick"] == "alice");
  CHECK(w["members"] == json::array({"alice"}));
  CHECK(w["history"] == json::array());
  CHECK(w["seq"].get<std::uint64_t>() >= 1);
  CHECK_FALSE(w["instance"].get<std::string>().empty());
  CHECK(w["limits"]["maxChars"] == 2000);
  CHECK(w["limits"]["burst"] == 20);

  Chatter bob(f.port(), "lobby", "bob");
  REQUIRE(bob.join());
  CHECK(bob.welcome["members"] == json::array({"alice", "bob"}));
  CHECK(bob.welcome["instance"] == w["instance"]);
  CHECK(bob.welcome["seq"].get<std::uint64_t>() > w["seq"].get<std::uint64_t>());

  json joined = alice.next();
  CHECK(joined["type"] == "join");
  CHECK(joined["nick"] == "bob");
  CHECK(joined["members"] == json::array({"alice", "bob"}));
  CHECK(joined["seq"] == bob.welcome["seq"]);
  CHECK(std::abs(joined["ts"].get<std::int64_t>() - nowMs()) < 5000);

  // The sender gets its own message back, with the server's time and number.
  REQUIRE(alice.say("hello <b>bob</b> \"&\" 👋"));
  for (Chatter* c : {&alice, &bob}) {
    json m = c->next();
    CHECK(m["type"] == "message");
    CHECK(m["nick"] == "alice");
    CHECK(m["text"] == "hello <b>bob</b> \"&\" 👋");  // unchanged: escaping is the page's job
    CHECK(m["seq"].get<std::uint64_t>() > joined["seq"].get<std::uint64_t>());
    CHECK(std::abs(m["ts"].get<std::int64_t>() - nowMs()) < 5000);
  }
  REQUIRE(bob.say("hi alice"));
  CHECK(alice.next()["text"] == "hi alice");
  CHECK(bob.next()["text"] == "hi alice");

  // Bad requests get an error and keep the socket.
  for (const char* bad : {"not json", "[1,2]", R"({"type":"dance"})", R"({"type":"message"})",
                          R"({"type":"message","text":42})", R"({"type":"message","text":"  "})"}) {
    CAPTURE(bad);
    REQUIRE(bob.ws().sendText(bad));
    json e = bob.next();
    CHECK(e["type"] == "error");
    CHECK((e["code"] == "bad_request" || e["code"] == "empty"));
  }

  bob.ws().sendClose(1000, "bye");
  CHECK(bob.ws().readCloseCode() == 1000);
  json left = alice.next();
  CHECK(left["type"] == "leave");
  CHECK(left["nick"] == "bob");
  CHECK(left["members"] == json::array({"alice"}));

  // A socket that just drops leaves too.
  Chatter carol(f.port(), "lobby", "carol");
  REQUIRE(carol.join());
  CHECK(alice.nextOf("join")["nick"] == "carol");
  carol.ws().raw().reset();
  left = alice.nextOf("leave");
  CHECK(left["nick"] == "carol");
  CHECK(left["members"] == json::array({"alice"}));
}

TEST_CASE("chat: rooms are separate") {
  ChatFixture f;
  Chatter alice(f.port(), "lobby", "alice");
  Chatter carol(f.port(), "other", "carol");
  Chatter alice2(f.port(), "other", "alice");  // the same nickname in another room is fine
  REQUIRE(alice.join());
  REQUIRE(carol.join());
  REQUIRE(alice2.join());
  CHECK(carol.next()["nick"] == "alice");  // the join in #other
  CHECK(alice2.welcome["members"] == json::array({"alice", "carol"}));

  REQUIRE(alice.say("lobby only"));
  CHECK(alice.next()["text"] == "lobby only");
  CHECK(carol.next(300ms).is_null());
  CHECK(alice2.next(300ms).is_null());

  REQUIRE(carol.say("other only"));
  CHECK(carol.next()["text"] == "other only");
  CHECK(alice2.next()["text"] == "other only");
  CHECK(alice.next(300ms).is_null());
}

TEST_CASE("chat: the last 50 messages are replayed to whoever joins") {
  chat::Options options;
  options.ratePerSecond = 1e6;  // this test floods on purpose
  options.rateBurst = 1e6;
  ChatFixture f(options);
  Chatter alice(f.port(), "lobby", "alice");
  REQUIRE(alice.join());
  CHECK(alice.welcome["history"].empty());
  for (int i = 0; i < 60; ++i) REQUIRE(alice.say(spry::test::cat("m", std::to_string(i))));
  for (int i = 0; i < 60; ++i)
    REQUIRE(alice.next()["text"] == spry::test::cat("m", std::to_string(i)));

  Chatter bob(f.port(), "lobby", "bob");
  REQUIRE(bob.join());
  const json& history = bob.welcome["history"];
  REQUIRE(history.size() == 50);
  std::vector<std::string> want;
  for (int i = 10; i < 60; ++i) want.push_back(spry::test::cat("m", std::to_string(i)));
  CHECK(texts(history) == want);
  for (std::size_t i = 0; i < history.size(); ++i) {
    CHECK(history[i]["type"] == "message");
    CHECK(history[i]["nick"] == "alice");
    CHECK(history[i]["ts"].is_number_integer());
    if (i) CHECK(history[i]["seq"] > history[i - 1]["seq"]);
  }
  CHECK(history.back()["seq"] < bob.welcome["seq"]);

  // History outlives the members: an empty room keeps it.
  alice.ws().raw().reset();
  bob.ws().raw().reset();
  Chatter carol(f.port(), "lobby", "carol");
  CHECK(
      waitUntil([&] { return request(f.port(), get(chatPath("lobby", "alice")))->status == 200; }));
  REQUIRE(carol.join());
  CHECK(carol.welcome["members"] == json::array({"carol"}));
  CHECK(texts(carol.welcome["history"]) == want);
}

TEST_CASE("chat: a flooding client is closed with 1008, its room is told") {
  ChatFixture f;  // defaults: 10 messages a second, bursts of 20
  Chatter watcher(f.port(), "lobby", "watcher");
  Chatter flood(f.port(), "lobby", "flood");
  REQUIRE(watcher.join());
  REQUIRE(flood.join());
  CHECK(watcher.next()["type"] == "join");

  // A burst within the limit goes through.
  for (int i = 0; i < 15; ++i) REQUIRE(flood.say("ok " + std::to_string(i)));
  for (int i = 0; i < 15; ++i) CHECK(watcher.next()["text"] == "ok " + std::to_string(i));

  // Past the bucket: closed with 1008 "rate limit".
  for (int i = 0; i < 30; ++i) flood.say("spam " + std::to_string(i));
  auto close = flood.ws().readClose(3000ms);
  REQUIRE(close);
  CHECK(close->closeCode() == 1008);
  CHECK(close->closeReason() == "rate limit");
  flood.ws().sendClose(1008);  // completes the handshake: the server closes TCP now
  json left = watcher.nextOf("leave", 3000ms);
  CHECK(left["nick"] == "flood");
  CHECK(left["members"] == json::array({"watcher"}));
}

TEST_CASE("chat: message size limits") {
  ChatFixture f;
  Chatter alice(f.port(), "lobby", "alice");
  REQUIRE(alice.join());

  // 2000 characters pass, counted as characters, not bytes.
  std::string longest;
  for (int i = 0; i < 2000; ++i) longest += "é";
  REQUIRE(alice.say(longest));
  json m = alice.next();
  CHECK(m["type"] == "message");
  CHECK(m["text"] == longest);

  // 2001: an error message, and the socket stays open.
  REQUIRE(alice.say(std::string(2001, 'x')));
  json e = alice.next();
  CHECK(e["type"] == "error");
  CHECK(e["code"] == "too_long");
  REQUIRE(alice.say("still here"));
  CHECK(alice.next()["text"] == "still here");

  // Over maxMessageBytes (16 KiB): the library closes with 1009.
  REQUIRE(alice.say(std::string(17 * 1024, 'x')));
  CHECK(alice.ws().readCloseCode() == 1009);

  // Binary: 1003.
  Chatter bob(f.port(), "lobby", "bob");
  REQUIRE(bob.join());
  REQUIRE(bob.ws().sendBinary("\x01\x02"));
  auto close = bob.ws().readClose();
  REQUIRE(close);
  CHECK(close->closeCode() == 1003);
}

TEST_CASE("chat: the Origin check refuses other sites' pages") {
  chat::Options options;
  options.allowedOrigins = {"https://chat.example.com"};
  ChatFixture f(options);
  const std::string port = std::to_string(f.port());

  auto upgrade = [&](const std::string& origin) {
    WsClient ws(f.port());
    auto r = ws.handshake(chatPath("lobby", "o"), "Origin: " + origin + "\r\n");
    return r ? r->status : 0;
  };
  for (const std::string& origin : std::vector<std::string>{
           "http://evil.example", "http://evil.example:" + port, "http://127.0.0.1:1",
           "https://127.0.0.1:" + port, "null", "http://127.0.0.1:" + port + ".evil.example"}) {
    CAPTURE(origin);
    CHECK(upgrade(origin) == 403);
    auto plain = request(f.port(), get(chatPath("lobby", "o"), "Origin: " + origin + "\r\n"));
    REQUIRE(plain);
    CHECK(plain->status == 403);
    CHECK(parse(plain->body).value("reason", "") == "origin");
  }
  for (const std::string& origin : std::vector<std::string>{
           "http://127.0.0.1:" + port, "http://localhost:" + port, "http://LocalHost:" + port,
           "http://[::1]:" + port, "https://chat.example.com"}) {
    CAPTURE(origin);
    CHECK(upgrade(origin) == 101);
  }
  // No Origin: not a browser, so not a cross-site page either.
  CHECK(upgrade("") == 101);
  WsClient bare(f.port());
  CHECK(bare.open(chatPath("lobby", "bare")));
}

TEST_CASE("chat: rooms work across loops (--threads 2), and a graceful stop closes with 1001") {
  spry::App app;
  chat::install(app);
  // Which loop served each connection, by the client's port.
  std::mutex mutex;
  std::map<std::uint16_t, spry::Loop> loopOf;
  app.use([&](spry::Request& req, const spry::Next& next) {
    {
      std::lock_guard lock(mutex);
      loopOf[req.remotePort()] = req.loop();
    }
    return next();
  });
  std::promise<std::uint16_t> bound;
  std::thread serving([&] {
    app.listen({.host = "127.0.0.1",
                .port = 0,
                .threads = 2,
                .handleSignals = false,
                .onListening = [&](const std::string&, std::uint16_t p) { bound.set_value(p); }});
  });
  const std::uint16_t port = bound.get_future().get();

  // Clients land on a loop by the kernel's choice: join until two differ.
  std::vector<std::unique_ptr<Chatter>> chatters;
  std::optional<spry::Loop> first;
  Chatter* a = nullptr;
  Chatter* b = nullptr;
  for (int i = 0; i < 32 && !b; ++i) {
    auto c = std::make_unique<Chatter>(port, "lobby", spry::test::cat("n", std::to_string(i)));
    REQUIRE(c->join());
    spry::Loop loop;
    {
      std::lock_guard lock(mutex);
      loop = loopOf.at(c->ws().raw().localPort());
    }
    if (!first) {
      first = loop;
      a = c.get();
    } else if (!(loop == *first)) {
      b = c.get();
    }
    chatters.push_back(std::move(c));
  }
  REQUIRE_MESSAGE(b, "32 connections all landed on one loop");

  REQUIRE(a->say("from loop A"));
  REQUIRE(b->say("from loop B"));
  for (Chatter* c : {a, b}) {
    std::vector<std::string> got;
    for (json m; got.size() < 2 && !(m = c->nextOf("message")).is_null();) {
      got.push_back(m["text"]);
    }
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<std::string>{"from loop A", "from loop B"});
  }
  // Every member saw the same member list in the end.
  CHECK(chatters.back()->welcome["members"].size() == chatters.size());

  app.stop(2000ms);
  for (auto& c : chatters) CHECK(c->ws().closeHandshake() == 1001);
  serving.join();
}
