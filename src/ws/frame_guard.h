#pragma once
// Checks on a client's frame headers (RFC 6455 section 5) that wslay lacks or
// answers wrongly, tracked across any split of the input. The session runs it
// over every byte that wslay sees, before wslay does. It keeps the peer's
// Close to itself (wslay would reject 1012-1014 and accept a 1-byte Close),
// so wslay never receives a Close frame. Fed plain bytes; it never writes.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "ws/protocol.h"

namespace spry::detail {

// Held inline by every WebSocketSession, so it is kept small: the peer's
// Close, which few sockets ever see, lives on the heap once it begins.
struct FrameGuard {
  struct Result {
    std::size_t consumed = 0;    // leading bytes of the chunk scanned
    std::size_t wslayBytes = 0;  // leading bytes of the chunk that wslay may read
    std::uint16_t failCode = 0;
    bool closeReady = false;  // the peer's Close is complete in close->payload
  };
  // The peer's Close frame: made when its header arrives, as few sockets
  // ever get that far while idle.
  struct PeerClose {
    std::uint8_t length = 0;
    std::uint8_t have = 0;
    std::uint8_t key[4] = {};
    std::uint8_t payload[kMaxControlPayload] = {};
  };

  // Scans the chunk, or its head up to the first frame boundary with no
  // message in progress (untilIdle), stopping at a violation or a Close.
  Result scan(const std::uint8_t* p, std::size_t n, std::uint64_t maxMessageBytes,
              bool untilIdle) noexcept;
  // At a frame boundary with no fragmented message and no Close begun.
  bool idle() const noexcept {
    return headerHave == 0 && payloadLeft == 0 && !fragmented && !closeFrame;
  }
  // Each returns 0 or the close code of the violation.
  std::uint16_t checkFirstByte(std::uint8_t b0) noexcept;
  std::uint16_t checkSecondByte(std::uint8_t b0, std::uint8_t b1) noexcept;
  std::uint16_t finishHeader(const std::uint8_t* h, std::uint64_t maxMessageBytes) noexcept;

  std::uint64_t payloadLeft = 0;
  std::uint64_t messageBytes = 0;  // of the fragmented message so far
  std::unique_ptr<PeerClose> close;
  std::uint8_t header[14] = {};  // a header split across chunks
  std::uint8_t headerHave = 0;
  std::uint8_t headerNeed = 2;
  bool fragmented : 1 = false;
  bool closeFrame : 1 = false;  // a Close header began; the rest is the guard's
  bool closePayloadPending : 1 = false;
  // permessage-deflate was negotiated: RSV1 marks the first frame of a
  // compressed message (anywhere else it is a protocol error).
  bool rsv1Allowed : 1 = false;
  // The data message in progress is compressed: its frames count against
  // maxCompressedBytes(maxMessageBytes) on the wire; the inflated size is
  // checked as it is inflated.
  bool compressed : 1 = false;
};

}  // namespace spry::detail
