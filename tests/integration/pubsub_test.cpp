// Loop per core, pub/sub across loops, thread-safe sends and graceful stop,
// against App::listen with two loops (SO_REUSEPORT) on a background thread.
// Subscribers are spread over both loops: each socket reports its loop, and
// the tests open more connections until both loops have some.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "strings.h"
#include "ws_client.h"

using namespace spry::test;
using spry::BackpressurePolicy;
using spry::Message;
using spry::ReadyState;
using spry::WebSocket;

namespace {

constexpr unsigned kLoops = 2;

// Runs `app` with App::listen({.port = 0, .threads = N}) on a background
// thread; the port comes from onListening.
class MtServer {
 public:
  explicit MtServer(spry::App& app, unsigned threads = kLoops) : app_(app) {
    auto ready = bound_.get_future();
    done_ = finished_.get_future();
    thread_ = std::thread([this, threads] {
      try {
        app_.listen({.port = 0,
                     .threads = threads,
                     .handleSignals = false,
                     .onListening = [this](const std::string&, std::uint16_t port) {
                       boundSet_ = true;
                       bound_.set_value(port);
                     }});
      } catch (...) {
        if (!boundSet_) bound_.set_exception(std::current_exception());
      }
      finished_.set_value();
    });
    try {
      port_ = ready.get();
    } catch (...) {
      thread_.join();
      throw;
    }
  }
  ~MtServer() { stop(); }
  MtServer(const MtServer&) = delete;
  MtServer& operator=(const MtServer&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  std::thread::id listenThread() const noexcept { return thread_.get_id(); }

  // app.stop(deadline), then waits for listen() to return. False when it did
  // not return within deadline + slack (it is joined anyway).
  bool stop(std::chrono::milliseconds deadline = 2000ms, std::chrono::milliseconds slack = 3000ms) {
    if (!thread_.joinable()) return true;
    app_.stop(deadline);
    bool inTime = done_.wait_for(deadline + slack) == std::future_status::ready;
    thread_.join();
    return inTime;
  }

 private:
  spry::App& app_;
  std::promise<std::uint16_t> bound_;
  bool boundSet_ = false;  // listen thread only
  std::promise<void> finished_;
  std::future<void> done_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

int loopIndex(spry::App& app, const spry::Loop& loop) {
  auto loops = app.loops();
  for (std::size_t i = 0; i < loops.size(); ++i) {
    if (loops[i] == loop) return static_cast<int>(i);
  }
  return -1;
}

// What the server's sockets did, shared with the test thread.
struct Hub {
  std::mutex mutex;
  std::vector<WebSocket> sockets;  // in open order
  std::vector<std::uint16_t> closeCodes;
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  std::atomic<int> wrongLoop{0};  // a callback ran off the socket's first loop

  WebSocket socket(std::size_t i) {
    std::lock_guard lock(mutex);
    return sockets.at(i);
  }
  std::vector<WebSocket> all() {
    std::lock_guard lock(mutex);
    return sockets;
  }
  std::vector<std::uint16_t> codes() {
    std::lock_guard lock(mutex);
    return closeCodes;
  }
};

// A ws route driven by text commands:
//   ?sub=T (query, repeatable)  subscribe at open
//   "sub T" / "unsub T"          reply "sub T 1|0" / "unsub T 1|0"
//   "pub T PAYLOAD"              ws.publish(T, PAYLOAD) as text
//   "where"                      reply "loop:I"
//   "flood N"                    add N binary messages of 64 KiB
//   a binary message             ws.publish("bin", it)
// Every socket first receives "loop:I", I its loop's index in app.loops().
void addPubSubRoute(spry::App& app, Hub& hub, std::string_view path,
                    spry::WebSocketOptions options = {}) {
  app.ws(
      path,
      [&app, &hub](WebSocket ws, spry::Request& req) {
        const int loop = loopIndex(app, ws.loop());
        {
          std::lock_guard lock(hub.mutex);
          hub.sockets.push_back(ws);
        }
        for (auto topic : req.queryAll("sub")) ws.subscribe(topic);
        ws.onClose([&hub](std::uint16_t code, std::string_view) {
          {
            std::lock_guard lock(hub.mutex);
            hub.closeCodes.push_back(code);
          }
          ++hub.closed;
        });
        ws.listen([ws, &app, &hub, loop](const Message& m) {
          if (!ws.loop().isCurrentThread() || loopIndex(app, ws.loop()) != loop) ++hub.wrongLoop;
          if (m.isBinary()) {
            ws.publish("bin", m);
            return;
          }
          std::string_view d = m.data();
          std::string_view word = d.substr(0, d.find(' '));
          std::string_view rest = word.size() < d.size() ? d.substr(word.size() + 1) : "";
          if (word == "sub") {
            ws.add("sub " + std::string(rest) + (ws.subscribe(rest) ? " 1" : " 0"));
          } else if (word == "unsub") {
            ws.add("unsub " + std::string(rest) + (ws.unsubscribe(rest) ? " 1" : " 0"));
          } else if (word == "pub") {
            std::string_view topic = rest.substr(0, rest.find(' '));
            std::string_view payload =
                topic.size() < rest.size() ? rest.substr(topic.size() + 1) : "";
            ws.publish(topic, Message::view(Message::Type::kText, payload));
          } else if (word == "where") {
            ws.add("loop:" + std::to_string(loopIndex(app, ws.loop())));
          } else if (word == "flood") {
            int n = std::stoi(std::string(rest));
            for (int i = 0; i < n; ++i) ws.add(Message::binary(std::string(64 * 1024, 'f')));
          }
        });
        ++hub.opened;
        ws.add("loop:" + std::to_string(loop));
      },
      std::move(options));
}

struct Peer {
  std::unique_ptr<WsClient> ws;
  int loop = -1;
};

// Opens a client on `path` and reads the "loop:I" greeting.
Peer openPeer(std::uint16_t port, std::string_view path) {
  Peer p;
  p.ws = std::make_unique<WsClient>(port);
  REQUIRE(p.ws->open(path));
  auto greeting = p.ws->readMessage(5000ms);
  REQUIRE(greeting);
  REQUIRE(greeting->payload.rfind("loop:", 0) == 0);
  p.loop = std::stoi(greeting->payload.substr(5));
  REQUIRE(p.loop >= 0);
  return p;
}

// Opens `n` clients; when the kernel put them all on fewer than `loops`
// loops, opens more (at most 200 more) until every loop has one.
std::vector<Peer> openSpread(std::uint16_t port, std::string_view path, std::size_t n,
                             unsigned loops = kLoops) {
  std::vector<Peer> peers;
  std::set<int> seen;
  while (peers.size() < n || (seen.size() < loops && peers.size() < n + 200)) {
    peers.push_back(openPeer(port, path));
    seen.insert(peers.back().loop);
  }
  REQUIRE_MESSAGE(seen.size() == loops, "connections landed on " << seen.size() << " loop(s) of "
                                                                 << loops << " after "
                                                                 << peers.size() << " tries");
  return peers;
}

std::set<int> loopsOf(const std::vector<Peer>& peers) {
  std::set<int> s;
  for (const auto& p : peers) s.insert(p.loop);
  return s;
}

// Text messages until (and with) one equal to `last`; stops early on timeout,
// a non-text frame or a close.
std::vector<std::string> readTextsUntil(WsClient& c, std::string_view last,
                                        std::chrono::milliseconds timeout = 5000ms) {
  std::vector<std::string> out;
  for (;;) {
    auto m = c.readMessage(timeout);
    if (!m || m->opcode != ws::kText) return out;
    out.push_back(std::move(m->payload));
    if (out.back() == last) return out;
  }
}

// Text messages until every one of `ends` has come (or a timeout).
std::vector<std::string> readTextsUntilAll(WsClient& c, std::set<std::string> ends,
                                           std::chrono::milliseconds timeout = 5000ms) {
  std::vector<std::string> out;
  while (!ends.empty()) {
    auto m = c.readMessage(timeout);
    if (!m || m->opcode != ws::kText) return out;
    ends.erase(m->payload);
    out.push_back(std::move(m->payload));
  }
  return out;
}

std::vector<std::string> numbered(std::string_view prefix, int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(spry::test::cat(prefix, std::to_string(i)));
  return v;
}

std::vector<std::string> withPrefix(const std::vector<std::string>& all, char prefix) {
  std::vector<std::string> v;
  for (const auto& s : all) {
    if (!s.empty() && s[0] == prefix) v.push_back(s);
  }
  return v;
}

// A plain socket holding 127.0.0.1:port (port 0: any); -1 on failure.
int holdPort(std::uint16_t& port, bool reusePort) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  if (reusePort) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, 4) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

// True when a TCP connection to 127.0.0.1:port is accepted by someone.
bool canConnect(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

// ---------------------------------------------------------------- loops

TEST_CASE("loops: two loops share port 0; connections spread and stay on their loop") {
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  MtServer server(app);

  CHECK(server.port() != 0);
  CHECK(app.port() == server.port());
  CHECK(app.isListening());
  CHECK(app.loops().size() == kLoops);

  auto peers = openSpread(server.port(), "/ps", 16);
  CHECK(loopsOf(peers).size() == kLoops);
  for (auto& p : peers) {
    for (int i = 0; i < 3; ++i) {
      REQUIRE(p.ws->sendText("where"));
      auto m = p.ws->readMessage();
      REQUIRE(m);
      CHECK(m->payload == "loop:" + std::to_string(p.loop));
    }
  }
  CHECK(hub.wrongLoop == 0);
  CHECK(hub.opened == static_cast<int>(peers.size()));

  const int n = static_cast<int>(peers.size());
  peers.clear();
  CHECK(waitUntil([&] { return hub.closed == n; }));
  CHECK(server.stop());
  CHECK_FALSE(app.isListening());
  CHECK(app.port() == 0);
  CHECK(app.loops().empty());
  CHECK_FALSE(app.publish("t", Message::text("after stop")));
}

TEST_CASE("loops: threads = 1 serves on the thread that called listen") {
  spry::App app;
  std::mutex mutex;
  std::thread::id handlerThread;
  app.get("/who", [&](spry::Request& req) {
    std::lock_guard lock(mutex);
    handlerThread = std::this_thread::get_id();
    return req.loop().isCurrentThread() ? "on loop" : "off loop";
  });
  MtServer server(app, 1);
  CHECK(app.loops().size() == 1);
  auto r = request(server.port(), get("/who"));
  REQUIRE(r);
  CHECK(r->body == "on loop");
  {
    std::lock_guard lock(mutex);
    CHECK(handlerThread == server.listenThread());
  }
}

TEST_CASE("loops: in onListening only the listen thread's own loop is current") {
  // The other loops' threads may not have started yet: they must not count as
  // the caller's (a publish from here would touch their topics directly).
  for (int round = 0; round < 5; ++round) {
    spry::App app;
    app.get("/", [](spry::Request&) { return "ok"; });
    std::vector<bool> current;
    std::thread listener([&] {
      app.listen({.port = 0,
                  .threads = kLoops,
                  .handleSignals = false,
                  .onListening = [&](const std::string&, std::uint16_t) {
                    for (const auto& loop : app.loops()) current.push_back(loop.isCurrentThread());
                    app.stop(0ms);
                  }});
    });
    listener.join();
    CHECK(current == std::vector<bool>{true, false});
  }
}

TEST_CASE("loops: a port held by another socket is a clear error, and the app can listen after") {
  for (bool reusePort : {false, true}) {
    CAPTURE(reusePort);
    std::uint16_t port = 0;
    int fd = holdPort(port, reusePort);
    REQUIRE(fd >= 0);
    spry::App app;
    app.get("/", [](spry::Request&) { return "ok"; });
    std::string what;
    try {
      app.listen({.port = port, .threads = kLoops, .handleSignals = false});
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    ::close(fd);
    CHECK_MESSAGE(what.find("address already in use") != std::string::npos, what);
    CHECK_MESSAGE(what.find(std::to_string(port)) != std::string::npos, what);
    CHECK_FALSE(app.isListening());
    CHECK(app.loops().empty());

    // The failed listen left nothing behind: the same app can serve.
    MtServer server(app);
    auto r = request(server.port(), get("/"));
    REQUIRE(r);
    CHECK(r->body == "ok");
  }
}

// ---------------------------------------------------------------- pub/sub

TEST_CASE("pubsub: two publishers on different loops reach every other subscriber once, in order") {
  constexpr int kCount = 300;
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  MtServer server(app);

  auto peers = openSpread(server.port(), "/ps?sub=news", 40);
  CHECK(app.subscriberCount("news") == peers.size());
  // One publisher per loop (each is also a subscriber).
  std::size_t a = 0;
  std::size_t b = 1;
  while (peers[b].loop == peers[a].loop) ++b;

  for (int i = 0; i < kCount; ++i) {
    REQUIRE(peers[a].ws->sendText("pub news a" + std::to_string(i)));
    REQUIRE(peers[b].ws->sendText("pub news b" + std::to_string(i)));
  }
  REQUIRE(peers[a].ws->sendText("pub news a-end"));
  REQUIRE(peers[b].ws->sendText("pub news b-end"));

  auto wantA = numbered("a", kCount);
  wantA.push_back("a-end");
  auto wantB = numbered("b", kCount);
  wantB.push_back("b-end");
  std::set<int> checkedLoops;
  for (std::size_t i = 0; i < peers.size(); ++i) {
    CAPTURE(i);
    CAPTURE(peers[i].loop);
    std::vector<std::string> got;
    if (i == a) {
      got = readTextsUntil(*peers[i].ws, "b-end");
      CHECK(got == wantB);  // not its own messages
    } else if (i == b) {
      got = readTextsUntil(*peers[i].ws, "a-end");
      CHECK(got == wantA);
    } else {
      // Both streams in full, each in order; the interleaving is free.
      got = readTextsUntilAll(*peers[i].ws, {"a-end", "b-end"});
      CHECK(got.size() == wantA.size() + wantB.size());
      CHECK(withPrefix(got, 'a') == wantA);
      CHECK(withPrefix(got, 'b') == wantB);
      checkedLoops.insert(peers[i].loop);
    }
  }
  // Nothing more arrives anywhere (no duplicates after the end markers).
  for (std::size_t i = 0; i < peers.size(); ++i) {
    CAPTURE(i);
    CHECK_FALSE(peers[i].ws->raw().readable(i == 0 ? 100ms : 0ms));
  }
  CHECK(checkedLoops.size() == kLoops);
  CHECK(hub.wrongLoop == 0);
}

TEST_CASE("pubsub: app.publish from foreign threads reaches subscribers on every loop in order") {
  constexpr int kCount = 400;
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  MtServer server(app);
  auto peers = openSpread(server.port(), "/ps?sub=news&sub=other", 20);
  CHECK(app.subscriberCount("news") == peers.size());
  CHECK(app.subscriberCount("other") == peers.size());

  std::atomic<int> refused{0};
  auto publisher = [&](char prefix, const char* topic) {
    for (int i = 0; i < kCount; ++i) {
      if (!app.publish(topic, Message::text(prefix + std::to_string(i)))) ++refused;
    }
    if (!app.publish(topic, Message::text(std::string(1, prefix) + "-end"))) ++refused;
  };
  std::thread t1(publisher, 'x', "news");
  std::thread t2(publisher, 'y', "news");
  std::thread t3(publisher, 'z', "other");
  t1.join();
  t2.join();
  t3.join();
  CHECK(refused == 0);

  for (std::size_t i = 0; i < peers.size(); ++i) {
    CAPTURE(i);
    auto got = readTextsUntilAll(*peers[i].ws, {"x-end", "y-end", "z-end"});
    CHECK(got.size() == 3u * (kCount + 1));
    for (char prefix : {'x', 'y', 'z'}) {
      auto want = numbered(std::string(1, prefix), kCount);
      want.push_back(std::string(1, prefix) + "-end");
      CHECK(withPrefix(got, prefix) == want);
    }
    CHECK_FALSE(peers[i].ws->raw().readable(0ms));
  }
}

TEST_CASE("pubsub: subscriberCount counts every loop; sockets leave their topics when they close") {
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  MtServer server(app);
  auto peers = openSpread(server.port(), "/ps?sub=room", 20);
  const std::size_t n = peers.size();
  CHECK(app.subscriberCount("room") == n);
  CHECK(app.subscriberCount("other") == 0);
  CHECK(app.subscriberCount("") == 0);

  for (auto& p : peers) {
    REQUIRE(p.ws->sendText("sub room"));
    auto again = p.ws->readMessage();
    REQUIRE(again);
    CHECK(again->payload == "sub room 0");
    REQUIRE(p.ws->sendText("sub other"));
    auto first = p.ws->readMessage();
    REQUIRE(first);
    CHECK(first->payload == "sub other 1");
  }
  CHECK(app.subscriberCount("room") == n);
  CHECK(app.subscriberCount("other") == n);

  // Half unsubscribe from "other" (a second unsubscribe is refused).
  for (std::size_t i = 0; i < n; i += 2) {
    REQUIRE(peers[i].ws->sendText("unsub other"));
    auto r = peers[i].ws->readMessage();
    REQUIRE(r);
    CHECK(r->payload == "unsub other 1");
    REQUIRE(peers[i].ws->sendText("unsub other"));
    r = peers[i].ws->readMessage();
    REQUIRE(r);
    CHECK(r->payload == "unsub other 0");
  }
  const std::size_t otherLeft = n / 2;
  CHECK(app.subscriberCount("other") == otherLeft);

  // Close the first half: by close handshake, by RST, by FIN.
  const std::size_t closing = n / 2;
  std::size_t otherClosing = 0;
  for (std::size_t i = 0; i < closing; ++i) {
    if (i % 2 == 1) ++otherClosing;
    switch (i % 3) {
      case 0:
        peers[i].ws->sendClose(1000);
        CHECK(peers[i].ws->readCloseCode() == 1000);
        break;
      case 1:
        peers[i].ws->raw().reset();
        break;
      default:
        peers[i].ws.reset();
        break;
    }
  }
  CHECK(waitUntil([&] { return hub.closed.load() == static_cast<int>(closing); }, 5000ms));
  CHECK(app.subscriberCount("room") == n - closing);
  CHECK(app.subscriberCount("other") == otherLeft - otherClosing);

  // A publish reaches exactly the open subscribers.
  REQUIRE(app.publish("room", Message::text("still here")));
  for (std::size_t i = closing; i < n; ++i) {
    auto m = peers[i].ws->readMessage();
    REQUIRE(m);
    CHECK(m->payload == "still here");
  }

  peers.clear();
  CHECK(waitUntil([&] { return hub.closed.load() == static_cast<int>(n); }, 5000ms));
  CHECK(app.subscriberCount("room") == 0);
  CHECK(app.subscriberCount("other") == 0);
}

TEST_CASE("pubsub: frames over 512 bytes are shared between subscribers and arrive intact") {
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  MtServer server(app);
  auto peers = openSpread(server.port(), "/ps?sub=big&sub=bin", 10);

  struct Sent {
    std::uint8_t opcode;
    std::string payload;
  };
  std::vector<Sent> sent;
  auto pattern = [](std::size_t size, int seed, bool text) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) {
      s[i] = text ? static_cast<char>('a' + (i * 7 + static_cast<std::size_t>(seed)) % 26)
                  : static_cast<char>((i * 31 + static_cast<std::size_t>(seed)) & 0xFF);
    }
    return s;
  };
  int seed = 0;
  for (std::size_t size : {511u, 512u, 513u, 4096u, 65535u, 65536u, 70000u, 300000u}) {
    for (bool text : {true, false}) {
      ++seed;
      std::string p = pattern(size, seed, text);
      REQUIRE(app.publish("big", text ? Message::text(p) : Message::binary(p)));
      sent.push_back({text ? ws::kText : ws::kBinary, p});
      std::string small = "s" + std::to_string(seed);  // copied into the output buffer
      REQUIRE(app.publish("big", Message::text(small)));
      sent.push_back({ws::kText, small});
    }
  }
  for (std::size_t i = 0; i < peers.size(); ++i) {
    CAPTURE(i);
    for (std::size_t k = 0; k < sent.size(); ++k) {
      CAPTURE(k);
      auto m = peers[i].ws->readMessage(5000ms);
      REQUIRE(m);
      CHECK(m->fin);
      CHECK(m->opcode == sent[k].opcode);
      CHECK(m->payload.size() == sent[k].payload.size());
      CHECK(m->payload == sent[k].payload);
    }
  }

  // From a socket: a 70000-byte binary message published to "bin".
  std::string big = pattern(70000, 99, false);
  REQUIRE(peers[0].ws->sendBinary(big));
  for (std::size_t i = 1; i < peers.size(); ++i) {
    auto m = peers[i].ws->readMessage(5000ms);
    REQUIRE(m);
    CHECK(m->opcode == ws::kBinary);
    CHECK(m->payload == big);
  }
  CHECK_FALSE(peers[0].ws->raw().readable(100ms));
}

TEST_CASE("pubsub: a burst of shared frames queued behind a full socket arrives in order") {
  // More than the kernel buffers take: the rest waits in the output queue as
  // shared chunks, flushed many at a time once the client reads.
  constexpr int kCount = 3000;
  constexpr std::size_t kSize = 2000;
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps", {.maxBackpressureBytes = 32u << 20});
  MtServer server(app);
  auto peers = openSpread(server.port(), "/ps?sub=burst", 2);
  auto payload = [](int i) {
    std::string s = std::to_string(i);
    s.resize(kSize, static_cast<char>('a' + i % 26));
    return s;
  };
  for (int i = 0; i < kCount; ++i) {
    REQUIRE(app.publish("burst", Message::text(payload(i))));
  }
  REQUIRE(app.publish("burst", Message::text("end")));
  for (std::size_t p = 0; p < peers.size(); ++p) {
    CAPTURE(p);
    int bad = -1;
    int i = 0;
    for (; i < kCount; ++i) {
      auto m = peers[p].ws->readMessage(5000ms);
      REQUIRE(m);
      if (m->payload != payload(i)) {
        bad = i;
        break;
      }
    }
    CHECK(bad == -1);
    auto end = peers[p].ws->readMessage(5000ms);
    REQUIRE(end);
    CHECK(end->payload == "end");
  }
  CHECK(hub.closed == 0);
}

// ---------------------------------------------------------------- threads

TEST_CASE("threads: add, ping and close from a foreign thread keep their order") {
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  MtServer server(app);
  Peer peer = openPeer(server.port(), "/ps");
  REQUIRE(hub.opened == 1);
  WebSocket ws = hub.socket(0);
  CHECK(ws.id() != 0);
  CHECK(ws.loop() == app.loops().at(static_cast<std::size_t>(peer.loop)));
  CHECK_FALSE(ws.loop().isCurrentThread());

  std::atomic<int> refused{0};
  std::atomic<int> wrongThrows{0};
  std::thread foreign([&] {
    // Calls that belong on the loop refuse loudly.
    try {
      ws.subscribe("x");
    } catch (const std::logic_error&) {
      ++wrongThrows;
    }
    try {
      ws.add(Message::view(Message::Type::kText, "\xff"));
    } catch (const std::invalid_argument&) {
      ++wrongThrows;
    }
    for (int i = 0; i < 50; ++i) {
      if (!ws.add(spry::test::cat("x", std::to_string(i)))) ++refused;
    }
    if (!ws.ping("p")) ++refused;
    for (int i = 50; i < 100; ++i) {
      if (!ws.add(Message::binary(spry::test::cat("y", std::to_string(i))))) ++refused;
    }
    if (!ws.close(4001, "done")) ++refused;
    // Posted after the close: runs on a closing socket, so it sends nothing.
    (void)ws.add("late");
  });
  foreign.join();
  CHECK(refused == 0);
  CHECK(wrongThrows == 2);

  for (int i = 0; i < 50; ++i) {
    auto f = peer.ws->readFrame();
    REQUIRE(f);
    CHECK(f->opcode == ws::kText);
    CHECK(f->payload == spry::test::cat("x", std::to_string(i)));
  }
  auto ping = peer.ws->readFrame();
  REQUIRE(ping);
  CHECK(ping->opcode == ws::kPing);
  CHECK(ping->payload == "p");
  for (int i = 50; i < 100; ++i) {
    auto f = peer.ws->readFrame();
    REQUIRE(f);
    CHECK(f->opcode == ws::kBinary);
    CHECK(f->payload == spry::test::cat("y", std::to_string(i)));
  }
  auto close = peer.ws->readFrame();
  REQUIRE(close);
  CHECK(close->opcode == ws::kClose);
  CHECK(close->closeCode() == 4001);
  CHECK(close->closeReason() == "done");
  peer.ws->sendClose(4001);
  CHECK(peer.ws->raw().waitClosed());
  CHECK(peer.ws->raw().buffer().empty());  // no "late" message
  REQUIRE(waitUntil([&] { return hub.closed == 1; }));
  CHECK(hub.codes() == std::vector<std::uint16_t>{4001});

  // Closed: from any thread, every call is a harmless no-op.
  std::thread after([&] {
    if (!waitUntil([&] { return !ws.add("gone"); })) ++refused;
    if (ws.close()) ++refused;
    if (ws.ping()) ++refused;
    if (ws.publish("x", Message::text("gone"))) ++refused;
  });
  after.join();
  CHECK(refused == 0);
}

TEST_CASE("threads: ws.publish from a foreign thread skips the publisher on every loop") {
  constexpr int kCount = 100;
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  MtServer server(app);
  auto peers = openSpread(server.port(), "/ps?sub=news", 8);
  // Publish as one socket on each loop, from threads that are no loop's.
  std::vector<std::size_t> publishers;
  for (int loop = 0; loop < static_cast<int>(kLoops); ++loop) {
    for (std::size_t i = 0; i < peers.size(); ++i) {
      if (peers[i].loop == loop) {
        publishers.push_back(i);
        break;
      }
    }
  }
  REQUIRE(publishers.size() == kLoops);
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (std::size_t p : publishers) {
    WebSocket ws = hub.socket(p);  // hub order is open order
    const std::string prefix(1, static_cast<char>('a' + p));
    threads.emplace_back([ws, prefix, &refused] {
      for (int i = 0; i < kCount; ++i) {
        if (!ws.publish("news", Message::text(prefix + std::to_string(i)))) ++refused;
      }
      if (!ws.publish("news", Message::text(prefix + "-end"))) ++refused;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(refused == 0);

  for (std::size_t i = 0; i < peers.size(); ++i) {
    CAPTURE(i);
    std::set<std::string> ends;
    for (std::size_t p : publishers) {
      if (p != i) ends.insert(std::string(1, static_cast<char>('a' + p)) + "-end");
    }
    const std::size_t expected = ends.size() * (kCount + 1);
    auto got = readTextsUntilAll(*peers[i].ws, ends);
    CHECK(got.size() == expected);
    for (std::size_t p : publishers) {
      const char prefix = static_cast<char>('a' + p);
      auto want = p == i ? std::vector<std::string>{} : numbered(std::string(1, prefix), kCount);
      if (p != i) want.push_back(std::string(1, prefix) + "-end");
      CHECK(withPrefix(got, prefix) == want);
    }
    CHECK_FALSE(peers[i].ws->raw().readable(i == 0 ? 100ms : 0ms));
  }
}

TEST_CASE("threads: subscribe/unsubscribe and sends race with closes while a thread publishes") {
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  MtServer server(app);
  auto peers = openSpread(server.port(), "/ps?sub=race", 24);
  const auto handles = hub.all();
  REQUIRE(handles.size() == peers.size());

  std::atomic<bool> stop{false};
  std::atomic<long> published{0};
  std::thread publisher([&] {
    while (!stop && published < 20000) {
      app.publish("race", Message::text("r"));
      ++published;
    }
  });
  std::thread toggler([&] {
    while (!stop) {
      for (const auto& h : handles) {
        h.loop().post([h] {
          h.subscribe("race2");
          h.unsubscribe("race2");
          h.subscribe("race2");
          h.publish("race", Message::text("p"));
        });
        h.add("hi");
        h.publish("race2", Message::text("q"));
      }
      std::this_thread::sleep_for(1ms);
    }
  });

  for (std::size_t i = 0; i < peers.size(); ++i) {
    switch (i % 4) {
      case 0:
        peers[i].ws->raw().reset();
        break;
      case 1:
        peers[i].ws->sendClose(1000);
        break;
      case 2:
        break;  // FIN
      default:
        peers[i].ws->sendText("unsub race");
        peers[i].ws->sendText("sub race");
        break;
    }
    peers[i].ws.reset();
    std::this_thread::sleep_for(2ms);
  }
  std::this_thread::sleep_for(50ms);
  stop = true;
  publisher.join();
  toggler.join();
  CHECK(published > 0);

  const int n = static_cast<int>(peers.size());
  CHECK(waitUntil([&] { return hub.closed.load() == n; }, 5000ms));
  CHECK(hub.opened == n);
  CHECK(waitUntil([&] { return app.subscriberCount("race") == 0; }, 5000ms));
  CHECK(app.subscriberCount("race2") == 0);

  // The server still serves subscribers on both loops.
  auto fresh = openSpread(server.port(), "/ps?sub=race", 4);
  CHECK(app.subscriberCount("race") == fresh.size());
  REQUIRE(app.publish("race", Message::text("after")));
  for (auto& p : fresh) {
    auto m = p.ws->readMessage();
    REQUIRE(m);
    CHECK(m->payload == "after");
  }
}

// ---------------------------------------------------------------- backpressure

namespace {

constexpr std::size_t kFeedLimit = 64 * 1024;
constexpr std::size_t kFeedBytes = 8 * 1024;
constexpr int kFeedMax = 4000;  // bound on the messages it takes to fill a slow socket

std::string feedMessage(int index) {
  std::string s = std::to_string(index);
  s.insert(0, 8 - s.size(), '0');
  s.resize(kFeedBytes, static_cast<char>('A' + index % 26));
  return s;
}

int feedIndex(const std::string& payload) {
  if (payload.size() != kFeedBytes) return -1;
  if (payload.back() != static_cast<char>('A' + std::stoi(payload.substr(0, 8)) % 26)) return -2;
  return std::stoi(payload.substr(0, 8));
}

// A subscriber that reads on its own thread, recording message indexes.
struct Reader {
  Peer peer;
  std::atomic<int> got{0};
  std::vector<int> indexes;  // reader thread until joined
  std::thread thread;

  void start() {
    thread = std::thread([this] {
      for (;;) {
        auto m = peer.ws->readMessage(5000ms);
        if (!m || m->opcode != ws::kBinary) return;  // "end" is text
        indexes.push_back(feedIndex(m->payload));
        ++got;
      }
    });
  }
  void join() {
    if (thread.joinable()) thread.join();
  }
  // On a failed REQUIRE: wake the reader up and wait for it.
  ~Reader() {
    if (thread.joinable()) {
      ::shutdown(peer.ws->raw().fd(), SHUT_RDWR);
      thread.join();
    }
  }
};

// Publishes 8 KiB messages from this (foreign) thread, paced by the readers,
// until `slowDone` holds (checked every 8 messages), then `extra` more and
// "end". Returns how many were published.
template <class Done>
int feed(spry::App& app, std::vector<std::unique_ptr<Reader>>& readers, Done slowDone, int extra) {
  int sent = 0;
  bool done = false;
  int stopAt = kFeedMax;
  while (sent < stopAt) {
    REQUIRE(app.publish("feed", Message::binary(feedMessage(sent))));
    ++sent;
    // The readers keep up: their own buffers never reach the limit.
    REQUIRE(waitUntil(
        [&] {
          return std::all_of(readers.begin(), readers.end(),
                             [&](const auto& r) { return r->got.load() + 4 >= sent; });
        },
        5000ms));
    if (!done && sent % 8 == 0 && slowDone()) {
      done = true;
      stopAt = sent + extra;
    }
  }
  REQUIRE_MESSAGE(done, "the slow subscriber never filled up after " << sent << " messages");
  REQUIRE(app.publish("feed", Message::text("end")));
  return sent;
}

}  // namespace

TEST_CASE("backpressure: kDrop drops for a slow subscriber without stalling the others") {
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps",
                 {.maxBackpressureBytes = kFeedLimit, .backpressure = BackpressurePolicy::kDrop});
  MtServer server(app);

  Peer slow = openPeer(server.port(), "/ps?sub=feed");
  WebSocket slowWs = hub.socket(0);
  std::vector<std::unique_ptr<Reader>> readers;
  for (auto& p : openSpread(server.port(), "/ps?sub=feed", 4)) {
    readers.push_back(std::make_unique<Reader>());
    readers.back()->peer = std::move(p);
    readers.back()->start();
  }
  CHECK(app.subscriberCount("feed") == readers.size() + 1);

  // Pub/sub refuses a frame that would take a subscriber past the limit.
  int sent = feed(
      app, readers,
      [&] {
        return runOn(slowWs.loop(), [&] { return slowWs.bufferedAmount(); }) + kFeedBytes + 4 >
               kFeedLimit;
      },
      32);
  for (auto& r : readers) r->join();
  for (std::size_t i = 0; i < readers.size(); ++i) {
    CAPTURE(i);
    std::vector<int> want(static_cast<std::size_t>(sent));
    for (int k = 0; k < sent; ++k) want[static_cast<std::size_t>(k)] = k;
    CHECK(readers[i]->indexes == want);
  }

  // Still open; its own add() passes the limit once, then drops.
  auto [open, first, second, buffered] = runOn(slowWs.loop(), [&] {
    bool a = slowWs.add("own");
    bool b = slowWs.add(Message::binary(std::string(kFeedBytes, 'o')));
    bool c = slowWs.add("dropped");
    return std::tuple{slowWs.isOpen(), a && b, c, slowWs.bufferedAmount()};
  });
  CHECK(open);
  CHECK(first);
  CHECK_FALSE(second);
  CHECK(buffered > kFeedLimit);
  CHECK(app.subscriberCount("feed") == readers.size() + 1);

  // What it finally reads (at full speed now): in order, without the dropped ones.
  std::vector<int> got;
  std::vector<std::string> texts;
  int own = 0;
  std::optional<WsFrame> f;
  while ((f = slow.ws->readFrame(500ms)) && f->opcode != ws::kClose) {
    if (f->opcode == ws::kPing || f->opcode == ws::kPong) continue;
    if (f->opcode == ws::kText) {
      texts.push_back(f->payload);
    } else if (f->payload == std::string(kFeedBytes, 'o')) {
      ++own;
    } else {
      got.push_back(feedIndex(f->payload));
    }
  }
  for (std::size_t k = 0; k + 1 < got.size(); ++k)
    if (got[k] >= got[k + 1]) CHECK_FALSE(f);  // timeout: no Close
  REQUIRE_FALSE(got.empty());
  CHECK(got.front() == 0);
  CHECK(std::is_sorted(got.begin(), got.end()));
  CHECK(std::adjacent_find(got.begin(), got.end()) == got.end());
  CHECK(got.size() < static_cast<std::size_t>(sent));
  CHECK(got.back() < sent - 32);  // the last 32 came when it was full
  CHECK(own == 1);
  CHECK(std::count(texts.begin(), texts.end(), "own") == 1);
  CHECK(std::count(texts.begin(), texts.end(), "dropped") == 0);
  CHECK(hub.closed == 0);
}

TEST_CASE("backpressure: kPauseReading and kClose close a slow subscriber with 1008") {
  for (auto policy : {BackpressurePolicy::kPauseReading, BackpressurePolicy::kClose}) {
    CAPTURE(static_cast<int>(policy));
    spry::App app;
    Hub hub;
    addPubSubRoute(app, hub, "/ps", {.maxBackpressureBytes = kFeedLimit, .backpressure = policy});
    MtServer server(app);

    Peer slow = openPeer(server.port(), "/ps?sub=feed");
    WebSocket slowWs = hub.socket(0);
    std::vector<std::unique_ptr<Reader>> readers;
    for (auto& p : openSpread(server.port(), "/ps?sub=feed", 4)) {
      readers.push_back(std::make_unique<Reader>());
      readers.back()->peer = std::move(p);
      readers.back()->start();
    }

    int sent = feed(
        app, readers,
        [&] {
          return runOn(slowWs.loop(), [&] { return slowWs.readyState(); }) != ReadyState::kOpen;
        },
        32);
    for (auto& r : readers) r->join();
    for (std::size_t i = 0; i < readers.size(); ++i) {
      CAPTURE(i);
      std::vector<int> want(static_cast<std::size_t>(sent));
      for (int k = 0; k < sent; ++k) want[static_cast<std::size_t>(k)] = k;
      CHECK(readers[i]->indexes == want);
    }

    // Everything queued before the overflow, in order, then Close 1008.
    std::vector<int> got;
    std::optional<WsFrame> f;
    while ((f = slow.ws->readFrame(2000ms)) && f->opcode == ws::kBinary) {
      got.push_back(feedIndex(f->payload));
    }
    REQUIRE(f);
    CHECK(f->opcode == ws::kClose);
    CHECK(f->closeCode() == 1008);
    REQUIRE_FALSE(got.empty());
    CHECK(got.size() < static_cast<std::size_t>(sent));
    for (std::size_t k = 0; k < got.size(); ++k) {
      if (got[k] != static_cast<int>(k)) {
        FAIL_CHECK("message " << k << " arrived as " << got[k]);
        break;
      }
    }
    slow.ws->sendClose(1008);
    CHECK(slow.ws->raw().waitClosed());
    CHECK(waitUntil([&] { return hub.closed == 1; }));
    CHECK(hub.codes() == std::vector<std::uint16_t>{1008});
    CHECK(app.subscriberCount("feed") == readers.size());
  }
}

// ---------------------------------------------------------------- shutdown

TEST_CASE("shutdown: stop closes sockets on both loops with 1001 and finishes in-flight HTTP") {
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  std::atomic<bool> deferredStarted{false};
  app.get("/slow", [&](spry::Request& req) -> spry::Response {
    auto d = req.defer();
    req.loop().setTimeout(300ms, [d] { d.send(spry::Response::text("finished")); });
    deferredStarted = true;
    return d;
  });
  MtServer server(app);
  const std::uint16_t port = server.port();
  auto peers = openSpread(port, "/ps?sub=t", 6);

  auto http = std::make_unique<RawClient>(port);
  REQUIRE(http->send(get("/slow")));
  REQUIRE(waitUntil([&] { return deferredStarted.load(); }));

  constexpr auto kDeadline = 3000ms;
  auto started = std::chrono::steady_clock::now();
  auto stopped = std::async(std::launch::async, [&] { return server.stop(kDeadline, 0ms); });

  std::set<int> closedLoops;
  for (auto& p : peers) {
    CHECK(p.ws->closeHandshake(kDeadline) == 1001);
    closedLoops.insert(p.loop);
  }
  CHECK(closedLoops.size() == kLoops);
  // Both listeners are closed once every loop has begun its stop.
  CHECK_FALSE(canConnect(port));

  auto r = readResponse(*http, false, kDeadline);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "finished");
  CHECK(r->headers.get("Connection") == "close");
  http.reset();

  CHECK(stopped.get());  // listen() returned within the deadline
  CHECK(std::chrono::steady_clock::now() - started < kDeadline);
  CHECK(hub.closed == static_cast<int>(peers.size()));
  auto codes = hub.codes();
  CHECK(static_cast<std::size_t>(std::count(codes.begin(), codes.end(), 1001)) == peers.size());
  CHECK(app.subscriberCount("t") == 0);
  CHECK_FALSE(app.isListening());
}

TEST_CASE("shutdown: the deadline drops stalled sockets and reports the unsent bytes") {
  LogCapture logs(spry::LogLevel::kWarn);
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  MtServer server(app);
  auto peers = openSpread(server.port(), "/ps", 2);
  // Every peer asks for 12 MiB it never reads: more than the kernel buffers take.
  for (auto& p : peers) {
    REQUIRE(p.ws->sendText("flood 192"));
  }
  REQUIRE(waitUntil([&] {
    for (auto& ws : hub.all()) {
      if (runOn(ws.loop(), [&] { return ws.bufferedAmount(); }) < 1024 * 1024) return false;
    }
    return true;
  }));

  constexpr auto kDeadline = 500ms;
  auto started = std::chrono::steady_clock::now();
  CHECK(server.stop(kDeadline, 2500ms));
  CHECK(std::chrono::steady_clock::now() - started >= kDeadline);
  CHECK(hub.closed == static_cast<int>(peers.size()));
  // The report names the connections and how many bytes never left.
  std::size_t unsent = 0;
  for (const auto& line : logs.lines()) {
    auto end = line.find(" byte(s) unsent");
    if (line.find("shutdown deadline passed") == std::string::npos || end == std::string::npos) {
      continue;
    }
    auto begin = line.rfind(' ', end - 1) + 1;
    unsent += std::stoul(line.substr(begin, end - begin));
  }
  CHECK(unsent >= 2u * 1024 * 1024);
  for (auto& p : peers) {
    CHECK(p.ws->raw().waitClosed(5000ms));
  }
}

TEST_CASE("shutdown: stop from a handler on either loop, twice, ends listen after the response") {
  for (int round = 0; round < 4; ++round) {
    CAPTURE(round);
    spry::App app;
    std::atomic<int> stops{0};
    app.get("/stop", [&](spry::Request& req) {
      app.stop(1000ms);
      app.stop(0ms);  // a second stop changes nothing
      ++stops;
      return "stopping from loop " + std::to_string(loopIndex(app, req.loop()));
    });
    MtServer server(app);
    {
      RawClient c(server.port());
      REQUIRE(c.send(get("/stop")));
      auto r = readResponse(c);
      REQUIRE(r);
      CHECK(r->status == 200);
      CHECK(r->body.rfind("stopping from loop ", 0) == 0);
      CHECK(c.waitClosed());  // the now idle keep-alive connection is closed
    }
    CHECK(server.stop(1000ms));
    CHECK(stops == 1);
  }
}

TEST_CASE("shutdown: foreign threads keep publishing and sending while the app stops") {
  spry::App app;
  Hub hub;
  addPubSubRoute(app, hub, "/ps");
  MtServer server(app);
  auto peers = openSpread(server.port(), "/ps?sub=news", 8);
  const auto handles = hub.all();

  std::atomic<bool> quit{false};
  std::atomic<long> acceptedAfterStop{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      while (!quit) {
        bool listening = app.isListening();
        bool ok = app.publish("news", Message::text("n"));
        if (ok && !listening && !app.isListening()) ++acceptedAfterStop;
        for (const auto& h : handles) {
          h.add("direct");
          h.publish("news", Message::text("p"));
          h.loop().post([h] { h.subscribe("late"); });
          (void)app.subscriberCount("news");
        }
      }
    });
  }
  std::this_thread::sleep_for(20ms);
  // The peers answer nothing: the deadline ends their sockets.
  CHECK(server.stop(300ms));
  std::this_thread::sleep_for(20ms);
  quit = true;
  for (auto& t : threads) t.join();
  CHECK(acceptedAfterStop == 0);
  CHECK(hub.closed == static_cast<int>(peers.size()));
  CHECK(app.subscriberCount("news") == 0);
  CHECK(app.subscriberCount("late") == 0);
  CHECK_FALSE(app.publish("news", Message::text("after")));
  for (const auto& h : handles) {
    CHECK_FALSE(h.add("after"));
    CHECK_FALSE(h.loop().post([] {}));
  }
}
