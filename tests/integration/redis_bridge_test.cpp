// The Redis bridge across processes: two examples/echo processes (each with
// two loops) bridged through a real redis-server, their /broadcast clients
// talking over loopback. Plus the bridge's stats in-process (App::attach).
// Waits are event-driven (a message read, or Redis's own PUBSUB answers
// polled until a deadline); nothing asserts after a fixed sleep.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness.h"
#include "redis_server.h"
#include "strings.h"
#include "ws_client.h"

using namespace spry::test;
using namespace std::chrono_literals;

namespace {

constexpr auto kRead = 10s;  // generous: ASan on a loaded two-core machine

// examples/echo --port 0 --threads 2 --redis URL, its stdout piped for the
// "listening on" line. It dies with the test.
class EchoProcess {
 public:
  explicit EchoProcess(const std::string& redisUrl) {
    const char* exe = std::getenv("SPRY_ECHO_EXE");
    REQUIRE_MESSAGE(exe != nullptr, "SPRY_ECHO_EXE is not set (meson test sets it)");
    int out[2];
    REQUIRE(::pipe(out) == 0);
    pid_ = spawnChild({exe, "--port", "0", "--threads", "2", "--redis", redisUrl}, out[1], out[0]);
    ::close(out[1]);
    out_ = out[0];
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (line.find('\n') == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      REQUIRE_MESSAGE(left.count() > 0, "echo did not print its listening line");
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[256];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      REQUIRE_MESSAGE(n > 0, "echo exited before listening");
      line.append(buf, static_cast<std::size_t>(n));
    }
    const auto colon = line.rfind(':');
    REQUIRE(colon != std::string::npos);
    port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
  }
  ~EchoProcess() {
    if (pid_ > 0) stop();
    if (out_ >= 0) ::close(out_);
  }

  std::uint16_t port() const noexcept { return port_; }

  // SIGTERM, then the exit status (0: a graceful stop, nothing leaked under ASan).
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::uint16_t port_ = 0;
};

// redis-cli's answer (one value a line), `input` on its stdin (for -x).
std::string redisCli(std::uint16_t port, const std::string& args, std::string_view input = {}) {
  const std::string command = cat("redis-cli -p ", std::to_string(port), " ", args);
  if (!input.empty()) {
    FILE* p = ::popen(cat(command, " >/dev/null").c_str(), "w");
    REQUIRE(p != nullptr);
    REQUIRE(std::fwrite(input.data(), 1, input.size(), p) == input.size());
    ::pclose(p);
    return {};
  }
  FILE* p = ::popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[256];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  return out;
}

// Subscribers Redis counts on `channel`: one per bridged process at most.
int numsub(std::uint16_t port, const std::string& channel) {
  const std::string out = redisCli(port, cat("PUBSUB NUMSUB ", channel));
  const auto nl = out.find('\n');
  if (nl == std::string::npos) return -1;
  try {
    return std::stoi(out.substr(nl + 1));
  } catch (...) {
    return -1;
  }
}

bool numsubBecomes(std::uint16_t port, int n) {
  return waitUntil([&] { return numsub(port, "spry:broadcast") == n; }, 10s);
}

std::unique_ptr<WsClient> openBroadcast(std::uint16_t port) {
  auto c = std::make_unique<WsClient>(port);
  REQUIRE(c->open("/broadcast"));
  return c;
}

void closeClient(std::unique_ptr<WsClient>& c) {
  c->sendClose(1000);
  c->closeHandshake(kRead);
  c.reset();
}

// The next message on `c` is `payload`, of `opcode`.
void expect(WsClient& c, std::string_view payload, std::uint8_t opcode = ws::kText) {
  auto m = c.readMessage(kRead);
  REQUIRE_MESSAGE(m.has_value(), "no message where " << payload << " was expected");
  CHECK(m->payload == payload);
  CHECK(m->opcode == opcode);
}

}  // namespace

TEST_CASE("two processes: delivery both ways, exactly once, in order; own echo dropped") {
  RedisServer redis;
  EchoProcess a(redis.url());
  EchoProcess b(redis.url());
  auto a1 = openBroadcast(a.port());
  auto a2 = openBroadcast(a.port());
  auto b1 = openBroadcast(b.port());
  // One SUBSCRIBE per process, not per socket.
  REQUIRE(numsubBecomes(redis.port(), 2));

  constexpr int kCount = 200;
  auto payload = [](char who, int i) { return cat(std::string(1, who), std::to_string(i)); };
  auto opcode = [](int i) { return i % 3 == 0 ? ws::kBinary : ws::kText; };
  for (int i = 0; i < kCount; ++i) {
    REQUIRE(a1->sendFrame(opcode(i), payload('a', i)));
  }
  for (int i = 0; i < kCount; ++i) expect(*b1, payload('a', i), opcode(i));  // across
  for (int i = 0; i < kCount; ++i) expect(*a2, payload('a', i), opcode(i));  // local, once
  for (int i = 0; i < kCount; ++i) {
    REQUIRE(b1->sendFrame(opcode(i), payload('b', i)));
  }
  for (int i = 0; i < kCount; ++i) expect(*a1, payload('b', i), opcode(i));
  for (int i = 0; i < kCount; ++i) expect(*a2, payload('b', i), opcode(i));
  // Nothing else came in between or after: no echo of a process's own
  // publishes, no second copy. (Redis sends A's echoes before B's messages
  // on A's one subscriber connection, so a copy would have come first.)
  REQUIRE(b1->sendText("end-b"));
  expect(*a1, "end-b");
  expect(*a2, "end-b");
  REQUIRE(a2->sendText("end-a"));
  expect(*a1, "end-a");
  expect(*b1, "end-a");

  closeClient(a1);
  closeClient(a2);
  closeClient(b1);
  CHECK(a.stop() == 0);
  CHECK(b.stop() == 0);
}

