#include "connection.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "http/handshake.h"
#include "http/http_writer.h"
#include "loop_context.h"
#include "server.h"
#include "spry/log.h"
#include "ws/utf8.h"

namespace spry::detail {

namespace {
std::atomic<std::uint64_t> gNextSocketId{1};

struct WriteRequest {
  uv_write_t req;
  Connection* conn;
  std::string data;
  OutQueue chunks;  // after data; kept alive until written
};

// Frames at least this large are shared between subscribers rather than
// copied into each one's buffer; below it a copy is cheaper than the bookkeeping.
constexpr std::size_t kShareFrameBytes = 512;

std::uint64_t ms(std::chrono::milliseconds d) noexcept {
  return d.count() > 0 ? static_cast<std::uint64_t>(d.count()) : 0;
}
}  // namespace

template <class F>
void Connection::callUser(const char* what, F&& fn) noexcept {
  try {
    fn();
  } catch (const std::exception& e) {
    reportUserError(what, e.what());
  } catch (...) {
    reportUserError(what, nullptr);
  }
}

Connection::Connection(Server& server, AppState& app)
    : server_(server), app_(app), loopContext_(server.loopContext().shared_from_this()) {
  std::memset(&tcp_, 0, sizeof(tcp_));
}

Connection::~Connection() = default;

Loop Connection::loop() const {
  return loopContext_->handle();
}

LoopContext& Connection::loopContext() const noexcept {
  return *loopContext_;
}

void Connection::start(std::shared_ptr<Connection> self, int acceptStatus) {
  self_ = std::move(self);
  tcp_.data = this;
  server_.add(this);
  if (acceptStatus != 0) {
    closeNow();
    return;
  }
  uv_tcp_nodelay(&tcp_, 1);
  sockaddr_storage peer{};
  int len = sizeof(peer);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    char name[64] = {};
    if (peer.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&peer);
      uv_ip6_name(a, name, sizeof(name));
      remotePort_ = ntohs(a->sin6_port);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&peer);
      uv_ip4_name(a, name, sizeof(name));
      remotePort_ = ntohs(a->sin_port);
    }
    remoteAddress_ = name;
  }
  setPhase(Phase::kIdle);
  if (app_.openConnections.load(std::memory_order_relaxed) > app_.maxConnections) {
    // Over the cap: answer 503 and close gracefully, so the client learns why.
    resumeReading();
    ++cork_;
    sendHttpError(503, "too many connections");
    --cork_;
    flush();
    return;
  }
  // A connection that never sends a byte is closed after the header timeout.
  deadline_ = now() + ms(app_.http.headerTimeout);
  resumeReading();
}

std::uint64_t Connection::now() const noexcept {
  return uv_now(server_.loopContext().loop());
}

// ---------------------------------------------------------------- reading

void Connection::onAlloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept {
  auto* self = static_cast<Connection*>(h->data);
  auto& b = self->server_.loopContext().readBuffer();
  buf->base = b.data();
  buf->len = b.size();
}

void Connection::onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) noexcept {
  auto* self = static_cast<Connection*>(s->data);
  if (n > 0) {
    // The callbacks below may drop the last outside reference.
    auto keep = self->self_;
    self->handleInput(buf->base, static_cast<std::size_t>(n));
    return;
  }
  if (n == 0) return;  // EAGAIN
  self->onPeerEnd(static_cast<int>(n));
}

void Connection::onPeerEnd(int status) noexcept {
  if (closing_) return;
  if (lingering_ || mode_ == Mode::kWebSocket || status != UV_EOF) {
    closeNow();
    return;
  }
  // HTTP half-close: the client may still wait for the answer to what it sent.
  peerEnded_ = true;
  stopReading();
  if (!current_ && out_.empty() && !writeInFlight_) {
    closeNow();
  } else if (!current_ && in_.empty()) {
    closeWhenFlushed_ = true;
  }
  // Otherwise requests wait behind a full output buffer: onDrained goes on.
}

void Connection::handleInput(char* data, std::size_t size) {
  if (closing_) return;
  ++cork_;
  if (mode_ == Mode::kWebSocket) {
    processWebSocket(data, size);
  } else if (!lingering_) {
    in_.append(data, size);
    processHttp();
  }
  --cork_;
  flush();
}

