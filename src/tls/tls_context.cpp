#include "tls/tls_context.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace spry::detail {

namespace {

constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
// TLS 1.3 caps a ticket's lifetime at seven days (RFC 8446, 4.6.1).
constexpr long kMaxTicketLifetimeSeconds = 7 * 24 * 3600;

std::string lowerCase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// OpenSSL's reasons for the last failure, oldest first, each once; the
// thread's error queue is left empty. A system error reads as its errno text;
// "system lib", "PEM lib" and the like only say where, and are left out.
std::string takeOpensslErrors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    std::string text;
    if (ERR_SYSTEM_ERROR(e)) {
      text = std::error_code(ERR_GET_REASON(e), std::generic_category()).message();
    } else if (const char* reason = ERR_reason_error_string(e)) {
      text = reason;
      if (text.size() > 4 && text.ends_with(" lib")) continue;
    } else {
      text = "error " + std::to_string(ERR_GET_REASON(e));
    }
    if (lowerCase(out).find(lowerCase(text)) != std::string::npos) continue;
    if (!out.empty()) out += ": ";
    out += text;
  }
  return out.empty() ? "unknown error" : out;
}

[[noreturn]] void fail(std::string what) {
  throw std::runtime_error("TLS " + std::move(what) + ": " + takeOpensslErrors());
}

std::string quoted(const std::string& file) {
  return "\"" + file + "\"";
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

// Which TlsContext an SSL_CTX belongs to (for the ticket callback, which
// gets only the SSL).
int contextIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// ---------------------------------------------------------------- callbacks
// Called from inside OpenSSL: none may throw.

int selectAlpn(SSL*, const unsigned char** out, unsigned char* outLength, const unsigned char* in,
               unsigned inLength, void*) noexcept {
  for (unsigned i = 0; i < inLength;) {
    const unsigned length = in[i];
    if (i + 1 + length > inLength) break;
    if (length == kAlpnHttp11[0] && std::memcmp(in + i + 1, kAlpnHttp11 + 1, length) == 0) {
      *out = in + i + 1;
      *outLength = static_cast<unsigned char>(length);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + length;
  }
  // RFC 7301: a client that offers only protocols we do not speak gets
  // no_application_protocol rather than a server that pretends.
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int selectServerName(SSL* ssl, int*, void* arg) noexcept {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_NOACK;
  const auto* context = static_cast<const TlsContext*>(arg);
  if (TlsContext::SslCtx* ctx = context->forServerName(name)) {
    if (!SSL_set_SSL_CTX(ssl, ctx)) return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

bool setHmacKey(EVP_MAC_CTX* hmac, unsigned char* key, std::size_t size) noexcept {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, size),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(hmac, params) == 1;
}

int ticketKey(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
              EVP_MAC_CTX* hmac, int encrypt) noexcept {
  const auto* context =
      static_cast<const TlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), contextIndex()));
  TicketKeyStore* store = context ? context->ticketKeys() : nullptr;
  if (!store) return encrypt ? -1 : 0;
  TicketKeyStore::Key key;
  int result;
  if (encrypt) {
    if (!store->encryptionKey(key) || RAND_bytes(iv, 16) != 1) return -1;
    std::memcpy(name, key.name, sizeof(key.name));
    result = EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) == 1 &&
                     setHmacKey(hmac, key.hmac, sizeof(key.hmac))
                 ? 1
                 : -1;
  } else {
    const auto match = store->find(name, key);
    if (match == TicketKeyStore::Match::kNone) return 0;  // a full handshake, then a new ticket
    result = EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) == 1 &&
                     setHmacKey(hmac, key.hmac, sizeof(key.hmac))
                 ? (match == TicketKeyStore::Match::kPrevious ? 2 : 1)  // 2: renew the ticket
                 : -1;
  }
  OPENSSL_cleanse(&key, sizeof(key));
  return result;
}

// ---------------------------------------------------------------- files

struct Passphrase {
  const std::string* text;
  bool asked = false;
};

int passphraseCallback(char* buf, int size, int, void* arg) noexcept {
  auto* p = static_cast<Passphrase*>(arg);
  p->asked = true;
  if (p->text->empty() || p->text->size() > static_cast<std::size_t>(size)) return -1;
  std::memcpy(buf, p->text->data(), p->text->size());
  return static_cast<int>(p->text->size());
}

