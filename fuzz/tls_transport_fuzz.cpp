// Fuzzes a server TlsTransport over a real socketpair on a uv loop, per
// input: a fresh loop, socketpair and transport. The first byte's bits pick
//   bit 0 clear: the input is the client's first flight (random bytes where a
//                ClientHello goes);
//   bit 0 set:   the input follows a completed handshake with an in-process
//                client (and its "hello"), as records;
//   bit 1:       the handshake budget starts spent (the first flight is held
//                and run later, one step per run);
//   bit 2:       the owner pauses reading at every delivery and resumes
//                after the loop turn (kept plaintext comes via runPending);
//   bit 3:       the client's TCP end follows the input;
//   bit 4:       the server ends with closeAfterFlush (else close()).
// The second byte cuts the input into reads of that many bytes (0: one
// read). The loop runs until idle after every read. Checks: no crash, no
// leak (ASan), no plaintext the client did not send, events in order, and
// the loop closes with no handle left.
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <linux/sockios.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tls/tls_context.h"
#include "tls_certs.h"
#include "tls_client.h"
#include "transport/tcp_transport.h"
#include "transport/tls_transport.h"

using namespace spry::detail;

namespace {

std::shared_ptr<const TlsContext> context() {
  static const auto ctx = TlsContext::create(spry_test::serverOptions(), nullptr);
  return ctx;
}

void check(bool ok) {
  if (!ok) std::abort();
}

class Host final : public TlsHost {
 public:
  bool takeHandshakeStep() noexcept override {
    if (budget == 0) return false;
    if (budget > 0) --budget;
    return true;
  }
  void runTlsLater() noexcept override {
    check(!pending);  // asked once until run
    pending = true;
  }
  std::span<char> plainBuffer() noexcept override { return buffer; }
  void onTlsHandshake(bool) noexcept override { ++handshakes; }
  void onTlsFailure(bool, std::string_view reason) noexcept override {
    check(!reason.empty());
    ++failures;
  }

  int budget = -1;
  bool pending = false;
  int handshakes = 0;
  int failures = 0;
  std::vector<char> buffer = std::vector<char>(16 * 1024);
};

class Owner final : public TransportEvents {
 public:
  void onData(char* data, std::size_t size) noexcept override {
    check(closed == 0 && peerEnd == 0 && size > 0 && !paused);
    check(data >= plain.data() && data + size <= plain.data() + plain.size());
    received.append(data, size);
    if (pauseOnData) {
      paused = true;
      transport->pauseReading();
    }
  }
  void onDrained() noexcept override {
    check(closed == 0 && transport->bufferedAmount() == 0);
    ++drained;
  }
  void onPeerEnd() noexcept override {
    check(closed == 0 && peerEnd == 0);
    ++peerEnd;
  }
  void onClosed() noexcept override {
    check(closed == 0 && transport->isClosed());
    ++closed;
  }
  void onReleased() noexcept override {
    check(closed == 1 && released == 0);
    ++released;
  }
  std::string& readBuffer() noexcept override { return buffer_; }
  void onWriteQueued(long delta) noexcept override {
    queued += delta;
    check(queued >= 0 && released == 0);
  }

  TlsTransport* transport = nullptr;
  std::span<char> plain;
  bool pauseOnData = false;
  bool paused = false;
  std::string received;
  int drained = 0, peerEnd = 0, closed = 0, released = 0;
  long queued = 0;

