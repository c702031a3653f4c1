#include "redis/redis_client.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "redis_server.h"
#include "spry/log.h"

using spry::detail::RedisClient;
using spry::detail::RedisClientOptions;
using spry::detail::RedisReply;
using spry::detail::RedisUrl;
using spry::test::RedisServer;
using Type = RedisReply::Type;
using namespace std::chrono_literals;

namespace {

// Every wait gives up after this long: a failure, not a timing assumption.
constexpr auto kDeadline = 5s;

// Bytes a text protocol would choke on: NUL, 0xFF, CR LF, and a fake RESP line.
const std::string kBinary("a\0b\xff\r\n$-1\r\n\xfe\x80z", 14);

// A libuv loop for one test. The destructor lets every handle close and
// checks that the loop closes cleanly: each test is also a leak check.
class TestLoop {
 public:
  TestLoop() { REQUIRE(uv_loop_init(&loop_) == 0); }
  ~TestLoop() {
    for (int i = 0; i < 1000; ++i) {
      uv_run(&loop_, UV_RUN_NOWAIT);
      if (uv_loop_close(&loop_) == 0) return;
      std::this_thread::sleep_for(1ms);
    }
    FAIL_CHECK("the loop still has open handles or requests");
  }
  uv_loop_t* get() noexcept { return &loop_; }

  // Runs the loop until `done()`; false when the deadline passes first.
  bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds deadline = kDeadline) {
    uv_timer_t tick;  // wakes the loop to look at the clock
    uv_timer_init(&loop_, &tick);
    uv_timer_start(
        &tick, [](uv_timer_t*) {}, 5, 5);
    const auto end = std::chrono::steady_clock::now() + deadline;
    bool ok = done();
    while (!ok && std::chrono::steady_clock::now() < end) {
      uv_run(&loop_, UV_RUN_ONCE);
      ok = done();
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);  // the close callback, before `tick` goes
    return ok;
  }

 private:
  uv_loop_t loop_;
};

struct Message {
  std::string channel;
  std::string payload;
  bool sharded;
};

// What a client reported. Declared before the client, so it outlives it.
struct Events {
  int connected = 0;
  int disconnected = 0;
  std::string reason;
  std::vector<Message> messages;
  std::vector<RedisReply> pushes;

  void attach(RedisClient& c) {
    c.onConnected([this] { ++connected; });
    c.onDisconnected([this](std::string_view r) {
      ++disconnected;
      reason = r;
    });
    c.onMessage([this](std::string_view channel, std::string_view payload, bool sharded) {
      messages.push_back({std::string(channel), std::string(payload), sharded});
    });
    c.onPush([this](RedisReply& push) { pushes.push_back(std::move(push)); });
  }
};

RedisClientOptions opts(std::chrono::milliseconds timeout = 2000ms,
                        std::size_t maxOutputBytes = 8 << 20) {
  return {.connectTimeout = timeout, .maxOutputBytes = maxOutputBytes};
}

void connectNow(TestLoop& loop, RedisClient& c, Events& ev) {
  REQUIRE(c.connect());
  REQUIRE(loop.runUntil([&] { return ev.connected > 0 || ev.disconnected > 0; }));
  REQUIRE_MESSAGE(ev.connected == 1, "not connected: " << ev.reason);
}

// Sends a command and runs the loop until its reply.
RedisReply roundTrip(TestLoop& loop, RedisClient& c, std::initializer_list<std::string_view> args) {
  bool done = false;
  RedisReply out;
  REQUIRE(c.command(args, [&](RedisReply& r) {
    out = std::move(r);
    done = true;
  }));
  REQUIRE(loop.runUntil([&] { return done; }));
  return out;
}

// [kind, channel, count], as Redis confirms a (un)subscription.
void checkConfirmation(const RedisReply& r, std::string_view kind, std::string_view channel,
                       long long count) {
  REQUIRE(r.type == Type::kArray);
  REQUIRE(r.elements.size() == 3);
  CHECK(r.elements[0].str == kind);
  if (channel.empty()) {
    CHECK(r.elements[1].type == Type::kNil);
  } else {
    CHECK(r.elements[1].str == channel);
  }
  CHECK(r.elements[2].integer == count);
}

