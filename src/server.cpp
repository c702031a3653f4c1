#include "server.h"

#include <algorithm>
#include <cerrno>
#include <stdexcept>

#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connection.h"
#include "spry/log.h"
#include "tls/tls_context.h"
#include "ws/permessage_deflate.h"

namespace spry::detail {

namespace {
template <class H>
void closeHandle(H*& h) noexcept {
  if (!h) return;
  uv_close(reinterpret_cast<uv_handle_t*>(h),
           [](uv_handle_t* p) { delete reinterpret_cast<H*>(p); });
  h = nullptr;
}

// How long accepting pauses when accept() fails for lack of descriptors; new
// clients wait in the listen backlog meanwhile.
constexpr std::uint64_t kAcceptRetryMs = 100;
constexpr int kBacklog = 511;
// Connections accepted per wake-up of the listening socket: enough to empty
// the backlog (511) in one go, as libuv's own accept loop does; a backlog
// left to fill drops SYNs, and those clients come back seconds later.
constexpr int kAcceptsPerEvent = 1024;

// Deadlines are checked by one timer per loop rather than one per connection
// (a uv_timer_t per socket would cost memory and heap churn): its period is a
// quarter of the shortest timeout, so each fires at most 25% late.
std::uint64_t sweepPeriod(const AppState& app) {
  std::uint64_t shortest = 1000 * 4;
  auto consider = [&](std::chrono::milliseconds d) {
    if (auto v = msOf(d); v && v < shortest) shortest = v;
  };
  consider(app.http.headerTimeout);
  consider(app.http.bodyTimeout);
  consider(app.http.keepAliveTimeout);
  consider(app.http.lingerTimeout);
  consider(app.http.sendTimeout);
  for (const auto& r : app.routes) {
    if (!r.isWebSocket) continue;
    consider(r.wsOptions.idleTimeout);
    consider(r.wsOptions.pingInterval);
    consider(r.wsOptions.pongTimeout);
    consider(r.wsOptions.closeTimeout);
    consider(r.wsOptions.sendTimeout);
    consider(r.wsOptions.messageTimeout);
    if (r.wsOptions.compression.mode == Compression::kDedicated) {
      consider(r.wsOptions.compression.releaseAfter);
    }
  }
  return std::clamp<std::uint64_t>(shortest / 4, 10, 1000);
}
}  // namespace

Server::Server(AppState& app, std::shared_ptr<LoopContext> loop)
    : app_(app), loop_(std::move(loop)), sweepMs_(sweepPeriod(app)) {}

Server::~Server() {
  for (auto& l : listeners_) {
    if (l->fd >= 0) ::close(l->fd);
  }
}

bool Server::resolve(const std::string& host, std::uint16_t port, sockaddr_storage& addr) {
  std::string h = host == "localhost" ? "127.0.0.1" : host;
  addr = {};
  return uv_ip4_addr(h.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) == 0 ||
         uv_ip6_addr(h.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) == 0;
}

namespace {
[[noreturn]] void cannotListen(const std::string& host, std::uint16_t port, int err) {
  throw std::runtime_error("spry: cannot listen on " + host + ":" + std::to_string(port) + ": " +
                           uv_strerror(err));
}

// A socket bound to `addr`; with `reusePort`, other loops of this process can
// bind the same port and the kernel spreads connections among them.
int bindSocket(const sockaddr_storage& addr, bool reusePort) {
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reusePort && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    int err = -errno;
    ::close(fd);
    return err;
  }
  socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    int err = -errno;
    ::close(fd);
    return err;
  }
  return fd;
}
}  // namespace

void Server::probe(const std::string& host, std::uint16_t port) {
  sockaddr_storage addr{};
  if (!resolve(host, port, addr)) {
    throw std::runtime_error("spry: invalid listen address '" + host +
                             "' (expected an IPv4 or IPv6 address, or localhost)");
  }
  if (port == 0) return;
  // Without SO_REUSEPORT this fails when anyone else holds the port, even a
  // process that uses SO_REUSEPORT itself: no silent sharing with strangers.
  int fd = bindSocket(addr, false);
  if (fd < 0) cannotListen(host, port, fd);
  ::close(fd);
}