struct BioFree {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct CtxFree {
  void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

std::unique_ptr<EVP_PKEY, PkeyFree> readKey(const std::string& file,
                                            const std::string& passphrase) {
  std::unique_ptr<BIO, BioFree> in(BIO_new_file(file.c_str(), "r"));
  if (!in) fail("key file " + quoted(file));
  Passphrase pass{&passphrase};
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_bio_PrivateKey(in.get(), nullptr, passphraseCallback, &pass));
  if (key) {
    ERR_clear_error();
    return key;
  }
  if (pass.asked && passphrase.empty()) {
    fail("key file " + quoted(file) + ": the key is encrypted and no passphrase was given");
  }
  if (pass.asked) fail("key file " + quoted(file) + ": wrong passphrase");
  fail("key file " + quoted(file) + ": not a PEM private key");
}

// One certificate and its key in `ctx`.
void useCertificate(SSL_CTX* ctx, const std::string& certFile, const std::string& keyFile,
                    const std::string& passphrase) {
  if (certFile.empty()) throw std::runtime_error("TLS: no certificate file given");
  if (keyFile.empty()) {
    throw std::runtime_error("TLS: no key file given for certificate " + quoted(certFile));
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, certFile.c_str()) != 1) {
    fail("certificate file " + quoted(certFile));
  }
  auto key = readKey(keyFile, passphrase);
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (!cert || X509_check_private_key(cert, key.get()) != 1) {
    fail("key file " + quoted(keyFile) + " does not match certificate " + quoted(certFile));
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    fail("key file " + quoted(keyFile) + " with certificate " + quoted(certFile));
  }
}

// The session id context: resumption only within the same client
// verification, so a ticket from a listener that asked for no certificate
// never skips the check on one that does.
void setSessionIdContext(SSL_CTX* ctx, const TlsOptions& options) {
  std::string id = "spry";
  if (options.verifyClient) id += "\nverify\n" + options.caFile;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned size = 0;
  if (EVP_Digest(id.data(), id.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    fail("session id context");
  }
  if (SSL_CTX_set_session_id_context(ctx, digest, std::min<unsigned>(size, 32)) != 1) {
    fail("session id context");
  }
}

// Everything but the certificate: the same for the default and SNI contexts,
// since OpenSSL keeps the first context's options when SNI switches.
CtxPtr newContext(const TlsOptions& options) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) fail("context");
  SSL_CTX* c = ctx.get();
  // Renegotiation is refused; a TCP end without close_notify is an ordinary
  // end (OpenSSL 3 would call it an error); no compression (CRIME).
  std::uint64_t flags = SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                        SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE;
  if (options.ticketKeyRotation.count() <= 0) flags |= SSL_OP_NO_TICKET;
  SSL_CTX_set_options(c, flags);
  // Without ticket keys, TLS 1.3 would still send tickets naming sessions
  // in a cache that is off.
  if (options.ticketKeyRotation.count() <= 0) SSL_CTX_set_num_tickets(c, 0);
  // No record buffers while idle: they are taken for a read or write and
  // given back when empty. A busy connection keeps them instead
  // (TlsSession::keepBuffers): ~17 KB allocated and freed for every read
  // and write costs a busy wss server 5% of its CPU in malloc.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_min_proto_version(
          c, options.minVersion == TlsVersion::k1_3 ? TLS1_3_VERSION : TLS1_2_VERSION) != 1) {
    fail("minimum version");
  }
  if (!options.ciphers.empty() && SSL_CTX_set_cipher_list(c, options.ciphers.c_str()) != 1) {
    fail("ciphers " + quoted(options.ciphers));
  }
  if (!options.cipherSuites.empty() &&
      SSL_CTX_set_ciphersuites(c, options.cipherSuites.c_str()) != 1) {
    fail("cipherSuites " + quoted(options.cipherSuites));
  }
  // No 0-RTT: early data can be replayed.
  SSL_CTX_set_max_early_data(c, 0);
  SSL_CTX_set_recv_max_early_data(c, 0);
  // Stateless tickets only: a server-side cache would hold every session
  // (OpenSSL's default keeps up to 20,480 of them).
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  if (options.ticketKeyRotation.count() > 0) {
    SSL_CTX_set_timeout(
        c, std::min<long>(2 * options.ticketKeyRotation.count(), kMaxTicketLifetimeSeconds));
    SSL_CTX_set_tlsext_ticket_key_evp_cb(c, ticketKey);
  }
  SSL_CTX_set_alpn_select_cb(c, selectAlpn, nullptr);
  SSL_CTX_set_dh_auto(c, 1);
  setSessionIdContext(c, options);
  if (options.verifyClient) {
    if (options.caFile.empty()) throw std::runtime_error("TLS: verifyClient needs a caFile");
    if (SSL_CTX_load_verify_locations(c, options.caFile.c_str(), nullptr) != 1) {
      fail("CA file " + quoted(options.caFile));
    }
    // The CAs we accept, named to the client so it can pick its certificate.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.caFile.c_str());
    if (!names) fail("CA file " + quoted(options.caFile));
    SSL_CTX_set_client_CA_list(c, names);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else if (!options.caFile.empty()) {
    if (SSL_CTX_load_verify_locations(c, options.caFile.c_str(), nullptr) != 1) {
      fail("CA file " + quoted(options.caFile));
    }
  }
  return ctx;
}

}  // namespace