// A loopback listener that never accepts: the kernel completes the TCP
// handshake from its backlog, and then nothing ever answers.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  std::uint16_t port() const noexcept { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// A fake server on the test's loop: accepts one connection and answers its
// first bytes with `answer`.
class FakeServer {
 public:
  FakeServer(uv_loop_t* loop, std::string answer) : answer_(std::move(answer)) {
    listener_ = new uv_tcp_t;
    uv_tcp_init(loop, listener_);
    listener_->data = this;
    sockaddr_in a{};
    uv_ip4_addr("127.0.0.1", 0, &a);
    REQUIRE(uv_tcp_bind(listener_, reinterpret_cast<const sockaddr*>(&a), 0) == 0);
    REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 8, [](uv_stream_t* l, int status) {
              auto* self = static_cast<FakeServer*>(l->data);
              if (status < 0 || self->conn_) return;
              self->conn_ = new uv_tcp_t;
              uv_tcp_init(l->loop, self->conn_);
              self->conn_->data = self;
              uv_accept(l, reinterpret_cast<uv_stream_t*>(self->conn_));
              uv_read_start(
                  reinterpret_cast<uv_stream_t*>(self->conn_),
                  [](uv_handle_t*, size_t, uv_buf_t* buf) {
                    static char space[4096];
                    *buf = uv_buf_init(space, sizeof(space));
                  },
                  [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
                    auto* me = static_cast<FakeServer*>(s->data);
                    if (n <= 0 || me->answered_) return;
                    me->answered_ = true;
                    uv_buf_t out =
                        uv_buf_init(me->answer_.data(), static_cast<unsigned>(me->answer_.size()));
                    CHECK(uv_try_write(s, &out, 1) == int(me->answer_.size()));
                  });
            }) == 0);
    int len = sizeof(a);
    uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~FakeServer() {
    auto drop = [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); };
    uv_close(reinterpret_cast<uv_handle_t*>(listener_), drop);
    if (conn_) uv_close(reinterpret_cast<uv_handle_t*>(conn_), drop);
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  std::string answer_;
  bool answered_ = false;
  uv_tcp_t* listener_ = nullptr;
  uv_tcp_t* conn_ = nullptr;
  std::uint16_t port_ = 0;
};

}  // namespace

TEST_CASE("SET and GET round-trip binary keys and values; nil, integer, error and array replies") {
  RedisServer server;
  TestLoop loop;
  Events ev;
  RedisClient c(loop.get(), RedisUrl::parse(server.url()), opts());
  ev.attach(c);
  connectNow(loop, c, ev);
  CHECK(c.isConnected());

  const std::string key = "k" + kBinary;
  RedisReply r = roundTrip(loop, c, {"SET", key, kBinary});
  CHECK(r.type == Type::kStatus);
  CHECK(r.str == "OK");
  r = roundTrip(loop, c, {"GET", key});
  CHECK(r.type == Type::kString);
  CHECK(r.str == kBinary);

  // A megabyte: many reads on the way back, one write out.
  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + (i >> 8));
  CHECK(roundTrip(loop, c, {"SET", "big", big}).str == "OK");
  CHECK(roundTrip(loop, c, {"GET", "big"}).str == big);

  CHECK(roundTrip(loop, c, {"GET", "missing"}).type == Type::kNil);
  r = roundTrip(loop, c, {"INCRBY", "n", "41"});
  CHECK(r.type == Type::kInteger);
  CHECK(r.integer == 41);
  r = roundTrip(loop, c, {"INCR", key});
  CHECK(r.type == Type::kError);
  CHECK(r.isError());
  CHECK(r.str.rfind("ERR", 0) == 0);
  r = roundTrip(loop, c, {"MGET", key, "missing", "n"});
  REQUIRE(r.type == Type::kArray);
  REQUIRE(r.elements.size() == 3);
  CHECK(r.elements[0].str == kBinary);
  CHECK(r.elements[1].type == Type::kNil);
  CHECK(r.elements[2].str == "41");

  // Many arguments (past the formatter's stack array).
  std::vector<std::string> storage;
  std::vector<std::string_view> args = {"RPUSH", "list"};
  for (int i = 0; i < 20; ++i) storage.push_back(kBinary + std::to_string(i));
  for (const auto& s : storage) args.push_back(s);
  bool pushed = false;
  REQUIRE(c.command(args, [&](RedisReply& reply) {
    CHECK(reply.integer == 20);
    pushed = true;
  }));
  REQUIRE(loop.runUntil([&] { return pushed; }));
  r = roundTrip(loop, c, {"LRANGE", "list", "0", "-1"});
  REQUIRE(r.elements.size() == 20);
  for (int i = 0; i < 20; ++i) CHECK(r.elements[std::size_t(i)].str == storage[std::size_t(i)]);

  // Nested arrays, and an array longer than what is reserved up front whose
  // elements are arrays themselves.
  r = roundTrip(loop, c, {"EVAL", "return {1, {2, {3, 'x'}, {}}, 'y'}", "0"});
  REQUIRE(r.elements.size() == 3);
  CHECK(r.elements[0].integer == 1);
  REQUIRE(r.elements[1].elements.size() == 3);
  CHECK(r.elements[1].elements[0].integer == 2);
  CHECK(r.elements[1].elements[1].elements[1].str == "x");
  CHECK(r.elements[1].elements[2].type == Type::kArray);
  CHECK(r.elements[1].elements[2].elements.empty());
  CHECK(r.elements[2].str == "y");
  r = roundTrip(
      loop, c,
      {"EVAL", "local t = {} for i = 1, 5000 do t[i] = {i, tostring(i)} end return t", "0"});
  REQUIRE(r.elements.size() == 5000);
  for (std::size_t i = 0; i < 5000; ++i) {
    REQUIRE(r.elements[i].elements.size() == 2);
    CHECK(r.elements[i].elements[0].integer == static_cast<long long>(i + 1));
    CHECK(r.elements[i].elements[1].str == std::to_string(i + 1));
  }

  CHECK_FALSE(c.command(std::span<const std::string_view>(), {}));  // no command at all
  CHECK(ev.disconnected == 0);
  c.close();
  CHECK(ev.disconnected == 1);
  CHECK(ev.reason == "closed by the client");
  CHECK_FALSE(c.isConnected());
  CHECK_FALSE(c.command({"PING"}, {}));
}

