#include "redis/pubsub_bridge.h"

#include <random>
#include <utility>

#include "spry/log.h"

namespace spry::detail {

namespace {

// SUBSCRIBE commands carry at most this many channels each.
constexpr std::size_t kChannelsPerCommand = 256;

void note(LogLevel level, std::string_view what, std::string_view detail = {}) noexcept {
  try {
    std::string line = "spry: Redis bridge: ";
    line.append(what);
    line.append(detail);
    log(level, line);
  } catch (...) {
  }
}

OriginId randomOrigin() {
  OriginId id{};
  std::random_device device;
  for (std::size_t i = 0; i < id.size(); i += 4) {
    const unsigned word = device();
    for (std::size_t j = 0; j < 4 && i + j < id.size(); ++j) {
      id[i + j] = static_cast<char>(word >> (8 * j));
    }
  }
  return id;
}

}  // namespace

PubSubBridge::PubSubBridge(const RedisBridge& config, Hooks hooks)
    : url_(RedisUrl::parse(config.url())),
      options_(config.options()),
      hooks_(std::move(hooks)),
      origin_(randomOrigin()) {}

PubSubBridge::~PubSubBridge() {
  stop();
}

// ---------------------------------------------------------------- any thread

void PubSubBridge::start() noexcept {
  if (thread_.joinable()) return;
  if (const int rc = uv_loop_init(&loop_); rc != 0) {
    note(LogLevel::kError, "cannot create its event loop, pub/sub stays local: ", uv_strerror(rc));
    return;
  }
  try {
    uv_async_init(&loop_, &async_,
                  [](uv_async_t* a) { static_cast<PubSubBridge*>(a->data)->drain(); });
    async_.data = this;
    uv_timer_init(&loop_, &retry_);
    retry_.data = this;
    const RedisClientOptions clientOptions{.connectTimeout = options_.connectTimeout,
                                           .maxOutputBytes = options_.maxBufferBytes};
    pub_ = std::make_unique<RedisClient>(&loop_, url_, clientOptions);
    sub_ = std::make_unique<RedisClient>(&loop_, url_, clientOptions);
    pub_->onConnected([this] { clientUp(true); });
    sub_->onConnected([this] { clientUp(false); });
    pub_->onDisconnected([this](std::string_view reason) { clientLost(true, reason); });
    sub_->onDisconnected([this](std::string_view reason) { clientLost(false, reason); });
    sub_->onMessage([this](std::string_view channel, std::string_view payload, bool) {
      received(channel, payload);
    });
    backoff_ =
        Backoff(BackoffOptions{.initial = options_.reconnectInitial, .max = options_.reconnectMax});
    reconnects_ = published_ = received_ = dropped_ = 0;
    everUp_ = outageLogged_ = false;
    {
      std::lock_guard lock(mutex_);
      accepting_ = true;
      stopping_ = false;
    }
    thread_ = std::thread([this] { run(); });
  } catch (const std::exception& e) {
    note(LogLevel::kError, "cannot start, pub/sub stays local: ", e.what());
    {
      std::lock_guard lock(mutex_);
      accepting_ = false;
    }
    pub_.reset();
    sub_.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&retry_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
}

void PubSubBridge::stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    if (accepting_) {
      accepting_ = false;
      stopping_ = true;
      uv_async_send(&async_);
    }
  }
  if (thread_.joinable()) thread_.join();
}

