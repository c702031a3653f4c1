#include "transport/tls_transport.h"

#include <doctest/doctest.h>

#include <openssl/ssl.h>
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
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tls/tls_context.h"
#include "tls_certs.h"
#include "tls_client.h"

using namespace spry::detail;
using namespace std::chrono_literals;
using spry_test::ClientOptions;
using spry_test::TlsClient;

namespace {

// Every wait for an event gives up after this long (a failure, not a
// timing assumption: the events come within milliseconds).
constexpr auto kDeadline = 5s;
// The host's plaintext buffer (the loop's second buffer in the server).
constexpr std::size_t kPlainBytes = 64 * 1024;
// What TlsTransport encrypts per step (kBatchBytes in tls_transport.cpp),
// plus TLS 1.3's overhead for its four records, rounded up.
constexpr std::size_t kBatchCipherBytes = 64 * 1024 + 1024;

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

std::shared_ptr<const TlsContext> context() {
  static const auto ctx = TlsContext::create(spry_test::serverOptions(), nullptr);
  return ctx;
}

// The handshake budget and the loop's plaintext buffer, as the server's
// connection provides them, under the test's control.
class Host final : public TlsHost {
 public:
  bool takeHandshakeStep() noexcept override {
    ++steps;
    if (budget == 0) {
      ++refused;
      return false;
    }
    if (budget > 0) --budget;
    ++granted;
    return true;
  }
  void handshakeStepTook(std::uint64_t) noexcept override { ++timed; }
  void runTlsLater() noexcept override {
    CHECK_FALSE(pending);  // asked once until run
    ++laterCalls;
    pending = true;
  }
  std::span<char> plainBuffer() noexcept override { return buffer; }
  void onTlsHandshake(bool resumed) noexcept override {
    ++handshakes;
    if (resumed) ++resumedHandshakes;
  }
  void onTlsFailure(bool inHandshake, std::string_view reason) noexcept override {
    ++failures;
    failedInHandshake = inHandshake;
    failureReason = std::string(reason);
  }

  int budget = -1;  // handshake steps granted from now on; -1: no limit
  int steps = 0;    // takeHandshakeStep calls
  int refused = 0;  // of which over the budget
  int granted = 0;  // of which within it
  int timed = 0;    // handshakeStepTook calls
  int laterCalls = 0;
  bool pending = false;  // runTlsLater asked, runPending not yet called
  int handshakes = 0;
  int resumedHandshakes = 0;
  int failures = 0;
  bool failedInHandshake = false;
  std::string failureReason;
  std::vector<char> buffer = std::vector<char>(kPlainBytes);
};

// The owner above the transport (the connection): records what it is told.
class Owner final : public TransportEvents {
 public:
  void onData(char* data, std::size_t size) noexcept override {
    // Plaintext lands in the host's buffer, never in the ciphertext's.
    CHECK(data >= plain.data());
    CHECK(data + size <= plain.data() + plain.size());
    CHECK(size > 0);
    CHECK(closed == 0);
    CHECK(peerEnd == 0);
    received.append(data, size);
    ++dataCalls;
    if (onDataHook) onDataHook();
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
  // Large, so that one read can carry more than one plaintext buffer's worth.
  std::string& readBuffer() noexcept override { return buffer_; }
  void onWriteQueued(long delta) noexcept override {
    CHECK(delta != 0);
    CHECK(released == 0);
    queued += delta;
    CHECK(queued >= 0);
  }

  TlsTransport* transport = nullptr;
  std::span<char> plain;
  std::function<void()> onDataHook;
  std::string received;
  int dataCalls = 0;
  int drained = 0;
  int peerEnd = 0;
  int closed = 0;
  int released = 0;
  long queued = 0;                 // the sum of onWriteQueued's deltas
  std::vector<std::string> order;  // drained, peerEnd, closed, released

 private:
  std::string buffer_ = std::string(256 * 1024, '\0');
};

// A TlsTransport over one end of a socketpair on a uv loop; the other end
// is driven from the same thread by an in-process OpenSSL client (memory
// BIOs): what it writes goes into the socket, what the server writes is read
// back and fed to it.
class Harness {
 public:
  explicit Harness(const ClientOptions& o = {}, int serverSndBuf = 0) : client(o) {
    std::signal(SIGPIPE, SIG_IGN);
    owner.transport = &tls;
    owner.plain = host.buffer;
    REQUIRE(uv_loop_init(&loop_) == 0);
    // A ticking timer bounds every iteration, so a client action in a wait's
    // condition is noticed even while the loop has nothing to do.
    REQUIRE(uv_timer_init(&loop_, &tick_) == 0);
    REQUIRE(uv_timer_start(
                &tick_, [](uv_timer_t*) {}, 1, 1) == 0);
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    if (serverSndBuf > 0) {
      REQUIRE(::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &serverSndBuf, sizeof(serverSndBuf)) ==
              0);
    }
    peer_ = fds[1];
    REQUIRE(tcp.open(&loop_, fds[0]));
    tcpOpen_ = true;
  }

