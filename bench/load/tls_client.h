#pragma once
// The load tool's TLS client: OpenSSL through a BIO of our own, so that the
// tool's libuv loop keeps its sockets and OpenSSL never touches one. Bytes a
// socket read are lent to OpenSSL by pointer (TlsWire::in, no copy), and what
// OpenSSL writes is appended to the connection's wire buffer, which the loop
// writes like any plain bytes. Non-blocking: a read with nothing lent says
// "retry", a write always takes everything.

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>

namespace load {

// One connection's side of the BIO.
struct TlsWire {
  const char* in = nullptr;  // ciphertext lent by the read callback
  std::size_t inLen = 0;
  std::string* out = nullptr;  // ciphertext for the socket
};

struct TlsClientOptions {
  std::string caFile;        // verify the server against these roots; empty: no verification
  std::string serverName;    // SNI, and the name verified with caFile; empty: none / the IP
  std::string cipherSuites;  // TLS 1.3 suites in order of preference; empty: OpenSSL's
  bool resume = false;       // keep the first session the server issues
};

class TlsClient {
 public:
  TlsClient() = default;
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;
  ~TlsClient() {
    if (session_) SSL_SESSION_free(session_);
    if (ctx_) SSL_CTX_free(ctx_);
    if (method_) BIO_meth_free(method_);
  }

  // False (and why in error) if OpenSSL or the CA file refuses.
  bool init(const TlsClientOptions& o, std::string& error) {
    o_ = o;
    ctx_ = SSL_CTX_new(TLS_client_method());
    method_ = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "spry-load wire");
    if (!ctx_ || !method_) {
      error = "OpenSSL: " + errors();
      return false;
    }
    BIO_meth_set_write(method_, bioWrite);
    BIO_meth_set_read(method_, bioRead);
    BIO_meth_set_ctrl(method_, bioCtrl);
    BIO_meth_set_create(method_, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    // Whole records from one BIO read: fewer calls when a read holds many.
    SSL_CTX_set_read_ahead(ctx_, 1);
    static const unsigned char kAlpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx_, kAlpn, sizeof(kAlpn) - 1);
    if (!o.cipherSuites.empty() && SSL_CTX_set_ciphersuites(ctx_, o.cipherSuites.c_str()) != 1) {
      error = "--ciphersuites " + o.cipherSuites + ": " + errors();
      return false;
    }
    if (!o.caFile.empty()) {
      if (SSL_CTX_load_verify_locations(ctx_, o.caFile.c_str(), nullptr) != 1) {
        error = "--ca " + o.caFile + ": " + errors();
        return false;
      }
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    }
    if (o.resume) {
      // Clients hear of new sessions only with client caching on; we keep
      // the first one ourselves.
      SSL_CTX_set_session_cache_mode(ctx_,
                                     SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_set_app_data(ctx_, this);
      SSL_CTX_sess_set_new_cb(ctx_, [](SSL* ssl, SSL_SESSION* s) {
        auto* self = static_cast<TlsClient*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
        if (self->session_) return 0;
        self->session_ = s;  // returning 1 keeps OpenSSL's reference for us
        // With client caching on, a TLS 1.3 client "uses a ticket once": it
        // marks the session not resumable after each resumption. Off now.
        SSL_CTX_set_session_cache_mode(self->ctx_, SSL_SESS_CACHE_OFF);
        if (self->onSession_) self->onSession_();
        return 1;
      });
    }
    return true;
  }

  // A client SSL over wire, in connect state, with the kept session when there
  // is one. host: the numeric address (checked against the certificate's IP
  // names when verifying without a server name).
  SSL* newConnection(TlsWire* wire, const std::string& host, bool releaseBuffers) {
    SSL* ssl = SSL_new(ctx_);
    if (!ssl) return nullptr;
    BIO* bio = BIO_new(method_);
    if (!bio) {
      SSL_free(ssl);
      return nullptr;
    }
    BIO_set_data(bio, wire);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_connect_state(ssl);
    if (releaseBuffers) SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    if (!o_.serverName.empty()) SSL_set_tlsext_host_name(ssl, o_.serverName.c_str());
    if (!o_.caFile.empty()) {
      if (!o_.serverName.empty()) {
        SSL_set1_host(ssl, o_.serverName.c_str());
      } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
      }
    }
    if (session_) SSL_set_session(ssl, session_);
    return ssl;
  }

  // Called once, when the first session arrives (--resume).
  void onSession(std::function<void()> f) { onSession_ = std::move(f); }
  bool haveSession() const noexcept { return session_ != nullptr; }
  bool resume() const noexcept { return o_.resume; }

  // Why the last call on ssl returned rc (<= 0); empties OpenSSL's error queue.
  static std::string why(SSL* ssl, int rc) {
    const int err = SSL_get_error(ssl, rc);
    std::string s = errors();
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      s += std::string(s.empty() ? "" : "; ") +
           "certificate: " + X509_verify_cert_error_string(verify);
    }
    if (s.empty()) {
      s = err == SSL_ERROR_SYSCALL       ? "the server ended the connection"
          : err == SSL_ERROR_ZERO_RETURN ? "close_notify"
                                         : "SSL error " + std::to_string(err);
    }
    return s;
  }

  static std::string errors() {
    std::string s;
    while (unsigned long e = ERR_get_error()) {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof(buf));
      if (!s.empty()) s += "; ";
      s += buf;
    }
    return s;
  }

 private:
  static int bioWrite(BIO* b, const char* data, int len) {
    BIO_clear_retry_flags(b);
    static_cast<TlsWire*>(BIO_get_data(b))->out->append(data, static_cast<std::size_t>(len));
    return len;
  }
  static int bioRead(BIO* b, char* data, int len) {
    auto* w = static_cast<TlsWire*>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    if (w->inLen == 0) {
      BIO_set_retry_read(b);
      return -1;
    }
    const std::size_t n = std::min(w->inLen, static_cast<std::size_t>(len));
    std::memcpy(data, w->in, n);
    w->in += n;
    w->inLen -= n;
    return static_cast<int>(n);
  }
  static long bioCtrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

  TlsClientOptions o_;
  SSL_CTX* ctx_ = nullptr;
  BIO_METHOD* method_ = nullptr;
  SSL_SESSION* session_ = nullptr;
  std::function<void()> onSession_;
};

}  // namespace load
