#pragma once
// Pub/sub: a topic table per loop (loop thread only) and the app-wide count
// of subscribers per topic.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ws/frame_writer.h"
#include "ws/permessage_deflate.h"

namespace spry::detail {

class WebSocketEndpoint;

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

// The subscribers of each topic on one loop. `Subscriber` has
// `bool deliver(PublishFrames&)`: the WebSocket endpoint, or a fake in tests.
template <class Subscriber>
class BasicTopicTable {
 public:
  // False when `s` is already subscribed.
  bool subscribe(Subscriber* s, std::string_view topic) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) it = topics_.emplace(std::string(topic), List{}).first;
    auto& subs = it->second;
    if (std::find(subs.begin(), subs.end(), s) != subs.end()) return false;
    subs.push_back(s);
    return true;
  }

  // False when `s` was not subscribed.
  bool unsubscribe(Subscriber* s, std::string_view topic) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) return false;
    auto& subs = it->second;
    auto pos = std::find(subs.begin(), subs.end(), s);
    if (pos == subs.end()) return false;
    if (delivering_ > 0) {
      *pos = nullptr;
      if (std::find(holes_.begin(), holes_.end(), topic) == holes_.end()) {
        try {
          holes_.emplace_back(topic);
        } catch (...) {
          // Out of memory: the null slot stays until a later removal from
          // this topic during a delivery records it; deliveries skip it.
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

  // Sends `frame` to every subscriber of `topic` but `skip`; returns how many
  // took it.
  std::size_t deliver(std::string_view topic, const SharedFrame& frame, const Subscriber* skip) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) return 0;
    // References into the map stay valid while it grows; nothing is erased
    // during a delivery. Subscribers added meanwhile get the next message.
    auto& subs = it->second;
    const std::size_t count = subs.size();
    std::size_t n = 0;
    // Also when a subscriber throws (out of memory): the table must not stay
    // in "delivering" mode, where removals only leave holes.
    struct Delivering {
      BasicTopicTable& table;
      explicit Delivering(BasicTopicTable& t) noexcept : table(t) { ++table.delivering_; }
      ~Delivering() {
        if (--table.delivering_ == 0 && !table.holes_.empty()) table.compact();
      }
    } delivering(*this);
    // Compressed on this loop at most once per server window, when first asked.
    PublishFrames frames(frame);
    for (std::size_t i = 0; i < count; ++i) {
      Subscriber* s = subs[i];
      if (s == nullptr || s == skip) continue;
      if (s->deliver(frames)) ++n;
    }
    return n;
  }

 private:
  using List = std::vector<Subscriber*>;

  // While a delivery runs (it can close subscribers, which unsubscribe, and
  // run callbacks that subscribe or publish), removal leaves a null slot and
  // a topic is never erased; compact() tidies up after the outermost one.
  // So a publish iterates the list in place, with no copy.
  void compact() noexcept {
    for (const auto& topic : holes_) {
      auto it = topics_.find(topic);
      if (it == topics_.end()) continue;
      std::erase(it->second, nullptr);
      if (it->second.empty()) topics_.erase(it);
    }
    holes_.clear();
  }

  std::unordered_map<std::string, List, StringHash, std::equal_to<>> topics_;
  int delivering_ = 0;
  std::vector<std::string> holes_;  // topics with null slots
};

using TopicTable = BasicTopicTable<WebSocketEndpoint>;

// Subscriber counts across loops (thread-safe).
class SubscriberCounts {
 public:
  void add(std::string_view topic, long delta);
  std::size_t count(std::string_view topic) const;
  std::size_t topics() const;
  // Every topic with at least one subscriber.
  std::vector<std::string> names() const;
  // Called when a topic gets its first subscriber or loses its last, after
  // the count has changed, outside the lock, on the thread that changed it
  // (the Redis bridge). Set before any add().
  void onTopicChange(std::function<void(std::string_view topic)> fn) { onChange_ = std::move(fn); }

 private:
  std::function<void(std::string_view)> onChange_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::size_t, StringHash, std::equal_to<>> counts_;
};

}  // namespace spry::detail
