#pragma once
// One accepted TCP connection: HTTP/1.1 until an upgrade, then a WebSocket.
// It owns its libuv handle, parser and session; protocol work is delegated to
// HttpParser and WebSocketSession, which never see the socket.

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <typeinfo>

#include "app_state.h"
#include "http/http_parser.h"
#include "pubsub.h"
#include "spry/message.h"
#include "spry/websocket.h"
#include "ws/websocket_session.h"

namespace spry::detail {

class Server;

// Output queued after a connection's own buffer: a shared frame, or bytes that
// arrived after one (order is kept).
struct OutChunk {
  SharedFrame shared;
  std::string owned;
  std::size_t offset = 0;
  std::string_view view() const noexcept {
    return std::string_view(shared ? *shared : owned).substr(offset);
  }
};
// Allocated only while a large shared frame is queued: an idle connection
// holds no deque (libstdc++'s allocates ~570 bytes on construction).
using OutQueue = std::unique_ptr<std::deque<OutChunk>>;

// WebSocket state that most sockets never use (onClose, onDrain, addStream,
// setData, a subprotocol, a Close being received or asked for mid-feed),
// allocated on first use so an idle echo socket stays small.
struct WsExtras {
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
};

class Connection final : public std::enable_shared_from_this<Connection>, private SessionHandler {
 public:
  Connection(Server& server, AppState& app);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  uv_tcp_t* tcp() noexcept { return &tcp_; }
  // Starts reading once accepted; `self` becomes the connection's own reference
  // until libuv's close callback.
  void start(std::shared_ptr<Connection> self, int acceptStatus);
  // Called by the server's sweep timer with uv_now().
  void sweep(std::uint64_t now) noexcept;
  // Graceful stop: close idle HTTP, finish the response in flight, close
  // WebSockets with 1001.
  void beginShutdown() noexcept;
  // Drops the TCP connection now (deadline passed); reports what is unsent.
  void abort() noexcept;
  // The flush flushSoon() scheduled (Server::runFlushes).
  void flushDeferred() noexcept {
    flushPosted_ = false;
    flush();
  }
  bool isClosed() const noexcept { return closing_; }
  std::size_t bufferedAmount() const noexcept {
    return out_.size() + queuedBytes_ + inFlightBytes_;
  }
  LoopContext& loopContext() const noexcept;
  AppState& app() const noexcept { return app_; }

  // Server-side index in the server's connection list.
  std::size_t serverIndex = 0;

  // --- HTTP, for Deferred and BodyWriter ---
  bool sendDeferred(DeferredState& state, Response response);
  bool streamWrite(StreamState& state, std::string_view data);
  void streamEnd(StreamState& state);

  // --- WebSocket, for the WebSocket handle ---
  bool wsListen(std::function<void(const Message&)> fn);
  bool wsOnClose(std::function<void(std::uint16_t, std::string_view)> fn);
  bool wsOnDrain(std::function<void()> fn);
  // Throws std::invalid_argument for a text message that is not UTF-8.
  bool wsSend(const Message& message);
  // Sends a frame framed elsewhere (pub/sub); applies the backpressure policy.
  bool wsSendFrame(const SharedFrame& frame);
  bool wsSubscribe(std::string_view topic);
  bool wsUnsubscribe(std::string_view topic);
  bool wsIsSubscribed(std::string_view topic) const noexcept;
  bool wsAddStream(std::function<std::optional<Message>()> next, std::function<void()> done);
  bool wsClose(std::uint16_t code, std::string_view reason);
  bool wsPing(std::string_view payload);
  ReadyState wsReadyState() const noexcept;
  std::optional<std::uint16_t> wsCloseCode() const noexcept;
  std::string wsCloseReason() const { return extras_ ? extras_->closeReason : std::string(); }
  std::string wsProtocol() const { return extras_ ? extras_->protocol : std::string(); }
  std::string wsRemoteAddress() const { return remoteAddress_; }
  Loop loop() const;
  void wsPutData(const std::type_info& type, std::shared_ptr<void> value);
  void* wsGetData(const std::type_info& type) const noexcept;
  std::uint64_t wsId() const noexcept { return wsId_; }

 private:
  enum class Mode { kHttp, kWebSocket };
  enum class Phase { kIdle, kHeaders, kBody, kWaiting };