std::uint16_t Server::bind(const std::string& host, std::uint16_t port, bool reusePort,
                           std::shared_ptr<TlsServerConfig> tls) {
  sockaddr_storage addr{};
  if (!resolve(host, port, addr)) {
    throw std::runtime_error("spry: invalid listen address '" + host +
                             "' (expected an IPv4 or IPv6 address, or localhost)");
  }
  int fd = bindSocket(addr, reusePort);
  if (fd < 0) cannotListen(host, port, fd);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  if (int rc = listenOn(fd, std::move(tls)); rc != 0) cannotListen(host, port, rc);
  const std::uint16_t actual = bound.ss_family == AF_INET6
                                   ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                   : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (!sweep_) startHandles();
  return actual;
}

void Server::startHandles() {
  sweep_ = makeTimer();
  if (!sweep_) throw std::bad_alloc();
  uv_timer_start(
      sweep_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Server*>(t->data);
        std::uint64_t now = uv_now(t->loop);
        // Closing only schedules removal (onClosed), so indices stay valid.
        CompressionPool& pool = self->loop_->compression();
        const std::size_t contexts = pool.dedicatedCount();
        for (std::size_t i = 0; i < self->conns_.size(); ++i) self->conns_[i]->sweep(now);
        // Many dedicated contexts given back at once (a busy crowd gone
        // quiet): their small blocks (stream objects, table nodes) were
        // allocated together while busy and are free together now; glibc
        // returns such pages only when asked.
        if (contexts >= pool.dedicatedCount() + kTrimAfterReleases) malloc_trim(0);
        // The loop's zlib streams go back once unused for a whole period.
        if (now - self->compressionChecked_ >= kCompressionIdleMs) {
          self->compressionChecked_ = now;
          if (!pool.takeUsed()) pool.trim();
        }
      },
      sweepMs_, sweepMs_);
  // The sweep timer alone must not keep an otherwise idle embedded loop alive.
  uv_unref(reinterpret_cast<uv_handle_t*>(sweep_));

  flushIdle_ = new uv_idle_t;
  uv_idle_init(loop_->loop(), flushIdle_);
  flushIdle_->data = this;
  flushCheck_ = new uv_check_t;
  uv_check_init(loop_->loop(), flushCheck_);
  flushCheck_->data = this;
  tlsIdle_ = new uv_idle_t;
  uv_idle_init(loop_->loop(), tlsIdle_);
  tlsIdle_->data = this;
  tlsCheck_ = new uv_check_t;
  uv_check_init(loop_->loop(), tlsCheck_);
  tlsCheck_->data = this;
}

// ---------------------------------------------------------------- TLS turns

void Server::armTlsTurn() noexcept {
  if (tlsArmed_ || !tlsCheck_) return;
  tlsArmed_ = true;
  uv_check_start(tlsCheck_, [](uv_check_t* h) { static_cast<Server*>(h->data)->runTlsTurn(); });
}

bool Server::tlsLater(const std::shared_ptr<Connection>& c) noexcept {
  if (!tlsCheck_ || stopped_ || !c) return false;
  try {
    tlsPending_.push_back(c);
  } catch (...) {
    return false;
  }
  armTlsTurn();
  // Work waits: the next poll must not block.
  uv_idle_start(tlsIdle_, [](uv_idle_t*) {});
  return true;
}

void Server::runTlsTurn() noexcept {
  // After this turn's I/O: a new budget, spent first on the work put off
  // (oldest first), and what is left goes to the next turn's new bytes.
  handshakeNs_ = 0;
  tlsRunning_.swap(tlsPending_);
  for (auto& c : tlsRunning_) c->runTlsPending();
  tlsRunning_.clear();
  if (tlsPending_.empty()) uv_idle_stop(tlsIdle_);
  if (tlsPending_.empty() && handshakeNs_ == 0) {
    tlsArmed_ = false;
    uv_check_stop(tlsCheck_);
  }
}

