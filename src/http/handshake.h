#pragma once
// WebSocket opening handshake (RFC 6455 section 4.2): checks an HTTP request's
// headers and writes the 101 answer. Bytes and strings only, no socket.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "spry/headers.h"
#include "spry/request_headers.h"

namespace spry::detail {

// True when the comma-separated `list` holds `token`, ignoring ASCII case and
// optional whitespace around elements ("keep-alive, Upgrade" holds "upgrade").
bool hasToken(std::string_view list, std::string_view token) noexcept;

// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), via OpenSSL.
std::string computeAccept(std::string_view key);

struct HandshakeResult {
  enum class Kind {
    kAccept,      // answer 101 with `accept` and `protocol`
    kNotUpgrade,  // no "Upgrade: websocket" + "Connection: upgrade": fallback handler or 426
    kBadVersion,  // Sec-WebSocket-Version missing or not 13: 426 with "Sec-WebSocket-Version: 13"
    kBadKey,      // Sec-WebSocket-Key missing, repeated, or not base64 of 16 bytes: 400
  };
  Kind kind = Kind::kNotUpgrade;
  std::string accept;      // Sec-WebSocket-Accept value when kAccept
  std::string protocol;    // chosen subprotocol, empty when none
  std::string extensions;  // Sec-WebSocket-Extensions of the 101, empty when none
};

// Checks the headers of a GET request. `supportedProtocols` is in the server's
// order of preference; the first of them that the client offered in
// Sec-WebSocket-Protocol (comma lists, possibly in several header fields) is
// chosen; a protocol the client did not offer is never chosen.
// For a request's headers, or a Headers list (tests).
template <class HeaderList>
HandshakeResult checkHandshake(const HeaderList& headers,
                               std::span<const std::string> supportedProtocols);
extern template HandshakeResult checkHandshake(const Headers&, std::span<const std::string>);
extern template HandshakeResult checkHandshake(const RequestHeaders&, std::span<const std::string>);

// True when `allowList` is empty, holds "*", or holds `origin` exactly
// (scheme://host[:port], compared ignoring ASCII case).
bool originAllowed(std::string_view origin, std::span<const std::string> allowList) noexcept;

// True when `origin` is one a browser shows for a page of a server bound to
// `boundHost`:`port`: http (https when `secure`), the bound host (IPv6 in
// brackets) and, for a loopback or wildcard bind, also localhost, 127.0.0.1
// and [::1]; the port may be left out when it is 80 (443 for https).
// Ignores ASCII case.
// Names that only DNS maps to the server are not its own (DNS rebinding).
bool isOwnOrigin(std::string_view origin, std::string_view boundHost, std::uint16_t port,
                 bool secure = false) noexcept;

// Appends the "HTTP/1.1 101 Switching Protocols" response for a kAccept result
// through writeHead: Upgrade, Connection, Sec-WebSocket-Accept and (when one was
// chosen) Sec-WebSocket-Protocol, then `extra` (the middleware's headers) less
// those four names, Content-Length and Transfer-Encoding. Every field gets
// writeHead's check; no Date unless `extra` has one.
void writeUpgradeResponse(std::string& out, const HandshakeResult& result, const Headers& extra);

}  // namespace spry::detail