  // libuv callbacks (noexcept barriers)
  static void onAlloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf) noexcept;
  static void onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) noexcept;
  static void onWriteDone(uv_write_t* req, int status) noexcept;
  static void onClosed(uv_handle_t* h) noexcept;

  // SessionHandler
  void onWsMessage(bool binary, std::string_view payload) noexcept override;
  void onWsPong(std::string_view payload) noexcept override;
  void onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept override;
  void onWsOutput(std::string_view bytes) noexcept override;

  std::uint64_t now() const noexcept;
  void onPeerEnd(int status) noexcept;
  // `data` is writable (the loop's read buffer): WebSocket payloads are
  // unmasked in place.
  void handleInput(char* data, std::size_t size);
  void stopReading() noexcept;
  void resumeReading() noexcept;
  void pauseForBackpressure() noexcept;

  void setPhase(Phase phase) noexcept;
  void processHttp();
  void dispatch(ParsedRequest parsed);
  void sendResponse(Response& response, Request& req);
  void finishResponse();
  void sendHttpError(int status, std::string_view reason);
  void startLinger() noexcept;
  // True once output has waited sendTimeout with the client reading none of it.
  bool sendStalled(std::uint64_t now) noexcept;
  std::size_t unacknowledgedBytes() noexcept;

  void upgrade(std::unique_ptr<Request> req, const RouteEntry& route, Response& handshake);
  void processWebSocket(char* data, std::size_t size);
  void applyPending() noexcept;
  void failWebSocket(std::uint16_t code, std::string_view why) noexcept;
  void startClose(std::uint16_t code, std::string_view reason) noexcept;
  void pullStream();
  // Runs user code; a throw closes this socket with 1011. A template so the
  // per-message call wraps nothing in a std::function.
  template <class F>
  void callUser(const char* what, F&& fn) noexcept;
  void reportUserError(const char* what, const char* detail) noexcept;
  void fireWsClose() noexcept;

  // Queues bytes after everything already queued (WebSocket mode).
  void append(std::string_view bytes);
  void appendShared(const SharedFrame& frame);
  bool queueEmpty() const noexcept { return !queue_ || queue_->empty(); }
  WsExtras& extras();  // allocates on first use (may throw std::bad_alloc)
  bool streaming() const noexcept { return extras_ && extras_->streamNext; }
  void leaveTopics() noexcept;
  void flush() noexcept;
  void flushSoon() noexcept;  // flush after the current callback (WebSocket API calls)
  void onDrained() noexcept;
  void closeAfterFlush() noexcept;
  void closeNow() noexcept;

  Server& server_;
  AppState& app_;
  // Owned here too: other threads reach the loop through a WebSocket handle,
  // and may hold the connection after its server is gone (after listen()).
  std::shared_ptr<LoopContext> loopContext_;
  uv_tcp_t tcp_;
  std::shared_ptr<Connection> self_;  // released in onClosed
  Mode mode_ = Mode::kHttp;
  Phase phase_ = Phase::kIdle;
  bool closing_ = false;
  bool reading_ = false;
  bool readPaused_ = false;
  bool peerEnded_ = false;
  bool lingering_ = false;
  bool shutdownSent_ = false;
  bool shutdownRequested_ = false;
  bool closeWhenFlushed_ = false;
  bool writeInFlight_ = false;
  bool releaseOut_ = false;  // give out_'s capacity back once it is written (after a 101)
  int cork_ = 0;             // >0: sends only queue; flushed when it drops to 0
  std::string out_;          // not yet handed to the kernel; precedes queue_
  OutQueue queue_;           // large shared frames (pub/sub), queued without copying
  std::size_t queuedBytes_ = 0;
  std::size_t inFlightBytes_ = 0;
  std::string in_;              // HTTP bytes received, not yet parsed
  std::uint64_t deadline_ = 0;  // uv_now() ms; 0 = none
  // Send timeout: when libuv's write queue last shrank (or the write began),
  // and its size then.
  std::uint64_t stallSince_ = 0;
  std::size_t stallPending_ = 0;
  std::string remoteAddress_;
  std::uint16_t remotePort_ = 0;

  // HTTP
  std::unique_ptr<HttpParser> parser_;
  std::unique_ptr<Request> current_;     // its response is pending (deferred or streaming)
  std::shared_ptr<StreamState> stream_;  // body stream in progress
  bool currentKeepAlive_ = true;
  bool currentHead_ = false;
  bool currentHttp10_ = false;
  bool dispatching_ = false;
  bool inProcess_ = false;
  std::uint64_t serial_ = 0;

  // WebSocket
  // Inline rather than allocated at the upgrade: one allocation fewer, and
  // none made late enough to pin the handshake's freed memory.
  std::optional<WebSocketSession> session_;
  const WebSocketOptions* wsOptions_ = nullptr;
  std::uint64_t wsId_ = 0;
  std::function<void(const Message&)> onMessage_;
  std::unique_ptr<WsExtras> extras_;
  std::uint16_t pendingCloseCode_ = 0;  // a Close asked for during feed(); reason in extras_
  std::uint16_t closeCode_ = 0;         // reported to onClose
  std::uint16_t peerCloseCode_ = 0;     // from the peer's Close
  std::uint16_t failCode_ = 0;          // we failed the connection with it
  bool inMessage_ = false;              // the listen callback is running
  bool replacedOnMessage_ = false;      // listen() ran inside it: see WsExtras::nextOnMessage
  bool closeFired_ = false;
  bool feeding_ = false;
  bool pulling_ = false;
  bool sourceRunning_ = false;  // an addStream source is being called
  bool wantDrain_ = false;
  bool flushPosted_ = false;  // flushSoon() is pending
  bool awaitingPong_ = false;
  std::uint64_t lastReceived_ = 0;
  std::uint64_t messageSince_ = 0;  // an unfinished message was first seen; 0: none
  std::uint64_t closeDeadline_ = 0;
  std::uint64_t pongDeadline_ = 0;
};

}  // namespace spry::detail
