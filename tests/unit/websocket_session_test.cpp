#include "ws/websocket_session.h"

#include <doctest/doctest.h>
#include <malloc.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace spry::detail;

namespace {

constexpr std::uint8_t kCont = 0x0;
constexpr std::uint8_t kText = 0x1;
constexpr std::uint8_t kBinary = 0x2;
constexpr std::uint8_t kClose = 0x8;
constexpr std::uint8_t kPing = 0x9;
constexpr std::uint8_t kPong = 0xA;

constexpr std::uint8_t kRsv1 = 0x40;
constexpr std::uint8_t kRsv2 = 0x20;
constexpr std::uint8_t kRsv3 = 0x10;

// ---- client frames -------------------------------------------------------

struct FrameOptions {
  bool fin = true;
  std::uint8_t rsv = 0;  // OR-ed into byte 0 (kRsv1, kRsv2, kRsv3)
  bool masked = true;
  int lengthBits = 0;  // 0 = minimal encoding; 7, 16 or 64 forces one
  std::optional<std::uint64_t> claimedLength = std::nullopt;  // header claims this instead
  bool headerOnly = false;
  std::array<std::uint8_t, 4> key = {0x37, 0xFA, 0x21, 0x3D};
};

std::string clientFrame(std::uint8_t opcode, std::string_view payload, FrameOptions o = {}) {
  const auto& kKey = o.key;
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
std::string pong(std::string_view s) {
  return clientFrame(kPong, s);
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

// ---- server frames -------------------------------------------------------

struct ServerFrame {
  bool fin = false;
  std::uint8_t rsv = 0;
  std::uint8_t opcode = 0;
  std::string payload;
};

std::vector<ServerFrame> parseServerFrames(std::string_view b) {
  std::vector<ServerFrame> frames;
  std::size_t i = 0;
  while (i < b.size()) {
    REQUIRE(b.size() - i >= 2);
    ServerFrame f;
    const auto b0 = static_cast<std::uint8_t>(b[i]);
    const auto b1 = static_cast<std::uint8_t>(b[i + 1]);
    f.fin = (b0 & 0x80) != 0;
    f.rsv = b0 & 0x70;
    f.opcode = b0 & 0x0F;
    REQUIRE((b1 & 0x80) == 0);  // server frames are never masked
    std::uint64_t length = b1 & 0x7F;
    i += 2;
    int ext = length == 126 ? 2 : length == 127 ? 8 : 0;
    if (ext != 0) {
      REQUIRE(b.size() - i >= static_cast<std::size_t>(ext));
      length = 0;
      for (int k = 0; k < ext; ++k) length = (length << 8) | static_cast<std::uint8_t>(b[i++]);
    }
    REQUIRE(b.size() - i >= length);
    f.payload = std::string(b.substr(i, length));
    i += length;
    frames.push_back(std::move(f));
  }
  return frames;
}

std::uint16_t closeCodeOf(const ServerFrame& f) {
  REQUIRE(f.opcode == kClose);
  if (f.payload.size() < 2) return kCloseNoStatus;
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(f.payload[0]) << 8) |
                                    static_cast<std::uint8_t>(f.payload[1]));
}

// ---- handler ---------------------------------------------------------------

struct Recorder final : SessionHandler {
  struct Message {
    bool binary;
    std::string payload;
  };
  std::vector<Message> messages;
  std::vector<std::string> pongs;
  std::vector<std::pair<std::uint16_t, std::string>> closes;
  std::vector<std::string> outputs;  // one entry per onWsOutput call
  std::string output;
  WebSocketSession* session = nullptr;
  bool closeOnMessage = false;
  bool releaseOnMessage = false;
  std::vector<bool> releaseResults;

  void onWsMessage(bool isBinary, std::string_view payload, bool) noexcept override {
    messages.push_back({isBinary, std::string(payload)});
    if (closeOnMessage && session != nullptr) session->sendClose(kCloseNormal, "done");
    if (releaseOnMessage && session != nullptr) releaseResults.push_back(session->releaseIfIdle());
  }
  void onWsPong(std::string_view payload) noexcept override { pongs.emplace_back(payload); }
  void onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept override {
    closes.emplace_back(code, std::string(reason));
  }
  void onWsOutput(std::string_view bytes) noexcept override {
    outputs.emplace_back(bytes);
    output += bytes;
  }
};

enum class Split { kWhole, kBytes, kRandom };

struct Peer {
  Recorder rec;
  HandledSession session;
  explicit Peer(SessionLimits limits = {}) : session(rec, limits) { rec.session = &session; }

  // feed() may unmask in place: each chunk goes in as a writable copy.
  void feedChunk(std::string_view b) {
    std::string copy(b);
    session.feed(copy.data(), copy.size());
  }
  void feed(std::string_view b, Split split = Split::kWhole) {
    switch (split) {
      case Split::kWhole:
        feedChunk(b);
        break;
      case Split::kBytes:
        for (std::size_t i = 0; i < b.size(); ++i) feedChunk(b.substr(i, 1));
        break;
      case Split::kRandom: {
        std::uint32_t state = 12345;
        std::size_t i = 0;
        while (i < b.size()) {
          state = state * 1664525u + 1013904223u;
          const std::size_t n = 1 + (state >> 8) % 5000;
          feedChunk(b.substr(i, n));
          i += n;
        }
        break;
      }
    }
  }
  std::vector<ServerFrame> frames() const { return parseServerFrames(rec.output); }
  std::vector<ServerFrame> closeFrames() const {
    std::vector<ServerFrame> out;
    for (auto& f : frames()) {
      if (f.opcode == kClose) out.push_back(f);
    }
    return out;
  }
  // The one Close that went out, and its code.
  std::uint16_t onlyCloseCode() const {
    const auto closes = closeFrames();
    REQUIRE(closes.size() == 1);
    return closeCodeOf(closes[0]);
  }
};

const char* splitName(Split s) {
  switch (s) {
    case Split::kWhole:
      return "whole";
    case Split::kBytes:
      return "byte by byte";
    case Split::kRandom:
      return "random splits";
  }
  return "?";
}

constexpr Split kAllSplits[] = {Split::kWhole, Split::kBytes, Split::kRandom};

// Valid UTF-8 of exactly n bytes, with 2-, 3- and 4-byte sequences.
std::string makeText(std::size_t n) {
  static constexpr std::string_view kUnit = "ab\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
  std::string s;
  s.reserve(n);
  while (n - s.size() >= kUnit.size()) s += kUnit;
  s.append(n - s.size(), 'x');
  return s;
}

// A prefix and a number ("m7"), built without "literal" + std::string,
// which GCC 12 at -O3 warns about (-Wrestrict, a false positive).
std::string numbered(char prefix, int i) {
  std::string s(1, prefix);
  s += std::to_string(i);
  return s;
}

std::string makeBinary(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 31 + 7);
  return s;
}

