#include "ws/frame_guard.h"

#include <algorithm>
#include <cstring>
#include <new>

namespace spry::detail {

// Every check fires at the first byte that reveals the violation, which is
// never later than where wslay would notice it, so wslay is never handed a
// byte it would answer on its own.
std::uint16_t FrameGuard::checkFirstByte(std::uint8_t b0) noexcept {
  const std::uint8_t opcode = b0 & 0x0F;
  // RSV1 only with permessage-deflate, and only where a data message begins
  // (RFC 7692 6): never on a continuation or a control frame.
  if ((b0 & kRsvBits) != 0 &&
      ((b0 & kRsvBits) != kRsv1Bit || !rsv1Allowed || opcode == 0x0 || opcode > 0x2)) {
    return kCloseProtocolError;
  }
  if (opcode >= 0x8) {
    if (opcode > 0xA || (b0 & kFinBit) == 0) return kCloseProtocolError;
    closeFrame = opcode == 0x8;
    return 0;
  }
  if (opcode == 0x0) return fragmented ? 0 : kCloseProtocolError;
  if (opcode <= 0x2) return fragmented ? kCloseProtocolError : 0;
  return kCloseProtocolError;
}

std::uint16_t FrameGuard::checkSecondByte(std::uint8_t b0, std::uint8_t b1) noexcept {
  if ((b1 & kMaskBit) == 0) return kCloseProtocolError;
  const std::uint8_t opcode = b0 & 0x0F;
  const std::uint8_t length7 = b1 & 0x7F;
  if (opcode >= 0x8 && (length7 > kMaxControlPayload || (opcode == 0x8 && length7 == 1))) {
    return kCloseProtocolError;
  }
  headerNeed = static_cast<std::uint8_t>(6 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0));
  return 0;
}

std::uint16_t FrameGuard::finishHeader(const std::uint8_t* h,
                                       std::uint64_t maxMessageBytes) noexcept {
  const std::uint8_t opcode = h[0] & 0x0F;
  const std::uint8_t length7 = h[1] & 0x7F;
  std::uint64_t length = length7;
  if (length7 == 126) {
    length = readBigEndian(h + 2, 2);
    if (length < 126) return kCloseProtocolError;
  } else if (length7 == 127) {
    length = readBigEndian(h + 2, 8);
    if ((length >> 63) != 0 || length <= 0xFFFF) return kCloseProtocolError;
  }
  if (opcode == 0x8) {
    close.reset(new (std::nothrow) PeerClose);
    if (!close) return kCloseInternalError;
    close->length = static_cast<std::uint8_t>(length);
    std::memcpy(close->key, h + headerNeed - 4, 4);
    closePayloadPending = close->length != 0;
  } else {
    if (opcode < 0x8) {
      // messageBytes never exceeds the limit, so the subtraction cannot wrap.
      const bool fin = (h[0] & kFinBit) != 0;
      if (opcode != 0x0) compressed = (h[0] & kRsv1Bit) != 0;
      // A compressed message's wire size is bounded loosely; its inflated
      // size is what maxMessageBytes limits, checked as it is inflated.
      const std::uint64_t limit =
          compressed ? maxCompressedBytes(maxMessageBytes) : maxMessageBytes;
      if (opcode == 0x0) {
        if (length > limit - messageBytes) return kCloseMessageTooBig;
        messageBytes = fin ? 0 : messageBytes + length;
      } else {
        if (length > limit) return kCloseMessageTooBig;
        messageBytes = fin ? 0 : length;
      }
      fragmented = !fin;
    }
    payloadLeft = length;
  }
  headerHave = 0;
  headerNeed = 2;
  return 0;
}

FrameGuard::Result FrameGuard::scan(const std::uint8_t* p, std::size_t n,
                                    std::uint64_t maxMessageBytes, bool untilIdle) noexcept {
  Result r;
  std::size_t i = 0;
  // A header begun in an earlier chunk has its start "before" this one.
  std::size_t frameStart = 0;
  std::uint16_t code = 0;
  while (i < n) {
    if (untilIdle && i != 0 && idle()) break;
    if (payloadLeft != 0) {
      const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(payloadLeft, n - i));
      i += take;
      payloadLeft -= take;
      continue;
    }
    if (closePayloadPending) {
      PeerClose& c = *close;
      while (i < n && c.have < c.length) {
        c.payload[c.have] = static_cast<std::uint8_t>(p[i++] ^ c.key[c.have % 4]);
        ++c.have;
      }
      if (c.have == c.length) {
        closePayloadPending = false;
        r.closeReady = true;
      }
      break;  // nothing after a Close is read
    }

    if (headerHave == 0) {
      frameStart = i;
      // The whole header is in this chunk: check it in place.
      if (n - i >= 2) {
        if ((code = checkFirstByte(p[i])) != 0) break;
        if ((code = checkSecondByte(p[i], p[i + 1])) != 0) break;
        const std::uint8_t need = headerNeed;
        if (n - i >= need) {
          if ((code = finishHeader(p + i, maxMessageBytes)) != 0) break;
          i += need;
          if (closeFrame && !closePayloadPending) {
            r.closeReady = true;
            break;
          }
          continue;
        }
      }
    }

    const std::size_t take = std::min<std::size_t>(headerNeed - headerHave, n - i);
    std::memcpy(header + headerHave, p + i, take);
    const std::uint8_t had = headerHave;
    headerHave = static_cast<std::uint8_t>(headerHave + take);
    i += take;
    if (had == 0 && (code = checkFirstByte(header[0])) != 0) break;
    if (headerHave < 2) continue;
    if (had < 2 && (code = checkSecondByte(header[0], header[1])) != 0) break;
    if (headerHave < headerNeed) continue;
    if ((code = finishHeader(header, maxMessageBytes)) != 0) break;
    if (closeFrame && !closePayloadPending) {
      r.closeReady = true;
      break;
    }
  }
  r.consumed = i;
  if (code != 0) {
    r.failCode = code;
    r.wslayBytes = frameStart;
  } else {
    r.wslayBytes = closeFrame ? frameStart : i;
  }
  return r;
}

}  // namespace spry::detail
