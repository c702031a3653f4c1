#pragma once
// TLS as a transport: it wraps the connection's TcpTransport, so HTTP, the
// WebSocket session and pub/sub write plaintext into this transport's output
// exactly as they would into TCP's, and never know TLS is on. Ciphertext from
// the socket goes through the TlsSession (OpenSSL behind our own BIO); the
// plaintext comes out into the loop's second buffer and on to the owner.
// Plaintext the owner queues is encrypted into TCP's output only while the
// socket takes it, so bufferedAmount() (backpressure) still counts what waits
// and the ciphertext held is bounded by one batch.
//
// Handshakes are the expensive part (an ECDHE and a signature each): the
// host grants a bounded number of handshake steps per loop turn, and a
// connection over the budget keeps its bytes, stops reading and is run
// again after the turn's other I/O.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tls/tls_session.h"
#include "transport/tcp_transport.h"
#include "transport/transport.h"

namespace spry::detail {

// What the TLS transport needs from its connection and loop. Calls come from
// the loop thread and must not throw.
class TlsHost {
 public:
  // Asks to run one handshake step in this loop turn; false when the turn's
  // budget is spent (the step waits for runPending()).
  virtual bool takeHandshakeStep() noexcept = 0;
  // A step granted by takeHandshakeStep() took `ns` nanoseconds.
  virtual void handshakeStepTook(std::uint64_t ns) noexcept { (void)ns; }
  // Has TlsTransport::runPending() called after this loop turn's I/O.
  virtual void runTlsLater() noexcept = 0;
  // Where plaintext is decrypted to: the loop's second buffer.
  virtual std::span<char> plainBuffer() noexcept = 0;
  // A handshake completed.
  virtual void onTlsHandshake(bool resumed) noexcept = 0;
  // The connection closes for a TLS failure (static text).
  virtual void onTlsFailure(bool inHandshake, std::string_view reason) noexcept = 0;

 protected:
  ~TlsHost() = default;
};

class TlsTransport final : public Transport, private TransportEvents, private TlsSessionEvents {
 public:
  // Layers TLS over `tcp` (not yet opened: open it after this), whose
  // events come here from now on; the owner's events come from here.
  // Throws std::bad_alloc.
  TlsTransport(TcpTransport& tcp, TransportEvents& owner, TlsHost& host,
               std::shared_ptr<const TlsContext> context);
  ~TlsTransport();
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  // For the host's runTlsLater(): a handshake step put off for the budget,
  // or plaintext kept while reading was paused.
  void runPending() noexcept;
  // After the next complete flush, give the output buffers back.
  void releaseAfterFlush() noexcept;
  const TlsSession& session() const noexcept { return session_; }
  TlsHost& host() const noexcept { return host_; }
  // The TLS transport whose TCP events go to `events` (what
  // TcpTransport::events() returns once one is layered on it).
  static TlsTransport* fromEvents(TransportEvents* events) noexcept {
    return static_cast<TlsTransport*>(events);
  }
  // The client certificate (with verifyClient), read once; null without one.
  const std::shared_ptr<const TlsPeerCertificate>& peerCertificate() noexcept;

  void flush() noexcept override;
  bool isWriting() const noexcept override { return tcp_.isWriting(); }
  void pauseReading() noexcept override;
  void resumeReading() noexcept override;
  void closeAfterFlush(std::uint64_t lingerMs) noexcept override;
  void close() noexcept override;
  bool isStalled(std::uint64_t now, std::uint64_t limitMs) noexcept override;
  std::string peerAddress(std::uint16_t* port) const override { return tcp_.peerAddress(port); }
  // The plaintext buffer's, TCP's (the ciphertext's) and OpenSSL's record
  // buffers.
  void releaseIdleMemory() noexcept override {
    Transport::releaseIdleMemory();
    tcp_.releaseIdleMemory();
    if (pumping_) return;
    recentReads_ = 0;
    session_.keepBuffers(false);
    session_.releaseBuffers();
  }

 private:
  // TransportEvents, from TCP: ciphertext and the socket's life.
  void onData(char* data, std::size_t size) noexcept override;
  void onDrained() noexcept override;
  void onPeerEnd() noexcept override;
  void onClosed() noexcept override;
  void onReleased() noexcept override;
  std::string& readBuffer() noexcept override;
  void onWriteQueued(long delta) noexcept override;
  // TlsSessionEvents
  void onCipher(std::string_view bytes) override;
  std::span<char> plainBuffer() noexcept override;
  bool onPlain(char* data, std::size_t size) noexcept override;

  // Runs the session on `data`, then acts on its state.
  void advance(const char* data, std::size_t size) noexcept;
  void afterAdvance(bool wasHandshaking) noexcept;
  void failed() noexcept;
  // Encrypts queued plaintext and sends while the socket takes it.
  void pump() noexcept;
  // Encrypts up to `max` bytes of queued plaintext into TCP's output; false
  // when the session failed.
  bool encrypt(std::size_t max) noexcept;
  // closeAfterFlush once the handshake allows it: the rest of the
  // plaintext, close_notify, then TCP's closeAfterFlush.
  void finishEnding() noexcept;
  std::size_t plainQueued() const noexcept { return bufferedAmount(); }

  TcpTransport& tcp_;
  TransportEvents& owner_;
  TlsHost& host_;
  TlsSession session_;
  std::shared_ptr<const TlsPeerCertificate> peerCertificate_;
  std::uint64_t lingerMs_ = 0;
  std::uint8_t recentReads_ = 0;  // since the last releaseIdleMemory(): busy keeps buffers
  bool established_ = false;      // the handshake completed
  bool reading_ = true;           // the owner wants data
  bool deferred_ = false;         // a handshake step waits for the budget (TCP paused)
  bool runPosted_ = false;        // runTlsLater() asked and not yet run
  bool pumping_ = false;          // in pump(): TCP's onDrained only notes it
  bool wantDrain_ = false;        // the owner flushed: tell it onDrained once all is out
  bool peerEndTold_ = false;      // owner_.onPeerEnd() given
  bool certificateRead_ = false;  // peerCertificate_ is set (or there is none)
  bool releaseAfterFlush_ = false;
};

}  // namespace spry::detail
