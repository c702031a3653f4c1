#include "ws/frame_writer.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace spry::detail;

namespace {

// One parsed server frame.
struct Frame {
  bool fin = false;
  bool rsv1 = false;
  std::uint8_t rsvOthers = 0;
  std::uint8_t opcode = 0;
  std::size_t headerSize = 0;
  std::string payload;
};

// Parses unmasked server frames; every byte must belong to a whole frame.
std::vector<Frame> parseFrames(std::string_view b) {
  std::vector<Frame> frames;
  std::size_t i = 0;
  while (i < b.size()) {
    REQUIRE(b.size() - i >= 2);
    Frame f;
    const auto b0 = static_cast<std::uint8_t>(b[i]);
    const auto b1 = static_cast<std::uint8_t>(b[i + 1]);
    f.fin = (b0 & 0x80) != 0;
    f.rsv1 = (b0 & 0x40) != 0;
    f.rsvOthers = b0 & 0x30;
    f.opcode = b0 & 0x0F;
    REQUIRE((b1 & 0x80) == 0);  // server frames are never masked
    std::uint64_t length = b1 & 0x7F;
    const std::size_t start = i;
    i += 2;
    const int ext = length == 126 ? 2 : length == 127 ? 8 : 0;
    REQUIRE(b.size() - i >= static_cast<std::size_t>(ext));
    if (ext != 0) {
      length = 0;
      for (int k = 0; k < ext; ++k) length = (length << 8) | static_cast<std::uint8_t>(b[i++]);
    }
    f.headerSize = i - start;
    REQUIRE(b.size() - i >= length);
    f.payload = std::string(b.substr(i, length));
    i += length;
    frames.push_back(std::move(f));
  }
  return frames;
}

std::string header(WsOpcode op, std::uint64_t n, bool fin = true, bool rsv1 = false) {
  std::string out = "prefix";
  appendFrameHeader(out, op, n, fin, rsv1);
  REQUIRE(out.substr(0, 6) == "prefix");
  return out.substr(6);
}

std::string bytes(std::string_view s) {
  return std::string(s);
}

std::string makeBinary(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 31 + 7);
  return s;
}

std::uint16_t codeOf(const Frame& f) {
  REQUIRE(f.payload.size() >= 2);
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(f.payload[0]) << 8) |
                                    static_cast<std::uint8_t>(f.payload[1]));
}

}  // namespace

TEST_CASE("isValidCloseCode follows RFC 6455 and the IANA registry") {
  for (std::uint16_t c : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                          3000, 3999, 4000, 4999}) {
    CAPTURE(c);
    CHECK(isValidCloseCode(c));
  }
  for (std::uint16_t c : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    CAPTURE(c);
    CHECK_FALSE(isValidCloseCode(c));
  }
  static_assert(isValidCloseCode(kCloseNormal) && !isValidCloseCode(kCloseNoStatus));
}

