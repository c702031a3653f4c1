// Fuzzes the server-side WebSocket session with random client bytes split at
// random points, checking the invariants the connection relies on, and that
// the same bytes fed one at a time (never the whole-frame fast path) give the
// same messages, pongs, Close and output.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ws/websocket_session.h"

namespace {

struct Recorder final : spry::detail::SessionHandler {
  std::string out;
  std::string events;  // messages, pongs and the peer's Close, in order
  int closes = 0;
  std::uint64_t maxMessage = 0;
  void onWsMessage(bool binary, std::string_view payload, bool) noexcept override {
    if (payload.size() > maxMessage) std::abort();
    events += binary ? 'B' : 'T';
    events += std::to_string(payload.size());
    events += payload;
  }
  void onWsPong(std::string_view payload) noexcept override {
    if (payload.size() > 125) std::abort();
    events += 'P';
    events += std::to_string(payload.size());
    events += payload;
  }
  void onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept override {
    if (++closes > 1 || reason.size() > 123) std::abort();
    events += 'C';
    events += std::to_string(code);
    events += reason;
  }
  void onWsOutput(std::string_view bytes) noexcept override { out.append(bytes); }
};

// Counts the Close frames among the server's unmasked output frames.
int closeFramesIn(std::string_view s) {
  int closes = 0;
  while (s.size() >= 2) {
    auto b0 = static_cast<unsigned char>(s[0]);
    auto b1 = static_cast<unsigned char>(s[1]);
    if (b1 & 0x80) std::abort();  // server frames are never masked
    std::uint64_t len = b1 & 0x7F;
    std::size_t head = 2;
    if (len == 126) {
      if (s.size() < 4) std::abort();
      len = (static_cast<unsigned char>(s[2]) << 8) | static_cast<unsigned char>(s[3]);
      head = 4;
    } else if (len == 127) {
      std::abort();  // control frames only: never this long
    }
    if (s.size() < head + len) std::abort();
    if ((b0 & 0x0F) == 0x8) ++closes;
    s.remove_prefix(head + len);
  }
  if (!s.empty()) std::abort();
  return closes;
}

struct Outcome {
  bool failed = false;
  std::uint16_t failCode = 0;
  bool closeSent = false;
  bool closeReceived = false;
};

// Feeds `input` in rounds of `chunk` bytes (each round one feed, or one feed
// per byte), with the same actions after the same rounds.
Outcome run(Recorder& rec, std::string_view input, std::size_t chunk, std::uint8_t actions,
            bool byteByByte) {
  spry::detail::SessionLimits limits;
  limits.maxMessageBytes = (actions & 1) ? 64 : 1 << 16;
  rec.maxMessage = limits.maxMessageBytes;
  Outcome o;
  {
    spry::detail::HandledSession session(rec, limits);
    std::size_t round = 0;
    std::string buffer;  // feed() may unmask in place
    while (!input.empty()) {
      const std::string_view piece = input.substr(0, chunk);
      if (byteByByte) {
        for (char c : piece) session.feed(&c, 1);
      } else {
        buffer.assign(piece);
        session.feed(buffer.data(), buffer.size());
      }
      input.remove_prefix(piece.size());
      ++round;
      if ((actions & 2) && round % 3 == 0) session.releaseIfIdle();
      if ((actions & 4) && round == 2) session.sendPing("p");
      if ((actions & 8) && round == 4) session.sendClose(1000, "bye");
    }
    if (session.wantsTcpClose() && !session.closeSent()) std::abort();
    if (session.closeSent() && session.holdsContext()) std::abort();
    if (closeFramesIn(rec.out) > 1) std::abort();
    o = {session.failed(), session.failCode(), session.closeSent(), session.closeReceived()};
  }
  if (spry::detail::WebSocketSession::liveContexts() != 0) std::abort();
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t chunk = static_cast<std::size_t>(data[0]) + 1;
  const std::uint8_t actions = data[1];
  const std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  Recorder chunked;
  Recorder bytes;
  const Outcome a = run(chunked, input, chunk, actions, false);
  const Outcome b = run(bytes, input, chunk, actions, true);
  if (chunked.events != bytes.events || chunked.out != bytes.out || a.failed != b.failed ||
      a.failCode != b.failCode || a.closeSent != b.closeSent ||
      a.closeReceived != b.closeReceived) {
    std::abort();
  }
  return 0;
}
