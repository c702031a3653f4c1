#include "ws/coroutine_socket.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "connection.h"
#include "loop_context.h"
#include "ws/protocol.h"
#include "ws/websocket_endpoint.h"

namespace spry::detail {

// An idle socket holds its endpoint: coroutine support must not grow it
// (its fields live in the PullState, its flags in the bitfield's padding).
static_assert(sizeof(WebSocketEndpoint) <= 152, "WebSocketEndpoint grew");
static_assert(sizeof(PullForward) <= 16 && std::is_trivially_copyable_v<PullForward>,
              "PullForward must fit std::function's inline storage");

namespace {
// The socket whose message this thread is delivering to a waiting next()
// right now (null outside): the coroutine it resumes usually awaits next()
// and drain() on that same socket before it returns.
struct Delivery {
  PullState* pull;
  WebSocketEndpoint* endpoint;
  Delivery* outer;
};
[[gnu::tls_model("initial-exec")]] thread_local Delivery* tDelivery = nullptr;

// The delivery running for the socket `ref` refers to, if any.
inline Delivery* deliveringTo(const EndpointRef& ref) noexcept {
  Delivery* d = tDelivery;
  if (d && ref.sameOwner(d->endpoint->connection().self())) return d;
  return nullptr;
}

// Larger pulled messages get a buffer of their own, not kept as the spare.
constexpr std::size_t kSpareMax = 16 * 1024;
constexpr std::size_t kSpareMin = 256;

void requireOwnLoop(const WebSocketEndpoint& e, const char* what) {
  if (!e.loopContext().isCurrentThread()) {
    throw std::logic_error(std::string("spry: WebSocket::") + what +
                           " awaited off the socket's loop thread (from another loop or "
                           "thread): await it in a coroutine running on that loop");
  }
}
}  // namespace

// ---------------------------------------------------------------- the endpoint's side

PullState* WebSocketEndpoint::pull() const noexcept {
  if (pullInMessage_) return onMessage_.target<PullForward>()->pull;
  if (pullInCold_) return cold_->pull;
  return nullptr;
}

PullState& WebSocketEndpoint::ensurePull(bool buffering) {
  if (PullState* p = pull()) {
    p->buffering_ = p->buffering_ || buffering;
    return *p;
  }
  auto p = std::make_unique<PullState>();
  p->buffering_ = buffering;
  if (onMessage_) {
    // A listener keeps its slot (it may be running right now).
    cold().pull = p.get();
    pullInCold_ = true;
  } else {
    onMessage_ = PullForward{p.get(), this};
    pullInMessage_ = true;
  }
  return *p.release();
}

void WebSocketEndpoint::freePull() noexcept {
  PullState* p = pull();
  if (!p) return;
  releaseReading();
  if (pullInMessage_) {
    onMessage_ = nullptr;
  } else {
    cold_->pull = nullptr;
  }
  pullInMessage_ = pullInCold_ = pullOrphan_ = false;
  delete p;
}

void WebSocketEndpoint::pullTaskEnded() noexcept {
  if (!pullInMessage_ && !pullInCold_) return;
  pullOrphan_ = true;
  releasePullIfOrphan();
}

void WebSocketEndpoint::releasePullIfOrphan() noexcept {
  if (!pullOrphan_ || inMessage_) return;
  PullState* p = pull();
  if (p && !p->idle()) return;  // another coroutine still waits: at the socket's end
  freePull();
}

void WebSocketEndpoint::releaseReading() noexcept {
  if (PullState* p = pull()) releaseReading(*p);
}

void WebSocketEndpoint::releaseReading(PullState& p) noexcept {
  if (!p.readHeld_) return;
  p.readHeld_ = false;
  if (!readPaused_ && !conn_.isClosed()) conn_.transport().resumeReading();
}

// ---------------------------------------------------------------- PullState

PullState::~PullState() {
  if (next_) next_->pull_ = nullptr;
  for (PullWaiter* head : {drain_, closed_}) {
    for (PullWaiter* w = head; w; w = w->next_) w->pull_ = nullptr;
  }
}

void PullState::link(PullWaiter*& head, PullWaiter& w) noexcept {
  w.pull_ = this;
  w.prev_ = nullptr;
  w.next_ = head;
  if (head) head->prev_ = &w;
  head = &w;
}

void PullState::unlink(PullWaiter& w) noexcept {
  if (w.prev_) {
    w.prev_->next_ = w.next_;
  } else if (drain_ == &w) {
    drain_ = w.next_;
  } else if (closed_ == &w) {
    closed_ = w.next_;
  }
  if (w.next_) w.next_->prev_ = w.prev_;
  w.pull_ = nullptr;
  w.prev_ = w.next_ = nullptr;
}

Message PullState::pop() noexcept {
  Message m = std::move((*queue_)[head_++]);
  if (head_ == queue_->size()) {
    queue_.reset();
    head_ = 0;
  }
  return m;
}

std::vector<Message> PullState::takeQueue() {
  std::vector<Message> out;
  if (!queue_) return out;
  out.assign(std::make_move_iterator(queue_->begin() + head_),
             std::make_move_iterator(queue_->end()));
  queue_.reset();
  head_ = 0;
  return out;
}

void PullState::resumeNext(NextAwaiter* w) noexcept {
  next_ = nullptr;
  w->pull_ = nullptr;
  w->handle_.resume();
}

Message PullState::own(LoopContext& loop, const Message& message) {
  const std::size_t n = message.size();
  if (n > kSpareMax) return message.owned();
  std::shared_ptr<char[]>& spare = loop.pulledSpare();
  if (!spare || spare.use_count() != 1 || loop.pulledSpareSize() < n) {
    const std::size_t size = std::max(n, kSpareMin);
    spare = std::make_shared_for_overwrite<char[]>(size);
    loop.pulledSpareSize() = size;
  } else {
    // The last holder released it (maybe on another thread): its reads of
    // the bytes happened before its release of the count.
    std::atomic_thread_fence(std::memory_order_acquire);
  }
  if (n) std::memcpy(spare.get(), message.data().data(), n);
  Message m(message.type_, std::string_view(spare.get(), n), std::shared_ptr<const void>(spare));
  m.utf8Checked_ = message.utf8Checked_;
  m.compressed_ = message.compressed_;
  return m;
}

void PullState::deliver(WebSocketEndpoint& e, const Message& message) {
  if (next_) [[likely]] {
    NextAwaiter* w = next_;
    w->result_.emplace(own(e.loopContext(), message));  // before unlinking: it may throw
    next_ = nullptr;
    w->pull_ = nullptr;
    Delivery d{this, &e, tDelivery};
    tDelivery = &d;
    w->handle_.resume();
    tDelivery = d.outer;
    return;
  }
  // Nobody pulls it (a callback socket awaiting closed()), or the socket is
  // closing: no coroutine will take it.
  if ((!buffering_ && !pulling_) || e.session().closeSent()) return;
  if (!queue_) queue_ = std::make_unique<std::vector<Message>>();
  queue_->push_back(own(e.loopContext(), message));
  if (!readHeld_) {
    // The rest of this read is queued too; then nothing until a next().
    readHeld_ = true;
    e.conn_.transport().pauseReading();
  }
}

void PullState::notifyClosed(std::uint16_t code, std::string_view reason) noexcept {
  notifying_ = true;
  // A waiting next() means nothing is queued: the end.
  if (next_) resumeNext(next_);
  while (closed_) {
    PullWaiter* w = closed_;
    unlink(*w);
    auto* c = static_cast<ClosedAwaiter*>(w);
    c->info_.code = code;
    try {
      c->info_.reason.assign(reason);
    } catch (...) {  // the code alone still tells
    }
    w->handle_.resume();
  }
  while (drain_) {
    PullWaiter* w = drain_;
    unlink(*w);
    w->handle_.resume();
  }
  notifying_ = false;
}

void PullState::notifyDrained(WebSocketEndpoint& e) noexcept {
  notifying_ = true;
  // One at a time from the head: a resumed coroutine may destroy other
  // waiters' frames, or send enough to wait again.
  while (drain_ && (e.readyState() != ReadyState::kOpen ||
                    e.bufferedAmount() <= e.options_.maxBackpressureBytes / 2)) {
    PullWaiter* w = drain_;
    unlink(*w);
    w->handle_.resume();
  }
  notifying_ = false;
  if (drain_) e.drainAwaited_ = true;
}

bool PullState::awaitNext(WebSocketEndpoint& e, NextAwaiter& w) {
  const bool closed = e.conn_.isClosed();
  PullState* p = e.pull();
  if (e.pullInCold_ && !closed) [[unlikely]] {
    throw std::logic_error(
        "spry: WebSocket::next awaited on a socket with a listen() callback: a socket's "
        "messages go to listen or to next(), not both");
  }
  if (!p) {
    if (closed) return true;
    if (e.onMessage_) {
      throw std::logic_error(
          "spry: WebSocket::next awaited on a socket with a listen() callback: a socket's "
          "messages go to listen or to next(), not both");
    }
    p = &e.ensurePull(true);
  }
  if (p->next_) {
    throw std::logic_error(
        "spry: WebSocket::next awaited while another next() on the same socket is pending: "
        "pull a socket's messages from one coroutine at a time");
  }
  p->pulling_ = true;
  if (p->queue_) {
    w.result_.emplace(p->pop());
    if (!p->queue_) e.releaseReading(*p);
    return true;
  }
  if (closed || e.closeReported_) return true;
  p->next_ = &w;
  w.pull_ = p;
  e.releaseReading(*p);
  return false;
}

void PullState::bufferForHandler(WebSocketEndpoint& e) {
  // Until it calls listen() or next(), what arrives waits for it.
  if (!e.isClosed() && (e.pull() || !e.onMessage_)) e.ensurePull(true);
}

bool PullState::belowLowWater(const WebSocketEndpoint& e) noexcept {
  return e.conn_.transport().bufferedAmount() <= e.options_.maxBackpressureBytes / 2;
}

bool PullState::awaitDrain(WebSocketEndpoint& e, DrainAwaiter& w) {
  if (e.readyState() != ReadyState::kOpen ||
      e.bufferedAmount() <= e.options_.maxBackpressureBytes / 2) {
    return true;
  }
  PullState& p = e.ensurePull(false);
  p.link(p.drain_, w);
  e.drainAwaited_ = true;
  return false;
}

bool PullState::awaitClosed(WebSocketEndpoint& e, ClosedAwaiter& w) {
  if (e.closeReported_) {
    w.info_.code = e.closeCode_;
    w.info_.reason = e.closeReason();
    return true;
  }
  PullState& p = e.ensurePull(false);
  p.link(p.closed_, w);
  return false;
}

// ---------------------------------------------------------------- awaiters

void PullWaiter::leave() noexcept {
  pull_->unlink(*this);
}

void NextAwaiter::leave() noexcept {
  pull_->detach(*this);
}

bool NextAwaiter::await_ready() {
  if (Delivery* d = deliveringTo(endpoint_)) [[likely]] {
    WebSocketEndpoint& e = *d->endpoint;
    PullState& p = *d->pull;
    if (!p.next_ && !p.queue_ && !e.pullInCold_ && !e.conn_.isClosed() && !e.closeReported_)
        [[likely]] {
      p.pulling_ = true;
      p.next_ = this;
      pull_ = &p;
      if (p.readHeld_) e.releaseReading(p);
      return false;
    }
    return PullState::awaitNext(e, *this);
  }
  auto e = endpoint_.lock();
  if (!e) return true;
  requireOwnLoop(*e, "next");
  return PullState::awaitNext(*e, *this);
}

bool DrainAwaiter::await_ready() {
  if (Delivery* d = deliveringTo(endpoint_)) [[likely]] {
    if (PullState::belowLowWater(*d->endpoint)) return true;
  }
  auto e = endpoint_.lock();
  if (!e) return true;
  requireOwnLoop(*e, "drain");
  return PullState::awaitDrain(*e, *this);
}

bool ClosedAwaiter::await_ready() {
  auto e = endpoint_.lock();
  if (!e) return true;
  requireOwnLoop(*e, "closed");
  return PullState::awaitClosed(*e, *this);
}

// ---------------------------------------------------------------- the handler's task

// A ws coroutine handler's task after its first suspension: the socket's
// loop owns it. Its end (or its destruction when the app stops first) gives
// the socket back to plain callbacks.
class WebSocketTask final : public CoroutineRoot {
 public:
  WebSocketTask(LoopContext& loop, Task<> task, std::weak_ptr<WebSocketEndpoint> endpoint)
      : CoroutineRoot(loop), task_(std::move(task)), endpoint_(std::move(endpoint)) {}
  ~WebSocketTask() override {
    // The frame first: its awaiters leave the pull state.
    task_ = Task<>();
    if (auto e = endpoint_.lock()) e->pullTaskEnded();
  }
  void adopt() noexcept { TaskAccess::adopt(task_, this); }
  void finished() noexcept override {
    try {
      TaskAccess::take(task_);
    } catch (const std::exception& ex) {
      fail(ex.what());
    } catch (...) {
      fail(nullptr);
    }
    delete this;
  }

