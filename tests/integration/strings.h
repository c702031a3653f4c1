#pragma once
// String building for tests that GCC 12 compiles cleanly at -O3: it raises a
// false -Wrestrict inside libstdc++ for "literal" + std::string temporaries.

#include <string>
#include <string_view>

namespace spry::test {

// a + b: cat("m", std::to_string(7)) is "m7".
inline std::string cat(std::string_view a, std::string_view b) {
  std::string s;
  s.reserve(a.size() + b.size());
  s.append(a).append(b);
  return s;
}

}  // namespace spry::test