bool Server::flushLater(const std::shared_ptr<Connection>& c) {
  if (!flushCheck_ || !c) return false;
  toFlush_.push_back(c);
  if (!flushArmed_) {
    flushArmed_ = true;
    uv_idle_start(flushIdle_, [](uv_idle_t* h) { static_cast<Server*>(h->data)->runFlushes(); });
    uv_check_start(flushCheck_, [](uv_check_t* h) { static_cast<Server*>(h->data)->runFlushes(); });
  }
  return true;
}

void Server::runFlushes() noexcept {
  // One pass: what the flushes queue again waits for the next phase, so a
  // drain callback that always sends more cannot hold the loop here.
  flushing_.swap(toFlush_);
  for (auto& c : flushing_) c->flushNow();
  flushing_.clear();
  if (toFlush_.empty() && flushArmed_) {
    flushArmed_ = false;
    uv_idle_stop(flushIdle_);
    uv_check_stop(flushCheck_);
  }
}

void Server::onAcceptable(uv_poll_t* poll, int status, int) noexcept {
  auto* l = static_cast<Listener*>(poll->data);
  if (status < 0) {
    l->server->acceptFailed(status);
    return;
  }
  l->server->accept(*l);
}

void Server::accept(Listener& l) noexcept {
  // Until the backlog is empty (bounded all the same; the poll is
  // level-triggered, so anything left wakes us again).
  for (int i = 0; i < kAcceptsPerEvent && !stopping_ && l.poll; ++i) {
    const int fd = ::accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      acceptFailed(-errno);
      return;
    }
    try {
      auto conn = std::make_shared<Connection>(shared_from_this());
      conn->start(conn, fd, l.tls ? l.tls->current() : nullptr);
    } catch (const std::exception& e) {
      ::close(fd);
      log(LogLevel::kError, std::string("spry: cannot set up a connection: ") + e.what());
    }
  }
}

void Server::acceptFailed(int err) noexcept {
  // Log the first and then every 1000th.
  if (acceptErrors_++ % 1000 == 0) {
    log(LogLevel::kWarn, std::string("spry: accept failed: ") + uv_strerror(err));
  }
  // Out of descriptors (or memory), the pending connections stay in the
  // backlog, and the listening socket stays readable: waiting for it again
  // at once would spin. Pause accepting instead.
  if (err == UV_EMFILE || err == UV_ENFILE || err == UV_ENOBUFS || err == UV_ENOMEM) {
    pauseAccepting();
  }
}

void Server::add(Connection* c) {
  c->serverIndex = static_cast<std::uint32_t>(conns_.size());
  conns_.push_back(c);
  connections_.fetch_add(1, std::memory_order_relaxed);
  app_.openConnections.fetch_add(1, std::memory_order_relaxed);
}

void Server::remove(Connection* c) noexcept {
  std::size_t i = c->serverIndex;
  if (i < conns_.size() && conns_[i] == c) {
    conns_[i] = conns_.back();
    conns_[i]->serverIndex = static_cast<std::uint32_t>(i);
    conns_.pop_back();
    connections_.fetch_sub(1, std::memory_order_relaxed);
    app_.openConnections.fetch_sub(1, std::memory_order_relaxed);
  }
  if (stopping_) maybeFinishStop();
}

uv_timer_t* Server::makeTimer() noexcept {
  auto* t = new (std::nothrow) uv_timer_t;
  if (!t) return nullptr;
  uv_timer_init(loop_->loop(), t);
  t->data = this;
  return t;
}

