#pragma once
// One event loop's shared state: the libuv loop, the cross-thread post queue,
// user timers, the Date cache and the read buffer every connection reads into.

#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "http/http_writer.h"
#include "spry/loop.h"

namespace spry::detail {

class LoopContext;
class CompressionPool;

// A timeout option in libuv milliseconds; 0 (also for negative) means none.
inline std::uint64_t msOf(std::chrono::milliseconds d) noexcept {
  return d.count() > 0 ? static_cast<std::uint64_t>(d.count()) : 0;
}

// Logs "spry: <what> threw: <detail><consequence>" (detail null: not a
// std::exception). Never throws.
void logThrow(const char* what, const char* detail, const char* consequence = "") noexcept;

// The one way user code is called from the loop: runs fn, logs what it
// throws (with the consequence the caller draws) and returns false then.
template <class F>
bool runGuarded(const char* what, F&& fn, const char* consequence = "") noexcept {
  try {
    fn();
    return true;
  } catch (const std::exception& e) {
    logThrow(what, e.what(), consequence);
  } catch (...) {
    logThrow(what, nullptr, consequence);
  }
  return false;
}

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
  // Where TLS decrypts what came into readBuffer() (the ciphertext must stay
  // put while it is read).
  std::span<char> plainBuffer() noexcept { return plainBuffer_; }
  // For bytes built and copied into a transport at once (a response head).
  std::string& scratch() noexcept { return scratch_; }
  // The loop's zlib streams and buffers (permessage-deflate); the streams
  // are made on first use.
  CompressionPool& compression() noexcept;
  // Gives the pooled streams back (an idle sweep); made again when needed.
  void trimCompression() noexcept;
  // The buffer of the last message a coroutine pulled (WebSocket::next),
  // reused for the next one when nobody holds it any more: a pulled message
  // costs one copy and, most of the time, no allocation.
  std::shared_ptr<char[]>& pulledSpare() noexcept { return pulledSpare_; }
  std::size_t& pulledSpareSize() noexcept { return pulledSpareSize_; }
  // Coroutines the framework started that are still running (CoroutineRoot).
  void addRoot(CoroutineRoot* root) noexcept;
  void removeRoot(CoroutineRoot* root) noexcept;
  std::size_t rootCount() const noexcept { return rootCount_; }
  // Destroys every one (the app stops): their frames are never resumed.
  void destroyRoots() noexcept;

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
  std::string plainBuffer_;
  std::string scratch_;
  std::unique_ptr<CompressionPool> compression_;
  std::shared_ptr<char[]> pulledSpare_;
  std::size_t pulledSpareSize_ = 0;
  CoroutineRoot* roots_ = nullptr;
  std::size_t rootCount_ = 0;
};

}  // namespace spry::detail
