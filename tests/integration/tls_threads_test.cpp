// TLS on several loops (App::listen with threads): a ticket issued on one
// loop resumes on another (the key store is shared), and reloadTls from
// another thread while every loop handshakes. In suite 'threads' (TSan).

#include <atomic>
#include <future>
#include <thread>

#include "ssl_client.h"

using namespace spry;
using namespace spry::test;
using spry_test::serverOptions;

namespace {

// App::listen on a background thread with `threads` loops and a TLS listener.
class TlsMtServer {
 public:
  TlsMtServer(App& app, unsigned threads) : app_(app) {
    std::promise<std::uint16_t> bound;
    auto ready = bound.get_future();
    thread_ = std::thread([this, threads, &bound] {
      ListenOptions o;
      o.port = 0;
      o.threads = threads;
      o.handleSignals = false;
      o.tls = serverOptions();
      o.onListening = [&bound](const std::string&, std::uint16_t port) { bound.set_value(port); };
      try {
        app_.listen(o);
      } catch (...) {
        bound.set_exception(std::current_exception());
      }
    });
    port_ = ready.get();
  }
  ~TlsMtServer() {
    app_.stop(std::chrono::milliseconds(2000));
    thread_.join();
  }
  std::uint16_t port() const noexcept { return port_; }

 private:
  App& app_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace

TEST_CASE("TLS on two loops: tickets resume on whichever loop the next connection lands") {
  App app;
  app.get("/", [](Request& req) { return Response::text(req.isSecure() ? "secure" : "plain"); });
  TlsMtServer server(app, 2);
  SSL_SESSION* session = nullptr;
  {
    SslClient first(server.port());
    REQUIRE(first.handshake());
    REQUIRE(first.get("/"));
    session = first.session();
  }
  REQUIRE(session);
  setLogLevel(LogLevel::kWarn);  // one info line per reload
  std::atomic<bool> done{false};
  std::thread reloader([&] {
    while (!done) {
      CHECK(app.reloadTls());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  // The kernel spreads connections over both loops' sockets (SO_REUSEPORT).
  int resumed = 0;
  for (int i = 0; i < 40; ++i) {
    ClientConfig c;
    c.resume = session;
    SslClient client(server.port(), c);
    REQUIRE(client.handshake());
    auto r = client.get("/");
    REQUIRE(r);
    CHECK(r->find("secure") != std::string::npos);
    if (client.isResumed()) ++resumed;
  }
  done = true;
  reloader.join();
  setLogLevel(LogLevel::kInfo);
  SSL_SESSION_free(session);
  CHECK(resumed == 40);
  const Stats s = app.stats();
  CHECK(s.tlsResumed == 40);
  CHECK(s.tlsHandshakes == 41);
}
