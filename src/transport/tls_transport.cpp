#include "transport/tls_transport.h"

#include <uv.h>

#include <algorithm>
#include <limits>

namespace spry::detail {

namespace {
// Plaintext encrypted per step while the socket takes it: enough for full
// 16 KiB records and few calls, small enough that the ciphertext beyond the
// kernel's buffer stays modest.
constexpr std::size_t kBatchBytes = 64 * 1024;
// Reads between two idle sweeps that make a connection busy.
constexpr std::uint8_t kBusyReads = 4;
}  // namespace

TlsTransport::TlsTransport(TcpTransport& tcp, TransportEvents& owner, TlsHost& host,
                           std::shared_ptr<const TlsContext> context)
    : tcp_(tcp), owner_(owner), host_(host), session_(std::move(context), *this) {
  tcp_.setEvents(*this);
}

TlsTransport::~TlsTransport() = default;

// ---------------------------------------------------------------- input

void TlsTransport::onData(char* data, std::size_t size) noexcept {
  if (closed_) return;
  if (session_.isHandshaking()) {
    if (!host_.takeHandshakeStep()) {
      // Over this loop turn's budget: keep the bytes, read no more, and go on
      // after the other sockets' I/O.
      if (!session_.hold(data, size)) {
        failed();
        return;
      }
      deferred_ = true;
      tcp_.pauseReading();
      if (!runPosted_) {
        runPosted_ = true;
        host_.runTlsLater();
      }
      return;
    }
    const std::uint64_t start = uv_hrtime();
    advance(data, size);
    host_.handshakeStepTook(uv_hrtime() - start);
    return;
  } else if (ending_) {
    return;  // closing: input is dropped
  } else if (recentReads_ < kBusyReads && ++recentReads_ == kBusyReads) {
    // Busy: keep the record buffers rather than allocate them for every
    // read and write, until the connection is idle again.
    session_.keepBuffers(true);
  }
  if (!reading_) {
    // The owner paused while TCP read on for a deferred handshake: keep the
    // bytes for resumeReading() and read no more.
    if (!session_.hold(data, size)) {
      failed();
      return;
    }
    tcp_.pauseReading();
    return;
  }
  advance(data, size);
}

void TlsTransport::advance(const char* data, std::size_t size) noexcept {
  const bool wasHandshaking = session_.isHandshaking();
  session_.advance(data, size);
  afterAdvance(wasHandshaking);
}

void TlsTransport::afterAdvance(bool wasHandshaking) noexcept {
  if (closed_) return;
  switch (session_.state()) {
    case TlsState::kFailed:
      failed();
      return;
    case TlsState::kClosed:
      // The peer left during the handshake (a port check, a closed tab).
      tcp_.close();
      return;
    default:
      break;
  }
  if (wasHandshaking && !session_.isHandshaking()) {
    established_ = true;
    host_.onTlsHandshake(session_.isResumed());
    if (closed_) return;
    if (ending_) {
      finishEnding();
      return;
    }
    // What the owner queued during the handshake goes out below.
    if (plainQueued() > 0) wantDrain_ = true;
    // Reading went on for the handshake only.
    if (!reading_) tcp_.pauseReading();
  }
  if (session_.state() == TlsState::kPeerEnded && !peerEndTold_ && !session_.hasInput()) {
    peerEndTold_ = true;
    if (!ending_) owner_.onPeerEnd();
    if (closed_) return;
  }
  // The handshake's answer, tickets, alerts, and plaintext written meanwhile.
  pump();
}

void TlsTransport::failed() noexcept {
  if (closed_) return;
  host_.onTlsFailure(!established_, session_.reason());
  // An alert for the peer may be queued: send it, then close.
  ending_ = true;
  tcp_.closeAfterFlush(0);
}

void TlsTransport::runPending() noexcept {
  runPosted_ = false;
  if (closed_) return;
  if (deferred_) {
    if (!host_.takeHandshakeStep()) {
      runPosted_ = true;
      host_.runTlsLater();
      return;
    }
    deferred_ = false;
    const std::uint64_t start = uv_hrtime();
    advance(nullptr, 0);
    host_.handshakeStepTook(uv_hrtime() - start);
    if (!closed_ && (reading_ || session_.isHandshaking())) tcp_.resumeReading();
    return;
  }
  if (reading_ && session_.hasInput()) advance(nullptr, 0);
}

bool TlsTransport::onPlain(char* data, std::size_t size) noexcept {
  if (closed_ || ending_) return false;
  owner_.onData(data, size);
  return reading_ && !closed_ && !ending_;
}

std::span<char> TlsTransport::plainBuffer() noexcept {
  return host_.plainBuffer();
}

void TlsTransport::onPeerEnd() noexcept {
  if (closed_) return;
  const bool wasHandshaking = session_.isHandshaking();
  session_.receiveEnd();
  afterAdvance(wasHandshaking);
}

void TlsTransport::pauseReading() noexcept {
  reading_ = false;
  if (!deferred_) tcp_.pauseReading();
}

void TlsTransport::resumeReading() noexcept {
  if (reading_ || closed_) return;
  reading_ = true;
  if (!deferred_) tcp_.resumeReading();
  // Plaintext decrypted before the pause waits in the session: no socket
  // event will bring it.
  if (session_.hasInput() && !runPosted_) {
    runPosted_ = true;
    host_.runTlsLater();
  }
}

// ---------------------------------------------------------------- output

void TlsTransport::onCipher(std::string_view bytes) {
  tcp_.write(bytes);
}

bool TlsTransport::encrypt(std::size_t max) noexcept {
  std::size_t done = 0;
  if (out_.size() > outSent_) {
    const std::size_t n = std::min<std::size_t>(out_.size() - outSent_, max);
    if (!session_.write(std::string_view(out_.data() + outSent_, n))) return false;
    consumeOut(n);
    done = n;
  }
  while (queue_ && done < max) {
    auto& chunk = queue_->chunks.front();
    const std::string_view v = chunk.view();
    const std::size_t n = std::min(v.size(), max - done);
    if (!session_.write(v.substr(0, n))) return false;
    chunk.offset += n;
    queue_->bytes -= n;
    done += n;
    if (n == v.size()) {
      queue_->chunks.pop_front();
      if (queue_->chunks.empty()) queue_.reset();
    }
  }
  return true;
}

void TlsTransport::pump() noexcept {
  if (pumping_ || closed_) return;
  pumping_ = true;
  const auto canEncrypt = [this] {
    const TlsState s = session_.state();
    return (s == TlsState::kOpen || s == TlsState::kPeerEnded) && plainQueued() > 0;
  };
  for (;;) {
    if (tcp_.isClosed() || tcp_.isWriting()) break;
    if (canEncrypt() && !encrypt(kBatchBytes)) {
      pumping_ = false;
      failed();
      return;
    }
    // TCP's onDrained from this flush is ignored (pumping_): we look below.
    if (tcp_.bufferedAmount() > 0) tcp_.flush();
    if (closed_ || tcp_.isWriting() || !canEncrypt()) break;
  }
  pumping_ = false;
  if (closed_ || !wantDrain_ || ending_) return;
  if (plainQueued() == 0 && tcp_.bufferedAmount() == 0) {
    wantDrain_ = false;
    if (releaseAfterFlush_) {
      releaseAfterFlush_ = false;
      out_.release();
    }
    owner_.onDrained();
  }
}

void TlsTransport::flush() noexcept {
  if (closed_ || ending_) return;
  wantDrain_ = true;
  pump();
}

void TlsTransport::onDrained() noexcept {
  // From our own flush inside pump(): pump() looks after it. Otherwise the
  // socket was blocked and took everything: send what waited meanwhile.
  if (pumping_) return;
  wantDrain_ = true;
  pump();
}

void TlsTransport::releaseAfterFlush() noexcept {
  releaseAfterFlush_ = true;
  tcp_.releaseAfterFlush();
}

void TlsTransport::closeAfterFlush(std::uint64_t lingerMs) noexcept {
  if (ending_ || closed_) return;
  ending_ = true;
  lingerMs_ = lingerMs;
  if (session_.isHandshaking() && plainQueued() > 0) {
    // An answer waits for the handshake (a 503 over maxConnections): the
    // handshake goes on, then finishEnding() sends it. The connection's
    // deadlines bound the wait.
    return;
  }
  finishEnding();
}

void TlsTransport::finishEnding() noexcept {
  const TlsState s = session_.state();
  if (s == TlsState::kOpen || s == TlsState::kPeerEnded) {
    // All of it now, whether the socket takes it yet or not: TCP holds the
    // ciphertext until then, and close_notify goes last.
    if (plainQueued() > 0 && !encrypt(std::numeric_limits<std::size_t>::max())) {
      host_.onTlsFailure(false, session_.reason());
    } else {
      session_.close();
    }
  }
  tcp_.closeAfterFlush(lingerMs_);
}

void TlsTransport::close() noexcept {
  tcp_.close();
}

bool TlsTransport::isStalled(std::uint64_t now, std::uint64_t limitMs) noexcept {
  return tcp_.isStalled(now, limitMs);
}

// ---------------------------------------------------------------- the socket's life

void TlsTransport::onClosed() noexcept {
  closed_ = true;
  owner_.onClosed();
}

void TlsTransport::onReleased() noexcept {
  owner_.onReleased();  // may destroy this transport
}

std::string& TlsTransport::readBuffer() noexcept {
  return owner_.readBuffer();
}

void TlsTransport::onWriteQueued(long delta) noexcept {
  owner_.onWriteQueued(delta);
}

const std::shared_ptr<const TlsPeerCertificate>& TlsTransport::peerCertificate() noexcept {
  if (!certificateRead_ && !session_.isHandshaking()) {
    certificateRead_ = true;
    try {
      if (auto c = session_.peerCertificate()) {
        peerCertificate_ = std::make_shared<const TlsPeerCertificate>(std::move(*c));
      }
    } catch (...) {
      // Without memory the handler sees no certificate.
    }
  }
  return peerCertificate_;
}

}  // namespace spry::detail
