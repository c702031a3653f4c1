#pragma once
// One loop's listening socket and the connections it accepted, with the
// sweep timer that enforces every connection's deadlines.

#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "app_state.h"
#include "loop_context.h"
#include "pubsub.h"

namespace spry::detail {

class Connection;
class TlsServerConfig;

class Server : public std::enable_shared_from_this<Server> {
 public:
  Server(AppState& app, std::shared_ptr<LoopContext> loop);
  ~Server();

  // Binds and listens (before the loop runs, or on its thread); returns the
  // bound port. Each call adds a listener; with `tls`, its connections speak
  // TLS with the config's current context. Throws std::runtime_error naming
  // the address and the cause.
  std::uint16_t bind(const std::string& host, std::uint16_t port, bool reusePort,
                     std::shared_ptr<TlsServerConfig> tls = {});
  // Throws like bind() when the address is invalid or another socket holds the port.
  static void probe(const std::string& host, std::uint16_t port);
  static bool resolve(const std::string& host, std::uint16_t port, sockaddr_storage& addr);
  // Graceful stop (loop thread). `onStopped` runs once every handle of this
  // server is closed, including the loop context's.
  void stop(std::chrono::milliseconds deadline);
  void setOnStopped(std::function<void()> fn) { onStopped_ = std::move(fn); }

  LoopContext& loopContext() noexcept { return *loop_; }
  AppState& app() const noexcept { return app_; }
  std::uint64_t sweepIntervalMs() const noexcept { return sweepMs_; }

  void add(Connection* c);
  void remove(Connection* c) noexcept;
  // Live counters, readable from any thread (App::stats).
  void countWebSocket(int delta) noexcept {
    webSockets_.fetch_add(delta, std::memory_order_relaxed);
  }
  void countWriteBytes(long delta) noexcept {
    writeBytes_.fetch_add(delta, std::memory_order_relaxed);
  }

  // Flushes `c` after the current callback (Connection::flushSoon): the
  // connections queued here are drained in the loop's idle and check phases,
  // one pass per phase, with no allocation once the list has grown. False
  // once the server has stopped (the caller flushes at once).
  bool flushLater(const std::shared_ptr<Connection>& c);

