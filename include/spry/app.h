#pragma once
/// The application: routes, groups, middleware, exception filters, listen.

#include <chrono>
#include <cstddef>
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
#include "spry/task.h"
#include "spry/websocket.h"

struct uv_loop_s;

namespace spry {

namespace detail {
struct AppState;
struct GroupNode;
struct Chain;
}  // namespace detail

class Middleware;

/// Continues the middleware onion: calls the next middleware or the handler
/// and returns its response, which the caller may change before returning it.
/// A copy stays valid while the request does (a coroutine middleware may
/// call it after suspending). When what is next suspends (a coroutine), the
/// result is a placeholder (Response::isDeferred()): a coroutine middleware
/// gets the final response with `co_await next()` (or catches what the
/// handler throws, even later); a synchronous middleware gets the
/// placeholder: headers it sets on it are added to the final response, but
/// it cannot see the final status or body, nor catch a later throw.
class Next {
 public:
  Response operator()() const;

 private:
  friend struct detail::Chain;
  Next(const std::vector<const Middleware*>* middleware,
       const std::function<Response(Request&)>* terminal, Request* req, std::size_t index) noexcept
      : middleware_(middleware), terminal_(terminal), req_(req), index_(index) {}
  const std::vector<const Middleware*>* middleware_;
  const std::function<Response(Request&)>* terminal_;
  Request* req_;
  std::size_t index_;
};

/// A request handler after its return value has been turned into a Response.
using Handler = std::function<Response(Request&)>;

namespace detail {
template <class T>
inline constexpr bool kAlwaysFalse = false;

// Copies the request's views (see Request: a coroutine's request stays valid
// until its response is sent).
void ownRequest(Request& req);

// A handler's or middleware's task that suspended: its loop owns it until it
// ends, then its answer completes the request's pending level it stands for
// (see Response::isDeferred).
class PendingTask : public CoroutineRoot {
 public:
  void finished() noexcept final;

 protected:
  explicit PendingTask(Request& req);  // registers with the request's loop
  // The placeholder for this task's answer (once, after adopting the task).
  Response pending();
  // The task's value as a Response, or what it threw.
  virtual Response result() = 0;

 private:
  Request* req_;
  std::shared_ptr<DeferredState> state_;
  std::uint32_t level_ = 0;
};

// A handler's Task<X> from its first suspension on.
template <class X>
class HandlerTask final : public PendingTask {
 public:
  HandlerTask(Request& req, Task<X>&& task) : PendingTask(req), task_(std::move(task)) {
    TaskAccess::adopt(task_, this);
  }
  using PendingTask::pending;

 private:
  Response result() override;
  Task<X> task_;
};

// A coroutine middleware: made before the call, so that the Next the
// coroutine keeps a reference to lives as long as it does.
class MiddlewareTask final : public PendingTask {
 public:
  MiddlewareTask(Request& req, const Next& next) : PendingTask(req), next_(next) {}
  const Next& next() const noexcept { return next_; }
  Response suspend(Task<Response>&& task) {
    task_ = std::move(task);
    TaskAccess::adopt(task_, this);
    return pending();
  }

 private:
  Response result() override { return TaskAccess::take(task_); }
  Next next_;
  Task<Response> task_;
};

template <class F>
Response runMiddlewareTask(F& fn, Request& req, const Next& next) {
  ownRequest(req);
  auto root = std::make_unique<MiddlewareTask>(req, next);
  Task<Response> task = fn(req, root->next());
  if (TaskAccess::start(task)) return TaskAccess::take(task);
  Response placeholder = root->suspend(std::move(task));
  static_cast<void>(root.release());  // its loop owns it now
  return placeholder;
}
}  // namespace detail

/// Middleware: `(Request&, const Next&) -> Response` returns next() (possibly
/// changed) to go on, or a Response (or throws) to short-circuit. A
/// coroutine middleware, `-> spry::Task<spry::Response>`, may
/// `co_await next()` for the final response (see Next). Synchronous and
/// coroutine middleware mix in any order. Lambda captures die at a
/// coroutine's first suspension (C++ Core Guidelines CP.51): keep what the
/// coroutine needs in its parameters or locals.
class Middleware {
 public:
  using Function = std::function<Response(Request&, const Next&)>;
  Middleware() = default;
  Middleware(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor): empty
  /// A synchronous or coroutine middleware (an empty std::function or null
  /// function pointer makes an empty Middleware).
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, Middleware> &&
           (std::is_convertible_v<std::invoke_result_t<std::decay_t<F>&, Request&, const Next&>,
                                  Response> ||
            std::is_same_v<std::invoke_result_t<std::decay_t<F>&, Request&, const Next&>,
                           Task<Response>>))
      Middleware(F&& fn) {  // NOLINT(google-explicit-constructor): app.use(lambda), group lists
    using R = std::invoke_result_t<std::decay_t<F>&, Request&, const Next&>;
    if constexpr (std::is_same_v<R, Task<Response>>) {
      fn_ = [f = std::forward<F>(fn)](Request& req, const Next& next) mutable -> Response {
        return detail::runMiddlewareTask(f, req, next);
      };
    } else {
      fn_ = std::forward<F>(fn);
    }
  }
  /// False when empty.
  explicit operator bool() const noexcept { return static_cast<bool>(fn_); }
  /// Runs it (throws std::bad_function_call when empty).
  Response operator()(Request& req, const Next& next) const { return fn_(req, next); }

