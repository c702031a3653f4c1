// TLS listeners over loopback: https with keep-alive and pipelining, wss
// echo, mutual TLS, SNI, reload with open connections, resumption, setup
// errors, hostile first flights, renegotiation, TCP ends without
// close_notify, and the per-loop handshake budget. The clients are OpenSSL
// over real sockets; the certificates are made at test time.

#include <fcntl.h>

#include <filesystem>
#include <memory>

#include "ssl_client.h"
#include "strings.h"

using namespace spry;
using namespace spry::test;
using spry::test::ClientConfig;
using spry::test::SslClient;
using spry_test::serverOptions;
using spry_test::TlsCerts;

namespace {

std::string body(const std::string& response) {
  return response.substr(response.find("\r\n\r\n") + 4);
}

// An app whose "/" tells how the request came and "/cert" the client's certificate.
void addRoutes(App& app) {
  app.get("/", [](Request& req) { return Response::text(req.isSecure() ? "secure" : "plain"); });
  app.get("/cert", [](Request& req) {
    const TlsPeerCertificate* c = req.peerCertificate();
    return Response::text(c ? c->subject : "none");
  });
  app.ws("/echo",
         [](WebSocket ws, Request& req) {
           const bool secure = req.isSecure();
           ws.listen([ws, secure](const Message& m) mutable {
             ws.add(std::string(secure ? "wss:" : "ws:") + std::string(m.data()));
           });
         },
         {.allowOwnOrigin = true});
}

ListenOptions tlsListen(TlsOptions tls) {
  ListenOptions o;
  o.port = 0;
  o.tls = std::move(tls);
  return o;
}

// A masked client text frame.
std::string clientFrame(std::string_view text) {
  std::string f;
  f += static_cast<char>(0x81);
  f += static_cast<char>(0x80 | text.size());
  const char mask[4] = {1, 2, 3, 4};
  f.append(mask, 4);
  for (std::size_t i = 0; i < text.size(); ++i) f += static_cast<char>(text[i] ^ mask[i % 4]);
  return f;
}

Stats statsOf(App& app, TestServer& server) {
  return server.onLoop([&] { return app.stats(); });
}

}  // namespace

