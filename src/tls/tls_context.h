#pragma once
// The OpenSSL server contexts of one TLS listener, built from its TlsOptions:
// the default context and one per SNI name, chosen by the client's server
// name. A TlsContext never changes once built; each session holds the one it
// started with, so a reload (TlsServerConfig) builds a whole new TlsContext
// and swaps it in: new connections take it, open ones keep theirs.

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "spry/tls.h"
#include "tls/ticket_key_store.h"

struct ssl_ctx_st;

namespace spry::detail {

class TlsContext {
 public:
  using SslCtx = ::ssl_ctx_st;

  // Reads every file of `options` and sets up the contexts. Tickets are
  // encrypted with `ticketKeys` (shared with other contexts; may be null
  // when options.ticketKeyRotation is 0). Throws std::runtime_error whose
  // message names the file (or setting) and OpenSSL's reason.
  static std::shared_ptr<const TlsContext> create(const TlsOptions& options,
                                                  std::shared_ptr<TicketKeyStore> ticketKeys);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Where every session starts (the default certificate).
  SslCtx* defaultContext() const noexcept { return default_; }
  // The context serving `serverName`, or null when the default serves it.
  SslCtx* forServerName(std::string_view serverName) const noexcept;
  TicketKeyStore* ticketKeys() const noexcept { return ticketKeys_.get(); }

 private:
  struct Named {
    std::string name;  // lower case; "*.example.com" keeps its "*."
    SslCtx* ctx = nullptr;
  };

  TlsContext() = default;

  SslCtx* default_ = nullptr;
  std::vector<Named> named_;
  std::shared_ptr<TicketKeyStore> ticketKeys_;
};

// A listener's TLS: its options, its current TlsContext and the ticket keys
// that outlive every reload. current() and reload() may be called from any
// thread.
class TlsServerConfig {
 public:
  // Builds the first TlsContext. Throws std::runtime_error as
  // TlsContext::create does. `ticketKeys` null: a store of its own, with
  // options.ticketKeyRotation (several listeners of one process pass one
  // store, so a ticket from one resumes on another).
  explicit TlsServerConfig(TlsOptions options, std::shared_ptr<TicketKeyStore> ticketKeys = {});

  // The context new sessions start with.
  std::shared_ptr<const TlsContext> current() const noexcept { return current_.load(); }
  // Rereads every file of the options into a new TlsContext and makes it
  // current; returns it. On an error it returns null with the reason in
  // `error`, and the current context stays in service.
  std::shared_ptr<const TlsContext> reload(std::string& error);
  // reload() in two steps, so several configs change together or not at
  // all: build() rereads the files into a new context (null and `error` on
  // failure) without using it; install() makes one current.
  std::shared_ptr<const TlsContext> build(std::string& error) const;
  void install(std::shared_ptr<const TlsContext> context) noexcept {
    current_.store(std::move(context));
  }
  const TlsOptions& options() const noexcept { return options_; }

 private:
  const TlsOptions options_;
  std::shared_ptr<TicketKeyStore> ticketKeys_;
  std::atomic<std::shared_ptr<const TlsContext>> current_;
};

}  // namespace spry::detail
