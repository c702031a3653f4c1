#pragma once
// The coroutine side of one WebSocket (WebSocket::next, drain, closed, and
// the Task of a coroutine handler), made on first need so that a callback
// socket pays nothing for it. The endpoint reaches it through a small
// forwarder stored in its listen slot (onMessage_) while no listener is set,
// else through its cold state.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "spry/message.h"
#include "spry/websocket.h"

namespace spry::detail {

class WebSocketEndpoint;
class LoopContext;

class PullState {
 public:
  PullState() = default;
  PullState(const PullState&) = delete;
  PullState& operator=(const PullState&) = delete;
  // Waiters still linked are let go: their frames are never resumed (the
  // loop destroys them), and their destructors no longer touch this.
  ~PullState();

  // A message with no listener: to the waiting next() (resumed inline),
  // else queued and reading paused, else (nobody pulls) dropped.
  void deliver(WebSocketEndpoint& e, const Message& message);
  // The socket closed: queued messages stay for next(); a waiting next()
  // gets nullopt, closed() the close info, drain() its resumption.
  void notifyClosed(std::uint16_t code, std::string_view reason) noexcept;
  // The send buffer drained: drain() waiters resume while at or below the mark.
  void notifyDrained(WebSocketEndpoint& e) noexcept;

  static bool awaitNext(WebSocketEndpoint& e, NextAwaiter& w);
  // A copy of a received message that owns its bytes: in the loop's spare
  // buffer when nobody holds that any more, else in a new one.
  static Message own(LoopContext& loop, const Message& message);
  static bool awaitDrain(WebSocketEndpoint& e, DrainAwaiter& w);
  // bufferedAmount() at or below half of maxBackpressureBytes (drain()'s mark).
  static bool belowLowWater(const WebSocketEndpoint& e) noexcept;
  // next() and drain() awaited by the coroutine this socket's delivery is
  // running (the common case: an echo loop) know the socket is alive and on
  // this thread: neither lock nor thread check (see Delivery in the .cpp).
  static bool awaitClosed(WebSocketEndpoint& e, ClosedAwaiter& w);
  // A coroutine handler suspended for the first time.
  static void bufferForHandler(WebSocketEndpoint& e);
  static std::shared_ptr<WebSocketEndpoint> endpointOf(const WebSocket& ws) noexcept {
    return ws.endpoint_.lock();
  }
  static const std::weak_ptr<WebSocketEndpoint>& weakOf(const WebSocket& ws) noexcept {
    return ws.endpoint_;
  }

  bool idle() const noexcept { return !next_ && !drain_ && !closed_ && !notifying_; }
  bool holdsReading() const noexcept { return readHeld_; }
  bool pulling() const noexcept { return pulling_; }
  // The queued messages, oldest first; the queue is empty after.
  std::vector<Message> takeQueue();
  void unlink(PullWaiter& w) noexcept;
  void detach(NextAwaiter& w) noexcept {
    if (next_ == &w) next_ = nullptr;
  }

  // Undelivered messages are queued (a coroutine handler, or next() was
  // awaited), not dropped.
  bool buffering_ = false;
  bool readHeld_ = false;  // we paused reading: a message is queued, nobody waits

 private:
  void link(PullWaiter*& head, PullWaiter& w) noexcept;
  friend class NextAwaiter;
  Message pop() noexcept;
  void resumeNext(NextAwaiter* w) noexcept;

  NextAwaiter* next_ = nullptr;
  PullWaiter* drain_ = nullptr;
  PullWaiter* closed_ = nullptr;
  // Messages read before anyone pulled them, oldest at head_; null when empty.
  std::unique_ptr<std::vector<Message>> queue_;
  std::uint32_t head_ = 0;
  bool pulling_ = false;    // next() was awaited: listen() is a misuse from now on
  bool notifying_ = false;  // resuming waiters: not to be freed under them
};

// The endpoint's listen slot while it pulls: trivially copyable and small,
// so std::function stores it inline (no allocation).
struct PullForward {
  PullState* pull;
  WebSocketEndpoint* endpoint;
  void operator()(const Message& message) const { pull->deliver(*endpoint, message); }
};

}  // namespace spry::detail