  ~Harness() {
    if (tcpOpen_) {
      if (!tls.isClosed()) tls.close();
      CHECK(runUntil([&] { return owner.released > 0; }));
      CHECK(owner.closed == 1);
      CHECK(owner.released == 1);
      CHECK(owner.queued == 0);           // every queued byte was accounted back
      CHECK(host.timed == host.granted);  // every step granted was timed
      if (owner.order.size() >= 2) {
        // Nothing follows onClosed but onReleased.
        CHECK(owner.order[owner.order.size() - 2] == "closed");
        CHECK(owner.order.back() == "released");
      }
    }
    if (peer_ >= 0) ::close(peer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK_MESSAGE(uv_loop_close(&loop_) == 0, "the loop still has open handles");
  }

  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  uv_loop_t* loop() noexcept { return &loop_; }

  // Runs the loop until `done` (checked before every iteration; it may act
  // as the client) returns true; false after kDeadline.
  bool runUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    for (;;) {
      if (done()) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(&loop_, UV_RUN_ONCE);
    }
  }
  // Runs the loop for `duration`, moving bytes both ways (for checks that
  // something does not happen).
  void runFor(std::chrono::milliseconds duration, bool shuttling = true) {
    const auto end = std::chrono::steady_clock::now() + duration;
    runUntil([&] {
      if (shuttling) shuttle();
      return std::chrono::steady_clock::now() >= end;
    });
  }
  // The host's put-off work, as the server runs it after the turn's I/O.
  void runPending() {
    REQUIRE(host.pending);
    host.pending = false;
    if (!tls.isClosed()) tls.runPending();
  }

  // ---- the client's socket

  // Queues bytes for the server and sends what the socket takes now.
  void send(std::string_view bytes) {
    toSend_.append(bytes);
    trySend();
  }
  void trySend() {
    while (!toSend_.empty()) {
      const ssize_t n = ::send(peer_, toSend_.data(), toSend_.size(), MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
        // The server has closed: what the client says now has no reader.
        sendFailed = true;
        toSend_.clear();
        return;
      }
      REQUIRE_MESSAGE(n > 0, "client send failed: " << std::strerror(errno));
      toSend_.erase(0, static_cast<std::size_t>(n));
    }
  }
  bool allSent() const noexcept { return toSend_.empty(); }
  // One byte per server read: each byte is sent once the last one was read.
  void sendBytewise(std::string_view bytes) {
    REQUIRE(toSend_.empty());
    for (char c : bytes) {
      REQUIRE(::send(peer_, &c, 1, MSG_NOSIGNAL) == 1);
      REQUIRE(runUntil([&] { return serverUnread() <= 0; }));
    }
  }
  void shutdownWrite() {
    REQUIRE(toSend_.empty());
    REQUIRE(::shutdown(peer_, SHUT_WR) == 0);
  }