void Connection::stopReading() noexcept {
  if (reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
}

void Connection::resumeReading() noexcept {
  if (reading_ || closing_ || peerEnded_) return;
  int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
  if (rc != 0) {
    closeNow();
    return;
  }
  reading_ = true;
}

void Connection::pauseForBackpressure() noexcept {
  if (!readPaused_) {
    readPaused_ = true;
    stopReading();
  }
}

// ---------------------------------------------------------------- HTTP

void Connection::setPhase(Phase phase) noexcept {
  phase_ = phase;
  switch (phase) {
    case Phase::kIdle:
      deadline_ = now() + ms(app_.http.keepAliveTimeout);
      break;
    case Phase::kHeaders:
      deadline_ = now() + ms(app_.http.headerTimeout);
      break;
    case Phase::kBody:
      deadline_ = now() + ms(app_.http.bodyTimeout);
      break;
    case Phase::kWaiting:
      deadline_ = 0;
      break;
  }
}

void Connection::processHttp() {
  // Responses finished inside this loop must not re-enter it: the bytes it
  // consumed are only erased from in_ once it ends.
  if (inProcess_) return;
  inProcess_ = true;
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{inProcess_};
  // Made at the first bytes, not at accept: a parser allocated next to each
  // accepted connection and freed at its upgrade would leave a hole per
  // WebSocket in the heap (connections often arrive in bursts).
  if (!parser_ && mode_ == Mode::kHttp) parser_ = std::make_unique<HttpParser>(app_.limits);
  std::size_t offset = 0;
  // Answers to pipelined requests are bounded too: with the output over the
  // high-water mark (a client that does not read), the rest waits in in_
  // (which pauses reading) until onDrained.
  while (!closing_ && !lingering_ && !current_ && mode_ == Mode::kHttp && !closeWhenFlushed_ &&
         offset < in_.size() && bufferedAmount() <= app_.http.streamHighWaterBytes) {
    auto step = parser_->feed(std::string_view(in_).substr(offset));
    offset += step.consumed;
    if (step.status == HttpParser::Status::kNeedMore) break;
    if (step.status == HttpParser::Status::kExpectContinue) {
      out_.append("HTTP/1.1 100 Continue\r\n\r\n");
      continue;
    }
    if (step.status == HttpParser::Status::kError) {
      in_.clear();
      offset = 0;
      sendHttpError(parser_->errorStatus(), parser_->errorReason());
      return;
    }
    dispatch(parser_->takeRequest());
    if (mode_ == Mode::kWebSocket) {
      // What followed the handshake is already WebSocket traffic.
      std::string rest = in_.substr(offset);
      in_.clear();
      in_.shrink_to_fit();
      if (!rest.empty() && !closing_) processWebSocket(rest.data(), rest.size());
      return;
    }
  }
  in_.erase(0, offset);
  if (mode_ != Mode::kHttp || closing_ || lingering_) return;
  if (!current_) {
    // After the client's FIN, what is left in in_ can never complete a
    // request, unless it is complete requests waiting for the output to drain.
    if (peerEnded_ && (in_.empty() || bufferedAmount() <= app_.http.streamHighWaterBytes)) {
      closeAfterFlush();
      return;
    }
    Phase next = parser_->inHeaders() ? Phase::kHeaders
                 : parser_->idle()    ? Phase::kIdle
                                      : Phase::kBody;
    if (next != phase_) setPhase(next);
  }
  // Unanswered pipelined input is bounded: stop reading until we catch up.
  if (in_.size() > app_.http.maxPipelinedBytes) {
    pauseForBackpressure();
  }
}

void Connection::dispatch(ParsedRequest parsed) {
  auto data = std::make_unique<RequestData>();
  data->parsed = std::move(parsed);
  data->remoteAddress = remoteAddress_;
  data->remotePort = remotePort_;
  data->loop = server_.loopContext().shared_from_this();
  data->conn = weak_from_this();
  data->serial = ++serial_;
  auto req = RequestData::makeRequest(std::move(data));
  auto& d = RequestData::of(*req);

  currentHead_ = d.parsed.method == "HEAD";
  currentHttp10_ = d.parsed.versionMinor == 0;
  currentKeepAlive_ = d.parsed.keepAlive && !shutdownRequested_;
  setPhase(Phase::kWaiting);

  RouteMatch match = app_.router.match(d.parsed.method, d.path);
  const RouteEntry* route = nullptr;
  if (match.kind == RouteMatch::Kind::kFound) {
    route = &app_.routes[match.routeId];
    d.params = std::move(match.params);
  }

  dispatching_ = true;
  Response res = app_.handle(*req, route, match);
  dispatching_ = false;

  if (route && route->isWebSocket && res.status() == 101) {
    if (d.deferred) {
      log(LogLevel::kError, "spry: " + std::string(d.path) +
                                ": a middleware deferred the response of a ws route that then "
                                "upgraded; answering 500");
      auto err = Response::text("Internal Server Error", 500);
      sendResponse(err, *req);
      return;
    }
    upgrade(std::move(req), *route, res);
    return;
  }
  if (res.isDeferred()) {
    auto state = d.deferredState;
    if (!state || !d.deferred) {
      log(LogLevel::kError, "spry: " + std::string(d.path) +
                                ": handler returned a Deferred that is not this request's; "
                                "answering 500");
      auto err = Response::text("Internal Server Error", 500);
      sendResponse(err, *req);
      return;
    }
    state->registered = true;
    state->placeholderHeaders = res.headers();
    current_ = std::move(req);
    if (state->early) {
      Response early = std::move(*state->early);
      state->early.reset();
      state->sent = false;  // set by the early send(); this is the real one
      sendDeferred(*state, std::move(early));
    }
    return;
  }
  sendResponse(res, *req);
  if (stream_ && !stream_->ended) current_ = std::move(req);
}

bool Connection::sendDeferred(DeferredState& state, Response response) {
  if (state.sent || closing_) return false;
  if (!state.registered) {
    // send() before the handler returned: answer once the placeholder arrives.
    state.sent = true;
    state.early = std::move(response);
    return true;
  }
  if (!current_ || RequestData::of(*current_).serial != state.requestSerial) return false;
  state.sent = true;
  if (response.isDeferred()) {
    log(LogLevel::kError, "spry: Deferred::send was given another deferred placeholder");
    response = Response::text("Internal Server Error", 500);
  }
  for (const auto& [name, value] : state.placeholderHeaders) {
    if (!response.headers().has(name)) response.headers().add(name, value);
  }
  ++cork_;
  sendResponse(response, *current_);
  if (!stream_ || stream_->ended) {
    finishResponse();
  }
  --cork_;
  flush();
  return true;
}

namespace {
bool statusHasBody(int status) noexcept {
  return status >= 200 && status != 204 && status != 304;
}
}  // namespace

void Connection::sendResponse(Response& response, Request& req) {
  auto& date = server_.loopContext().dates();
  int status = response.status();
  if (response.isStream()) {
    auto state = std::make_shared<StreamState>();
    state->conn = weak_from_this();
    state->headOnly = currentHead_ || !statusHasBody(status);
    state->chunked = !currentHttp10_;
    if (!state->chunked) currentKeepAlive_ = false;
    writeHead(out_, status, response.headers(),
              state->chunked ? BodyFraming::kChunked : BodyFraming::kNone, 0, currentKeepAlive_,
              currentHttp10_, date.now());
    stream_ = state;
    auto producer = std::move(ResponseAccess::producer(response));
    if (state->headOnly) {
      state->ended = true;
      if (&req != current_.get()) finishResponse();
      return;
    }
    state->producing = true;
    try {
      producer(StreamState::makeWriter(state));
      state->producing = false;
    } catch (const std::exception& e) {
      state->producing = false;
      // The head is out: the truncated chunked body is how the client learns.
      log(LogLevel::kError,
          "spry: " + std::string(req.path()) + ": stream producer threw: " + e.what());
      state->ended = true;
      currentKeepAlive_ = false;
      closeAfterFlush();
      return;
    } catch (...) {
      state->producing = false;
      log(LogLevel::kError, "spry: " + std::string(req.path()) + ": stream producer threw");
      state->ended = true;
      currentKeepAlive_ = false;
      closeAfterFlush();
      return;
    }
    if (state->ended && &req != current_.get()) finishResponse();
    return;
  }
  const std::string& body = response.body();
  writeHead(out_, status, response.headers(),
            statusHasBody(status) ? BodyFraming::kContentLength : BodyFraming::kNone, body.size(),
            currentKeepAlive_, currentHttp10_, date.now());
  if (!currentHead_ && statusHasBody(status)) out_.append(body);
  if (&req != current_.get()) finishResponse();
}

void Connection::finishResponse() {
  current_.reset();
  stream_.reset();
  if (!currentKeepAlive_) {
    closeAfterFlush();
    return;
  }
  if (peerEnded_ && in_.empty()) {
    closeAfterFlush();
    return;
  }
  setPhase(Phase::kIdle);
  if (readPaused_ && in_.size() <= app_.http.maxPipelinedBytes / 2) {
    readPaused_ = false;
    resumeReading();
  }
  // Pipelined requests wait in in_; handle them unless we are already inside
  // processHttp (it loops on its own).
  if (!dispatching_ && !in_.empty() && !inProcess_) processHttp();
}

bool Connection::streamWrite(StreamState& state, std::string_view data) {
  if (closing_ || state.ended || stream_.get() != &state) return false;
  if (!state.headOnly && !data.empty()) {
    if (state.chunked) {
      writeChunk(out_, data);
    } else {
      out_.append(data);
    }
    if (!cork_) flush();
  }
  if (bufferedAmount() > app_.http.streamHighWaterBytes) {
    state.wantDrain = true;
    return false;
  }
  return true;
}

void Connection::streamEnd(StreamState& state) {
  if (closing_ || state.ended || stream_.get() != &state) return;
  state.ended = true;
  // The callbacks are done with; they often hold a BodyWriter, a cycle
  // through the state that would otherwise never be freed.
  state.onDrain = nullptr;
  state.onAbort = nullptr;
  if (state.chunked && !state.headOnly) writeLastChunk(out_);
  // Inside the producer call, sendResponse (or sendDeferred) finishes the
  // response itself; finishing here would destroy the request under it.
  if (!state.producing) {
    ++cork_;
    finishResponse();
    --cork_;
    flush();
  }
}

void Connection::sendHttpError(int status, std::string_view reason) {
  log(LogLevel::kDebug,
      "spry: " + remoteAddress_ + ": HTTP " + std::to_string(status) + ": " + std::string(reason));
  Headers headers;
  headers.add("Content-Type", "text/plain; charset=utf-8");
  std::string body(reasonPhrase(status));
  writeHead(out_, status, headers, BodyFraming::kContentLength, body.size(), false, false,
            server_.loopContext().dates().now());
  out_.append(body);
  current_.reset();
  startLinger();
}

void Connection::startLinger() noexcept {
  // Closing with unread input would reset the connection and could destroy
  // the error response before the client reads it: shut down our side, then
  // read and discard until the client closes or the linger time is up.
  lingering_ = true;
  in_.clear();
  closeWhenFlushed_ = true;
  if (!writeInFlight_ && out_.empty()) onDrained();
}

// ---------------------------------------------------------------- WebSocket

void Connection::upgrade(std::unique_ptr<Request> req, const RouteEntry& route,
                         Response& handshake) {
  HandshakeResult accepted;
  accepted.kind = HandshakeResult::Kind::kAccept;
  accepted.accept = std::string(handshake.headers().get("Sec-WebSocket-Accept"));
  accepted.protocol = std::string(handshake.headers().get("Sec-WebSocket-Protocol"));
  std::string head;
  writeHandshakeResponse(head, accepted);
  head.resize(head.size() - 2);  // reopen the header block for middleware's headers
  for (const auto& [name, value] : handshake.headers()) {
    if (equalsIgnoreCase(name, "Sec-WebSocket-Accept") ||
        equalsIgnoreCase(name, "Sec-WebSocket-Protocol") || equalsIgnoreCase(name, "Upgrade") ||
        equalsIgnoreCase(name, "Connection") || equalsIgnoreCase(name, "Content-Length") ||
        equalsIgnoreCase(name, "Transfer-Encoding")) {
      continue;
    }
    if (name.find_first_of("\r\n:") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos) {
      continue;
    }
    head.append(name).append(": ").append(value).append("\r\n");
  }
  head.append("\r\n");
  out_.append(head);

  mode_ = Mode::kWebSocket;
  releaseOut_ = true;
  parser_.reset();
  wsOptions_ = &route.wsOptions;
  if (!accepted.protocol.empty()) extras().protocol = accepted.protocol;
  wsId_ = gNextSocketId.fetch_add(1, std::memory_order_relaxed);
  session_.emplace(static_cast<SessionHandler&>(*this),
                   SessionLimits{static_cast<std::uint64_t>(route.wsOptions.maxMessageBytes)});
  lastReceived_ = now();
  deadline_ = 0;
  server_.countWebSocket(+1);

  auto& d = RequestData::of(*req);
  d.webSocket = true;
  // The request is context only now: a body on the upgrade GET was for the
  // middleware, the socket's data comes through listen().
  std::string().swap(d.parsed.body);
  WebSocket ws(weak_from_this(), wsId_);
  const auto& handler = route.wsHandler;
  callUser("ws handler", [&] { handler(ws, *req); });
  applyPending();
}

void Connection::processWebSocket(char* data, std::size_t size) {
  lastReceived_ = now();
  awaitingPong_ = false;
  feeding_ = true;
  session_->feed(data, size);  // unmasks in place: the loop's read buffer or `rest`
  feeding_ = false;
  // The clock of messageTimeout starts when a message is seen unfinished
  // after the last complete one (onWsMessage resets it).
  if (session_->midMessage()) {
    if (!messageSince_) messageSince_ = lastReceived_;
  } else {
    messageSince_ = 0;
  }
  applyPending();
  if (session_ && session_->failed() && !failCode_) failCode_ = session_->failCode();
  if (session_ && session_->wantsTcpClose()) {
    stopReading();
    closeAfterFlush();
  }
}

void Connection::applyPending() noexcept {
  if (pendingCloseCode_) {
    const std::uint16_t code = pendingCloseCode_;
    pendingCloseCode_ = 0;
    std::string reason;
    if (extras_) reason.swap(extras_->pendingCloseReason);
    startClose(code, reason);
  }
}

void Connection::onWsMessage(bool binary, std::string_view payload) noexcept {
  messageSince_ = 0;
  if (!onMessage_ || pendingCloseCode_ || closing_) return;
  const Message msg =
      Message::received(binary ? Message::Type::kBinary : Message::Type::kText, payload);
  // The callback may replace itself (ws.listen) or the socket may close under
  // it; neither may destroy or move it mid-call, so both wait for its return
  // (wsListen, fireWsClose). No copy or move per message.
  inMessage_ = true;
  callUser("ws listen callback", [&] { onMessage_(msg); });
  inMessage_ = false;
  if (replacedOnMessage_) {
    replacedOnMessage_ = false;
    onMessage_ = std::move(extras_->nextOnMessage);
    extras_->nextOnMessage = nullptr;
  }
  if (closing_) onMessage_ = nullptr;
}

void Connection::onWsPong(std::string_view) noexcept {
  awaitingPong_ = false;
}

void Connection::onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept {
  peerCloseCode_ = code;
  try {
    extras().closeReason.assign(reason);
  } catch (...) {
  }
}

void Connection::onWsOutput(std::string_view bytes) noexcept {
  try {
    append(bytes);
  } catch (...) {
    // Out of memory for a control frame: the connection cannot go on.
    closeWhenFlushed_ = true;
  }
}

void Connection::reportUserError(const char* what, const char* detail) noexcept {
  try {
    log(LogLevel::kError, std::string("spry: ") + what + " threw" + (detail ? ": " : "") +
                              (detail ? detail : "") + "; closing the socket with 1011");
  } catch (...) {
  }
  failWebSocket(kCloseInternalError, "internal error");
}

void Connection::failWebSocket(std::uint16_t code, std::string_view why) noexcept {
  if (closing_ || !session_ || session_->closeSent()) return;
  if (!failCode_) failCode_ = code;
  if (feeding_) {
    if (!pendingCloseCode_) {
      pendingCloseCode_ = code;
      try {
        extras().pendingCloseReason.assign(why);
      } catch (...) {  // the code alone still closes
      }
    }
    return;
  }
  startClose(code, why);
}

void Connection::startClose(std::uint16_t code, std::string_view reason) noexcept {
  if (closing_ || !session_ || session_->closeSent()) return;
  session_->sendClose(code, reason);
  closeDeadline_ = now() + ms(wsOptions_->closeTimeout);
  if (extras_) {
    extras_->streamNext = nullptr;
    extras_->streamDone = nullptr;
  }
  if (session_->wantsTcpClose()) {
    stopReading();
    closeAfterFlush();
  }
  flushSoon();
}

ReadyState Connection::wsReadyState() const noexcept {
  if (closing_ || !session_) return ReadyState::kClosed;
  if (session_->closeSent() || session_->closeReceived() || pendingCloseCode_) {
    return ReadyState::kClosing;
  }
  return ReadyState::kOpen;
}

std::optional<std::uint16_t> Connection::wsCloseCode() const noexcept {
  if (!closeFired_) return std::nullopt;
  return closeCode_;
}

bool Connection::wsListen(std::function<void(const Message&)> fn) {
  if (closing_) return false;
  if (inMessage_) {
    // Replacing the running callback would destroy it mid-call.
    extras().nextOnMessage = std::move(fn);
    replacedOnMessage_ = true;
    return true;
  }
  onMessage_ = std::move(fn);
  return true;
}

bool Connection::wsOnClose(std::function<void(std::uint16_t, std::string_view)> fn) {
  if (closing_) return false;
  extras().onClose = std::move(fn);
  return true;
}

bool Connection::wsOnDrain(std::function<void()> fn) {
  if (closing_) return false;
  extras().onDrain = std::move(fn);
  return true;
}

bool Connection::wsSend(const Message& message) {
  if (wsReadyState() != ReadyState::kOpen) return false;
  std::string_view payload = message.data();
  if (message.isText() && !message.utf8Checked_ && !isValidUtf8(payload)) {
    throw std::invalid_argument("spry: WebSocket::add: text message is not valid UTF-8");
  }
  if (bufferedAmount() > wsOptions_->maxBackpressureBytes) {
    switch (wsOptions_->backpressure) {
      case BackpressurePolicy::kDrop:
        wantDrain_ = true;
        return false;
      case BackpressurePolicy::kClose:
        failWebSocket(kClosePolicyViolation, "send buffer full");
        return false;
      case BackpressurePolicy::kPauseReading:
        break;
    }
  }
  if (queueEmpty()) {
    appendFrameHeader(out_, message.isText() ? WsOpcode::kText : WsOpcode::kBinary, payload.size());
    out_.append(payload);
  } else {
    std::string header;
    appendFrameHeader(header, message.isText() ? WsOpcode::kText : WsOpcode::kBinary,
                      payload.size());
    append(header);
    append(payload);
  }
  flushSoon();
  if (bufferedAmount() > wsOptions_->maxBackpressureBytes) {
    wantDrain_ = true;
    if (wsOptions_->backpressure == BackpressurePolicy::kPauseReading) pauseForBackpressure();
  }
  return true;
}

bool Connection::wsSendFrame(const SharedFrame& frame) {
  if (wsReadyState() != ReadyState::kOpen) return false;
  if (bufferedAmount() + frame->size() > wsOptions_->maxBackpressureBytes) {
    // Pausing our reads cannot slow a publisher down, so a subscriber past
    // its limit either loses the message (kDrop) or is closed.
    if (wsOptions_->backpressure == BackpressurePolicy::kDrop) {
      wantDrain_ = true;
      return false;
    }
    failWebSocket(kClosePolicyViolation, "subscriber too slow");
    return false;
  }
  appendShared(frame);
  flushSoon();
  return true;
}

bool Connection::wsSubscribe(std::string_view topic) {
  if (wsReadyState() != ReadyState::kOpen) return false;
  auto& x = extras();
  if (!server_.topics().subscribe(this, topic)) return false;
  x.topics.emplace_back(topic);
  app_.subscribers.add(topic, +1);
  return true;
}

bool Connection::wsUnsubscribe(std::string_view topic) {
  if (mode_ != Mode::kWebSocket || closing_) return false;
  if (!server_.topics().unsubscribe(this, topic)) return false;
  std::erase(extras_->topics, topic);
  app_.subscribers.add(topic, -1);
  return true;
}

bool Connection::wsIsSubscribed(std::string_view topic) const noexcept {
  if (!extras_) return false;
  const auto& t = extras_->topics;
  return std::find(t.begin(), t.end(), topic) != t.end();
}

void Connection::leaveTopics() noexcept {
  if (!extras_) return;
  for (const auto& t : extras_->topics) {
    server_.topics().unsubscribe(this, t);
    app_.subscribers.add(t, -1);
  }
  extras_->topics.clear();
}

bool Connection::wsAddStream(std::function<std::optional<Message>()> next,
                             std::function<void()> done) {
  if (wsReadyState() != ReadyState::kOpen) return false;
  if (streaming() || sourceRunning_) {
    throw std::logic_error("spry: WebSocket::addStream: a stream is already being sent");
  }
  auto& x = extras();
  x.streamNext = std::move(next);
  x.streamDone = std::move(done);
  pullStream();
  return true;
}

void Connection::pullStream() {
  if (pulling_) return;
  pulling_ = true;
  while (streaming() && wsReadyState() == ReadyState::kOpen &&
         bufferedAmount() < wsOptions_->maxBackpressureBytes / 2) {
    std::optional<Message> next;
    // The source runs from a local: closing the socket drops the stream, and
    // must not destroy the source mid-call.
    auto source = std::move(extras_->streamNext);
    extras_->streamNext = nullptr;
    sourceRunning_ = true;
    callUser("addStream source", [&] { next = source(); });
    sourceRunning_ = false;
    if (wsReadyState() != ReadyState::kOpen) break;
    if (!next) {
      auto done = std::move(extras_->streamDone);
      extras_->streamDone = nullptr;
      if (done) callUser("addStream done callback", done);
      continue;  // done may have started the next stream
    }
    extras_->streamNext = std::move(source);
    callUser("addStream", [&] { wsSend(*next); });
  }
  pulling_ = false;
}

bool Connection::wsClose(std::uint16_t code, std::string_view reason) {
  if (wsReadyState() != ReadyState::kOpen) return false;
  if (feeding_) {
    extras().pendingCloseReason.assign(reason);
    pendingCloseCode_ = code;
    return true;
  }
  startClose(code, reason);
  return true;
}

bool Connection::wsPing(std::string_view payload) {
  if (wsReadyState() != ReadyState::kOpen) return false;
  session_->sendPing(payload);
  flushSoon();
  return true;
}

// API calls come from anywhere: a timer, another socket's callback. Writing
// at once could end this socket (a write error) or run its onDrain inside
// add(), under a caller that may be iterating its room table; so the write
// happens after the current callback, batching what it queued.
void Connection::flushSoon() noexcept {
  if (cork_ || flushPosted_ || closing_) return;
  flushPosted_ = true;
  bool queued = false;
  try {
    queued = server_.flushLater(self_);
  } catch (...) {
  }
  if (!queued) {
    flushPosted_ = false;
    flush();
  }
}

void Connection::wsPutData(const std::type_info& type, std::shared_ptr<void> value) {
  auto& x = extras();
  x.userDataType = &type;
  x.userData = std::move(value);
}

void* Connection::wsGetData(const std::type_info& type) const noexcept {
  if (!extras_ || !extras_->userDataType || *extras_->userDataType != type) return nullptr;
  return extras_->userData.get();
}

void Connection::fireWsClose() noexcept {
  if (closeFired_ || mode_ != Mode::kWebSocket) return;
  closeFired_ = true;
  if (peerCloseCode_) {
    closeCode_ = peerCloseCode_;
  } else if (failCode_) {
    closeCode_ = failCode_;
  } else {
    closeCode_ = kCloseAbnormal;
  }
  server_.countWebSocket(-1);
  // The listen callback is destroyed once it returns when it is running now.
  if (!inMessage_) onMessage_ = nullptr;
  if (!extras_) return;
  auto onClose = std::move(extras_->onClose);
  extras_->onClose = nullptr;
  extras_->onDrain = nullptr;
  extras_->streamNext = nullptr;
  extras_->streamDone = nullptr;
  if (onClose) {
    try {
      onClose(closeCode_, extras_->closeReason);
    } catch (const std::exception& e) {
      log(LogLevel::kError, std::string("spry: ws onClose callback threw: ") + e.what());
    } catch (...) {
      log(LogLevel::kError, "spry: ws onClose callback threw");
    }
  }
  extras_->userData.reset();
}

// ---------------------------------------------------------------- writing

WsExtras& Connection::extras() {
  if (!extras_) extras_ = std::make_unique<WsExtras>();
  return *extras_;
}

void Connection::append(std::string_view bytes) {
  if (queueEmpty()) {
    out_.append(bytes);
    return;
  }
  if (queue_->back().shared) queue_->emplace_back();
  queue_->back().owned.append(bytes);
  queuedBytes_ += bytes.size();
}

void Connection::appendShared(const SharedFrame& frame) {
  if (frame->size() < kShareFrameBytes) {
    append(*frame);
    return;
  }
  if (!queue_) queue_ = std::make_unique<std::deque<OutChunk>>();
  queue_->push_back(OutChunk{frame, {}, 0});
  queuedBytes_ += frame->size();
}

void Connection::flush() noexcept {
  if (writeInFlight_ || closing_ || cork_) return;
  if (out_.empty() && queueEmpty()) {
    onDrained();
    return;
  }
  if (queueEmpty()) {
    // The common case: one buffer, written at once without a request.
    uv_buf_t buf = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1);
    if (n == static_cast<int>(out_.size())) {
      out_.clear();
      if (releaseOut_) {
        // The 101 response is out: many sockets go quiet now, so its buffer
        // is given back at once, before later allocations pin it in the heap.
        releaseOut_ = false;
        std::string().swap(out_);
      }
      onDrained();
      return;
    }
    if (n < 0 && n != UV_EAGAIN) {
      closeNow();
      return;
    }
    if (n > 0) out_.erase(0, static_cast<std::size_t>(n));
  } else {
    constexpr std::size_t kMaxBufs = 64;
    uv_buf_t bufs[kMaxBufs];
    unsigned count = 0;
    if (!out_.empty()) bufs[count++] = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    for (const auto& c : *queue_) {
      if (count == kMaxBufs) break;
      auto v = c.view();
      bufs[count++] = uv_buf_init(const_cast<char*>(v.data()), static_cast<unsigned>(v.size()));
    }
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), bufs, count);
    if (n < 0 && n != UV_EAGAIN) {
      closeNow();
      return;
    }
    auto written = static_cast<std::size_t>(n > 0 ? n : 0);
    std::size_t fromOut = std::min(written, out_.size());
    out_.erase(0, fromOut);
    written -= fromOut;
    while (written > 0 && !queue_->empty()) {
      auto& c = queue_->front();
      std::size_t left = c.view().size();
      std::size_t take = std::min(left, written);
      c.offset += take;
      queuedBytes_ -= take;
      written -= take;
      if (take == left) queue_->pop_front();
    }
    if (queue_->empty()) queue_.reset();
    if (out_.empty() && queueEmpty()) {
      onDrained();
      return;
    }
  }
  // The kernel is full: hand the rest to libuv, which writes it when it can.
  auto* w = new (std::nothrow) WriteRequest;
  if (!w) {
    closeNow();
    return;
  }
  w->conn = this;
  w->data.swap(out_);
  w->chunks = std::move(queue_);
  queuedBytes_ = 0;
  std::vector<uv_buf_t> bufs;
  bufs.reserve(1 + (w->chunks ? w->chunks->size() : 0));
  std::size_t total = w->data.size();
  if (!w->data.empty()) {
    bufs.push_back(uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size())));
  }
  if (w->chunks) {
    for (const auto& c : *w->chunks) {
      auto v = c.view();
      bufs.push_back(uv_buf_init(const_cast<char*>(v.data()), static_cast<unsigned>(v.size())));
      total += v.size();
    }
  }
  w->req.data = w;
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), bufs.data(),
                    static_cast<unsigned>(bufs.size()), onWriteDone);
  if (rc != 0) {
    delete w;
    closeNow();
    return;
  }
  writeInFlight_ = true;
  inFlightBytes_ = total;
  stallSince_ = now();
  stallPending_ = unacknowledgedBytes();
  server_.countWriteBytes(static_cast<long>(total));
}

