#pragma once
// A blocking OpenSSL client over a loopback socket, for the TLS integration
// tests: handshake, HTTP requests with Content-Length answers, the server's
// certificate name, resumption.

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <optional>
#include <string>
#include <string_view>

#include "../unit/tls_certs.h"
#include "harness.h"

namespace spry::test {

using spry_test::TlsCerts;

struct ClientConfig {
  std::string caFile = TlsCerts::get().path("ca.pem");  // empty: no verification
  std::string serverName = "localhost";                 // SNI and the name checked
  std::string certFile, keyFile;                        // a client certificate
  int maxVersion = 0;                                   // TLS1_2_VERSION: no 1.3
  SSL_SESSION* resume = nullptr;
};

// A blocking TLS client with 5-second socket timeouts.
class SslClient {
 public:
  explicit SslClient(std::uint16_t port, const ClientConfig& c = {}) : raw_(port) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (c.maxVersion) SSL_CTX_set_max_proto_version(ctx_, c.maxVersion);
    if (!c.caFile.empty()) {
      SSL_CTX_load_verify_locations(ctx_, c.caFile.c_str(), nullptr);
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    }
    if (!c.certFile.empty()) {
      SSL_CTX_use_certificate_chain_file(ctx_, c.certFile.c_str());
      SSL_CTX_use_PrivateKey_file(ctx_, c.keyFile.c_str(), SSL_FILETYPE_PEM);
    }
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    ssl_ = SSL_new(ctx_);
    timeval tv{5, 0};
    ::setsockopt(raw_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(raw_.fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    SSL_set_fd(ssl_, raw_.fd());
    if (!c.serverName.empty()) {
      SSL_set_tlsext_host_name(ssl_, c.serverName.c_str());
      SSL_set1_host(ssl_, c.serverName.c_str());
    }
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_set_alpn_protos(ssl_, alpn, sizeof(alpn) - 1);
    if (c.resume) SSL_set_session(ssl_, c.resume);
  }
  ~SslClient() {
    // A proper close (close_notify): OpenSSL marks the session of a client
    // that leaves without one as not resumable.
    if (SSL_is_init_finished(ssl_)) SSL_shutdown(ssl_);
    ERR_clear_error();
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  SslClient(const SslClient&) = delete;
  SslClient& operator=(const SslClient&) = delete;

  bool handshake() {
    const bool ok = SSL_connect(ssl_) == 1;
    ERR_clear_error();
    return ok;
  }
  bool send(std::string_view data) {
    std::size_t written = 0;
    const bool ok = SSL_write_ex(ssl_, data.data(), data.size(), &written) == 1;
    ERR_clear_error();
    return ok && written == data.size();
  }
  // Up to what one read brings; empty at the end (or on an error, timeout).
  std::string readSome() {
    char buf[16384];
    std::size_t got = 0;
    if (SSL_read_ex(ssl_, buf, sizeof(buf), &got) != 1) {
      lastError_ = SSL_get_error(ssl_, 0);
      ERR_clear_error();
      return {};
    }
    return std::string(buf, got);
  }
  // One HTTP response (Content-Length bodies); nullopt at the end.
  std::optional<std::string> response() {
    for (;;) {
      const auto head = in_.find("\r\n\r\n");
      if (head != std::string::npos) {
        std::size_t length = 0;
        const auto cl = in_.find("Content-Length: ");
        if (cl != std::string::npos && cl < head) length = std::stoul(in_.substr(cl + 16));
        if (in_.size() >= head + 4 + length) {
          std::string r = in_.substr(0, head + 4 + length);
          in_.erase(0, head + 4 + length);
          return r;
        }
      }
      std::string more = readSome();
      if (more.empty()) return std::nullopt;
      in_ += more;
    }
  }
  std::optional<std::string> get(const std::string& path) {
    if (!send("GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n")) return std::nullopt;
    return response();
  }
  // The server's certificate's common name.
  std::string peerName() const {
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (!cert) return {};
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
    return cn;
  }
  bool isResumed() const { return SSL_session_reused(ssl_) == 1; }
  SSL_SESSION* session() const { return SSL_get1_session(ssl_); }
  SSL* ssl() const { return ssl_; }
  RawClient& raw() { return raw_; }
  int lastError() const { return lastError_; }

 private:
  RawClient raw_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string in_;
  int lastError_ = 0;
};

}  // namespace spry::test
