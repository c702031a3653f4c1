#pragma once
// One server connection's TLS, with no socket: ciphertext is fed in as it
// arrives, plaintext comes out into the owner's buffer, and what must be
// sent goes to the owner's output as it is made. OpenSSL sees a BIO of ours
// that reads from the bytes of the current call and writes straight into the
// owner's output: no BIO buffers, and with SSL_MODE_RELEASE_BUFFERS no
// record buffers while idle. Input the session cannot take now (a handshake
// deferred by the owner, plaintext the owner paused) is copied and kept until
// the next advance().

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "spry/tls.h"
#include "tls/tls_context.h"

struct ssl_st;

namespace spry::detail {

// What a session tells its owner (the TLS transport). Every call comes from
// inside a TlsSession call, on the owner's thread.
class TlsSessionEvents {
 public:
  // Ciphertext to send, in order: the handshake, records, alerts,
  // close_notify. Append it to the socket's output. May throw
  // std::bad_alloc (the session fails).
  virtual void onCipher(std::string_view bytes) = 0;
  // Where decrypted bytes land: the loop's buffer, never one that holds the
  // ciphertext being fed.
  virtual std::span<char> plainBuffer() noexcept = 0;
  // Decrypted bytes, in plainBuffer(), valid during the call. Return false
  // to stop: the rest waits (in the session) for the next advance().
  virtual bool onPlain(char* data, std::size_t size) noexcept = 0;

 protected:
  ~TlsSessionEvents() = default;
};

enum class TlsState : std::uint8_t {
  kHandshake,  // waiting for the peer's next handshake bytes
  kOpen,       // application data both ways
  kPeerEnded,  // the peer sends no more (close_notify or its TCP end); we may still write
  kClosed,     // ended without error: our close_notify went out, or the peer left mid-handshake
  kFailed,     // a fatal error (reason()); an alert for the peer may have been sent
};

class TlsSession {
 public:
  // A session on `context` (held until the session goes). Throws
  // std::bad_alloc when OpenSSL has no memory.
  TlsSession(std::shared_ptr<const TlsContext> context, TlsSessionEvents& events);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Moves the session on with `data` (ciphertext, borrowed for the call)
  // after what it kept before: at most one handshake step, then as many
  // records as there are (onPlain gets their plaintext). One handshake step
  // is one flight of the peer's; the owner bounds handshake work per loop
  // iteration by calling hold() instead and advance(nullptr, 0) later.
  TlsState advance(const char* data, std::size_t size) noexcept;
  // Keeps `data` for a later advance() without looking at it (a deferred
  // handshake: stop reading the socket meanwhile, so this stays one read).
  // False without memory (the session has failed then).
  bool hold(const char* data, std::size_t size) noexcept;
  // The peer's TCP end: no more ciphertext follows. Without close_notify it
  // is an ordinary end (kPeerEnded, or kClosed during the handshake).
  TlsState receiveEnd() noexcept;
  // Encrypts `plain` into records (onCipher). False unless open (or
  // peer-ended): during the handshake, after close() or a failure.
  bool write(std::string_view plain) noexcept;
  // Record buffers are given back after every read and write unless kept
  // (a busy connection); releaseBuffers() gives kept ones back now, when
  // nothing is in them.
  void keepBuffers(bool keep) noexcept;
  void releaseBuffers() noexcept;
  // Sends close_notify (when the handshake is done) and ends the session:
  // nothing is read or written after it.
  void close() noexcept;

  TlsState state() const noexcept { return state_; }
  bool isHandshaking() const noexcept { return state_ == TlsState::kHandshake; }
  // Input kept for the next advance(): held bytes, or plaintext not yet
  // delivered because onPlain returned false.
  bool hasInput() const noexcept;
  // Why the session failed or ended early (static text); empty otherwise.
  std::string_view reason() const noexcept { return reason_ ? reason_ : ""; }
  // The peer sent close_notify (not only a TCP end).
  bool receivedCloseNotify() const noexcept { return closeNotify_; }

  // --- once the handshake is done
  std::string_view protocol() const noexcept;    // "TLSv1.3"
  std::string_view cipher() const noexcept;      // "TLS_AES_128_GCM_SHA256"
  std::string_view alpn() const noexcept;        // "http/1.1", or empty
  std::string_view serverName() const noexcept;  // the client's SNI, or empty
  bool isResumed() const noexcept;               // by a session ticket
  // The client's certificate (with verifyClient), or nothing. Throws
  // std::bad_alloc.
  std::optional<TlsPeerCertificate> peerCertificate() const;

 private:
  friend struct TlsBio;

  void handshakeStep() noexcept;
  void readRecords() noexcept;
  void fail(const char* reason) noexcept;
  // From the BIO: the next ciphertext, and OpenSSL's output.
  int readInput(char* out, int size) noexcept;
  bool writeOutput(const char* data, std::size_t size) noexcept;
  // Copies what is left of the borrowed input into kept_.
  bool keepRest() noexcept;
  void releaseKept() noexcept;
  static void onInfo(const ssl_st* ssl, int where, int ret) noexcept;

  std::shared_ptr<const TlsContext> context_;
  TlsSessionEvents& events_;
  ssl_st* ssl_ = nullptr;
  const char* reason_ = nullptr;
  // Input: kept_ (from its offset) first, then the borrowed bytes of the call.
  std::unique_ptr<std::string> kept_;  // null when nothing is kept
  std::size_t keptOffset_ = 0;
  const char* borrowed_ = nullptr;
  std::size_t borrowedSize_ = 0;
  TlsState state_ = TlsState::kHandshake;
  bool ended_ = false;                 // receiveEnd(): the BIO reads EOF once input runs out
  bool endRead_ = false;               // OpenSSL read that EOF
  bool closeNotify_ = false;           // the peer's close_notify arrived
  bool renegotiationRefused_ = false;  // we sent no_renegotiation
};

}  // namespace spry::detail
