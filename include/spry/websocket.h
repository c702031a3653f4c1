#pragma once
/// The WebSocket handle given to ws route handlers.

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <typeinfo>

#include "spry/loop.h"
#include "spry/message.h"
#include "spry/task.h"

namespace spry {

namespace detail {
class Connection;
class WebSocketEndpoint;
class PullState;
class NextAwaiter;
class DrainAwaiter;
class ClosedAwaiter;
}  // namespace detail

/// How a socket closed: the code and reason onClose got (see WebSocket::onClose).
struct CloseInfo {
  std::uint16_t code = 0;
  std::string reason;
};

/// RFC 6455 socket states, as in the browser API.
enum class ReadyState { kConnecting, kOpen, kClosing, kClosed };

/// Per-message choices for WebSocket::add.
struct SendOptions {
  /// false: send this message uncompressed even when permessage-deflate was
  /// negotiated (already-compressed media, tiny acks).
  bool compress = true;
};

/// A small copyable handle to one WebSocket. Safe to keep anywhere (callbacks,
/// timers, room tables): it never keeps a closed connection alive, and after
/// close every call is a no-op that returns false (or an empty value).
///
/// Threads: add(), close(), ping() and publish() may be called from any thread:
/// off the socket's loop they are posted to it, keep their order, return true
/// when posted, and do nothing if the socket has closed meanwhile. Every other
/// call belongs on the socket's loop (see loop()) and throws std::logic_error
/// elsewhere. Callbacks always run on the socket's loop.
/// An exception thrown by any callback set here closes this socket with 1011.
class WebSocket {
 public:
  /// An empty handle: every call is a no-op.
  WebSocket() = default;

  /// Receives every message, in order. The message views the socket's buffer:
  /// valid during the call; use Message::owned() to keep one.
  bool listen(std::function<void(const Message&)> onMessage) const;
  /// `co_await ws.next()`: the next message, owning its payload, or nullopt
  /// once the socket has closed (messages already read come first). While no
  /// next() is awaited the socket stops reading once a message is buffered, so
  /// a slow coroutine slows its client down. A message for a waiting next()
  /// resumes the coroutine inline, from the read (sending only queues, so
  /// add() there is safe). Await it on the socket's loop, from one coroutine
  /// at a time, on a socket without listen(): else std::logic_error.
  /// Await it in the expression that calls it (`co_await ws.next()`): the
  /// awaiter refers to this handle.
  detail::NextAwaiter next() const&;
  detail::NextAwaiter next() const&&;  // a temporary handle: the awaiter keeps a copy
  /// `co_await ws.drain()`: resumes once bufferedAmount() is at or below
  /// maxBackpressureBytes / 2; at once when it already is or the socket is
  /// not open (then add() returns false). On the socket's loop only.
  detail::DrainAwaiter drain() const&;
  detail::DrainAwaiter drain() const&&;
  /// `co_await ws.closed()`: resumes once the socket has closed (after
  /// onClose ran) with the code and reason onClose got; at once when closed
  /// already (code 0 for an empty handle or a socket whose connection is
  /// gone). Any number of coroutines may await it. On the socket's loop only.
  detail::ClosedAwaiter closed() const&;
  detail::ClosedAwaiter closed() const&&;

  /// Called exactly once when the socket closes: the peer's close code and
  /// reason; the code we sent when we failed the connection (1002, 1007, 1008,
  /// 1009, 1011); 1006 when TCP ended without a close handshake.
  bool onClose(std::function<void(std::uint16_t code, std::string_view reason)> fn) const;
  /// Called when the send buffer has drained after bufferedAmount() passed
  /// maxBackpressureBytes or add() returned false.
  bool onDrain(std::function<void()> fn) const;

