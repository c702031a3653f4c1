#include "transport/tcp_transport.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace spry::detail {

namespace {
// Reads per readable event before the loop lets other sockets run (the poll
// is level-triggered: what is left wakes us again).
constexpr int kReadsPerEvent = 4;
// Buffers per sendmsg when shared chunks are queued.
constexpr unsigned kMaxIov = 64;

// What the kernel holds that the peer has not acknowledged.
std::int64_t kernelUnacknowledged(int fd) noexcept {
  int outq = 0;
  return ::ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0 ? outq : 0;
}
}  // namespace

// What a socket needs only while its output waits for the socket to become
// writable, or while it lingers after our FIN: allocated then, so an idle
// socket holds one pointer for both.
struct TcpTransport::Slow {
  // While blocked: the send-timeout state, and what the stats were told.
  std::uint64_t stallSince = 0;  // when the peer last acknowledged bytes (or the block began)
  std::int64_t sent = 0;         // bytes handed to the kernel since the block began
  std::int64_t acked = 0;        // acknowledged() at stallSince
  std::size_t reported = 0;      // bytes reported to onWriteQueued
  // The linger: a timer (once hasTimer) and how long it runs.
  bool hasTimer = false;
  std::uint64_t lingerMs = 0;
  uv_timer_t timer;
};

TcpTransport::Slow* TcpTransport::slow() noexcept {
  if (!slow_) slow_ = new (std::nothrow) Slow;
  return slow_;
}

void TcpTransport::dropSlow() noexcept {
  if (slow_ && !blocked_ && !slow_->hasTimer) {
    delete slow_;
    slow_ = nullptr;
  }
}

TcpTransport::TcpTransport(TransportEvents& events) noexcept : events_(&events) {
  std::memset(&poll_, 0, sizeof(poll_));
}

TcpTransport::~TcpTransport() {
  delete slow_;
}

bool TcpTransport::open(uv_loop_t* loop, int fd) noexcept {
  if (uv_poll_init(loop, &poll_, fd) != 0) {
    ::close(fd);
    closed_ = true;
    return false;
  }
  poll_.data = this;
  open_ = true;
  handlesOpen_ = 1;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  resumeReading();
  return true;
}

int TcpTransport::fd() const noexcept {
  // The poll handle's descriptor, read directly: uv_fileno's checks on every
  // read and write are not free, and the field is part of libuv's ABI.
  return open_ && !closed_ ? poll_.io_watcher.fd : -1;
}

std::string TcpTransport::peerAddress(std::uint16_t* port) const {
  sockaddr_storage peer{};
  socklen_t len = sizeof(peer);
  const int s = fd();
  if (s < 0 || ::getpeername(s, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return {};
  char name[64] = {};
  if (peer.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&peer);
    uv_ip6_name(a, name, sizeof(name));
    if (port) *port = ntohs(a->sin6_port);
  } else {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&peer);
    uv_ip4_name(a, name, sizeof(name));
    if (port) *port = ntohs(a->sin_port);
  }
  return name;
}

// ---------------------------------------------------------------- events

void TcpTransport::watch() noexcept {
  if (closed_) return;
  const std::uint8_t want =
      static_cast<std::uint8_t>((reading_ ? UV_READABLE : 0) | (isWriting() ? UV_WRITABLE : 0));
  if (want == watching_) return;
  watching_ = want;
  if (want == 0) {
    uv_poll_stop(&poll_);
  } else if (uv_poll_start(&poll_, want, onPoll) != 0) {
    close();
  }
}

void TcpTransport::onPoll(uv_poll_t* h, int status, int events) noexcept {
  auto* self = static_cast<TcpTransport*>(h->data);
  if (status < 0) {
    // A socket error (libuv has stopped the handle): the connection is gone.
    self->close();
    return;
  }
  if (events & UV_WRITABLE) self->onWritable();
  if ((events & UV_READABLE) && !self->closed_ && self->reading_) self->onReadable();
}

// ---------------------------------------------------------------- reading

void TcpTransport::onReadable() noexcept {
  const int s = fd();
  for (int i = 0; i < kReadsPerEvent; ++i) {
    std::string& buf = events_->readBuffer();
    const ssize_t n = ::recv(s, buf.data(), buf.size(), 0);
    if (n > 0) {
      if (!ending_) events_->onData(buf.data(), static_cast<std::size_t>(n));
      if (closed_ || !reading_) return;
      if (static_cast<std::size_t>(n) < buf.size()) return;  // the socket is (likely) empty
      continue;
    }
    if (n == 0) {
      peerEnd();
      return;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) close();
    return;
  }
}

void TcpTransport::peerEnd() noexcept {
  peerEnded_ = true;
  pauseReading();
  if (!ending_) {
    events_->onPeerEnd();
  } else if (shutdownSent_ || bufferedAmount() == 0) {
    close();  // the peer's FIN ends the linger, or there is nothing left to send
  }
}

void TcpTransport::pauseReading() noexcept {
  if (!reading_) return;
  reading_ = false;
  watch();
}

void TcpTransport::resumeReading() noexcept {
  if (reading_ || closed_ || peerEnded_ || !open_) return;
  reading_ = true;
  watch();
}

// ---------------------------------------------------------------- writing

void TcpTransport::flush() noexcept {
  if (isWriting() || closed_ || !open_) return;
  if (bufferedAmount() == 0) {
    drained();
    return;
  }
  if (!tryWrite()) return;
  if (bufferedAmount() == 0) {
    drained();
    return;
  }
  block();
}

