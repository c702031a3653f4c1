#pragma once
/// The event loop a connection lives on: timers, posting work, thread pool.

#include <chrono>
#include <functional>
#include <memory>

struct uv_loop_s;

namespace spry {

namespace detail {
class LoopContext;
struct TimerState;
}  // namespace detail

/// A timer started by Loop::setTimeout or setInterval. Copyable; dropping
/// every copy does not stop the timer.
class Timer {
 public:
  Timer() = default;
  /// Stops the timer; its callback will not run again. A no-op when it already
  /// fired (timeout), was cancelled, or its loop has stopped. Loop thread only.
  void cancel();
  /// True while the callback may still run.
  bool isActive() const noexcept;

 private:
  friend class Loop;
  friend class detail::LoopContext;
  explicit Timer(std::shared_ptr<detail::TimerState> state) : state_(std::move(state)) {}
  std::shared_ptr<detail::TimerState> state_;
};

/// A handle to one of spry's event loops. Cheap to copy. Methods run on the
/// loop's thread unless marked thread-safe; a callback that throws is logged
/// and does not stop the loop.
class Loop {
 public:
  /// An empty handle: post() returns false, timers never fire.
  Loop() = default;
  /// Runs `fn` on the loop's thread, after the current callback. Thread-safe;
  /// returns false (and drops `fn`) when the loop has stopped.
  bool post(std::function<void()> fn) const;
  /// Calls `fn` once after `delay`.
  Timer setTimeout(std::chrono::milliseconds delay, std::function<void()> fn) const;
  /// Calls `fn` every `period` until cancelled or the loop stops.
  Timer setInterval(std::chrono::milliseconds period, std::function<void()> fn) const;
  /// Runs `work` on libuv's thread pool, then `done` on the loop's thread.
  /// `work` must not touch sockets; exceptions from it are logged.
  void queueWork(std::function<void()> work, std::function<void()> done) const;
  /// True when called on this loop's thread. Thread-safe.
  bool isCurrentThread() const noexcept;
  /// The libuv loop, for embedding other libuv handles. Loop thread only.
  uv_loop_s* raw() const noexcept;

  bool operator==(const Loop& other) const noexcept { return ctx_ == other.ctx_; }

 private:
  friend class detail::LoopContext;
  explicit Loop(std::shared_ptr<detail::LoopContext> ctx) noexcept : ctx_(std::move(ctx)) {}
  std::shared_ptr<detail::LoopContext> ctx_;
};

}  // namespace spry
