#pragma once
// Server side of a WebSocket connection (RFC 6455) on wslay, fed plain bytes:
// it never touches a socket. Received messages and every byte to send go to
// the owner through SessionHandler. Data messages are framed by the owner
// with frame_writer.h (server frames are unmasked), so one framed buffer can
// serve many sockets; control frames (pong, close) come out of the
// session through onWsOutput, in order with what the owner already queued.
// Whole single-frame messages, the common case, are unmasked in place and
// delivered without wslay; anything else goes through the guard and wslay.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

// WsOpcode, the close codes and every frame writer, for the session's owners.
#include "ws/frame_guard.h"
#include "ws/frame_writer.h"
#include "ws/permessage_deflate.h"

namespace spry::detail {

// Implemented by the owner (the connection). Calls happen only from inside
// feed(), sendClose() and sendPing(); the handler must not throw.
class SessionHandler {
 public:
  // A complete message (fragments reassembled, inflated when `compressed`;
  // text is valid UTF-8). The view is valid during the call only.
  virtual void onWsMessage(bool binary, std::string_view payload, bool compressed) noexcept = 0;
  // A Pong arrived (liveness). Pings are answered by the session itself.
  virtual void onWsPong(std::string_view payload) noexcept = 0;
  // The peer's Close arrived: code 1005 when it carried none. Fires once.
  virtual void onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept = 0;
  // Bytes to send, in order. Valid during the call only.
  virtual void onWsOutput(std::string_view bytes) noexcept = 0;
  // Where compressed messages are inflated (permessage-deflate): by default
  // one pool per thread.
  virtual CompressionPool& compressionPool() noexcept;

 protected:
  ~SessionHandler() = default;
};

struct SessionLimits {
  std::uint64_t maxMessageBytes = 16u << 20;  // over it → close 1009, seen from the frame header
};

// The session calls its owner through the hooks of SessionHandler, made
// virtual members here: the owner derives from the session (the WebSocket
// endpoint does), so an idle socket holds no handler reference. Tests and
// fuzzers use HandledSession, which forwards to a SessionHandler.
class WebSocketSession {
 public:
  explicit WebSocketSession(const SessionLimits& limits);
  WebSocketSession(const WebSocketSession&) = delete;
  WebSocketSession& operator=(const WebSocketSession&) = delete;

  // Processes received bytes (any split). After a failure or once the close
  // handshake is done, further input is ignored. A protocol violation sends a
  // Close with its RFC code (1002, 1007, 1009) and sets failed().
  // The buffer is borrowed for the call and must be writable: payloads are
  // unmasked in place, so its content afterwards is unspecified.
  void feed(char* data, std::size_t size) noexcept;

  // Sends a Close frame once (later calls are ignored). The code is assumed
  // valid (the public API validates); code 0 sends an empty Close.
  void sendClose(std::uint16_t code, std::string_view reason) noexcept;
  // Sends a Ping (payload of at most 125 bytes) unless a Close was sent.
  void sendPing(std::string_view payload) noexcept;
  // permessage-deflate was negotiated: RSV1 marks compressed messages, which
  // are inflated (up to maxMessageBytes) before delivery. Before any feed().
  void enableDeflate() noexcept { guard_.rsv1Allowed = true; }
  bool deflateEnabled() const noexcept { return guard_.rsv1Allowed; }

  bool closeSent() const noexcept { return closeSent_; }
  bool closeReceived() const noexcept { return closeReceived_; }
  // A protocol violation was seen; the Close went out with failCode().
  bool failed() const noexcept { return failCode_ != 0; }
  std::uint16_t failCode() const noexcept { return failCode_; }
  // The owner should close TCP once its output is flushed: the close
  // handshake is complete, or the connection failed.
  bool wantsTcpClose() const noexcept { return closeSent_ && (closeReceived_ || failed()); }