void Connection::onWriteDone(uv_write_t* req, int status) noexcept {
  std::unique_ptr<WriteRequest> w(static_cast<WriteRequest*>(req->data));
  Connection* self = w->conn;
  self->writeInFlight_ = false;
  self->server_.countWriteBytes(-static_cast<long>(self->inFlightBytes_));
  self->inFlightBytes_ = 0;
  if (self->closing_) return;
  if (status < 0) {
    self->closeNow();
    return;
  }
  auto keep = self->self_;
  self->flush();
}

void Connection::onDrained() noexcept {
  if (closeWhenFlushed_) {
    if (lingering_) {
      if (!shutdownSent_) {
        shutdownSent_ = true;
        auto* req = new (std::nothrow) uv_shutdown_t;
        if (!req || uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&tcp_),
                                [](uv_shutdown_t* r, int) { delete r; }) != 0) {
          delete req;
          closeNow();
          return;
        }
        deadline_ = now() + ms(app_.http.lingerTimeout);
        resumeReading();
      }
      return;
    }
    if (mode_ == Mode::kHttp && !peerEnded_) {
      lingering_ = true;
      onDrained();
      return;
    }
    closeNow();
    return;
  }
  if (readPaused_ && (mode_ == Mode::kWebSocket || in_.size() <= app_.http.maxPipelinedBytes / 2)) {
    readPaused_ = false;
    resumeReading();
  }
  // Pipelined requests that waited for the output to drain (see processHttp).
  if (mode_ == Mode::kHttp && !current_ && !in_.empty() && !inProcess_) {
    ++cork_;
    processHttp();
    --cork_;
    flush();
    return;
  }
  if (stream_ && stream_->wantDrain) {
    stream_->wantDrain = false;
    if (stream_->onDrain) {
      // A copy: the callback may end the stream, which drops it.
      auto keep = stream_;
      auto fn = keep->onDrain;
      LoopContext::runGuarded("a BodyWriter drain callback", fn);
    }
  }
  if (mode_ == Mode::kWebSocket) {
    if (wantDrain_) {
      wantDrain_ = false;
      // A copy: the callback may replace itself or close the socket.
      if (extras_ && extras_->onDrain) {
        auto fn = extras_->onDrain;
        callUser("ws onDrain callback", fn);
      }
    }
    if (streaming()) pullStream();
  }
}

