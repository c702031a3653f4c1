#pragma once
// UTF-8 validation (RFC 3629) for what we send and for what the session
// receives without wslay (whole text frames, Close reasons).

#include <cstdint>
#include <cstring>
#include <string_view>

namespace spry::detail {

inline constexpr std::uint64_t kHighBits = 0x8080808080808080ull;

// The full validator: no overlongs, no surrogates, nothing above U+10FFFF.
// ASCII runs inside are still skipped a word at a time.
inline bool isValidUtf8From(const unsigned char* p, const unsigned char* end) noexcept {
  while (p < end) {
    if (end - p >= 8) {
      std::uint64_t word;
      std::memcpy(&word, p, 8);
      if ((word & kHighBits) == 0) {
        p += 8;
        continue;
      }
    }
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (static_cast<std::size_t>(end - p) < len) return false;
    for (std::size_t i = 1; i < len; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return false;
    }
    p += len;
  }
  return true;
}

// ASCII is the common case: eight bytes at a time up to the first word with
// a high bit, then the full validator from there.
inline bool isValidUtf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (end - p >= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    if ((word & kHighBits) != 0) break;
    p += 8;
  }
  return isValidUtf8From(p, end);
}

}  // namespace spry::detail
