#pragma once
/// HTTP responses: what a handler or middleware returns.

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "spry/headers.h"

namespace spry {

namespace detail {
struct StreamState;
struct DeferredState;
struct PendingLevels;
}  // namespace detail

/// Writes a streamed (chunked) response body. Copyable; every copy refers to
/// the same stream. Loop thread only. After end(), or once the client is gone,
/// writes are ignored and return false.
class BodyWriter {
 public:
  /// Queues `data`. Returns false when the connection's buffer is over the
  /// high-water mark (wait for onDrain before writing more) or the stream is closed.
  bool write(std::string_view data) const;
  /// Ends the body (sends the last chunk).
  void end() const;
  /// Called once each time the buffer drains below the high-water mark after a
  /// write returned false. Replaces the previous callback.
  void onDrain(std::function<void()> fn) const;
  /// Called once if the client goes away before end().
  void onAbort(std::function<void()> fn) const;
  /// True while writes can still reach the client.
  bool isOpen() const noexcept;
  /// Bytes queued and not yet written to the socket.
  std::size_t bufferedAmount() const noexcept;

 private:
  friend struct detail::StreamState;
  explicit BodyWriter(std::shared_ptr<detail::StreamState> s) : state_(std::move(s)) {}
  std::shared_ptr<detail::StreamState> state_;
};

/// Status, headers and a body (bytes, a stream, or "later" for deferred answers).
class Response {
 public:
  /// Called once, after the head is sent, with the writer of a streamed body.
  using StreamProducer = std::function<void(BodyWriter)>;

  /// An empty response with `status` (200 by default).
  explicit Response(int status = 200) : status_(status) {}

  /// text/plain; charset=utf-8
  static Response text(std::string body, int status = 200);
  /// text/html; charset=utf-8
  static Response html(std::string body, int status = 200);
  /// application/json (nlohmann::json)
  static Response json(const nlohmann::json& body, int status = 200);
  /// application/octet-stream unless `contentType` says otherwise.
  static Response bytes(std::string body, std::string_view contentType = "application/octet-stream",
                        int status = 200);
  static Response bytes(std::span<const std::byte> body,
                        std::string_view contentType = "application/octet-stream",
                        int status = 200);
  /// A redirect to `location` (302 by default; 301, 303, 307 and 308 also valid).
  static Response redirect(std::string location, int status = 302);
  /// A chunked body written by `producer` with backpressure (see BodyWriter).
  static Response stream(StreamProducer producer,
                         std::string_view contentType = "application/octet-stream",
                         int status = 200);

  int status() const noexcept { return status_; }
  /// Throws std::invalid_argument outside 100..599.
  Response& setStatus(int status);
  Headers& headers() {
    materialize();
    return headers_;
  }
  const Headers& headers() const {
    materialize();
    return headers_;
  }
  /// Sets (replaces) one header; the views are copied.
  Response& header(std::string_view name, std::string_view value);
  const std::string& body() const noexcept { return body_; }
  Response& setBody(std::string body);

  bool isStream() const noexcept { return producer_ != nullptr; }
  /// True for a placeholder: the answer comes later (a Deferred, or a
  /// coroutine handler or middleware that suspended). `co_await` it in a
  /// coroutine to get the final response.
  bool isDeferred() const noexcept { return pending_ != nullptr; }

 private:
  friend class Deferred;
  friend struct ResponseAccess;
  friend struct detail::PendingLevels;
  // `libraryType`: empty, or one of the library's own Content-Type values
  // (kept aside until someone looks at the header list; see contentType_).
  Response(int status, std::string&& body, std::string_view libraryType) noexcept
      : status_(status), contentType_(libraryType), body_(std::move(body)) {}
  // Moves a pending library content type into the header list.
  void materialize() const;
  int status_;
  // A placeholder's answer: level `level_` of the request's pending answers
  // (0: its Deferred; others: suspended coroutines). Beside status_: padding.
  std::uint32_t level_ = 0;
  // The header list, and the Content-Type that text(), html() and json() set
  // while nobody has looked at the list: most responses are written without
  // it ever being copied into the list. It views one of the library's
  // values, which sit inside whole header lines the writer copies as is.
  mutable Headers headers_;
  mutable std::string_view contentType_;
  std::string body_;
  StreamProducer producer_;
  std::shared_ptr<detail::DeferredState> pending_;  // null: not a placeholder
};

/// What `co_await response` does (see operator co_await below). Lives in the
/// awaiting coroutine's frame; destroying that frame while it waits is safe.
class [[nodiscard]] ResponseAwaiter {
 public:
  explicit ResponseAwaiter(Response&& response) noexcept : response_(std::move(response)) {}
  ResponseAwaiter(const ResponseAwaiter&) = delete;
  ResponseAwaiter& operator=(const ResponseAwaiter&) = delete;
  ~ResponseAwaiter();
  /// Throws std::logic_error when the placeholder is awaited twice.
  bool await_ready() { return !response_.isDeferred() || readyPending(); }
  void await_suspend(std::coroutine_handle<> awaiting) noexcept;
  Response await_resume() {
    if (error_) std::rethrow_exception(error_);
    return std::move(response_);
  }

 private:
  friend struct detail::PendingLevels;
  bool readyPending();
  // The placeholder's own headers go onto `final` unless it sets them.
  void take(Response&& final);
  Response response_;  // the placeholder, then the final response
  std::exception_ptr error_;
  std::coroutine_handle<> awaiting_;
};

/// `co_await next()` (or any Response) in a coroutine: a complete response is
/// ready at once; a placeholder (see Response::isDeferred) suspends until its
/// answer exists, then resumes with the final response (the placeholder's
/// headers added unless it sets them) or rethrows what the handler threw.
/// Loop thread only.
inline ResponseAwaiter operator co_await(Response&& response) noexcept {
  return ResponseAwaiter(std::move(response));
}

/// A response that will be sent later: from req.defer(). Return it from the
/// handler, then call send() once (from a timer, a thread-pool completion,
/// another socket's callback...). Headers that middleware set on the returned
/// placeholder are added to the final response unless it sets them itself.
/// The request stays valid until send(). Copyable.
class Deferred {
 public:
  /// Sends the response. Loop thread only. Returns false when already sent or
  /// the client has gone away (nothing is sent then).
  bool send(Response response) const;
  /// True until send() or the client goes away.
  bool isPending() const noexcept;
  /// A placeholder Response meaning "answered later".
  operator Response() const;  // NOLINT(google-explicit-constructor): handlers return it

 private:
  friend class Request;
  explicit Deferred(std::shared_ptr<detail::DeferredState> s) : state_(std::move(s)) {}
  std::shared_ptr<detail::DeferredState> state_;
};

}  // namespace spry