  /// Sends a message (text or binary, as `message` says). Returns false when
  /// the socket is not open, or when the message was dropped (kDrop policy).
  bool add(const Message& message) const;
  /// As add(message), with per-message options (`{.compress = false}`).
  bool add(const Message& message, SendOptions options) const;
  /// Sends a text message (must be UTF-8, else std::invalid_argument).
  bool add(std::string_view text) const;
  bool add(const char* text) const { return add(std::string_view(text)); }
  /// Sends a binary message.
  bool add(std::span<const std::byte> bytes) const;
  /// Sends every message `next` yields, in order, pulling only while the send
  /// buffer is below maxBackpressureBytes / 2; `next` returns nullopt at the
  /// end, then `done` runs. Stops when the socket closes. One stream at a
  /// time: a second call before the first ends throws std::logic_error.
  bool addStream(std::function<std::optional<Message>()> next,
                 std::function<void()> done = {}) const;
  /// Starts the close handshake. Throws std::invalid_argument for a code that
  /// may not be sent (1004-1006, 1015, <1000, 1016-2999, >4999) or a reason
  /// over 123 bytes or not UTF-8. Returns false when already closing or closed.
  bool close(std::uint16_t code = 1000, std::string_view reason = {}) const;
  /// Sends a Ping (payload of at most 125 bytes, else std::invalid_argument).
  bool ping(std::string_view payload = {}) const;

  /// Subscribes this socket to `topic`; false when already subscribed or not
  /// open. A closed socket leaves all its topics by itself.
  bool subscribe(std::string_view topic) const;
  /// False when it was not subscribed.
  bool unsubscribe(std::string_view topic) const;
  bool isSubscribed(std::string_view topic) const;
  /// Sends `message` to every other subscriber of `topic`, on every loop of
  /// the app, framed once. Messages of one publisher to one topic arrive in
  /// order. A subscriber over maxBackpressureBytes drops it (kDrop) or is
  /// closed with 1008 (kPauseReading, kClose).
  bool publish(std::string_view topic, const Message& message) const;

  ReadyState readyState() const noexcept;
  bool isOpen() const noexcept { return readyState() == ReadyState::kOpen; }
  /// The code reported to onClose, once closed.
  std::optional<std::uint16_t> closeCode() const noexcept;
  /// The reason reported to onClose, once closed.
  std::string closeReason() const;
  /// The subprotocol agreed in the handshake, empty when none.
  std::string protocol() const;
  /// Bytes queued and not yet written to the socket.
  std::size_t bufferedAmount() const noexcept;
  /// The peer's address.
  std::string remoteAddress() const;
  /// The loop this socket lives on. Thread-safe.
  Loop loop() const;
  /// A per-process unique id (0 for an empty handle). Thread-safe.
  std::uint64_t id() const noexcept { return id_; }

  /// Per-socket user data: one value of any type, set by the handler.
  template <class T>
  T& setData(T value) const {
    auto holder = std::make_shared<T>(std::move(value));
    T& ref = *holder;
    putData(typeid(T), std::move(holder));
    return ref;
  }
  /// The user data if it has type T, else nullptr. Still readable in onClose;
  /// released right after it (nullptr from then on).
  template <class T>
  T* data() const noexcept {
    return static_cast<T*>(getData(typeid(T)));
  }

  bool operator==(const WebSocket& other) const noexcept { return id_ == other.id_; }

 private:
  bool sendMessage(const Message& message, SendOptions options) const;
  friend class detail::Connection;
  friend class detail::PullState;
  WebSocket(std::weak_ptr<detail::WebSocketEndpoint> endpoint, std::uint64_t id) noexcept
      : endpoint_(std::move(endpoint)), id_(id) {}
  void putData(const std::type_info& type, std::shared_ptr<void> value) const;
  void* getData(const std::type_info& type) const noexcept;

  std::weak_ptr<detail::WebSocketEndpoint> endpoint_;
  std::uint64_t id_ = 0;
};

namespace detail {

// What an awaiter of a WebSocket reaches its socket through: the awaited
// handle (no reference-count traffic per await), or its own copy when the
// handle was a temporary.
class EndpointRef {
 public:
  explicit EndpointRef(const std::weak_ptr<WebSocketEndpoint>& handle) noexcept : ref_(&handle) {}
  explicit EndpointRef(std::weak_ptr<WebSocketEndpoint>&& copy) noexcept
      : copy_(std::move(copy)), ref_(&copy_) {}
  EndpointRef(EndpointRef&& other) noexcept
      : copy_(std::move(other.copy_)), ref_(other.ref_ == &other.copy_ ? &copy_ : other.ref_) {}
  EndpointRef& operator=(EndpointRef&&) = delete;
  std::shared_ptr<WebSocketEndpoint> lock() const noexcept { return ref_->lock(); }
  // True when this refers to the socket whose ownership `owner` shares
  // (pointer compares, no reference counting).
  template <class P>
  bool sameOwner(const P& owner) const noexcept {
    return !ref_->owner_before(owner) && !owner.owner_before(*ref_);
  }