void PubSubBridge::publish(std::string_view topic, const Message& message) {
  if (!connected_.load(std::memory_order_relaxed)) {
    // Also before the first connection: at most once, never queued for later.
    std::lock_guard lock(mutex_);
    if (accepting_) dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  Outgoing out;
  out.channel.reserve(options_.channelPrefix.size() + topic.size());
  out.channel.append(options_.channelPrefix).append(topic);
  out.envelope = encodeEnvelope(origin_, message.type(), message.data());
  const std::size_t bytes = out.channel.size() + out.envelope.size();
  std::lock_guard lock(mutex_);
  if (!accepting_) return;
  if (outboxBytes_ + bytes > options_.maxBufferBytes) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  outbox_.push_back(std::move(out));
  outboxBytes_ += bytes;
  // Under the lock: shutdown closes async_ only after seeing stopping_.
  uv_async_send(&async_);
}

void PubSubBridge::topicChanged(std::string_view topic) noexcept {
  std::lock_guard lock(mutex_);
  if (!accepting_) return;
  try {
    changed_.emplace_back(topic);
  } catch (...) {
    note(LogLevel::kError, "out of memory: a subscription change is lost");
    return;
  }
  uv_async_send(&async_);
}

BridgeStats PubSubBridge::stats() const noexcept {
  BridgeStats s;
  s.enabled = true;
  s.connected = connected_.load(std::memory_order_relaxed);
  s.reconnects = reconnects_.load(std::memory_order_relaxed);
  s.published = published_.load(std::memory_order_relaxed);
  s.received = received_.load(std::memory_order_relaxed);
  s.dropped = dropped_.load(std::memory_order_relaxed);
  return s;
}

// ---------------------------------------------------------------- bridge thread

void PubSubBridge::run() noexcept {
  connectLink();
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop_) != 0) note(LogLevel::kError, "its loop still had open handles");
}

void PubSubBridge::drain() noexcept {
  std::vector<Outgoing> outbox;
  std::vector<std::string> changed;
  bool stopping = false;
  {
    std::lock_guard lock(mutex_);
    outbox.swap(outbox_);
    outboxBytes_ = 0;
    changed.swap(changed_);
    stopping = stopping_;
  }
  if (stopping) {
    dropped_.fetch_add(outbox.size(), std::memory_order_relaxed);
    shutdown();
    return;
  }
  try {
    for (const auto& topic : changed) reconcile(topic);
  } catch (...) {
    note(LogLevel::kError, "cannot update subscriptions (out of memory)");
  }
  for (auto& out : outbox) send(out);
}

void PubSubBridge::send(Outgoing& out) {
  if (link_ != Link::kUp) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  bool queued = false;
  try {
    queued = pub_->command({"PUBLISH", out.channel, out.envelope}, [this](RedisReply& reply) {
      (reply.isError() ? dropped_ : published_).fetch_add(1, std::memory_order_relaxed);
    });
  } catch (...) {
  }
  // Refused past maxBufferBytes: Redis is not taking our bytes.
  if (!queued) dropped_.fetch_add(1, std::memory_order_relaxed);
}

void PubSubBridge::shutdown() noexcept {
  connected_ = false;
  link_ = Link::kDown;
  // The clients release their handles through this loop, without callbacks.
  pub_.reset();
  sub_.reset();
  subscribed_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&retry_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
}

void PubSubBridge::connectLink() noexcept {
  link_ = Link::kConnecting;
  pubUp_ = subUp_ = false;
  pubActive_ = pub_->connect();
  subActive_ = sub_->connect();
  if (pubActive_ && subActive_) return;
  note(LogLevel::kError, "cannot start connecting (out of memory?)");
  // A close reports through clientLost, which retries once both are down.
  if (pubActive_) {
    pub_->close();
  } else if (subActive_) {
    sub_->close();
  } else {
    link_ = Link::kDown;
    scheduleRetry();
  }
}

void PubSubBridge::clientUp(bool publisher) noexcept {
  (publisher ? pubUp_ : subUp_) = true;
  if (!pubUp_ || !subUp_) return;
  link_ = Link::kUp;
  backoff_.reset();
  if (everUp_) reconnects_.fetch_add(1, std::memory_order_relaxed);
  everUp_ = true;
  outageLogged_ = false;
  connected_ = true;
  note(LogLevel::kInfo, "connected to ", url_.endpoint());
  try {
    subscribed_.clear();
    subscribe(hooks_.liveTopics());
  } catch (...) {
    note(LogLevel::kError, "cannot subscribe again (out of memory)");
  }
}

