#include "transport/tcp_transport.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <linux/sockios.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace spry::detail;
using namespace std::chrono_literals;

namespace {

// Every wait for an event gives up after this long (a failure, not a
// timing assumption: the events come within milliseconds).
constexpr auto kDeadline = 5s;

// Bytes whose value depends on their position and a seed, so a lost,
// repeated or reordered run of them shows.
std::string pattern(std::size_t size, unsigned seed) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    s[i] = static_cast<char>((i * 131 + seed * 7919 + (i >> 9) * 17) % 251);
  }
  return s;
}

SharedBytes shared(std::string bytes) {
  return std::make_shared<const std::string>(std::move(bytes));
}

// Records what the transport reports.
class Events final : public TransportEvents {
 public:
  void onData(char* data, std::size_t size) noexcept override {
    // Reads land in readBuffer().
    CHECK(data >= buffer_.data());
    CHECK(data + size <= buffer_.data() + buffer_.size());
    CHECK(size > 0);
    CHECK(closed == 0);
    received.append(data, size);
    ++dataCalls;
  }
  void onDrained() noexcept override {
    CHECK(closed == 0);
    if (transport) CHECK(transport->bufferedAmount() == 0);
    ++drained;
    order.push_back("drained");
  }
  void onPeerEnd() noexcept override {
    CHECK(closed == 0);
    ++peerEnd;
    order.push_back("peerEnd");
  }
  void onClosed() noexcept override {
    if (transport) CHECK(transport->isClosed());
    ++closed;
    order.push_back("closed");
  }
  void onReleased() noexcept override {
    CHECK(closed == 1);
    ++released;
    order.push_back("released");
  }
  std::string& readBuffer() noexcept override { return buffer_; }
  void onWriteQueued(long delta) noexcept override {
    CHECK(delta != 0);
    CHECK(released == 0);
    queued += delta;
    CHECK(queued >= 0);
    if (delta > 0) {
      ++queuedUp;
      lastQueuedUp = delta;
    } else {
      ++queuedDown;
    }
  }

  TcpTransport* transport = nullptr;
  std::string received;
  int dataCalls = 0;
  int drained = 0;
  int peerEnd = 0;
  int closed = 0;
  int released = 0;
  long queued = 0;  // the sum of onWriteQueued's deltas
  int queuedUp = 0;
  int queuedDown = 0;
  long lastQueuedUp = 0;
  std::vector<std::string> order;  // drained, peerEnd, closed, released

 private:
  std::string buffer_ = std::string(64 * 1024, '\0');
};

// A uv loop with a listener on 127.0.0.1, one TcpTransport accepted from it,
// and a nonblocking POSIX client socket driven from the same thread.
class Harness {
 public:
  // `clientRcvBuf` > 0 sets the client's SO_RCVBUF (before connecting), so
  // that output the client does not read backs up sooner.
  explicit Harness(int clientRcvBuf = 0) {
    std::signal(SIGPIPE, SIG_IGN);
    events.transport = &transport;
    REQUIRE(uv_loop_init(&loop_) == 0);
    REQUIRE(uv_timer_init(&loop_, &tick_) == 0);
    listenFd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(listenFd_ >= 0);
    sockaddr_in addr{};
    REQUIRE(uv_ip4_addr("127.0.0.1", 0, &addr) == 0);
    REQUIRE(::bind(listenFd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(listenFd_, 8) == 0);
    REQUIRE(uv_poll_init(&loop_, &listener_, listenFd_) == 0);
    listener_.data = this;
    REQUIRE(uv_poll_start(&listener_, UV_READABLE, onAcceptable) == 0);
    sockaddr_in bound{};
    socklen_t len = sizeof(bound);
    REQUIRE(::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&bound), &len) == 0);
    const std::uint16_t port = ntohs(bound.sin_port);
    REQUIRE(port != 0);

    client_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(client_ >= 0);
    if (clientRcvBuf > 0) {
      REQUIRE(::setsockopt(client_, SOL_SOCKET, SO_RCVBUF, &clientRcvBuf, sizeof(clientRcvBuf)) ==
              0);
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    REQUIRE(::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr) == 1);
    const int rc = ::connect(client_, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
    REQUIRE((rc == 0 || errno == EINPROGRESS));
    REQUIRE(runUntil([&] { return accepted_; }));
    REQUIRE(acceptStatus_ == 0);
    int err = -1;
    socklen_t errLen = sizeof(err);
    REQUIRE(::getsockopt(client_, SOL_SOCKET, SO_ERROR, &err, &errLen) == 0);
    REQUIRE(err == 0);
  }

