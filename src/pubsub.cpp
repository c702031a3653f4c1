#include "pubsub.h"

namespace spry::detail {

void SubscriberCounts::add(std::string_view topic, long delta) {
  std::lock_guard lock(mutex_);
  auto it = counts_.find(topic);
  if (it == counts_.end()) {
    if (delta <= 0) return;
    counts_.emplace(std::string(topic), static_cast<std::size_t>(delta));
    return;
  }
  long next = static_cast<long>(it->second) + delta;
  if (next <= 0) {
    counts_.erase(it);
  } else {
    it->second = static_cast<std::size_t>(next);
  }
}

std::size_t SubscriberCounts::topics() const {
  std::lock_guard lock(mutex_);
  return counts_.size();
}

std::size_t SubscriberCounts::count(std::string_view topic) const {
  std::lock_guard lock(mutex_);
  auto it = counts_.find(topic);
  return it == counts_.end() ? 0 : it->second;
}

}  // namespace spry::detail