  // Reads what the server has sent and feeds it to the client.
  std::size_t pull() {
    std::size_t total = 0;
    char buf[64 * 1024];
    while (!eof && readError == 0) {
      const ssize_t n = ::recv(peer_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        const std::string_view got(buf, static_cast<std::size_t>(n));
        cipherIn += static_cast<std::size_t>(n);
        if (keepRaw) raw.append(got);
        client.receive(got);
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
  // Moves bytes both ways once: the server's to the client, the client's to
  // the socket.
  void shuttle() {
    pull();
    const std::string out = client.takeOutput();
    if (!out.empty()) toSend_.append(out);
    trySend();
  }

  // The client's handshake with the transport; `bytewise`: every flight of
  // the client's in one-byte reads.
  bool handshake(bool bytewise = false) {
    client.step();
    const bool done = runUntil([&] {
      pull();
      const std::string out = client.takeOutput();
      if (bytewise) {
        sendBytewise(out);
      } else {
        send(out);
      }
      return (client.isOpen() && host.handshakes > 0) || client.failed() || owner.closed > 0 || eof;
    });
    return done && client.isOpen() && host.handshakes == 1 && host.failures == 0;
  }
  // The client writes `plain` (encrypted, then into the socket).
  void clientWrite(std::string_view plain) {
    client.write(plain);
    send(client.takeOutput());
  }
  // Runs the loop until the owner has received `size` bytes in all.
  bool ownerReceives(std::size_t size) {
    return runUntil([&] {
             shuttle();
             return owner.received.size() >= size || owner.closed > 0;
           }) &&
           owner.received.size() == size;
  }
  // Runs the loop until the client has decrypted `size` bytes in all.
  bool clientReceives(std::size_t size) {
    return runUntil([&] {
             shuttle();
             return client.plain.size() >= size || eof || readError != 0 || client.failed();
           }) &&
           client.plain.size() == size;
  }
  // Runs the loop until the client reads the socket's end (not a reset).
  bool receiveEof() {
    return runUntil([&] {
             shuttle();
             return eof || readError != 0;
           }) &&
           eof;
  }
  // What SSL_read says now: SSL_ERROR_ZERO_RETURN after close_notify.
  int clientReadError() {
    char c;
    std::size_t n = 0;
    const int r = SSL_read_ex(client.ssl(), &c, 1, &n);
    const int e = SSL_get_error(client.ssl(), r);
    ERR_clear_error();
    return e;
  }

  // Bytes in the server's socket that its loop has not read.
  int serverUnread() {
    const int fd = tcp.fd();
    if (fd < 0) return -1;
    int n = 0;
    if (::ioctl(fd, SIOCINQ, &n) != 0) return -1;
    return n;
  }

  Host host;
  Owner owner;
  TcpTransport tcp{owner};
  TlsTransport tls{tcp, owner, host, context()};
  TlsClient client;
  std::size_t cipherIn = 0;  // bytes the client has read from the socket
  bool keepRaw = false;      // keep them in `raw` too
  bool sendFailed = false;   // the client wrote to a closed socket
  std::string raw;
  bool eof = false;
  int readError = 0;

 private:
  uv_loop_t loop_{};
  uv_timer_t tick_{};
  int peer_ = -1;
  bool tcpOpen_ = false;
  std::string toSend_;
};

ClientOptions tls12() {
  ClientOptions o;
  o.maxVersion = TLS1_2_VERSION;
  return o;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("TlsTransport: the handshake, then requests and responses both ways") {
    for (const bool v12 : {false, true}) {
      for (const bool bytewise : {false, true}) {
        CAPTURE(v12);
        CAPTURE(bytewise);
        Harness h(v12 ? tls12() : ClientOptions{});
        auto& t = h.tls;
        auto& ev = h.owner;
        CHECK(t.session().isHandshaking());
        // Written and flushed before the handshake: it waits for it.
        t.write("early ");
        t.flush();
        CHECK(t.bufferedAmount() == 6);
        CHECK(ev.drained == 0);

        REQUIRE(h.handshake(bytewise));
        CHECK(h.host.handshakes == 1);
        CHECK(h.host.resumedHandshakes == 0);
        CHECK(h.host.failures == 0);
        CHECK(h.host.refused == 0);
        CHECK(h.host.laterCalls == 0);
        // One step per flight of the client's (its first byte of each, when
        // bytewise, and every byte after it while the flight is incomplete).
        CHECK(h.host.steps >= 2);
        CHECK(t.session().protocol() == (v12 ? "TLSv1.2" : "TLSv1.3"));
        CHECK(t.session().alpn() == "http/1.1");
        CHECK(t.peerCertificate() == nullptr);

        // The plaintext queued during the handshake went out after it.
        REQUIRE(h.clientReceives(6));
        CHECK(h.client.plain == "early ");
        CHECK(ev.drained == 1);
        CHECK(t.bufferedAmount() == 0);

        const std::string request = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        h.clientWrite(request);
        REQUIRE(h.ownerReceives(request.size()));
        CHECK(ev.received == request);

        t.write("HTTP/1.1 200 OK\r\n");
        t.write("Content-Length: 2\r\n\r\nhi");
        CHECK(t.bufferedAmount() == 40);
        t.flush();
        // The socket took it at once.
        CHECK(ev.drained == 2);
        CHECK(t.bufferedAmount() == 0);
        CHECK_FALSE(t.isWriting());
        REQUIRE(h.clientReceives(6 + 40));
        CHECK(h.client.plain == "early HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");

        // A second exchange on the same connection, larger than one record
        // and than the plaintext buffer.
        const std::string up = pattern(200'000, 1);
        h.clientWrite(up);
        REQUIRE(h.ownerReceives(request.size() + up.size()));
        CHECK(ev.received == request + up);
        const std::string down = pattern(300'000, 2);
        h.client.plain.clear();
        t.write(down);
        t.flush();
        REQUIRE(h.clientReceives(down.size()));
        CHECK(h.client.plain == down);
        REQUIRE(h.runUntil([&] { return ev.drained == 3; }));

        // flush() with nothing queued still reports the drain.
        t.flush();
        CHECK(ev.drained == 4);

        CHECK_FALSE(h.client.failed());
        CHECK(ev.peerEnd == 0);
        CHECK(ev.closed == 0);
        CHECK(h.host.failures == 0);
        CHECK_FALSE(t.isEnding());
        CHECK(t.peerAddress(nullptr) == h.tcp.peerAddress(nullptr));
      }
    }
  }

  TEST_CASE("TlsTransport: records split at every byte boundary") {
    Harness h;
    auto& ev = h.owner;
    REQUIRE(h.handshake());
    // Two records, cut in two at every byte.
    std::string expected;
    const std::string a = pattern(200, 3);
    const std::string b = pattern(90, 4);
    h.client.write(a);
    h.client.write(b);
    const std::string records = h.client.takeOutput();
    h.send(records);
    expected += a + b;
    REQUIRE(h.runUntil([&] { return ev.received.size() >= expected.size(); }));
    REQUIRE(ev.received == expected);
    for (std::size_t cut = 1; cut < records.size(); ++cut) {
      CAPTURE(cut);
      // The same plaintext again under new record keys.
      h.client.write(a);
      h.client.write(b);
      const std::string r = h.client.takeOutput();
      REQUIRE(r.size() == records.size());
      h.send(std::string_view(r).substr(0, cut));
      REQUIRE(h.runUntil([&] { return h.serverUnread() == 0; }));
      h.send(std::string_view(r).substr(cut));
      expected += a + b;
      REQUIRE(h.runUntil([&] { return ev.received.size() >= expected.size(); }));
      REQUIRE(ev.received == expected);
    }
    // A large record, one byte per read.
    const std::string big = pattern(16384, 5);
    h.client.write(big);
    h.sendBytewise(h.client.takeOutput());
    expected += big;
    REQUIRE(ev.received.size() == expected.size());
    CHECK(ev.received == expected);
    CHECK(h.host.failures == 0);
    CHECK(ev.closed == 0);
    CHECK_FALSE(h.tls.session().hasInput());
  }

  TEST_CASE("TlsTransport: plaintext kept while the owner pauses comes via runPending, in order") {
    Harness h;
    auto& t = h.tls;
    auto& ev = h.owner;
    REQUIRE(h.handshake());
    // Tickets (TLS 1.3) are out of the way before the test.
    h.runFor(10ms);
    bool pauseOnData = true;
    ev.onDataHook = [&] {
      if (pauseOnData) t.pauseReading();
    };
    // More than two plaintext buffers in one socket read: the owner pauses
    // at the first, the rest waits in the session.
    const std::string up = pattern(150'000, 6);
    h.client.write(up);
    const std::string records = h.client.takeOutput();
    h.send(records);
    REQUIRE(h.allSent());
    REQUIRE(h.runUntil([&] { return ev.dataCalls > 0; }));
    CHECK(ev.dataCalls == 1);
    CHECK(ev.received.size() == kPlainBytes);
    CHECK(ev.received == up.substr(0, kPlainBytes));
    CHECK(t.session().hasInput());
    CHECK_FALSE(h.host.pending);   // nothing runs while paused
    CHECK(h.serverUnread() == 0);  // the one read took it all

    // Paused: nothing comes, whatever the client sends.
    const std::string tail = "and the tail";
    h.clientWrite(tail);
    h.runFor(20ms);
    CHECK(ev.dataCalls == 1);
    CHECK(h.serverUnread() > 0);  // TCP reads no more either
    CHECK_FALSE(h.host.pending);
    t.pauseReading();  // again: no effect

    // resumeReading asks for a run, which delivers the next buffer.
    t.resumeReading();
    CHECK(h.host.pending);
    CHECK(h.host.laterCalls == 1);
    CHECK(ev.dataCalls == 1);  // not from inside resumeReading
    t.resumeReading();         // again: no second run asked
    CHECK(h.host.laterCalls == 1);
    h.runPending();
    CHECK(ev.dataCalls == 2);
    CHECK(ev.received == up.substr(0, 2 * kPlainBytes));
    CHECK(t.session().hasInput());

    // Resumed, it takes the socket's bytes too, after the kept ones.
    pauseOnData = false;
    t.resumeReading();
    CHECK(h.host.pending);
    CHECK(h.host.laterCalls == 2);
    REQUIRE(h.ownerReceives(up.size() + tail.size()));
    CHECK(ev.received == up + tail);
    // The run that was asked finds nothing left.
    if (h.host.pending) h.runPending();
    CHECK(ev.received == up + tail);
    CHECK_FALSE(t.session().hasInput());
    t.pauseReading();
    t.resumeReading();
    CHECK_FALSE(h.host.pending);  // nothing kept: no run asked
    CHECK(h.host.failures == 0);
    CHECK(ev.peerEnd == 0);
  }

  TEST_CASE("TlsTransport: a handshake over the budget keeps its bytes and pauses TCP") {
    Harness h;
    auto& t = h.tls;
    h.host.budget = 0;
    h.client.step();
    const std::string hello = h.client.takeOutput();
    REQUIRE(hello.size() > 10);
    const std::size_t half = hello.size() / 2;
    h.send(std::string_view(hello).substr(0, half));
    REQUIRE(h.runUntil([&] { return h.host.refused > 0; }));
    CHECK(h.host.refused == 1);
    CHECK(h.host.pending);
    CHECK(h.host.laterCalls == 1);
    CHECK(t.session().hasInput());  // held, not looked at

    // Reading has stopped: the rest of the flight waits in the socket.
    h.send(std::string_view(hello).substr(half));
    h.runFor(20ms);
    CHECK(h.serverUnread() == static_cast<int>(hello.size() - half));
    CHECK(h.host.refused == 1);
    CHECK(h.cipherIn == 0);  // no answer yet

    // Still over the budget on the run: asked again, nothing moves.
    h.runPending();
    CHECK(h.host.refused == 2);
    CHECK(h.host.pending);
    CHECK(h.host.laterCalls == 2);
    h.runFor(20ms);
    CHECK(h.serverUnread() == static_cast<int>(hello.size() - half));
    CHECK(h.cipherIn == 0);

    // An owner pause meanwhile does not hold up the handshake.
    t.pauseReading();
    t.resumeReading();
    CHECK(h.host.laterCalls == 2);

    // Budget again: the held half goes in, reading resumes, the rest follows.
    h.host.budget = -1;
    h.runPending();
    CHECK_FALSE(h.host.pending);
    CHECK_FALSE(t.session().hasInput());
    REQUIRE(h.runUntil([&] {
      h.pull();
      return h.cipherIn > 0;
    }));
    CHECK(h.serverUnread() == 0);
    CHECK(h.host.handshakes == 0);
    REQUIRE(h.handshake());
    CHECK(h.host.handshakes == 1);
    CHECK(h.host.failures == 0);
    CHECK(h.host.laterCalls == 2);

    // Open: the budget is no matter for records.
    h.host.budget = 0;
    const int steps = h.host.steps;
    h.clientWrite("GET / HTTP/1.1\r\n\r\n");
    REQUIRE(h.ownerReceives(18));
    CHECK(h.host.steps == steps);
    CHECK_FALSE(h.host.pending);
  }

  TEST_CASE("TlsTransport: a connection closed while its handshake waits for the budget") {
    Harness h;
    h.host.budget = 0;
    h.client.step();
    h.send(h.client.takeOutput());
    REQUIRE(h.runUntil([&] { return h.host.refused > 0; }));
    REQUIRE(h.host.pending);
    h.tls.close();
    CHECK(h.owner.closed == 1);
    // The server's run finds it closed (as Connection::runTlsPending does).
    h.host.budget = -1;
    h.host.pending = false;
    h.tls.runPending();
    CHECK_FALSE(h.host.pending);
    CHECK(h.host.handshakes == 0);
    CHECK(h.host.failures == 0);
    REQUIRE(h.receiveEof());
    CHECK(h.cipherIn == 0);
  }

  TEST_CASE("TlsTransport: bufferedAmount counts plaintext while the socket is blocked") {
    Harness h;
    auto& t = h.tls;
    auto& ev = h.owner;
    REQUIRE(h.handshake());
    h.runFor(10ms);  // the tickets
    constexpr std::size_t kSize = 4 * 1024 * 1024;
    std::string data = pattern(kSize, 7);
    t.write(data);
    CHECK(t.bufferedAmount() == kSize);
    t.flush();
    // The client reads nothing: the socket blocked with most of it queued.
    REQUIRE(t.isWriting());
    const std::size_t queued = t.bufferedAmount();
    CHECK(queued > 0);
    CHECK(queued < kSize);
    CHECK(queued % (64 * 1024) == 0);  // whole batches went to TCP
    // The ciphertext beyond the kernel's buffer is bounded by one batch.
    CHECK(h.tcp.bufferedAmount() > 0);
    CHECK(h.tcp.bufferedAmount() <= kBatchCipherBytes);
    CHECK(ev.queued > 0);
    CHECK(ev.drained == 0);

    // More while blocked: counted, queued behind.
    const std::size_t cipherIn = h.cipherIn;
    t.write("END");
    data.append("END");
    t.flush();
    CHECK(t.bufferedAmount() == queued + 3);
    h.runFor(30ms, false);
    CHECK(t.bufferedAmount() == queued + 3);
    CHECK(ev.drained == 0);
    CHECK(h.cipherIn == cipherIn);

    REQUIRE(h.clientReceives(data.size()));
    CHECK(h.client.plain == data);
    REQUIRE(h.runUntil([&] { return ev.drained > 0; }));
    h.runFor(10ms);
    CHECK(ev.drained == 1);  // once, for both flushes
    CHECK(t.bufferedAmount() == 0);
    CHECK(h.tcp.bufferedAmount() == 0);
    CHECK_FALSE(t.isWriting());
    CHECK(ev.queued == 0);
    CHECK(ev.closed == 0);
    CHECK(h.host.failures == 0);
  }

  TEST_CASE("TlsTransport: writeShared chunks are encrypted in order with owned writes") {
    Harness h;
    auto& t = h.tls;
    REQUIRE(h.handshake());
    auto big1 = shared(pattern(512, 1));   // the threshold: shared by reference
    auto small = shared(pattern(511, 2));  // below it: copied
    auto big2 = shared(pattern(3000, 3));
    auto huge = shared(pattern(300'000, 4));  // more than a batch
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
    writeShared(huge);
    writeShared(big1);  // the same bytes twice
    write("d");
    writeShared(huge);
    write(pattern(70'000, 5));
    CHECK(big1.use_count() == 3);
    CHECK(big2.use_count() == 2);
    CHECK(huge.use_count() == 3);
    CHECK(small.use_count() == 1);
    CHECK(t.bufferedAmount() == expected.size());
    t.flush();
    REQUIRE(h.clientReceives(expected.size()));
    CHECK(h.client.plain == expected);
    REQUIRE(h.runUntil([&] { return h.owner.drained > 0; }));
    CHECK(h.owner.drained == 1);
    CHECK(t.bufferedAmount() == 0);
    // No reference is kept once encrypted.
    CHECK(big1.use_count() == 1);
    CHECK(big2.use_count() == 1);
    CHECK(huge.use_count() == 1);

    // Shared bytes first, then owned ones.
    h.client.plain.clear();
    expected.clear();
    writeShared(big2);
    write("tail");
    t.flush();
    REQUIRE(h.clientReceives(expected.size()));
    CHECK(h.client.plain == expected);
    CHECK(h.host.failures == 0);
  }

  TEST_CASE("TlsTransport: closeAfterFlush sends the queued plaintext, then close_notify") {
    SUBCASE("the socket takes it at once") {
      Harness h;
      auto& t = h.tls;
      auto& ev = h.owner;
      REQUIRE(h.handshake());
      t.write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
      t.closeAfterFlush(0);
      CHECK(t.isEnding());
      t.closeAfterFlush(0);  // again: no effect
      REQUIRE(h.receiveEof());
      CHECK(h.client.plain == "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
      CHECK(h.client.closedByPeer());
      CHECK(h.clientReadError() == SSL_ERROR_ZERO_RETURN);
      CHECK_FALSE(h.client.failed());
      REQUIRE(h.runUntil([&] { return ev.released > 0; }));
      CHECK(ev.drained == 0);  // no onDrained once ending
      CHECK(ev.peerEnd == 0);
      CHECK(h.host.failures == 0);
      CHECK(ev.order == std::vector<std::string>{"closed", "released"});
    }
    SUBCASE("a blocked socket: all of it, then close_notify") {
      Harness h;
      auto& t = h.tls;
      auto& ev = h.owner;
      REQUIRE(h.handshake());
      h.runFor(10ms);
      const std::string data = pattern(2 * 1024 * 1024, 8);
      t.write(data);
      t.flush();
      REQUIRE(t.isWriting());
      t.closeAfterFlush(0);
      CHECK_FALSE(t.isClosed());
      // What the client sends now is dropped.
      h.clientWrite("ignored");
      REQUIRE(h.receiveEof());
      CHECK(h.client.plain == data);
      CHECK(h.client.closedByPeer());
      CHECK(h.clientReadError() == SSL_ERROR_ZERO_RETURN);
      REQUIRE(h.runUntil([&] { return ev.released > 0; }));
      CHECK(ev.received.empty());
      CHECK(ev.drained == 0);
      CHECK(h.host.failures == 0);
    }
    SUBCASE("with linger: our end first, then the client's") {
      Harness h;
      auto& t = h.tls;
      auto& ev = h.owner;
      REQUIRE(h.handshake());
      t.write("bye");
      t.closeAfterFlush(60'000);
      REQUIRE(h.receiveEof());
      CHECK(h.client.plain == "bye");
      CHECK(h.client.closedByPeer());
      h.runFor(10ms);
      CHECK(ev.closed == 0);  // lingering for the client's end
      h.client.shutdown();
      h.send(h.client.takeOutput());
      h.shutdownWrite();
      REQUIRE(h.runUntil([&] { return ev.released > 0; }));
      CHECK(ev.peerEnd == 0);
      CHECK(ev.received.empty());
      CHECK(h.host.failures == 0);
    }
  }

  TEST_CASE("TlsTransport: the client's close_notify is the owner's onPeerEnd") {
    Harness h;
    auto& t = h.tls;
    auto& ev = h.owner;
    REQUIRE(h.handshake());
    h.client.write("last request");
    h.client.shutdown();
    h.send(h.client.takeOutput());
    REQUIRE(h.runUntil([&] { return ev.peerEnd > 0; }));
    CHECK(ev.received == "last request");  // data first, then the end
    CHECK(ev.order == std::vector<std::string>{"peerEnd"});
    CHECK(t.session().receivedCloseNotify());
    CHECK(t.session().state() == TlsState::kPeerEnded);
    CHECK_FALSE(t.isEnding());

    SUBCASE("then its TCP end: told once") {
      h.shutdownWrite();
      h.runFor(20ms);
      CHECK(ev.peerEnd == 1);
      CHECK(ev.closed == 0);
    }
    SUBCASE("bytes after it are dropped") {
      h.send("\x17\x03\x03\x00\x05hello");
      h.runFor(20ms);
      CHECK(ev.received == "last request");
      CHECK(ev.closed == 0);
    }
    // Writing goes on: the answer, then our close_notify.
    t.write("the answer");
    t.flush();
    CHECK(ev.drained == 1);
    t.closeAfterFlush(0);
    REQUIRE(h.receiveEof());
    CHECK(h.client.plain == "the answer");
    CHECK(h.client.closedByPeer());
    CHECK(ev.peerEnd == 1);
    CHECK(h.host.failures == 0);
  }

  TEST_CASE("TlsTransport: a TCP end without close_notify is an ordinary end") {
    SUBCASE("after a request") {
      Harness h;
      auto& t = h.tls;
      auto& ev = h.owner;
      REQUIRE(h.handshake());
      h.clientWrite("request");
      h.shutdownWrite();
      REQUIRE(h.runUntil([&] { return ev.peerEnd > 0; }));
      CHECK(ev.received == "request");
      CHECK_FALSE(t.session().receivedCloseNotify());
      CHECK(ev.closed == 0);
      // The answer still goes out.
      t.write("answer");
      t.closeAfterFlush(0);
      REQUIRE(h.receiveEof());
      CHECK(h.client.plain == "answer");
      CHECK(h.client.closedByPeer());
      CHECK(ev.peerEnd == 1);
      CHECK(h.host.failures == 0);
    }
    SUBCASE("in the middle of a record") {
      Harness h;
      auto& ev = h.owner;
      REQUIRE(h.handshake());
      h.client.write("cut short");
      const std::string r = h.client.takeOutput();
      h.send(std::string_view(r).substr(0, r.size() - 3));
      h.shutdownWrite();
      REQUIRE(h.runUntil([&] { return ev.peerEnd > 0; }));
      CHECK(ev.received.empty());
      CHECK(ev.closed == 0);
      CHECK(h.host.failures == 0);
    }
    SUBCASE("in the middle of the handshake: closed, no failure") {
      Harness h;
      auto& ev = h.owner;
      h.client.step();
      h.send(h.client.takeOutput());
      REQUIRE(h.runUntil([&] {
        h.pull();
        return h.cipherIn > 0;
      }));
      h.shutdownWrite();
      REQUIRE(h.runUntil([&] { return ev.closed > 0; }));
      CHECK(ev.peerEnd == 0);
      CHECK(h.host.failures == 0);
      CHECK(h.host.handshakes == 0);
      REQUIRE(h.receiveEof());
    }
    SUBCASE("before any byte") {
      Harness h;
      h.shutdownWrite();
      REQUIRE(h.runUntil([&] { return h.owner.closed > 0; }));
      CHECK(h.owner.peerEnd == 0);
      CHECK(h.host.failures == 0);
      CHECK(h.host.steps <= 1);
      REQUIRE(h.receiveEof());
      CHECK(h.cipherIn == 0);
    }
  }

  TEST_CASE("TlsTransport: a TLS 1.2 renegotiation is refused and the connection closes") {
    Harness h(tls12());
    auto& ev = h.owner;
    REQUIRE(h.handshake());
    h.clientWrite("before");
    REQUIRE(h.ownerReceives(6));
    REQUIRE(SSL_renegotiate(h.client.ssl()) == 1);
    SSL_do_handshake(h.client.ssl());
    const std::string hello = h.client.takeOutput();
    REQUIRE_FALSE(hello.empty());
    const int steps = h.host.steps;
    h.send(hello);
    REQUIRE(h.runUntil([&] { return ev.closed > 0; }));
    CHECK(h.host.failures == 1);
    CHECK_FALSE(h.host.failedInHandshake);
    CHECK(h.host.failureReason == "renegotiation refused");
    CHECK(h.host.steps == steps);  // not a handshake step of ours
    CHECK(ev.received == "before");
    CHECK(ev.peerEnd == 0);
    h.keepRaw = true;
    REQUIRE(h.receiveEof());
    // The no_renegotiation alert went out before the end.
    CHECK_FALSE(h.raw.empty());
    CHECK(h.raw[0] == 0x15);
  }

  TEST_CASE("TlsTransport: a garbage first flight fails the handshake and closes") {
    const std::string http = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    std::vector<std::string> flights{http, std::string("\x16\x03\x01\x00\x05hello", 10),
                                     pattern(700, 11)};
    for (std::size_t i = 0; i < flights.size(); ++i) {
      CAPTURE(i);
      Harness h;
      auto& ev = h.owner;
      h.tls.write("never sent");
      h.send(flights[i]);
      REQUIRE(h.runUntil([&] { return ev.closed > 0; }));
      CHECK(h.host.failures == 1);
      CHECK(h.host.failedInHandshake);
      CHECK_FALSE(h.host.failureReason.empty());
      if (i == 0) CHECK(h.host.failureReason == "http request");
      CHECK(h.host.handshakes == 0);
      CHECK(ev.received.empty());
      CHECK(ev.peerEnd == 0);
      CHECK(ev.drained == 0);
      h.keepRaw = true;
      REQUIRE(h.receiveEof());
      // At most an alert: never the plaintext.
      CHECK(h.raw.find("never sent") == std::string::npos);
      if (!h.raw.empty()) CHECK(h.raw[0] == 0x15);
    }
  }

  TEST_CASE("TlsTransport: closeAfterFlush during the handshake") {
    SUBCASE("queued plaintext goes out once the handshake completes") {
      for (const bool v12 : {false, true}) {
        CAPTURE(v12);
        Harness h(v12 ? tls12() : ClientOptions{});
        auto& t = h.tls;
        auto& ev = h.owner;
        const std::string answer = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        t.write(answer);
        t.closeAfterFlush(0);
        CHECK(t.isEnding());
        CHECK_FALSE(t.isClosed());
        REQUIRE(h.handshake());
        REQUIRE(h.receiveEof());
        CHECK(h.client.plain == answer);
        CHECK(h.client.closedByPeer());
        CHECK(h.clientReadError() == SSL_ERROR_ZERO_RETURN);
        REQUIRE(h.runUntil([&] { return ev.released > 0; }));
        CHECK(h.host.handshakes == 1);
        CHECK(h.host.failures == 0);
        CHECK(ev.drained == 0);
        CHECK(ev.received.empty());
        CHECK(ev.order == std::vector<std::string>{"closed", "released"});
      }
    }
    SUBCASE("while the handshake waits for the budget") {
      Harness h;
      auto& t = h.tls;
      h.host.budget = 0;
      h.client.step();
      h.send(h.client.takeOutput());
      REQUIRE(h.runUntil([&] { return h.host.refused > 0; }));
      t.write("answer");
      t.closeAfterFlush(0);
      CHECK_FALSE(t.isClosed());
      h.host.budget = -1;
      h.runPending();
      REQUIRE(h.handshake());
      REQUIRE(h.receiveEof());
      CHECK(h.client.plain == "answer");
      CHECK(h.client.closedByPeer());
      CHECK(h.host.failures == 0);
    }
    SUBCASE("nothing queued: closed at once") {
      Harness h;
      auto& ev = h.owner;
      h.client.step();
      h.send(h.client.takeOutput());
      REQUIRE(h.runUntil([&] {
        h.pull();
        return h.cipherIn > 0;
      }));
      h.tls.closeAfterFlush(0);
      CHECK(ev.closed == 1);
      REQUIRE(h.receiveEof());
      CHECK(h.host.handshakes == 0);
      CHECK(h.host.failures == 0);
    }
  }

  // runPending() resumes TCP for a deferred handshake even while the owner
  // is paused; once the handshake completes reading must stop again, or the
  // paused owner gets plaintext and the socket is read without bound.
  TEST_CASE("TlsTransport: an owner that pauses during a deferred handshake gets no data") {
    Harness h;
    auto& t = h.tls;
    auto& ev = h.owner;
    h.host.budget = 0;
    h.client.step();
    h.send(h.client.takeOutput());
    REQUIRE(h.runUntil([&] { return h.host.refused > 0; }));
    t.pauseReading();
    h.host.budget = -1;
    h.runPending();
    // The handshake goes on (reading resumed for it) and completes.
    REQUIRE(h.handshake());
    // The owner still paused: nothing delivered, and the socket is not read
    // without bound.
    const std::string up = pattern(300'000, 12);
    h.clientWrite(up);
    h.runFor(50ms);
    CHECK(ev.received.empty());
    CHECK(h.serverUnread() > 0);
    t.resumeReading();
    REQUIRE(h.runUntil([&] {
      if (h.host.pending) h.runPending();
      h.shuttle();
      return ev.received.size() >= up.size();
    }));
    CHECK(ev.received == up);
  }
}