// Asserts the session failed with `code`: one Close carrying it, nothing
// after it, and the owner told to close TCP.
void checkFailed(const Peer& p, std::uint16_t code) {
  CHECK(p.session.failed());
  CHECK(p.session.failCode() == code);
  CHECK(p.session.closeSent());
  CHECK(p.session.wantsTcpClose());
  CHECK(p.onlyCloseCode() == code);
  const auto frames = p.frames();
  REQUIRE(!frames.empty());
  CHECK(frames.back().opcode == kClose);
}

}  // namespace

// ---- data messages ---------------------------------------------------------

TEST_CASE("text and binary messages of boundary sizes arrive intact under any split") {
  const std::size_t sizes[] = {0, 1, 125, 126, 65535, 65536, std::size_t{1} << 20};
  for (Split split : kAllSplits) {
    for (std::size_t n : sizes) {
      // Byte by byte through a MiB would only test patience.
      if (split == Split::kBytes && n > 65536) continue;
      for (bool isBinary : {false, true}) {
        INFO("split: ", std::string(splitName(split)));
        CAPTURE(n);
        CAPTURE(isBinary);
        Peer p({.maxMessageBytes = 2u << 20});
        const std::string payload = isBinary ? makeBinary(n) : makeText(n);
        p.feed(isBinary ? binary(payload) : text(payload), split);
        REQUIRE(p.rec.messages.size() == 1);
        CHECK(p.rec.messages[0].binary == isBinary);
        CHECK(p.rec.messages[0].payload.size() == n);
        CHECK(p.rec.messages[0].payload == payload);
        CHECK(p.rec.output.empty());
        CHECK_FALSE(p.session.failed());
        CHECK_FALSE(p.session.wantsTcpClose());
      }
    }
  }
}

TEST_CASE("many messages in one chunk are delivered in order") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p;
    std::string wire;
    for (int i = 0; i < 100; ++i) {
      wire += (i % 2 == 0) ? text(numbered('m', i)) : binary(numbered('b', i));
    }
    p.feed(wire, split);
    REQUIRE(p.rec.messages.size() == 100);
    for (int i = 0; i < 100; ++i) {
      CHECK(p.rec.messages[i].binary == (i % 2 == 1));
      CHECK(p.rec.messages[i].payload == numbered(i % 2 == 0 ? 'm' : 'b', i));
    }
    CHECK(p.rec.output.empty());
  }
}

TEST_CASE("fragmented messages are reassembled, with a ping answered in between") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p;
    p.feed(text("Hel", false) + ping("are you there") + cont("lo, ", false) + pong("late") +
               cont("w\xC3\xB6rld", true),
           split);
    REQUIRE(p.rec.messages.size() == 1);
    CHECK_FALSE(p.rec.messages[0].binary);
    CHECK(p.rec.messages[0].payload == "Hello, w\xC3\xB6rld");
    REQUIRE(p.rec.pongs.size() == 1);
    CHECK(p.rec.pongs[0] == "late");
    const auto frames = p.frames();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].opcode == kPong);
    CHECK(frames[0].fin);
    CHECK(frames[0].payload == "are you there");
    CHECK_FALSE(p.session.failed());
  }
}

TEST_CASE("a binary message in many fragments, some empty") {
  Peer p;
  const std::string whole = makeBinary(70000);
  std::string wire = binary("", false);
  wire += cont(std::string_view(whole).substr(0, 10), false);
  wire += cont("", false);
  wire += cont(std::string_view(whole).substr(10, 69000), false);
  wire += cont(std::string_view(whole).substr(69010), true);
  p.feed(wire, Split::kRandom);
  REQUIRE(p.rec.messages.size() == 1);
  CHECK(p.rec.messages[0].binary);
  CHECK(p.rec.messages[0].payload == whole);
}

TEST_CASE("an empty message made of empty fragments") {
  Peer p;
  p.feed(text("", false) + cont("", true));
  REQUIRE(p.rec.messages.size() == 1);
  CHECK(p.rec.messages[0].payload.empty());
}

// ---- ping and pong ---------------------------------------------------------

TEST_CASE("a ping is answered by one pong with the same payload") {
  for (Split split : kAllSplits) {
    for (std::size_t n : {0, 1, 3, 125}) {
      INFO("split: ", std::string(splitName(split)));
      CAPTURE(n);
      Peer p;
      const std::string payload = makeBinary(n);
      p.feed(ping(payload), split);
      REQUIRE(p.rec.outputs.size() == 1);  // header and payload in one piece
      const auto frames = p.frames();
      REQUIRE(frames.size() == 1);
      CHECK(frames[0].opcode == kPong);
      CHECK(frames[0].fin);
      CHECK(frames[0].rsv == 0);
      CHECK(frames[0].payload == payload);
      CHECK(p.rec.pongs.empty());
      CHECK(p.rec.messages.empty());
    }
  }
}

TEST_CASE("pings in one chunk get pongs in order, after the chunk's messages") {
  Peer p;
  p.feed(ping("1") + text("between") + ping("2"));
  REQUIRE(p.rec.messages.size() == 1);
  const auto frames = p.frames();
  REQUIRE(frames.size() == 2);
  CHECK(frames[0].payload == "1");
  CHECK(frames[1].payload == "2");
}

TEST_CASE("an unsolicited pong reaches onWsPong and sends nothing") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p;
    p.feed(pong("heartbeat") + pong(""), split);
    REQUIRE(p.rec.pongs.size() == 2);
    CHECK(p.rec.pongs[0] == "heartbeat");
    CHECK(p.rec.pongs[1].empty());
    CHECK(p.rec.output.empty());
  }
}

TEST_CASE("sendPing frames a ping; nothing after a Close") {
  Peer p;
  p.session.sendPing("hb");
  CHECK(p.rec.output == std::string("\x89\x02hb", 4));
  p.session.sendPing(std::string(200, 'x'));  // over the contract's 125: clamped
  auto frames = p.frames();
  REQUIRE(frames.size() == 2);
  CHECK(frames[1].payload.size() == 125);
  p.session.sendClose(kCloseNormal, {});
  p.session.sendPing("late");
  frames = p.frames();
  REQUIRE(frames.size() == 3);
  CHECK(frames[2].opcode == kClose);
}