void Connection::closeAfterFlush() noexcept {
  closeWhenFlushed_ = true;
  if (!writeInFlight_ && out_.empty() && !cork_) onDrained();
}

void Connection::closeNow() noexcept {
  if (closing_) return;
  closing_ = true;
  stopReading();
  leaveTopics();
  fireWsClose();
  if (stream_ && !stream_->ended) {
    stream_->aborted = true;
    auto keep = stream_;
    auto onAbort = std::move(keep->onAbort);
    keep->onAbort = nullptr;
    keep->onDrain = nullptr;  // see streamEnd
    if (onAbort) LoopContext::runGuarded("a BodyWriter abort callback", onAbort);
  }
  if (current_) {
    // Moved out first: the state holding the request that holds the state
    // would be a cycle.
    if (auto state = std::move(RequestData::of(*current_).deferredState)) {
      state->request = std::move(current_);
    }
  }
  current_.reset();
  stream_.reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onClosed);
}

void Connection::onClosed(uv_handle_t* h) noexcept {
  auto* self = static_cast<Connection*>(h->data);
  self->server_.remove(self);
  auto last = std::move(self->self_);
  // `last` may be the final owner: the connection is destroyed here.
}

void Connection::abort() noexcept {
  closeNow();
}

void Connection::beginShutdown() noexcept {
  if (closing_) return;
  shutdownRequested_ = true;
  if (mode_ == Mode::kWebSocket) {
    failWebSocket(kCloseGoingAway, "server shutting down");
    return;
  }
  currentKeepAlive_ = false;
  if (!current_ && (parser_ == nullptr || parser_->idle())) {
    closeAfterFlush();
  }
}