TEST_CASE("appendFrameHeader writes minimal unmasked server headers") {
  CHECK(header(WsOpcode::kText, 0) == bytes({"\x81\x00", 2}));
  CHECK(header(WsOpcode::kBinary, 125) == bytes({"\x82\x7D", 2}));
  CHECK(header(WsOpcode::kBinary, 126) == bytes({"\x82\x7E\x00\x7E", 4}));
  CHECK(header(WsOpcode::kBinary, 65535) == bytes({"\x82\x7E\xFF\xFF", 4}));
  CHECK(header(WsOpcode::kBinary, 65536) ==
        bytes({"\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10}));
  CHECK(header(WsOpcode::kBinary, std::uint64_t{1} << 32) ==
        bytes({"\x82\x7F\x00\x00\x00\x01\x00\x00\x00\x00", 10}));
  CHECK(header(WsOpcode::kBinary, (std::uint64_t{1} << 32) - 1) ==
        bytes({"\x82\x7F\x00\x00\x00\x00\xFF\xFF\xFF\xFF", 10}));
  CHECK(header(WsOpcode::kText, 0x0102030405060708ull) ==
        bytes({"\x81\x7F\x01\x02\x03\x04\x05\x06\x07\x08", 10}));
  CHECK(header(WsOpcode::kText, (std::uint64_t{1} << 63) - 1) ==
        bytes({"\x81\x7F\x7F\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 10}));
  CHECK(header(WsOpcode::kText, 5, false) == bytes({"\x01\x05", 2}));
  CHECK(header(WsOpcode::kContinuation, 5, false) == bytes({"\x00\x05", 2}));
  CHECK(header(WsOpcode::kContinuation, 5, true) == bytes({"\x80\x05", 2}));
  CHECK(header(WsOpcode::kText, 5, true, true) == bytes({"\xC1\x05", 2}));
  CHECK(header(WsOpcode::kBinary, 70000, false, true) ==
        bytes({"\x42\x7F\x00\x00\x00\x00\x00\x01\x11\x70", 10}));
  CHECK(header(WsOpcode::kClose, 2) == bytes({"\x88\x02", 2}));
  CHECK(header(WsOpcode::kPing, 0) == bytes({"\x89\x00", 2}));
  CHECK(header(WsOpcode::kPong, 3) == bytes({"\x8A\x03", 2}));
}

TEST_CASE("writeFrameHeader and frameHeaderSize agree with appendFrameHeader") {
  for (std::uint64_t n :
       {0ull, 1ull, 125ull, 126ull, 127ull, 65535ull, 65536ull, 1ull << 32, (1ull << 63) - 1}) {
    CAPTURE(n);
    char out[kMaxFrameHeader];
    const std::size_t size = writeFrameHeader(out, WsOpcode::kBinary, n, false, true);
    CHECK(size == frameHeaderSize(n));
    CHECK(std::string(out, size) == header(WsOpcode::kBinary, n, false, true));
  }
  static_assert(frameHeaderSize(125) == 2 && frameHeaderSize(126) == 4 &&
                frameHeaderSize(65535) == 4 && frameHeaderSize(65536) == 10);
}

TEST_CASE("header plus payload parses back as one frame") {
  for (std::uint64_t n : {0ull, 125ull, 126ull, 65535ull, 65536ull}) {
    CAPTURE(n);
    std::string out;
    appendFrameHeader(out, WsOpcode::kBinary, n);
    out += makeBinary(n);
    const auto frames = parseFrames(out);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].fin);
    CHECK(frames[0].opcode == 0x2);
    CHECK(frames[0].headerSize == frameHeaderSize(n));
    CHECK(frames[0].payload == makeBinary(n));
  }
}

TEST_CASE("appendDataFrame appends one whole text or binary frame") {
  for (std::size_t n : {0, 1, 125, 126, 65535, 65536, 70000}) {
    for (bool binary : {false, true}) {
      for (bool rsv1 : {false, true}) {
        CAPTURE(n);
        CAPTURE(binary);
        CAPTURE(rsv1);
        const std::string payload = makeBinary(n);
        std::string out = "earlier bytes";
        appendDataFrame(out, binary, payload, rsv1);
        REQUIRE(out.substr(0, 13) == "earlier bytes");
        const auto frames = parseFrames(std::string_view(out).substr(13));
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].fin);
        CHECK(frames[0].rsv1 == rsv1);
        CHECK(frames[0].rsvOthers == 0);
        CHECK(frames[0].opcode == (binary ? 0x2 : 0x1));
        CHECK(frames[0].headerSize == frameHeaderSize(n));
        CHECK(frames[0].payload == payload);
      }
    }
  }
  std::string out;
  appendDataFrame(out, false, "hi");
  CHECK(out == bytes({"\x81\x02hi", 4}));
}

TEST_CASE("makeSharedFrame: header and payload in one buffer of their size") {
  for (std::size_t n : {0u, 1u, 13u, 125u, 126u, 1000u, 65535u, 65536u, 1u << 20}) {
    CAPTURE(n);
    const std::string payload = makeBinary(n);
    const SharedFrame frame = makeSharedFrame(WsOpcode::kBinary, payload);
    REQUIRE(frame != nullptr);
    std::string expected;
    appendFrameHeader(expected, WsOpcode::kBinary, n);
    expected += payload;
    CHECK(*frame == expected);
    CHECK(frame->size() == frameHeaderSize(n) + n);
    // Reserved to the byte (the allocator may round small buffers up).
    if (frame->size() > 64) CHECK(frame->capacity() < frame->size() + 16);
  }
  const SharedFrame text = makeSharedFrame(WsOpcode::kText, "abc");
  CHECK(*text == bytes({"\x81\x03"
                        "abc",
                        5}));
  const SharedFrame compressed = makeSharedFrame(WsOpcode::kText, "abc", true);
  CHECK(*compressed == bytes({"\xC1\x03"
                              "abc",
                              5}));
}

TEST_CASE("appendControlFrame frames a ping or a pong, cutting the payload to 125 bytes") {
  std::string out;
  appendControlFrame(out, WsOpcode::kPing, "hb");
  CHECK(out == bytes({"\x89\x02hb", 4}));
  out.clear();
  appendControlFrame(out, WsOpcode::kPong, "");
  CHECK(out == bytes({"\x8A\x00", 2}));
  for (std::size_t n : {1, 124, 125, 126, 200, 70000}) {
    CAPTURE(n);
    const std::string payload = makeBinary(n);
    std::string ping = "x";
    appendControlFrame(ping, WsOpcode::kPing, payload);
    REQUIRE(ping[0] == 'x');
    const auto frames = parseFrames(std::string_view(ping).substr(1));
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].fin);
    CHECK(frames[0].opcode == 0x9);
    CHECK(frames[0].headerSize == 2);
    CHECK(frames[0].payload == payload.substr(0, kMaxControlPayload));
    // The stack version gives the same bytes.
    CHECK(makeControlFrame(WsOpcode::kPing, payload).view() == std::string_view(ping).substr(1));
  }
}

