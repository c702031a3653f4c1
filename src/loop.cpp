#include "loop_context.h"

#include <exception>
#include <stdexcept>
#include <string>

#include "spry/log.h"
#include "ws/permessage_deflate.h"

namespace spry::detail {

namespace {
constexpr std::size_t kReadBufferBytes = 64 * 1024;

struct WorkRequest {
  uv_work_t req;
  std::function<void()> work;
  std::function<void()> done;
};
}  // namespace

void logThrow(const char* what, const char* detail, const char* consequence) noexcept {
  try {
    log(LogLevel::kError, std::string("spry: ") + what + " threw" +
                              (detail ? std::string(": ") + detail : " a non-standard exception") +
                              consequence);
  } catch (...) {
  }
}

std::shared_ptr<LoopContext> LoopContext::create(uv_loop_t* loop) {
  auto ctx = std::shared_ptr<LoopContext>(new LoopContext(loop));
  ctx->async_ = new uv_async_t;
  ctx->async_->data = ctx.get();
  uv_async_init(loop, ctx->async_, [](uv_async_t* a) {
    auto* self = static_cast<LoopContext*>(a->data);
    std::vector<std::function<void()>> batch;
    {
      std::lock_guard lock(self->mutex_);
      batch.swap(self->posted_);
    }
    for (auto& fn : batch) runGuarded("a posted function", fn);
  });
  return ctx;
}

LoopContext::LoopContext(uv_loop_t* loop)
    : loop_(loop),
      thread_(std::this_thread::get_id()),
      compression_(std::make_unique<CompressionPool>()) {
  readBuffer_.resize(kReadBufferBytes);
  plainBuffer_.resize(kReadBufferBytes);
}

LoopContext::~LoopContext() {
  destroyRoots();
}

void LoopContext::addRoot(CoroutineRoot* root) noexcept {
  root->next_ = roots_;
  if (roots_) roots_->prev_ = root;
  roots_ = root;
  ++rootCount_;
}

void LoopContext::removeRoot(CoroutineRoot* root) noexcept {
  if (root->prev_) {
    root->prev_->next_ = root->next_;
  } else if (roots_ == root) {
    roots_ = root->next_;
  } else {
    return;  // not registered
  }
  if (root->next_) root->next_->prev_ = root->prev_;
  root->prev_ = root->next_ = nullptr;
  --rootCount_;
}

void LoopContext::destroyRoots() noexcept {
  // A destroyed frame may finish another root's wait (a middleware awaiting
  // a handler): take them one at a time from the head.
  while (roots_) delete roots_;
}

CoroutineRoot::CoroutineRoot(LoopContext& loop) noexcept : loop_(&loop) {
  loop.addRoot(this);
}

CoroutineRoot::~CoroutineRoot() {
  loop_->removeRoot(this);
}

void requireLoopThread(const Loop& loop, const char* what) {
  if (!loop.isCurrentThread()) {
    throw std::logic_error(std::string("spry: ") + what +
                           " awaited off its loop's thread (from another loop or thread): "
                           "await it in a coroutine running on that loop");
  }
}

SleepAwaiter::~SleepAwaiter() {
  timer_.cancel();
}

bool SleepAwaiter::await_ready() const {
  if (!ctx_ || !ctx_->isCurrentThread()) {
    throw std::logic_error(
        "spry: Loop::sleep awaited off its loop's thread (from another loop or thread): "
        "await it in a coroutine running on that loop");
  }
  return false;
}

void SleepAwaiter::await_suspend(std::coroutine_handle<> h) {
  // libuv counts a timer from the loop's cached time, taken when this loop
  // turn began: from now, so that a sleep is never shorter than asked.
  uv_update_time(ctx_->loop());
  timer_ = ctx_->startTimer(delay_.count() > 0 ? delay_ : std::chrono::milliseconds(0),
                            std::chrono::milliseconds(0), [h] { h.resume(); });
}

namespace {
// A task started by Loop::spawn: nobody awaits it, its loop owns it.
class SpawnedTask final : public CoroutineRoot {
 public:
  SpawnedTask(LoopContext& loop, Task<> task) : CoroutineRoot(loop), task_(std::move(task)) {}
  void start() {
    if (TaskAccess::start(task_)) {
      finished();
      return;
    }
    TaskAccess::adopt(task_, this);
  }
  void finished() noexcept override {
    try {
      TaskAccess::take(task_);
    } catch (const std::exception& e) {
      logThrow("a spawned coroutine", e.what());
    } catch (...) {
      logThrow("a spawned coroutine", nullptr);
    }
    delete this;
  }

 private:
  Task<> task_;
};
}  // namespace

CompressionPool& LoopContext::compression() noexcept {
  return *compression_;
}

void LoopContext::trimCompression() noexcept {
  compression_->trim();
}

bool LoopContext::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mutex_);
    if (shutDown_.load()) return false;
    posted_.push_back(std::move(fn));
    // uv_async_send under the lock: shutdown() closes the handle under it too.
    uv_async_send(async_);
  }
  return true;
}

