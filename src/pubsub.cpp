#include "pubsub.h"

#include <algorithm>

#include "connection.h"
#include "ws/websocket_session.h"

namespace spry::detail {

SharedFrame makeFrame(const Message& message) {
  auto frame = std::make_shared<std::string>();
  frame->reserve(message.size() + 10);
  appendFrameHeader(*frame, message.isText() ? WsOpcode::kText : WsOpcode::kBinary, message.size());
  frame->append(message.data());
  return frame;
}

bool TopicTable::subscribe(Connection* c, std::string_view topic) {
  auto it = topics_.find(topic);
  if (it == topics_.end())
    it = topics_.emplace(std::string(topic), std::vector<Connection*>{}).first;
  auto& subs = it->second;
  if (std::find(subs.begin(), subs.end(), c) != subs.end()) return false;
  subs.push_back(c);
  return true;
}

bool TopicTable::unsubscribe(Connection* c, std::string_view topic) {
  auto it = topics_.find(topic);
  if (it == topics_.end()) return false;
  auto& subs = it->second;
  auto pos = std::find(subs.begin(), subs.end(), c);
  if (pos == subs.end()) return false;
  if (delivering_ > 0) {
    *pos = nullptr;
    if (std::find(holes_.begin(), holes_.end(), topic) == holes_.end()) {
      try {
        holes_.emplace_back(topic);
      } catch (...) {  // left for the next compaction of this topic
      }
    }
    return true;
  }
  // Order among subscribers does not matter: swap-remove.
  *pos = subs.back();
  subs.pop_back();
  if (subs.empty()) topics_.erase(it);
  return true;
}

std::size_t TopicTable::deliver(std::string_view topic, const SharedFrame& frame,
                                const Connection* skip) {
  auto it = topics_.find(topic);
  if (it == topics_.end()) return 0;
  // References into the map stay valid while it grows; nothing is erased
  // during a delivery. Subscribers added meanwhile get the next message.
  auto& subs = it->second;
  const std::size_t count = subs.size();
  std::size_t n = 0;
  ++delivering_;
  for (std::size_t i = 0; i < count; ++i) {
    Connection* c = subs[i];
    if (c == nullptr || c == skip) continue;
    if (c->wsSendFrame(frame)) ++n;
  }
  if (--delivering_ == 0 && !holes_.empty()) compact();
  return n;
}

void TopicTable::compact() noexcept {
  for (const auto& topic : holes_) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) continue;
    std::erase(it->second, nullptr);
    if (it->second.empty()) topics_.erase(it);
  }
  holes_.clear();
}

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