TEST_CASE("UNSUBSCRIBE when the last local subscriber leaves, SUBSCRIBE when one comes back") {
  RedisServer redis;
  EchoProcess a(redis.url());
  EchoProcess b(redis.url());
  auto a1 = openBroadcast(a.port());
  auto a2 = openBroadcast(a.port());
  auto b1 = openBroadcast(b.port());
  REQUIRE(numsubBecomes(redis.port(), 2));

  closeClient(a1);
  // A still has a2: still subscribed, as a message from B shows.
  REQUIRE(b1->sendText("still here"));
  expect(*a2, "still here");
  CHECK(numsub(redis.port(), "spry:broadcast") == 2);

  closeClient(a2);
  CHECK(numsubBecomes(redis.port(), 1));
  closeClient(b1);
  CHECK(numsubBecomes(redis.port(), 0));
  CHECK(redisCli(redis.port(), "PUBSUB CHANNELS 'spry:*'").find("spry:") == std::string::npos);

  auto again = openBroadcast(a.port());
  CHECK(numsubBecomes(redis.port(), 1));
  closeClient(again);
  CHECK(numsubBecomes(redis.port(), 0));
  CHECK(a.stop() == 0);
  CHECK(b.stop() == 0);
}

TEST_CASE("Redis killed mid-run and started again: local delivery goes on, the bridge comes back") {
  RedisServer redis;
  EchoProcess a(redis.url());
  EchoProcess b(redis.url());
  auto a1 = openBroadcast(a.port());
  auto a2 = openBroadcast(a.port());
  auto b1 = openBroadcast(b.port());
  REQUIRE(numsubBecomes(redis.port(), 2));
  REQUIRE(a1->sendText("before"));
  expect(*b1, "before");
  expect(*a2, "before");

  redis.kill();
  for (int i = 0; i < 50; ++i) {
    REQUIRE(a1->sendText(cat("down", std::to_string(i))));
    expect(*a2, cat("down", std::to_string(i)));
  }

  REQUIRE(redis.restart());
  const auto restarted = std::chrono::steady_clock::now();
  // Probe until one crosses: each probe reaches a2 at once, and b1 once the
  // bridges have reconnected and subscribed again. Earlier probes are lost
  // (at most once), so b1 gets some suffix of them, in order.
  bool crossed = false;
  int probe = 0;
  while (!crossed && std::chrono::steady_clock::now() - restarted < 10s) {
    const std::string p = cat("probe", std::to_string(probe++));
    REQUIRE(a1->sendText(p));
    expect(*a2, p);
    if (auto m = b1->readMessage(100ms)) {
      CHECK(m->payload.starts_with("probe"));
      crossed = true;
    }
  }
  const auto took = std::chrono::steady_clock::now() - restarted;
  REQUIRE(crossed);
  MESSAGE("cross-process delivery resumed "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
          << " ms after Redis restarted");
  CHECK_MESSAGE(took < 5s,
                "cross-process delivery resumed after "
                    << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                    << " ms");
  // The other way too, and no more probes are due at b1 once it says so.
  REQUIRE(numsubBecomes(redis.port(), 2));
  REQUIRE(b1->sendText("back"));
  expect(*a1, "back");
  expect(*a2, "back");

  closeClient(a1);
  closeClient(a2);
  closeClient(b1);
  CHECK(a.stop() == 0);
  CHECK(b.stop() == 0);
}

TEST_CASE("a foreign PUBLISH from redis-cli: text when UTF-8, binary otherwise") {
  RedisServer redis;
  EchoProcess a(redis.url());
  auto a1 = openBroadcast(a.port());
  REQUIRE(numsubBecomes(redis.port(), 1));

  redisCli(redis.port(), "PUBLISH spry:broadcast hello");
  expect(*a1, "hello", ws::kText);
  const std::string bytes("\x80\x81\xFE\x00z", 5);
  redisCli(redis.port(), "-x PUBLISH spry:broadcast", bytes);  // binary-safe, from stdin
  expect(*a1, bytes, ws::kBinary);

  closeClient(a1);
  CHECK(a.stop() == 0);
}

