#include "connection.h"
#include "http/request_data.h"
#include "spry/response.h"

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
  if (!state_ || state_->sent) return false;
  auto conn = state_->conn.lock();
  if (!conn) return false;
  return conn->sendDeferred(*state_, std::move(response));
}

bool Deferred::isPending() const noexcept {
  if (!state_ || state_->sent) return false;
  auto conn = state_->conn.lock();
  return conn && !conn->isClosed();
}

}  // namespace spry
