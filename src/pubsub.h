#pragma once
// Pub/sub: a topic table per loop (loop thread only) and the app-wide side
// that counts subscribers and carries a publish to the other loops.

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "spry/message.h"

namespace spry::detail {

class Connection;

// A data frame ready for the wire: framed once, shared by every subscriber on
// every loop (server frames are unmasked, so the bytes are the same for all).
using SharedFrame = std::shared_ptr<const std::string>;
SharedFrame makeFrame(const Message& message);

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

class TopicTable {
 public:
  // False when `c` is already subscribed.
  bool subscribe(Connection* c, std::string_view topic);
  // False when `c` was not subscribed.
  bool unsubscribe(Connection* c, std::string_view topic);
  // Sends `frame` to every subscriber of `topic` but `skip`; returns how many.
  std::size_t deliver(std::string_view topic, const SharedFrame& frame, const Connection* skip);
  std::size_t topicCount() const noexcept { return topics_.size(); }

 private:
  // While a delivery runs (it can close subscribers, which unsubscribe, and
  // run callbacks that subscribe or publish), removal leaves a null slot and
  // a topic is never erased; compact() tidies up after the outermost one.
  // So a publish iterates the list in place, with no copy.
  void compact() noexcept;

  std::unordered_map<std::string, std::vector<Connection*>, StringHash, std::equal_to<>> topics_;
  int delivering_ = 0;
  std::vector<std::string> holes_;  // topics with null slots
};

// Subscriber counts across loops (thread-safe).
class SubscriberCounts {
 public:
  void add(std::string_view topic, long delta);
  std::size_t count(std::string_view topic) const;
  std::size_t topics() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::size_t, StringHash, std::equal_to<>> counts_;
};

}  // namespace spry::detail
