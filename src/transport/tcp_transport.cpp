#include "transport/tcp_transport.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <linux/sockios.h>
#include <sys/ioctl.h>

namespace spry::detail {

// What the kernel did not take at once, handed to uv_write; it also carries
// the send-timeout state, which only matters while a write waits.
struct TcpTransport::WriteRequest {
  uv_write_t req;
  TcpTransport* transport;
  OutputBuffer data;
  std::unique_ptr<Queue> queue;  // after data; kept alive until written
  std::size_t bytes = 0;
  // When libuv's queue plus the kernel's unacknowledged bytes last shrank
  // (or the write began), and their size then.
  std::uint64_t stallSince = 0;
  std::size_t stallPending = 0;
};

// The linger after our FIN: a timer, and how long it runs.
struct TcpTransport::Linger {
  uv_timer_t timer;
  std::uint64_t ms = 0;
};

// ---------------------------------------------------------------- TcpTransport

TcpTransport::TcpTransport(TransportEvents& events) noexcept : events_(events) {
  std::memset(&tcp_, 0, sizeof(tcp_));
  tcp_.data = this;
}

TcpTransport::~TcpTransport() = default;

std::string TcpTransport::peerAddress(std::uint16_t* port) const {
  sockaddr_storage peer{};
  int len = sizeof(peer);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return {};
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

// ---------------------------------------------------------------- reading

void TcpTransport::onAlloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept {
  auto& b = static_cast<TcpTransport*>(h->data)->events_.readBuffer();
  buf->base = b.data();
  buf->len = b.size();
}

void TcpTransport::onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) noexcept {
  auto* self = static_cast<TcpTransport*>(s->data);
  if (n > 0) {
    if (!self->ending_) self->events_.onData(buf->base, static_cast<std::size_t>(n));
    return;
  }
  if (n == 0) return;  // EAGAIN
  if (n != UV_EOF) {
    self->close();
    return;
  }
  self->peerEnded_ = true;
  self->pauseReading();
  if (!self->ending_) {
    self->events_.onPeerEnd();
  } else if (self->shutdownSent_ || self->bufferedAmount() == 0) {
    self->close();  // the peer's FIN ends the linger, or there is nothing left to send
  }
}

void TcpTransport::pauseReading() noexcept {
  if (reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
}

void TcpTransport::resumeReading() noexcept {
  if (reading_ || closed_ || peerEnded_) return;
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead) != 0) {
    close();
    return;
  }
  reading_ = true;
}

// ---------------------------------------------------------------- writing

void TcpTransport::flush() noexcept {
  if (write_ || closed_) return;
  if (out_.empty() && !queue_) {
    drained();
    return;
  }
  if (!tryWrite()) return;
  if (out_.empty() && !queue_) {
    drained();
    return;
  }
  startWrite();
}

bool TcpTransport::tryWrite() noexcept {
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (!queue_) {
    // The common case: one buffer, written at once without a request.
    uv_buf_t buf = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    int n = uv_try_write(stream, &buf, 1);
    if (n < 0 && n != UV_EAGAIN) {
      close();
      return false;
    }
    if (n > 0) out_.consume(static_cast<std::size_t>(n));
    return true;
  }
  constexpr std::size_t kMaxBufs = 64;
  uv_buf_t bufs[kMaxBufs];
  unsigned count = 0;
  if (!out_.empty()) bufs[count++] = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
  for (const auto& c : queue_->chunks) {
    if (count == kMaxBufs) break;
    auto v = c.view();
    bufs[count++] = uv_buf_init(const_cast<char*>(v.data()), static_cast<unsigned>(v.size()));
  }
  int n = uv_try_write(stream, bufs, count);
  if (n < 0 && n != UV_EAGAIN) {
    close();
    return false;
  }
  auto written = static_cast<std::size_t>(n > 0 ? n : 0);
  std::size_t fromOut = std::min(written, out_.size());
  out_.consume(fromOut);
  written -= fromOut;
  auto& chunks = queue_->chunks;
  while (written > 0 && !chunks.empty()) {
    auto& c = chunks.front();
    std::size_t left = c.view().size();
    std::size_t take = std::min(left, written);
    c.offset += take;
    queue_->bytes -= take;
    written -= take;
    if (take == left) chunks.pop_front();
  }
  if (chunks.empty()) queue_.reset();
  return true;
}

