#pragma once
// The server end of one open WebSocket: what a spry::WebSocket handle points
// at. It runs the session (frames in, control frames out), delivers messages
// to the user's callbacks, sends data frames, keeps the socket's topics and
// timeouts, and closes: the close handshake, a failure (1002, 1007, 1008,
// 1009, 1011), or a dropped connection, each reported once to onClose. It
// never touches the socket: bytes go through its connection's transport.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "spry/app.h"
#include "spry/message.h"
#include "spry/options.h"
#include "spry/websocket.h"
#include "ws/frame_writer.h"
#include "ws/permessage_deflate.h"
#include "ws/websocket_session.h"

namespace spry::detail {

class Connection;
class LoopContext;
class PullState;
class WebSocketTask;
struct AppState;

class WebSocketEndpoint final : private WebSocketSession {
 public:
  WebSocketEndpoint(Connection& conn, const WebSocketOptions& options);
  ~WebSocketEndpoint();
  WebSocketEndpoint(const WebSocketEndpoint&) = delete;
  WebSocketEndpoint& operator=(const WebSocketEndpoint&) = delete;

  // --- from the connection
  // permessage-deflate was agreed in the handshake (before open()).
  void enableDeflate(const DeflateAgreement& agreement) noexcept;
  // Runs the route's handler with the socket's handle (the 101 is queued).
  void open(const WebSocketHandler& handler, WebSocket ws, Request& req, std::string protocol);
  // Bytes from the transport (writable: payloads are unmasked in place).
  void receive(char* data, std::size_t size);
  void onDrained() {
    if (readPaused_ || wantDrain_ || drainAwaited_ || cold_) drainedSlow();
  }
  void sweep(std::uint64_t now);
  // Graceful stop: Close 1001.
  void beginShutdown();
  // The connection is gone: leave the topics, report the close once.
  void onClosed() noexcept;
  std::uint64_t sendTimeoutMs() const noexcept;

  // --- from spry::WebSocket (loop thread; false once not open)
  Connection& connection() const noexcept { return conn_; }
  LoopContext& loopContext() const noexcept;
  AppState& app() const noexcept;
  bool isClosed() const noexcept;
  bool listen(std::function<void(const Message&)> fn);
  bool onClose(std::function<void(std::uint16_t, std::string_view)> fn);
  bool onDrain(std::function<void()> fn);
  // Throws std::invalid_argument for a text message that is not UTF-8.
  bool send(const Message& message, SendOptions options = {});
  // A publish framed once for many subscribers (pub/sub), compressed once
  // per loop and window for those that negotiated it, under the subscriber
  // backpressure policy.
  bool deliver(PublishFrames& frames);
  bool subscribe(std::string_view topic);
  bool unsubscribe(std::string_view topic);
  bool isSubscribed(std::string_view topic) const noexcept;
  bool addStream(std::function<std::optional<Message>()> next, std::function<void()> done);
  // Starts the close handshake (the public close()).
  bool close(std::uint16_t code, std::string_view reason);
  bool ping(std::string_view payload);
  ReadyState readyState() const noexcept;
  std::optional<std::uint16_t> closeCode() const noexcept;
  std::string closeReason() const;
  std::string protocol() const;
  std::string remoteAddress() const;
  std::size_t bufferedAmount() const noexcept;
  void putData(const std::type_info& type, std::shared_ptr<void> value);
  void* getData(const std::type_info& type) const noexcept;

  // --- coroutines (coroutine_socket.cpp)
  // The socket's pull state, null until next(), drain() or closed() waits,
  // or a coroutine handler suspends.
  PullState* pull() const noexcept;
  // `buffering`: messages nobody takes are queued (a coroutine handler).
  PullState& ensurePull(bool buffering);
  // The coroutine handler's task ended (or was destroyed): its pull state
  // goes once nothing waits on it; the socket goes on as a callback socket.
  void pullTaskEnded() noexcept;

 private:
  friend class PullState;
  friend class NextAwaiter;
  friend class WebSocketTask;
  // State most sockets never use (onClose, onDrain, addStream, setData, a
  // subprotocol, topics, close reasons), allocated on first use so an idle
  // echo socket stays small.
  struct ColdState {
    std::function<void(std::uint16_t, std::string_view)> onClose;
    std::function<void()> onDrain;
    std::function<std::optional<Message>()> streamNext;
    std::function<void()> streamDone;
    // listen() called from inside the listen callback: installed once it returns.
    std::function<void(const Message&)> nextOnMessage;
    std::shared_ptr<void> userData;
    const std::type_info* userDataType = nullptr;
    std::string protocol;
    std::string closeReason;
    std::string pendingCloseReason;
    std::vector<std::string> topics;
    // The pull state while a listener is set (else in onMessage_).
    PullState* pull = nullptr;
  };

