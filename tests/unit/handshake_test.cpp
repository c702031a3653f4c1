#include "http/handshake.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using spry::Headers;
using spry::detail::checkHandshake;
using spry::detail::computeAccept;
using spry::detail::HandshakeResult;
using spry::detail::hasToken;
using spry::detail::isOwnOrigin;
using spry::detail::originAllowed;
using spry::detail::writeUpgradeResponse;
using Kind = HandshakeResult::Kind;

namespace {

constexpr const char* kRfcKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr const char* kRfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// The request of RFC 6455 section 1.3, minus what the check ignores.
Headers rfcRequest() {
  Headers h;
  h.add("Host", "server.example.com");
  h.add("Upgrade", "websocket");
  h.add("Connection", "Upgrade");
  h.add("Sec-WebSocket-Key", kRfcKey);
  h.add("Origin", "http://example.com");
  h.add("Sec-WebSocket-Version", "13");
  return h;
}

HandshakeResult check(const Headers& h, const std::vector<std::string>& protocols = {}) {
  return checkHandshake(h, protocols);
}

}  // namespace

TEST_SUITE("hasToken") {
  TEST_CASE("single tokens, any case") {
    CHECK(hasToken("upgrade", "upgrade"));
    CHECK(hasToken("Upgrade", "upgrade"));
    CHECK(hasToken("UPGRADE", "Upgrade"));
    CHECK_FALSE(hasToken("upgrades", "upgrade"));
    CHECK_FALSE(hasToken("upgrad", "upgrade"));
    CHECK_FALSE(hasToken("", "upgrade"));
  }
  TEST_CASE("lists with odd spacing") {
    CHECK(hasToken("keep-alive, Upgrade", "upgrade"));
    CHECK(hasToken("keep-alive,Upgrade", "upgrade"));
    CHECK(hasToken("  Upgrade  ,keep-alive", "upgrade"));
    CHECK(hasToken("keep-alive,\tUpgrade\t", "upgrade"));
    CHECK(hasToken(",,upgrade,,", "upgrade"));
    CHECK(hasToken("a , b , c", "b"));
    CHECK_FALSE(hasToken("keep-alive", "upgrade"));
    CHECK_FALSE(hasToken("keep-alive upgrade", "upgrade"));
    CHECK_FALSE(hasToken("up grade", "upgrade"));
    CHECK_FALSE(hasToken(", ,", "upgrade"));
  }
}

TEST_SUITE("computeAccept") {
  TEST_CASE("the RFC 6455 example") {
    CHECK(computeAccept(kRfcKey) == kRfcAccept);
  }
  TEST_CASE("other keys give other 28-character answers") {
    const std::string a = computeAccept("AQIDBAUGBwgJCgsMDQ4PEA==");
    CHECK(a.size() == 28);
    CHECK(a != kRfcAccept);
    CHECK(computeAccept("") == "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=");
  }
}

