#pragma once
/// The application: routes, groups, middleware, exception filters, listen.

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "spry/error.h"
#include "spry/loop.h"
#include "spry/options.h"
#include "spry/redis_bridge.h"
#include "spry/request.h"
#include "spry/response.h"
#include "spry/websocket.h"

struct uv_loop_s;

namespace spry {

namespace detail {
struct AppState;
struct GroupNode;
struct Chain;
}  // namespace detail

/// Continues the middleware onion: calls the next middleware or the handler
/// and returns its response, which the caller may change before returning it.
class Next {
 public:
  Response operator()() const;

 private:
  friend struct detail::Chain;
  Next(const detail::Chain* chain, std::size_t index) noexcept : chain_(chain), index_(index) {}
  const detail::Chain* chain_;
  std::size_t index_;
};

/// A request handler after its return value has been turned into a Response.
using Handler = std::function<Response(Request&)>;
/// Middleware: return next() (possibly changed) to go on, or a Response (or
/// throw) to short-circuit.
using Middleware = std::function<Response(Request&, const Next&)>;
/// A ws route handler: set up listeners on `ws`; `req` is valid during the call.
using WebSocketHandler = std::function<void(WebSocket ws, Request& req)>;

namespace detail {
template <class T>
inline constexpr bool kAlwaysFalse = false;

// Turns what a handler returned into a Response: text, bytes, JSON, a
// Response, a Deferred, or nothing (204 No Content).
template <class R>
Response toResponse(R&& value) {
  using T = std::remove_cvref_t<R>;
  if constexpr (std::is_same_v<T, Response>) {
    return std::forward<R>(value);
  } else if constexpr (std::is_same_v<T, Deferred>) {
    return static_cast<Response>(value);
  } else if constexpr (std::is_same_v<T, nlohmann::json>) {
    return Response::json(value);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return Response::text(std::string(std::forward<R>(value)));  // moved when it can be
  } else if constexpr (std::is_convertible_v<R, std::string_view>) {
    return Response::text(std::string(std::string_view(value)));
  } else if constexpr (std::is_same_v<T, std::vector<std::byte>>) {
    return Response::bytes(std::span<const std::byte>(value));
  } else if constexpr (std::is_same_v<T, std::vector<std::uint8_t>>) {
    return Response::bytes(std::string(value.begin(), value.end()));
  } else {
    static_assert(kAlwaysFalse<T>,
                  "spry: a handler must return Response, Deferred, a string, bytes "
                  "(std::vector<std::byte>), nlohmann::json or void");
  }
}

template <class F>
Handler wrapHandler(F&& fn) {
  return [fn = std::forward<F>(fn)](Request& req) mutable -> Response {
    using R = std::invoke_result_t<F&, Request&>;
    if constexpr (std::is_void_v<R>) {
      fn(req);
      return Response(204);
    } else {
      return toResponse(fn(req));
    }
  };
}
}  // namespace detail

class Group;

/// Route registration shared by App and Group. Registration happens before
/// listen(); it throws std::invalid_argument for a bad pattern or a duplicate
/// route, and std::logic_error once the app is listening.
class Routes {
 public:
  template <class F>
  Routes& get(std::string_view path, F&& h) {
    return on("GET", path, std::forward<F>(h));
  }
  template <class F>
  Routes& post(std::string_view path, F&& h) {
    return on("POST", path, std::forward<F>(h));
  }
  template <class F>
  Routes& put(std::string_view path, F&& h) {
    return on("PUT", path, std::forward<F>(h));
  }
  template <class F>
  Routes& patch(std::string_view path, F&& h) {
    return on("PATCH", path, std::forward<F>(h));
  }
  template <class F>
  Routes& del(std::string_view path, F&& h) {
    return on("DELETE", path, std::forward<F>(h));
  }
  template <class F>
  Routes& head(std::string_view path, F&& h) {
    return on("HEAD", path, std::forward<F>(h));
  }
  template <class F>
  Routes& options(std::string_view path, F&& h) {
    return on("OPTIONS", path, std::forward<F>(h));
  }
  /// Every method.
  template <class F>
  Routes& all(std::string_view path, F&& h) {
    return on("*", path, std::forward<F>(h));
  }
  /// Any method token ("PROPFIND"...). HEAD falls back to the GET route.
  template <class F>
  Routes& on(std::string_view method, std::string_view path, F&& h) {
    return add(method, path, detail::wrapHandler(std::forward<F>(h)));
  }

