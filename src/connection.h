#pragma once
// One accepted connection: a transport and the protocol it carries, HTTP
// until an upgrade and a WebSocket after it. It routes transport events to
// the protocol, runs each event as one batch (writes are flushed once at its
// end) and swaps protocols at the upgrade, where an idle WebSocket keeps no
// HTTP state.

#include <uv.h>

#include <cstdint>
#include <memory>
#include <variant>

#include "http/http_exchange.h"
#include "server.h"
#include "transport/tcp_transport.h"
#include "transport/tls_transport.h"
#include "ws/websocket_endpoint.h"

namespace spry::detail {

class LoopContext;
class Server;
struct AppState;

class Connection final : private TransportEvents {
 public:
  explicit Connection(std::shared_ptr<Server> server);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Takes the accepted socket `fd` and starts reading, through TLS when
  // `tls` is set; `self` becomes the connection's own reference until its
  // transport is released. When the socket cannot be watched it is closed
  // and the connection never starts. Throws std::bad_alloc (before taking
  // the socket).
  void start(std::shared_ptr<Connection> self, int fd, std::shared_ptr<const TlsContext> tls = {});

  // --- from the server
  // Deadlines, with uv_now().
  void sweep(std::uint64_t now) noexcept;
  // Graceful stop: idle HTTP closes, the response in flight finishes,
  // WebSockets get Close 1001.
  void beginShutdown() noexcept;
  // Writes what flushSoon() left for after the callback.
  void flushNow() noexcept;

  // --- from the protocols and the handles
  Transport& transport() noexcept {
    TlsTransport* t = tls();
    return t ? static_cast<Transport&>(*t) : static_cast<Transport&>(tcp_);
  }
  const Transport& transport() const noexcept {
    const TlsTransport* t = tls();
    return t ? static_cast<const Transport&>(*t) : static_cast<const Transport&>(tcp_);
  }
  // The connection came through a TLS listener.
  bool isSecure() const noexcept { return tls() != nullptr; }
  // The TLS layer, null on a plain connection. Not a member of its own: an
  // idle plain connection must not grow by a pointer, so it is found through
  // where the TCP transport sends its events (here, or to the TLS layer).
  TlsTransport* tls() const noexcept {
    TransportEvents* e = tcp_.events();
    return e == static_cast<const TransportEvents*>(this) ? nullptr : TlsTransport::fromEvents(e);
  }
  // For the server: TLS work put off (runTlsLater).
  void runTlsPending() noexcept;
  Server& server() const noexcept { return *server_; }
  AppState& app() const noexcept;
  LoopContext& loopContext() const noexcept { return server_->loopContext(); }
  // The connection's owner reference (null once released): for weak
  // references and aliasing handles.
  const std::shared_ptr<Connection>& self() const noexcept { return self_; }
  std::uint64_t now() const noexcept;
  bool isClosed() const noexcept { return tcp_.isClosed(); }
  // Drops the connection now (the peer sees it end; unsent bytes are lost).
  void close() noexcept { tcp_.close(); }
  // Writes what is queued after the current callback: at the end of the
  // event running now, else in the loop's check phase.
  void flushSoon() noexcept {
    if (depth_ == 0 && !flushPosted_ && !isClosed()) postFlush();
  }
  // The HTTP exchange until the upgrade, then null.
  HttpExchange* http() noexcept { return std::get_if<HttpExchange>(&protocol_); }
  WebSocketEndpoint* webSocket() noexcept { return std::get_if<WebSocketEndpoint>(&protocol_); }

  // For Deferred and BodyWriter: each is one event on this connection.
  bool sendDeferred(DeferredState& state, Response response);
  bool streamWrite(StreamState& state, std::string_view data);
  void streamEnd(StreamState& state);

 private:
  // TransportEvents
  void onData(char* data, std::size_t size) noexcept override;
  void onDrained() noexcept override;
  void onPeerEnd() noexcept override;
  void onClosed() noexcept override;
  void onReleased() noexcept override;
  std::string& readBuffer() noexcept override;
  void onWriteQueued(long delta) noexcept override;
  // The TLS layer's host: it reaches the server through this connection.
  class TlsLayer;
  friend class TlsLayer;

  // Runs `fn` as one event: what it queues is written once, at the end of
  // the outermost event, after an upgrade it asked for has been made.
  template <class F>
  void event(F&& fn) noexcept;
  void flush() noexcept;
  void postFlush() noexcept;
  void upgrade() noexcept;

  // Shared: other threads reach the loop through a WebSocket handle, and may
  // hold the connection after listen() has let go of its server.
  std::shared_ptr<Server> server_;
  std::shared_ptr<Connection> self_;  // released in onReleased
  TcpTransport tcp_;                  // on a TLS listener wrapped by a TlsLayer (tls())
  // The fields after it live in its tail padding (after the index byte).
  [[no_unique_address]] std::variant<std::monostate, HttpExchange, WebSocketEndpoint> protocol_;
  bool flushPosted_ = false;  // flushSoon() handed this connection to the server
  std::uint16_t depth_ = 0;   // events running

 public:
  // Index in the server's connection list.
  std::uint32_t serverIndex = 0;
};

}  // namespace spry::detail
