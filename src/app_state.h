#pragma once
// The application's shared state: routes, groups, middleware chains and
// filters (read-only once listening starts), and the servers of its loops.

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http/http_parser.h"
#include "http/request_data.h"
#include "pubsub.h"
#include "router.h"
#include "spry/app.h"

namespace spry::detail {

class LoopContext;
class PubSubBridge;
class Server;
class TlsServerConfig;
class WebSocketEndpoint;

// A listener as bound: the same on every loop.
struct BoundListener {
  std::string host;
  std::uint16_t port = 0;
  std::shared_ptr<TlsServerConfig> tls;  // null: plain
};

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
  std::atomic<std::uint16_t> port{0};  // of the first listener
  std::string host;                    // of the first listener
  // Every listener, the first first: written before any loop thread starts
  // and cleared after they end (under serveMutex for App::listeners()).
  std::vector<BoundListener> listeners;
  std::mutex tlsReloadMutex;
  std::atomic<bool> listening{false};
  SubscriberCounts subscribers;
  std::atomic<std::size_t> openConnections{0};  // across loops
  std::size_t maxConnections = 0;               // set by listen/attach

  // Sends `message` to the subscribers of `topic` on every loop but `skip`:
  // directly on the calling loop, through the async queue on the others.
  // Thread-safe. Returns false when not listening.
  // `skip` (may be null): the publishing socket, which does not get it.
  // Then hands it to the Redis bridge, if any, for the other processes.
  bool publish(std::string_view topic, const Message& message,
               const std::shared_ptr<WebSocketEndpoint>& skip);
  // publish() on this process's loops only (also what the bridge delivers).
  bool publishLocally(std::string_view topic, const Message& message,
                      const std::shared_ptr<WebSocketEndpoint>& skip);

  // An Origin of a page this app serves, on any of its listeners (loop threads).
  bool isOwnOrigin(std::string_view origin) const noexcept;

  void checkNotFrozen() const;
  void freeze();

  // Runs the onion for a matched route, or, when route is null, the middleware
  // the path's routes share (405) or the global middleware (404, 400, OPTIONS *)
  // around the answer for `match`; applies the exception filters. Never throws.
  Response handle(Request& req, const RouteEntry* route, const RouteMatch& match) noexcept;
  Response applyFilters(std::exception_ptr error, Request& req) noexcept;

  // The Redis bridge (App::bridge), set before listen. Last: it is stopped
  // (its thread joined) before the members its hooks use are destroyed.
  std::unique_ptr<PubSubBridge> bridge;
  ~AppState();
};

// The onion of one request. Next copies its pointers: what they point at
// (a route's frozen chain, or the request's keepAlive) outlives the request's
// coroutines.
struct Chain {
  const std::vector<const Middleware*>* middleware;
  const std::function<Response(Request&)>* terminal;
  Request* req;
  Response run(std::size_t index) const { return runAt(middleware, terminal, req, index); }
  // The same from a Next's fields: arguments in registers, a tail call.
  static Response runAt(const std::vector<const Middleware*>* middleware,
                        const std::function<Response(Request&)>* terminal, Request* req,
                        std::size_t index);
};

}  // namespace spry::detail
