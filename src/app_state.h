#pragma once
// The application's shared state: routes, groups, filters, and what each
// request carries internally. Read-only once listening starts.

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http/http_parser.h"
#include "pubsub.h"
#include "router.h"
#include "spry/app.h"

namespace spry::detail {

class Connection;
class LoopContext;
class Server;

struct GroupNode {
  GroupNode* parent = nullptr;
  std::string path;  // full joined prefix, "/" for the root
  std::vector<Middleware> middleware;
};

struct RouteEntry {
  std::string method;
  std::string pattern;
  GroupNode* group = nullptr;
  Handler handler;
  // ws routes
  bool isWebSocket = false;
  WebSocketHandler wsHandler;
  WebSocketOptions wsOptions;
  // Frozen at listen: every middleware from the app down to the route's group.
  std::vector<const Middleware*> chain;
};

using ExceptionFilter = std::function<std::optional<Response>(std::exception_ptr, Request&)>;

struct AppState {
  AppState(spry::RouterOptions routing, HttpOptions http);

  spry::RouterOptions routing;
  HttpOptions http;
  HttpLimits limits;
  Router router;
  GroupNode root;
  std::deque<GroupNode> groups;  // stable addresses
  std::deque<RouteEntry> routes;
  std::vector<ExceptionFilter> filters;
  std::vector<const Middleware*> globalChain;  // for 404 and OPTIONS *, frozen at listen
  bool frozen = false;

  std::mutex serveMutex;
  std::vector<std::shared_ptr<Server>> servers;
  std::atomic<std::uint16_t> port{0};
  std::string host;  // as bound; written before any loop thread starts
  std::atomic<bool> listening{false};
  SubscriberCounts subscribers;
  std::atomic<std::size_t> openConnections{0};  // across loops
  std::size_t maxConnections = 0;               // set by listen/attach

  // Sends `message` to the subscribers of `topic` on every loop but `skip`:
  // directly on the calling loop, through the async queue on the others.
  // Thread-safe. Returns false when not listening.
  bool publish(std::string_view topic, const Message& message, const Connection* skip);

  void checkNotFrozen() const;
  void freeze();

  // Runs the onion for a matched route, or, when route is null, the middleware
  // the path's routes share (405) or the global middleware (404, 400, OPTIONS *)
  // around the answer for `match`; applies the exception filters. Never throws.
  Response handle(Request& req, const RouteEntry* route, const RouteMatch& match) noexcept;
  Response applyFilters(std::exception_ptr error, Request& req) noexcept;
};

struct Chain {
  const std::vector<const Middleware*>* middleware;
  const std::function<Response(Request&)>* terminal;
  Request* req;
  Response run(std::size_t index) const;
};

// What is behind a Deferred.
struct DeferredState {
  std::weak_ptr<Connection> conn;
  std::uint64_t requestSerial = 0;
  bool sent = false;
  bool registered = false;        // the connection has seen the placeholder
  std::optional<Response> early;  // sent before the handler returned
  Headers placeholderHeaders;     // set by middleware on the placeholder
  // The request, once its connection closed before send(): it stays valid
  // until send() as documented, that is as long as a Deferred refers to it.
  std::unique_ptr<Request> request;
};

// What is behind a BodyWriter.
struct StreamState {
  std::weak_ptr<Connection> conn;
  bool ended = false;
  bool aborted = false;
  bool wantDrain = false;
  bool headOnly = false;   // HEAD: nothing is written
  bool chunked = true;     // HTTP/1.0 gets a close-delimited body
  bool producing = false;  // inside the producer call: sendResponse finishes the response
  std::function<void()> onDrain;
  std::function<void()> onAbort;
  static BodyWriter makeWriter(std::shared_ptr<StreamState> s) { return BodyWriter(std::move(s)); }
};

struct RequestData {
  ParsedRequest parsed;
  std::string_view path;   // into parsed.target
  std::string_view query;  // raw, without '?'
  std::vector<std::pair<std::string, std::string>> params;
  mutable std::optional<std::vector<std::pair<std::string, std::string>>> queryPairs;
  Locals locals;
  std::string remoteAddress;
  std::uint16_t remotePort = 0;
  std::shared_ptr<LoopContext> loop;
  std::weak_ptr<Connection> conn;
  std::uint64_t serial = 0;
  bool webSocket = false;
  bool deferred = false;
  std::shared_ptr<DeferredState> deferredState;

  static std::unique_ptr<Request> makeRequest(std::unique_ptr<RequestData> d);
  static RequestData& of(Request& req) noexcept { return *req.d_; }
};

}  // namespace spry::detail

namespace spry {
// Internal access to Response's private parts.
struct ResponseAccess {
  static Response::StreamProducer& producer(Response& r) noexcept { return r.producer_; }
  static void markDeferred(Response& r) noexcept { r.deferred_ = true; }
};
}  // namespace spry
