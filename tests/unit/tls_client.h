#pragma once
// An in-process OpenSSL client over memory BIOs, and a server side that
// records what a TlsSession hands its owner: the two ends of the TLS tests
// and the fuzz harness, with no socket between them.

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tls/tls_session.h"

namespace spry_test {

struct ClientOptions {
  std::string caFile;      // verify the server's chain against it (empty: no check)
  std::string serverName;  // SNI (empty: none)
  std::vector<std::string> alpn{"http/1.1"};
  std::string certFile, keyFile;  // a client certificate
  int maxVersion = 0;             // TLS1_2_VERSION to stay below 1.3; 0: the highest
  SSL_SESSION* resume = nullptr;  // a session from an earlier connection
};

class TlsClient {
 public:
  explicit TlsClient(const ClientOptions& o = {}) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (o.maxVersion) SSL_CTX_set_max_proto_version(ctx_, o.maxVersion);
    if (!o.caFile.empty()) {
      SSL_CTX_load_verify_locations(ctx_, o.caFile.c_str(), nullptr);
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    }
    if (!o.certFile.empty()) {
      SSL_CTX_use_certificate_chain_file(ctx_, o.certFile.c_str());
      SSL_CTX_use_PrivateKey_file(ctx_, o.keyFile.c_str(), SSL_FILETYPE_PEM);
    }
    // No client cache: with one, OpenSSL uses a TLS 1.3 ticket once only.
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    ssl_ = SSL_new(ctx_);
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl_, in_, out_);
    SSL_set_connect_state(ssl_);
    if (!o.serverName.empty()) {
      SSL_set_tlsext_host_name(ssl_, o.serverName.c_str());
      SSL_set1_host(ssl_, o.serverName.c_str());
    }
    if (!o.alpn.empty()) {
      std::string wire;
      for (const auto& p : o.alpn) wire += static_cast<char>(p.size()) + p;
      SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()),
                          static_cast<unsigned>(wire.size()));
    }
    if (o.resume) SSL_set_session(ssl_, o.resume);
  }
  ~TlsClient() {
    // As if shut down properly: else OpenSSL marks the session not resumable.
    SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  SSL* ssl() const { return ssl_; }
  bool isOpen() const { return SSL_is_init_finished(ssl_) == 1; }
  bool failed() const { return failed_; }
  bool closedByPeer() const { return (SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) != 0; }

  // What the client wants sent to the server.
  std::string takeOutput() {
    std::string s;
    char buf[16384];
    int n;
    while ((n = BIO_read(out_, buf, sizeof(buf))) > 0) s.append(buf, static_cast<std::size_t>(n));
    return s;
  }
  // Bytes from the server; the client runs its handshake or reads records.
  void receive(std::string_view bytes) {
    if (!bytes.empty()) BIO_write(in_, bytes.data(), static_cast<int>(bytes.size()));
    step();
  }
  void step() {
    if (failed_) return;
    if (!isOpen()) {
      const int r = SSL_do_handshake(ssl_);
      if (r == 1) return step();
      const int e = SSL_get_error(ssl_, r);
      if (e != SSL_ERROR_WANT_READ) markFailed();
      return;
    }
    char buf[16384];
    for (;;) {
      std::size_t n = 0;
      if (SSL_read_ex(ssl_, buf, sizeof(buf), &n) == 1) {
        plain.append(buf, n);
        continue;
      }
      const int e = SSL_get_error(ssl_, 0);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_ZERO_RETURN) markFailed();
      return;
    }
  }
  void write(std::string_view s) {
    std::size_t n = 0;
    if (!s.empty() && SSL_write_ex(ssl_, s.data(), s.size(), &n) != 1) markFailed();
  }
  void shutdown() { SSL_shutdown(ssl_); }
  // The session to resume with (owned by the caller: SSL_SESSION_free).
  SSL_SESSION* session() const { return SSL_get1_session(ssl_); }
  std::string peerSubject() const {
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (!cert) return {};
    char name[256];
    X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof(name));
    return name;
  }

  std::string plain;  // what the server sent, decrypted
  std::string error;  // OpenSSL's reason once failed

 private:
  void markFailed() {
    failed_ = true;
    const unsigned long e = ERR_peek_last_error();
    const char* reason = e ? ERR_reason_error_string(e) : nullptr;
    error = reason ? reason : "failed";
    ERR_clear_error();
  }

  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;
  BIO* out_ = nullptr;
  bool failed_ = false;
};

// The owner of a TlsSession, as the TLS transport will be: it collects the
// ciphertext to send and the plaintext received.
class TlsServer final : public spry::detail::TlsSessionEvents {
 public:
  explicit TlsServer(std::shared_ptr<const spry::detail::TlsContext> context,
                     std::size_t plainBufferBytes = 16384)
      : buffer_(plainBufferBytes), session(std::move(context), *this) {}

  void onCipher(std::string_view bytes) override { out.append(bytes); }
  std::span<char> plainBuffer() noexcept override { return buffer_; }
  bool onPlain(char* data, std::size_t size) noexcept override {
    plain.append(data, size);
    ++plainCalls;
    return !pause;
  }

  std::string out;    // ciphertext for the client
  std::string plain;  // plaintext from the client
  int plainCalls = 0;
  bool pause = false;  // onPlain asks the session to stop

 private:
  std::vector<char> buffer_;

 public:
  spry::detail::TlsSession session;
};

// Moves bytes both ways until nothing moves.
inline void pump(TlsClient& client, TlsServer& server) {
  client.step();
  for (int i = 0; i < 64; ++i) {
    std::string up = client.takeOutput();
    if (!up.empty()) server.session.advance(up.data(), up.size());
    std::string down;
    down.swap(server.out);
    if (up.empty() && down.empty()) return;
    client.receive(down);
  }
}

}  // namespace spry_test
