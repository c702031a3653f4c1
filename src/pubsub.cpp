#include "pubsub.h"

namespace spry::detail {

void SubscriberCounts::add(std::string_view topic, long delta) {
  bool changed = false;
  {
    std::lock_guard lock(mutex_);
    auto it = counts_.find(topic);
    if (it == counts_.end()) {
      if (delta <= 0) return;
      counts_.emplace(std::string(topic), static_cast<std::size_t>(delta));
      changed = true;
    } else if (long next = static_cast<long>(it->second) + delta; next <= 0) {
      counts_.erase(it);
      changed = true;
    } else {
      it->second = static_cast<std::size_t>(next);
    }
  }
  if (changed && onChange_) onChange_(topic);
}

std::vector<std::string> SubscriberCounts::names() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  out.reserve(counts_.size());
  for (const auto& [topic, count] : counts_) out.push_back(topic);
  return out;
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
