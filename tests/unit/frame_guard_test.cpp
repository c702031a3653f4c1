#include "ws/frame_guard.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace spry::detail;

namespace {

constexpr std::uint8_t kCont = 0x0;
constexpr std::uint8_t kText = 0x1;
constexpr std::uint8_t kBinary = 0x2;
constexpr std::uint8_t kClose = 0x8;
constexpr std::uint8_t kPing = 0x9;
constexpr std::uint8_t kPong = 0xA;

constexpr std::uint64_t kLimit = 1000;

struct FrameOptions {
  bool fin = true;
  std::uint8_t rsv = 0;  // OR-ed into byte 0
  bool masked = true;
  int lengthBits = 0;  // 0 = minimal encoding; 7, 16 or 64 forces one
  std::optional<std::uint64_t> claimedLength = std::nullopt;  // header claims this instead
  bool headerOnly = false;
};

constexpr std::array<std::uint8_t, 4> kKey = {0x37, 0xFA, 0x21, 0x3D};

std::string clientFrame(std::uint8_t opcode, std::string_view payload, FrameOptions o = {}) {
  const std::uint64_t length = o.claimedLength.value_or(payload.size());
  int bits = o.lengthBits;
  if (bits == 0) bits = length < 126 ? 7 : length <= 0xFFFF ? 16 : 64;
  std::string f;
  f += static_cast<char>((o.fin ? 0x80 : 0) | o.rsv | opcode);
  const int maskBit = o.masked ? 0x80 : 0;
  if (bits == 7) {
    f += static_cast<char>(maskBit | static_cast<int>(length));
  } else if (bits == 16) {
    f += static_cast<char>(maskBit | 126);
    f += static_cast<char>(length >> 8);
    f += static_cast<char>(length);
  } else {
    f += static_cast<char>(maskBit | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>(length >> (8 * i));
  }
  if (o.masked) f.append(reinterpret_cast<const char*>(kKey.data()), 4);
  if (o.headerOnly) return f;
  for (std::size_t i = 0; i < payload.size(); ++i) {
    f += o.masked ? static_cast<char>(payload[i] ^ static_cast<char>(kKey[i % 4])) : payload[i];
  }
  return f;
}

std::string text(std::string_view s, bool fin = true) {
  return clientFrame(kText, s, {.fin = fin});
}
std::string binary(std::string_view s, bool fin = true) {
  return clientFrame(kBinary, s, {.fin = fin});
}
std::string cont(std::string_view s, bool fin) {
  return clientFrame(kCont, s, {.fin = fin});
}
std::string ping(std::string_view s) {
  return clientFrame(kPing, s);
}
std::string closePayload(std::uint16_t code, std::string_view reason = {}) {
  std::string p;
  p += static_cast<char>(code >> 8);
  p += static_cast<char>(code);
  p += reason;
  return p;
}
std::string closeFrame(std::uint16_t code, std::string_view reason = {}) {
  return clientFrame(kClose, closePayload(code, reason));
}

FrameGuard::Result scan(FrameGuard& g, std::string_view bytes, bool untilIdle = false,
                        std::uint64_t limit = kLimit) {
  return g.scan(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), limit,
                untilIdle);
}

// What scanning a stream in pieces adds up to.
struct Outcome {
  std::size_t consumed = 0;
  std::size_t wslayBytes = 0;  // summed over the pieces scanned
  std::uint16_t failCode = 0;
  bool closeReady = false;
  std::size_t lastPieceStart = 0;  // of the piece the scan stopped in
  std::size_t lastPieceEnd = 0;
};

// Scans `wire` cut at `cuts`, the way the session does: each piece once,
// stopping at the first violation or complete Close.
Outcome scanPieces(FrameGuard& g, std::string_view wire, const std::vector<std::size_t>& cuts,
                   std::uint64_t limit = kLimit) {
  Outcome o;
  std::size_t at = 0;
  for (std::size_t k = 0; k <= cuts.size(); ++k) {
    const std::size_t end = k < cuts.size() ? cuts[k] : wire.size();
    if (end <= at) continue;
    const auto r = scan(g, wire.substr(at, end - at), false, limit);
    REQUIRE(r.consumed <= end - at);
    REQUIRE(r.wslayBytes <= r.consumed);
    o.consumed += r.consumed;
    o.wslayBytes += r.wslayBytes;
    o.lastPieceStart = at;
    o.lastPieceEnd = end;
    if (r.failCode != 0 || r.closeReady) {
      o.failCode = r.failCode;
      o.closeReady = r.closeReady;
      return o;
    }
    REQUIRE(r.consumed == end - at);
    at = end;
  }
  return o;
}

// The cuts to try on a stream: none, one at every byte boundary, and all of
// them (single bytes).
std::vector<std::vector<std::size_t>> everySplit(std::size_t size) {
  std::vector<std::vector<std::size_t>> splits = {{}};
  std::vector<std::size_t> bytes;
  for (std::size_t cut = 1; cut < size; ++cut) {
    splits.push_back({cut});
    bytes.push_back(cut);
  }
  splits.push_back(bytes);
  return splits;
}

// A stream that passes, or stops at a complete Close: the same under any split.
void checkPasses(std::string_view wire, std::size_t consumed, std::size_t wslayBytes,
                 bool closeReady = false) {
  for (const auto& cuts : everySplit(wire.size())) {
    CAPTURE(cuts.size());
    CAPTURE(cuts.empty() ? 0 : cuts[0]);
    FrameGuard g;
    const Outcome o = scanPieces(g, wire, cuts);
    CHECK(o.failCode == 0);
    CHECK(o.consumed == consumed);
    CHECK(o.wslayBytes == wslayBytes);
    CHECK(o.closeReady == closeReady);
  }
}

void checkPasses(std::string_view wire) {
  checkPasses(wire, wire.size(), wire.size());
}

// A stream whose frame at `frameStart` is a violation that the byte at
// `revealedAt` shows: under any split, the scan fails with `code` in the
// piece holding that byte, and wslay gets no byte of that frame from it
// (only from earlier pieces, and never of a Close).
void checkFails(std::string_view wire, std::size_t frameStart, std::size_t revealedAt,
                std::uint16_t code) {
  const bool close = (static_cast<std::uint8_t>(wire[frameStart]) & 0x0F) == kClose;
  for (const auto& cuts : everySplit(wire.size())) {
    CAPTURE(cuts.size());
    CAPTURE(cuts.empty() ? 0 : cuts[0]);
    FrameGuard g;
    const Outcome o = scanPieces(g, wire, cuts);
    CHECK(o.failCode == code);
    CHECK_FALSE(o.closeReady);
    CHECK(o.lastPieceStart <= revealedAt);
    CHECK(revealedAt < o.lastPieceEnd);
    CHECK(o.wslayBytes == (close ? frameStart : std::max(frameStart, o.lastPieceStart)));
  }
}

}  // namespace