TEST_CASE("pipelined commands, some queued before the connection is up, keep their order") {
  RedisServer server;
  TestLoop loop;
  Events ev;
  RedisClient c(loop.get(), RedisUrl::parse(server.url()), opts());
  ev.attach(c);
  CHECK_FALSE(c.command({"PING"}, {}));  // not connecting: refused
  REQUIRE(c.connect());
  CHECK_FALSE(c.connect());  // already connecting

  constexpr int kCount = 3000;
  std::vector<int> order;
  std::vector<std::string> values;
  for (int i = 0; i < kCount; ++i) values.push_back(std::to_string(i) + kBinary);
  for (int i = 0; i < kCount / 2; ++i) {
    REQUIRE(c.command({"ECHO", values[std::size_t(i)]}, [&, i](RedisReply& r) {
      CHECK(r.str == values[std::size_t(i)]);
      order.push_back(i);
    }));
  }
  CHECK(c.bufferedBytes() > 0);  // held until PING is answered
  REQUIRE(loop.runUntil([&] { return ev.connected == 1; }));
  for (int i = kCount / 2; i < kCount; ++i) {
    REQUIRE(c.command({"ECHO", values[std::size_t(i)]}, [&, i](RedisReply& r) {
      CHECK(r.str == values[std::size_t(i)]);
      order.push_back(i);
    }));
  }
  REQUIRE(loop.runUntil([&] { return order.size() == kCount; }));
  for (int i = 0; i < kCount; ++i) REQUIRE(order[std::size_t(i)] == i);
  CHECK(c.bufferedBytes() == 0);
}