  ~Harness() {
    if (tcpOpen_) {
      if (!transport.isClosed()) transport.close();
      CHECK(runUntil([&] { return events.released > 0; }));
      CHECK(events.closed == 1);
      CHECK(events.released == 1);
      CHECK(events.queued == 0);  // every queued byte was accounted back
      CHECK(events.queuedUp == events.queuedDown);
      CHECK(!events.order.empty());
      if (events.order.size() >= 2) {
        // Nothing follows onClosed but onReleased.
        CHECK(events.order[events.order.size() - 2] == "closed");
        CHECK(events.order.back() == "released");
      }
    }
    if (client_ >= 0) ::close(client_);
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    ::close(listenFd_);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK_MESSAGE(uv_loop_close(&loop_) == 0, "the loop still has open handles");
  }

  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  uv_loop_t* loop() noexcept { return &loop_; }
  int clientFd() const noexcept { return client_; }

  // Runs the loop until `done` (checked before every iteration; it may act
  // as the client) returns true; false after kDeadline.
  bool runUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    // A ticking timer bounds every iteration, so a client action in `done`
    // is noticed even while the loop has nothing to do.
    uv_timer_start(
        &tick_, [](uv_timer_t*) {}, 1, 1);
    bool ok = false;
    for (;;) {
      if (done()) {
        ok = true;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) break;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    uv_timer_stop(&tick_);
    return ok;
  }

  // Runs the loop for `duration` (for checks that something does not
  // happen); `step` runs before every iteration.
  void runFor(std::chrono::milliseconds duration, const std::function<void()>& step = {}) {
    const auto end = std::chrono::steady_clock::now() + duration;
    runUntil([&] {
      if (step) step();
      return std::chrono::steady_clock::now() >= end;
    });
  }

