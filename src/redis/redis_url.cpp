#include "redis/redis_url.h"

#include <arpa/inet.h>

#include <stdexcept>

namespace spry::detail {

namespace {

[[noreturn]] void reject(std::string_view problem) {
  throw std::invalid_argument("spry: Redis URL " + std::string(problem));
}

bool equalsLower(std::string_view s, std::string_view lower) noexcept {
  if (s.size() != lower.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

int hexValue(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// `what` names the part in the message: the part itself may be a secret.
std::string percentDecode(std::string_view s, const char* what) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (s.size() - i < 3 || hexValue(s[i + 1]) < 0 || hexValue(s[i + 2]) < 0) {
      reject(std::string("has a bad percent-encoding in the ") + what +
             " ('%' must be followed by two hex digits)");
    }
    out += static_cast<char>(hexValue(s[i + 1]) * 16 + hexValue(s[i + 2]));
    i += 2;
  }
  return out;
}

bool isHostNameChar(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

std::uint16_t parsePort(std::string_view s) {
  bool ok = !s.empty() && s.size() <= 5;
  unsigned value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      ok = false;
      break;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (!ok || value == 0 || value > 65535) {
    reject("port '" + std::string(s) + "' is not a number from 1 to 65535");
  }
  return static_cast<std::uint16_t>(value);
}

}  // namespace

RedisUrl RedisUrl::parse(std::string_view url) {
  const std::size_t schemeEnd = url.find("://");
  if (schemeEnd == std::string_view::npos) {
    reject("has no scheme: write redis://host:port");
  }
  const std::string_view scheme = url.substr(0, schemeEnd);
  if (equalsLower(scheme, "rediss")) {
    reject("scheme rediss:// (Redis over TLS) is not supported yet: use redis://");
  }
  if (!equalsLower(scheme, "redis")) {
    reject("scheme '" + std::string(scheme) + "://' is not supported: use redis://host:port");
  }

  std::string_view rest = url.substr(schemeEnd + 3);
  const std::size_t authorityEnd = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, authorityEnd);
  if (authorityEnd != std::string_view::npos) {
    const std::string_view tail = rest.substr(authorityEnd);
    // An '@' past the authority means a user name or password with a raw '/',
    // '?' or '#': say so without repeating any of it.
    if (tail.find('@') != std::string_view::npos) {
      reject("has a user name or password with a raw '/', '?' or '#': percent-encode them");
    }
    if (tail[0] == '?') reject("takes no query ('" + std::string(tail) + "')");
    if (tail[0] == '#') reject("takes no fragment ('" + std::string(tail) + "')");
    if (tail != "/") {
      reject("takes no path ('" + std::string(tail) +
             "'): Redis pub/sub ignores databases, so there is no /db to choose");
    }
  }

  RedisUrl out;
  std::string_view hostPort = authority;
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userInfo = authority.substr(0, at);
    const std::size_t colon = userInfo.find(':');
    if (colon == std::string_view::npos) {
      reject(
          "has a user name without ':': write redis://user:password@host, or "
          "redis://:password@host for a password alone");
    }
    out.user = percentDecode(userInfo.substr(0, colon), "user name");
    out.password = percentDecode(userInfo.substr(colon + 1), "password");
    hostPort = authority.substr(at + 1);
  }

  std::string_view portText;
  bool hasPort = false;
  if (!hostPort.empty() && hostPort[0] == '[') {
    const std::size_t close = hostPort.find(']');
    if (close == std::string_view::npos) reject("has an IPv6 address without its closing ']'");
    out.host = std::string(hostPort.substr(1, close - 1));
    in6_addr address;
    if (::inet_pton(AF_INET6, out.host.c_str(), &address) != 1) {
      reject("host '[" + out.host + "]' is not an IPv6 address");
    }
    const std::string_view after = hostPort.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') reject("has '" + std::string(after) + "' after the IPv6 address");
      hasPort = true;
      portText = after.substr(1);
    }
  } else {
    const std::size_t colon = hostPort.find(':');
    if (colon != std::string_view::npos &&
        hostPort.find(':', colon + 1) != std::string_view::npos) {
      reject("host '" + std::string(hostPort) +
             "' looks like an IPv6 address: put it in brackets, as in redis://[::1]:6379");
    }
    out.host = std::string(hostPort.substr(0, colon));
    if (colon != std::string_view::npos) {
      hasPort = true;
      portText = hostPort.substr(colon + 1);
    }
    for (char c : out.host) {
      if (!isHostNameChar(c)) {
        reject("host '" + out.host +
               "' is not a host name, an IPv4 address or a bracketed IPv6 "
               "address");
      }
    }
  }
  if (out.host.empty()) reject("has no host: write redis://host:port");
  if (hasPort) out.port = parsePort(portText);
  return out;
}

std::string RedisUrl::endpoint() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace spry::detail