void PubSubBridge::clientLost(bool publisher, std::string_view reason) noexcept {
  (publisher ? pubActive_ : subActive_) = false;
  (publisher ? pubUp_ : subUp_) = false;
  if (!outageLogged_) {
    outageLogged_ = true;
    try {
      note(LogLevel::kWarn, link_ == Link::kUp ? "lost " : "cannot reach ",
           url_.endpoint() + " (" + std::string(reason) +
               "); publishes are dropped until it is back, retrying");
    } catch (...) {
    }
  }
  link_ = Link::kDown;
  connected_ = false;
  subscribed_.clear();
  // The other connection goes down too; its clientLost schedules the retry.
  bool& otherActive = publisher ? subActive_ : pubActive_;
  if (otherActive) {
    (publisher ? sub_ : pub_)->close();
    return;
  }
  scheduleRetry();
}

void PubSubBridge::scheduleRetry() noexcept {
  const auto delay = backoff_.next();
  uv_timer_start(
      &retry_, [](uv_timer_t* t) { static_cast<PubSubBridge*>(t->data)->connectLink(); },
      static_cast<std::uint64_t>(delay.count()), 0);
}

void PubSubBridge::reconcile(const std::string& topic) {
  // Before the link is up there is nothing to change: clientUp subscribes
  // to whatever is live then.
  if (link_ != Link::kUp) return;
  const bool wanted = hooks_.isLive(topic);
  const bool held = subscribed_.contains(topic);
  if (wanted && !held) {
    subscribe({topic});
  } else if (!wanted && held) {
    const std::string channel = options_.channelPrefix + topic;
    subscribed_.erase(topic);
    sub_->command({"UNSUBSCRIBE", channel});
  }
}

void PubSubBridge::subscribe(const std::vector<std::string>& topics) {
  std::vector<std::string> channels;
  std::vector<std::string_view> args;
  for (std::size_t i = 0; i < topics.size(); i += kChannelsPerCommand) {
    const std::size_t end = std::min(topics.size(), i + kChannelsPerCommand);
    channels.clear();
    args.assign(1, "SUBSCRIBE");
    for (std::size_t j = i; j < end; ++j) channels.push_back(options_.channelPrefix + topics[j]);
    for (const auto& c : channels) args.emplace_back(c);
    const bool queued = sub_->command(args, [](RedisReply& reply) {
      if (reply.type == RedisReply::Type::kError) {
        note(LogLevel::kError, "SUBSCRIBE refused: ", reply.str);
      }
    });
    if (!queued) {
      note(LogLevel::kError, "SUBSCRIBE not sent: the output buffer is full");
      continue;
    }
    for (std::size_t j = i; j < end; ++j) subscribed_.insert(topics[j]);
  }
}

void PubSubBridge::received(std::string_view channel, std::string_view payload) noexcept {
  if (!channel.starts_with(options_.channelPrefix)) return;
  const std::string_view topic = channel.substr(options_.channelPrefix.size());
  const DecodedEnvelope d = decodeEnvelope(payload);
  switch (d.status) {
    case DecodedEnvelope::Status::kInvalid:
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    case DecodedEnvelope::Status::kOk:
      // Our own publish, back from Redis: local subscribers had it already.
      if (d.origin == origin_) return;
      break;
    case DecodedEnvelope::Status::kForeign:
      break;
  }
  // Counted first: a client may see the message before deliver() returns.
  received_.fetch_add(1, std::memory_order_relaxed);
  try {
    hooks_.deliver(topic, Message::view(d.type, d.payload));
  } catch (...) {
    // Out of memory while framing or queueing it for the loops.
    received_.fetch_sub(1, std::memory_order_relaxed);
    dropped_.fetch_add(1, std::memory_order_relaxed);
    note(LogLevel::kError, "cannot deliver a message (out of memory)");
  }
}

}  // namespace spry::detail