// ---- protocol errors: 1002 -------------------------------------------------

TEST_CASE("each protocol violation closes with 1002, keeping what came before") {
  struct Case {
    const char* name;
    std::string bytes;
  };
  std::vector<Case> cases = {
      {"RSV1 on text", clientFrame(kText, "x", {.rsv = kRsv1})},
      {"RSV2 on binary", clientFrame(kBinary, "x", {.rsv = kRsv2})},
      {"RSV3 on text", clientFrame(kText, "x", {.rsv = kRsv3})},
      {"RSV1 on ping", clientFrame(kPing, "x", {.rsv = kRsv1})},
      {"RSV1 on continuation", text("a", false) + clientFrame(kCont, "b", {.rsv = kRsv1})},
      {"ping with FIN=0", clientFrame(kPing, "x", {.fin = false})},
      {"pong with FIN=0", clientFrame(kPong, "x", {.fin = false})},
      {"close with FIN=0", clientFrame(kClose, closePayload(1000), {.fin = false})},
      {"ping payload 126", clientFrame(kPing, std::string(126, 'p'))},
      {"pong payload 65536", clientFrame(kPong, std::string(65536, 'p'))},
      {"close payload 126", clientFrame(kClose, closePayload(1000, std::string(124, 'r')))},
      {"unmasked text", clientFrame(kText, "x", {.masked = false})},
      {"unmasked ping", clientFrame(kPing, "x", {.masked = false})},
      {"unmasked close", clientFrame(kClose, closePayload(1000), {.masked = false})},
      {"64-bit length with MSB set",
       clientFrame(kBinary, "",
                   {.lengthBits = 64, .claimedLength = (1ull << 63) | 5, .headerOnly = true})},
      {"16-bit length for 0", clientFrame(kText, "", {.lengthBits = 16})},
      {"16-bit length for 125", clientFrame(kText, std::string(125, 'a'), {.lengthBits = 16})},
      {"64-bit length for 126", clientFrame(kBinary, std::string(126, 'a'), {.lengthBits = 64})},
      {"64-bit length for 65535",
       clientFrame(kBinary, std::string(65535, 'a'), {.lengthBits = 64})},
      {"16-bit length on a ping", clientFrame(kPing, "abc", {.lengthBits = 16})},
      {"continuation without a message", cont("x", true)},
      {"unfinished continuation without a message", cont("x", false)},
      {"text while a message is fragmented", text("a", false) + text("b")},
      {"binary while a message is fragmented", binary("a", false) + binary("b")},
      {"text after a ping inside a fragmented message", binary("a", false) + ping("") + text("b")},
      {"close with a 1-byte payload", clientFrame(kClose, "\x03")},
  };
  for (std::uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    cases.push_back({"reserved opcode", clientFrame(op, "x")});
    cases.push_back({"reserved opcode, empty", clientFrame(op, "")});
  }
  for (std::uint16_t code :
       {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    cases.push_back({"invalid close code", closeFrame(code, "why")});
  }
  for (Split split : kAllSplits) {
    for (const Case& c : cases) {
      INFO("split: ", std::string(splitName(split)));
      INFO("case: ", std::string(c.name));
      Peer p;
      p.feed(text("before") + c.bytes + text("after") + ping("ignored"), split);
      REQUIRE(p.rec.messages.size() == 1);
      CHECK(p.rec.messages[0].payload == "before");
      CHECK(p.rec.closes.empty());
      CHECK(p.rec.pongs.empty());
      checkFailed(p, kCloseProtocolError);
      CHECK_FALSE(p.session.holdsContext());
    }
  }
}

TEST_CASE("input after a failure is ignored") {
  Peer p;
  p.feed(cont("x", true));
  checkFailed(p, kCloseProtocolError);
  const std::string before = p.rec.output;
  p.feed(text("hello") + ping("p") + closeFrame(1000));
  CHECK(p.rec.messages.empty());
  CHECK(p.rec.closes.empty());
  CHECK(p.rec.output == before);
  p.session.sendClose(kCloseNormal, "again");
  p.session.sendPing("again");
  CHECK(p.rec.output == before);
  CHECK(p.session.failCode() == kCloseProtocolError);
}

// ---- invalid UTF-8: 1007 -----------------------------------------------------

TEST_CASE("invalid UTF-8 in a text message closes with 1007") {
  const std::string bad[] = {
      "abc\xFF",           // never valid
      "\xC0\xAF",          // overlong
      "\xE0\x80\xAF",      // overlong
      "\xED\xA0\x80",      // surrogate
      "\xF4\x90\x80\x80",  // above U+10FFFF
      "\xE2\x82",          // truncated at the end of the message
      "\x80",              // lone continuation byte
  };
  for (Split split : kAllSplits) {
    for (const std::string& s : bad) {
      INFO("split: ", std::string(splitName(split)));
      CAPTURE(s);
      Peer p;
      p.feed(text("ok") + text(s) + text("after"), split);
      REQUIRE(p.rec.messages.size() == 1);
      CHECK(p.rec.messages[0].payload == "ok");
      checkFailed(p, kCloseInvalidPayload);
    }
  }
}

TEST_CASE("pings before invalid UTF-8 in the same chunk are answered, then the Close") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p;
    p.feed(text("a", false) + ping("1") + cont("b", false) + ping("2") + cont("\xC0\xAF", false) +
               ping("after"),
           split);
    const auto frames = p.frames();
    REQUIRE(frames.size() == 3);
    CHECK(frames[0].opcode == kPong);
    CHECK(frames[0].payload == "1");
    CHECK(frames[1].opcode == kPong);
    CHECK(frames[1].payload == "2");
    checkFailed(p, kCloseInvalidPayload);
  }
}

TEST_CASE("invalid UTF-8 fails fast, before the final fragment arrives") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p;
    p.feed(text("valid so far ", false), split);
    CHECK_FALSE(p.session.failed());
    p.feed(cont("then \xC0\xAF", false), split);  // the message is still open
    CHECK(p.rec.messages.empty());
    checkFailed(p, kCloseInvalidPayload);
    p.feed(cont("end", true), split);
    CHECK(p.rec.messages.empty());
  }
}

