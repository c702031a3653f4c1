#pragma once
// The Redis bridge of one App: its own thread and libuv loop, so Redis I/O
// never runs on (or waits for) a loop that serves clients, and an attached
// app's bridge needs nothing from the user's loop. Two connections, because
// a connection in subscribe mode cannot PUBLISH (RESP2): one publishes, one
// holds a SUBSCRIBE for every topic with a local subscriber. They are up or
// down together; a lost one takes the other down and both reconnect after a
// backoff, then subscribe again to every live topic.
//
// Loop threads reach the bridge through a mutex-guarded queue and its
// uv_async; messages from Redis reach the loops through the `deliver` hook
// (the app's own cross-loop path, each loop's async queue).

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "redis/backoff.h"
#include "redis/envelope.h"
#include "redis/redis_client.h"
#include "redis/redis_url.h"
#include "spry/message.h"
#include "spry/redis_bridge.h"

namespace spry::detail {

class PubSubBridge {
 public:
  struct Hooks {
    // A message from another process for the local subscribers of `topic`
    // (bridge thread; the message is valid during the call).
    std::function<void(std::string_view topic, const Message& message)> deliver;
    // Topics with at least one local subscriber (any thread).
    std::function<std::vector<std::string>()> liveTopics;
    // Whether `topic` has a local subscriber (any thread).
    std::function<bool(std::string_view topic)> isLive;
  };

  // Throws std::invalid_argument for a bad URL.
  PubSubBridge(const RedisBridge& config, Hooks hooks);
  ~PubSubBridge();
  PubSubBridge(const PubSubBridge&) = delete;
  PubSubBridge& operator=(const PubSubBridge&) = delete;

  // Starts the thread, which connects (and keeps reconnecting); counters
  // start from zero. Never throws: without a thread the app stays local,
  // and says so in the log.
  void start() noexcept;
  // Closes both connections and joins the thread; queued publishes are
  // dropped. No-op when not started.
  void stop() noexcept;

  // Queues `message` for PUBLISH on prefix+topic (any thread). Dropped and
  // counted when Redis is not connected or the queue is full.
  void publish(std::string_view topic, const Message& message);
  // `topic` gained its first or lost its last local subscriber (any thread):
  // the bridge compares with what it has subscribed to.
  // Never throws (it runs where a socket leaves its topics).
  void topicChanged(std::string_view topic) noexcept;

  BridgeStats stats() const noexcept;

 private:
  enum class Link : std::uint8_t { kDown, kConnecting, kUp };
  struct Outgoing {
    std::string channel;
    std::string envelope;
  };

  void run() noexcept;
  void drain() noexcept;
  void shutdown() noexcept;
  void connectLink() noexcept;
  void clientUp(bool publisher) noexcept;
  void clientLost(bool publisher, std::string_view reason) noexcept;
  void scheduleRetry() noexcept;
  // SUBSCRIBE or UNSUBSCRIBE `topic` as its local subscribers ask.
  void reconcile(const std::string& topic);
  void subscribe(const std::vector<std::string>& topics);
  void send(Outgoing& out);
  void received(std::string_view channel, std::string_view payload) noexcept;

  const RedisUrl url_;
  const RedisBridgeOptions options_;
  const Hooks hooks_;
  OriginId origin_{};

  // Shared with the publishing threads, under mutex_.
  std::mutex mutex_;
  bool accepting_ = false;  // started and not stopping: async_ may be sent
  bool stopping_ = false;
  std::vector<Outgoing> outbox_;
  std::size_t outboxBytes_ = 0;
  std::vector<std::string> changed_;  // topics to reconcile

  std::atomic<bool> connected_{false};
  std::atomic<std::uint64_t> reconnects_{0}, published_{0}, received_{0}, dropped_{0};

  // The bridge thread's own.
  std::thread thread_;
  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_timer_t retry_{};
  std::unique_ptr<RedisClient> pub_, sub_;
  Backoff backoff_;
  Link link_ = Link::kDown;
  bool pubActive_ = false, subActive_ = false;  // connect() made, onDisconnected not yet
  bool pubUp_ = false, subUp_ = false;
  bool everUp_ = false;
  bool outageLogged_ = false;                   // one log line per outage, not one per attempt
  std::unordered_set<std::string> subscribed_;  // SUBSCRIBE sent on this connection
};

}  // namespace spry::detail