TEST_CASE("https: keep-alive, pipelining, ALPN, isSecure, and a plain listener beside it") {
  App app;
  addRoutes(app);
  ListenOptions o = tlsListen(serverOptions());
  o.also.push_back({.host = "127.0.0.1", .port = 0});
  TestServer server(app, o);

  const auto listeners = app.listeners();
  REQUIRE(listeners.size() == 2);
  CHECK(listeners[0].secure);
  CHECK(listeners[0].port == server.port());
  CHECK_FALSE(listeners[1].secure);
  CHECK(listeners[1].port != 0);

  SslClient c(server.port());
  REQUIRE(c.handshake());
  const unsigned char* alpn = nullptr;
  unsigned alpnSize = 0;
  SSL_get0_alpn_selected(c.ssl(), &alpn, &alpnSize);
  CHECK(std::string(reinterpret_cast<const char*>(alpn), alpnSize) == "http/1.1");
  auto r1 = c.get("/");
  REQUIRE(r1);
  CHECK(r1->rfind("HTTP/1.1 200", 0) == 0);
  CHECK(body(*r1) == "secure");
  auto r2 = c.get("/");  // the same connection
  REQUIRE(r2);
  CHECK(body(*r2) == "secure");

  // Pipelined: three requests in one record.
  std::string three;
  for (int i = 0; i < 3; ++i) three += "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
  REQUIRE(c.send(three));
  for (int i = 0; i < 3; ++i) {
    auto r = c.response();
    REQUIRE(r);
    CHECK(body(*r) == "secure");
  }

  // A large response crosses many records and a blocked socket.
  // (The plain listener answers the same routes, not secure.)
  RawClient plain(listeners[1].port);
  REQUIRE(plain.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto pr = plain.readUntil("plain");
  CHECK(pr.has_value());

  const Stats s = statsOf(app, server);
  CHECK(s.tlsHandshakes == 1);
  CHECK(s.tlsHandshakeFailures == 0);
}

TEST_CASE("https: a large response and a large request body cross many records") {
  App app;
  const std::string big(3 * 1024 * 1024 + 7, 'x');
  app.get("/big", [&big](Request&) { return Response::text(big); });
  app.post("/len", [](Request& req) { return Response::text(std::to_string(req.text().size())); });
  TestServer server(app, tlsListen(serverOptions()));
  SslClient c(server.port());
  REQUIRE(c.handshake());
  auto r = c.get("/big");
  REQUIRE(r);
  CHECK(body(*r) == big);
  const std::string payload(700 * 1024, 'y');
  REQUIRE(c.send(cat("POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: ",
                     std::to_string(payload.size()), "\r\n\r\n")));
  REQUIRE(c.send(payload));
  auto r2 = c.response();
  REQUIRE(r2);
  CHECK(body(*r2) == std::to_string(payload.size()));
}

TEST_CASE("wss: echo through the TLS transport, with the handler told it is secure") {
  App app;
  addRoutes(app);
  TestServer server(app, tlsListen(serverOptions()));
  SslClient c(server.port());
  REQUIRE(c.handshake());
  REQUIRE(c.send(
      "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Origin: https://localhost:" +
      std::to_string(server.port()) + "\r\n\r\n"));
  std::string in;
  while (in.find("\r\n\r\n") == std::string::npos) {
    std::string more = c.readSome();
    REQUIRE_FALSE(more.empty());
    in += more;
  }
  CHECK(in.rfind("HTTP/1.1 101", 0) == 0);
  in.erase(0, in.find("\r\n\r\n") + 4);
  for (int i = 0; i < 50; ++i) {
    const std::string text = "hello " + std::to_string(i);
    REQUIRE(c.send(clientFrame(text)));
    const std::string want = "wss:" + text;
    while (in.size() < 2 + want.size()) {
      std::string more = c.readSome();
      REQUIRE_FALSE(more.empty());
      in += more;
    }
    CHECK(static_cast<unsigned char>(in[0]) == 0x81);
    CHECK(in.substr(2, want.size()) == want);
    in.erase(0, 2 + want.size());
  }
}

TEST_CASE("wss: an http:// page is not the TLS listener's own origin") {
  App app;
  addRoutes(app);
  TestServer server(app, tlsListen(serverOptions()));
  const std::string port = std::to_string(server.port());
  CHECK(server.onLoop([&] { return app.isOwnOrigin("https://localhost:" + port); }));
  CHECK(server.onLoop([&] { return app.isOwnOrigin("https://127.0.0.1:" + port); }));
  CHECK_FALSE(server.onLoop([&] { return app.isOwnOrigin("http://localhost:" + port); }));
  SslClient c(server.port());
  REQUIRE(c.handshake());
  REQUIRE(c.send(
      "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Origin: http://localhost:" +
      port + "\r\n\r\n"));
  auto r = c.response();
  REQUIRE(r);
  CHECK_MESSAGE(r->rfind("HTTP/1.1 403", 0) == 0, *r);
}

TEST_CASE("mutual TLS: a client certificate from the CA is accepted and shown, others refused") {
  App app;
  addRoutes(app);
  TlsOptions tls = serverOptions();
  tls.caFile = TlsCerts::get().path("ca.pem");
  tls.verifyClient = true;
  TestServer server(app, tlsListen(tls));
  const auto& certs = TlsCerts::get();

  ClientConfig alice;
  alice.certFile = certs.path("client.pem");
  alice.keyFile = certs.path("client.key");
  {
    SslClient c(server.port(), alice);
    REQUIRE(c.handshake());
    auto r = c.get("/cert");
    REQUIRE(r);
    CHECK(body(*r) == "CN=alice");
  }
  {
    // No certificate: TLS 1.3 lets the client finish first; the server's
    // alert ends the connection before any answer.
    SslClient c(server.port());
    const bool shook = c.handshake();
    if (shook) CHECK_FALSE(c.get("/cert").has_value());
  }
  {
    ClientConfig mallory;
    mallory.certFile = certs.path("rogue-client.pem");
    mallory.keyFile = certs.path("rogue-client.key");
    SslClient c(server.port(), mallory);
    const bool shook = c.handshake();
    if (shook) CHECK_FALSE(c.get("/cert").has_value());
  }
  // Resumption works with client verification (a session id context is set).
  SSL_SESSION* session = nullptr;
  {
    SslClient c(server.port(), alice);
    REQUIRE(c.handshake());
    REQUIRE(c.get("/cert"));  // the tickets arrive with the first records
    session = c.session();
  }
  REQUIRE(session);
  {
    ClientConfig again = alice;
    again.resume = session;
    SslClient c(server.port(), again);
    REQUIRE(c.handshake());
    CHECK(c.isResumed());
    auto r = c.get("/cert");
    REQUIRE(r);
    CHECK(body(*r) == "CN=alice");
  }
  SSL_SESSION_free(session);
  const Stats s = statsOf(app, server);
  CHECK(s.tlsHandshakeFailures == 2);
  CHECK(s.tlsResumed == 1);
}

TEST_CASE("SNI picks the certificate by name; the top-level one is the default") {
  App app;
  addRoutes(app);
  const auto& certs = TlsCerts::get();
  TlsOptions tls = serverOptions();
  tls.serverNames.push_back({.name = "api.example.com",
                             .certFile = certs.path("api.pem"),
                             .keyFile = certs.path("api.key")});
  TestServer server(app, tlsListen(tls));
  {
    ClientConfig c;
    c.serverName = "api.example.com";
    SslClient client(server.port(), c);
    REQUIRE(client.handshake());
    CHECK(client.peerName() == "api.example.com");
    CHECK(client.get("/").has_value());
  }
  {
    SslClient client(server.port());
    REQUIRE(client.handshake());
    CHECK(client.peerName() == "localhost");
  }
  {
    ClientConfig c;
    c.serverName = "";  // no SNI at all
    c.caFile = "";
    SslClient client(server.port(), c);
    REQUIRE(client.handshake());
    CHECK(client.peerName() == "localhost");
  }
}

TEST_CASE(
    "reloadTls: new connections get the new certificate, open ones keep going; a bad file "
    "changes nothing") {
  const auto& certs = TlsCerts::get();
  namespace fs = std::filesystem;
  const std::string cert = certs.path("reload.pem");
  const std::string key = certs.path("reload.key");
  fs::copy_file(certs.path("ec.pem"), cert, fs::copy_options::overwrite_existing);
  fs::copy_file(certs.path("ec.key"), key, fs::copy_options::overwrite_existing);
  App app;
  addRoutes(app);
  TlsOptions tls;
  tls.certFile = cert;
  tls.keyFile = key;
  TestServer server(app, tlsListen(tls));

  SslClient before(server.port());
  REQUIRE(before.handshake());
  CHECK(before.peerName() == "localhost");
  REQUIRE(before.get("/"));

  // A handshake in flight during the reload: the server has answered the
  // ClientHello, and the client's last flight only comes after the reload.
  // (Memory BIOs: the client cannot run ahead of the test.)
  RawClient midwaySocket(server.port());
  SSL_CTX* midwayCtx = SSL_CTX_new(TLS_client_method());
  SSL* midway = SSL_new(midwayCtx);
  BIO* midwayIn = BIO_new(BIO_s_mem());
  BIO* midwayOut = BIO_new(BIO_s_mem());
  SSL_set_bio(midway, midwayIn, midwayOut);
  SSL_set_connect_state(midway);
  auto midwayStep = [&] {
    const int r = SSL_do_handshake(midway);
    char* data = nullptr;
    const long n = BIO_get_mem_data(midwayOut, &data);
    if (n > 0) REQUIRE(midwaySocket.send(std::string_view(data, static_cast<std::size_t>(n))));
    (void)BIO_reset(midwayOut);
    return r;
  };
  CHECK(midwayStep() != 1);  // the ClientHello
  const std::string serverFlight = midwaySocket.readSome();
  REQUIRE_FALSE(serverFlight.empty());
  BIO_write(midwayIn, serverFlight.data(), static_cast<int>(serverFlight.size()));

  ClientConfig other;
  other.serverName = "other.example.com";
  fs::copy_file(certs.path("other.pem"), cert, fs::copy_options::overwrite_existing);
  fs::copy_file(certs.path("other.key"), key, fs::copy_options::overwrite_existing);
  CHECK(app.reloadTls());

  // Now the client's last flight: the server completes with the certificate
  // it started with.
  CHECK(midwayStep() == 1);
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(SSL_get0_peer_certificate(midway)),
                            NID_commonName, cn, sizeof(cn));
  CHECK(std::string(cn) == "localhost");
  static constexpr std::string_view kGet = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(SSL_write(midway, kGet.data(), static_cast<int>(kGet.size())) > 0);
  midwayStep();
  CHECK(midwaySocket.readSome().size() > 0);  // an answer (encrypted), so the server finished
  SSL_free(midway);
  SSL_CTX_free(midwayCtx);

  SslClient after(server.port(), other);
  REQUIRE(after.handshake());
  CHECK(after.peerName() == "other.example.com");
  auto r = before.get("/");  // the old connection still works
  REQUIRE(r);
  CHECK(body(*r) == "secure");

  // A bad file: false, and the certificate in service stays.
  certs.writeFile("reload.pem", "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n");
  CHECK_FALSE(app.reloadTls());
  SslClient third(server.port(), other);
  REQUIRE(third.handshake());
  CHECK(third.peerName() == "other.example.com");
  // A key that does not match the certificate: also refused.
  fs::copy_file(certs.path("api.pem"), cert, fs::copy_options::overwrite_existing);
  CHECK_FALSE(app.reloadTls());
}

