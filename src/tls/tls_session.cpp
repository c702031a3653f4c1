#include "tls/tls_session.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace spry::detail {

// The BIO under every session: reads come from the session's input, writes
// go to its owner. It holds no bytes of its own.
struct TlsBio {
  static TlsSession* session(BIO* b) noexcept { return static_cast<TlsSession*>(BIO_get_data(b)); }

  static int write(BIO* b, const char* data, std::size_t size, std::size_t* written) noexcept {
    BIO_clear_retry_flags(b);
    if (!session(b)->writeOutput(data, size)) return 0;
    *written = size;
    return 1;
  }

  static int read(BIO* b, char* out, std::size_t size, std::size_t* read) noexcept {
    BIO_clear_retry_flags(b);
    const int n =
        session(b)->readInput(out, static_cast<int>(std::min<std::size_t>(size, 1 << 30)));
    if (n < 0) {
      BIO_set_retry_read(b);
      return 0;
    }
    *read = static_cast<std::size_t>(n);
    return n > 0 ? 1 : 0;
  }

  static long ctrl(BIO* b, int command, long, void*) noexcept {
    switch (command) {
      case BIO_CTRL_FLUSH:
        return 1;
      case BIO_CTRL_EOF:
        // With SSL_OP_IGNORE_UNEXPECTED_EOF, OpenSSL asks this to tell a
        // TCP end from a broken BIO.
        return session(b)->endRead_ ? 1 : 0;
      default:
        return 0;
    }
  }

  static int create(BIO* b) noexcept {
    BIO_set_init(b, 1);
    return 1;
  }

  static const BIO_METHOD* method() noexcept {
    static BIO_METHOD* const m = [] {
      BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "spry tls");
      if (bm) {
        BIO_meth_set_write_ex(bm, write);
        BIO_meth_set_read_ex(bm, read);
        BIO_meth_set_ctrl(bm, ctrl);
        BIO_meth_set_create(bm, create);
      }
      return bm;
    }();
    return m;
  }
};

namespace {

// The reason of OpenSSL's last error (a static string), clearing the
// thread's queue so no stale error meets the next call on this thread.
const char* takeReason(const char* otherwise) noexcept {
  const unsigned long e = ERR_peek_last_error();
  const char* reason = e ? ERR_reason_error_string(e) : nullptr;
  ERR_clear_error();
  return reason ? reason : otherwise;
}

struct BioFree {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};

std::string bioText(BIO* b) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(b, &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

}  // namespace

TlsSession::TlsSession(std::shared_ptr<const TlsContext> context, TlsSessionEvents& events)
    : context_(std::move(context)), events_(events) {
  ssl_ = SSL_new(context_->defaultContext());
  BIO* bio = TlsBio::method() ? BIO_new(TlsBio::method()) : nullptr;
  if (!ssl_ || !bio) {
    BIO_free(bio);
    SSL_free(ssl_);
    ERR_clear_error();
    throw std::bad_alloc();
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one reference, for both directions
  SSL_set_app_data(ssl_, this);
  SSL_set_info_callback(ssl_, onInfo);
  SSL_set_accept_state(ssl_);
}

TlsSession::~TlsSession() {
  SSL_free(ssl_);
}

// ---------------------------------------------------------------- input

bool TlsSession::hasInput() const noexcept {
  return kept_ != nullptr || (state_ == TlsState::kOpen && SSL_has_pending(ssl_));
}

bool TlsSession::hold(const char* data, std::size_t size) noexcept {
  if (size == 0) return true;
  try {
    if (!kept_) {
      kept_ = std::make_unique<std::string>(data, size);
      keptOffset_ = 0;
    } else {
      kept_->append(data, size);
    }
    return true;
  } catch (const std::bad_alloc&) {
    fail("out of memory");
    return false;
  }
}

int TlsSession::readInput(char* out, int size) noexcept {
  if (kept_) {
    const std::size_t n =
        std::min<std::size_t>(static_cast<std::size_t>(size), kept_->size() - keptOffset_);
    std::memcpy(out, kept_->data() + keptOffset_, n);
    keptOffset_ += n;
    if (keptOffset_ == kept_->size()) releaseKept();
    return static_cast<int>(n);
  }
  if (borrowedSize_ > 0) {
    const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(size), borrowedSize_);
    std::memcpy(out, borrowed_, n);
    borrowed_ += n;
    borrowedSize_ -= n;
    return static_cast<int>(n);
  }
  if (ended_) {
    endRead_ = true;
    return 0;
  }
  return -1;
}

bool TlsSession::keepRest() noexcept {
  const char* rest = borrowed_;
  const std::size_t size = borrowedSize_;
  borrowed_ = nullptr;
  borrowedSize_ = 0;
  if (size == 0 || (state_ != TlsState::kHandshake && state_ != TlsState::kOpen)) return true;
  return hold(rest, size);
}

void TlsSession::releaseKept() noexcept {
  kept_.reset();
  keptOffset_ = 0;
}

bool TlsSession::writeOutput(const char* data, std::size_t size) noexcept {
  try {
    events_.onCipher(std::string_view(data, size));
    return true;
  } catch (...) {
    return false;
  }
}

// ---------------------------------------------------------------- moving on

TlsState TlsSession::advance(const char* data, std::size_t size) noexcept {
  // Past the peer's end, or ours, input has no reader: it is dropped.
  if (state_ != TlsState::kHandshake && state_ != TlsState::kOpen) return state_;
  if (kept_ && size > 0) {
    // Order: what was kept goes first.
    if (!hold(data, size)) return state_;
  } else {
    borrowed_ = data;
    borrowedSize_ = size;
  }
  if (state_ == TlsState::kHandshake) handshakeStep();
  if (state_ == TlsState::kOpen) readRecords();
  keepRest();
  return state_;
}

TlsState TlsSession::receiveEnd() noexcept {
  ended_ = true;
  return advance(nullptr, 0);
}

void TlsSession::handshakeStep() noexcept {
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    state_ = TlsState::kOpen;
    return;
  }
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ:
      return;
    case SSL_ERROR_ZERO_RETURN:
    case SSL_ERROR_SYSCALL:
      if (endRead_ || (SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN)) {
        // A client that connects and leaves (a port check, a closed tab)
        // is no error.
        ERR_clear_error();
        state_ = TlsState::kClosed;
        reason_ = "the peer ended the connection during the handshake";
        releaseKept();
        return;
      }
      fail(takeReason("output failed"));
      return;
    default:
      fail(takeReason("handshake failed"));
      return;
  }
}

