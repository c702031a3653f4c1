#include "transport/transport.h"

namespace spry::detail {

namespace {
// Shared chunks at least this large are queued by reference; below it a copy
// into the buffer is cheaper than the bookkeeping.
constexpr std::size_t kShareBytes = 512;
}  // namespace

void Transport::queueOwned(std::string_view bytes) {
  if (bytes.empty()) return;
  if (queue_->chunks.back().shared) queue_->chunks.emplace_back();
  queue_->chunks.back().owned.append(bytes);
  queue_->bytes += bytes.size();
}

void Transport::writeShared(const SharedBytes& bytes) {
  if (bytes->size() < kShareBytes) {
    write(*bytes);
    return;
  }
  if (!queue_) queue_ = std::make_unique<Queue>();
  queue_->chunks.push_back(Chunk{bytes, {}, 0});
  queue_->bytes += bytes->size();
}

}  // namespace spry::detail
