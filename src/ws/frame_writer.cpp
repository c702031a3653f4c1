#include "ws/frame_writer.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace spry::detail {

void appendFrameHeader(std::string& out, WsOpcode opcode, std::uint64_t payloadSize, bool fin,
                       bool rsv1) {
  char h[kMaxFrameHeader];
  out.append(h, writeFrameHeader(h, opcode, payloadSize, fin, rsv1));
}

void appendDataFrame(std::string& out, bool binary, std::string_view payload, bool rsv1) {
  appendFrameHeader(out, binary ? WsOpcode::kBinary : WsOpcode::kText, payload.size(), true, rsv1);
  out.append(payload);
}

SharedFrame makeSharedFrame(WsOpcode opcode, std::string_view payload, bool rsv1) {
  auto frame = std::make_shared<std::string>();
  frame->reserve(frameHeaderSize(payload.size()) + payload.size());
  appendFrameHeader(*frame, opcode, payload.size(), true, rsv1);
  frame->append(payload);
  return frame;
}

ControlFrame makeControlFrame(WsOpcode opcode, std::string_view payload) noexcept {
  assert(static_cast<std::uint8_t>(opcode) >= static_cast<std::uint8_t>(WsOpcode::kClose));
  const std::size_t n = std::min(payload.size(), kMaxControlPayload);
  ControlFrame frame;
  const std::size_t header = writeFrameHeader(frame.bytes, opcode, n);
  if (n != 0) std::memcpy(frame.bytes + header, payload.data(), n);
  frame.size = static_cast<std::uint8_t>(header + n);
  return frame;
}

ControlFrame makeCloseFrame(std::uint16_t code, std::string_view reason) noexcept {
  ControlFrame frame;
  std::size_t payload = 0;
  if (code != 0) {
    std::size_t n = reason.size();
    if (n > kMaxCloseReason) {
      // Cut before the code point that straddles the limit.
      n = kMaxCloseReason;
      while (n > 0 && (static_cast<std::uint8_t>(reason[n]) & 0xC0) == 0x80) --n;
    }
    frame.bytes[2] = static_cast<char>(code >> 8);
    frame.bytes[3] = static_cast<char>(code);
    if (n != 0) std::memcpy(frame.bytes + 4, reason.data(), n);
    payload = 2 + n;
  }
  frame.size =
      static_cast<std::uint8_t>(writeFrameHeader(frame.bytes, WsOpcode::kClose, payload) + payload);
  return frame;
}

void appendControlFrame(std::string& out, WsOpcode opcode, std::string_view payload) {
  out.append(makeControlFrame(opcode, payload).view());
}

void appendCloseFrame(std::string& out, std::uint16_t code, std::string_view reason) {
  out.append(makeCloseFrame(code, reason).view());
}

}  // namespace spry::detail