std::size_t Connection::unacknowledgedBytes() noexcept {
  // libuv's queue, plus what the kernel holds that the client has not
  // acknowledged: while a write is in flight nothing is added to the sum, so
  // any decrease means the client read something. (libuv's queue alone may
  // not move for a long time: a full send buffer only wakes the writer when
  // half of it has drained.)
  std::size_t pending = tcp_.write_queue_size;
  uv_os_fd_t fd;
  int outq = 0;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) == 0 &&
      ::ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0) {
    pending += static_cast<std::size_t>(outq);
  }
  return pending;
}

bool Connection::sendStalled(std::uint64_t t) noexcept {
  if (!writeInFlight_) return false;
  const std::size_t pending = unacknowledgedBytes();
  if (pending < stallPending_) {
    stallPending_ = pending;  // the client read some: progress
    stallSince_ = t;
    return false;
  }
  const std::uint64_t limit =
      mode_ == Mode::kWebSocket ? ms(wsOptions_->sendTimeout) : ms(app_.http.sendTimeout);
  if (!limit || t - stallSince_ < limit) return false;
  try {
    log(LogLevel::kDebug, "spry: " + remoteAddress_ + ": send timeout, " + std::to_string(pending) +
                              " bytes unread; closing");
  } catch (...) {
  }
  return true;
}