std::shared_ptr<const TlsContext> TlsContext::create(const TlsOptions& options,
                                                     std::shared_ptr<TicketKeyStore> ticketKeys) {
  // Errors left on this thread's queue by earlier calls would be read as ours.
  ERR_clear_error();
  std::shared_ptr<TlsContext> context(new TlsContext);
  context->ticketKeys_ = std::move(ticketKeys);
  if (options.ticketKeyRotation.count() > 0 && !context->ticketKeys_) {
    context->ticketKeys_ = std::make_shared<TicketKeyStore>(options.ticketKeyRotation);
  }
  auto setUp = [&](const std::string& cert, const std::string& key, const std::string& pass) {
    CtxPtr ctx = newContext(options);
    useCertificate(ctx.get(), cert, key, pass);
    if (SSL_CTX_set_ex_data(ctx.get(), contextIndex(), context.get()) != 1) fail("context");
    return ctx;
  };
  CtxPtr main = setUp(options.certFile, options.keyFile, options.keyPassphrase);
  for (const auto& entry : options.serverNames) {
    if (entry.name.empty()) throw std::runtime_error("TLS: a serverNames entry has no name");
    CtxPtr ctx = setUp(entry.certFile, entry.keyFile, entry.keyPassphrase);
    context->named_.push_back(Named{lowerCase(entry.name), ctx.release()});
  }
  if (!options.serverNames.empty()) {
    SSL_CTX_set_tlsext_servername_callback(main.get(), selectServerName);
    SSL_CTX_set_tlsext_servername_arg(main.get(), context.get());
  }
  context->default_ = main.release();
  // Success may leave notes on the queue (the end of a PEM chain): the
  // thread's next OpenSSL call must not read them as its own.
  ERR_clear_error();
  return context;
}

TlsContext::~TlsContext() {
  SSL_CTX_free(default_);
  for (auto& n : named_) SSL_CTX_free(n.ctx);
}

TlsContext::SslCtx* TlsContext::forServerName(std::string_view serverName) const noexcept {
  for (const auto& n : named_) {
    if (equalsIgnoreCase(n.name, serverName)) return n.ctx;
  }
  // "*.example.com" stands for exactly one label.
  const auto dot = serverName.find('.');
  if (dot == 0 || dot == std::string_view::npos) return nullptr;
  const std::string_view parent = serverName.substr(dot);
  for (const auto& n : named_) {
    if (n.name.size() > 2 && n.name[0] == '*' && n.name[1] == '.' &&
        equalsIgnoreCase(std::string_view(n.name).substr(1), parent)) {
      return n.ctx;
    }
  }
  return nullptr;
}

// ---------------------------------------------------------------- TlsServerConfig

TlsServerConfig::TlsServerConfig(TlsOptions options, std::shared_ptr<TicketKeyStore> ticketKeys)
    : options_(std::move(options)), ticketKeys_(std::move(ticketKeys)) {
  if (!ticketKeys_ && options_.ticketKeyRotation.count() > 0) {
    ticketKeys_ = std::make_shared<TicketKeyStore>(options_.ticketKeyRotation);
  }
  current_.store(TlsContext::create(options_, ticketKeys_));
}

std::shared_ptr<const TlsContext> TlsServerConfig::build(std::string& error) const {
  try {
    return TlsContext::create(options_, ticketKeys_);
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
}

std::shared_ptr<const TlsContext> TlsServerConfig::reload(std::string& error) {
  auto next = build(error);
  if (next) install(next);
  return next;
}

}  // namespace spry::detail
