#include "connection.h"

#include <atomic>

#include "app_state.h"
#include "http/handshake.h"
#include "loop_context.h"
#include "server.h"
#include "spry/log.h"

namespace spry::detail {

namespace {
std::atomic<std::uint64_t> gNextSocketId{1};
}  // namespace

Connection::Connection(std::shared_ptr<Server> server) : server_(std::move(server)), tcp_(*this) {}

// A connection's TLS: the transport and its host, allocated together when a
// TLS listener accepts, and only then.
class Connection::TlsLayer final : public TlsHost {
 public:
  TlsLayer(Connection& c, std::shared_ptr<const TlsContext> context)
      : conn_(c), transport_(c.tcp_, c, *this, std::move(context)) {}

  bool takeHandshakeStep() noexcept override { return conn_.server_->takeHandshakeStep(); }
  void handshakeStepTook(std::uint64_t ns) noexcept override {
    conn_.server_->handshakeStepTook(ns);
  }
  void runTlsLater() noexcept override {
    // Once the server has stopped nothing will run it: the connection goes.
    if (!conn_.server_->tlsLater(conn_.self_)) conn_.close();
  }
  std::span<char> plainBuffer() noexcept override { return conn_.loopContext().plainBuffer(); }
  void onTlsHandshake(bool resumed) noexcept override { conn_.server_->countTlsHandshake(resumed); }
  void onTlsFailure(bool inHandshake, std::string_view reason) noexcept override {
    conn_.server_->countTlsFailure(inHandshake);
    if (!logEnabled(LogLevel::kDebug)) return;
    try {
      log(LogLevel::kDebug, "spry: " + conn_.tcp_.peerAddress(nullptr) + ": TLS " +
                                (inHandshake ? "handshake failed: " : "error: ") +
                                std::string(reason) + "; closing");
    } catch (...) {
    }
  }

