#pragma once
// The command-line contract every example shares: --host, --port, --threads;
// "listening on http://HOST:PORT/" as the first line on stdout; exit 0 after a
// graceful shutdown, 1 when it cannot listen, 2 on bad flags.

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include <spry/spry.h>

namespace examples {

struct ServerFlags {
  spry::ListenOptions listen;
};

// Adds the shared flags to `cli`; call before CLI11_PARSE.
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

// Validates what CLI11 cannot, then serves. Returns the process exit status.
inline int serve(spry::App& app, ServerFlags& flags) {
  flags.listen.onListening = [](const std::string& host, std::uint16_t port) {
    bool v6 = host.find(':') != std::string::npos;
    std::printf("listening on http://%s%s%s:%u/\n", v6 ? "[" : "", host.c_str(), v6 ? "]" : "",
                static_cast<unsigned>(port));
    std::fflush(stdout);
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