TEST_CASE("a code point split across fragments is valid") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p;
    p.feed(text("\xE2", false) + cont("\x82", false) + cont("\xAC!", true), split);
    REQUIRE(p.rec.messages.size() == 1);
    CHECK(p.rec.messages[0].payload == "\xE2\x82\xAC!");
    CHECK_FALSE(p.session.failed());
  }
}

TEST_CASE("binary messages are not checked for UTF-8") {
  Peer p;
  p.feed(binary("\xFF\xC0\xAF\xED\xA0\x80"));
  REQUIRE(p.rec.messages.size() == 1);
  CHECK_FALSE(p.session.failed());
}

TEST_CASE("a Close with an invalid UTF-8 reason closes with 1007") {
  for (Split split : kAllSplits) {
    for (std::string reason : {"\xFF", "ok\xC0\xAF", "\xE2\x82", "\xED\xA0\x80"}) {
      INFO("split: ", std::string(splitName(split)));
      Peer p;
      p.feed(closeFrame(kCloseNormal, reason), split);
      CHECK(p.rec.closes.empty());
      CHECK_FALSE(p.session.closeReceived());
      checkFailed(p, kCloseInvalidPayload);
    }
  }
}

// ---- message too big: 1009 -------------------------------------------------

TEST_CASE("a frame header claiming more than maxMessageBytes closes with 1009 at once") {
  for (Split split : kAllSplits) {
    for (std::uint8_t op : {kText, kBinary}) {
      INFO("split: ", std::string(splitName(split)));
      Peer p({.maxMessageBytes = 1u << 20});
      const std::string header =
          clientFrame(op, "", {.claimedLength = 1ull << 30, .headerOnly = true});
      REQUIRE(header.size() == 14);
      const std::size_t heapBefore = mallinfo2().uordblks;
      p.feed(header, split);
      const std::size_t heapAfter = mallinfo2().uordblks;
      checkFailed(p, kCloseMessageTooBig);
      // Nothing near the claimed size was ever reserved.
      CHECK(heapAfter < heapBefore + (64u << 10));
      CHECK_FALSE(p.session.holdsContext());
    }
  }
}

TEST_CASE("fragments summing over maxMessageBytes close with 1009 at the offending header") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p({.maxMessageBytes = 1000});
    p.feed(binary(makeBinary(600), false), split);
    CHECK_FALSE(p.session.failed());
    p.feed(ping("still fine"), split);
    CHECK_FALSE(p.session.failed());
    p.feed(clientFrame(kCont, "", {.claimedLength = 401, .headerOnly = true}), split);
    CHECK(p.rec.messages.empty());
    const auto frames = p.frames();
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].opcode == kPong);
    CHECK(closeCodeOf(frames[1]) == kCloseMessageTooBig);
    checkFailed(p, kCloseMessageTooBig);
  }
}

TEST_CASE("a message exactly at maxMessageBytes is accepted; control frames do not count") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p({.maxMessageBytes = 1000});
    p.feed(text(makeText(1000)), split);
    p.feed(
        binary(makeBinary(400), false) + ping(std::string(125, 'p')) + cont(makeBinary(600), true),
        split);
    REQUIRE(p.rec.messages.size() == 2);
    CHECK(p.rec.messages[0].payload.size() == 1000);
    CHECK(p.rec.messages[1].payload.size() == 1000);
    CHECK_FALSE(p.session.failed());
  }
}

TEST_CASE("pings stay answerable under a tiny message limit") {
  Peer p({.maxMessageBytes = 4});
  p.feed(ping(std::string(125, 'p')));
  CHECK_FALSE(p.session.failed());
  REQUIRE(p.frames().size() == 1);
  p.feed(text("12345"));
  checkFailed(p, kCloseMessageTooBig);
}

// ---- close handshake -------------------------------------------------------

TEST_CASE("peer closes first: reported once, one echo, then TCP may close") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p;
    p.feed(text("last words") + closeFrame(kCloseGoingAway, "bye") + text("too late") +
               closeFrame(kCloseNormal),
           split);
    REQUIRE(p.rec.messages.size() == 1);
    CHECK(p.rec.messages[0].payload == "last words");
    REQUIRE(p.rec.closes.size() == 1);
    CHECK(p.rec.closes[0].first == kCloseGoingAway);
    CHECK(p.rec.closes[0].second == "bye");
    CHECK(p.onlyCloseCode() == kCloseGoingAway);
    CHECK(p.closeFrames()[0].payload.size() == 2);  // the code is echoed, not the reason
    CHECK(p.session.closeReceived());
    CHECK(p.session.closeSent());
    CHECK(p.session.wantsTcpClose());
    CHECK_FALSE(p.session.failed());
    CHECK_FALSE(p.session.holdsContext());
    const std::string out = p.rec.output;
    p.feed(ping("x") + closeFrame(kCloseNormal));
    p.session.sendClose(kCloseNormal, {});
    CHECK(p.rec.output == out);
    CHECK(p.rec.closes.size() == 1);
  }
}

TEST_CASE("a Close without payload is reported as 1005 and answered with an empty Close") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p;
    p.feed(clientFrame(kClose, ""), split);
    REQUIRE(p.rec.closes.size() == 1);
    CHECK(p.rec.closes[0].first == kCloseNoStatus);
    CHECK(p.rec.closes[0].second.empty());
    CHECK(p.rec.output == std::string("\x88\x00", 2));
    CHECK(p.session.wantsTcpClose());
  }
}

TEST_CASE("every valid close code is accepted and echoed, including ones wslay refuses") {
  for (std::uint16_t code :
       {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999}) {
    CAPTURE(code);
    Peer p;
    p.feed(closeFrame(code, "r"));
    REQUIRE(p.rec.closes.size() == 1);
    CHECK(p.rec.closes[0].first == code);
    CHECK(p.onlyCloseCode() == code);
    CHECK_FALSE(p.session.failed());
  }
}

TEST_CASE("a Close reason of the maximum 123 bytes is reported whole") {
  Peer p;
  const std::string reason = makeText(123);
  p.feed(closeFrame(kCloseNormal, reason), Split::kBytes);
  REQUIRE(p.rec.closes.size() == 1);
  CHECK(p.rec.closes[0].second == reason);
}

