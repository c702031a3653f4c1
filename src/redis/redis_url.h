#pragma once
// Where a Redis server is and how to log in: redis://[user:password@]host:port.
// Redis pub/sub ignores databases, so the URL takes no /db; rediss:// (TLS)
// waits for the TLS transport.

#include <cstdint>
#include <string>
#include <string_view>

namespace spry::detail {

struct RedisUrl {
  static constexpr std::uint16_t kDefaultPort = 6379;

  // Parses a URL; throws std::invalid_argument with a message that names the
  // problem (and never repeats the password).
  static RedisUrl parse(std::string_view url);

  std::string host;  // a name, an IPv4 address, or an IPv6 address without brackets
  std::uint16_t port = kDefaultPort;
  std::string user;      // percent-decoded; empty: AUTH with the password alone
  std::string password;  // percent-decoded

  // Whether the client must send AUTH after connecting.
  bool hasCredentials() const noexcept { return !user.empty() || !password.empty(); }
  // "host:port" ("[::1]:6379" for IPv6), for messages: no credentials.
  std::string endpoint() const;
};

}  // namespace spry::detail
