#include "http/http_exchange.h"

#include <cstring>

#include "app_state.h"
#include "connection.h"
#include "http/http_writer.h"
#include "loop_context.h"
#include "spry/log.h"

namespace spry::detail {

namespace {
bool statusHasBody(int status) noexcept {
  return status >= 200 && status != 204 && status != 304;
}
}  // namespace

std::string& HttpExchange::scratch() const noexcept {
  auto& s = conn_.loopContext().scratch();
  s.clear();
  return s;
}

std::uint64_t HttpExchange::bufferedAmount() const noexcept {
  return conn_.transport().bufferedAmount();
}

void HttpExchange::start(bool overCapacity) {
  if (overCapacity) {
    // Answer 503 and close gracefully, so the client learns why.
    sendError(503, "too many connections");
    return;
  }
  // A connection that never sends a byte is closed after the header timeout.
  deadline_ = conn_.now() + msOf(conn_.app().http.headerTimeout);
}

void HttpExchange::setPhase(Phase phase) noexcept {
  phase_ = phase;
  const auto& http = conn_.app().http;
  switch (phase) {
    case Phase::kIdle:
      deadline_ = conn_.now() + msOf(http.keepAliveTimeout);
      break;
    case Phase::kHeaders:
      deadline_ = conn_.now() + msOf(http.headerTimeout);
      break;
    case Phase::kBody:
      deadline_ = conn_.now() + msOf(http.bodyTimeout);
      break;
    case Phase::kWaiting:
      deadline_ = 0;
      break;
  }
}

void HttpExchange::receive(const char* data, std::size_t size) {
  // Requests that arrive whole are parsed where the transport read them;
  // only an unfinished rest is copied.
  if (in_.empty() && !processing_) {
    process(std::string_view(data, size), true);
    return;
  }
  in_.append(data, size);
  process();
}

void HttpExchange::onPeerEnd() {
  // A half-close: the client may still wait for the answer to what it sent.
  peerEnded_ = true;
  if (!current_ && bufferedAmount() == 0 && !conn_.isSecure()) {
    conn_.close();
  } else if (!current_ && (bufferedAmount() == 0 || in_.empty())) {
    // No linger (the peer has ended); over TLS close_notify goes first.
    closeAfterFlush();
  }
  // Otherwise requests wait behind a full output buffer: onDrained goes on.
}

void HttpExchange::closeAfterFlush() noexcept {
  conn_.transport().closeAfterFlush(peerEnded_ ? 0 : msOf(conn_.app().http.lingerTimeout));
}

void HttpExchange::process(std::string_view input, bool lent) {
  // Responses finished inside this loop must not re-enter it: the bytes it
  // consumed are only erased from in_ once it ends.
  if (processing_) return;
  processing_ = true;
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{processing_};
  const auto& http = conn_.app().http;
  Transport& transport = conn_.transport();
  // Made at the first bytes, not at accept: a parser allocated next to each
  // accepted connection and freed at its upgrade would leave a hole per
  // WebSocket in the heap (connections often arrive in bursts).
  if (!parser_) parser_ = std::make_unique<HttpParser>(conn_.app().limits);
  std::size_t offset = 0;
  // Answers to pipelined requests are bounded too: with the output over the
  // high-water mark (a client that does not read), the rest waits in in_
  // (which pauses reading) until onDrained.
  while (!transport.isEnding() && !current_ && !upgrade_ && offset < input.size() &&
         bufferedAmount() <= http.streamHighWaterBytes) {
    auto step = parser_->feed(input.substr(offset));
    offset += step.consumed;
    if (step.status == HttpParser::Status::kNeedMore) break;
    if (step.status == HttpParser::Status::kExpectContinue) {
      transport.write("HTTP/1.1 100 Continue\r\n\r\n");
      continue;
    }
    if (step.status == HttpParser::Status::kError) {
      sendError(parser_->errorStatus(), parser_->errorReason());
      return;
    }
    dispatch(parser_->request());
    if (upgrade_) {
      // What followed the handshake is already WebSocket traffic.
      upgrade_->rest = input.substr(offset);
      std::string().swap(in_);
      return;
    }
  }
  if (!lent) {
    in_.erase(0, offset);
  } else if (offset < input.size()) {
    in_.assign(input.substr(offset));
  }
  if (transport.isEnding()) return;
  if (!current_) {
    // After the client's FIN, what is left in in_ can never complete a
    // request, unless it is complete requests waiting for the output to drain.
    if (peerEnded_ && (in_.empty() || bufferedAmount() <= http.streamHighWaterBytes)) {
      closeAfterFlush();
      return;
    }
    Phase next = parser_->inHeaders() ? Phase::kHeaders
                 : parser_->idle()    ? Phase::kIdle
                                      : Phase::kBody;
    if (next != phase_) setPhase(next);
  }
  // Unanswered pipelined input is bounded: stop reading until we catch up.
  if (in_.size() > http.maxPipelinedBytes && !readPaused_) {
    readPaused_ = true;
    transport.pauseReading();
  }
}

void HttpExchange::dispatch(RequestView& parsed) {
  AppState& app = conn_.app();
  if (serial_ == 0) remoteAddress_ = conn_.transport().peerAddress(&remotePort_);
  RequestPtr req = RequestData::acquire();
  auto& d = RequestData::of(*req);
  d.method = parsed.method;
  d.target = parsed.target;
  d.versionMinor = parsed.versionMinor;
  HeaderAccess::fields(d.headers).swap(HeaderAccess::fields(parsed.headers));
  // A pooled request's body is empty: most requests have none to hand over.
  if (!parsed.body.empty()) d.body.swap(parsed.body);
  d.splitTarget();
  d.remoteAddress = remoteAddress_;
  d.remotePort = remotePort_;
  if (TlsTransport* tls = conn_.tls()) [[unlikely]] {
    d.secure = true;
    d.peerCertificate = tls->peerCertificate();
  }
  d.loop = &conn_.loopContext();
  d.connection = &conn_;
  d.serial = ++serial_;

  head_ = d.method == "HEAD";
  http10_ = d.versionMinor == 0;
  keepAlive_ = parsed.keepAlive && !shuttingDown_;
  phase_ = Phase::kWaiting;  // no deadline while the application answers
  deadline_ = 0;

  RouteMatch match;
  app.router.match(d.method, d.path, match, d.params, d.decoded);
  const RouteEntry* route =
      match.kind == RouteMatch::Kind::kFound ? &app.routes[match.routeId] : nullptr;

  dispatching_ = true;
  Response res = app.handle(*req, route, match);
  dispatching_ = false;

  if (route && route->isWebSocket && res.status() == 101) {
    if (d.deferred) {
      answerMisuse(*req, "a middleware deferred the response of a ws route that then upgraded");
      release(std::move(req));
      return;
    }
    d.own();
    upgrade_ = std::make_unique<Upgrade>();
    upgrade_->route = route;
    upgrade_->request = std::move(req);
    upgrade_->handshake = std::move(res);
    return;
  }
  if (res.isDeferred()) {
    // A placeholder: a Deferred, or a coroutine that suspended. Its level's
    // answer is this request's, now if it already came (completeLevel).
    auto state = d.deferredState.lock();
    const std::uint32_t level = ResponseAccess::pendingLevel(res);
    if (!state || ResponseAccess::pendingState(res) != state.get() ||
        level >= state->levels.size() || state->levels[level].taken ||
        state->levels[level].waiter || state->levels[level].forwarding) {
      answerMisuse(*req, "handler returned a pending response that is not this request's");
      release(std::move(req));
      return;
    }
    state->placeholderHeaders = res.headers();
    current_ = std::move(req);
    PendingLevel& pending = state->levels[level];
    if (!pending.done) {
      state->registered = level;
      return;
    }
    pending.taken = true;
    Response early = pending.early ? std::move(*pending.early) : Response(500);
    pending.early.reset();
    if (auto error = std::exchange(pending.error, nullptr)) {
      early = app.applyFilters(error, *current_);
    }
    sendDeferred(*state, std::move(early));
    return;
  }
  sendResponse(res, *req);
  if (stream_ && !stream_->ended) {
    // The producer writes on later: the request outlives the input now.
    d.own();
    current_ = std::move(req);
  } else if (d.owned) [[unlikely]] {
    release(std::move(req));
  }
}

void HttpExchange::release(RequestPtr request) noexcept {
  if (!request) return;
  RequestData& d = RequestData::of(*request);
  if (!d.owned) return;
  // Coroutines or Deferred handles still refer to it: it stays valid (and
  // out of the pool) until the last of them lets go of the state.
  if (auto state = d.deferredState.lock()) state->request = std::move(request);
}

void HttpExchange::answerMisuse(Request& req, std::string_view what) {
  log(LogLevel::kError,
      "spry: " + std::string(req.path()) + ": " + std::string(what) + "; answering 500");
  auto err = Response::text("Internal Server Error", 500);
  sendResponse(err, req);
}

bool HttpExchange::sendDeferred(DeferredState& state, Response response) {
  if (conn_.isClosed() || !current_ || RequestData::of(*current_).serial != state.requestSerial) {
    return false;
  }
  if (response.isDeferred() || response.status() == 101) {
    log(LogLevel::kError, response.isDeferred()
                              ? "spry: a pending response was answered with another one"
                              : "spry: a pending HTTP response cannot be a WebSocket upgrade");
    response = Response::text("Internal Server Error", 500);
  }
  for (const auto& [name, value] : state.placeholderHeaders) {
    if (!response.headers().has(name)) response.headers().add(name, value);
  }
  sendResponse(response, *current_);
  if (!stream_ || stream_->ended) finishResponse();
  return true;
}

void HttpExchange::sendResponse(Response& response, Request& req) {
  const int status = response.status();
  if (response.isStream()) {
    std::string_view date = conn_.loopContext().dates().now();
    std::string& head = scratch();
    auto state = std::make_shared<StreamState>();
    state->conn = conn_.self();
    state->headOnly = head_ || !statusHasBody(status);
    state->chunked = !http10_;
    if (!state->chunked) keepAlive_ = false;
    writeHead(head, status, response.headers(),
              state->chunked ? BodyFraming::kChunked : BodyFraming::kNone, 0, keepAlive_, http10_,
              date);
    conn_.transport().write(head);
    stream_ = state;
    if (state->headOnly) {
      state->ended = true;
      if (&req != current_.get()) finishResponse();
      return;
    }
    runProducer(response, req, state);
    return;
  }
  // Head and body go straight into the transport's output buffer (reused
  // from response to response): one copy of each, no allocation.
  const std::string& body = response.body();
  const bool hasBody = statusHasBody(status);
  const std::size_t bodySize = !head_ && hasBody ? body.size() : 0;
  const Headers& headers = ResponseAccess::headerList(response);
  const std::string_view type = ResponseAccess::pendingContentType(response);
  const std::string_view typeLine = type.empty() ? type : contentTypeLine(type);
  const std::string_view dateLine = conn_.loopContext().dates().nowLine();
  conn_.transport().writeUpTo(responseHeadRoom(headers) + bodySize, [&](char* out) {
    out = writeResponseHead(out, status, typeLine, headers,
                            hasBody ? BodyFraming::kContentLength : BodyFraming::kNone, body.size(),
                            keepAlive_, http10_, dateLine);
    // A short body in one 16-byte copy: a string's buffer holds at least
    // 16 bytes, and the room reaches 16 past the head (responseHeadRoom).
    if (bodySize <= 16 && body.capacity() >= 15) {
      std::memcpy(out, body.data(), 16);
    } else {
      std::memcpy(out, body.data(), bodySize);
    }
    return out + bodySize;
  });
  if (&req != current_.get()) finishResponse();
}

void HttpExchange::runProducer(Response& response, Request& req,
                               const std::shared_ptr<StreamState>& state) {
  auto producer = std::move(ResponseAccess::producer(response));
  state->producing = true;
  const bool ok = runGuarded(
      "stream producer", [&] { producer(StreamState::makeWriter(state)); },
      std::string(" (" + std::string(req.path()) + ")").c_str());
  state->producing = false;
  if (!ok) {
    // The head is out: the truncated chunked body is how the client learns.
    state->ended = true;
    keepAlive_ = false;
    closeAfterFlush();
    return;
  }
  if (state->ended && &req != current_.get()) finishResponse();
}

void HttpExchange::finishResponse() {
  release(std::move(current_));
  stream_.reset();
  if (!keepAlive_ || (peerEnded_ && in_.empty())) {
    closeAfterFlush();
    return;
  }
  setPhase(Phase::kIdle);
  if (readPaused_ && in_.size() <= conn_.app().http.maxPipelinedBytes / 2) {
    readPaused_ = false;
    conn_.transport().resumeReading();
  }
  // Pipelined requests wait in in_; handle them unless we are already inside
  // process() (it loops on its own).
  if (!dispatching_ && !in_.empty() && !processing_) process();
}

bool HttpExchange::streamWrite(StreamState& state, std::string_view data) {
  if (conn_.isClosed() || state.ended || stream_.get() != &state) return false;
  if (!state.headOnly && !data.empty()) {
    if (state.chunked) {
      std::string& chunk = scratch();
      writeChunk(chunk, data);
      conn_.transport().write(chunk);
    } else {
      conn_.transport().write(data);
    }
  }
  if (bufferedAmount() > conn_.app().http.streamHighWaterBytes) {
    state.wantDrain = true;
    return false;
  }
  return true;
}

void HttpExchange::streamEnd(StreamState& state) {
  if (conn_.isClosed() || state.ended || stream_.get() != &state) return;
  state.ended = true;
  // The callbacks are done with; they often hold a BodyWriter, a cycle
  // through the state that would otherwise never be freed.
  state.onDrain = nullptr;
  state.onAbort = nullptr;
  if (state.chunked && !state.headOnly) {
    std::string& last = scratch();
    writeLastChunk(last);
    conn_.transport().write(last);
  }
  // Inside the producer call, sendResponse (or sendDeferred) finishes the
  // response itself; finishing here would destroy the request under it.
  if (!state.producing) finishResponse();
}

void HttpExchange::sendError(int status, std::string_view reason) {
  log(LogLevel::kDebug, "spry: " + conn_.transport().peerAddress(nullptr) + ": HTTP " +
                            std::to_string(status) + ": " + std::string(reason));
  Headers headers;
  headers.add("Content-Type", "text/plain; charset=utf-8");
  std::string_view body = reasonPhrase(status);
  std::string& out = scratch();
  writeHead(out, status, headers, BodyFraming::kContentLength, body.size(), false, false,
            conn_.loopContext().dates().now());
  out.append(body);
  conn_.transport().write(out);
  release(std::move(current_));
  std::string().swap(in_);
  closeAfterFlush();
}

void HttpExchange::onDrained() {
  if (readPaused_ && in_.size() <= conn_.app().http.maxPipelinedBytes / 2) {
    readPaused_ = false;
    conn_.transport().resumeReading();
  }
  // Pipelined requests that waited for the output to drain (see process).
  if (!current_ && !in_.empty() && !processing_) {
    process();
    return;
  }
  if (stream_ && stream_->wantDrain) {
    stream_->wantDrain = false;
    if (stream_->onDrain) {
      // A copy: the callback may end the stream, which drops it.
      auto keep = stream_;
      auto fn = keep->onDrain;
      runGuarded("a BodyWriter drain callback", fn);
    }
  }
}

void HttpExchange::sweep(std::uint64_t now) {
  // Ending: the transport closes once its output is out (or stalls).
  if (!deadline_ || now < deadline_ || conn_.transport().isEnding()) return;
  if (phase_ == Phase::kIdle) {
    // A response still being written is not idleness: closing now would cut
    // it off. The idle time starts again until it is out.
    if (bufferedAmount() > 0) {
      deadline_ = now + msOf(conn_.app().http.keepAliveTimeout);
      return;
    }
    conn_.close();
  } else if (phase_ == Phase::kHeaders || phase_ == Phase::kBody) {
    sendError(408, "request timeout");
  }
}

void HttpExchange::beginShutdown() {
  shuttingDown_ = true;
  keepAlive_ = false;
  if (!current_ && (parser_ == nullptr || parser_->idle())) closeAfterFlush();
}

void HttpExchange::onClosed() noexcept {
  if (stream_ && !stream_->ended) {
    stream_->aborted = true;
    auto keep = stream_;
    auto onAbort = std::move(keep->onAbort);
    keep->onAbort = nullptr;
    keep->onDrain = nullptr;  // see streamEnd
    if (onAbort) runGuarded("a BodyWriter abort callback", onAbort);
  }
  if (current_) {
    RequestData::of(*current_).aborted = true;
    release(std::move(current_));
  }
  current_.reset();
  stream_.reset();
  upgrade_.reset();
}

}  // namespace spry::detail