TEST_CASE("server closes first: one Close, input drained until the peer's Close") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p;
    p.feed(text("early"), split);
    p.session.sendClose(kCloseGoingAway, "shutting down");
    CHECK_FALSE(p.session.holdsContext());
    CHECK(p.session.closeSent());
    CHECK_FALSE(p.session.wantsTcpClose());
    auto closes = p.closeFrames();
    REQUIRE(closes.size() == 1);
    CHECK(closeCodeOf(closes[0]) == kCloseGoingAway);
    CHECK(closes[0].payload.substr(2) == "shutting down");

    // In flight from the peer: neither delivered nor answered.
    p.feed(text("in flight") + ping("p") + binary(makeBinary(70000)), split);
    CHECK_FALSE(p.session.holdsContext());
    CHECK_FALSE(p.session.wantsTcpClose());
    p.feed(closeFrame(kCloseGoingAway), split);
    REQUIRE(p.rec.messages.size() == 1);
    CHECK(p.rec.messages[0].payload == "early");
    REQUIRE(p.rec.closes.size() == 1);
    CHECK(p.rec.closes[0].first == kCloseGoingAway);
    CHECK(p.closeFrames().size() == 1);
    CHECK(p.frames().size() == 1);
    CHECK(p.session.closeReceived());
    CHECK(p.session.wantsTcpClose());
    CHECK_FALSE(p.session.failed());
  }
}

TEST_CASE("a violation after our Close ends the connection without a second Close") {
  Peer p;
  p.session.sendClose(kCloseNormal, {});
  p.feed(cont("x", true));
  CHECK(p.session.failed());
  CHECK(p.session.wantsTcpClose());
  CHECK(p.closeFrames().size() == 1);
  CHECK(p.onlyCloseCode() == kCloseNormal);
}

TEST_CASE("sendClose sends one Close ever") {
  Peer p;
  p.session.sendClose(0, "ignored without a code");
  p.session.sendClose(kCloseNormal, "second");
  CHECK(p.rec.output == std::string("\x88\x00", 2));

  Peer q;
  q.session.sendClose(kCloseNormal, "bye");
  q.session.sendClose(kCloseGoingAway, {});
  q.feed(cont("x", true));  // even a violation does not add one
  REQUIRE(q.closeFrames().size() == 1);
  CHECK(q.closeFrames()[0].payload == closePayload(kCloseNormal, "bye"));
}

TEST_CASE("sendClose trims a long reason to 123 bytes without splitting a code point") {
  Peer p;
  const std::string reason = std::string(122, 'a') + "\xE2\x82\xAC" + "tail";
  p.session.sendClose(kCloseNormal, reason);
  const auto closes = p.closeFrames();
  REQUIRE(closes.size() == 1);
  CHECK(closes[0].payload == closePayload(kCloseNormal, std::string(122, 'a')));

  Peer q;
  q.session.sendClose(kCloseNormal, std::string(200, 'b'));
  CHECK(q.closeFrames()[0].payload.size() == 125);
}

TEST_CASE("a Close sent from inside onWsMessage stops delivery of the rest") {
  for (Split split : kAllSplits) {
    INFO("split: ", std::string(splitName(split)));
    Peer p;
    p.rec.closeOnMessage = true;
    p.feed(text("one") + text("two") + ping("p") + text("three"), split);
    REQUIRE(p.rec.messages.size() == 1);
    CHECK(p.rec.messages[0].payload == "one");
    CHECK(p.onlyCloseCode() == kCloseNormal);
    CHECK(p.frames().size() == 1);
    CHECK_FALSE(p.session.holdsContext());
    p.feed(closeFrame(kCloseNormal), split);
    CHECK(p.session.wantsTcpClose());
    CHECK(p.frames().size() == 1);
  }
}

TEST_CASE("a Close right after a wslay-detected error is not answered twice") {
  Peer p;
  p.feed(text("\xFF") + closeFrame(kCloseNormal));
  CHECK(p.rec.closes.empty());
  checkFailed(p, kCloseInvalidPayload);
  CHECK(p.frames().size() == 1);
}

// ---- releasing the wslay context -------------------------------------------

TEST_CASE("releaseIfIdle frees the context only between messages") {
  const std::size_t base = WebSocketSession::liveContexts();
  {
    Peer p;
    CHECK_FALSE(p.session.holdsContext());  // made lazily
    CHECK(WebSocketSession::liveContexts() == base);
    CHECK(p.session.releaseIfIdle());

    p.feed(text("one"));  // a whole message: the fast path makes no context
    CHECK_FALSE(p.session.holdsContext());
    p.feed(ping("p"));  // a control frame goes through wslay
    CHECK(p.session.holdsContext());
    CHECK(WebSocketSession::liveContexts() == base + 1);
    CHECK(p.session.releaseIfIdle());
    CHECK_FALSE(p.session.holdsContext());
    CHECK(WebSocketSession::liveContexts() == base);
    CHECK(p.session.releaseIfIdle());

    // A released session works as before when bytes arrive.
    p.feed(ping("p") + text("two"));
    CHECK(WebSocketSession::liveContexts() == base + 1);
    REQUIRE(p.rec.messages.size() == 2);
    CHECK(p.rec.messages[1].payload == "two");
    CHECK(p.frames().size() == 2);

    const std::string frame = text("three");
    p.feed(std::string_view(frame).substr(0, 1));  // half a header
    CHECK_FALSE(p.session.releaseIfIdle());
    p.feed(std::string_view(frame).substr(1, 6));  // header done, payload pending
    CHECK_FALSE(p.session.releaseIfIdle());
    p.feed(std::string_view(frame).substr(7));
    CHECK(p.rec.messages.size() == 3);
    CHECK(p.session.releaseIfIdle());

    p.feed(text("fra", false));  // a fragmented message is in progress
    CHECK_FALSE(p.session.releaseIfIdle());
    p.feed(ping("mid"));
    CHECK_FALSE(p.session.releaseIfIdle());
    p.feed(cont("gment", true));
    REQUIRE(p.rec.messages.size() == 4);
    CHECK(p.rec.messages[3].payload == "fragment");
    CHECK(p.session.releaseIfIdle());
    CHECK(WebSocketSession::liveContexts() == base);

    // Byte by byte with a release attempt after every byte: nothing is lost.
    const std::string wire = text(makeText(300)) + text("a", false) + ping("x") + cont("b", true);
    for (char c : wire) {
      p.feedChunk(std::string_view(&c, 1));
      p.session.releaseIfIdle();
    }
    REQUIRE(p.rec.messages.size() == 6);
    CHECK(p.rec.messages[4].payload == makeText(300));
    CHECK(p.rec.messages[5].payload == "ab");
    CHECK_FALSE(p.session.failed());

    p.feed(ping("hold"));
    CHECK(WebSocketSession::liveContexts() == base + 1);
  }
  CHECK(WebSocketSession::liveContexts() == base);  // the destructor frees it
}

