#include "http/handshake.h"

#include <openssl/evp.h>

#include <algorithm>

#include "http/http_writer.h"
#include "http/token.h"

namespace spry::detail {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// Calls `f` on each trimmed, non-empty element of a comma list, stopping when it returns true.
template <typename F>
bool anyElement(std::string_view list, F&& f) {
  while (true) {
    const std::size_t comma = list.find(',');
    const std::string_view element = trimOws(list.substr(0, comma));
    if (!element.empty() && f(element)) return true;
    if (comma == std::string_view::npos) return false;
    list.remove_prefix(comma + 1);
  }
}

template <class HeaderList>
bool anyFieldHasToken(const HeaderList& headers, std::string_view name, std::string_view token) {
  for (const auto& [n, value] : headers) {
    if (equalsIgnoreCase(n, name) && hasToken(value, token)) return true;
  }
  return false;
}

constexpr bool isBase64Char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// 16 bytes encode to exactly 22 significant characters plus "==", so checking
// the shape is the same as decoding and counting, without a decoder that
// might forgive whitespace or missing padding.
bool isNonce(std::string_view key) noexcept {
  return key.size() == 24 && key.substr(22) == "==" &&
         std::all_of(key.begin(), key.begin() + 22, isBase64Char);
}

}  // namespace

bool hasToken(std::string_view list, std::string_view token) noexcept {
  return anyElement(list, [token](std::string_view e) { return equalsIgnoreCase(e, token); });
}