TEST_SUITE("checkHandshake") {
  TEST_CASE("the RFC request is accepted") {
    const HandshakeResult r = check(rfcRequest());
    CHECK(r.kind == Kind::kAccept);
    CHECK(r.accept == kRfcAccept);
    CHECK(r.protocol.empty());
  }

  TEST_CASE("header names and token values ignore case") {
    Headers h;
    h.add("upgrade", "WebSocket");
    h.add("CONNECTION", "keep-alive, UPGRADE");
    h.add("sec-websocket-key", kRfcKey);
    h.add("sec-websocket-version", "13");
    CHECK(check(h).kind == Kind::kAccept);
  }

  TEST_CASE("tokens may sit in any of several fields") {
    Headers h = rfcRequest();
    h.set("Connection", "keep-alive");
    h.add("Connection", "upgrade");
    h.set("Upgrade", "h2c");
    h.add("Upgrade", " websocket ");
    CHECK(check(h).kind == Kind::kAccept);
  }

  TEST_CASE("not an upgrade") {
    Headers h = rfcRequest();
    h.remove("Upgrade");
    CHECK(check(h).kind == Kind::kNotUpgrade);

    h = rfcRequest();
    h.set("Upgrade", "h2c");
    CHECK(check(h).kind == Kind::kNotUpgrade);

    h = rfcRequest();
    h.set("Upgrade", "websocket/13");
    CHECK(check(h).kind == Kind::kNotUpgrade);

    h = rfcRequest();
    h.remove("Connection");
    CHECK(check(h).kind == Kind::kNotUpgrade);

    h = rfcRequest();
    h.set("Connection", "keep-alive");
    CHECK(check(h).kind == Kind::kNotUpgrade);

    h = rfcRequest();
    h.set("Connection", "websocket");
    h.set("Upgrade", "upgrade");
    CHECK(check(h).kind == Kind::kNotUpgrade);

    CHECK(check(Headers{}).kind == Kind::kNotUpgrade);
  }

  TEST_CASE("not an upgrade is reported before a bad version or key") {
    Headers h;
    h.add("Upgrade", "websocket");
    h.add("Sec-WebSocket-Version", "8");
    CHECK(check(h).kind == Kind::kNotUpgrade);
  }

  TEST_CASE("bad version") {
    for (const char* v : {"", "8", "12", "14", "013", "13,8", "13, 13", "thirteen"}) {
      CAPTURE(v);
      Headers h = rfcRequest();
      h.set("Sec-WebSocket-Version", v);
      CHECK(check(h).kind == Kind::kBadVersion);
    }
    Headers h = rfcRequest();
    h.remove("Sec-WebSocket-Version");
    CHECK(check(h).kind == Kind::kBadVersion);

    h = rfcRequest();
    h.add("Sec-WebSocket-Version", "13");
    CHECK(check(h).kind == Kind::kBadVersion);

    h = rfcRequest();
    h.set("Sec-WebSocket-Version", " 13\t");
    CHECK(check(h).kind == Kind::kAccept);
  }

  TEST_CASE("a bad version is reported before a bad key") {
    Headers h = rfcRequest();
    h.set("Sec-WebSocket-Version", "8");
    h.remove("Sec-WebSocket-Key");
    CHECK(check(h).kind == Kind::kBadVersion);
  }

  TEST_CASE("bad key") {
    const char* bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ",      // padding missing
        "dGhlIHNhbXBsZSBub25jZQ=",     // padding short
        "dGhlIHNhbXBsZSBub25jZQ===",   // too long
        "dGhlIHNhbXBsZSBub25j",        // 15 bytes
        "dGhlIHNhbXBsZSBub25jZQ1=",    // 17 bytes
        "dGhlIHNhbXBsZSBub25jZQAA",    // 18 bytes
        "dGhlIHNhbXBs ZSBub25jZQ==",   // inner space
        "dGhlIHNhbXBsZSBub25jZ!==",    // not base64
        "dGhlIHNhbXBsZSBub25jZ-==",    // base64url, not base64
        "dGhlIHNhbXBsZSBub25jZQ==,x",  // a list
    };
    for (const char* key : bad) {
      CAPTURE(key);
      Headers h = rfcRequest();
      h.set("Sec-WebSocket-Key", key);
      CHECK(check(h).kind == Kind::kBadKey);
    }

    Headers h = rfcRequest();
    h.remove("Sec-WebSocket-Key");
    CHECK(check(h).kind == Kind::kBadKey);

    h = rfcRequest();
    h.add("Sec-WebSocket-Key", kRfcKey);
    CHECK(check(h).kind == Kind::kBadKey);
  }

  TEST_CASE("a key surrounded by whitespace is trimmed before hashing") {
    Headers h = rfcRequest();
    h.set("Sec-WebSocket-Key", std::string(" ") + kRfcKey + " ");
    const HandshakeResult r = check(h);
    CHECK(r.kind == Kind::kAccept);
    CHECK(r.accept == kRfcAccept);
  }

  TEST_CASE("keys with + and / are base64 too") {
    Headers h = rfcRequest();
    h.set("Sec-WebSocket-Key", "++//++//++//++//++//+w==");
    CHECK(check(h).kind == Kind::kAccept);
  }

  TEST_CASE("subprotocol: the server's first preference the client offered") {
    Headers h = rfcRequest();
    h.add("Sec-WebSocket-Protocol", "chat, superchat");
    CHECK(check(h, {"superchat", "chat"}).protocol == "superchat");
    CHECK(check(h, {"chat", "superchat"}).protocol == "chat");
    CHECK(check(h, {"mqtt", "chat"}).protocol == "chat");
  }

  TEST_CASE("subprotocol offers may span several fields with odd spacing") {
    Headers h = rfcRequest();
    h.add("Sec-WebSocket-Protocol", " a ,b");
    h.add("Sec-WebSocket-Protocol", "c\t,  d ");
    CHECK(check(h, {"d"}).protocol == "d");
    CHECK(check(h, {"c"}).protocol == "c");
    CHECK(check(h, {"x", "b"}).protocol == "b");
  }

  TEST_CASE("a protocol the client did not offer is never chosen") {
    Headers h = rfcRequest();
    CHECK(check(h, {"chat"}).protocol.empty());
    CHECK(check(h, {"chat"}).kind == Kind::kAccept);

    h.add("Sec-WebSocket-Protocol", "chat.v2, superchat");
    CHECK(check(h, {"chat"}).protocol.empty());
    CHECK(check(h, {"Superchat"}).protocol.empty());
    CHECK(check(h, {"super"}).protocol.empty());
    CHECK(check(h, {""}).protocol.empty());
    CHECK(check(h, {}).protocol.empty());

    Headers empty = rfcRequest();
    empty.add("Sec-WebSocket-Protocol", "");
    CHECK(check(empty, {""}).protocol.empty());
  }

  TEST_CASE("failed checks carry no accept value") {
    Headers h = rfcRequest();
    h.set("Sec-WebSocket-Version", "8");
    const HandshakeResult r = check(h, {"chat"});
    CHECK(r.accept.empty());
    CHECK(r.protocol.empty());
  }
}