TEST_CASE("SUBSCRIBE on one client, PUBLISH from another: binary messages, confirmations") {
  RedisServer server;
  TestLoop loop;
  Events subEv, pubEv;
  RedisClient sub(loop.get(), RedisUrl::parse(server.url()), opts());
  RedisClient pub(loop.get(), RedisUrl::parse(server.url()), opts());
  subEv.attach(sub);
  pubEv.attach(pub);
  connectNow(loop, sub, subEv);
  connectNow(loop, pub, pubEv);

  const std::string a = "chan:" + kBinary;
  // One reply for the command, carrying one confirmation per channel.
  RedisReply r = roundTrip(loop, sub, {"SUBSCRIBE", a, "b"});
  REQUIRE(r.type == Type::kArray);
  REQUIRE(r.elements.size() == 2);
  checkConfirmation(r.elements[0], "subscribe", a, 1);
  checkConfirmation(r.elements[1], "subscribe", "b", 2);
  CHECK(sub.isSubscribed());
  r = roundTrip(loop, sub, {"SSUBSCRIBE", "s"});
  REQUIRE(r.elements.size() == 1);
  checkConfirmation(r.elements[0], "ssubscribe", "s", 1);
  r = roundTrip(loop, sub, {"PSUBSCRIBE", "p*"});
  REQUIRE(r.elements.size() == 1);
  checkConfirmation(r.elements[0], "psubscribe", "p*", 3);

  const std::string payloads[] = {kBinary, std::string(), std::string(100000, '\xff') + kBinary};
  int published = 0;
  auto count = [&](RedisReply& reply) {
    CHECK(reply.type == Type::kInteger);
    CHECK(reply.integer == 1);
    ++published;
  };
  for (const auto& p : payloads) REQUIRE(pub.command({"PUBLISH", a, p}, count));
  REQUIRE(pub.command({"PUBLISH", "b", "to b"}, count));
  REQUIRE(pub.command({"SPUBLISH", "s", kBinary}, count));
  REQUIRE(pub.command({"PUBLISH", "pq", "by pattern"}, count));
  REQUIRE(loop.runUntil([&] { return subEv.messages.size() == 6 && published == 6; }));
  for (int i = 0; i < 3; ++i) {
    CHECK(subEv.messages[std::size_t(i)].channel == a);
    CHECK(subEv.messages[std::size_t(i)].payload == payloads[i]);
    CHECK_FALSE(subEv.messages[std::size_t(i)].sharded);
  }
  CHECK(subEv.messages[3].channel == "b");
  CHECK(subEv.messages[3].payload == "to b");
  CHECK(subEv.messages[4].channel == "s");
  CHECK(subEv.messages[4].payload == kBinary);
  CHECK(subEv.messages[4].sharded);
  CHECK(subEv.messages[5].channel == "pq");
  CHECK(subEv.messages[5].payload == "by pattern");

  // In subscribe mode PING answers ["pong", ""], and other commands an error:
  // both are replies, not pushes.
  r = roundTrip(loop, sub, {"PING"});
  REQUIRE(r.type == Type::kArray);
  CHECK(r.elements.at(0).str == "pong");
  r = roundTrip(loop, sub, {"GET", "x"});
  CHECK(r.type == Type::kError);

  r = roundTrip(loop, sub, {"UNSUBSCRIBE", a});
  REQUIRE(r.elements.size() == 1);
  checkConfirmation(r.elements[0], "unsubscribe", a, 2);
  CHECK(roundTrip(loop, pub, {"PUBLISH", a, "nobody"}).integer == 0);
  r = roundTrip(loop, sub, {"PUNSUBSCRIBE"});  // no channels: one per pattern
  REQUIRE(r.elements.size() == 1);
  checkConfirmation(r.elements[0], "punsubscribe", "p*", 1);
  r = roundTrip(loop, sub, {"UNSUBSCRIBE"});
  REQUIRE(r.elements.size() == 1);
  checkConfirmation(r.elements[0], "unsubscribe", "b", 0);
  CHECK(sub.isSubscribed());  // the shard channel is left
  r = roundTrip(loop, sub, {"SUNSUBSCRIBE", "s"});
  REQUIRE(r.elements.size() == 1);
  checkConfirmation(r.elements[0], "sunsubscribe", "s", 0);
  CHECK_FALSE(sub.isSubscribed());
  r = roundTrip(loop, sub, {"UNSUBSCRIBE"});  // nothing left: one confirmation, nil channel
  REQUIRE(r.elements.size() == 1);
  checkConfirmation(r.elements[0], "unsubscribe", "", 0);

  // Out of subscribe mode, an array that looks like a message is a reply.
  CHECK(roundTrip(loop, pub, {"RPUSH", "l", "message", "x", "y"}).integer == 3);
  r = roundTrip(loop, sub, {"LRANGE", "l", "0", "-1"});
  REQUIRE(r.elements.size() == 3);
  CHECK(r.elements[0].str == "message");
  CHECK(subEv.messages.size() == 6);

  // Duplicates are confirmed once each; several subscribe commands pipelined.
  std::vector<std::size_t> sizes;
  auto size = [&](RedisReply& reply) { sizes.push_back(reply.elements.size()); };
  REQUIRE(sub.command({"SUBSCRIBE", "d", "d"}, size));
  REQUIRE(sub.command({"SUBSCRIBE", "e"}, size));
  REQUIRE(sub.command({"UNSUBSCRIBE"}, size));
  REQUIRE(loop.runUntil([&] { return sizes.size() == 3; }));
  CHECK(sizes == std::vector<std::size_t>{2, 1, 2});
  CHECK_FALSE(sub.isSubscribed());
  CHECK(subEv.pushes.empty());
  CHECK(subEv.disconnected == 0);
}