TEST_CASE("the context is given back once the connection closes") {
  const std::size_t base = WebSocketSession::liveContexts();
  Peer a, b, c;
  a.feed(ping("x"));
  b.feed(ping("x"));
  c.feed(ping("x"));
  CHECK(WebSocketSession::liveContexts() == base + 3);
  a.feed(closeFrame(kCloseNormal));  // peer closed
  b.feed(text("\xFF"));              // failed
  c.session.sendClose(kCloseNormal, {});
  CHECK(WebSocketSession::liveContexts() == base);
  CHECK(a.session.releaseIfIdle());
}

TEST_CASE("a peer's Close in progress is kept across feeds") {
  Peer p;
  const std::string frame = closeFrame(kCloseNormal, "bye");
  p.feed(ping("x") + frame.substr(0, 3));
  CHECK_FALSE(p.session.releaseIfIdle());
  p.feed(frame.substr(3, 5));
  CHECK(p.rec.closes.empty());
  p.feed(frame.substr(8));
  REQUIRE(p.rec.closes.size() == 1);
  CHECK(p.rec.closes[0].second == "bye");
  CHECK(p.session.wantsTcpClose());
}

TEST_CASE("releaseIfIdle from inside a callback keeps the context wslay is using") {
  Peer p;
  p.rec.releaseOnMessage = true;
  p.feed(ping("p") + text("o", false) + cont("ne", true) + binary("t", false) + cont("wo", true));
  REQUIRE(p.rec.messages.size() == 2);
  CHECK(p.rec.releaseResults == std::vector<bool>{false, false});
  CHECK(p.frames().size() == 1);
  CHECK(p.session.holdsContext());
  CHECK(p.session.releaseIfIdle());

  // Messages of the fast path come with no context to keep.
  Peer q;
  q.rec.releaseOnMessage = true;
  q.feed(text("one") + text("two"));
  CHECK(q.rec.releaseResults == std::vector<bool>{true, true});
  CHECK_FALSE(q.session.holdsContext());
}

TEST_CASE("an empty feed changes nothing") {
  Peer p;
  p.feed("");
  CHECK_FALSE(p.session.holdsContext());
  CHECK(p.rec.output.empty());
}

// ---- the fast path (whole single-frame messages, without wslay) --------------

TEST_CASE("an idle session is small") {
  // Every open socket holds one; what only a Close or wslay needs is elsewhere.
  CHECK(sizeof(WebSocketSession) <= 80);
}

TEST_CASE("whole frames of any size are unmasked correctly, without a wslay context") {
  const std::size_t base = WebSocketSession::liveContexts();
  const std::array<std::uint8_t, 4> keys[] = {
      {0x37, 0xFA, 0x21, 0x3D}, {0x00, 0x00, 0x00, 0x00}, {0xFF, 0x80, 0x01, 0x7F}};
  for (const auto& key : keys) {
    for (std::size_t n : {0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 125, 126, 127, 65535, 65536}) {
      for (bool isBinary : {false, true}) {
        CAPTURE(n);
        CAPTURE(isBinary);
        CAPTURE(static_cast<int>(key[2]));
        Peer p({.maxMessageBytes = 1u << 20});
        const std::string payload = isBinary ? makeBinary(n) : makeText(n);
        // Framed in the middle of a chunk, at an odd offset, between others.
        p.feed(binary("a") + clientFrame(isBinary ? kBinary : kText, payload, {.key = key}) +
               text("z"));
        REQUIRE(p.rec.messages.size() == 3);
        CHECK(p.rec.messages[1].binary == isBinary);
        CHECK(p.rec.messages[1].payload == payload);
        CHECK(p.rec.messages[2].payload == "z");
        CHECK(p.rec.output.empty());
        CHECK_FALSE(p.session.failed());
        CHECK_FALSE(p.session.holdsContext());
        CHECK(WebSocketSession::liveContexts() == base);
      }
    }
  }
}

TEST_CASE("whole frames then a partial one: the rest completes through wslay") {
  const std::size_t base = WebSocketSession::liveContexts();
  Peer p;
  const std::string last = text(makeText(300));
  std::string wire;
  for (int i = 0; i < 5; ++i) wire += (i % 2 == 0) ? text(numbered('t', i)) : binary("b");
  p.feed(wire + last.substr(0, 100));
  REQUIRE(p.rec.messages.size() == 5);
  CHECK(p.rec.messages[4].payload == "t4");
  CHECK(WebSocketSession::liveContexts() == base + 1);  // the cut frame is wslay's
  CHECK_FALSE(p.session.releaseIfIdle());
  p.feed(last.substr(100) + text("after"));
  REQUIRE(p.rec.messages.size() == 7);
  CHECK(p.rec.messages[5].payload == makeText(300));
  CHECK(p.rec.messages[6].payload == "after");
  CHECK(p.session.releaseIfIdle());
  p.feed(text("fast again"));
  CHECK_FALSE(p.session.holdsContext());
  REQUIRE(p.rec.messages.size() == 8);
  CHECK(p.rec.messages[7].payload == "fast again");
  // A header cut inside its extended length or its key.
  for (std::size_t cut : {1, 2, 3, 5, 7, 9, 13}) {
    CAPTURE(cut);
    Peer q;
    const std::string big = binary(makeBinary(70000));
    q.feed(text("x") + big.substr(0, cut));
    q.feed(big.substr(cut));
    REQUIRE(q.rec.messages.size() == 2);
    CHECK(q.rec.messages[1].payload == makeBinary(70000));
    CHECK_FALSE(q.session.failed());
  }
}

TEST_CASE("invalid UTF-8 in a whole frame closes with 1007, keeping what came before") {
  const std::size_t base = WebSocketSession::liveContexts();
  const std::string bad[] = {
      "\xFF",
      "0123456789abcdef\xC0\xAF",             // overlong after ASCII words
      "\xC3\xA9\xE0\x80\xAF",                 // overlong after a valid code point
      "abcdefgh\xED\xA0\x80",                 // surrogate
      "\xF4\x90\x80\x80 and more text here",  // above U+10FFFF
      "0123456789abcdef0123456789\xE2\x82",   // truncated at the end
      std::string(200, 'a') + "\x80" + "b",   // in a 16-bit-length frame
  };
  for (const std::string& s : bad) {
    CAPTURE(s);
    Peer p;
    p.feed(text("ok \xC3\xA9") + text(s) + text("after") + ping("never answered"));
    REQUIRE(p.rec.messages.size() == 1);
    CHECK(p.rec.messages[0].payload == "ok \xC3\xA9");
    checkFailed(p, kCloseInvalidPayload);
    CHECK(p.frames().size() == 1);
    CHECK(WebSocketSession::liveContexts() == base);
  }
  // Valid UTF-8 of every length up to 4 bytes per code point passes.
  Peer v;
  v.feed(
      text("\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xF0\x90\x80\x80\xF4\x8F\xBF"
           "\xBF"));
  CHECK(v.rec.messages.size() == 1);
  CHECK_FALSE(v.session.failed());
}

