#pragma once
// String building for tests that GCC 12 compiles cleanly at -O3: it raises a
// false -Wrestrict inside libstdc++ for "literal" + std::string temporaries.

#include <string>
#include <string_view>

namespace spry::test {

// The parts joined: cat("m", std::to_string(7), "s") is "m7s".
template <class... Parts>
std::string cat(const Parts&... parts) {
  const std::string_view views[] = {std::string_view(parts)...};
  std::size_t size = 0;
  for (std::string_view v : views) size += v.size();
  std::string s;
  s.reserve(size);
  for (std::string_view v : views) s.append(v);
  return s;
}

}  // namespace spry::test