TEST_CASE("stats: connected, published, received, dropped, reconnects; listen without Redis") {
  // Nothing listens on the bridge's port at first: listen still succeeds.
  spry::App down;
  down.bridge(spry::RedisBridge{cat("redis://127.0.0.1:", std::to_string(freeLoopbackPort())),
                                {.reconnectInitial = 10ms, .reconnectMax = 50ms}});
  down.ws("/t", [](spry::WebSocket ws, spry::Request&) { ws.subscribe("t"); });
  {
    TestServer server(down);
    WsClient c(server.port());
    REQUIRE(c.open("/t"));
    REQUIRE(waitUntil([&] { return down.subscriberCount("t") == 1; }, 5s));
    CHECK(down.stats().bridge.enabled);
    CHECK_FALSE(down.stats().bridge.connected);
    CHECK(down.publish("t", spry::Message::text("local")));  // local pub/sub works
    expect(c, "local");
    CHECK(down.stats().bridge.dropped == 1);
    CHECK(down.stats().bridge.published == 0);
  }

  RedisServer redis;
  spry::App app;
  app.bridge(spry::RedisBridge{redis.url(), {.reconnectInitial = 10ms, .reconnectMax = 100ms}});
  app.ws("/t", [](spry::WebSocket ws, spry::Request&) { ws.subscribe("t"); });
  CHECK(app.stats().bridge.enabled);
  TestServer server(app);
  WsClient c(server.port());
  REQUIRE(c.open("/t"));
  REQUIRE(waitUntil([&] { return app.stats().bridge.connected; }, 10s));
  REQUIRE(waitUntil([&] { return numsub(redis.port(), "spry:t") == 1; }, 10s));

  CHECK(app.publish("t", spry::Message::text("one")));
  expect(c, "one");  // once: the copy back from Redis is ours
  REQUIRE(waitUntil([&] { return app.stats().bridge.published == 1; }, 10s));
  redisCli(redis.port(), "PUBLISH spry:t two");
  expect(c, "two");
  CHECK(waitUntil([&] { return app.stats().bridge.received == 1; }, 10s));

  redis.kill();
  REQUIRE(waitUntil([&] { return !app.stats().bridge.connected; }, 10s));
  CHECK(app.publish("t", spry::Message::text("three")));
  expect(c, "three");
  CHECK(app.stats().bridge.dropped >= 1);
  REQUIRE(redis.restart());
  REQUIRE(waitUntil([&] { return app.stats().bridge.connected; }, 10s));
  CHECK(app.stats().bridge.reconnects == 1);
  REQUIRE(waitUntil([&] { return numsub(redis.port(), "spry:t") == 1; }, 10s));
  redisCli(redis.port(), "PUBLISH spry:t four");
  expect(c, "four");
  CHECK(waitUntil([&] { return app.stats().bridge.received == 2; }, 10s));
  c.sendClose(1000);
  c.closeHandshake(kRead);
}

TEST_CASE("a stalled Redis: publishes past the buffers are dropped and counted, then it goes on") {
  RedisServer redis;
  spry::App app;
  app.bridge(spry::RedisBridge{redis.url(), {.maxBufferBytes = 256u << 10}});
  app.ws("/t", [](spry::WebSocket ws, spry::Request&) { ws.subscribe("t"); });
  TestServer server(app);
  WsClient c(server.port());
  REQUIRE(c.open("/t"));
  REQUIRE(waitUntil([&] { return app.stats().bridge.connected; }, 10s));
  REQUIRE(waitUntil([&] { return numsub(redis.port(), "spry:t") == 1; }, 10s));

  // Redis reads nothing now. 50 MiB of publishes (to a topic nobody here
  // subscribes to, so only the bridge carries them) meet the kernel's
  // socket buffers (a few MiB), then maxBufferBytes (256 KiB) in the outbox
  // and as much in the publishing client: most must be dropped, and nothing
  // may pile up beyond those.
  redis.pause();
  constexpr int kCount = 800;
  const std::string big(64u << 10, 'x');
  for (int i = 0; i < kCount; ++i) CHECK(app.publish("elsewhere", spry::Message::text(big)));
  REQUIRE(waitUntil([&] { return app.stats().bridge.dropped >= kCount / 2; }, 10s));
  CHECK(app.stats().bridge.published == 0);
  MESSAGE(app.stats().bridge.dropped << " of " << kCount
                                     << " publishes of 64 KiB dropped while Redis was stalled");

  // Redis reads again: every publish is accounted for, acknowledged or
  // dropped (the last buffered ones may still be refused), and the bridge
  // works both ways as before.
  redis.resume();
  auto settled = [&] { return app.stats().bridge.published + app.stats().bridge.dropped; };
  CHECK(waitUntil([&] { return settled() == kCount; }, 20s));
  redisCli(redis.port(), "PUBLISH spry:t after");
  expect(c, "after");
  CHECK(app.publish("t", spry::Message::text("mine")));
  expect(c, "mine");
  CHECK(waitUntil([&] { return settled() == kCount + 1; }, 10s));
  c.sendClose(1000);
  c.closeHandshake(kRead);
}