std::string computeAccept(std::string_view key) {
  std::string input;
  input.reserve(key.size() + kGuid.size());
  input.append(key).append(kGuid);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digestSize = 0;
  EVP_Digest(input.data(), input.size(), digest, &digestSize, EVP_sha1(), nullptr);
  // EVP_EncodeBlock writes 4 characters per 3 bytes plus a NUL.
  unsigned char encoded[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int encodedSize = EVP_EncodeBlock(encoded, digest, int(digestSize));
  return std::string(reinterpret_cast<const char*>(encoded), std::size_t(encodedSize));
}

template <class HeaderList>
HandshakeResult checkHandshake(const HeaderList& headers,
                               std::span<const std::string> supportedProtocols) {
  HandshakeResult result;
  if (!anyFieldHasToken(headers, "Upgrade", "websocket") ||
      !anyFieldHasToken(headers, "Connection", "upgrade")) {
    result.kind = HandshakeResult::Kind::kNotUpgrade;
    return result;
  }

  const std::vector<std::string_view> versions = headers.getAll("Sec-WebSocket-Version");
  if (versions.size() != 1 || trimOws(versions.front()) != "13") {
    result.kind = HandshakeResult::Kind::kBadVersion;
    return result;
  }

  const std::vector<std::string_view> keys = headers.getAll("Sec-WebSocket-Key");
  if (keys.size() != 1 || !isNonce(trimOws(keys.front()))) {
    result.kind = HandshakeResult::Kind::kBadKey;
    return result;
  }

  result.kind = HandshakeResult::Kind::kAccept;
  result.accept = computeAccept(trimOws(keys.front()));

  // Exact comparison: the client checks the echoed name byte for byte.
  const std::vector<std::string_view> offers = headers.getAll("Sec-WebSocket-Protocol");
  for (const std::string& supported : supportedProtocols) {
    const bool offered = std::any_of(offers.begin(), offers.end(), [&](std::string_view field) {
      return anyElement(field, [&](std::string_view e) { return e == supported; });
    });
    if (offered) {
      result.protocol = supported;
      break;
    }
  }
  return result;
}

template HandshakeResult checkHandshake(const Headers&, std::span<const std::string>);
template HandshakeResult checkHandshake(const RequestHeaders&, std::span<const std::string>);

bool originAllowed(std::string_view origin, std::span<const std::string> allowList) noexcept {
  if (allowList.empty()) return true;
  return std::any_of(allowList.begin(), allowList.end(), [origin](const std::string& allowed) {
    return allowed == "*" || equalsIgnoreCase(allowed, origin);
  });
}

namespace {
bool startsWithNoCase(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && equalsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

bool isLoopbackOrAny(std::string_view host) noexcept {
  return host == "localhost" || host == "::1" || host == "0.0.0.0" || host == "::" ||
         host.substr(0, 4) == "127.";
}

// `hostPort` is `host` followed by ":port", or by nothing for the default port.
bool matchesHostPort(std::string_view hostPort, std::string_view host, bool bracket,
                     std::uint16_t port, std::uint16_t defaultPort) noexcept {
  std::size_t at = 0;
  if (bracket) {
    if (hostPort.empty() || hostPort[0] != '[') return false;
    at = 1;
  }
  if (!equalsIgnoreCase(hostPort.substr(at, host.size()), host)) return false;
  at += host.size();
  if (bracket) {
    if (at >= hostPort.size() || hostPort[at] != ']') return false;
    ++at;
  }
  std::string_view rest = hostPort.substr(at);
  if (rest.empty()) return port == defaultPort;
  if (rest[0] != ':' || rest.size() < 2 || rest.size() > 6) return false;
  unsigned value = 0;
  for (char c : rest.substr(1)) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return rest[1] != '0' && value == port;
}
}  // namespace

bool isOwnOrigin(std::string_view origin, std::string_view boundHost, std::uint16_t port,
                 bool secure) noexcept {
  // The scheme is the listener's: an https page on a plain listener's host
  // and port is another origin (a TLS proxy in front has its own, for
  // allowedOrigins), and so is an http page on a TLS listener's.
  const std::uint16_t defaultPort = secure ? 443 : 80;
  const std::string_view scheme = secure ? "https://" : "http://";
  if (!startsWithNoCase(origin, scheme)) return false;
  origin.remove_prefix(scheme.size());
  if (port == 0 || origin.empty()) return false;
  if (boundHost != "0.0.0.0" && boundHost != "::") {
    const bool v6 = boundHost.find(':') != std::string_view::npos;
    if (matchesHostPort(origin, boundHost, v6, port, defaultPort)) return true;
  }
  if (!isLoopbackOrAny(boundHost)) return false;
  return matchesHostPort(origin, "localhost", false, port, defaultPort) ||
         matchesHostPort(origin, "127.0.0.1", false, port, defaultPort) ||
         matchesHostPort(origin, "::1", true, port, defaultPort);
}

void writeUpgradeResponse(std::string& out, const HandshakeResult& result, const Headers& extra) {
  // The handshake's fields: a middleware's would contradict them. writeHead
  // drops Content-Length and Transfer-Encoding from every response itself.
  static constexpr std::string_view kReserved[] = {"Upgrade", "Connection", "Sec-WebSocket-Accept",
                                                   "Sec-WebSocket-Protocol",
                                                   "Sec-WebSocket-Extensions"};
  FieldView own[5] = {
      {"Upgrade", "websocket"},
      {"Connection", "Upgrade"},
      {"Sec-WebSocket-Accept", result.accept},
  };
  std::size_t ownCount = 3;
  // writeHead trusts `own`: a configured protocol name that could split the
  // response is left out, as writeHead drops such a field of a middleware's.
  if (!result.protocol.empty() && isSafeField("Sec-WebSocket-Protocol", result.protocol)) {
    own[ownCount++] = {"Sec-WebSocket-Protocol", result.protocol};
  }
  // Made by deflateResponse: tokens only.
  if (!result.extensions.empty()) own[ownCount++] = {"Sec-WebSocket-Extensions", result.extensions};
  // An interim response needs no Date (RFC 9110 6.6.1) and, keep-alive or
  // not, gets no Connection from the writer.
  writeHead(out, 101, std::span(own, ownCount), kReserved, extra, BodyFraming::kNone, 0, true,
            false, {});
}

}  // namespace spry::detail
