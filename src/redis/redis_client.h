#pragma once
// A Redis client on one libuv loop: our own TCP connection (with a connect
// timeout that libuv's and hiredis's lack), hiredis only for formatting
// commands (redisFormatCommandArgv) and reading replies (redisReader).
// Replies come back in command order; in subscribe mode, "message",
// "smessage" and "pmessage" pushes go to onMessage and the confirmations of
// (S|P)SUBSCRIBE / (S|P)UNSUBSCRIBE are matched to the command that asked
// for them. RESP2 only; no MONITOR, no automatic reconnect (see Backoff).

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "redis/redis_url.h"

struct redisReader;

namespace spry::detail {

// One reply, or the lack of one (kDisconnected: the connection ended first).
struct RedisReply {
  enum class Type : std::uint8_t {
    kNil,
    kString,        // str: a bulk string, binary-safe
    kStatus,        // str: "OK", "PONG", ...
    kInteger,       // integer
    kArray,         // elements
    kError,         // str: the server's error, "ERR ...", "WRONGPASS ..."
    kDisconnected,  // str: why the command got no reply
  };

  Type type = Type::kNil;
  std::int64_t integer = 0;
  std::string str;
  std::vector<RedisReply> elements;

  // kError or kDisconnected.
  bool isError() const noexcept { return type == Type::kError || type == Type::kDisconnected; }
};

struct RedisClientOptions {
  // From connect() to the server's first answer (to AUTH, or to a PING);
  // 0 waits forever.
  std::chrono::milliseconds connectTimeout{1000};
  // Formatted commands not yet taken by the kernel; command() refuses past it.
  std::size_t maxOutputBytes = 8 << 20;
};

class RedisClient {
 public:
  using ReplyCallback = std::function<void(RedisReply& reply)>;
  // A published message: the channel and payload are valid during the call.
  // `sharded` for smessage (SSUBSCRIBE); pmessage comes here too, by channel.
  using MessageCallback =
      std::function<void(std::string_view channel, std::string_view payload, bool sharded)>;