 private:
  Function fn_;
};

/// A ws route handler: set up listeners on `ws`; `req` is valid during the call.
using WebSocketHandler = std::function<void(WebSocket ws, Request& req)>;

namespace detail {
// Turns what a handler returned into a Response: text, bytes, JSON, a
// Response, a Deferred, or nothing (204 No Content).
// Inlined: it is on every request's path, and once Response carried a
// pending state GCC stopped inlining it (+42 instructions per request).
template <class R>
[[gnu::always_inline]] inline Response toResponse(R&& value) {
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

template <class X>
Response HandlerTask<X>::result() {
  if constexpr (std::is_void_v<X>) {
    TaskAccess::take(task_);
    return Response(204);
  } else {
    return toResponse(TaskAccess::take(task_));
  }
}

// A handler as stored. A coroutine handler (returning Task<X>) runs until it
// first suspends; then a HandlerTask owns it and the chain gets a placeholder.
// The request is copied (own) before it starts, so that every view the
// coroutine takes from it, at any time, stays valid until the response is sent.
template <class F>
Handler wrapHandler(F&& fn) {
  return [fn = std::forward<F>(fn)](Request& req) mutable -> Response {
    using R = std::invoke_result_t<F&, Request&>;
    if constexpr (kIsTask<R>) {
      using X = typename TaskValue<R>::type;
      ownRequest(req);
      R task = fn(req);
      if (TaskAccess::start(task)) {
        if constexpr (std::is_void_v<X>) {
          TaskAccess::take(task);
          return Response(204);
        } else {
          return toResponse(TaskAccess::take(task));
        }
      }
      auto root = std::make_unique<HandlerTask<X>>(req, std::move(task));
      Response placeholder = root->pending();
      static_cast<void>(root.release());  // its loop owns it now
      return placeholder;
    } else if constexpr (std::is_void_v<R>) {
      fn(req);
      return Response(204);
    } else {
      return toResponse(fn(req));
    }
  };
}
// A ws route handler as stored: a coroutine handler (returning Task<>) is
// started by startWebSocketTask, which owns it from its first suspension.
template <class F>
WebSocketHandler wrapWebSocketHandler(F&& fn) {
  using R = std::invoke_result_t<std::decay_t<F>&, WebSocket, Request&>;
  if constexpr (std::is_same_v<R, Task<>>) {
    return [fn = std::forward<F>(fn)](WebSocket ws, Request& req) mutable {
      startWebSocketTask(ws, fn(ws, req));
    };
  } else if constexpr (kIsTask<R>) {
    static_assert(kAlwaysFalse<R>, "spry: a ws coroutine handler must return spry::Task<> (void)");
  } else if constexpr (!std::is_void_v<R>) {
    static_assert(kAlwaysFalse<R>, "spry: a ws handler must return void or spry::Task<>");
  } else {
    return WebSocketHandler(std::forward<F>(fn));
  }
}
}  // namespace detail

class Group;

/// Route registration shared by App and Group. Registration happens before
/// listen(); it throws std::invalid_argument for a bad pattern or a duplicate
/// route, and std::logic_error once the app is listening.
///
/// A handler returns text (std::string, const char*), nlohmann::json, bytes,
/// a Response, a Deferred or nothing (204), or `spry::Task<X>` of any of
/// these: a coroutine, run at once until it first suspends (`co_await
/// req.loop().sleep(...)`, `loop().work(...)`), then answered when it ends.
/// What it throws, even later, goes through the exception filters. Its
/// Request stays valid until the response is sent (see Request); lambda
/// captures die at the first suspension (C++ Core Guidelines CP.51). If the
/// client leaves, the coroutine still runs to its end (Request::isAborted
/// tells it) and its answer is discarded; when the app stops, its frame is
/// destroyed without being resumed.
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
  /// The handler is called as `handler(WebSocket ws, Request& req)` and
  /// returns void (set up listen/onClose...) or `spry::Task<>` (a coroutine:
  /// `co_await ws.next()`; see WebSocket::next). A coroutine's `req` is valid
  /// until its first suspension; `ws` is a parameter by value, safe throughout.
  template <class F>
  Routes& ws(std::string_view path, F&& handler, WebSocketOptions options = {}) {
    return addWebSocket(path, detail::wrapWebSocketHandler(std::forward<F>(handler)),
                        std::move(options));
  }

  /// Adds middleware to this group (or, on the App, globally). It applies to
  /// every route of the group, also those registered before.
  Routes& use(Middleware middleware);
  /// A sub-group: `prefix` is joined to this group's path; its middleware runs
  /// inside this group's.
  Group group(std::string_view prefix, std::vector<Middleware> middleware = {});

 protected:
  Routes(detail::AppState* app, detail::GroupNode* node) noexcept : app_(app), node_(node) {}
  Routes& add(std::string_view method, std::string_view path, Handler handler);
  Routes& addWebSocket(std::string_view path, WebSocketHandler handler, WebSocketOptions options);

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
