// Fuzzes the opening-handshake checks: input lines are "Name: value" headers.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "http/handshake.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  spry::Headers headers;
  while (!input.empty()) {
    auto nl = input.find('\n');
    std::string_view line = input.substr(0, nl);
    input = nl == std::string_view::npos ? std::string_view{} : input.substr(nl + 1);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    headers.add(std::string(line.substr(0, colon)), std::string(line.substr(colon + 1)));
  }
  std::vector<std::string> protocols{"chat", "superchat"};
  auto r = spry::detail::checkHandshake(headers, protocols);
  if (r.kind == spry::detail::HandshakeResult::Kind::kAccept) {
    if (r.accept.size() != 28) std::abort();
    if (!r.protocol.empty() && r.protocol != "chat" && r.protocol != "superchat") std::abort();
    // The input's headers double as a middleware's: they must never split
    // the 101 nor repeat or override the handshake's own fields.
    std::string out;
    spry::detail::writeUpgradeResponse(out, r, headers);
    if (out.find("\r\n\r\n") != out.size() - 4) std::abort();
    std::size_t upgrade = 0, connection = 0, accept = 0, protocol = 0, framing = 0;
    for (std::string_view rest(out); !rest.empty();) {
      const std::size_t eol = rest.find("\r\n");
      const std::string_view line = rest.substr(0, eol);
      rest.remove_prefix(eol + 2);
      const std::string_view name = line.substr(0, line.find(':'));
      upgrade += spry::equalsIgnoreCase(name, "Upgrade");
      connection += spry::equalsIgnoreCase(name, "Connection");
      accept += spry::equalsIgnoreCase(name, "Sec-WebSocket-Accept");
      protocol += spry::equalsIgnoreCase(name, "Sec-WebSocket-Protocol");
      framing += spry::equalsIgnoreCase(name, "Content-Length") ||
                 spry::equalsIgnoreCase(name, "Transfer-Encoding");
    }
    if (upgrade != 1 || connection != 1 || accept != 1 || framing != 0 ||
        protocol != (r.protocol.empty() ? 0u : 1u)) {
      std::abort();
    }
  }
  spry::detail::hasToken(headers.get("Connection"), "upgrade");
  spry::detail::originAllowed(headers.get("Origin"), protocols);
  return 0;
}
