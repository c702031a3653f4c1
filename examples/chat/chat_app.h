#pragma once
// The chat room server: a web page at / and WebSocket rooms at
// /chat/:room?nick=NAME, registered on a spry::App. main.cpp serves it;
// tests/integration/chat_test.cpp tests it over loopback. The protocol is
// described in README.md beside this file.

#include <cstddef>
#include <string>
#include <vector>

#include <spry/spry.h>

namespace chat {

/// Nicknames: 1 to kMaxNickChars characters, letters, digits, '_', '-', '.'.
/// Unique per room, ignoring ASCII case.
inline constexpr std::size_t kMaxNickChars = 24;
/// Room names: 1 to kMaxRoomChars characters from the same set.
inline constexpr std::size_t kMaxRoomChars = 32;

struct Options {
  /// The address the server listens on: with the bound port it makes the
  /// server's own origin (http://HOST:PORT; for a loopback or wildcard address
  /// also http://localhost:PORT, http://127.0.0.1:PORT and http://[::1]:PORT).
  std::string host = "127.0.0.1";
  /// More origins whose pages may open a chat socket ("https://chat.example.com");
  /// "*" allows any origin (not recommended).
  std::vector<std::string> allowedOrigins{};
  /// Chat messages of a room replayed to whoever joins it.
  std::size_t historySize = 50;
  /// Longest chat message text, in characters (code points): longer → an
  /// "error" message "too_long", the socket stays open.
  std::size_t maxTextChars = 2000;
  /// Largest incoming WebSocket message, in bytes: larger → close 1009.
  std::size_t maxMessageBytes = 16 * 1024;
  /// Per-connection rate limit (token bucket): `ratePerSecond` messages a
  /// second on average, bursts up to `rateBurst`; past it → close 1008.
  double ratePerSecond = 10;
  double rateBurst = 20;
  /// Rooms kept at once (with their history); an empty room is forgotten
  /// first, and a join that would need more is refused with 503.
  std::size_t maxRooms = 1000;
};

/// Registers the page (/, /static/chat.css, /static/chat.js) and the chat
/// group (/chat/:room) on `app`. Call before app.listen()/attach(); the
/// routes refer to `app` (its port, publish) and must not outlive it.
void install(spry::App& app, Options options = {});

}  // namespace chat