  // TLS handshakes: at most kHandshakeBudgetNs of handshake work per loop
  // turn (and at least one step), so a flood of new connections cannot
  // starve open ones. A step is one flight of a client's; the first costs a
  // key exchange and a signature (~0.1-0.2 ms with P-256). False when this
  // turn's budget is spent.
  bool takeHandshakeStep() noexcept {
    if (handshakeNs_ >= kHandshakeBudgetNs) [[unlikely]] {
      tlsDeferred_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (!tlsArmed_) armTlsTurn();
    return true;
  }
  void handshakeStepTook(std::uint64_t ns) noexcept { handshakeNs_ += ns; }
  // Runs `c`'s put-off TLS work after this turn's I/O (Connection::runTlsLater).
  // False once the server has stopped.
  bool tlsLater(const std::shared_ptr<Connection>& c) noexcept;
  void countTlsHandshake(bool resumed) noexcept {
    tlsHandshakes_.fetch_add(1, std::memory_order_relaxed);
    if (resumed) tlsResumed_.fetch_add(1, std::memory_order_relaxed);
  }
  void countTlsFailure(bool inHandshake) noexcept {
    (inHandshake ? tlsHandshakeFailures_ : tlsErrors_).fetch_add(1, std::memory_order_relaxed);
  }
  struct TlsCounts {
    std::uint64_t handshakes = 0, resumed = 0, handshakeFailures = 0, errors = 0, deferred = 0;
  };
  TlsCounts tlsCounts() const noexcept {
    return {
        tlsHandshakes_.load(std::memory_order_relaxed), tlsResumed_.load(std::memory_order_relaxed),
        tlsHandshakeFailures_.load(std::memory_order_relaxed),
        tlsErrors_.load(std::memory_order_relaxed), tlsDeferred_.load(std::memory_order_relaxed)};
  }
  static constexpr std::uint64_t kHandshakeBudgetNs = 1'000'000;

  TopicTable& topics() noexcept { return topics_; }
  std::size_t connectionCount() const noexcept {
    return connections_.load(std::memory_order_relaxed);
  }
  std::size_t webSocketCount() const noexcept {
    return static_cast<std::size_t>(webSockets_.load(std::memory_order_relaxed));
  }
  std::size_t writeQueueBytes() const noexcept {
    return static_cast<std::size_t>(writeBytes_.load(std::memory_order_relaxed));
  }

 private:
  // One listening socket, watched by `poll`.
  struct Listener {
    Server* server = nullptr;
    uv_poll_t* poll = nullptr;
    int fd = -1;
    std::shared_ptr<TlsServerConfig> tls;  // null: plain
  };

  static void onAcceptable(uv_poll_t* listener, int status, int events) noexcept;
  void accept(Listener& l) noexcept;
  void acceptFailed(int err) noexcept;
  void closeListeners() noexcept;
  // Listens on the bound socket `fd` (taking it) and watches it with a new
  // listener; a libuv error code on failure (the socket is closed).
  int listenOn(int fd, std::shared_ptr<TlsServerConfig> tls) noexcept;
  // The handles every server needs once it listens (sweep, flushes, TLS).
  void startHandles();
  void armTlsTurn() noexcept;
  void runTlsTurn() noexcept;
  // A timer on this loop whose data is this server; null without memory.
  uv_timer_t* makeTimer() noexcept;
  // Out of descriptors: stops watching the listening socket (its backlog
  // waits) and starts again after a pause.
  void pauseAccepting() noexcept;
  void resumeAccepting() noexcept;
  void maybeFinishStop() noexcept;
  void runFlushes() noexcept;

  AppState& app_;
  std::shared_ptr<LoopContext> loop_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  uv_timer_t* sweep_ = nullptr;
  uv_timer_t* stopTimer_ = nullptr;
  uv_timer_t* acceptRetry_ = nullptr;
  // While connections wait in toFlush_: the idle handle keeps the next poll
  // from blocking, the check handle flushes right after the poll's callbacks.
  uv_idle_t* flushIdle_ = nullptr;
  uv_check_t* flushCheck_ = nullptr;
  bool flushArmed_ = false;
  std::vector<std::shared_ptr<Connection>> toFlush_;
  std::vector<std::shared_ptr<Connection>> flushing_;
  // TLS work put off to after a turn's I/O; the check handle also resets the
  // handshake budget each turn while handshakes run, and the idle handle
  // keeps the poll from blocking while work waits.
  uv_check_t* tlsCheck_ = nullptr;
  uv_idle_t* tlsIdle_ = nullptr;
  bool tlsArmed_ = false;
  std::uint64_t handshakeNs_ = 0;  // handshake work in this loop turn
  std::vector<std::shared_ptr<Connection>> tlsPending_;
  std::vector<std::shared_ptr<Connection>> tlsRunning_;
  std::atomic<std::uint64_t> tlsHandshakes_{0};
  std::atomic<std::uint64_t> tlsResumed_{0};
  std::atomic<std::uint64_t> tlsHandshakeFailures_{0};
  std::atomic<std::uint64_t> tlsErrors_{0};
  std::atomic<std::uint64_t> tlsDeferred_{0};
  std::vector<Connection*> conns_;
  TopicTable topics_;
  std::uint64_t sweepMs_ = 250;
  // Loop time the loop's zlib pool was last checked for use (see the sweep).
  std::uint64_t compressionChecked_ = 0;
  static constexpr std::uint64_t kCompressionIdleMs = 10'000;
  // Dedicated deflate contexts given back in one sweep that make it trim the heap.
  static constexpr std::size_t kTrimAfterReleases = 256;
  std::atomic<std::size_t> connections_{0};
  std::atomic<long> webSockets_{0};
  std::atomic<long> writeBytes_{0};  // in libuv write requests, not yet written
  std::uint64_t acceptErrors_ = 0;
  bool stopping_ = false;
  bool stopped_ = false;
  std::function<void()> onStopped_;
};

}  // namespace spry::detail