// ---- valid streams ---------------------------------------------------------

TEST_CASE("valid frames pass whole and split at every byte boundary") {
  const std::string wires[] = {
      text(""),
      text("hello"),
      binary(std::string(125, 'b')),
      binary(std::string(126, 'b')),
      binary(std::string(999, 'b')),
      text(std::string(kLimit, 't')),
      ping("") + ping(std::string(125, 'p')) + clientFrame(kPong, "pong"),
      text("frag", false) + ping("in between") + cont("ment", false) + cont("", true),
      binary("", false) + cont(std::string(kLimit, 'c'), true),
      text("a") + binary("b") + text("c"),
  };
  for (const std::string& wire : wires) {
    CAPTURE(wire.size());
    checkPasses(wire);
    FrameGuard g;
    scan(g, wire);
    CHECK(g.idle());
    CHECK(g.close == nullptr);
  }
}

TEST_CASE("64-bit lengths within the limit pass") {
  const std::string wire = binary(std::string(70000, 'x'));
  FrameGuard g;
  const auto r = scan(g, wire, false, 1u << 20);
  CHECK(r.failCode == 0);
  CHECK(r.consumed == wire.size());
  CHECK(r.wslayBytes == wire.size());
  CHECK(g.idle());
}

TEST_CASE("idle() only at a frame boundary with no message in progress") {
  FrameGuard g;
  CHECK(g.idle());
  const std::string frame = text("hello");
  scan(g, std::string_view(frame).substr(0, 1));
  CHECK_FALSE(g.idle());  // half a header
  scan(g, std::string_view(frame).substr(1, 5));
  CHECK_FALSE(g.idle());  // header done, payload pending
  CHECK(g.payloadLeft == 5);
  scan(g, std::string_view(frame).substr(6));
  CHECK(g.idle());
  scan(g, text("a", false));
  CHECK_FALSE(g.idle());  // a fragmented message is in progress
  CHECK(bool{g.fragmented});
  scan(g, ping("p"));
  CHECK_FALSE(g.idle());
  scan(g, cont("b", true));
  CHECK(g.idle());
  CHECK(g.messageBytes == 0);
}