void TcpTransport::startWrite() noexcept {
  // The kernel is full: hand the rest to libuv, which writes it when it can.
  auto* w = new (std::nothrow) WriteRequest;
  if (!w) {
    close();
    return;
  }
  w->transport = this;
  w->data.swap(out_);
  w->queue = std::move(queue_);
  std::vector<uv_buf_t> bufs;
  try {
    bufs.reserve(1 + (w->queue ? w->queue->chunks.size() : 0));
  } catch (...) {
    delete w;
    close();
    return;
  }
  if (!w->data.empty()) {
    bufs.push_back(uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size())));
  }
  w->bytes = w->data.size();
  if (w->queue) {
    for (const auto& c : w->queue->chunks) {
      auto v = c.view();
      bufs.push_back(uv_buf_init(const_cast<char*>(v.data()), static_cast<unsigned>(v.size())));
    }
    w->bytes += w->queue->bytes;
  }
  w->req.data = w;
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), bufs.data(),
                    static_cast<unsigned>(bufs.size()), onWriteDone);
  if (rc != 0) {
    delete w;
    close();
    return;
  }
  write_ = w;
  inFlight_ = w->bytes;
  w->stallSince = uv_now(tcp_.loop);
  w->stallPending = unacknowledgedBytes();
  events_.onWriteQueued(static_cast<long>(w->bytes));
}

void TcpTransport::onWriteDone(uv_write_t* req, int status) noexcept {
  std::unique_ptr<WriteRequest> w(static_cast<WriteRequest*>(req->data));
  TcpTransport* self = w->transport;
  self->write_ = nullptr;
  self->inFlight_ = 0;
  self->events_.onWriteQueued(-static_cast<long>(w->bytes));
  if (self->closed_) return;
  if (status < 0) {
    self->close();
    return;
  }
  self->flush();
}

void TcpTransport::drained() noexcept {
  if (releaseAfterFlush_) {
    releaseAfterFlush_ = false;
    out_.release();
  }
  if (!ending_) {
    events_.onDrained();
    return;
  }
  if (!linger_ || peerEnded_) {
    close();
    return;
  }
  shutdownWrite();
}

void TcpTransport::closeAfterFlush(std::uint64_t lingerMs) noexcept {
  if (ending_ || closed_) return;
  ending_ = true;
  if (lingerMs > 0 && !peerEnded_) {
    // Without memory for the timer: no linger, the close follows the flush.
    linger_ = new (std::nothrow) Linger;
    if (linger_) {
      linger_->ms = lingerMs;
      uv_timer_init(tcp_.loop, &linger_->timer);
      linger_->timer.data = this;
      ++handlesOpen_;
    }
  }
  flush();
}

void TcpTransport::shutdownWrite() noexcept {
  if (shutdownSent_ || closed_) return;
  shutdownSent_ = true;
  auto* req = new (std::nothrow) uv_shutdown_t;
  if (!req || uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&tcp_),
                          [](uv_shutdown_t* r, int) { delete r; }) != 0) {
    delete req;
    close();
    return;
  }
  uv_timer_start(
      &linger_->timer, [](uv_timer_t* t) { static_cast<TcpTransport*>(t->data)->close(); },
      linger_->ms, 0);
  // Read (and drop) until the peer's FIN.
  resumeReading();
}

void TcpTransport::close() noexcept {
  if (closed_) return;
  closed_ = true;
  pauseReading();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onClosedHandle);
  if (linger_) uv_close(reinterpret_cast<uv_handle_t*>(&linger_->timer), onClosedHandle);
  events_.onClosed();
}

void TcpTransport::onClosedHandle(uv_handle_t* h) noexcept {
  auto* self = static_cast<TcpTransport*>(h->data);
  if (self->linger_ && h == reinterpret_cast<uv_handle_t*>(&self->linger_->timer)) {
    delete self->linger_;
    self->linger_ = nullptr;
  }
  // Memory of every handle is released before the owner may go.
  if (--self->handlesOpen_ == 0) self->events_.onReleased();
}

// ---------------------------------------------------------------- stalls and memory

std::size_t TcpTransport::unacknowledgedBytes() noexcept {
  // libuv's queue, plus what the kernel holds that the peer has not
  // acknowledged: while a write is in flight nothing is added to the sum, so
  // any decrease means the peer read something. (libuv's queue alone may not
  // move for a long time: a full send buffer only wakes the writer when half
  // of it has drained.)
  std::size_t pending = tcp_.write_queue_size;
  uv_os_fd_t fd;
  int outq = 0;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) == 0 &&
      ::ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0) {
    pending += static_cast<std::size_t>(outq);
  }
  return pending;
}

bool TcpTransport::isStalled(std::uint64_t now, std::uint64_t limitMs) noexcept {
  if (!write_) return false;
  const std::size_t pending = unacknowledgedBytes();
  if (pending < write_->stallPending) {
    write_->stallPending = pending;  // the peer read some: progress
    write_->stallSince = now;
    return false;
  }
  return limitMs && now - write_->stallSince >= limitMs;
}

}  // namespace spry::detail