  /// A WebSocket route: a GET route whose middleware runs before the upgrade
  /// (and may refuse it with an HTTP error); `handler` runs once the socket is open.
  Routes& ws(std::string_view path, WebSocketHandler handler, WebSocketOptions options = {});

  /// Adds middleware to this group (or, on the App, globally). It applies to
  /// every route of the group, also those registered before.
  Routes& use(Middleware middleware);
  /// A sub-group: `prefix` is joined to this group's path; its middleware runs
  /// inside this group's.
  Group group(std::string_view prefix, std::vector<Middleware> middleware = {});

 protected:
  Routes(detail::AppState* app, detail::GroupNode* node) noexcept : app_(app), node_(node) {}
  Routes& add(std::string_view method, std::string_view path, Handler handler);

  detail::AppState* app_;
  detail::GroupNode* node_;
};

/// Routes under a common prefix and middleware. Valid while its App lives.
class Group : public Routes {
 private:
  friend class Routes;
  using Routes::Routes;
};

/// Live counters of a listening app, summed over its loops.
struct Stats {
  std::size_t connections = 0;       ///< open TCP connections (HTTP and WebSocket)
  std::size_t webSockets = 0;        ///< open WebSockets
  std::size_t wslayContexts = 0;     ///< wslay contexts held (process-wide; idle sockets hold none)
  std::size_t writeQueueBytes = 0;   ///< bytes waiting for a socket to become writable
  std::size_t subscribedTopics = 0;  ///< distinct topics with at least one subscriber
  BridgeStats bridge;                ///< the Redis bridge (enabled = false without one)
  /// TLS listeners, since listen (each failure is also logged at debug level).
  std::uint64_t tlsHandshakes = 0;          ///< completed handshakes
  std::uint64_t tlsResumed = 0;             ///< of those, resumed from a session ticket
  std::uint64_t tlsHandshakeFailures = 0;   ///< failed handshakes (bad client, plain HTTP, garbage)
  std::uint64_t tlsErrors = 0;              ///< established connections closed by a TLS error
  std::uint64_t tlsHandshakesDeferred = 0;  ///< handshake steps put off to bound work per loop turn
  // permessage-deflate, all loops:
  std::uint64_t deflateMessages = 0;  ///< messages compressed (a publish: once per loop and window)
  std::uint64_t deflateBytesIn = 0;   ///< their payload bytes
  std::uint64_t deflateBytesOut = 0;  ///< their compressed bytes
  std::uint64_t inflateMessages = 0;  ///< compressed messages received
  std::uint64_t inflateBytesIn = 0;   ///< their compressed bytes
  std::uint64_t inflateBytesOut = 0;  ///< their inflated bytes
  std::size_t deflateContexts = 0;    ///< kDedicated deflate contexts held (busy sockets only)
  std::size_t zlibStreams = 0;        ///< zlib streams alive (process-wide; idle sockets hold none)
};

/// A bound listener (App::listeners()).
struct ListenerInfo {
  std::string host;        ///< as given to listen
  std::uint16_t port = 0;  ///< the bound port
  bool secure = false;     ///< TLS (https, wss)
};

/// A spry application. Not copyable. Registration happens before listen.
class App : public Routes {
 public:
  explicit App(RouterOptions routing = {}, HttpOptions http = {});
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  /// Registers an exception filter for exceptions of type E (or derived):
  /// `fn(const E&, Request&) -> std::optional<Response>`. Filters run in
  /// registration order; the first whose type matches and that returns a
  /// Response wins; nullopt passes the error on. An HttpError is an answer,
  /// not a failure: it reaches only filters whose E is HttpError or derives
  /// from it, never a filter for a base such as std::exception. Unfiltered
  /// HttpError → its status and message; anything else → 500 with a generic
  /// body and a log line.
  template <class E, class F>
  App& filter(F fn) {
    addFilter([fn = std::move(fn)](std::exception_ptr ep, Request& req) -> std::optional<Response> {
      try {
        std::rethrow_exception(ep);
      } catch (const E& e) {
        // A filter for a base (std::exception...) or another branch of a
        // class that is also an HttpError leaves the HttpError alone.
        if constexpr (std::is_polymorphic_v<E> && !std::is_base_of_v<HttpError, E>) {
          if (dynamic_cast<const HttpError*>(&e)) return std::nullopt;
        }
        return fn(e, req);
      } catch (...) {
        return std::nullopt;
      }
    });
    return *this;
  }