namespace {

// A handler that allocates nothing, for heap measurements.
struct Counter final : SessionHandler {
  std::size_t messages = 0;
  std::size_t messageBytes = 0;
  std::size_t outputBytes = 0;
  void onWsMessage(bool, std::string_view payload, bool) noexcept override {
    ++messages;
    messageBytes += payload.size();
  }
  void onWsPong(std::string_view) noexcept override {}
  void onWsCloseReceived(std::uint16_t, std::string_view) noexcept override {}
  void onWsOutput(std::string_view bytes) noexcept override { outputBytes += bytes.size(); }
};

std::size_t heapInUse() {
  return mallinfo2().uordblks;
}

}  // namespace

TEST_CASE("a whole frame over maxMessageBytes closes with 1009, nothing allocated") {
  const std::size_t base = WebSocketSession::liveContexts();
  for (std::uint8_t op : {kText, kBinary}) {
    CAPTURE(static_cast<int>(op));
    for (std::uint64_t limit : {std::uint64_t{1000}, std::uint64_t{1} << 20}) {
      CAPTURE(limit);
      Counter c;
      HandledSession session(c, {.maxMessageBytes = limit});
      std::string wire = clientFrame(op, "ok") + clientFrame(op, makeText(limit)) +
                         clientFrame(op, makeText(limit + 1)) + text("after");
      const std::size_t heapBefore = heapInUse();
      session.feed(wire.data(), wire.size());
      const std::size_t heapAfter = heapInUse();
      CHECK(c.messages == 2);
      CHECK(c.messageBytes == 2 + limit);
      CHECK(session.failed());
      CHECK(session.failCode() == kCloseMessageTooBig);
      CHECK(c.outputBytes == 4);  // the Close with its code
      CHECK(heapAfter <= heapBefore);
      CHECK_FALSE(session.holdsContext());
      CHECK(WebSocketSession::liveContexts() == base);
    }
  }
}

TEST_CASE("a reassembled message leaves no capacity behind") {
  Counter c;
  HandledSession session(c, {});
  std::string wire = binary(makeBinary(20000), false) + cont(makeBinary(20000), true);
  const std::size_t heapBefore = heapInUse();
  session.feed(wire.data(), wire.size());
  REQUIRE(c.messages == 1);
  CHECK(c.messageBytes == 40000);
  CHECK(session.holdsContext());
  CHECK(heapInUse() < heapBefore + 20000);  // wslay's context, no payload
  CHECK(session.releaseIfIdle());
  CHECK(heapInUse() <= heapBefore);
}

TEST_CASE(
    "a Close sent from a fast-path message: the rest of the chunk is checked, not delivered") {
  // As before the fast path: wslay still reads the rest of a chunk once our
  // Close went out during it, so a violation there still counts.
  Peer p;
  p.rec.closeOnMessage = true;
  p.feed(text("one") + text("two") + text("\xFF") + text("three"));
  REQUIRE(p.rec.messages.size() == 1);
  CHECK(p.onlyCloseCode() == kCloseNormal);
  CHECK(p.session.failed());
  CHECK(p.session.failCode() == kCloseInvalidPayload);
  CHECK(p.session.wantsTcpClose());
  CHECK_FALSE(p.session.holdsContext());

  Peer q;
  q.rec.closeOnMessage = true;
  q.feed(text("one") + text("two") + closeFrame(kCloseGoingAway));
  REQUIRE(q.rec.messages.size() == 1);
  REQUIRE(q.rec.closes.size() == 1);
  CHECK(q.rec.closes[0].first == kCloseGoingAway);
  CHECK(q.onlyCloseCode() == kCloseNormal);
  CHECK(q.session.wantsTcpClose());
  CHECK_FALSE(q.session.failed());
}

// ---- differential: whole chunks, random splits and single bytes agree ---------

namespace {

struct Transcript {
  std::string events;  // messages, pongs and closes received, in order
  std::string output;  // every byte sent
  bool failed = false;
  std::uint16_t failCode = 0;
  bool closeSent = false;
  bool closeReceived = false;
  bool holdsContext = false;
  bool operator==(const Transcript&) const = default;
};

struct EventLog final : SessionHandler {
  Transcript t;
  WebSocketSession* session = nullptr;
  int withoutContext = 0;  // messages delivered while no wslay context existed
  void onWsMessage(bool isBinary, std::string_view payload, bool) noexcept override {
    if (!session->holdsContext()) ++withoutContext;
    record(isBinary ? 'B' : 'T', payload.size(), payload);
  }
  void onWsPong(std::string_view payload) noexcept override {
    record('P', payload.size(), payload);
  }
  void onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept override {
    record('C', code, reason);
  }
  // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a false
  // positive) on "literal" + std::string temporaries.
  void record(char kind, std::size_t number, std::string_view bytes) {
    t.events += kind;
    t.events += std::to_string(number);
    t.events += ':';
    t.events += bytes;
  }
  void onWsOutput(std::string_view bytes) noexcept override { t.output += bytes; }
};

// Feeds `wire` in pieces of the sizes `next` returns, each a writable copy.
template <typename Next>
Transcript run(std::string_view wire, SessionLimits limits, Next next, int* withoutContext) {
  EventLog log;
  {
    HandledSession session(log, limits);
    log.session = &session;
    std::size_t i = 0;
    while (i < wire.size()) {
      const std::size_t n = std::min(next(), wire.size() - i);
      std::string chunk(wire.substr(i, n));
      session.feed(chunk.data(), chunk.size());
      i += n;
    }
    log.t.failed = session.failed();
    log.t.failCode = session.failCode();
    log.t.closeSent = session.closeSent();
    log.t.closeReceived = session.closeReceived();
    log.t.holdsContext = session.holdsContext() && session.closeSent();
  }
  *withoutContext += log.withoutContext;
  return log.t;
}

struct StreamMaker {
  std::mt19937_64 rng;
  std::uint64_t pick(std::uint64_t n) { return rng() % n; }
  bool chance(int percent) { return pick(100) < static_cast<std::uint64_t>(percent); }

