#pragma once
// The send side of RFC 6455 framing: the one place that knows the bytes of a
// server frame. Server frames are never masked, so one framed buffer can go
// to any number of sockets (SharedFrame).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ws/protocol.h"

namespace spry::detail {

// The longest header of a server frame (no mask key, 64-bit length).
inline constexpr std::size_t kMaxFrameHeader = 10;
// What a Close's payload leaves for the reason after its 2-byte code.
inline constexpr std::size_t kMaxCloseReason = kMaxControlPayload - 2;

// Length of the header written for a payload of this size.
constexpr std::size_t frameHeaderSize(std::uint64_t payloadSize) noexcept {
  return payloadSize < 126 ? 2 : payloadSize <= 0xFFFF ? 4 : kMaxFrameHeader;
}

// Writes the header of one unmasked server frame to `out`, which has room
// for kMaxFrameHeader bytes; returns its length (frameHeaderSize). Inline:
// every message sent goes through it.
inline std::size_t writeFrameHeader(char* out, WsOpcode opcode, std::uint64_t payloadSize,
                                    bool fin = true, bool rsv1 = false) noexcept {
  out[0] =
      static_cast<char>((fin ? kFinBit : 0) | (rsv1 ? kRsv1Bit : 0) | static_cast<int>(opcode));
  if (payloadSize < 126) {
    out[1] = static_cast<char>(payloadSize);
    return 2;
  }
  if (payloadSize <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<char>(payloadSize >> 8);
    out[3] = static_cast<char>(payloadSize);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<char>(payloadSize >> (56 - 8 * i));
  return kMaxFrameHeader;
}

// Appends the header of one unmasked server frame.
void appendFrameHeader(std::string& out, WsOpcode opcode, std::uint64_t payloadSize,
                       bool fin = true, bool rsv1 = false);

// Appends one whole (FIN) text or binary frame; rsv1 marks a compressed payload.
void appendDataFrame(std::string& out, bool binary, std::string_view payload, bool rsv1 = false);

// A frame ready for the wire, framed once and shared by every socket it goes to.
using SharedFrame = std::shared_ptr<const std::string>;
// One whole (FIN) frame: header and payload in one buffer reserved to their size.
SharedFrame makeSharedFrame(WsOpcode opcode, std::string_view payload, bool rsv1 = false);

// A whole control frame held by value, for senders that must not allocate.
struct ControlFrame {
  char bytes[2 + kMaxControlPayload];
  std::uint8_t size = 0;
  std::string_view view() const noexcept { return {bytes, size}; }
};
// A Ping or a Pong (any control opcode); the payload is cut to kMaxControlPayload bytes.
ControlFrame makeControlFrame(WsOpcode opcode, std::string_view payload) noexcept;
// A Close: code 0 makes an empty one (the reason is ignored); a reason over
// kMaxCloseReason bytes is cut before the code point that straddles the
// limit, so valid UTF-8 stays valid. The code is not checked.
ControlFrame makeCloseFrame(std::uint16_t code, std::string_view reason) noexcept;

// Appends makeControlFrame(opcode, payload).
void appendControlFrame(std::string& out, WsOpcode opcode, std::string_view payload);
// Appends makeCloseFrame(code, reason).
void appendCloseFrame(std::string& out, std::uint16_t code, std::string_view reason);

}  // namespace spry::detail
