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
    std::string out;
    spry::detail::writeHandshakeResponse(out, r);
    if (out.find("\r\n\r\n") != out.size() - 4) std::abort();
  }
  spry::detail::hasToken(headers.get("Connection"), "upgrade");
  spry::detail::originAllowed(headers.get("Origin"), protocols);
  return 0;
}
