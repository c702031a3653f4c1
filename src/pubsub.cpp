#include "pubsub.h"

#include <algorithm>

#include "connection.h"
#include "websocket_session.h"

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
  // A delivery can close a subscriber (backpressure policy), which
  // unsubscribes it: iterate over a copy.
  std::vector<Connection*> subs = it->second;
  std::size_t n = 0;
  for (Connection* c : subs) {
    if (c == skip) continue;
    if (c->wsSendFrame(frame)) ++n;
  }
  return n;
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