TEST_CASE("appendCloseFrame: code and reason, or an empty Close for code 0") {
  std::string out;
  appendCloseFrame(out, 0, {});
  CHECK(out == bytes({"\x88\x00", 2}));
  out.clear();
  appendCloseFrame(out, 0, "a reason without a code is dropped");
  CHECK(out == bytes({"\x88\x00", 2}));
  out.clear();
  appendCloseFrame(out, kCloseNormal, {});
  CHECK(out == bytes({"\x88\x02\x03\xE8", 4}));
  out.clear();
  appendCloseFrame(out, kCloseGoingAway, "bye");
  CHECK(out == bytes({"\x88\x05\x03\xE9"
                      "bye",
                      7}));
  out.clear();
  appendCloseFrame(out, 4999, "x");
  CHECK(out == bytes({"\x88\x03\x13\x87x", 5}));
  CHECK(makeCloseFrame(kCloseGoingAway, "bye").view() == bytes({"\x88\x05\x03\xE9"
                                                                "bye",
                                                                7}));
}

TEST_CASE("appendCloseFrame cuts a long reason to 123 bytes without splitting a code point") {
  const auto closeOf = [](std::uint16_t code, std::string_view reason) {
    std::string out;
    appendCloseFrame(out, code, reason);
    const auto frames = parseFrames(out);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].fin);
    CHECK(frames[0].opcode == 0x8);
    CHECK(codeOf(frames[0]) == code);
    return frames[0].payload.substr(2);
  };
  const std::string max(kMaxCloseReason, 'r');
  CHECK(closeOf(kCloseNormal, max) == max);
  CHECK(closeOf(kCloseNormal, max + "s") == max);
  CHECK(closeOf(kCloseNormal, std::string(200, 'b')).size() == kMaxCloseReason);
  // A 3-byte code point at 122..124 would straddle the limit: cut before it.
  const std::string a122(122, 'a');
  CHECK(closeOf(kCloseNormal, a122 + "\xE2\x82\xAC" + "tail") == a122);
  // One ending exactly at the limit is kept.
  const std::string a120(120, 'a');
  CHECK(closeOf(kCloseNormal, a120 + "\xE2\x82\xAC" + "tail") == a120 + "\xE2\x82\xAC");
  // A 4-byte code point at 121..124.
  const std::string a121(121, 'a');
  CHECK(closeOf(kCloseNormal, a121 + "\xF0\x9F\x98\x80") == a121);
}