void LoopContext::shutdown() {
  std::vector<std::function<void()>> leftover;
  {
    std::lock_guard lock(mutex_);
    if (shutDown_.exchange(true)) return;
    leftover.swap(posted_);
    uv_close(reinterpret_cast<uv_handle_t*>(async_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
    async_ = nullptr;
  }
  // Work posted before the stop still runs: it may be a send that should be flushed.
  for (auto& fn : leftover) runGuarded("a posted function", fn);
  auto timers = std::move(timers_);
  for (const auto& [raw, t] : timers) t->close();
  destroyRoots();
}

void TimerState::close() noexcept {
  if (!handle) return;
  uv_timer_stop(handle);
  uv_close(reinterpret_cast<uv_handle_t*>(handle),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  handle = nullptr;
}

Timer LoopContext::startTimer(std::chrono::milliseconds delay, std::chrono::milliseconds repeat,
                              std::function<void()> fn) {
  auto state = std::make_shared<TimerState>();
  if (shutDown_.load()) return Timer(state);
  state->ctx = this;
  state->fn = std::move(fn);
  state->repeat = repeat.count() > 0;
  state->handle = new uv_timer_t;
  uv_timer_init(loop_, state->handle);
  state->handle->data = state.get();
  timers_.emplace(state.get(), state);
  uv_timer_start(
      state->handle,
      [](uv_timer_t* h) {
        auto* raw = static_cast<TimerState*>(h->data);
        // Keep the state alive through the callback, which may cancel it.
        auto it = raw->ctx->timers_.find(raw);
        if (it == raw->ctx->timers_.end()) return;
        std::shared_ptr<TimerState> keep = it->second;
        if (!keep->repeat) {
          keep->close();
          raw->ctx->timers_.erase(it);
        }
        keep->running = true;
        runGuarded("a timer callback", keep->fn);
        keep->running = false;
        if (!keep->handle) keep->fn = nullptr;
      },
      static_cast<std::uint64_t>(delay.count()), static_cast<std::uint64_t>(repeat.count()));
  return Timer(state);
}

void LoopContext::queueWork(std::function<void()> work, std::function<void()> done) {
  auto* w = new WorkRequest{{}, std::move(work), std::move(done)};
  w->req.data = w;
  int rc = uv_queue_work(
      loop_, &w->req,
      [](uv_work_t* r) { runGuarded("queued work", static_cast<WorkRequest*>(r->data)->work); },
      [](uv_work_t* r, int) {
        std::unique_ptr<WorkRequest> owned(static_cast<WorkRequest*>(r->data));
        if (owned->done) runGuarded("a work completion", owned->done);
      });
  if (rc != 0) {
    delete w;
    throw std::runtime_error(std::string("spry: queueWork failed: ") + uv_strerror(rc));
  }
}

void LoopContext::cancelTimer(TimerState* timer) noexcept {
  auto it = timers_.find(timer);
  if (it == timers_.end()) return;
  auto keep = std::move(it->second);
  timers_.erase(it);
  keep->close();
  // A timer cancelled from its own callback drops it after the call returns.
  if (!keep->running) keep->fn = nullptr;
}

}  // namespace spry::detail

namespace spry {

bool Loop::post(std::function<void()> fn) const {
  return ctx_ && ctx_->post(std::move(fn));
}

detail::SleepAwaiter Loop::sleep(std::chrono::milliseconds d) const {
  return detail::SleepAwaiter(ctx_, d);
}

bool Loop::spawn(Task<> task) const {
  if (!ctx_ || !task) return false;
  if (!ctx_->isCurrentThread()) {
    auto shared = std::make_shared<Task<>>(std::move(task));
    Loop self = *this;
    return ctx_->post([self, shared] { self.spawn(std::move(*shared)); });
  }
  if (ctx_->isShutDown()) return false;
  (new detail::SpawnedTask(*ctx_, std::move(task)))->start();
  return true;
}

Timer Loop::setTimeout(std::chrono::milliseconds delay, std::function<void()> fn) const {
  if (!ctx_) return Timer();
  return ctx_->startTimer(delay, std::chrono::milliseconds(0), std::move(fn));
}

Timer Loop::setInterval(std::chrono::milliseconds period, std::function<void()> fn) const {
  if (!ctx_) return Timer();
  if (period.count() <= 0) throw std::invalid_argument("spry: setInterval period must be > 0");
  return ctx_->startTimer(period, period, std::move(fn));
}

void Loop::queueWork(std::function<void()> work, std::function<void()> done) const {
  if (!ctx_) throw std::logic_error("spry: queueWork on an empty Loop handle");
  ctx_->queueWork(std::move(work), std::move(done));
}

bool Loop::isCurrentThread() const noexcept {
  return ctx_ && ctx_->isCurrentThread();
}

uv_loop_s* Loop::raw() const noexcept {
  return ctx_ ? ctx_->loop() : nullptr;
}

void Timer::cancel() {
  if (!state_ || !state_->handle) return;
  state_->ctx->cancelTimer(state_.get());
}

bool Timer::isActive() const noexcept {
  return state_ && state_->handle != nullptr;
}

}  // namespace spry
