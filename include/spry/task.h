#pragma once
/// spry::Task<T>: the coroutine type of handlers, middleware and your own
/// helpers (C++20 coroutines, no threads: a task runs on the loop that
/// resumes it).
#include <coroutine>
#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace spry {

template <class T = void>
class Task;

namespace detail {

class LoopContext;

// A coroutine the framework started (a handler, a middleware, Loop::spawn)
// that outlived the call that started it. Its loop owns it until the task
// ends; when the app stops first, the loop destroys it, and with it every
// frame the task awaits (their awaiters deregister, so nothing resumes a
// destroyed frame).
class CoroutineRoot {
 public:
  CoroutineRoot(const CoroutineRoot&) = delete;
  CoroutineRoot& operator=(const CoroutineRoot&) = delete;
  virtual ~CoroutineRoot();
  // The task reached its end (its promise holds a value or an exception).
  // Called from the task's final suspension point; may delete this (and the
  // task with it).
  virtual void finished() noexcept = 0;

 protected:
  explicit CoroutineRoot(LoopContext& loop) noexcept;  // registers with the loop

 private:
  friend class LoopContext;
  LoopContext* loop_;
  CoroutineRoot* prev_ = nullptr;
  CoroutineRoot* next_ = nullptr;
};

struct PromiseBase {
  // Who awaits this task (symmetric transfer back to it at the end).
  std::coroutine_handle<> continuation;
  // Set instead when the framework owns the task (nobody awaits it).
  CoroutineRoot* root = nullptr;
  std::exception_ptr error;

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
      PromiseBase& p = self.promise();
      if (p.continuation) return p.continuation;
      if (p.root) p.root->finished();  // may destroy `self`: touch nothing after
      return std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

[[noreturn]] inline void throwEmptyTask() {
  throw std::logic_error("spry: co_await on an empty Task (default-constructed or moved from)");
}

template <class T>
struct TaskPromise : PromiseBase {
  std::optional<T> value;
  template <class U = T>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) { value.emplace(std::forward<U>(v)); }
  T take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct TaskPromise<void> : PromiseBase {
  void return_void() const noexcept {}
  void take() const {
    if (error) std::rethrow_exception(error);
  }
};

struct TaskAccess;

}  // namespace detail

/// A lazy coroutine: nothing runs until it is awaited (or a handler's task is
/// started by spry). `co_await task` resumes the awaiting coroutine with its
/// value, or rethrows what it threw. Awaiting a task that is ready continues
/// by symmetric transfer, so long chains of ready awaits use no stack.
/// Move-only; destroying a Task destroys its frame (also a suspended one).
/// Inside, `co_await` accepts any awaitable (std::suspend_never, other
/// libraries' awaiters, spry's: Loop::sleep, Loop::work, WebSocket::next...).
template <class T>
class [[nodiscard]] Task {
  static_assert(!std::is_reference_v<T>, "spry::Task<T&> is not supported: return a pointer");

 public:
  struct promise_type : detail::TaskPromise<T> {
    Task get_return_object() noexcept {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
  };
  using Handle = std::coroutine_handle<promise_type>;

  Task() noexcept = default;
  Task(Task&& other) noexcept : h_(std::exchange(other.h_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (h_) h_.destroy();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  ~Task() {
    if (h_) h_.destroy();
  }

  /// True once the coroutine has run to its end (co_await then continues at once).
  bool isReady() const noexcept { return h_ && h_.done(); }
  /// False for a default-constructed or moved-from Task.
  explicit operator bool() const noexcept { return static_cast<bool>(h_); }

  struct Awaiter {
    Handle h;
    bool await_ready() const noexcept { return !h || h.done(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
      h.promise().continuation = awaiting;
      return h;  // start (or go on with) the task: symmetric transfer
    }
    T await_resume() {
      if (!h) detail::throwEmptyTask();
      return h.promise().take();
    }
  };
  Awaiter operator co_await() && noexcept { return Awaiter{h_}; }
  Awaiter operator co_await() & noexcept { return Awaiter{h_}; }

 private:
  friend struct detail::TaskAccess;
  explicit Task(Handle h) noexcept : h_(h) {}
  Handle h_;
};

namespace detail {

template <class X>
inline constexpr bool kIsTask = false;
template <class U>
inline constexpr bool kIsTask<Task<U>> = true;

template <class X>
struct TaskValue {};
template <class U>
struct TaskValue<Task<U>> {
  using type = U;
};

struct TaskAccess {
  template <class T>
  static typename Task<T>::Handle handle(const Task<T>& t) noexcept {
    return t.h_;
  }
  // Runs the task until it first suspends; true when it ran to its end.
  template <class T>
  static bool start(Task<T>& t) {
    if (!t.h_) throwEmptyTask();
    t.h_.resume();
    return t.h_.done();
  }
  // The value of a finished task, or what it threw.
  template <class T>
  static T take(Task<T>& t) {
    return t.h_.promise().take();
  }
  // From now on the task reports its end to `root` (a suspended task).
  template <class T>
  static void adopt(Task<T>& t, CoroutineRoot* root) noexcept {
    t.h_.promise().root = root;
  }
};

}  // namespace detail
}  // namespace spry