TEST_CASE("reloadTls from another thread while handshakes run") {
  App app;
  addRoutes(app);
  TestServer server(app, tlsListen(serverOptions()));
  setLogLevel(LogLevel::kWarn);  // one info line per reload
  std::atomic<bool> done{false};
  std::thread reloader([&] {
    while (!done) {
      CHECK(app.reloadTls());
      std::this_thread::sleep_for(1ms);
    }
  });
  for (int i = 0; i < 30; ++i) {
    SslClient c(server.port());
    REQUIRE(c.handshake());
    auto r = c.get("/");
    REQUIRE(r);
    CHECK(body(*r) == "secure");
  }
  done = true;
  reloader.join();
  setLogLevel(LogLevel::kInfo);
}

TEST_CASE("resumption: a ticket from the first connection resumes the second, TLS 1.3 and 1.2") {
  App app;
  addRoutes(app);
  TestServer server(app, tlsListen(serverOptions()));
  for (int version : {0, TLS1_2_VERSION}) {
    ClientConfig c;
    c.maxVersion = version;
    SSL_SESSION* session = nullptr;
    {
      SslClient first(server.port(), c);
      REQUIRE(first.handshake());
      CHECK_FALSE(first.isResumed());
      REQUIRE(first.get("/"));
      session = first.session();
    }
    REQUIRE(session);
    c.resume = session;
    SslClient second(server.port(), c);
    REQUIRE(second.handshake());
    CHECK(second.isResumed());
    CHECK(second.get("/").has_value());
    SSL_SESSION_free(session);
  }
  CHECK(statsOf(app, server).tlsResumed == 2);
}