TEST_CASE("AUTH: password alone, user and password, percent-encoded; failures disconnect") {
  const std::string password = "p@ss w/rd:%";
  RedisServer server(
      {"--requirepass", password, "--user", "alice", "on", ">apw", "~*", "&*", "+@all"});
  const std::string encoded = "p%40ss%20w%2Frd%3A%25";

  SUBCASE("password alone") {
    TestLoop loop;
    Events ev;
    RedisClient c(loop.get(), RedisUrl::parse(server.url(":" + encoded + "@")), opts());
    ev.attach(c);
    connectNow(loop, c, ev);
    CHECK(roundTrip(loop, c, {"SET", "k", kBinary}).str == "OK");
    CHECK(roundTrip(loop, c, {"GET", "k"}).str == kBinary);
  }
  SUBCASE("user and password") {
    TestLoop loop;
    Events ev;
    RedisClient c(loop.get(), RedisUrl::parse(server.url("alice:apw@")), opts());
    ev.attach(c);
    connectNow(loop, c, ev);
    CHECK(roundTrip(loop, c, {"ACL", "WHOAMI"}).str == "alice");
  }
  SUBCASE("a wrong password fails the connection and what was queued") {
    TestLoop loop;
    Events ev;
    RedisClient c(loop.get(), RedisUrl::parse(server.url(":wrong@")), opts());
    ev.attach(c);
    REQUIRE(c.connect());
    RedisReply lost;
    REQUIRE(c.command({"GET", "k"}, [&](RedisReply& r) { lost = std::move(r); }));
    REQUIRE(loop.runUntil([&] { return ev.disconnected > 0; }));
    CHECK(ev.connected == 0);
    CHECK(ev.disconnected == 1);
    CHECK(ev.reason.rfind("AUTH failed: WRONGPASS", 0) == 0);
    CHECK(lost.type == Type::kDisconnected);
    CHECK(lost.isError());
    CHECK(lost.str == ev.reason);
    CHECK_FALSE(c.isConnected());
  }
  SUBCASE("no password where one is required") {
    TestLoop loop;
    Events ev;
    RedisClient c(loop.get(), RedisUrl::parse(server.url()), opts());
    ev.attach(c);
    REQUIRE(c.connect());
    REQUIRE(loop.runUntil([&] { return ev.disconnected > 0; }));
    CHECK(ev.connected == 0);
    CHECK(ev.reason.find("NOAUTH") != std::string::npos);
  }
}

TEST_CASE("a refused connect fails fast; the client can connect again after") {
  TestLoop loop;
  Events ev;
  const std::uint16_t port = spry::test::freeLoopbackPort();
  RedisClient c(loop.get(), RedisUrl::parse("redis://127.0.0.1:" + std::to_string(port)),
                opts(5000ms));
  ev.attach(c);
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(c.connect());
  CHECK(ev.disconnected == 0);  // never from inside connect()
  RedisReply lost;
  REQUIRE(c.command({"PING"}, [&](RedisReply& r) { lost = std::move(r); }));
  REQUIRE(loop.runUntil([&] { return ev.disconnected > 0; }));
  CHECK(std::chrono::steady_clock::now() - start < 1s);  // well before the 5 s timeout
  CHECK(ev.connected == 0);
  CHECK(ev.reason.find("connection refused") != std::string::npos);
  CHECK(ev.reason.find(std::to_string(port)) != std::string::npos);
  CHECK(lost.type == Type::kDisconnected);

  // The same client, a second attempt: again exactly one onDisconnected.
  REQUIRE(c.connect());
  REQUIRE(loop.runUntil([&] { return ev.disconnected == 2; }));
  loop.runUntil([] { return false; }, 50ms);
  CHECK(ev.disconnected == 2);
}