  /// Binds, then runs the event loop(s) on this thread until stop() (or a
  /// signal, see ListenOptions). Throws std::runtime_error naming the cause
  /// when the address is invalid or the port is taken.
  void listen(const ListenOptions& options = {});
  /// Embeds the server in a libuv loop the caller owns and runs: binds and
  /// returns the port; the caller keeps running `loop`. Call stop() and keep
  /// running the loop until stopped to release every handle.
  std::uint16_t attach(uv_loop_s* loop, const ListenOptions& options = {});
  /// Graceful stop: stop accepting, finish in-flight responses, close every
  /// WebSocket with 1001, flush until `deadline`, then close everything; listen()
  /// returns. Thread-safe; a no-op when not listening.
  void stop(std::chrono::milliseconds deadline = std::chrono::milliseconds(5000));
  /// The bound port of the first listener (after listen's onListening or
  /// attach), else 0. Thread-safe.
  std::uint16_t port() const noexcept;
  /// Every bound listener, the first one first (empty when not listening).
  /// Thread-safe.
  std::vector<ListenerInfo> listeners() const;
  /// Rereads the certificate and key files of every TLS listener and SNI
  /// entry. New connections get the new certificates; open ones, and
  /// handshakes in flight, keep theirs. If any file is bad, nothing changes:
  /// returns false and logs why. Session ticket keys survive. True when not
  /// listening or without TLS listeners. Thread-safe (a SIGHUP handler's
  /// thread, any loop).
  bool reloadTls();
  /// True between binding and the end of stop(). Thread-safe.
  bool isListening() const noexcept;
  /// True when `origin` (an Origin header) is this server's own: for any
  /// listener, http:// (https:// for a TLS one), the host it listens on (and
  /// localhost, 127.0.0.1, [::1] when that is a loopback or wildcard
  /// address), its bound port, even with port 0. False when not listening.
  /// For Origin checks in middleware; a ws route can use
  /// WebSocketOptions::allowOwnOrigin instead. Loop threads only.
  bool isOwnOrigin(std::string_view origin) const noexcept;
  /// Sends `message` to every subscriber of `topic` on every loop, framed once.
  /// Thread-safe. Returns false when not listening.
  bool publish(std::string_view topic, const Message& message);
  /// Carries every publish and subscription to the other processes on the
  /// same Redis (see RedisBridge). Before listen, once; throws
  /// std::logic_error otherwise. Redis being down never fails listen().
  App& bridge(RedisBridge bridge);
  /// Subscribers of `topic` across all loops of this process (never other
  /// processes', bridged or not). Thread-safe.
  std::size_t subscriberCount(std::string_view topic) const;
  /// Live counters (for monitoring and leak tests). Thread-safe.
  Stats stats() const;
  /// The loops serving this app (empty when not listening).
  std::vector<Loop> loops() const;

 private:
  void addFilter(std::function<std::optional<Response>(std::exception_ptr, Request&)> filter);
  std::unique_ptr<detail::AppState> state_;
};

}  // namespace spry
