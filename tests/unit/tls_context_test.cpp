#include "tls/tls_context.h"

#include <doctest/doctest.h>

#include <openssl/ssl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>

#include "tls/ticket_key_store.h"
#include "tls_certs.h"
#include "tls_client.h"

using namespace spry::detail;
using spry::TlsOptions;
using spry_test::serverOptions;
using spry_test::TlsCerts;

namespace {

// The message TlsContext::create throws for `o`, or "" when it builds.
std::string setupError(const TlsOptions& o) {
  try {
    TlsContext::create(o, nullptr);
    return "";
  } catch (const std::runtime_error& e) {
    return e.what();
  }
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("TlsContext: RSA and EC certificates build, with or without a passphrase") {
    CHECK(setupError(serverOptions("ec")) == "");
    CHECK(setupError(serverOptions("rsa")) == "");
    auto o = serverOptions("ec");
    o.keyFile = TlsCerts::get().path("ec.enc.key");
    o.keyPassphrase = "s3cret";
    CHECK(setupError(o) == "");
    o.minVersion = spry::TlsVersion::k1_3;
    o.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
    o.cipherSuites = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
    CHECK(setupError(o) == "");
  }

  TEST_CASE("TlsContext: every setup error names the file and OpenSSL's reason") {
    const auto& c = TlsCerts::get();
    auto o = serverOptions();
    SUBCASE("missing certificate file") {
      o.certFile = c.path("nope.pem");
      const auto e = setupError(o);
      CHECK(contains(e, "certificate file \"" + c.path("nope.pem") + "\""));
      CHECK(contains(e, "No such file or directory"));
    }
    SUBCASE("a certificate file with no certificate") {
      o.certFile = c.path("empty.pem");
      const auto e = setupError(o);
      CHECK(contains(e, "certificate file \"" + c.path("empty.pem") + "\""));
      CHECK(contains(e, "no start line"));
    }
    SUBCASE("missing key file") {
      o.keyFile = c.path("nope.key");
      const auto e = setupError(o);
      CHECK(contains(e, "key file \"" + c.path("nope.key") + "\""));
      CHECK(contains(e, "No such file or directory"));
    }
    SUBCASE("a bad key") {
      o.keyFile = c.path("garbage.key");
      const auto e = setupError(o);
      CHECK(contains(e, "key file \"" + c.path("garbage.key") + "\": not a PEM private key"));
    }
    SUBCASE("a certificate as the key") {
      o.keyFile = c.path("ec.pem");
      CHECK(contains(setupError(o), "\": not a PEM private key"));
    }
    SUBCASE("a key that does not match the certificate") {
      o.keyFile = c.path("api.key");
      const auto e = setupError(o);
      CHECK(contains(e, "key file \"" + c.path("api.key") + "\" does not match certificate \"" +
                            c.path("ec.pem") + "\""));
      CHECK(contains(e, "key values mismatch"));
    }
    SUBCASE("an RSA key for an EC certificate") {
      o.keyFile = c.path("rsa.key");
      const auto e = setupError(o);
      CHECK(contains(e, "does not match certificate"));
      CHECK(contains(e, "key type mismatch"));
    }
    SUBCASE("a wrong passphrase") {
      o.keyFile = c.path("ec.enc.key");
      o.keyPassphrase = "wrong";
      const auto e = setupError(o);
      CHECK(contains(e, "key file \"" + c.path("ec.enc.key") + "\": wrong passphrase"));
      CHECK(contains(e, "bad decrypt"));
    }
    SUBCASE("an encrypted key without a passphrase") {
      o.keyFile = c.path("ec.enc.key");
      CHECK(contains(setupError(o), "key file \"" + c.path("ec.enc.key") +
                                        "\": the key is encrypted and no passphrase was given"));
    }
    SUBCASE("an SNI entry's bad file") {
      o.serverNames = {{.name = "api.example.com",
                        .certFile = c.path("api.pem"),
                        .keyFile = c.path("missing.key")}};
      CHECK(contains(setupError(o), "key file \"" + c.path("missing.key") + "\""));
    }
    SUBCASE("no certificate") {
      o.certFile.clear();
      CHECK(contains(setupError(o), "no certificate file"));
    }
    SUBCASE("bad cipher lists") {
      o.ciphers = "NOT-A-CIPHER";
      CHECK(contains(setupError(o), "ciphers \"NOT-A-CIPHER\": no cipher match"));
      o.ciphers.clear();
      o.cipherSuites = "TLS_NOPE";
      CHECK(contains(setupError(o), "cipherSuites \"TLS_NOPE\""));
    }
    SUBCASE("verifyClient without or with a missing CA file") {
      o.verifyClient = true;
      CHECK(contains(setupError(o), "verifyClient needs a caFile"));
      o.caFile = c.path("nope-ca.pem");
      const auto e = setupError(o);
      CHECK(contains(e, "CA file \"" + c.path("nope-ca.pem") + "\""));
      CHECK(contains(e, "No such file or directory"));
    }
  }

  TEST_CASE("TlsContext: SNI names match without case, and a wildcard stands for one label") {
    const auto& c = TlsCerts::get();
    auto o = serverOptions();
    o.serverNames = {
        {.name = "API.example.com", .certFile = c.path("api.pem"), .keyFile = c.path("api.key")},
        {.name = "*.example.net", .certFile = c.path("wild.pem"), .keyFile = c.path("wild.key")},
    };
    auto ctx = TlsContext::create(o, nullptr);
    auto* api = ctx->forServerName("api.example.com");
    auto* wild = ctx->forServerName("x.example.net");
    REQUIRE(api != nullptr);
    REQUIRE(wild != nullptr);
    CHECK(api != wild);
    CHECK(ctx->forServerName("Api.Example.Com") == api);
    CHECK(ctx->forServerName("WILD.example.NET") == wild);
    CHECK(ctx->forServerName("example.net") == nullptr);
    CHECK(ctx->forServerName("a.b.example.net") == nullptr);
    CHECK(ctx->forServerName(".example.net") == nullptr);
    CHECK(ctx->forServerName("localhost") == nullptr);
    CHECK(ctx->forServerName("") == nullptr);
  }

  TEST_CASE("TicketKeyStore: rotates on its clock and keeps the previous key for decryption") {
    auto now = TicketKeyStore::Clock::time_point{} + std::chrono::hours(100);
    TicketKeyStore store(std::chrono::seconds(60), [&] { return now; });
    TicketKeyStore::Key first, again, second, found;
    REQUIRE(store.encryptionKey(first));
    now += std::chrono::seconds(59);
    REQUIRE(store.encryptionKey(again));
    CHECK(std::memcmp(&first, &again, sizeof(first)) == 0);
    CHECK(store.find(first.name, found) == TicketKeyStore::Match::kCurrent);
    now += std::chrono::seconds(1);
    REQUIRE(store.encryptionKey(second));
    CHECK(std::memcmp(first.name, second.name, sizeof(first.name)) != 0);
    CHECK(store.find(second.name, found) == TicketKeyStore::Match::kCurrent);
    CHECK(store.find(first.name, found) == TicketKeyStore::Match::kPrevious);
    CHECK(std::memcmp(found.aes, first.aes, sizeof(found.aes)) == 0);
    now += std::chrono::seconds(60);
    CHECK(store.find(first.name, found) == TicketKeyStore::Match::kNone);
    CHECK(store.find(second.name, found) == TicketKeyStore::Match::kPrevious);
    unsigned char unknown[16] = {};
    CHECK(store.find(unknown, found) == TicketKeyStore::Match::kNone);
  }

  TEST_CASE("TlsServerConfig: a reload swaps in new files; a bad file leaves the old set") {
    auto& c = TlsCerts::get();
    // Files of its own, rewritten by the test.
    c.issue("reload", "first.example");
    auto o = serverOptions("reload");
    TlsServerConfig config(o);
    auto first = config.current();
    REQUIRE(first);

    // A session open before the reload keeps its context.
    spry_test::TlsServer before(first);
    spry_test::TlsClient beforeClient;
    spry_test::pump(beforeClient, before);
    REQUIRE(before.session.state() == TlsState::kOpen);
    CHECK(beforeClient.peerSubject() == "/CN=first.example");

    c.issue("reload", "second.example");
    std::string error;
    auto second = config.reload(error);
    REQUIRE(second);
    CHECK(error.empty());
    CHECK(config.current() == second);
    CHECK(second != first);
    {
      spry_test::TlsServer server(config.current());
      spry_test::TlsClient client;
      spry_test::pump(client, server);
      REQUIRE(server.session.state() == TlsState::kOpen);
      CHECK(client.peerSubject() == "/CN=second.example");
    }
    // The old context lives while its session does, and still works.
    first.reset();
    beforeClient.write("still here");
    spry_test::pump(beforeClient, before);
    CHECK(before.plain == "still here");
    CHECK(before.session.write("and here"));
    spry_test::pump(beforeClient, before);
    CHECK(beforeClient.plain == "and here");

    // A bad file: the reload fails, says why, and the second set serves on.
    c.writeFile("reload.key", c.readFile("api.key"));
    auto third = config.reload(error);
    CHECK_FALSE(third);
    CHECK(contains(error, "does not match certificate"));
    c.writeFile("reload.pem", "");
    CHECK_FALSE(config.reload(error));
    CHECK(contains(error, "certificate file \"" + c.path("reload.pem") + "\""));
    CHECK(config.current() == second);
    spry_test::TlsServer server(config.current());
    spry_test::TlsClient client;
    spry_test::pump(client, server);
    CHECK(server.session.state() == TlsState::kOpen);
    CHECK(client.peerSubject() == "/CN=second.example");
  }
}