 private:
  std::weak_ptr<WebSocketEndpoint> copy_;
  const std::weak_ptr<WebSocketEndpoint>* ref_;
};

// A coroutine parked in drain() or closed(): a node of its socket's list.
// Unlinked by whoever resumes it, or by its destructor when its frame is
// destroyed first (app stop), so a destroyed frame is never resumed.
class PullWaiter {
 public:
  PullWaiter() = default;
  PullWaiter(const PullWaiter&) = delete;
  PullWaiter& operator=(const PullWaiter&) = delete;

 protected:
  ~PullWaiter() {
    if (pull_) leave();
  }
  void setHandle(std::coroutine_handle<> h) noexcept { handle_ = h; }

 private:
  friend class PullState;
  void leave() noexcept;
  PullState* pull_ = nullptr;  // set while linked
  PullWaiter* prev_ = nullptr;
  PullWaiter* next_ = nullptr;
  std::coroutine_handle<> handle_;
};

// co_await ws.next()
class NextAwaiter {
 public:
  explicit NextAwaiter(EndpointRef endpoint) noexcept : endpoint_(std::move(endpoint)) {}
  // Only before it is awaited.
  NextAwaiter(NextAwaiter&& other) noexcept : endpoint_(std::move(other.endpoint_)) {}
  NextAwaiter& operator=(NextAwaiter&&) = delete;
  ~NextAwaiter() {
    if (pull_) leave();
  }
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) noexcept { handle_ = h; }
  std::optional<Message> await_resume() noexcept { return std::move(result_); }

 private:
  friend class PullState;
  void leave() noexcept;
  EndpointRef endpoint_;
  PullState* pull_ = nullptr;  // set while it waits for a message
  std::coroutine_handle<> handle_;
  std::optional<Message> result_;
};

// co_await ws.drain()
class DrainAwaiter : private PullWaiter {
 public:
  explicit DrainAwaiter(EndpointRef endpoint) noexcept : endpoint_(std::move(endpoint)) {}
  DrainAwaiter(DrainAwaiter&& other) noexcept : endpoint_(std::move(other.endpoint_)) {}
  DrainAwaiter& operator=(DrainAwaiter&&) = delete;
  ~DrainAwaiter() = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) noexcept { setHandle(h); }
  void await_resume() const noexcept {}

 private:
  friend class PullState;
  EndpointRef endpoint_;
};

// co_await ws.closed()
class ClosedAwaiter : private PullWaiter {
 public:
  explicit ClosedAwaiter(EndpointRef endpoint) noexcept : endpoint_(std::move(endpoint)) {}
  ClosedAwaiter(ClosedAwaiter&& other) noexcept : endpoint_(std::move(other.endpoint_)) {}
  ClosedAwaiter& operator=(ClosedAwaiter&&) = delete;
  ~ClosedAwaiter() = default;
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) noexcept { setHandle(h); }
  CloseInfo await_resume() noexcept { return std::move(info_); }

 private:
  friend class PullState;
  EndpointRef endpoint_;
  CloseInfo info_;
};

// Runs a ws coroutine handler's task until it first suspends; from then on
// the socket's loop owns it (see WebSocket::next).
void startWebSocketTask(const WebSocket& ws, Task<> task);
}  // namespace detail

inline detail::NextAwaiter WebSocket::next() const& {
  return detail::NextAwaiter(detail::EndpointRef(endpoint_));
}
inline detail::DrainAwaiter WebSocket::drain() const& {
  return detail::DrainAwaiter(detail::EndpointRef(endpoint_));
}

}  // namespace spry

template <>
struct std::hash<spry::WebSocket> {
  std::size_t operator()(const spry::WebSocket& ws) const noexcept {
    return std::hash<std::uint64_t>{}(ws.id());
  }
};