  // WebSocketSession
  void onWsMessage(bool binary, std::string_view payload, bool compressed) noexcept override;
  // Calls the listen slot with `msg` (a user callback, or a PullForward).
  void dispatch(const Message& msg) noexcept;
  void onWsPong(std::string_view payload) noexcept override;
  void onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept override;
  void onWsOutput(std::string_view bytes) noexcept override;
  CompressionPool& compressionPool() noexcept override;

  WebSocketSession& session() noexcept { return *this; }
  const WebSocketSession& session() const noexcept { return *this; }
  ColdState& cold();  // allocates on first use (may throw std::bad_alloc)
  bool streaming() const noexcept { return cold_ && cold_->streamNext; }
  // Runs user code; a throw fails this socket with 1011.
  template <class F>
  void callUser(const char* what, F&& fn) noexcept;
  // Sends our Close: after the current feed() when one is running. A failure
  // (`failing`) is what onClose reports when the peer's Close never comes.
  void sendClose(std::uint16_t code, std::string_view reason, bool failing) noexcept;
  void sendCloseNow(std::uint16_t code, std::string_view reason) noexcept;
  void sendPendingClose() noexcept;
  void drainedSlow();
  void pullStream();
  void leaveTopics() noexcept;
  void reportClose() noexcept;
  void freePull() noexcept;
  // listen() on a socket whose messages wait for a coroutine: they go to `fn` now.
  bool listenAfterPull(std::function<void(const Message&)> fn);
  void releasePullIfOrphan() noexcept;
  // Reading paused for the pull state resumes (unless backpressure holds it).
  void releaseReading() noexcept;
  void releaseReading(PullState& p) noexcept;
  void flushSoon() noexcept;
  // Compresses `payload` into the loop's buffer for this socket (the shared
  // stream, or its own context in kDedicated); null when it is not worth it.
  const std::string* compress(std::string_view payload);
  void releaseDeflater() noexcept;
  // Writes one whole data frame (rsv1: compressed payload).
  void writeFrame(WsOpcode opcode, std::string_view payload, bool rsv1);

  // Ordered so that the small fields pack: an idle socket holds one of these.
  Connection& conn_;
  const WebSocketOptions& options_;
  std::uint16_t pendingCloseCode_ = 0;  // a Close asked for during feed(); reason in cold_
  std::uint16_t closeCode_ = 0;         // reported to onClose
  std::uint16_t peerCloseCode_ = 0;     // from the peer's Close
  std::uint16_t failCode_ = 0;          // we failed the connection with it
  // Loop times in 32 bits (see ms32 in the .cpp).
  std::uint32_t lastReceived_ = 0;
  std::uint32_t messageSince_ = 0;      // an unfinished message was first seen; 0: none
  std::uint32_t deadline_ = 0;          // for the peer's Close once ours is out, else for a pong
  bool inMessage_ : 1 = false;          // the listen callback is running
  bool replacedOnMessage_ : 1 = false;  // listen() ran inside it: see ColdState::nextOnMessage
  bool closeReported_ : 1 = false;
  bool feeding_ : 1 = false;
  bool pulling_ : 1 = false;
  bool sourceRunning_ : 1 = false;  // an addStream source is being called
  bool wantDrain_ : 1 = false;
  bool awaitingPong_ : 1 = false;
  bool readPaused_ : 1 = false;  // backpressure (kPauseReading)
  // permessage-deflate: our window (9..15), 0 when not negotiated. These
  // bits fill the padding before onMessage_: a socket pays no byte for it.
  std::uint8_t deflateBits_ : 4 = 0;
  bool deflateKeep_ : 1 = false;  // kDedicated with context takeover
  // kDedicated: the loop's pool holds this socket's deflate context (it is
  // busy); given back after compression.releaseAfter without a message.
  bool hasDeflater_ : 1 = false;
  bool deflateDirty_ : 1 = false;  // a frame compressed elsewhere went out: reset first
  // Coroutines: where the pull state is (onMessage_ holds a PullForward, or
  // cold_->pull), a drain() waits, the handler's task ended with the pull
  // state busy. In the padding too.
  bool pullInMessage_ : 1 = false;
  bool pullInCold_ : 1 = false;
  bool drainAwaited_ : 1 = false;
  bool pullOrphan_ : 1 = false;
  std::function<void(const Message&)> onMessage_;
  std::unique_ptr<ColdState> cold_;
};

}  // namespace spry::detail
