#include "ws/websocket_endpoint.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "app_state.h"
#include "connection.h"
#include "loop_context.h"
#include "server.h"
#include "spry/log.h"
#include "ws/coroutine_socket.h"
#include "ws/utf8.h"

namespace spry::detail {

namespace {
// Loop times of an endpoint are kept in 32 bits (an idle socket holds
// three): they are compared by wrapping difference, exact for spans up to
// 24 days; longer deadlines are capped there, and a socket quiet for longer
// than that counts as quiet for 0 ms (timeouts are far shorter).
std::uint32_t ms32(std::uint64_t now) noexcept {
  return static_cast<std::uint32_t>(now);
}
// Milliseconds from `since` to now; 0 for a time (just) after now.
std::uint64_t elapsed(std::uint64_t now, std::uint32_t since) noexcept {
  const auto d = static_cast<std::int32_t>(ms32(now) - since);
  return d > 0 ? static_cast<std::uint64_t>(d) : 0;
}
std::uint32_t deadlineAfter(std::uint64_t now, std::uint64_t ms) noexcept {
  return ms32(now + std::min<std::uint64_t>(ms, INT32_MAX));
}
bool reached(std::uint64_t now, std::uint32_t deadline) noexcept {
  return static_cast<std::int32_t>(ms32(now) - deadline) >= 0;
}
}  // namespace

WebSocketEndpoint::WebSocketEndpoint(Connection& conn, const WebSocketOptions& options)
    : WebSocketSession(SessionLimits{static_cast<std::uint64_t>(options.maxMessageBytes)}),
      conn_(conn),
      options_(options),
      lastReceived_(ms32(conn.now())) {}

// The connection closes (onClosed, on the loop) before it is destroyed, so
// its deflate context is back in the pool by now, and every coroutine that
// waited on this socket has been resumed.
WebSocketEndpoint::~WebSocketEndpoint() {
  delete pull();
}

// Inlined: the listen callback's call is on every message's path.
template <class F>
[[gnu::always_inline]] inline void WebSocketEndpoint::callUser(const char* what, F&& fn) noexcept {
  if (!runGuarded(what, std::forward<F>(fn), "; closing the socket with 1011")) {
    sendClose(kCloseInternalError, "internal error", true);
  }
}

LoopContext& WebSocketEndpoint::loopContext() const noexcept {
  return conn_.loopContext();
}

AppState& WebSocketEndpoint::app() const noexcept {
  return conn_.app();
}

bool WebSocketEndpoint::isClosed() const noexcept {
  return conn_.isClosed();
}

std::size_t WebSocketEndpoint::bufferedAmount() const noexcept {
  return conn_.transport().bufferedAmount();
}

std::uint64_t WebSocketEndpoint::sendTimeoutMs() const noexcept {
  return msOf(options_.sendTimeout);
}

WebSocketEndpoint::ColdState& WebSocketEndpoint::cold() {
  if (!cold_) cold_ = std::make_unique<ColdState>();
  return *cold_;
}

// ---------------------------------------------------------------- opening, receiving

void WebSocketEndpoint::enableDeflate(const DeflateAgreement& agreement) noexcept {
  session().enableDeflate();
  deflateBits_ = agreement.serverWindowBits & 0x0F;
  deflateKeep_ =
      options_.compression.mode == Compression::kDedicated && !agreement.serverNoContextTakeover;
}

CompressionPool& WebSocketEndpoint::compressionPool() noexcept {
  return loopContext().compression();
}

void WebSocketEndpoint::open(const WebSocketHandler& handler, WebSocket ws, Request& req,
                             std::string protocol) {
  if (!protocol.empty()) cold().protocol = std::move(protocol);
  callUser("ws handler", [&] { handler(ws, req); });
  sendPendingClose();
}

void WebSocketEndpoint::receive(char* data, std::size_t size) {
  lastReceived_ = ms32(conn_.now());
  awaitingPong_ = false;
  feeding_ = true;
  session().feed(data, size);  // unmasks in place: the loop's read buffer or the upgrade's rest
  feeding_ = false;
  // The clock of messageTimeout starts when a message is seen unfinished
  // after the last complete one (onWsMessage resets it).
  if (session().midMessage()) {
    if (!messageSince_) messageSince_ = lastReceived_ ? lastReceived_ : 1;  // 0 means none
  } else {
    messageSince_ = 0;
  }
  if (pendingCloseCode_) sendPendingClose();
  if (session().failed() && !failCode_) failCode_ = session().failCode();
  if (session().wantsTcpClose()) conn_.transport().closeAfterFlush(0);
}

[[gnu::always_inline]] inline void WebSocketEndpoint::dispatch(const Message& msg) noexcept {
  // The callback may replace itself (ws.listen) or the socket may close under
  // it; neither may destroy or move it mid-call, so both wait for its return
  // (listen, reportClose). No copy or move per message.
  inMessage_ = true;
  callUser("ws listen callback", [&] { onMessage_(msg); });
  inMessage_ = false;
  if (replacedOnMessage_) {
    replacedOnMessage_ = false;
    onMessage_ = std::move(cold_->nextOnMessage);
    cold_->nextOnMessage = nullptr;
  }
  if (conn_.isClosed() && !pullInMessage_) onMessage_ = nullptr;
  if (pullOrphan_) releasePullIfOrphan();
}

void WebSocketEndpoint::onWsMessage(bool binary, std::string_view payload,
                                    bool compressed) noexcept {
  messageSince_ = 0;
  if (!onMessage_ || pendingCloseCode_ || conn_.isClosed()) return;
  dispatch(Message::received(binary ? Message::Type::kBinary : Message::Type::kText, payload,
                             compressed));
}

void WebSocketEndpoint::onWsPong(std::string_view) noexcept {
  awaitingPong_ = false;
}

void WebSocketEndpoint::onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept {
  peerCloseCode_ = code;
  if (reason.empty() && !cold_) return;  // nothing to keep: no cold state for it
  try {
    cold().closeReason.assign(reason);
  } catch (...) {
  }
}

void WebSocketEndpoint::onWsOutput(std::string_view bytes) noexcept {
  try {
    conn_.transport().write(bytes);
  } catch (...) {
    // Out of memory for a control frame: the connection cannot go on.
    conn_.transport().closeAfterFlush(0);
  }
}

// ---------------------------------------------------------------- closing

void WebSocketEndpoint::sendClose(std::uint16_t code, std::string_view reason,
                                  bool failing) noexcept {
  if (conn_.isClosed() || session().closeSent()) return;
  if (failing && !failCode_) failCode_ = code;
  if (!feeding_) {
    sendCloseNow(code, reason);
    return;
  }
  // Inside feed(), the session is busy: the Close goes out once it returns.
  if (pendingCloseCode_) return;
  pendingCloseCode_ = code;
  try {
    cold().pendingCloseReason.assign(reason);
  } catch (...) {  // the code alone still closes
  }
}

void WebSocketEndpoint::sendPendingClose() noexcept {
  if (!pendingCloseCode_) return;
  const std::uint16_t code = pendingCloseCode_;
  pendingCloseCode_ = 0;
  std::string reason;
  if (cold_) reason.swap(cold_->pendingCloseReason);
  sendCloseNow(code, reason);
}

void WebSocketEndpoint::sendCloseNow(std::uint16_t code, std::string_view reason) noexcept {
  if (conn_.isClosed() || session().closeSent()) return;
  session().sendClose(code, reason);
  deadline_ = deadlineAfter(conn_.now(), msOf(options_.closeTimeout));
  // The peer's Close must get through even while nobody pulls messages.
  if (pullInMessage_ || pullInCold_) releaseReading();
  if (cold_) {
    cold_->streamNext = nullptr;
    cold_->streamDone = nullptr;
  }
  if (session().wantsTcpClose()) conn_.transport().closeAfterFlush(0);
  flushSoon();
}

bool WebSocketEndpoint::close(std::uint16_t code, std::string_view reason) {
  if (readyState() != ReadyState::kOpen) return false;
  sendClose(code, reason, false);
  return true;
}

void WebSocketEndpoint::beginShutdown() {
  sendClose(kCloseGoingAway, "server shutting down", true);
}

void WebSocketEndpoint::onClosed() noexcept {
  releaseDeflater();
  leaveTopics();
  reportClose();
}

void WebSocketEndpoint::reportClose() noexcept {
  if (closeReported_) return;
  closeReported_ = true;
  closeCode_ = peerCloseCode_ ? peerCloseCode_ : failCode_ ? failCode_ : kCloseAbnormal;
  conn_.server().countWebSocket(-1);
  // The listen callback is destroyed once it returns when it is running now.
  if (!inMessage_ && !pullInMessage_) onMessage_ = nullptr;
  if (cold_) {
    auto onClose = std::move(cold_->onClose);
    cold_->onClose = nullptr;
    cold_->onDrain = nullptr;
    cold_->streamNext = nullptr;
    cold_->streamDone = nullptr;
    if (onClose) {
      runGuarded("ws onClose callback", [&] { onClose(closeCode_, cold_->closeReason); });
    }
  }
  // Coroutines waiting on the socket resume after onClose, still able to read
  // its data.
  if (PullState* p = pull()) {
    p->notifyClosed(closeCode_, cold_ ? std::string_view(cold_->closeReason) : std::string_view());
    releasePullIfOrphan();
  }
  if (cold_) cold_->userData.reset();
}

ReadyState WebSocketEndpoint::readyState() const noexcept {
  if (conn_.isClosed()) return ReadyState::kClosed;
  if (session().closeSent() || session().closeReceived() || pendingCloseCode_) {
    return ReadyState::kClosing;
  }
  return ReadyState::kOpen;
}

std::optional<std::uint16_t> WebSocketEndpoint::closeCode() const noexcept {
  if (!closeReported_) return std::nullopt;
  return closeCode_;
}

std::string WebSocketEndpoint::closeReason() const {
  return cold_ ? cold_->closeReason : std::string();
}

std::string WebSocketEndpoint::remoteAddress() const {
  return conn_.isClosed() ? std::string() : conn_.transport().peerAddress(nullptr);
}

std::string WebSocketEndpoint::protocol() const {
  return cold_ ? cold_->protocol : std::string();
}

// ---------------------------------------------------------------- the user's callbacks

bool WebSocketEndpoint::listen(std::function<void(const Message&)> fn) {
  if (conn_.isClosed()) return false;
  if (pullInMessage_) return listenAfterPull(std::move(fn));
  if (inMessage_) {
    // Replacing the running callback would destroy it mid-call.
    cold().nextOnMessage = std::move(fn);
    replacedOnMessage_ = true;
    return true;
  }
  onMessage_ = std::move(fn);
  return true;
}

bool WebSocketEndpoint::listenAfterPull(std::function<void(const Message&)> fn) {
  PullState* p = pull();
  if (p->pulling()) {
    throw std::logic_error(
        "spry: WebSocket::listen on a socket whose messages a coroutine pulls with "
        "co_await ws.next(): a socket's messages go to listen or to next(), not both");
  }
  // Only a waiting next() runs code from inside the forwarder, and it pulls:
  // the forwarder is not running now, so it may be replaced.
  cold().pull = p;
  pullInCold_ = true;
  pullInMessage_ = false;
  onMessage_ = std::move(fn);
  p->buffering_ = false;
  releaseReading();
  // What the coroutine handler's socket buffered goes to the listener first.
  std::vector<Message> queued = p->takeQueue();
  for (const Message& m : queued) {
    if (!onMessage_ || conn_.isClosed()) break;
    dispatch(m);
  }
  return true;
}

bool WebSocketEndpoint::onClose(std::function<void(std::uint16_t, std::string_view)> fn) {
  if (conn_.isClosed()) return false;
  cold().onClose = std::move(fn);
  return true;
}

bool WebSocketEndpoint::onDrain(std::function<void()> fn) {
  if (conn_.isClosed()) return false;
  cold().onDrain = std::move(fn);
  return true;
}

void WebSocketEndpoint::putData(const std::type_info& type, std::shared_ptr<void> value) {
  auto& c = cold();
  c.userDataType = &type;
  c.userData = std::move(value);
}

void* WebSocketEndpoint::getData(const std::type_info& type) const noexcept {
  if (!cold_ || !cold_->userDataType || *cold_->userDataType != type) return nullptr;
  return cold_->userData.get();
}

// ---------------------------------------------------------------- sending

// API calls come from anywhere: a timer, another socket's callback. Writing
// at once could end this socket (a write error) or run its onDrain inside
// add(), under a caller that may be iterating its room table; so the write
// happens after the current callback, batching what it queued.
void WebSocketEndpoint::flushSoon() noexcept {
  conn_.flushSoon();
}

bool WebSocketEndpoint::send(const Message& message, SendOptions sendOptions) {
  if (readyState() != ReadyState::kOpen) return false;
  std::string_view payload = message.data();
  if (message.isText() && !message.utf8Checked_ && !isValidUtf8(payload)) {
    throw std::invalid_argument("spry: WebSocket::add: text message is not valid UTF-8");
  }
  Transport& transport = conn_.transport();
  if (transport.bufferedAmount() > options_.maxBackpressureBytes) {
    switch (options_.backpressure) {
      case BackpressurePolicy::kDrop:
        wantDrain_ = true;
        return false;
      case BackpressurePolicy::kClose:
        sendClose(kClosePolicyViolation, "send buffer full", true);
        return false;
      case BackpressurePolicy::kPauseReading:
        break;
    }
  }
  const auto opcode = message.isText() ? WsOpcode::kText : WsOpcode::kBinary;
  // The plain frame is written inline (every message of an uncompressed
  // socket takes this path); a compressed one out of line.
  const std::string* compressed = nullptr;
  if (deflateBits_ != 0 && sendOptions.compress && payload.size() >= options_.compression.threshold)
      [[unlikely]] {
    compressed = compress(payload);
  }
  if (compressed != nullptr) [[unlikely]] {
    writeFrame(opcode, *compressed, true);
  } else {
    transport.writeWith(frameHeaderSize(payload.size()) + payload.size(), [&](char* out) {
      const std::size_t headerSize = writeFrameHeader(out, opcode, payload.size());
      if (!payload.empty()) std::memcpy(out + headerSize, payload.data(), payload.size());
    });
  }
  flushSoon();
  if (transport.bufferedAmount() > options_.maxBackpressureBytes) {
    wantDrain_ = true;
    if (options_.backpressure == BackpressurePolicy::kPauseReading && !readPaused_) {
      readPaused_ = true;
      transport.pauseReading();
    }
  }
  return true;
}

void WebSocketEndpoint::writeFrame(WsOpcode opcode, std::string_view payload, bool rsv1) {
  conn_.transport().writeWith(frameHeaderSize(payload.size()) + payload.size(), [&](char* out) {
    const std::size_t headerSize = writeFrameHeader(out, opcode, payload.size(), true, rsv1);
    if (!payload.empty()) std::memcpy(out + headerSize, payload.data(), payload.size());
  });
}

const std::string* WebSocketEndpoint::compress(std::string_view payload) {
  const CompressionOptions& o = options_.compression;
  std::string& out = compressionPool().compressed();
  out.clear();
  if (!deflateKeep_) {
    Deflater& d = compressionPool().sharedDeflater(deflateBits_, o.level, o.memLevel);
    if (!d.compress(payload, out, false) || out.size() >= payload.size()) return nullptr;
    return &out;
  }
  // kDedicated: this socket's own context, made now if it was given back.
  CompressionPool& pool = compressionPool();
  CompressionPool::Dedicated* d = hasDeflater_ ? pool.dedicated(this) : nullptr;
  if (d == nullptr) {
    d = &pool.makeDedicated(this, int{deflateBits_}, o.level, o.memLevel);
    hasDeflater_ = true;
  } else if (deflateDirty_) {
    // The client's window now holds a message our context did not make.
    d->deflater->reset();
  }
  deflateDirty_ = false;
  d->lastUsed = conn_.now();
  if (!d->deflater->compress(payload, out, true)) return nullptr;  // reset by compress
  if (out.size() >= payload.size()) {
    // Sent plain, so the client's window never sees it: ours must forget it.
    d->deflater->reset();
    return nullptr;
  }
  return &out;
}

void WebSocketEndpoint::releaseDeflater() noexcept {
  if (!hasDeflater_) return;
  compressionPool().dropDedicated(this);
  hasDeflater_ = false;
  deflateDirty_ = false;
}

bool WebSocketEndpoint::deliver(PublishFrames& frames) {
  if (readyState() != ReadyState::kOpen) return false;
  const SharedFrame* chosen = &frames.plain();
  if (deflateBits_ != 0 && frames.payload().size() >= options_.compression.threshold) {
    const CompressionOptions& o = options_.compression;
    const SharedFrame& z = frames.compressed(
        deflateBits_, compressionPool().sharedDeflater(deflateBits_, o.level, o.memLevel));
    if (z) {
      chosen = &z;
      // Our own context (kDedicated) no longer matches the client's window.
      if (hasDeflater_) deflateDirty_ = true;
    }
  }
  const SharedFrame& frame = *chosen;
  Transport& transport = conn_.transport();
  if (transport.bufferedAmount() + frame->size() > options_.maxBackpressureBytes) {
    // Pausing our reads cannot slow a publisher down, so a subscriber past
    // its limit either loses the message (kDrop) or is closed.
    if (options_.backpressure == BackpressurePolicy::kDrop) {
      wantDrain_ = true;
      return false;
    }
    sendClose(kClosePolicyViolation, "subscriber too slow", true);
    return false;
  }
  transport.writeShared(frame);
  flushSoon();
  return true;
}

bool WebSocketEndpoint::ping(std::string_view payload) {
  if (readyState() != ReadyState::kOpen) return false;
  session().sendPing(payload);
  flushSoon();
  return true;
}

void WebSocketEndpoint::drainedSlow() {
  if (readPaused_) {
    readPaused_ = false;
    // Unless no coroutine pulls the message read last.
    const PullState* p = pull();
    if (!p || !p->holdsReading()) conn_.transport().resumeReading();
  }
  if (wantDrain_) {
    wantDrain_ = false;
    // A copy: the callback may replace itself or close the socket.
    if (cold_ && cold_->onDrain) {
      auto fn = cold_->onDrain;
      callUser("ws onDrain callback", fn);
    }
  }
  if (streaming()) pullStream();
  if (drainAwaited_) {
    drainAwaited_ = false;
    if (PullState* p = pull()) {
      p->notifyDrained(*this);
      releasePullIfOrphan();
    }
  }
}

bool WebSocketEndpoint::addStream(std::function<std::optional<Message>()> next,
                                  std::function<void()> done) {
  if (readyState() != ReadyState::kOpen) return false;
  if (streaming() || sourceRunning_) {
    throw std::logic_error("spry: WebSocket::addStream: a stream is already being sent");
  }
  auto& c = cold();
  c.streamNext = std::move(next);
  c.streamDone = std::move(done);
  pullStream();
  return true;
}

void WebSocketEndpoint::pullStream() {
  if (pulling_) return;
  pulling_ = true;
  while (streaming() && readyState() == ReadyState::kOpen &&
         bufferedAmount() < options_.maxBackpressureBytes / 2) {
    std::optional<Message> next;
    // The source runs from a local: closing the socket drops the stream, and
    // must not destroy the source mid-call.
    auto source = std::move(cold_->streamNext);
    cold_->streamNext = nullptr;
    sourceRunning_ = true;
    callUser("addStream source", [&] { next = source(); });
    sourceRunning_ = false;
    if (readyState() != ReadyState::kOpen) break;
    if (!next) {
      auto done = std::move(cold_->streamDone);
      cold_->streamDone = nullptr;
      if (done) callUser("addStream done callback", done);
      continue;  // done may have started the next stream
    }
    cold_->streamNext = std::move(source);
    callUser("addStream", [&] { send(*next); });
  }
  pulling_ = false;
}

// ---------------------------------------------------------------- topics

bool WebSocketEndpoint::subscribe(std::string_view topic) {
  if (readyState() != ReadyState::kOpen) return false;
  auto& c = cold();
  if (!conn_.server().topics().subscribe(this, topic)) return false;
  c.topics.emplace_back(topic);
  app().subscribers.add(topic, +1);
  return true;
}

bool WebSocketEndpoint::unsubscribe(std::string_view topic) {
  if (conn_.isClosed() || !cold_) return false;
  if (!conn_.server().topics().unsubscribe(this, topic)) return false;
  std::erase(cold_->topics, topic);
  app().subscribers.add(topic, -1);
  return true;
}

bool WebSocketEndpoint::isSubscribed(std::string_view topic) const noexcept {
  if (!cold_) return false;
  const auto& t = cold_->topics;
  return std::find(t.begin(), t.end(), topic) != t.end();
}

void WebSocketEndpoint::leaveTopics() noexcept {
  if (!cold_) return;
  for (const auto& t : cold_->topics) {
    conn_.server().topics().unsubscribe(this, t);
    app().subscribers.add(t, -1);
  }
  cold_->topics.clear();
}

// ---------------------------------------------------------------- timeouts

void WebSocketEndpoint::sweep(std::uint64_t now) {
  if (session().closeSent()) {
    if (reached(now, deadline_)) conn_.close();
    return;
  }
  if (awaitingPong_ && reached(now, deadline_)) {
    conn_.close();  // a dead peer: no Close can get through
    return;
  }
  const std::uint64_t quiet = elapsed(now, lastReceived_);
  const std::uint64_t messageTimeout = msOf(options_.messageTimeout);
  if (messageSince_ && messageTimeout && elapsed(now, messageSince_) >= messageTimeout) {
    sendClose(kClosePolicyViolation, "message timeout", true);
    return;
  }
  if (const auto idle = msOf(options_.idleTimeout); idle && quiet >= idle) {
    sendClose(kCloseGoingAway, "idle timeout", true);
    return;
  }
  if (const auto interval = msOf(options_.pingInterval);
      interval && !awaitingPong_ && quiet >= interval) {
    session().sendPing({});
    awaitingPong_ = true;
    deadline_ = deadlineAfter(now, msOf(options_.pongTimeout));
  }
  if (hasDeflater_) {
    // kDedicated: quiet long enough; the next compressed message starts an
    // empty context, which any client inflates (nothing refers back).
    const CompressionPool::Dedicated* d = compressionPool().dedicated(this);
    if (d == nullptr || now - d->lastUsed >= msOf(options_.compression.releaseAfter)) {
      releaseDeflater();
    }
  }
  if (quiet >= conn_.server().sweepIntervalMs()) {
    // Quiet for a sweep period: give back what an idle socket need not hold
    // (the wslay context, the output buffer's capacity).
    session().releaseIfIdle();
    conn_.transport().releaseIdleMemory();
  }
}

}  // namespace spry::detail