// ---- violations ------------------------------------------------------------

TEST_CASE("each violation fails with its code at the byte that reveals it") {
  struct Case {
    const char* name;
    std::string bytes;
    std::size_t revealedAt;  // offset in `bytes`
    std::uint16_t code;
  };
  const std::vector<Case> cases = {
      {"RSV1", clientFrame(kText, "x", {.rsv = 0x40}), 0, kCloseProtocolError},
      {"RSV2", clientFrame(kBinary, "x", {.rsv = 0x20}), 0, kCloseProtocolError},
      {"RSV3", clientFrame(kText, "x", {.rsv = 0x10}), 0, kCloseProtocolError},
      {"RSV1 on a ping", clientFrame(kPing, "x", {.rsv = 0x40}), 0, kCloseProtocolError},
      {"ping with FIN=0", clientFrame(kPing, "x", {.fin = false}), 0, kCloseProtocolError},
      {"pong with FIN=0", clientFrame(kPong, "x", {.fin = false}), 0, kCloseProtocolError},
      {"close with FIN=0", clientFrame(kClose, closePayload(1000), {.fin = false}), 0,
       kCloseProtocolError},
      {"continuation without a message", cont("x", true), 0, kCloseProtocolError},
      {"unfinished continuation without a message", cont("x", false), 0, kCloseProtocolError},
      {"ping payload 126", clientFrame(kPing, std::string(126, 'p')), 1, kCloseProtocolError},
      {"pong payload 65536", clientFrame(kPong, std::string(65536, 'p')), 1, kCloseProtocolError},
      {"close payload 126", clientFrame(kClose, closePayload(1000, std::string(124, 'r'))), 1,
       kCloseProtocolError},
      {"close with a 1-byte payload", clientFrame(kClose, "\x03"), 1, kCloseProtocolError},
      {"unmasked text", clientFrame(kText, "x", {.masked = false}), 1, kCloseProtocolError},
      {"unmasked ping", clientFrame(kPing, "x", {.masked = false}), 1, kCloseProtocolError},
      {"unmasked close", clientFrame(kClose, closePayload(1000), {.masked = false}), 1,
       kCloseProtocolError},
      // Lengths are checked once the header is whole, mask key included.
      {"16-bit length for 0", clientFrame(kText, "", {.lengthBits = 16}), 7, kCloseProtocolError},
      {"16-bit length for 125", clientFrame(kText, std::string(125, 'a'), {.lengthBits = 16}), 7,
       kCloseProtocolError},
      {"16-bit length on a ping", clientFrame(kPing, "abc", {.lengthBits = 16}), 1,
       kCloseProtocolError},
      {"64-bit length for 126", clientFrame(kBinary, std::string(126, 'a'), {.lengthBits = 64}), 13,
       kCloseProtocolError},
      {"64-bit length for 65535", clientFrame(kBinary, std::string(65535, 'a'), {.lengthBits = 64}),
       13, kCloseProtocolError},
      {"64-bit length with the MSB set",
       clientFrame(kBinary, "",
                   {.lengthBits = 64, .claimedLength = (1ull << 63) | 5, .headerOnly = true}),
       13, kCloseProtocolError},
      {"one frame over the limit", clientFrame(kText, std::string(kLimit + 1, 't')), 7,
       kCloseMessageTooBig},
      {"a 64-bit length over the limit",
       clientFrame(kBinary, "", {.claimedLength = 1ull << 40, .headerOnly = true}), 13,
       kCloseMessageTooBig},
  };
  for (const Case& c : cases) {
    INFO("case: ", std::string(c.name));
    checkFails(c.bytes, 0, c.revealedAt, c.code);
    // After whole frames: those go to wslay, the offending one does not.
    const std::string before = text("before") + ping("p");
    checkFails(before + c.bytes, before.size(), before.size() + c.revealedAt, c.code);
  }
}