  std::size_t size() {
    static constexpr std::size_t kSizes[] = {0,    1,    2,    7,     8,     9,    31,
                                             32,   33,   124,  125,   126,   127,  1000,
                                             4095, 4096, 4097, 65535, 65536, 70000};
    if (chance(50)) return pick(64);
    const std::size_t n = kSizes[pick(std::size(kSizes))];
    return n >= 65535 && !chance(30) ? pick(3000) : n;
  }
  std::string ascii(std::size_t n) {
    std::string s(n, 'a');
    for (char& c : s) c = static_cast<char>(0x20 + pick(0x5F));
    return s;
  }
  std::string payload(bool isBinary, std::size_t n) {
    if (isBinary) {
      std::string s(n, '\0');
      for (char& c : s) c = static_cast<char>(pick(256));
      return s;
    }
    return chance(50) ? ascii(n) : makeText(n);
  }
  std::string invalidUtf8() {
    static const char* kBad[] = {
        "\xFF",     "\xC0\xAF", "\xE0\x80\xAF",        "\xED\xA0\x80", "\xF4\x90\x80\x80",
        "\xE2\x82", "\x80",     "\xF8\x88\x80\x80\x80"};
    return ascii(pick(20)) + kBad[pick(std::size(kBad))] + ascii(pick(20));
  }
  FrameOptions opts(bool fin = true) {
    FrameOptions o;
    o.fin = fin;
    for (auto& k : o.key) k = static_cast<std::uint8_t>(pick(256));
    return o;
  }
  std::string control() {
    const bool isPing = chance(50);
    return clientFrame(isPing ? kPing : kPong, payload(true, pick(126)), opts());
  }
  std::string fragmented() {
    const bool isBinary = chance(50);
    const std::string whole = payload(isBinary, size());
    const std::size_t pieces = 1 + pick(4);
    std::string wire;
    std::size_t at = 0;
    for (std::size_t k = 0; k < pieces; ++k) {
      const bool last = k + 1 == pieces;
      const std::size_t n = last ? whole.size() - at : pick(whole.size() - at + 1);
      wire += clientFrame(k == 0 ? (isBinary ? kBinary : kText) : kCont,
                          std::string_view(whole).substr(at, n), opts(last));
      at += n;
      if (!last && chance(30)) wire += control();
    }
    return wire;
  }
  // One frame or message, usually valid.
  std::string item(std::uint64_t maxMessageBytes) {
    const int r = static_cast<int>(pick(100));
    if (r < 50) {
      const bool isBinary = chance(50);
      return clientFrame(isBinary ? kBinary : kText, payload(isBinary, size()), opts());
    }
    if (r < 68) return fragmented();
    if (r < 85) return control();
    FrameOptions o = opts();
    switch (r) {
      case 85:
      case 86:
        return clientFrame(kText, invalidUtf8(), o);
      case 87:
        return clientFrame(kText, invalidUtf8(), opts(false)) + cont("x", true);
      case 95:
      case 96:  // pings inside a message that turns out invalid
        return clientFrame(kText, ascii(pick(10)), opts(false)) + control() + control() +
               clientFrame(kCont, invalidUtf8(), opts(false)) + control();
      case 88:
        o.rsv = static_cast<std::uint8_t>(0x10 << pick(3));
        return clientFrame(chance(50) ? kText : kBinary, "rsv", o);
      case 89:
        o.masked = false;
        return clientFrame(chance(50) ? kText : kBinary, "unmasked", o);
      case 90:
        return clientFrame(kBinary, payload(true, maxMessageBytes + 1 + pick(10)), o);
      case 91:
        o.lengthBits = chance(50) ? 16 : 64;
        return clientFrame(kBinary, "short", o);
      case 92:
        return clientFrame(static_cast<std::uint8_t>(3 + pick(5)), "reserved", o);
      case 93:
        return cont("stray", true);
      case 94:
        return clientFrame(kText, "", {.claimedLength = maxMessageBytes + 1, .headerOnly = true});
      default:
        return clientFrame(kBinary, payload(true, pick(40)), o);
    }
  }
  std::string closing() {
    switch (pick(4)) {
      case 0:
        return clientFrame(kClose, "", opts());
      case 1:
        return clientFrame(kClose, closePayload(kCloseNormal, ascii(pick(30))), opts());
      case 2:
        return clientFrame(kClose, closePayload(999), opts());
      default:
        return clientFrame(kClose, closePayload(kCloseGoingAway, "\xC0\xAF"), opts());
    }
  }
};

}  // namespace

TEST_CASE("differential: any split of a random stream gives the same events and bytes") {
  const std::uint64_t limitChoices[] = {1u << 20, 70000, 1000, 126, 8};
  int fastWhole = 0;
  int fastRandom = 0;
  int fastBytes = 0;
  for (std::uint64_t seed = 1; seed <= 2000; ++seed) {
    StreamMaker m{std::mt19937_64(seed)};
    const SessionLimits limits{.maxMessageBytes = limitChoices[m.pick(std::size(limitChoices))]};
    std::string wire;
    const std::size_t items = 1 + m.pick(12);
    for (std::size_t k = 0; k < items; ++k) wire += m.item(limits.maxMessageBytes);
    if (m.chance(70)) wire += m.closing();
    if (m.chance(30)) wire += text("after the close");
    CAPTURE(seed);
    CAPTURE(wire.size());

    const Transcript whole = run(
        wire, limits, [&] { return wire.size(); }, &fastWhole);
    std::mt19937_64 splits(seed * 7919);
    const Transcript random = run(
        wire, limits, [&] { return splits() % 4 == 0 ? 1 + splits() % 16 : 1 + splits() % 9000; },
        &fastRandom);
    const Transcript bytes = run(
        wire, limits, [] { return std::size_t{1}; }, &fastBytes);
    CHECK(whole.events == bytes.events);
    CHECK(whole.output == bytes.output);
    CHECK(whole == bytes);
    CHECK(random == bytes);
  }
  // Whole chunks do take the fast path; single bytes never can.
  CHECK(fastWhole > 1000);
  CHECK(fastRandom > 700);
  CHECK(fastBytes == 0);
  MESSAGE("messages on the fast path: whole ", fastWhole, ", random splits ", fastRandom);
}