int Server::listenOn(int fd, std::shared_ptr<TlsServerConfig> tls) noexcept {
  if (::listen(fd, kBacklog) != 0) {
    const int err = -errno;
    ::close(fd);
    return err;
  }
  std::unique_ptr<Listener> l(new (std::nothrow) Listener);
  auto* poll = new (std::nothrow) uv_poll_t;
  if (!l || !poll) {
    delete poll;
    ::close(fd);
    return UV_ENOMEM;
  }
  if (int rc = uv_poll_init(loop_->loop(), poll, fd); rc != 0) {
    delete poll;
    ::close(fd);
    return rc;
  }
  l->server = this;
  l->poll = poll;
  l->fd = fd;
  l->tls = std::move(tls);
  poll->data = l.get();
  const int rc = uv_poll_start(poll, UV_READABLE, onAcceptable);
  try {
    listeners_.push_back(std::move(l));
  } catch (...) {
    closeHandle(poll);
    ::close(fd);
    return UV_ENOMEM;
  }
  return rc;
}

void Server::closeListeners() noexcept {
  for (auto& l : listeners_) {
    closeHandle(l->poll);
    if (l->fd >= 0) {
      ::close(l->fd);
      l->fd = -1;
    }
  }
}

void Server::pauseAccepting() noexcept {
  if (stopping_ || listeners_.empty()) return;
  if (!acceptRetry_ && !(acceptRetry_ = makeTimer())) return;
  for (auto& l : listeners_) {
    if (l->poll) uv_poll_stop(l->poll);
  }
  uv_timer_start(
      acceptRetry_, [](uv_timer_t* t) { static_cast<Server*>(t->data)->resumeAccepting(); },
      kAcceptRetryMs, 0);
}

void Server::resumeAccepting() noexcept {
  if (stopping_) return;
  bool failed = false;
  for (auto& l : listeners_) {
    if (l->poll && uv_poll_start(l->poll, UV_READABLE, onAcceptable) != 0) failed = true;
  }
  if (!failed) return;
  uv_timer_start(
      acceptRetry_, [](uv_timer_t* t) { static_cast<Server*>(t->data)->resumeAccepting(); },
      kAcceptRetryMs, 0);
}

void Server::stop(std::chrono::milliseconds deadline) {
  if (stopping_) return;
  stopping_ = true;
  closeListeners();
  closeHandle(acceptRetry_);
  // Copy: beginShutdown may close (and so remove) connections synchronously.
  auto conns = conns_;
  for (auto* c : conns) c->beginShutdown();
  stopTimer_ = makeTimer();
  if (!stopTimer_) {
    for (auto* c : conns_) c->close();
    maybeFinishStop();
    return;
  }
  uv_timer_start(
      stopTimer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Server*>(t->data);
        auto rest = self->conns_;
        if (!rest.empty()) {
          std::size_t pending = 0;
          for (auto* c : rest) pending += c->transport().bufferedAmount();
          log(LogLevel::kWarn, "spry: shutdown deadline passed: dropping " +
                                   std::to_string(rest.size()) + " connection(s) with " +
                                   std::to_string(pending) + " byte(s) unsent");
        }
        for (auto* c : rest) c->close();
        self->maybeFinishStop();
      },
      msOf(deadline), 0);
  maybeFinishStop();
}

void Server::maybeFinishStop() noexcept {
  if (stopped_ || !conns_.empty()) return;
  stopped_ = true;
  closeHandle(sweep_);
  closeHandle(stopTimer_);
  for (auto& c : toFlush_) c->flushNow();
  toFlush_.clear();
  flushArmed_ = false;
  closeHandle(flushIdle_);
  closeHandle(flushCheck_);
  tlsPending_.clear();
  tlsArmed_ = false;
  closeHandle(tlsIdle_);
  closeHandle(tlsCheck_);
  loop_->shutdown();
  if (onStopped_) {
    auto fn = std::move(onStopped_);
    runGuarded("the stop callback", fn);
  }
}

}  // namespace spry::detail
