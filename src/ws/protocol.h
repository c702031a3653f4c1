#pragma once
// RFC 6455 facts that both directions share: the receive side
// (frame_guard.h, the session's fast path) and the send side
// (frame_writer.h, the only code that writes frame bytes).

#include <cstddef>
#include <cstdint>

namespace spry::detail {

enum class WsOpcode : std::uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

inline constexpr std::uint16_t kCloseNormal = 1000;
inline constexpr std::uint16_t kCloseGoingAway = 1001;
inline constexpr std::uint16_t kCloseProtocolError = 1002;
inline constexpr std::uint16_t kCloseUnsupportedData = 1003;
inline constexpr std::uint16_t kCloseNoStatus = 1005;  // never sent on the wire
inline constexpr std::uint16_t kCloseAbnormal = 1006;  // never sent on the wire
inline constexpr std::uint16_t kCloseInvalidPayload = 1007;
inline constexpr std::uint16_t kClosePolicyViolation = 1008;
inline constexpr std::uint16_t kCloseMessageTooBig = 1009;
inline constexpr std::uint16_t kCloseInternalError = 1011;

// Codes an endpoint may put in a Close frame: 1000-1003, 1007-1014, 3000-4999.
constexpr bool isValidCloseCode(std::uint16_t code) noexcept {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

// Control frames (Close, Ping, Pong) carry at most this much, either way.
inline constexpr std::size_t kMaxControlPayload = 125;

// The longest compressed payload (permessage-deflate) accepted on the wire
// for a message whose inflated size may be `maxMessageBytes`: deflate can
// grow incompressible data a little. Saturates.
constexpr std::uint64_t maxCompressedBytes(std::uint64_t maxMessageBytes) noexcept {
  const std::uint64_t slack = maxMessageBytes / 8 + 1024;
  return maxMessageBytes > UINT64_MAX - slack ? UINT64_MAX : maxMessageBytes + slack;
}

// Bits of a frame's first two bytes.
inline constexpr std::uint8_t kFinBit = 0x80;
inline constexpr std::uint8_t kRsv1Bit = 0x40;
inline constexpr std::uint8_t kRsvBits = 0x70;
inline constexpr std::uint8_t kMaskBit = 0x80;

// A big-endian field of the wire (an extended length, a close code).
inline std::uint64_t readBigEndian(const std::uint8_t* p, int bytes) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

}  // namespace spry::detail