  // Frees the wslay context when nothing is half-received or queued, so an
  // idle connection costs little; a new one is made when bytes arrive.
  // Returns true when no context is held afterwards.
  bool releaseIfIdle() noexcept;
  bool holdsContext() const noexcept { return wslay_ != nullptr; }
  // Part of a frame, of a fragmented message or of a Close has arrived and
  // the rest has not (for the owner's message timeout).
  bool midMessage() const noexcept { return !guard_.idle(); }
  // Number of wslay contexts alive in this process (a live counter for tests).
  static std::size_t liveContexts() noexcept;

 protected:
  ~WebSocketSession();
  // What SessionHandler declares, with the same contract.
  virtual void onWsMessage(bool binary, std::string_view payload, bool compressed) noexcept = 0;
  virtual void onWsPong(std::string_view payload) noexcept = 0;
  virtual void onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept = 0;
  virtual void onWsOutput(std::string_view bytes) noexcept = 0;
  virtual CompressionPool& compressionPool() noexcept = 0;

 private:
  struct WslayCallbacks;  // the C callbacks, defined next to the wslay code
  friend struct WslayCallbacks;
  // The wslay context and what only wslay's callbacks use, made together
  // when bytes first need wslay and freed together.
  struct WslayState;
  // What one runWslay call hands to wslay, on that call's stack.
  struct WslayInput;

  bool isStopped() const noexcept { return failCode_ != 0 || closeReceived_; }
  bool wslayRunning() const noexcept;
  std::size_t deliverWholeFrames(std::uint8_t* p, std::size_t n) noexcept;
  static constexpr std::size_t kFailed = SIZE_MAX;
  std::size_t deliverWholeCompressed(std::uint8_t* frame, std::size_t n) noexcept;
  std::uint16_t deliverCompressed(bool binary, std::string_view payload) noexcept;
  // 0, or the close code for an inflate result (1009, 1007).
  static std::uint16_t inflateFailure(Inflater::Status status) noexcept;
  std::size_t feedSlow(const std::uint8_t* p, std::size_t n, bool untilIdle,
                       bool wslayReads) noexcept;
  void runWslay(const std::uint8_t* p, std::size_t n) noexcept;
  bool createContext() noexcept;
  void destroyContext() noexcept;
  void dropUnusedContext() noexcept;
  void fail(std::uint16_t code) noexcept;
  void handlePeerClose() noexcept;
  void onWslayOutput(const std::uint8_t* data, std::size_t len, bool more) noexcept;
  void emitWslayFrame(const std::uint8_t* data, std::size_t len) noexcept;
  void sendDroppedPongs(const WslayInput& input) noexcept;

  // Every idle socket holds one of these, so it is kept small (see the
  // static_assert in the .cpp): what only wslay or a Close needs lives on
  // the heap until then (wslay_, the guard's PeerClose).
  SessionLimits limits_;
  std::unique_ptr<WslayState> wslay_;
  [[no_unique_address]] FrameGuard guard_;  // the three fields after it fill its tail padding
  std::uint16_t failCode_ = 0;
  bool closeSent_ = false;
  bool closeReceived_ = false;
};

// A session that reports to a separate SessionHandler (tests, fuzzers).
class HandledSession final : public WebSocketSession {
 public:
  HandledSession(SessionHandler& handler, const SessionLimits& limits)
      : WebSocketSession(limits), handler_(handler) {}
  ~HandledSession() = default;

 private:
  void onWsMessage(bool binary, std::string_view payload, bool compressed) noexcept override {
    handler_.onWsMessage(binary, payload, compressed);
  }
  void onWsPong(std::string_view payload) noexcept override { handler_.onWsPong(payload); }
  void onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept override {
    handler_.onWsCloseReceived(code, reason);
  }
  void onWsOutput(std::string_view bytes) noexcept override { handler_.onWsOutput(bytes); }
  CompressionPool& compressionPool() noexcept override { return handler_.compressionPool(); }

  SessionHandler& handler_;
};

}  // namespace spry::detail