TEST_SUITE("originAllowed") {
  TEST_CASE("an empty list allows everything") {
    CHECK(originAllowed("https://evil.example", {}));
    CHECK(originAllowed("", {}));
  }
  TEST_CASE("* allows everything") {
    const std::vector<std::string> list = {"https://a.example", "*"};
    CHECK(originAllowed("https://evil.example", list));
    CHECK(originAllowed("", list));
  }
  TEST_CASE("exact entries, ignoring case") {
    const std::vector<std::string> list = {"https://app.example.com", "http://localhost:8080"};
    CHECK(originAllowed("https://app.example.com", list));
    CHECK(originAllowed("HTTPS://App.Example.COM", list));
    CHECK(originAllowed("http://localhost:8080", list));
    CHECK_FALSE(originAllowed("http://localhost:8081", list));
    CHECK_FALSE(originAllowed("http://localhost", list));
    CHECK_FALSE(originAllowed("http://app.example.com", list));
    CHECK_FALSE(originAllowed("https://app.example.com.evil", list));
    CHECK_FALSE(originAllowed("https://evil.app.example.com", list));
    CHECK_FALSE(originAllowed("null", list));
    CHECK_FALSE(originAllowed("", list));
  }
}

TEST_SUITE("isOwnOrigin") {
  TEST_CASE("a loopback bind: its address and the loopback names, at the bound port") {
    CHECK(isOwnOrigin("http://127.0.0.1:8080", "127.0.0.1", 8080));
    CHECK(isOwnOrigin("http://localhost:8080", "127.0.0.1", 8080));
    CHECK(isOwnOrigin("HTTP://LocalHost:8080", "127.0.0.1", 8080));
    CHECK(isOwnOrigin("http://[::1]:8080", "127.0.0.1", 8080));
    CHECK(isOwnOrigin("http://[::1]:8080", "::1", 8080));
    CHECK_FALSE(isOwnOrigin("http://127.0.0.1:8081", "127.0.0.1", 8080));
    CHECK_FALSE(isOwnOrigin("http://127.0.0.1", "127.0.0.1", 8080));
    CHECK_FALSE(isOwnOrigin("https://127.0.0.1:8080", "127.0.0.1", 8080));  // no TLS here
    CHECK_FALSE(isOwnOrigin("http://127.0.0.1:8080.evil", "127.0.0.1", 8080));
    CHECK_FALSE(isOwnOrigin("http://127.0.0.1:08080", "127.0.0.1", 8080));
    CHECK_FALSE(isOwnOrigin("http://127.0.0.1:", "127.0.0.1", 8080));
    CHECK_FALSE(isOwnOrigin("http://localhost.evil:8080", "127.0.0.1", 8080));
    CHECK_FALSE(isOwnOrigin("http://::1:8080", "::1", 8080));  // IPv6 needs brackets
    CHECK_FALSE(isOwnOrigin("null", "127.0.0.1", 8080));
    CHECK_FALSE(isOwnOrigin("", "127.0.0.1", 8080));
    CHECK_FALSE(isOwnOrigin("http://127.0.0.1:0", "127.0.0.1", 0));  // not listening
  }
  TEST_CASE("port 80 may be left out") {
    CHECK(isOwnOrigin("http://localhost", "localhost", 80));
    CHECK(isOwnOrigin("http://localhost:80", "localhost", 80));
    CHECK_FALSE(isOwnOrigin("http://localhost", "localhost", 8080));
  }
  TEST_CASE("a wildcard bind knows only the loopback names; a named bind only its name") {
    CHECK(isOwnOrigin("http://localhost:9000", "0.0.0.0", 9000));
    CHECK(isOwnOrigin("http://[::1]:9000", "::", 9000));
    CHECK_FALSE(isOwnOrigin("http://0.0.0.0:9000", "0.0.0.0", 9000));
    CHECK_FALSE(isOwnOrigin("http://my-laptop.lan:9000", "0.0.0.0", 9000));
    CHECK(isOwnOrigin("http://10.1.2.3:9000", "10.1.2.3", 9000));
    CHECK_FALSE(isOwnOrigin("http://localhost:9000", "10.1.2.3", 9000));
  }
}

