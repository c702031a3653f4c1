// Fuzzes the router: lines before an empty line are patterns (METHOD PATTERN),
// the rest are paths to match.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "router.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  spry::detail::RouterOptions options;
  options.caseSensitive = (data[0] & 1) == 0;
  options.strictTrailingSlash = (data[0] & 2) == 0;
  spry::detail::Router router(options);
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  bool patterns = true;
  std::size_t routes = 0;
  static const char* kMethods[] = {"GET", "POST", "*", "HEAD", "PUT"};
  while (!input.empty()) {
    auto nl = input.find('\n');
    std::string_view line = input.substr(0, nl);
    input = nl == std::string_view::npos ? std::string_view{} : input.substr(nl + 1);
    if (line.empty()) {
      patterns = false;
      continue;
    }
    const char* method = kMethods[static_cast<unsigned char>(line[0]) % 5];
    line.remove_prefix(1);
    if (patterns) {
      try {
        router.add(method, line, routes);
        ++routes;
      } catch (const std::invalid_argument&) {
      }
      if (routes > 200) patterns = false;
    } else {
      auto m = router.match(method, line);
      if (m.kind == spry::detail::RouteMatch::Kind::kFound && m.routeId >= routes) std::abort();
      if (m.kind == spry::detail::RouteMatch::Kind::kMethodNotAllowed && m.allow.empty()) {
        std::abort();
      }
    }
  }
  std::string joined = spry::detail::joinPaths(
      std::string_view(reinterpret_cast<const char*>(data), size / 2),
      std::string_view(reinterpret_cast<const char*>(data) + size / 2, size - size / 2));
  if (joined.empty() || joined[0] != '/') std::abort();
  return 0;
}