bool TcpTransport::tryWrite() noexcept {
  const int s = fd();
  ssize_t n;
  if (!queue_) {
    // The common case: one buffer.
    do {
      n = ::send(s, out_.data() + outSent_, out_.size() - outSent_, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
  } else {
    iovec iov[kMaxIov];
    unsigned count = 0;
    if (out_.size() > outSent_) {
      iov[count++] = {out_.data() + outSent_, out_.size() - outSent_};
    }
    for (const auto& c : queue_->chunks) {
      if (count == kMaxIov) break;
      auto v = c.view();
      iov[count++] = {const_cast<char*>(v.data()), v.size()};
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    do {
      n = ::sendmsg(s, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    close();
    return false;
  }
  auto written = static_cast<std::size_t>(n);
  if (isWriting()) slow_->sent += n;
  const std::size_t fromOut = std::min(written, out_.size() - outSent_);
  consumeOut(fromOut);
  written -= fromOut;
  if (queue_) {
    auto& chunks = queue_->chunks;
    while (written > 0 && !chunks.empty()) {
      auto& c = chunks.front();
      const std::size_t left = c.view().size();
      const std::size_t take = std::min(left, written);
      c.offset += take;
      queue_->bytes -= take;
      written -= take;
      if (take == left) chunks.pop_front();
    }
    if (chunks.empty()) queue_.reset();
  }
  return true;
}

void TcpTransport::block() noexcept {
  // The kernel is full: wait until the socket is writable.
  Slow* s = slow();
  if (!s) {
    close();
    return;
  }
  blocked_ = true;
  s->sent = 0;
  s->stallSince = uv_now(poll_.loop);
  s->acked = acknowledged();
  s->reported = bufferedAmount();
  events_->onWriteQueued(static_cast<long>(s->reported));
  watch();
}

void TcpTransport::onWritable() noexcept {
  if (!isWriting()) return;
  if (!tryWrite()) return;
  // Each wait is reported as bytes entering, then leaving, the queue.
  const std::size_t left = bufferedAmount();
  if (left == slow_->reported) return;  // nothing went out
  events_->onWriteQueued(-static_cast<long>(slow_->reported));
  if (left > 0) {
    slow_->reported = left;
    events_->onWriteQueued(static_cast<long>(left));
    return;
  }
  blocked_ = false;
  dropSlow();
  watch();
  if (!closed_) drained();
}

void TcpTransport::drained() noexcept {
  if (releaseAfterFlush_) {
    releaseAfterFlush_ = false;
    out_.release();
  }
  if (!ending_) {
    events_->onDrained();
    return;
  }
  if (!(slow_ && slow_->hasTimer) || peerEnded_) {
    close();
    return;
  }
  shutdownWrite();
}

void TcpTransport::closeAfterFlush(std::uint64_t lingerMs) noexcept {
  if (ending_ || closed_) return;
  ending_ = true;
  if (!open_) {
    close();
    return;
  }
  if (lingerMs > 0 && !peerEnded_) {
    // Without memory for the timer: no linger, the close follows the flush.
    if (Slow* s = slow()) {
      s->lingerMs = lingerMs;
      uv_timer_init(poll_.loop, &s->timer);
      s->timer.data = this;
      s->hasTimer = true;
      ++handlesOpen_;
    }
  }
  flush();
}

void TcpTransport::shutdownWrite() noexcept {
  if (shutdownSent_ || closed_) return;
  shutdownSent_ = true;
  if (::shutdown(fd(), SHUT_WR) != 0) {
    close();
    return;
  }
  uv_timer_start(
      &slow_->timer, [](uv_timer_t* t) { static_cast<TcpTransport*>(t->data)->close(); },
      slow_->lingerMs, 0);
  // Read (and drop) until the peer's FIN.
  resumeReading();
}

void TcpTransport::close() noexcept {
  if (closed_) return;
  const int s = fd();
  closed_ = true;
  reading_ = false;
  if (isWriting()) {
    events_->onWriteQueued(-static_cast<long>(slow_->reported));
    blocked_ = false;
  }
  if (open_) {
    // libuv stops watching the socket in uv_close: it may be closed now,
    // so the peer sees the end at once.
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), onClosedHandle);
    if (s >= 0) ::close(s);
  }
  if (slow_ && slow_->hasTimer) {
    uv_close(reinterpret_cast<uv_handle_t*>(&slow_->timer), onClosedHandle);  // frees slow_
  } else {
    dropSlow();
  }
  events_->onClosed();
}

void TcpTransport::onClosedHandle(uv_handle_t* h) noexcept {
  auto* self = static_cast<TcpTransport*>(h->data);
  if (self->slow_ && h == reinterpret_cast<uv_handle_t*>(&self->slow_->timer)) {
    delete self->slow_;
    self->slow_ = nullptr;
  }
  // Memory of every handle is released before the owner may go.
  if (--self->handlesOpen_ == 0) self->events_->onReleased();
}

// ---------------------------------------------------------------- stalls

std::int64_t TcpTransport::acknowledged() const noexcept {
  // Bytes handed to the kernel minus what it still holds unacknowledged: it
  // only grows, and grows exactly when the peer reads. (Our own buffer may
  // not move for a long time: a full send buffer only wakes the writer once
  // a good part of it has drained.)
  return (isWriting() ? slow_->sent : 0) - kernelUnacknowledged(fd());
}

bool TcpTransport::isStalled(std::uint64_t now, std::uint64_t limitMs) noexcept {
  if (!isWriting() || closed_) return false;
  const std::int64_t acked = acknowledged();
  if (acked > slow_->acked) {
    slow_->acked = acked;  // the peer read some: progress
    slow_->stallSince = now;
    return false;
  }
  return limitMs && now - slow_->stallSince >= limitMs;
}

}  // namespace spry::detail
