#include "connection.h"
#include "http/request_data.h"
#include "spry/response.h"

#include <stdexcept>

#include "app_state.h"
#include "spry/app.h"

// BodyWriter and Deferred: handles a handler keeps after it returns. Each
// reaches its connection weakly and does nothing once it has gone.

namespace spry {

// ---------------------------------------------------------------- BodyWriter

bool BodyWriter::write(std::string_view data) const {
  auto conn = state_ ? state_->conn.lock() : nullptr;
  return conn && conn->streamWrite(*state_, data);
}

void BodyWriter::end() const {
  if (auto conn = state_ ? state_->conn.lock() : nullptr) conn->streamEnd(*state_);
}

// After end() or an abort the callbacks can never run; keeping them would
// keep what they hold (often this writer: a cycle) alive.
void BodyWriter::onDrain(std::function<void()> fn) const {
  if (state_ && !state_->ended && !state_->aborted) state_->onDrain = std::move(fn);
}

void BodyWriter::onAbort(std::function<void()> fn) const {
  if (state_ && !state_->ended && !state_->aborted) state_->onAbort = std::move(fn);
}

bool BodyWriter::isOpen() const noexcept {
  if (!state_ || state_->ended || state_->aborted) return false;
  auto conn = state_->conn.lock();
  return conn && !conn->isClosed();
}

std::size_t BodyWriter::bufferedAmount() const noexcept {
  auto conn = state_ ? state_->conn.lock() : nullptr;
  return conn ? conn->transport().bufferedAmount() : 0;
}

// ---------------------------------------------------------------- Deferred

bool Deferred::send(Response response) const {
  if (!state_ || state_->levels[0].done) return false;
  auto keep = state_;  // the send may end what holds this handle
  return detail::completeLevel(*keep, 0, std::move(response), nullptr);
}

bool Deferred::isPending() const noexcept {
  if (!state_ || state_->levels[0].done) return false;
  auto conn = state_->conn.lock();
  return conn && !conn->isClosed();
}

// ---------------------------------------------------------------- pending levels

namespace detail {

namespace {
void addMissing(Response& to, const Headers& from) {
  for (const auto& [name, value] : from) {
    if (!to.headers().has(name)) to.headers().add(name, value);
  }
}

// What a handler threw once its client had gone: nobody gets an answer,
// but a failure (not an HttpError, which is an answer) is still logged.
void logDiscarded(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const HttpError&) {
  } catch (const std::exception& e) {
    logThrow("a handler whose client had gone", e.what());
  } catch (...) {
    logThrow("a handler whose client had gone", nullptr);
  }
}

std::exception_ptr misuse(const char* what) {
  return std::make_exception_ptr(std::logic_error(what));
}
}  // namespace

struct PendingLevels {
  static Response placeholder(std::shared_ptr<DeferredState> state, std::uint32_t level) {
    Response r(200);
    r.pending_ = std::move(state);
    r.level_ = level;
    return r;
  }
  static void resume(ResponseAwaiter& w, Response&& response, std::exception_ptr error) {
    auto awaiting = std::exchange(w.awaiting_, {});
    if (!error) {
      try {
        w.take(std::move(response));
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (error) w.error_ = std::move(error);
    awaiting.resume();
  }
};

bool completeLevel(DeferredState& s, std::uint32_t k, Response response, std::exception_ptr error) {
  auto conn = s.conn.lock();
  const bool alive = conn && !conn->isClosed();
  for (;;) {
    if (!error && response.isDeferred()) {
      // Answered with another placeholder (a handler returning its Deferred,
      // a middleware returning next() unawaited): that level's answer is
      // this one's.
      DeferredState* other = ResponseAccess::pendingState(response);
      const std::uint32_t j = ResponseAccess::pendingLevel(response);
      if (other != &s || j >= s.levels.size() || j == k) {
        error = misuse("spry: an answer was another request's pending response, or its own");
        continue;
      }
      PendingLevel& from = s.levels[j];
      if (from.taken || from.waiter || from.forwarding || s.registered == j) {
        error = misuse("spry: a pending response was used twice (awaited or returned)");
        continue;
      }
      if (!from.done) {
        from.forwarding = true;
        from.forwardTo = k;
        from.forwardHeaders = response.headers();
        return alive;
      }
      from.taken = true;
      Response inner = from.early ? std::move(*from.early) : Response(500);
      from.early.reset();
      error = std::exchange(from.error, nullptr);
      if (!error) addMissing(inner, response.headers());
      response = std::move(inner);
      continue;
    }
    PendingLevel& level = s.levels[k];
    if (level.done) return false;
    level.done = true;
    if (level.forwarding) {
      level.taken = true;
      if (!error) addMissing(response, level.forwardHeaders);
      k = level.forwardTo;
      continue;
    }
    if (level.waiter) {
      level.taken = true;
      PendingLevels::resume(*std::exchange(level.waiter, nullptr), std::move(response),
                            std::move(error));
      return alive;
    }
    if (s.registered == k) {
      level.taken = true;
      s.registered = DeferredState::kNone;
      if (!alive) {
        if (error) logDiscarded(error);
        return false;
      }
      if (error) response = conn->app().applyFilters(error, *s.req);
      return conn->sendDeferred(s, std::move(response));
    }
    level.early = std::move(response);
    level.error = std::move(error);
    return alive;
  }
}

PendingTask::PendingTask(Request& req) : CoroutineRoot(*RequestData::of(req).loop), req_(&req) {}

Response PendingTask::pending() {
  auto state = pendingStateOf(*req_);
  level_ = static_cast<std::uint32_t>(state->levels.size());
  state->levels.emplace_back();
  state_ = state;
  return PendingLevels::placeholder(std::move(state), level_);
}

void PendingTask::finished() noexcept {
  Response response;
  std::exception_ptr error;
  try {
    response = result();
  } catch (...) {
    error = std::current_exception();
  }
  auto state = std::move(state_);
  const std::uint32_t level = level_;
  // The frame goes first: what the answer resumes or sends may take long,
  // and must not find this root still registered.
  delete this;
  if (state) completeLevel(*state, level, std::move(response), std::move(error));
}

}  // namespace detail

// ---------------------------------------------------------------- co_await Response

ResponseAwaiter::~ResponseAwaiter() {
  // The awaiting frame is destroyed while it waits (the app stops).
  if (auto* state = ResponseAccess::pendingState(response_); awaiting_ && state) {
    auto& level = state->levels[ResponseAccess::pendingLevel(response_)];
    if (level.waiter == this) level.waiter = nullptr;
  }
}

bool ResponseAwaiter::readyPending() {
  auto& s = *ResponseAccess::pendingState(response_);
  const std::uint32_t k = ResponseAccess::pendingLevel(response_);
  if (k >= s.levels.size()) throw std::logic_error("spry: co_await on a stale pending response");
  detail::PendingLevel& level = s.levels[k];
  if (level.taken || level.waiter || level.forwarding || s.registered == k) {
    throw std::logic_error("spry: a pending response was used twice (awaited or returned)");
  }
  if (!level.done) return false;
  level.taken = true;
  // Out of the level first: take() drops the placeholder, maybe the state.
  std::exception_ptr error = std::exchange(level.error, nullptr);
  std::optional<Response> early = std::move(level.early);
  level.early.reset();
  if (error) {
    error_ = std::move(error);
  } else {
    take(early ? std::move(*early) : Response(500));
  }
  return true;
}

void ResponseAwaiter::await_suspend(std::coroutine_handle<> awaiting) noexcept {
  awaiting_ = awaiting;
  ResponseAccess::pendingState(response_)->levels[ResponseAccess::pendingLevel(response_)].waiter =
      this;
}

void ResponseAwaiter::take(Response&& final) {
  detail::addMissing(final, response_.headers());
  response_ = std::move(final);
}

}  // namespace spry