TEST_CASE("the connect timeout: a server that accepts and never answers") {
  SilentListener silent;
  for (const char* credentials : {"", ":pw@"}) {
    CAPTURE(credentials);
    TestLoop loop;
    Events ev;
    RedisClient c(loop.get(),
                  RedisUrl::parse("redis://" + std::string(credentials) +
                                  "127.0.0.1:" + std::to_string(silent.port())),
                  opts(100ms));
    ev.attach(c);
    const auto start = std::chrono::steady_clock::now();
    REQUIRE(c.connect());
    RedisReply lost;
    REQUIRE(c.command({"PING"}, [&](RedisReply& r) { lost = std::move(r); }));
    REQUIRE(loop.runUntil([&] { return ev.disconnected > 0; }));
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 95ms);
    CHECK(took < 2s);
    CHECK(ev.connected == 0);
    CHECK(ev.reason.rfind("connect timeout: 127.0.0.1:", 0) == 0);
    CHECK(ev.reason.find("within 100 ms") != std::string::npos);
    CHECK(lost.type == Type::kDisconnected);
  }
}

TEST_CASE("a host name is resolved (localhost), trying each address in turn") {
  RedisServer server;  // on 127.0.0.1 only: "localhost" may try ::1 first
  TestLoop loop;
  Events ev;
  RedisClient c(loop.get(), RedisUrl::parse("redis://localhost:" + std::to_string(server.port())),
                opts());
  ev.attach(c);
  connectNow(loop, c, ev);
  CHECK(roundTrip(loop, c, {"PING"}).str == "PONG");
}

TEST_CASE("killing redis-server mid-connection fails pending callbacks and disconnects") {
  RedisServer server;
  TestLoop loop;
  Events ev, subEv;
  RedisClient c(loop.get(), RedisUrl::parse(server.url()), opts());
  RedisClient sub(loop.get(), RedisUrl::parse(server.url()), opts());
  ev.attach(c);
  subEv.attach(sub);
  connectNow(loop, c, ev);
  connectNow(loop, sub, subEv);
  CHECK(roundTrip(loop, sub, {"SUBSCRIBE", "x"}).elements.size() == 1);

  std::vector<RedisReply> lost;
  auto keep = [&](RedisReply& r) { lost.push_back(std::move(r)); };
  REQUIRE(c.command({"BLPOP", "never", "0"}, keep));  // blocks until the end
  REQUIRE(c.command({"PING"}, keep));
  REQUIRE(loop.runUntil([&] { return false; }, 50ms) == false);  // both reach the server
  server.kill();
  REQUIRE(loop.runUntil([&] { return ev.disconnected > 0 && subEv.disconnected > 0; }));
  REQUIRE(lost.size() == 2);
  CHECK(lost[0].type == Type::kDisconnected);
  CHECK(lost[1].type == Type::kDisconnected);
  CHECK(ev.reason.find("127.0.0.1:" + std::to_string(server.port())) != std::string::npos);
  CHECK(subEv.disconnected == 1);
  CHECK_FALSE(sub.isSubscribed());  // a new connection starts without subscriptions
  CHECK_FALSE(c.isConnected());
}

TEST_CASE("the output buffer is bounded: past maxOutputBytes, commands are refused") {
  RedisServer server;
  TestLoop loop;
  Events ev;
  RedisClient c(loop.get(), RedisUrl::parse(server.url()), opts(2000ms, 4096));
  ev.attach(c);
  REQUIRE(c.connect());
  // Until the server has answered PING, commands wait in the buffer.
  const std::string value(1000, 'v');
  int replies = 0;
  auto counted = [&](RedisReply& r) {
    CHECK(r.str == "OK");
    ++replies;
  };
  int accepted = 0;
  while (c.command({"SET", "k", value}, counted)) ++accepted;
  CHECK(accepted == 3);  // 3 x 1029 bytes fit in 4096, a fourth does not
  CHECK(c.droppedCommands() == 1);
  CHECK(c.bufferedBytes() <= 4096);
  CHECK(c.bufferedBytes() > 3000);
  CHECK_FALSE(c.command({"SET", "k", value}, counted));
  CHECK(c.droppedCommands() == 2);
  CHECK(c.command({"PING"}, {}));  // a small one still fits

  REQUIRE(loop.runUntil([&] { return replies == 3; }));
  loop.runUntil([&] { return c.bufferedBytes() == 0; });
  CHECK(c.bufferedBytes() == 0);
  REQUIRE(c.command({"SET", "k", value}, counted));
  REQUIRE(loop.runUntil([&] { return replies == 4; }));
  CHECK(c.droppedCommands() == 2);
}