 private:
  std::string buffer_ = std::string(64 * 1024, '\0');
};

class Harness {
 public:
  Harness() {
    check(uv_loop_init(&loop_) == 0);
    int fds[2];
    check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    peer_ = fds[1];
    owner.transport = &tls;
    owner.plain = host.buffer;
    check(tcp.open(&loop_, fds[0]));
  }
  ~Harness() {
    if (!tls.isClosed()) tls.close();
    for (int i = 0; i < 100 && owner.released == 0; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
    check(owner.closed == 1 && owner.released == 1 && owner.queued == 0);
    ::close(peer_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    check(uv_loop_close(&loop_) == 0);
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  // Bytes to the server, as far as the socket takes them (the rest is
  // dropped: inputs are at most 64 KiB, the socket holds more).
  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(peer_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return;  // closed by the server, or full
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  void shutdownWrite() { ::shutdown(peer_, SHUT_WR); }

  // The server's bytes, to the client when there is one.
  bool pull() {
    bool any = false;
    char buf[16 * 1024];
    for (;;) {
      const ssize_t n = ::recv(peer_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n <= 0) {
        if (n == 0) eof = true;
        if (n < 0 && errno == EINTR) continue;
        return any;
      }
      any = true;
      if (client) {
        client->receive(std::string_view(buf, static_cast<std::size_t>(n)));
        send(client->takeOutput());
      }
    }
  }

  int serverUnread() {
    const int fd = tcp.fd();
    int n = 0;
    if (fd < 0 || ::ioctl(fd, SIOCINQ, &n) != 0) return 0;
    return n;
  }

  // Runs the loop, the host's put-off work and the owner's resumes until
  // nothing moves and the server has read everything.
  void settle() {
    for (int i = 0; i < 1000; ++i) {
      bool moved = false;
      if (host.pending) {
        host.pending = false;
        if (host.budget == 0) host.budget = 1;  // one step per run
        if (!tls.isClosed()) tls.runPending();
        moved = true;
      }
      uv_run(&loop_, UV_RUN_NOWAIT);
      if (owner.paused) {
        owner.paused = false;
        tls.resumeReading();
        moved = true;
      }
      moved |= pull();
      if (!moved && !host.pending && (serverUnread() == 0 || tls.isClosed())) return;
    }
  }

  // The input in reads of `step` bytes (0: one).
  void feed(std::string_view input, std::size_t step) {
    if (step == 0) step = input.size();
    while (!input.empty() && !tls.isClosed()) {
      const std::size_t n = std::min(step, input.size());
      send(input.substr(0, n));
      input.remove_prefix(n);
      settle();
    }
  }

  Host host;
  Owner owner;
  TcpTransport tcp{owner};
  TlsTransport tls{tcp, owner, host, context()};
  std::unique_ptr<spry_test::TlsClient> client;
  bool eof = false;

 private:
  uv_loop_t loop_{};
  int peer_ = -1;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const bool afterHandshake = data[0] & 1;
  const bool budgetSpent = data[0] & 2;
  const bool pause = data[0] & 4;
  const bool fin = data[0] & 8;
  const bool closeAfterFlush = data[0] & 16;
  const std::size_t step = data[1];
  const std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  Harness h;
  h.owner.pauseOnData = pause;
  if (budgetSpent) h.host.budget = 0;
  std::string expected;
  if (afterHandshake) {
    h.client = std::make_unique<spry_test::TlsClient>();
    h.client->step();
    h.send(h.client->takeOutput());
    for (int i = 0; i < 32 && !(h.client->isOpen() && h.host.handshakes == 1); ++i) h.settle();
    check(h.client->isOpen() && h.host.handshakes == 1 && h.host.failures == 0);
    h.client->write("hello");
    h.send(h.client->takeOutput());
    h.settle();
    expected = "hello";
    check(h.owner.received == expected);
  }
  h.feed(input, step);
  // Forged records cannot pass the AEAD, and junk never completes a
  // handshake: no plaintext but the client's.
  check(h.owner.received == expected);
  check(h.host.handshakes == (afterHandshake ? 1 : 0));
  check(h.host.failures <= 1);
  if (h.host.failures > 0) check(h.tls.isEnding());

  if (fin) {
    h.shutdownWrite();
    h.settle();
    // During the handshake the end closes; after it, the owner is told (or
    // the junk failed the session first).
    if (!afterHandshake) check(h.owner.closed == 1);
    if (afterHandshake && h.host.failures == 0) check(h.owner.peerEnd == 1 || h.owner.closed == 1);
  }
  if (afterHandshake && !h.tls.isEnding()) {
    // Still open: an answer reaches the client.
    h.tls.write("bye");
    h.tls.flush();
    h.settle();
    check(h.client->plain.find("bye") != std::string::npos);
  }
  if (closeAfterFlush && !h.tls.isEnding()) {
    h.tls.closeAfterFlush(0);
    h.settle();
    check(h.owner.closed == 1);
    if (afterHandshake) check(h.client->closedByPeer());
  }
  check(h.owner.received == expected);
  return 0;
}
