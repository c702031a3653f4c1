#pragma once
// The command-line contract every example shares: --host, --port, --threads,
// and TLS with --cert/--key (--key-passphrase, --tls-port); "listening on
// http://HOST:PORT/" (https:// when that listener speaks TLS) as the first
// line on stdout, and with --tls-port a second line for the TLS listener;
// SIGHUP rereads the certificate files (App::reloadTls); exit 0 after a
// graceful shutdown, 1 when it cannot listen (a bad certificate or key file
// included), 2 on bad flags.

#include <uv.h>

#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include <spry/spry.h>

namespace examples {

struct ServerFlags {
  spry::ListenOptions listen;
  std::string certFile;       // --cert: PEM certificate chain
  std::string keyFile;        // --key: PEM private key
  std::string keyPassphrase;  // --key-passphrase (or SPRY_KEY_PASSPHRASE)
  int tlsPort = -1;           // --tls-port; -1: the main listener is TLS (with --cert)
};

// Adds the shared flags to `cli`; call before parseFlags.
inline void addServerFlags(CLI::App& cli, ServerFlags& flags) {
  flags.listen.host = "127.0.0.1";
  flags.listen.port = 8080;
  flags.listen.threads = 0;
  flags.listen.shutdownTimeout = std::chrono::seconds(5);
  cli.add_option("--host", flags.listen.host, "address to listen on")->capture_default_str();
  cli.add_option("--port", flags.listen.port, "port to listen on (0 picks one)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cli.add_option("--threads", flags.listen.threads,
                 "event loops, one thread each (0: one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  auto* cert = cli.add_option("--cert", flags.certFile,
                              "certificate chain (PEM): serve https and wss on --port, or on "
                              "--tls-port; SIGHUP rereads it and --key")
                   ->group("TLS");
  auto* key = cli.add_option("--key", flags.keyFile, "private key (PEM, RSA or EC) of --cert")
                  ->group("TLS");
  cert->needs(key);
  key->needs(cert);
  cli.add_option("--key-passphrase", flags.keyPassphrase, "passphrase of an encrypted --key")
      ->envname("SPRY_KEY_PASSPHRASE")
      ->group("TLS");
  cli.add_option("--tls-port", flags.tlsPort,
                 "serve TLS on this port too, beside plain HTTP on --port (0 picks one)")
      ->check(CLI::Range(0, 65535))
      ->needs(cert)
      ->group("TLS");
}

// Parses the command line; returns the exit status to leave with (0 after
// --help, 2 on bad flags), or -1 to go on. Not CLI11_PARSE: it exits with
// CLI11's own codes (105, 109...), and the contract says 2.
inline int parseFlags(CLI::App& cli, int argc, char** argv) {
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;
  }
  return -1;
}

// SIGHUP → App::reloadTls, on the first loop: no thread of our own. The
// handle is unreferenced, so it never keeps listen() running; listen()
// closes it with the loop before it returns.
struct ReloadOnHangup {
  uv_signal_t signal{};
  spry::App* app = nullptr;

  void start(spry::App& a) {
    auto loops = a.loops();
    if (loops.empty()) return;
    app = &a;
    uv_signal_init(loops.front().raw(), &signal);
    signal.data = this;
    uv_signal_start(
        &signal,
        [](uv_signal_t* h, int) {
          // reloadTls logs what happened: the reload, or why it failed.
          static_cast<ReloadOnHangup*>(h->data)->app->reloadTls();
        },
        SIGHUP);
    uv_unref(reinterpret_cast<uv_handle_t*>(&signal));
  }
};

inline void printListening(const char* scheme, const std::string& host, std::uint16_t port) {
  bool v6 = host.find(':') != std::string::npos;
  std::printf("listening on %s://%s%s%s:%u/\n", scheme, v6 ? "[" : "", host.c_str(), v6 ? "]" : "",
              static_cast<unsigned>(port));
}

// Validates what CLI11 cannot, then serves. Returns the process exit status.
inline int serve(spry::App& app, ServerFlags& flags) {
  const bool tls = !flags.certFile.empty();
  if (tls) {
    spry::TlsOptions options{
        .certFile = flags.certFile, .keyFile = flags.keyFile, .keyPassphrase = flags.keyPassphrase};
    if (flags.tlsPort >= 0) {
      flags.listen.also.push_back({.host = flags.listen.host,
                                   .port = static_cast<std::uint16_t>(flags.tlsPort),
                                   .tls = std::move(options)});
    } else {
      flags.listen.tls = std::move(options);
    }
  }
  ReloadOnHangup hangup;  // outlives listen(), which closes its handle
  flags.listen.onListening = [&app, &hangup, tls, first = flags.listen.tls.has_value()](
                                 const std::string& host, std::uint16_t port) {
    printListening(first ? "https" : "http", host, port);
    auto listeners = app.listeners();
    for (std::size_t i = 1; i < listeners.size(); ++i) {
      printListening(listeners[i].secure ? "https" : "http", listeners[i].host, listeners[i].port);
    }
    std::fflush(stdout);
    if (tls) hangup.start(app);
  };
  try {
    app.listen(flags.listen);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace examples