TEST_CASE("close() and destruction from inside callbacks") {
  RedisServer server;

  SUBCASE("close() in a reply callback fails the rest, in order, then disconnects") {
    TestLoop loop;
    Events ev;
    RedisClient c(loop.get(), RedisUrl::parse(server.url()), opts());
    ev.attach(c);
    connectNow(loop, c, ev);
    std::vector<std::string> seen;
    REQUIRE(c.command({"ECHO", "1"}, [&](RedisReply& r) {
      seen.push_back(r.str);
      c.close();
      c.close();  // twice: harmless
      CHECK_FALSE(c.command({"PING"}, {}));
    }));
    for (const char* n : {"2", "3"}) {
      REQUIRE(c.command({"ECHO", n}, [&](RedisReply& r) {
        CHECK(r.type == Type::kDisconnected);
        CHECK(ev.disconnected == 0);  // pending callbacks first
        seen.push_back(r.str);
      }));
    }
    REQUIRE(loop.runUntil([&] { return ev.disconnected > 0; }));
    CHECK(seen == std::vector<std::string>{"1", "closed by the client", "closed by the client"});
    CHECK(ev.disconnected == 1);
    // And it connects again.
    connectNow(loop, c, ev);
    CHECK(roundTrip(loop, c, {"ECHO", "again"}).str == "again");
  }
  SUBCASE("connect() again from onDisconnected") {
    TestLoop loop;
    int downs = 0, ups = 0;
    RedisClient c(loop.get(), RedisUrl::parse(server.url()), opts());
    c.onConnected([&] { ++ups; });
    c.onDisconnected([&](std::string_view) {
      if (++downs == 1) CHECK(c.connect());
    });
    REQUIRE(c.connect());
    REQUIRE(loop.runUntil([&] { return ups == 1; }));
    c.close();
    REQUIRE(loop.runUntil([&] { return ups == 2; }));
    CHECK(downs == 1);
    CHECK(roundTrip(loop, c, {"PING"}).str == "PONG");
  }
  SUBCASE("destroying the client in a reply callback stops everything else") {
    TestLoop loop;
    Events ev;
    auto c = std::make_unique<RedisClient>(loop.get(), RedisUrl::parse(server.url()), opts());
    ev.attach(*c);
    connectNow(loop, *c, ev);
    int called = 0;
    REQUIRE(c->command({"PING"}, [&](RedisReply&) {
      ++called;
      c.reset();
    }));
    REQUIRE(c->command({"PING"}, [&](RedisReply&) { ++called; }));
    REQUIRE(loop.runUntil([&] { return !c; }));
    loop.runUntil([] { return false; }, 50ms);
    CHECK(called == 1);
    CHECK(ev.disconnected == 0);
  }
  SUBCASE("destroying the client in a failure callback and in onDisconnected") {
    TestLoop loop;
    Events ev;
    auto c = std::make_unique<RedisClient>(loop.get(), RedisUrl::parse(server.url()), opts());
    ev.attach(*c);
    connectNow(loop, *c, ev);
    int called = 0;
    REQUIRE(c->command({"BLPOP", "never", "0"}, [&](RedisReply& r) {
      CHECK(r.type == Type::kDisconnected);
      ++called;
      c.reset();
    }));
    REQUIRE(c->command({"PING"}, [&](RedisReply&) { ++called; }));
    c->close();
    CHECK(!c);
    CHECK(called == 1);
    CHECK(ev.disconnected == 0);

    auto d = std::make_unique<RedisClient>(loop.get(), RedisUrl::parse(server.url()), opts());
    d->onDisconnected([&](std::string_view) { d.reset(); });
    REQUIRE(d->connect());
    d->close();
    CHECK(!d);
  }
  SUBCASE("destroying the client in onMessage") {
    TestLoop loop;
    Events ev, pubEv;
    auto sub = std::make_unique<RedisClient>(loop.get(), RedisUrl::parse(server.url()), opts());
    RedisClient pub(loop.get(), RedisUrl::parse(server.url()), opts());
    ev.attach(*sub);
    pubEv.attach(pub);
    connectNow(loop, *sub, ev);
    connectNow(loop, pub, pubEv);
    CHECK(roundTrip(loop, *sub, {"SUBSCRIBE", "x"}).elements.size() == 1);
    int messages = 0;
    sub->onMessage([&](std::string_view, std::string_view, bool) {
      ++messages;
      sub.reset();
    });
    // Two messages in one read: the second must not reach a destroyed client.
    REQUIRE(pub.command({"PUBLISH", "x", "1"}, {}));
    REQUIRE(pub.command({"PUBLISH", "x", "2"}, {}));
    REQUIRE(loop.runUntil([&] { return !sub; }));
    loop.runUntil([] { return false; }, 50ms);
    CHECK(messages == 1);
  }
  SUBCASE("a throwing callback is logged and ignored") {
    TestLoop loop;
    Events ev;
    RedisClient c(loop.get(), RedisUrl::parse(server.url()), opts());
    ev.attach(c);
    connectNow(loop, c, ev);
    std::vector<std::string> lines;
    spry::setLogSink([&](spry::LogLevel, std::string_view line) { lines.emplace_back(line); });
    REQUIRE(c.command({"PING"}, [](RedisReply&) { throw std::runtime_error("boom"); }));
    CHECK(roundTrip(loop, c, {"ECHO", "after"}).str == "after");
    spry::setLogSink({});
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "spry: Redis client: a reply callback threw: boom (ignored)");
    CHECK(ev.disconnected == 0);
  }
}