 private:
  void fail(const char* what) noexcept {
    logThrow("ws coroutine handler", what, "; closing the socket with 1011");
    if (auto e = endpoint_.lock()) e->sendClose(kCloseInternalError, "internal error", true);
  }

  Task<> task_;
  std::weak_ptr<WebSocketEndpoint> endpoint_;
};

void startWebSocketTask(const WebSocket& ws, Task<> task) {
  if (TaskAccess::start(task)) {
    TaskAccess::take(task);  // what it threw closes the socket with 1011, as a callback's
    return;
  }
  auto e = PullState::endpointOf(ws);
  if (!e || e->loopContext().isShutDown()) return;  // the frame goes with `task`
  auto* root = new WebSocketTask(e->loopContext(), std::move(task), PullState::weakOf(ws));
  root->adopt();
  PullState::bufferForHandler(*e);
}

}  // namespace spry::detail

namespace spry {

using detail::EndpointRef;

detail::NextAwaiter WebSocket::next() const&& {
  return detail::NextAwaiter(EndpointRef(std::weak_ptr(endpoint_)));
}

detail::DrainAwaiter WebSocket::drain() const&& {
  return detail::DrainAwaiter(EndpointRef(std::weak_ptr(endpoint_)));
}

detail::ClosedAwaiter WebSocket::closed() const& {
  return detail::ClosedAwaiter(EndpointRef(endpoint_));
}

detail::ClosedAwaiter WebSocket::closed() const&& {
  return detail::ClosedAwaiter(EndpointRef(std::weak_ptr(endpoint_)));
}

}  // namespace spry