TEST_CASE("reserved opcodes fail with 1002 at the first byte") {
  for (std::uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    CAPTURE(static_cast<int>(op));
    checkFails(clientFrame(op, "x"), 0, 0, kCloseProtocolError);
    checkFails(clientFrame(op, ""), 0, 0, kCloseProtocolError);
  }
}

TEST_CASE("a new data frame while a message is fragmented fails with 1002") {
  for (const std::string& start :
       {text("a", false), binary("a", false), text("a", false) + ping("") + cont("b", false)}) {
    for (std::uint8_t op : {kText, kBinary}) {
      CAPTURE(static_cast<int>(op));
      const std::string wire = start + clientFrame(op, "b");
      checkFails(wire, start.size(), start.size(), kCloseProtocolError);
    }
  }
}

TEST_CASE("fragments summing over the limit fail with 1009 at the offending header") {
  const std::string first = binary(std::string(600, 'a'), false) + ping("still fine");
  const std::string atLimit = first + cont(std::string(400, 'b'), true);
  checkPasses(atLimit);
  const std::string over = first + cont(std::string(401, 'b'), true);
  checkFails(over, first.size(), first.size() + 7, kCloseMessageTooBig);
  // The count starts again with each message; control frames never count.
  const std::string again = atLimit + text(std::string(kLimit, 'c')) +
                            text(std::string(500, 'd'), false) + ping(std::string(125, 'p')) +
                            cont(std::string(500, 'e'), true);
  checkPasses(again);
}

TEST_CASE("the limit is checked at the header, before any payload arrives") {
  FrameGuard g;
  const std::string header =
      clientFrame(kBinary, "", {.claimedLength = 1ull << 30, .headerOnly = true});
  REQUIRE(header.size() == 14);
  const auto r = scan(g, header, false, 1u << 20);
  CHECK(r.failCode == kCloseMessageTooBig);
  CHECK(r.wslayBytes == 0);
}

// ---- the peer's Close --------------------------------------------------------

TEST_CASE("an empty Close is ready at its header and never reaches wslay") {
  const std::string before = text("before");
  const std::string wire = before + clientFrame(kClose, "") + text("after");
  checkPasses(wire, before.size() + 6, before.size(), true);
  FrameGuard g;
  const auto r = scan(g, wire);
  CHECK(r.closeReady);
  REQUIRE(g.close != nullptr);
  CHECK(g.close->length == 0);
  CHECK_FALSE(g.idle());
}

TEST_CASE("a Close's payload is unmasked into the guard, ready once whole") {
  for (std::size_t reasonSize : {0, 1, 3, 123}) {
    CAPTURE(reasonSize);
    const std::string reason(reasonSize, 'r');
    const std::string before = ping("p");
    const std::string close = closeFrame(kCloseGoingAway, reason);
    const std::string wire = before + close + text("after");
    checkPasses(wire, before.size() + close.size(), before.size(), true);
    FrameGuard g;
    const auto r = scan(g, wire);
    CHECK(r.closeReady);
    REQUIRE(g.close != nullptr);
    CHECK(g.close->length == 2 + reasonSize);
    CHECK(g.close->have == g.close->length);
    CHECK_FALSE(bool{g.closePayloadPending});
    const std::string payload(reinterpret_cast<const char*>(g.close->payload), g.close->length);
    CHECK(payload == closePayload(kCloseGoingAway, reason));
  }
}