TEST_CASE("destruction while resolving, connecting or connected releases every handle") {
  RedisServer server;
  SilentListener silent;
  TestLoop loop;
  {
    RedisClient resolving(loop.get(),
                          RedisUrl::parse("redis://localhost:" + std::to_string(server.port())));
    REQUIRE(resolving.connect());
    REQUIRE(resolving.command({"PING"}, [](RedisReply&) { FAIL("dropped uncalled"); }));
  }
  {
    RedisClient connecting(loop.get(),
                           RedisUrl::parse("redis://127.0.0.1:" + std::to_string(silent.port())));
    REQUIRE(connecting.connect());
    loop.runUntil([] { return false; }, 20ms);
  }
  {
    Events ev;
    RedisClient connected(loop.get(), RedisUrl::parse(server.url()), opts());
    ev.attach(connected);
    connectNow(loop, connected, ev);
    REQUIRE(connected.command({"BLPOP", "never", "0"}, [](RedisReply&) { FAIL("dropped"); }));
    loop.runUntil([] { return false; }, 20ms);
  }
  // ~TestLoop checks that the loop closes.
}

TEST_CASE("protocol errors and replies nobody asked for close the connection") {
  struct Case {
    const char* answer;
    const char* reason;
    bool queue;  // a command waits for its reply meanwhile
  };
  for (const Case& k : {Case{"+PONG\r\n!garbage\r\n", "protocol error from 127.0.0.1:", true},
                        Case{"-ERR go away\r\n", "the server refused PING: ERR go away", true},
                        Case{"+PONG\r\n+EXTRA\r\n", "a reply no command asked for", false}}) {
    CAPTURE(k.answer);
    TestLoop loop;
    Events ev;
    FakeServer fake(loop.get(), k.answer);
    RedisClient c(loop.get(), RedisUrl::parse(fake.url()), opts());
    ev.attach(c);
    REQUIRE(c.connect());
    RedisReply lost;
    if (k.queue) REQUIRE(c.command({"GET", "x"}, [&](RedisReply& r) { lost = std::move(r); }));
    REQUIRE(loop.runUntil([&] { return ev.disconnected > 0; }));
    CHECK(ev.reason.find(k.reason) != std::string::npos);
    if (k.queue) CHECK(lost.type == Type::kDisconnected);
  }
}
