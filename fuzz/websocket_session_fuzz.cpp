// Fuzzes the server-side WebSocket session with random client bytes split at
// random points, checking the invariants the connection relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "websocket_session.h"

namespace {

struct Recorder final : spry::detail::SessionHandler {
  std::string out;
  int closes = 0;
  std::uint64_t maxMessage = 0;
  void onWsMessage(bool, std::string_view payload) noexcept override {
    if (payload.size() > maxMessage) std::abort();
  }
  void onWsPong(std::string_view payload) noexcept override {
    if (payload.size() > 125) std::abort();
  }
  void onWsCloseReceived(std::uint16_t, std::string_view reason) noexcept override {
    if (++closes > 1 || reason.size() > 123) std::abort();
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  std::size_t chunk = static_cast<std::size_t>(data[0]) + 1;
  std::uint8_t actions = data[1];
  Recorder rec;
  spry::detail::SessionLimits limits;
  limits.maxMessageBytes = (actions & 1) ? 64 : 1 << 16;
  rec.maxMessage = limits.maxMessageBytes;
  {
    spry::detail::WebSocketSession session(rec, limits);
    std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
    std::size_t round = 0;
    while (!input.empty()) {
      session.feed(input.substr(0, chunk));
      input.remove_prefix(std::min(chunk, input.size()));
      ++round;
      if ((actions & 2) && round % 3 == 0) session.releaseIfIdle();
      if ((actions & 4) && round == 2) session.sendPing("p");
      if ((actions & 8) && round == 4) session.sendClose(1000, "bye");
    }
    if (session.wantsTcpClose() && !session.closeSent()) std::abort();
    if (closeFramesIn(rec.out) > 1) std::abort();
  }
  if (spry::detail::WebSocketSession::liveContexts() != 0) std::abort();
  return 0;
}
