#pragma once
// The HTTP/1.1 side of a connection: parse, dispatch through the app, write
// the response (whole, deferred or streamed), in order, with the header,
// body and keep-alive timeouts. It never touches the socket: it reads the
// bytes its connection hands it and writes to the connection's transport. A
// WebSocket upgrade ends it: the exchange hands the upgrade over as a value
// (takeUpgrade) and the connection swaps protocols.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "http/http_parser.h"
#include "http/request_data.h"

namespace spry::detail {

class Connection;
struct RouteEntry;

// A request a WebSocket route accepted: its 101 is not written yet.
struct Upgrade {
  const RouteEntry* route = nullptr;
  RequestPtr request;       // owned: it no longer points into the connection's input
  Response handshake{101};  // Sec-WebSocket-Accept, the subprotocol, middleware's headers
  std::string rest;         // bytes after the request: WebSocket frames already
};

class HttpExchange {
 public:
  explicit HttpExchange(Connection& conn) noexcept : conn_(conn) {}
  HttpExchange(const HttpExchange&) = delete;
  HttpExchange& operator=(const HttpExchange&) = delete;

  // Starts the header timeout of a new connection, or answers 503 when the
  // server is over its connection cap.
  void start(bool overCapacity);
  // Bytes from the transport.
  void receive(const char* data, std::size_t size);
  // The transport's output drained: pipelined requests go on, streams resume.
  void onDrained();
  // The client's FIN: it may still wait for answers to what it sent.
  void onPeerEnd();
  // Deadlines (header, body, keep-alive, send), with uv_now().
  void sweep(std::uint64_t now);
  // Graceful stop: close when idle, or after the response in flight.
  void beginShutdown();
  // The connection closed: abort the stream in flight, keep a pending
  // request alive for its Deferred and coroutines (isAborted).
  void onClosed() noexcept;

  // A ws route accepted the last request: the exchange is over.
  bool hasUpgrade() const noexcept { return upgrade_ != nullptr; }
  std::unique_ptr<Upgrade> takeUpgrade() noexcept { return std::move(upgrade_); }

  // For Deferred and BodyWriter.
  bool sendDeferred(DeferredState& state, Response response);
  bool streamWrite(StreamState& state, std::string_view data);
  void streamEnd(StreamState& state);

 private:
  enum class Phase { kIdle, kHeaders, kBody, kWaiting };

  void setPhase(Phase phase) noexcept;
  // Parses and answers what is in in_.
  void process() { process(in_, false); }
  // Parses and answers `input`: in_, or bytes lent by the transport (parsed
  // in place; what is left is kept in in_).
  void process(std::string_view input, bool lent);
  void dispatch(RequestView& parsed);
  void sendResponse(Response& response, Request& req);
  void runProducer(Response& response, Request& req, const std::shared_ptr<StreamState>& state);
  void finishResponse();
  // The exchange is done with `request`: to the pool, or kept by its pending
  // state while coroutines or Deferred handles refer to it.
  void release(RequestPtr request) noexcept;
  void sendError(int status, std::string_view reason);
  // An API misuse found after the handler ran: logged, answered 500.
  void answerMisuse(Request& req, std::string_view what);
  // Ends the connection after what is queued; lingers unless the client has
  // gone already.
  void closeAfterFlush() noexcept;
  std::uint64_t bufferedAmount() const noexcept;
  // The loop's buffer for a response head or a chunk, emptied: the bytes are
  // copied into the transport at once, so no allocation per response.
  std::string& scratch() const noexcept;

  Connection& conn_;
  std::unique_ptr<HttpParser> parser_;
  std::string in_;                       // received, not yet parsed (lent input is parsed in place)
  RequestPtr current_;                   // its response is pending (deferred or streaming)
  std::shared_ptr<StreamState> stream_;  // body stream in progress
  std::unique_ptr<Upgrade> upgrade_;
  std::string remoteAddress_;  // read once, at the first request
  std::uint16_t remotePort_ = 0;
  std::uint64_t deadline_ = 0;  // uv_now() ms; 0 = none
  std::uint64_t serial_ = 0;
  Phase phase_ = Phase::kIdle;
  bool keepAlive_ = true;
  bool head_ = false;
  bool http10_ = false;
  bool dispatching_ = false;
  bool processing_ = false;
  bool peerEnded_ = false;
  bool readPaused_ = false;
  bool shuttingDown_ = false;
};

}  // namespace spry::detail
