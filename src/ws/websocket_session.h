#pragma once
// Server side of a WebSocket connection (RFC 6455) on wslay, fed plain bytes:
// it never touches a socket. Received messages and every byte to send go to
// the owner through SessionHandler. Data messages are framed by the owner
// with appendFrameHeader (server frames are unmasked), so one framed buffer
// can serve many sockets; control frames (pong, close) come out of the
// session through onWsOutput, in order with what the owner already queued.
// Whole single-frame messages, the common case, are unmasked in place and
// delivered without wslay; anything else goes through the guard and wslay.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

struct wslay_event_context;

namespace spry::detail {

enum class WsOpcode : std::uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

inline constexpr std::uint16_t kCloseNormal = 1000;
inline constexpr std::uint16_t kCloseGoingAway = 1001;
inline constexpr std::uint16_t kCloseProtocolError = 1002;
inline constexpr std::uint16_t kCloseUnsupportedData = 1003;
inline constexpr std::uint16_t kCloseNoStatus = 1005;  // never sent on the wire
inline constexpr std::uint16_t kCloseAbnormal = 1006;  // never sent on the wire
inline constexpr std::uint16_t kCloseInvalidPayload = 1007;
inline constexpr std::uint16_t kClosePolicyViolation = 1008;
inline constexpr std::uint16_t kCloseMessageTooBig = 1009;
inline constexpr std::uint16_t kCloseInternalError = 1011;

// Codes an endpoint may put in a Close frame: 1000-1003, 1007-1014, 3000-4999.
bool isValidCloseCode(std::uint16_t code) noexcept;

// Appends the header of one unmasked server frame.
void appendFrameHeader(std::string& out, WsOpcode opcode, std::uint64_t payloadSize,
                       bool fin = true, bool rsv1 = false);

// Implemented by the owner (the connection). Calls happen only from inside
// feed(), sendClose() and sendPing(); the handler must not throw.
class SessionHandler {
 public:
  // A complete message (fragments reassembled; text is valid UTF-8). The view
  // is valid during the call only.
  virtual void onWsMessage(bool binary, std::string_view payload) noexcept = 0;
  // A Pong arrived (liveness). Pings are answered by the session itself.
  virtual void onWsPong(std::string_view payload) noexcept = 0;
  // The peer's Close arrived: code 1005 when it carried none. Fires once.
  virtual void onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept = 0;
  // Bytes to send, in order. Valid during the call only.
  virtual void onWsOutput(std::string_view bytes) noexcept = 0;

 protected:
  ~SessionHandler() = default;
};

struct SessionLimits {
  std::uint64_t maxMessageBytes = 16u << 20;  // over it → close 1009, seen from the frame header
};

class WebSocketSession {
 public:
  WebSocketSession(SessionHandler& handler, const SessionLimits& limits);
  ~WebSocketSession();
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
  bool holdsContext() const noexcept { return ctx_ != nullptr; }
  // Part of a frame, of a fragmented message or of a Close has arrived and
  // the rest has not (for the owner's message timeout).
  bool midMessage() const noexcept { return !guard_.idle(); }
  // Number of wslay contexts alive in this process (a live counter for tests).
  static std::size_t liveContexts() noexcept;

 private:
  // Frame-header checks that wslay lacks or answers wrongly, tracked across
  // splits. It runs over every byte that wslay sees, before wslay does, and
  // it keeps the peer's Close to itself (wslay would reject 1012-1014 and
  // accept a 1-byte Close), so wslay never receives a Close frame.
  struct Guard {
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
      std::uint8_t payload[125] = {};
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
    bool fragmented = false;
    bool closeFrame = false;  // a Close header began; the rest is the guard's
    bool closePayloadPending = false;
  };
  struct WslayCallbacks;  // the C callbacks, defined next to the wslay code
  friend struct WslayCallbacks;
  // What one runWslay call hands to wslay, on that call's stack.
  struct WslayInput {
    const std::uint8_t* next = nullptr;
    const std::uint8_t* end = nullptr;
    // A message that arrived in one piece is delivered straight from wslay's
    // buffer; anything else is reassembled in message_.
    std::string_view whole;
    bool haveWhole = false;
    // Pings received (each a length byte and the payload) and pongs wslay sent.
    std::string pings;
    std::size_t pingCount = 0;
    std::size_t pongsSent = 0;
  };

  bool isStopped() const noexcept { return failCode_ != 0 || closeReceived_; }
  std::size_t deliverWholeFrames(std::uint8_t* p, std::size_t n) noexcept;
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
  // static_assert in the .cpp): what only a Close or a wslay call needs lives
  // elsewhere until then.
  SessionHandler& handler_;
  SessionLimits limits_;
  wslay_event_context* ctx_ = nullptr;
  WslayInput* input_ = nullptr;  // set while wslay runs
  // Frame being received by wslay, as its start callback reported it.
  std::uint64_t frameLength_ = 0;
  // A message reassembled from fragments (or from a frame wslay read in
  // pieces); its capacity is given back once it is delivered.
  std::string message_;
  Guard guard_;
  std::uint16_t failCode_ = 0;
  std::uint16_t wslayCloseCode_ = 0;
  bool closeSent_ = false;
  bool closeReceived_ = false;
  bool internalError_ = false;
  bool pingReceived_ = false;  // wslay has a pong to send
  bool wslayClosed_ = false;   // wslay tried to send its own Close (intercepted)
  std::uint8_t frameOpcode_ = 0;
  bool frameFin_ = false;
  // wslay writes a frame header, then its payload, within one send call;
  // the header waits here so the owner gets each control frame in one piece.
  std::uint8_t stashLength_ = 0;
  std::uint8_t stash_[10] = {};
};

}  // namespace spry::detail