void TlsSession::readRecords() noexcept {
  const std::span<char> buffer = events_.plainBuffer();
  std::size_t filled = 0;
  for (;;) {
    std::size_t got = 0;
    if (SSL_read_ex(ssl_, buffer.data() + filled, buffer.size() - filled, &got) == 1) {
      filled += got;
      if (filled == buffer.size()) {
        filled = 0;
        if (!events_.onPlain(buffer.data(), buffer.size())) break;
      }
      continue;
    }
    const int error = SSL_get_error(ssl_, 0);
    if (filled > 0) {
      // The plaintext goes first, then the end or the error that came after it.
      events_.onPlain(buffer.data(), filled);
      filled = 0;
      // The owner closed the session meanwhile: that state stands.
      if (state_ != TlsState::kOpen) break;
    }
    if (renegotiationRefused_) {
      fail("renegotiation refused");
    } else if (error == SSL_ERROR_WANT_READ) {
      // All input read.
    } else if (error == SSL_ERROR_ZERO_RETURN) {
      closeNotify_ = !endRead_;
      state_ = TlsState::kPeerEnded;
      releaseKept();
    } else if (error == SSL_ERROR_SYSCALL && endRead_) {
      state_ = TlsState::kPeerEnded;  // the end of a truncated record: still no error
      ERR_clear_error();
    } else {
      fail(takeReason(error == SSL_ERROR_SYSCALL ? "output failed" : "record error"));
    }
    break;
  }
  if (renegotiationRefused_ && state_ != TlsState::kFailed) fail("renegotiation refused");
}

void TlsSession::fail(const char* reason) noexcept {
  state_ = TlsState::kFailed;
  if (!reason_) reason_ = reason;
  releaseKept();
}

void TlsSession::onInfo(const ssl_st* ssl, int where, int ret) noexcept {
  // SSL_OP_NO_RENEGOTIATION answers a TLS 1.2 client's new ClientHello with
  // a no_renegotiation warning and carries on; we close such a connection.
  if ((where & SSL_CB_WRITE_ALERT) && (ret & 0xff) == SSL_AD_NO_RENEGOTIATION) {
    static_cast<TlsSession*>(SSL_get_app_data(ssl))->renegotiationRefused_ = true;
  }
}

// ---------------------------------------------------------------- output

bool TlsSession::write(std::string_view plain) noexcept {
  if (state_ != TlsState::kOpen && state_ != TlsState::kPeerEnded) return false;
  while (!plain.empty()) {
    std::size_t written = 0;
    if (SSL_write_ex(ssl_, plain.data(), plain.size(), &written) != 1) {
      fail(takeReason("output failed"));
      return false;
    }
    plain.remove_prefix(written);
  }
  return true;
}

void TlsSession::keepBuffers(bool keep) noexcept {
  if (keep) {
    SSL_clear_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  } else {
    SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  }
}

void TlsSession::releaseBuffers() noexcept {
  // Not mid-handshake (the buffers hold its state) and not with input kept.
  if (state_ == TlsState::kHandshake || kept_) return;
  SSL_free_buffers(ssl_);  // fails, harmlessly, while a buffer holds bytes
}

void TlsSession::close() noexcept {
  if (state_ == TlsState::kOpen || state_ == TlsState::kPeerEnded) {
    // One call sends close_notify; the peer's answer is not waited for.
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  if (state_ != TlsState::kFailed) state_ = TlsState::kClosed;
  releaseKept();
}

// ---------------------------------------------------------------- information

std::string_view TlsSession::protocol() const noexcept {
  return SSL_get_version(ssl_);
}

std::string_view TlsSession::cipher() const noexcept {
  const char* name = SSL_get_cipher_name(ssl_);
  return name ? name : "";
}

std::string_view TlsSession::alpn() const noexcept {
  const unsigned char* data = nullptr;
  unsigned size = 0;
  SSL_get0_alpn_selected(ssl_, &data, &size);
  return data ? std::string_view(reinterpret_cast<const char*>(data), size) : std::string_view();
}

std::string_view TlsSession::serverName() const noexcept {
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name ? name : "";
}

bool TlsSession::isResumed() const noexcept {
  return SSL_session_reused(ssl_) == 1;
}

std::optional<TlsPeerCertificate> TlsSession::peerCertificate() const {
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (!cert) return std::nullopt;
  std::unique_ptr<BIO, BioFree> subject(BIO_new(BIO_s_mem()));
  std::unique_ptr<BIO, BioFree> pem(BIO_new(BIO_s_mem()));
  if (!subject || !pem ||
      X509_NAME_print_ex(subject.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0 ||
      PEM_write_bio_X509(pem.get(), cert) != 1) {
    ERR_clear_error();
    throw std::bad_alloc();
  }
  return TlsPeerCertificate{bioText(subject.get()), bioText(pem.get())};
}

}  // namespace spry::detail