TEST_CASE("a Close split across chunks is ready only with its last byte") {
  const std::string close = closeFrame(kCloseNormal, "bye");
  FrameGuard g;
  auto r = scan(g, std::string_view(close).substr(0, 3));
  CHECK_FALSE(r.closeReady);
  CHECK(r.consumed == 3);
  CHECK(r.wslayBytes == 0);
  CHECK_FALSE(g.idle());
  r = scan(g, std::string_view(close).substr(3, 5));
  CHECK_FALSE(r.closeReady);
  CHECK(r.consumed == 5);
  CHECK(r.wslayBytes == 0);
  REQUIRE(g.close != nullptr);
  CHECK(bool{g.closePayloadPending});
  r = scan(g, close.substr(8) + text("after"));
  CHECK(r.closeReady);
  CHECK(r.consumed == close.size() - 8);  // nothing after the Close is read
  CHECK(r.wslayBytes == 0);
  CHECK(std::string(reinterpret_cast<const char*>(g.close->payload), g.close->length) ==
        closePayload(kCloseNormal, "bye"));
}

TEST_CASE("a Close of 125 bytes passes; within a fragmented message too") {
  const std::string start = text("a", false);
  const std::string close = closeFrame(kCloseNormal, std::string(123, 'r'));
  checkPasses(start + close, start.size() + close.size(), start.size(), true);
}

// ---- untilIdle ---------------------------------------------------------------

TEST_CASE("untilIdle stops at the first boundary with no message in progress") {
  const std::string a = text("one");
  const std::string b = binary("two");
  {
    FrameGuard g;
    const auto r = scan(g, a + b, true);
    CHECK(r.consumed == a.size());
    CHECK(r.wslayBytes == a.size());
    CHECK(r.failCode == 0);
    CHECK(g.idle());
    const auto rest = scan(g, b, true);
    CHECK(rest.consumed == b.size());
  }
  {
    FrameGuard g;
    const auto r = scan(g, a + b, false);
    CHECK(r.consumed == a.size() + b.size());
  }
  {
    // Not inside a fragmented message: control frames there do not stop it.
    const std::string message = text("x", false) + ping("p") + cont("y", false) + cont("z", true);
    FrameGuard g;
    const auto r = scan(g, message + a, true);
    CHECK(r.consumed == message.size());
    CHECK(r.wslayBytes == message.size());
    CHECK(g.idle());
  }
  {
    // A frame begun in an earlier chunk: the scan stops where it ends.
    FrameGuard g;
    scan(g, std::string_view(a).substr(0, 4), true);
    const auto r = scan(g, a.substr(4) + b, true);
    CHECK(r.consumed == a.size() - 4);
    CHECK(g.idle());
  }
  {
    // A chunk that ends mid-frame is scanned whole.
    FrameGuard g;
    const std::string big = binary(std::string(300, 'x'));
    const auto r = scan(g, std::string_view(big).substr(0, 100), true);
    CHECK(r.consumed == 100);
    CHECK(r.wslayBytes == 100);
    CHECK_FALSE(g.idle());
  }
}

TEST_CASE("checks can be driven one byte at a time") {
  FrameGuard g;
  CHECK(g.checkFirstByte(0x81) == 0);
  CHECK(g.checkSecondByte(0x81, 0x85) == 0);
  CHECK(g.headerNeed == 6);
  CHECK(g.checkSecondByte(0x82, 0x80 | 126) == 0);
  CHECK(g.headerNeed == 8);
  CHECK(g.checkSecondByte(0x82, 0x80 | 127) == 0);
  CHECK(g.headerNeed == 14);
  CHECK(g.checkFirstByte(0x80) == kCloseProtocolError);  // no message to continue
  CHECK(g.checkFirstByte(0xC1) == kCloseProtocolError);  // RSV1
  CHECK(g.checkFirstByte(0x88) == 0);
  CHECK(bool{g.closeFrame});
}
