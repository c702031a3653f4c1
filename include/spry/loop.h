#pragma once
/// The event loop a connection lives on: timers, posting work, thread pool.

#include <chrono>
#include <coroutine>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "spry/task.h"

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
class Loop;

namespace detail {
// Throws std::logic_error naming `what` unless called on `loop`'s thread.
void requireLoopThread(const Loop& loop, const char* what);

// co_await loop.sleep(d)
class SleepAwaiter {
 public:
  SleepAwaiter(std::shared_ptr<LoopContext> ctx, std::chrono::milliseconds delay) noexcept
      : ctx_(std::move(ctx)), delay_(delay) {}
  SleepAwaiter(SleepAwaiter&& other) noexcept = default;
  SleepAwaiter& operator=(SleepAwaiter&&) = delete;
  ~SleepAwaiter();  // a frame destroyed while asleep: the timer is cancelled
  bool await_ready() const;
  void await_suspend(std::coroutine_handle<> h);
  void await_resume() const noexcept {}

 private:
  std::shared_ptr<LoopContext> ctx_;
  std::chrono::milliseconds delay_;
  Timer timer_;
};

// The state a thread-pool job shares with the coroutine awaiting it.
template <class R>
struct WorkState {
  std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> value;
  std::exception_ptr error;
  std::coroutine_handle<> waiter;  // reset when the awaiting frame is destroyed
};
}  // namespace detail

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
  /// `co_await loop.sleep(d)`: resumes the coroutine on this loop after `d`
  /// (d <= 0: on its next turn, a yield). Await it on this loop's thread, else
  /// std::logic_error. When the app stops first, the coroutine's frame is
  /// destroyed instead of resumed.
  detail::SleepAwaiter sleep(std::chrono::milliseconds d) const;
  /// `co_await loop.work(fn)`: runs `fn` on libuv's thread pool and resumes
  /// the coroutine on this loop with what it returned, or rethrows what it
  /// threw. `fn` must not touch sockets or loop state. Await it on this
  /// loop's thread, else std::logic_error.
  template <class F>
  auto work(F&& fn) const;
  /// Starts `task` on this loop (at once on the loop's thread, else posted):
  /// it runs to its end on its own; an exception that escapes it is logged.
  /// Thread-safe; false when the loop has stopped (the task is dropped).
  bool spawn(Task<> task) const;
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

namespace detail {
template <class Fn, class R = std::invoke_result_t<Fn&>>
class WorkAwaiter {
 public:
  template <class F>
  WorkAwaiter(Loop loop, F&& fn)
      : loop_(std::move(loop)),
        fn_(std::make_shared<Fn>(std::forward<F>(fn))),
        state_(std::make_shared<WorkState<R>>()) {}
  WorkAwaiter(WorkAwaiter&&) noexcept = default;
  WorkAwaiter& operator=(WorkAwaiter&&) = delete;
  ~WorkAwaiter() {
    if (state_) state_->waiter = {};
  }
  bool await_ready() const {
    requireLoopThread(loop_, "Loop::work");
    return false;
  }
  void await_suspend(std::coroutine_handle<> h) {
    state_->waiter = h;
    try {
      loop_.queueWork(
          [s = state_, fn = fn_] {
            try {
              if constexpr (std::is_void_v<R>) {
                (*fn)();
                s->value.emplace(true);
              } else {
                s->value.emplace((*fn)());
              }
            } catch (...) {
              s->error = std::current_exception();
            }
          },
          [s = state_] {
            if (auto waiter = std::exchange(s->waiter, {})) waiter.resume();
          });
    } catch (...) {
      state_->waiter = {};
      throw;  // resumes the coroutine with the error
    }
  }
  R await_resume() {
    if (state_->error) std::rethrow_exception(state_->error);
    if constexpr (!std::is_void_v<R>) return std::move(*state_->value);
  }

 private:
  Loop loop_;
  std::shared_ptr<Fn> fn_;  // shared: std::function needs a copyable job
  std::shared_ptr<WorkState<R>> state_;
};
}  // namespace detail

template <class F>
auto Loop::work(F&& fn) const {
  return detail::WorkAwaiter<std::decay_t<F>>(*this, std::forward<F>(fn));
}

}  // namespace spry