 private:
  Connection& conn_;
  TlsTransport transport_;
};

Connection::~Connection() {
  if (TlsTransport* t = tls()) delete static_cast<TlsLayer*>(&t->host());
}

AppState& Connection::app() const noexcept {
  return server_->app();
}

std::uint64_t Connection::now() const noexcept {
  return uv_now(loopContext().loop());
}

void Connection::start(std::shared_ptr<Connection> self, int fd,
                       std::shared_ptr<const TlsContext> tls) {
  if (tls) new TlsLayer(*this, std::move(tls));  // owned through tcp_'s events: see tls()
  if (!tcp_.open(loopContext().loop(), fd)) return;
  self_ = std::move(self);
  server_->add(this);
  auto& http = protocol_.emplace<HttpExchange>(*this);
  const bool overCapacity =
      app().openConnections.load(std::memory_order_relaxed) > app().maxConnections;
  event([&] { http.start(overCapacity); });
}

// ---------------------------------------------------------------- events

template <class F>
void Connection::event(F&& fn) noexcept {
  ++depth_;
  try {
    fn();
  } catch (const std::exception& e) {
    // Out of memory in protocol code: this connection cannot go on.
    log(LogLevel::kError, std::string("spry: connection failed: ") + e.what());
    close();
  }
  if (--depth_ > 0) return;
  if (auto* h = http(); h && h->hasUpgrade() && !isClosed()) upgrade();
  flush();
}

void Connection::flush() noexcept {
  if (depth_ > 0) return;
  if (TlsTransport* t = tls()) [[unlikely]] {
    if (!t->isWriting() && t->bufferedAmount() > 0) t->flush();
  } else if (!tcp_.isWriting() && tcp_.bufferedAmount() > 0) {
    tcp_.flush();
  }
}

void Connection::postFlush() noexcept {
  flushPosted_ = true;
  bool queued = false;
  try {
    queued = server_->flushLater(self_);
  } catch (...) {
  }
  if (!queued) {
    flushPosted_ = false;
    flush();
  }
}

void Connection::flushNow() noexcept {
  flushPosted_ = false;
  flush();
}

void Connection::onData(char* data, std::size_t size) noexcept {
  // The callbacks below may drop the last outside reference.
  auto keep = self_;
  if (auto* ws = webSocket()) {
    event([&] { ws->receive(data, size); });
  } else if (auto* h = http()) {
    event([&] { h->receive(data, size); });
  }
}

void Connection::onDrained() noexcept {
  if (auto* ws = webSocket()) {
    // Not an event: what the drain callbacks send waits for flushSoon, so a
    // callback that always sends more cannot recurse here.
    ws->onDrained();
  } else if (auto* h = http()) {
    event([&] { h->onDrained(); });
  }
}

void Connection::onPeerEnd() noexcept {
  if (auto* h = http()) {
    event([&] { h->onPeerEnd(); });
  } else {
    close();  // a WebSocket ends with a Close frame, not a FIN
  }
}

void Connection::onClosed() noexcept {
  if (auto* ws = webSocket()) {
    ws->onClosed();
  } else if (auto* h = http()) {
    h->onClosed();
  }
}

void Connection::onReleased() noexcept {
  server_->remove(this);
  auto last = std::move(self_);
  // `last` may be the final owner: the connection is destroyed here.
}

std::string& Connection::readBuffer() noexcept {
  return loopContext().readBuffer();
}

void Connection::onWriteQueued(long delta) noexcept {
  server_->countWriteBytes(delta);
}

// ---------------------------------------------------------------- TLS

void Connection::runTlsPending() noexcept {
  if (TlsTransport* t = tls(); t && !isClosed()) t->runPending();
}

// ---------------------------------------------------------------- the upgrade

void Connection::upgrade() noexcept {
  auto up = http()->takeUpgrade();
  const RouteEntry& route = *up->route;
  HandshakeResult accepted;
  accepted.kind = HandshakeResult::Kind::kAccept;
  auto& headers = up->handshake.headers();
  accepted.accept = std::string(headers.get("Sec-WebSocket-Accept"));
  accepted.protocol = std::string(headers.get("Sec-WebSocket-Protocol"));
  ++depth_;
  try {
    // permessage-deflate: the client's offers against the route's settings.
    std::optional<DeflateAgreement> deflate;
    if (const CompressionOptions& z = route.wsOptions.compression; z.mode != Compression::kOff) {
      const auto offers = up->request->headers().getAll("Sec-WebSocket-Extensions");
      deflate = negotiateDeflate(
          offers, {.dedicated = z.mode == Compression::kDedicated, .windowBits = z.windowBits});
      if (deflate) accepted.extensions = deflateResponse(*deflate);
    }
    auto& head = loopContext().scratch();
    head.clear();
    writeUpgradeResponse(head, accepted, headers);
    transport().write(head);
    // Many sockets go quiet after the 101: its buffer is given back once out.
    if (TlsTransport* t = tls()) {
      t->releaseAfterFlush();
    } else {
      tcp_.releaseAfterFlush();
    }
    auto& ws = protocol_.emplace<WebSocketEndpoint>(*this, route.wsOptions);
    if (deflate) ws.enableDeflate(*deflate);
    server_->countWebSocket(+1);
    auto& d = RequestData::of(*up->request);
    d.webSocket = true;
    // The request is context only now: a body on the upgrade GET was for the
    // middleware, the socket's data comes through listen().
    std::string().swap(d.body);
    // The handle shares the connection's ownership and points at the endpoint.
    WebSocket handle(std::shared_ptr<WebSocketEndpoint>(self_, &ws),
                     gNextSocketId.fetch_add(1, std::memory_order_relaxed));
    ws.open(route.wsHandler, handle, *up->request, std::move(accepted.protocol));
    up->request.reset();
    if (!up->rest.empty() && !isClosed()) ws.receive(up->rest.data(), up->rest.size());
  } catch (const std::exception& e) {
    log(LogLevel::kError, std::string("spry: WebSocket upgrade failed: ") + e.what());
    close();
  }
  --depth_;
}

// ---------------------------------------------------------------- Deferred, BodyWriter

bool Connection::sendDeferred(DeferredState& state, Response response) {
  bool sent = false;
  if (auto* h = http()) event([&] { sent = h->sendDeferred(state, std::move(response)); });
  return sent;
}

bool Connection::streamWrite(StreamState& state, std::string_view data) {
  auto* h = http();
  if (!h) return false;
  const bool ok = h->streamWrite(state, data);
  flush();
  return ok;
}

void Connection::streamEnd(StreamState& state) {
  if (auto* h = http()) event([&] { h->streamEnd(state); });
}

// ---------------------------------------------------------------- from the server

void Connection::sweep(std::uint64_t now) noexcept {
  if (isClosed()) return;
  auto* ws = webSocket();
  const std::uint64_t sendTimeout = ws ? ws->sendTimeoutMs() : msOf(app().http.sendTimeout);
  if (transport().isStalled(now, sendTimeout)) {
    try {
      log(LogLevel::kDebug, "spry: " + transport().peerAddress(nullptr) + ": send timeout, " +
                                std::to_string(transport().bufferedAmount()) +
                                " bytes unsent; closing");
    } catch (...) {
    }
    close();
    return;
  }
  if (ws) {
    event([&] { ws->sweep(now); });
  } else if (auto* h = http()) {
    event([&] { h->sweep(now); });
    // A TLS connection's record buffers (~34 KB) are not kept between
    // requests longer than a sweep period (a WebSocket's sweep does the same).
    if (TlsTransport* t = tls(); t && !isClosed()) t->releaseIdleMemory();
  }
}

void Connection::beginShutdown() noexcept {
  if (isClosed()) return;
  if (auto* ws = webSocket()) {
    event([&] { ws->beginShutdown(); });
  } else if (auto* h = http()) {
    event([&] { h->beginShutdown(); });
  }
}

}  // namespace spry::detail