  // `loop` must outlive the client; every call and callback is on its thread.
  RedisClient(uv_loop_t* loop, RedisUrl url, RedisClientOptions options = {});
  // Drops pending callbacks uncalled; handles are released by the loop later,
  // so the loop must run once more before uv_loop_close. Safe inside any
  // callback of this client.
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Starts connecting; false if already connecting or connected (or without
  // memory). Every connect() that returns true is followed by exactly one
  // onDisconnected (unless the client is destroyed first), never from inside
  // connect() itself.
  bool connect();
  // Ends the connection now: pending callbacks get kDisconnected ("closed"),
  // then onDisconnected. No-op when not connected. Safe inside callbacks.
  void close() noexcept;

  // Queues a command (binary-safe arguments) and returns true; its callback
  // gets the reply, in command order. Commands queued while connecting are
  // sent once the server has answered AUTH (or PING). False, and the
  // callback is never called, when not connecting or connected, when `args`
  // is empty, or when the queued bytes would pass maxOutputBytes (counted in
  // droppedCommands()). A (S|P)SUBSCRIBE or (S|P)UNSUBSCRIBE gets one call,
  // after its last confirmation, with an array of the confirmations (one per
  // channel; without channels, an UNSUBSCRIBE gets one per subscription).
  bool command(std::span<const std::string_view> args, ReplyCallback callback = {});
  bool command(std::initializer_list<std::string_view> args, ReplyCallback callback = {}) {
    return command(std::span<const std::string_view>(args.begin(), args.size()),
                   std::move(callback));
  }

  // Once the server has accepted the connection (AUTH or PING answered).
  void onConnected(std::function<void()> fn) { onConnected_ = std::move(fn); }
  // Once per connect(): refused, timed out, AUTH failed, the server or the
  // network closed, a protocol error, or close(). Pending callbacks have had
  // their kDisconnected reply by then.
  void onDisconnected(std::function<void(std::string_view reason)> fn) {
    onDisconnected_ = std::move(fn);
  }
  // Messages of subscribed channels.
  void onMessage(MessageCallback fn) { onMessage_ = std::move(fn); }
  // A subscription change no command asked for (the server's "sunsubscribe"
  // when a slot moves in a cluster): the confirmation array.
  void onPush(std::function<void(RedisReply& push)> fn) { onPush_ = std::move(fn); }

  bool isConnected() const noexcept { return state_ == State::kReady; }
  // Whether the connection is in subscribe mode (at least one subscription).
  bool isSubscribed() const noexcept;
  // Bytes queued and not yet taken by the kernel.
  std::size_t bufferedBytes() const noexcept;
  // Commands refused because of maxOutputBytes.
  std::uint64_t droppedCommands() const noexcept { return dropped_; }
  const RedisUrl& url() const noexcept { return url_; }

 private:
  enum class State : std::uint8_t { kIdle, kResolving, kConnecting, kHandshake, kReady };
  // The command families whose replies are confirmations, one per channel.
  enum class Kind : std::uint8_t {
    kPlain,
    kHandshake,
    kReset,
    kSubscribe,
    kUnsubscribe,
    kPsubscribe,
    kPunsubscribe,
    kSsubscribe,
    kSunsubscribe,
  };
  struct Pending {
    ReplyCallback callback;
    Kind kind = Kind::kPlain;
    // Confirmations still due; -1 until known (an UNSUBSCRIBE without channels).
    std::int32_t due = 1;
    std::vector<std::string> channels;  // a SUNSUBSCRIBE's, to tell the server's own apart
    RedisReply confirmations;
  };
  struct Socket;
  struct Resolve;

  static Kind kindOf(std::string_view name) noexcept;
  // The subscriptions a confirmation of `kind` changes (channels, patterns, shard channels).
  std::unordered_set<std::string>& subscriptions(Kind kind) noexcept;

  void resolved(int status, addrinfo* result) noexcept;
  // Tries the next address; past the last, fails with the last error.
  void connectNext() noexcept;
  void closeSocket() noexcept;
  void connected(int status) noexcept;
  // The answer to AUTH or PING; false if the client was destroyed or the connection ended.
  bool handshakeAnswered(RedisReply& reply) noexcept;
  void scheduleFlush() noexcept;
  void flush() noexcept;
  void startWrite() noexcept;
  void written(int status) noexcept;
  void readBytes(ssize_t nread, const char* data) noexcept;
  // Routes one reply; false if the client was destroyed or the connection ended.
  bool dispatch(RedisReply& reply) noexcept;
  // Hands `reply` to the first pending callback; false if the client was destroyed.
  bool complete(RedisReply& reply) noexcept;
  // Ends the connection with `reason` (empty: failReason_): pending callbacks
  // get kDisconnected, then onDisconnected. Nothing of `this` is touched after.
  void fail(std::string reason) noexcept;
  // A failure found while connect() may still be on the stack: the timer reports it.
  void failSoon(std::string reason) noexcept;
  // Closes every handle and forgets the connection; no callback.
  void teardown() noexcept;
  // Runs user code (a throw is logged and ignored); false if it destroyed the client.
  template <class F>
  bool call(const char* what, F&& fn) noexcept;

  uv_loop_t* loop_;
  RedisUrl url_;
  RedisClientOptions options_;
  State state_ = State::kIdle;
  std::uint64_t generation_ = 0;  // counts connect(): a callback of an older one is stale
  Socket* socket_ = nullptr;
  Resolve* resolve_ = nullptr;
  uv_timer_t* timer_ = nullptr;      // the connect timeout, until the handshake is answered
  uv_prepare_t* prepare_ = nullptr;  // flushes out_ before the loop next waits
  redisReader* reader_ = nullptr;
  std::vector<sockaddr_storage> addresses_;
  std::size_t nextAddress_ = 0;
  std::string lastConnectError_;
  std::string failReason_;  // set by failSoon
  std::string handshake_;   // the formatted AUTH or PING
  std::string out_;         // formatted commands not yet handed to libuv
  std::deque<Pending> pending_;
  std::unordered_set<std::string> channels_, patterns_, shardChannels_;
  std::uint64_t dropped_ = 0;
  // Whether the client still exists, for the callers of user code that may
  // destroy it: freed by the destructor, or by the last call() running then.
  struct Liveness {
    bool alive = true;
    unsigned calls = 0;  // call()s on the stack
  };
  Liveness* liveness_;

  std::function<void()> onConnected_;
  std::function<void(std::string_view)> onDisconnected_;
  MessageCallback onMessage_;
  std::function<void(RedisReply&)> onPush_;
};

}  // namespace spry::detail