  // ---- the client

  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(client_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      REQUIRE_MESSAGE(n > 0, "client send failed: " << std::strerror(errno));
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  void shutdownWrite() { REQUIRE(::shutdown(client_, SHUT_WR) == 0); }

  // Reads what is there now, at most `max` bytes, into `got`.
  std::size_t pull(std::size_t max = SIZE_MAX) {
    std::size_t total = 0;
    char buf[64 * 1024];
    while (total < max && !eof && readError == 0) {
      const std::size_t want = std::min(sizeof(buf), max - total);
      const ssize_t n = ::recv(client_, buf, want, MSG_DONTWAIT);
      if (n > 0) {
        got.append(buf, static_cast<std::size_t>(n));
        total += static_cast<std::size_t>(n);
      } else if (n == 0) {
        eof = true;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else if (errno != EINTR) {
        readError = errno;
      }
    }
    return total;
  }
  // Runs the loop until the client has read `size` bytes in all.
  bool receive(std::size_t size) {
    const bool ended = runUntil([&] {
      pull();
      return got.size() >= size || eof || readError != 0;
    });
    return ended && got.size() == size;
  }
  // Runs the loop until the client reads the end (EOF, not a reset).
  bool receiveEof() {
    const bool ended = runUntil([&] {
      pull();
      return eof || readError != 0;
    });
    return ended && eof;
  }

  // Bytes the server has received that its loop has not read yet.
  int serverUnread() {
    const int fd = transport.fd();
    if (fd < 0) return -1;
    int n = 0;
    if (::ioctl(fd, SIOCINQ, &n) != 0) return -1;
    return n;
  }
  // Runs the loop until what the client sent has reached the server (its
  // kernel acknowledged it) and the server's loop has read it all.
  bool serverReadAll() {
    return runUntil([&] {
      int unacked = -1;
      return ::ioctl(client_, SIOCOUTQ, &unacked) == 0 && unacked == 0 && serverUnread() == 0;
    });
  }
  // The server's output not yet acknowledged by the client: what the
  // transport holds plus what its kernel holds.
  std::size_t serverPending() {
    std::size_t pending = transport.bufferedAmount();
    const int fd = transport.fd();
    int outq = 0;
    if (fd >= 0 && ::ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0) {
      pending += static_cast<std::size_t>(outq);
    }
    return pending;
  }
  // Runs the loop until the server's output has not moved for `quiet`
  // (the client reads nothing, so it settles once the windows are full).
  bool settle(std::chrono::milliseconds quiet = 30ms) {
    std::size_t last = serverPending();
    auto since = std::chrono::steady_clock::now();
    return runUntil([&] {
      const std::size_t now = serverPending();
      if (now != last) {
        last = now;
        since = std::chrono::steady_clock::now();
      }
      return std::chrono::steady_clock::now() - since >= quiet;
    });
  }

  Events events;
  TcpTransport transport{events};
  std::string got;  // what the client has read
  bool eof = false;
  int readError = 0;

 private:
  static void onAcceptable(uv_poll_t* listener, int status, int) {
    auto* self = static_cast<Harness*>(listener->data);
    if (self->accepted_) return;  // one connection per harness
    self->acceptStatus_ = status;
    if (status != 0) {
      self->accepted_ = true;
      return;
    }
    const int fd = ::accept4(self->listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // spurious wake-up: try again on the next
    self->accepted_ = true;
    self->acceptStatus_ = self->transport.open(&self->loop_, fd) ? 0 : -1;
    self->tcpOpen_ = self->acceptStatus_ == 0;  // the transport's to close from now on
    uv_poll_stop(listener);
  }

  uv_loop_t loop_{};
  uv_timer_t tick_{};
  uv_poll_t listener_{};
  int listenFd_ = -1;
  int client_ = -1;
  bool accepted_ = false;
  bool tcpOpen_ = false;
  int acceptStatus_ = -1;
};

// A large write the client does not read: returns the bytes written.
std::string startLargeWrite(Harness& h, std::size_t size, unsigned seed) {
  std::string data = pattern(size, seed);
  h.transport.write(data);
  CHECK(h.transport.bufferedAmount() == size);
  h.transport.flush();
  return data;
}

}  // namespace

TEST_CASE("data both ways; onDrained after flush") {
  Harness h;
  auto& t = h.transport;
  auto& ev = h.events;

  CHECK_FALSE(t.isWriting());
  CHECK(t.bufferedAmount() == 0);
  t.write("hello ");
  t.write("world");
  CHECK(t.bufferedAmount() == 11);
  CHECK(ev.drained == 0);  // nothing is sent before flush()
  h.runFor(10ms);
  CHECK(ev.drained == 0);
  CHECK(h.got.empty());
  h.pull();
  CHECK(h.got.empty());

  t.flush();
  // The kernel takes it at once: drained without a write request.
  CHECK(ev.drained == 1);
  CHECK(t.bufferedAmount() == 0);
  CHECK_FALSE(t.isWriting());
  CHECK(ev.queuedUp == 0);
  REQUIRE(h.receive(11));
  CHECK(h.got == "hello world");

  h.send("ping");
  REQUIRE(h.runUntil([&] { return ev.received.size() >= 4; }));
  CHECK(ev.received == "ping");
  h.send("pong!");
  REQUIRE(h.runUntil([&] { return ev.received.size() >= 9; }));
  CHECK(ev.received == "pingpong!");

  // A second exchange on the same connection.
  t.write("again");
  t.flush();
  CHECK(ev.drained == 2);
  REQUIRE(h.receive(16));
  CHECK(h.got == "hello worldagain");

  // flush() with nothing queued still reports the drain.
  t.flush();
  CHECK(ev.drained == 3);

  CHECK(ev.peerEnd == 0);
  CHECK(ev.closed == 0);
  CHECK_FALSE(t.isEnding());
  CHECK_FALSE(t.isClosed());
  CHECK(ev.order == std::vector<std::string>{"drained", "drained", "drained"});
}

TEST_CASE("peerAddress") {
  Harness h;
  std::uint16_t port = 0;
  CHECK(h.transport.peerAddress(&port) == "127.0.0.1");
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  REQUIRE(::getsockname(h.clientFd(), reinterpret_cast<sockaddr*>(&local), &len) == 0);
  CHECK(port != 0);
  CHECK(port == ntohs(local.sin_port));
  CHECK(h.transport.peerAddress(nullptr) == "127.0.0.1");
}

TEST_CASE("writeShared keeps byte order with writes around it") {
  Harness h;
  auto& t = h.transport;

  auto big1 = shared(pattern(512, 1));   // the threshold: shared by reference
  auto small = shared(pattern(511, 2));  // below it: copied
  auto big2 = shared(pattern(3000, 3));
  std::string expected;
  auto write = [&](std::string_view s) {
    t.write(s);
    expected.append(s);
  };
  auto writeShared = [&](const SharedBytes& b) {
    t.writeShared(b);
    expected.append(*b);
  };
  write("a");
  writeShared(big1);
  write("b");
  write("c");
  writeShared(small);
  writeShared(big2);
  writeShared(big1);  // the same bytes twice
  write("d");
  // Large ones are held by reference until written, small ones were copied.
  CHECK(big1.use_count() == 3);
  CHECK(big2.use_count() == 2);
  CHECK(small.use_count() == 1);
  CHECK(t.bufferedAmount() == expected.size());
  t.flush();
  CHECK(h.events.drained == 1);
  CHECK(t.bufferedAmount() == 0);
  REQUIRE(h.receive(expected.size()));
  CHECK(h.got == expected);
  // No reference is kept once written.
  CHECK(big1.use_count() == 1);
  CHECK(big2.use_count() == 1);
  CHECK(small.use_count() == 1);

  // Shared bytes first, then owned ones.
  h.got.clear();
  expected.clear();
  writeShared(big2);
  write("tail");
  t.flush();
  CHECK(h.events.drained == 2);
  REQUIRE(h.receive(expected.size()));
  CHECK(h.got == expected);
}

TEST_CASE("many interleaved shared and owned writes through a slow reader keep byte order") {
  Harness h(64 * 1024);
  auto& t = h.transport;
  auto& ev = h.events;
  std::string expected;
  std::vector<SharedBytes> keep;
  // 300 pieces: more chunks than one uv_try_write takes (64), partial writes
  // that end inside shared chunks, consecutive owned writes merged.
  auto queuePieces = [&](unsigned first, unsigned count) {
    for (unsigned k = first; k < first + count; ++k) {
      switch (k % 4) {
        case 0:
        case 2: {
          auto b = shared(pattern(512 + (k * 7919) % 40000, k));
          t.writeShared(b);
          expected.append(*b);
          keep.push_back(b);
          break;
        }
        case 1: {
          auto s = pattern(1 + (k * 31) % 300, k);
          t.write(s);
          expected.append(s);
          break;
        }
        default: {
          auto b = shared(pattern(1 + (k * 13) % 500, k));  // small: copied
          t.writeShared(b);
          expected.append(*b);
        }
      }
    }
  };
  queuePieces(0, 300);
  CHECK(t.bufferedAmount() == expected.size());
  const std::size_t firstPart = expected.size();
  REQUIRE(firstPart > 2 * 1024 * 1024);
  t.flush();
  REQUIRE(t.isWriting());  // the kernel did not take it all
  CHECK(ev.queuedUp == 1);
  CHECK(ev.queued == ev.lastQueuedUp);
  CHECK(static_cast<std::size_t>(ev.queued) == t.bufferedAmount());
  CHECK(t.bufferedAmount() < firstPart);  // some went at once
  CHECK(ev.drained == 0);

  // More while the write is in flight: queued behind it; flush() waits.
  const std::size_t before = t.bufferedAmount();
  queuePieces(300, 100);
  t.write("END");
  expected.append("END");
  CHECK(t.bufferedAmount() == before + (expected.size() - firstPart));
  t.flush();
  CHECK(ev.queuedUp == 1);

  // The client reads in small steps; meanwhile batches keep coming while a
  // write is in flight, so each one meets a nearly full kernel when that
  // write ends, and its first (partial) write stops inside a chunk.
  unsigned next = 400;
  int batches = 0;
  int mark = 0;  // ev.queuedUp when the last batch was queued
  REQUIRE(h.runUntil([&] {
    h.pull(16 * 1024);
    // One batch per write request (or when none is left in flight).
    if (batches < 20 && (!t.isWriting() || ev.queuedUp > mark)) {
      ++batches;
      mark = ev.queuedUp;
      queuePieces(next, 40);
      next += 40;
      t.flush();
    }
    return (batches == 20 && h.got.size() >= expected.size()) || h.eof || h.readError != 0;
  }));
  CHECK(batches == 20);
  REQUIRE(h.got.size() == expected.size());
  CHECK(h.got == expected);
  REQUIRE(h.runUntil([&] { return !t.isWriting(); }));
  CHECK(t.bufferedAmount() == 0);
  CHECK(ev.queued == 0);
  CHECK(ev.queuedUp >= 2);  // later batches needed write requests too
  // Some batches were written out before the next came (a drain each; the
  // events check that nothing was left then), the last one included.
  CHECK(ev.drained >= 1);
  CHECK(ev.order.back() == "drained");
  for (auto& b : keep) CHECK(b.use_count() == 1);
}

TEST_CASE("a large write the client does not read") {
  Harness h(128 * 1024);
  auto& t = h.transport;
  auto& ev = h.events;
  constexpr std::size_t kSize = 8 * 1024 * 1024;
  std::string data = startLargeWrite(h, kSize, 7);

  CHECK(t.isWriting());
  CHECK(t.bufferedAmount() > 0);
  CHECK(t.bufferedAmount() < kSize);
  CHECK(ev.queuedUp == 1);
  CHECK(ev.queued > 0);
  CHECK(static_cast<std::size_t>(ev.queued) == t.bufferedAmount());
  CHECK(ev.drained == 0);

  t.write("END");
  data.append("END");
  CHECK(static_cast<std::size_t>(ev.queued) + 3 == t.bufferedAmount());

  // Nothing moves while the client does not read.
  REQUIRE(h.settle());
  CHECK(t.isWriting());
  CHECK(ev.drained == 0);
  CHECK(h.got.empty());

  REQUIRE(h.receive(data.size()));
  CHECK(h.got == data);
  REQUIRE(h.runUntil([&] { return ev.drained > 0; }));
  CHECK(ev.drained == 1);
  CHECK_FALSE(t.isWriting());
  CHECK(t.bufferedAmount() == 0);
  CHECK(ev.queued == 0);
  CHECK(ev.closed == 0);
}

TEST_CASE("isStalled") {
  Harness h(128 * 1024);
  auto& t = h.transport;
  constexpr std::uint64_t kLimit = 10'000;  // virtual milliseconds: `now` is ours

  CHECK_FALSE(t.isStalled(uv_now(h.loop()) + 10 * kLimit, kLimit));  // nothing written

  std::string data = startLargeWrite(h, 8 * 1024 * 1024, 11);
  // The write began at the loop's current time: no iteration since.
  const std::uint64_t t0 = uv_now(h.loop());
  REQUIRE(t.isWriting());

  // The client reads nothing.
  REQUIRE(h.settle());
  REQUIRE(t.isWriting());
  CHECK_FALSE(t.isStalled(t0, kLimit));
  CHECK_FALSE(t.isStalled(t0 + kLimit / 2, kLimit));
  CHECK_FALSE(t.isStalled(t0 + kLimit - 1, kLimit));
  CHECK(t.isStalled(t0 + kLimit, kLimit));
  CHECK(t.isStalled(t0 + 3 * kLimit, kLimit));
  CHECK_FALSE(t.isStalled(t0 + 3 * kLimit, 0));  // no limit, no stall

  // The client reads: progress, however late `now` is.
  std::uint64_t now = t0 + 10 * kLimit;
  REQUIRE(h.runUntil([&] {
    h.pull(64 * 1024);
    return !t.isStalled(now, kLimit);
  }));
  REQUIRE(t.isWriting());
  // The clock restarted at `now`.
  CHECK_FALSE(t.isStalled(now + kLimit - 1, kLimit));

  // While it goes on reading, `now` may run far past the limit. Every step
  // reads some and moves `now` by a tenth of the limit; without progress
  // the tenth step would be a stall.
  for (int step = 0; step < 30; ++step) {
    now += kLimit / 10;
    h.pull(64 * 1024);
    uv_run(h.loop(), UV_RUN_NOWAIT);
    REQUIRE(t.isWriting());
    CHECK_FALSE(t.isStalled(now, kLimit));
  }

  // It stops reading again: stalled once the limit has passed.
  REQUIRE(h.settle());
  REQUIRE(t.isWriting());
  CHECK(t.isStalled(now + kLimit, kLimit));

  // Drained: never stalled.
  REQUIRE(h.receive(data.size()));
  CHECK(h.got == data);
  REQUIRE(h.runUntil([&] { return h.events.drained > 0; }));
  CHECK_FALSE(t.isWriting());
  CHECK_FALSE(t.isStalled(now + 100 * kLimit, kLimit));
}

TEST_CASE("the peer's FIN") {
  Harness h;
  auto& t = h.transport;
  auto& ev = h.events;

  h.send("last words");
  h.shutdownWrite();
  REQUIRE(h.runUntil([&] { return ev.peerEnd > 0; }));
  CHECK(ev.peerEnd == 1);
  CHECK(ev.received == "last words");  // data first, then the end
  CHECK(ev.closed == 0);
  CHECK_FALSE(t.isClosed());
  CHECK_FALSE(t.isEnding());

  // Writing goes on.
  t.write("reply");
  t.flush();
  CHECK(ev.drained == 1);
  REQUIRE(h.receive(5));
  CHECK(h.got == "reply");
  // resumeReading after the peer's end does nothing.
  t.resumeReading();
  h.runFor(10ms);
  CHECK(ev.peerEnd == 1);

  SUBCASE("closeAfterFlush without linger") {
    t.closeAfterFlush(0);
  }
  SUBCASE("closeAfterFlush with linger: the peer already ended, so no lingering") {
    t.closeAfterFlush(60'000);
  }
  // Nothing was left to send: closed at once.
  CHECK(ev.closed == 1);
  CHECK(t.isClosed());
  CHECK(ev.drained == 1);
  REQUIRE(h.runUntil([&] { return ev.released > 0; }));
  CHECK(h.receiveEof());
  CHECK(h.got == "reply");
  CHECK(ev.order == std::vector<std::string>{"peerEnd", "drained", "closed", "released"});
}

TEST_CASE("closeAfterFlush without linger: every byte, then EOF") {
  Harness h(64 * 1024);
  auto& t = h.transport;
  auto& ev = h.events;
  std::string data = startLargeWrite(h, 8 * 1024 * 1024, 5);
  REQUIRE(t.isWriting());
  t.closeAfterFlush(0);
  CHECK(t.isEnding());
  CHECK_FALSE(t.isClosed());
  CHECK(ev.closed == 0);
  t.closeAfterFlush(0);  // again: no effect
  t.write("+");          // still queued behind the rest (the owner may add a last word)
  data.append("+");

  // What the client sends now is read and dropped.
  h.send("dropped");
  REQUIRE(h.serverReadAll());
  h.runFor(5ms);
  CHECK(ev.received.empty());
  CHECK(ev.dataCalls == 0);
  CHECK(ev.closed == 0);

  REQUIRE(h.receiveEof());
  CHECK(h.got.size() == data.size());
  CHECK(h.got == data);
  REQUIRE(h.runUntil([&] { return ev.released > 0; }));
  h.runFor(10ms);
  CHECK(ev.closed == 1);
  CHECK(ev.released == 1);
  CHECK(ev.drained == 0);  // no onDrained once ending
  CHECK(ev.peerEnd == 0);
  CHECK(ev.received.empty());
  t.close();  // closed already: no second onClosed
  t.closeAfterFlush(0);
  CHECK(ev.closed == 1);
  CHECK(ev.order == std::vector<std::string>{"closed", "released"});
}

TEST_CASE("closeAfterFlush with linger") {
  Harness h(64 * 1024);
  auto& t = h.transport;
  auto& ev = h.events;
  std::string data = startLargeWrite(h, 8 * 1024 * 1024, 9);
  REQUIRE(t.isWriting());

  SUBCASE("the peer's FIN ends it") {
    t.closeAfterFlush(60'000);  // never reached
    // Our FIN comes after every byte.
    REQUIRE(h.receiveEof());
    CHECK(h.got == data);
    // Lingering: the connection stays open for the peer's last bytes,
    // which are read and dropped.
    h.runFor(10ms);
    CHECK(ev.closed == 0);
    CHECK(t.isEnding());
    h.send("late bytes");
    REQUIRE(h.serverReadAll());
    h.runFor(5ms);
    CHECK(ev.closed == 0);
    h.send("more");
    h.shutdownWrite();
    REQUIRE(h.runUntil([&] { return ev.closed > 0; }));
    REQUIRE(h.runUntil([&] { return ev.released > 0; }));
    CHECK(h.readError == 0);  // no reset
  }
  SUBCASE("reading paused by the owner: the linger reads anyway") {
    t.pauseReading();
    t.closeAfterFlush(60'000);
    REQUIRE(h.receiveEof());
    CHECK(h.got == data);
    h.send("late bytes");
    h.shutdownWrite();
    REQUIRE(h.runUntil([&] { return ev.closed > 0; }));
    REQUIRE(h.runUntil([&] { return ev.released > 0; }));
    CHECK(h.readError == 0);
  }
  SUBCASE("the timer ends it") {
    t.closeAfterFlush(50);
    REQUIRE(h.receiveEof());
    CHECK(h.got == data);
    h.send("late bytes");  // no FIN: the timer closes
    REQUIRE(h.runUntil([&] { return ev.closed > 0; }));
    REQUIRE(h.runUntil([&] { return ev.released > 0; }));
  }
  h.runFor(10ms);
  CHECK(ev.closed == 1);
  CHECK(ev.released == 1);
  CHECK(ev.drained == 0);
  CHECK(ev.peerEnd == 0);
  CHECK(ev.received.empty());
  CHECK(ev.dataCalls == 0);
  CHECK(ev.order == std::vector<std::string>{"closed", "released"});
}

TEST_CASE("close() with unsent data") {
  Harness h(64 * 1024);
  auto& t = h.transport;
  auto& ev = h.events;
  std::string data = startLargeWrite(h, 8 * 1024 * 1024, 13);
  REQUIRE(t.isWriting());
  REQUIRE(ev.queued > 0);
  t.close();
  CHECK(ev.closed == 1);  // at once
  CHECK(t.isClosed());
  CHECK(t.isEnding());
  t.close();
  CHECK(ev.closed == 1);
  t.flush();  // no effect once closed
  REQUIRE(h.runUntil([&] { return ev.released > 0; }));
  h.runFor(10ms);
  CHECK(ev.closed == 1);
  CHECK(ev.released == 1);
  CHECK(ev.queued == 0);  // the cancelled write gave its bytes back
  CHECK_FALSE(t.isWriting());
  CHECK(ev.drained == 0);
  CHECK(ev.order == std::vector<std::string>{"closed", "released"});

  // The client gets what the kernel had taken, then the end; never all.
  REQUIRE(h.runUntil([&] {
    h.pull();
    return h.eof || h.readError != 0;
  }));
  CHECK(h.got.size() < data.size());
  CHECK(h.got == std::string_view(data).substr(0, h.got.size()));
}

TEST_CASE("pauseReading stops onData until resumeReading") {
  Harness h;
  auto& t = h.transport;
  auto& ev = h.events;

  h.send("one");
  REQUIRE(h.runUntil([&] { return ev.received.size() >= 3; }));
  CHECK(ev.received == "one");

  t.pauseReading();
  t.pauseReading();  // twice: no effect
  h.send("two");
  h.runFor(50ms);
  CHECK(ev.received == "one");
  CHECK(h.serverUnread() == 3);  // waiting in the kernel

  t.resumeReading();
  t.resumeReading();
  REQUIRE(h.runUntil([&] { return ev.received.size() >= 6; }));
  CHECK(ev.received == "onetwo");

  // The peer's FIN is not noticed while paused either.
  t.pauseReading();
  h.send("three");
  h.shutdownWrite();
  h.runFor(50ms);
  CHECK(ev.received == "onetwo");
  CHECK(ev.peerEnd == 0);
  t.resumeReading();
  REQUIRE(h.runUntil([&] { return ev.peerEnd > 0; }));
  CHECK(ev.received == "onetwothree");
  CHECK(ev.peerEnd == 1);
  CHECK(ev.closed == 0);
}
