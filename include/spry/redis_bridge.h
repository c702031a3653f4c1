#pragma once
/// Pub/sub across processes through Redis: App::bridge(RedisBridge{...}).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace spry {

/// How the bridge talks to Redis. Every duration says its unit.
struct RedisBridgeOptions {
  /// Prepended to every topic to name its Redis channel: topic "broadcast"
  /// is channel "spry:broadcast".
  std::string channelPrefix = "spry:";
  std::chrono::milliseconds reconnectInitial{100};  ///< first delay after a lost connection
  std::chrono::milliseconds reconnectMax{1000};     ///< no delay between attempts is longer
  std::chrono::milliseconds connectTimeout{1000};   ///< connect + AUTH/PING answered, per attempt
  /// Publishes waiting to reach Redis (bytes, envelopes included); past it a
  /// publish is dropped and counted.
  std::size_t maxBufferBytes = 8u << 20;
};

/// A Redis server to carry this app's publishes to every process connected
/// to it, and theirs to this one's subscribers. At most once: a publish made
/// while Redis is unreachable (or that Redis never acknowledges) is dropped
/// and counted, never retried.
class RedisBridge {
 public:
  /// `url` is redis://[user:password@]host[:port] (no /db: Redis pub/sub
  /// ignores databases). Throws std::invalid_argument naming the problem.
  explicit RedisBridge(std::string url, RedisBridgeOptions options = {});

  const std::string& url() const noexcept { return url_; }
  const RedisBridgeOptions& options() const noexcept { return options_; }

 private:
  std::string url_;
  RedisBridgeOptions options_;
};

/// The bridge's state in App::stats(). Counters start at listen().
struct BridgeStats {
  bool enabled = false;          ///< App::bridge was called
  bool connected = false;        ///< both Redis connections (publish, subscribe) are up
  std::uint64_t reconnects = 0;  ///< connections made again after one was lost or failed
  std::uint64_t published = 0;   ///< publishes Redis acknowledged
  std::uint64_t received = 0;    ///< messages from other processes handed to the loops
  /// Publishes lost (Redis unreachable, buffer full, connection lost before
  /// the acknowledgement) and unreadable messages from Redis.
  std::uint64_t dropped = 0;
};

}  // namespace spry
