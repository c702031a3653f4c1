#pragma once
// One event loop's shared state: the libuv loop, the cross-thread post queue,
// user timers, the Date cache and the read buffer every connection reads into.

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "http/http_writer.h"
#include "spry/loop.h"

namespace spry::detail {

class LoopContext;

struct TimerState {
  LoopContext* ctx = nullptr;
  uv_timer_t* handle = nullptr;  // null once closed
  std::function<void()> fn;
  bool repeat = false;
  bool running = false;
  void close() noexcept;
};

class LoopContext : public std::enable_shared_from_this<LoopContext> {
 public:
  // Creates the context on `loop` (must be called on the loop's thread).
  static std::shared_ptr<LoopContext> create(uv_loop_t* loop);
  ~LoopContext();

  uv_loop_t* loop() const noexcept { return loop_; }
  Loop handle() { return Loop(shared_from_this()); }
  bool isCurrentThread() const noexcept { return std::this_thread::get_id() == thread_.load(); }
  // Re-binds to the thread that runs the loop (listen() may start it elsewhere).
  void bindThread() noexcept { thread_.store(std::this_thread::get_id()); }
  // No thread is the loop's until bindThread(): for a loop created on one
  // thread and run on another that has not started yet.
  void unbindThread() noexcept { thread_.store(std::thread::id()); }

  bool post(std::function<void()> fn);
  Timer startTimer(std::chrono::milliseconds delay, std::chrono::milliseconds repeat,
                   std::function<void()> fn);
  void queueWork(std::function<void()> work, std::function<void()> done);
  void cancelTimer(TimerState* timer) noexcept;

  // Closes the async handle and every user timer; post() fails afterwards.
  // The loop can then finish once the servers' handles are closed too.
  void shutdown();
  bool isShutDown() const noexcept { return shutDown_.load(); }

  DateCache& dates() noexcept { return dates_; }
  // One buffer for every read on this loop: a read is consumed (or copied)
  // before the next read callback, so connections need no buffer of their own.
  std::string& readBuffer() noexcept { return readBuffer_; }

  // Runs fn, logging (not propagating) anything it throws: callbacks from C.
  static void runGuarded(const char* what, const std::function<void()>& fn) noexcept;

 private:
  explicit LoopContext(uv_loop_t* loop);
  friend struct TimerState;

  uv_loop_t* loop_;
  std::atomic<std::thread::id> thread_;
  uv_async_t* async_ = nullptr;
  std::mutex mutex_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> shutDown_{false};
  std::unordered_map<TimerState*, std::shared_ptr<TimerState>> timers_;
  DateCache dates_;
  std::string readBuffer_;
};

}  // namespace spry::detail