TEST_SUITE("writeUpgradeResponse") {
  TEST_CASE("without a subprotocol: today's bytes, no Date") {
    const HandshakeResult r = check(rfcRequest());
    std::string out = "prefix|";
    writeUpgradeResponse(out, r, {});
    CHECK(out ==
          "prefix|"
          "HTTP/1.1 101 Switching Protocols\r\n"
          "Upgrade: websocket\r\n"
          "Connection: Upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
          "\r\n");
  }
  TEST_CASE("with a subprotocol") {
    Headers h = rfcRequest();
    h.add("Sec-WebSocket-Protocol", "chat, superchat");
    std::string out;
    writeUpgradeResponse(out, check(h, {"chat"}), {});
    CHECK(out ==
          "HTTP/1.1 101 Switching Protocols\r\n"
          "Upgrade: websocket\r\n"
          "Connection: Upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
          "Sec-WebSocket-Protocol: chat\r\n"
          "\r\n");
  }
  TEST_CASE("a configured subprotocol that could split the response is not echoed") {
    Headers h = rfcRequest();
    h.add("Sec-WebSocket-Protocol", "bad\r\nX-Injected: 1");
    std::string out;
    const HandshakeResult result = check(h, {"bad\r\nX-Injected: 1"});
    REQUIRE(result.protocol == "bad\r\nX-Injected: 1");
    writeUpgradeResponse(out, result, {});
    CHECK(out ==
          "HTTP/1.1 101 Switching Protocols\r\n"
          "Upgrade: websocket\r\n"
          "Connection: Upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
          "\r\n");
  }
  TEST_CASE("the middleware's headers follow, in order, a Date of theirs included") {
    Headers extra;
    extra.add("Set-Cookie", "session=abc; HttpOnly");
    extra.add("X-Request-Id", "42");
    extra.add("Set-Cookie", "theme=dark");
    extra.add("Date", "Sun, 06 Nov 1994 08:49:37 GMT");
    std::string out;
    writeUpgradeResponse(out, check(rfcRequest()), extra);
    CHECK(out ==
          "HTTP/1.1 101 Switching Protocols\r\n"
          "Upgrade: websocket\r\n"
          "Connection: Upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
          "Set-Cookie: session=abc; HttpOnly\r\n"
          "X-Request-Id: 42\r\n"
          "Set-Cookie: theme=dark\r\n"
          "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
          "\r\n");
  }
  TEST_CASE("fields that could split the response are dropped") {
    Headers extra;
    extra.add("X-Split", "a\r\n\r\nHTTP/1.1 200 OK");
    extra.add("X-LF", "a\nSet-Cookie: evil=1");
    extra.add("X-CR", "a\rb");
    extra.add("X-NUL", std::string("a\0b", 3));
    extra.add("Bad Name", "v");
    extra.add("Bad:Name", "v");
    extra.add("", "empty name");
    extra.add("X-Kept", "yes");
    std::string out;
    writeUpgradeResponse(out, check(rfcRequest()), extra);
    CHECK(out ==
          "HTTP/1.1 101 Switching Protocols\r\n"
          "Upgrade: websocket\r\n"
          "Connection: Upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
          "X-Kept: yes\r\n"
          "\r\n");
  }
  TEST_CASE("the result's own fields get the same check") {
    HandshakeResult r = check(rfcRequest());
    r.protocol = "chat\r\nSet-Cookie: evil=1";
    std::string out;
    writeUpgradeResponse(out, r, {});
    CHECK(out ==
          "HTTP/1.1 101 Switching Protocols\r\n"
          "Upgrade: websocket\r\n"
          "Connection: Upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
          "\r\n");
  }
  TEST_CASE("the six names the handshake owns are dropped from the extra headers, any case") {
    Headers extra;
    extra.add("sec-websocket-accept", "forged");
    extra.add("Sec-WebSocket-Protocol", "superchat");
    extra.add("UPGRADE", "h2c");
    extra.add("Connection", "close");
    extra.add("Content-Length", "5");
    extra.add("transfer-encoding", "chunked");
    extra.add("X-Kept", "yes");
    SUBCASE("without a subprotocol chosen") {
      std::string out;
      writeUpgradeResponse(out, check(rfcRequest()), extra);
      CHECK(out ==
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "X-Kept: yes\r\n"
            "\r\n");
    }
    SUBCASE("with one chosen") {
      Headers h = rfcRequest();
      h.add("Sec-WebSocket-Protocol", "chat");
      std::string out;
      writeUpgradeResponse(out, check(h, {"chat"}), extra);
      CHECK(out ==
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: chat\r\n"
            "X-Kept: yes\r\n"
            "\r\n");
    }
  }
}