TEST_CASE("setup errors throw from listen, naming the file and OpenSSL's reason") {
  const auto& certs = TlsCerts::get();
  auto error = [](TlsOptions tls) -> std::string {
    App app;
    app.get("/", [](Request&) { return "x"; });
    try {
      TestServer server(app, tlsListen(std::move(tls)));
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "no error";
  };
  {
    TlsOptions t = serverOptions();
    t.certFile = certs.path("missing.pem");
    const std::string e = error(t);
    CHECK(e.find("missing.pem") != std::string::npos);
  }
  {
    TlsOptions t = serverOptions();
    t.keyFile = certs.path("garbage.key");
    const std::string e = error(t);
    CHECK(e.find("garbage.key") != std::string::npos);
  }
  {
    TlsOptions t = serverOptions();
    t.keyFile = certs.path("api.key");  // not ec.pem's key
    const std::string e = error(t);
    CHECK(e.find("api.key") != std::string::npos);
    CHECK(e.find("does not match") != std::string::npos);
  }
  {
    TlsOptions t = serverOptions();
    t.keyFile = certs.path("ec.enc.key");
    t.keyPassphrase = "wrong";
    const std::string e = error(t);
    CHECK(e.find("ec.enc.key") != std::string::npos);
  }
  {
    TlsOptions t = serverOptions();
    t.keyFile = certs.path("ec.enc.key");
    t.keyPassphrase = "s3cret";
    CHECK(error(t) == "no error");
  }
  {
    // An error in a further listener's files throws too.
    App app;
    app.get("/", [](Request&) { return "x"; });
    ListenOptions o;
    o.port = 0;
    TlsOptions bad = serverOptions();
    bad.certFile = certs.path("empty.pem");
    o.also.push_back({.host = "127.0.0.1", .port = 0, .tls = bad});
    CHECK_THROWS_WITH_AS(TestServer(app, o), doctest::Contains("empty.pem"), std::runtime_error);
  }
}

TEST_CASE("hostile first flights close that connection only, each counted") {
  App app;
  addRoutes(app);
  TestServer server(app, tlsListen(serverOptions()));
  SslClient good(server.port());
  REQUIRE(good.handshake());

  {
    // Plain HTTP to the TLS port.
    RawClient raw(server.port());
    REQUIRE(raw.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    CHECK(raw.readUntil("\r\n\r\n") == std::nullopt);  // an alert at most, then the end
  }
  {
    // Garbage.
    RawClient raw(server.port());
    REQUIRE(raw.send(std::string(300, '\x16')));
    CHECK(raw.readUntil("\r\n\r\n") == std::nullopt);
  }
  {
    // A client that connects and leaves: no failure.
    RawClient raw(server.port());
  }
  auto r = good.get("/");
  REQUIRE(r);
  CHECK(body(*r) == "secure");
  // The failures are counted once the server has seen them.
  for (int i = 0; i < 200 && statsOf(app, server).tlsHandshakeFailures < 2; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  CHECK(statsOf(app, server).tlsHandshakeFailures == 2);
}

TEST_CASE("TLS 1.2 renegotiation is refused by closing the connection") {
  App app;
  addRoutes(app);
  TestServer server(app, tlsListen(serverOptions()));
  ClientConfig c;
  c.maxVersion = TLS1_2_VERSION;
  SslClient client(server.port(), c);
  REQUIRE(client.handshake());
  REQUIRE(client.get("/"));
  REQUIRE(SSL_renegotiate(client.ssl()) == 1);
  SSL_do_handshake(client.ssl());
  ERR_clear_error();
  // Whatever the client sends next, the connection ends without an answer.
  client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_FALSE(client.response().has_value());
  SslClient other(server.port());
  REQUIRE(other.handshake());
  CHECK(other.get("/").has_value());
  for (int i = 0; i < 200 && statsOf(app, server).tlsErrors < 1; ++i)
    std::this_thread::sleep_for(5ms);
  CHECK(statsOf(app, server).tlsErrors == 1);
}

TEST_CASE("close_notify both ways, and a TCP end without it is an ordinary close") {
  App app;
  addRoutes(app);
  TestServer server(app, tlsListen(serverOptions()));
  {
    // The client sends close_notify: the server answers with its own.
    SslClient c(server.port());
    REQUIRE(c.handshake());
    REQUIRE(c.get("/"));
    CHECK(SSL_shutdown(c.ssl()) == 0);  // ours sent
    CHECK(c.readSome().empty());
    CHECK(c.lastError() == SSL_ERROR_ZERO_RETURN);  // theirs received
  }
  {
    // The server ends the connection (Connection: close): close_notify first.
    SslClient c(server.port());
    REQUIRE(c.handshake());
    REQUIRE(c.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    auto r = c.response();
    REQUIRE(r);
    CHECK(body(*r) == "secure");
    CHECK(c.readSome().empty());
    CHECK(c.lastError() == SSL_ERROR_ZERO_RETURN);
  }
  {
    // The client's TCP end without close_notify.
    SslClient c(server.port());
    REQUIRE(c.handshake());
    REQUIRE(c.get("/"));
    c.raw().shutdownWrite();
    CHECK(c.readSome().empty());
  }
  {
    // A request, then the TCP end, in one go: answered, then closed.
    SslClient c(server.port());
    REQUIRE(c.handshake());
    REQUIRE(c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    c.raw().shutdownWrite();
    auto r = c.response();
    REQUIRE(r);
    CHECK(body(*r) == "secure");
  }
  const Stats s = statsOf(app, server);
  CHECK(s.tlsErrors == 0);
  CHECK(s.tlsHandshakeFailures == 0);
}

TEST_CASE("a burst of handshakes is spread over loop turns, and every one completes") {
  App app;
  addRoutes(app);
  TestServer server(app, tlsListen(serverOptions()));
  constexpr int kClients = 60;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  std::vector<std::unique_ptr<RawClient>> raws;
  std::vector<SSL*> ssls;
  for (int i = 0; i < kClients; ++i) {
    raws.push_back(std::make_unique<RawClient>(server.port()));
    const int fd = raws.back()->fd();
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_connect_state(ssl);
    ssls.push_back(ssl);
  }
  // Every ClientHello out before the server reads any of them.
  server.onLoop([&] {
    for (SSL* ssl : ssls) SSL_do_handshake(ssl);
    return 0;
  });
  int done = 0;
  std::vector<bool> finished(kClients, false);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (done < kClients && std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < kClients; ++i) {
      if (finished[i]) continue;
      const int r = SSL_do_handshake(ssls[i]);
      if (r == 1) {
        finished[i] = true;
        ++done;
      } else if (SSL_get_error(ssls[i], r) != SSL_ERROR_WANT_READ) {
        FAIL("handshake " << i << " failed");
      }
    }
    std::this_thread::sleep_for(1ms);
  }
  ERR_clear_error();
  CHECK(done == kClients);
  const Stats s = statsOf(app, server);
  CHECK(s.tlsHandshakes == kClients);
  CHECK(s.tlsHandshakesDeferred > 0);
  for (SSL* ssl : ssls) SSL_free(ssl);
  SSL_CTX_free(ctx);
}