void Connection::sweep(std::uint64_t t) noexcept {
  if (closing_) return;
  if (sendStalled(t)) {
    closeNow();
    return;
  }
  if (mode_ == Mode::kHttp) {
    if (!deadline_ || t < deadline_) return;
    if (lingering_ || phase_ == Phase::kIdle || closeWhenFlushed_) {
      // A response still being written is not idleness: closing now would
      // cut it off. The idle time starts again until it is out.
      if (!lingering_ && bufferedAmount() > 0) {
        deadline_ = t + ms(app_.http.keepAliveTimeout);
        return;
      }
      closeNow();
    } else if (phase_ == Phase::kHeaders || phase_ == Phase::kBody) {
      ++cork_;
      sendHttpError(408, "request timeout");
      --cork_;
      flush();
    }
    return;
  }
  const auto& o = *wsOptions_;
  if (session_->closeSent()) {
    if (t >= closeDeadline_) closeNow();
    return;
  }
  std::uint64_t quiet = t - lastReceived_;
  if (awaitingPong_ && t >= pongDeadline_) {
    closeNow();  // a dead peer: no Close can get through
    return;
  }
  if (messageSince_ && ms(o.messageTimeout) && t - messageSince_ >= ms(o.messageTimeout)) {
    failWebSocket(kClosePolicyViolation, "message timeout");
    return;
  }
  if (ms(o.idleTimeout) && quiet >= ms(o.idleTimeout)) {
    failWebSocket(kCloseGoingAway, "idle timeout");
    return;
  }
  if (ms(o.pingInterval) && !awaitingPong_ && quiet >= ms(o.pingInterval)) {
    session_->sendPing({});
    awaitingPong_ = true;
    pongDeadline_ = t + ms(o.pongTimeout);
    flush();
  }
  if (quiet >= server_.sweepIntervalMs()) {
    // Quiet for a sweep period: give back what an idle socket need not hold
    // (the wslay context, the output buffer's capacity).
    session_->releaseIfIdle();
    if (out_.empty() && !writeInFlight_ && out_.capacity() > std::string().capacity()) {
      std::string().swap(out_);
    }
  }
}

}  // namespace spry::detail
