#include "redis/redis_client.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <utility>

#include "spry/log.h"

namespace spry::detail {

namespace {

constexpr std::size_t kReadBufferBytes = 64 * 1024;
// A write buffer keeps its capacity for the next write up to this size.
constexpr std::size_t kKeptCapacity = 1 << 20;
// Commands with up to this many arguments are formatted without a heap array.
constexpr std::size_t kStackArgs = 8;
// hiredis 0.14.1 does not bound an array's announced length: reserve no more
// than this up front, the elements grow the rest.
constexpr int kMaxReserve = 1024;

template <class H>
void closeAndDelete(H* handle) noexcept {
  uv_close(reinterpret_cast<uv_handle_t*>(handle),
           [](uv_handle_t* h) { delete reinterpret_cast<H*>(h); });
}

void logThrow(const char* what, const char* detail) noexcept {
  try {
    log(LogLevel::kError, std::string("spry: Redis client: ") + what + " threw" +
                              (detail ? std::string(": ") + detail : " a non-standard exception") +
                              " (ignored)");
  } catch (...) {
  }
}

// hiredis builds replies straight into RedisReply: the root on the heap, each
// element in its parent's vector. Elements come in index order, and hiredis
// holds on to an element only while it is the array being filled (its parent
// does not grow meanwhile), so pointers into a vector stay valid while used.
// hiredis frees only roots (freeObject).
RedisReply* newReply(const redisReadTask* task, RedisReply::Type type) noexcept {
  try {
    if (!task->parent) {
      auto* root = new RedisReply;
      root->type = type;
      return root;
    }
    auto* parent = static_cast<RedisReply*>(task->parent->obj);
    if (static_cast<std::size_t>(task->idx) != parent->elements.size()) return nullptr;
    RedisReply& element = parent->elements.emplace_back();
    element.type = type;
    return &element;
  } catch (...) {
    return nullptr;  // hiredis reports it as out of memory
  }
}

void* createString(const redisReadTask* task, char* str, size_t len) {
  const auto type = task->type == REDIS_REPLY_ERROR    ? RedisReply::Type::kError
                    : task->type == REDIS_REPLY_STATUS ? RedisReply::Type::kStatus
                                                       : RedisReply::Type::kString;
  RedisReply* r = newReply(task, type);
  if (!r) return nullptr;
  try {
    r->str.assign(str, len);
  } catch (...) {
    if (!task->parent) delete r;
    return nullptr;
  }
  return r;
}

void* createArray(const redisReadTask* task, int elements) {
  RedisReply* r = newReply(task, RedisReply::Type::kArray);
  if (!r) return nullptr;
  try {
    r->elements.reserve(static_cast<std::size_t>(std::clamp(elements, 0, kMaxReserve)));
  } catch (...) {
    if (!task->parent) delete r;
    return nullptr;
  }
  return r;
}

void* createInteger(const redisReadTask* task, long long value) {
  RedisReply* r = newReply(task, RedisReply::Type::kInteger);
  if (r) r->integer = value;
  return r;
}

void* createNil(const redisReadTask* task) {
  return newReply(task, RedisReply::Type::kNil);
}

void freeObject(void* reply) {
  delete static_cast<RedisReply*>(reply);
}

redisReplyObjectFunctions kReplyFunctions = {createString, createArray, createInteger, createNil,
                                             freeObject};

bool equalsUpper(std::string_view s, std::string_view upper) noexcept {
  if (s.size() != upper.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != upper[i]) return false;
  }
  return true;
}

}  // namespace

// One TCP connection attempt. Its memory goes in the handle's close callback,
// after libuv has cancelled the connect and write requests (their callbacks
// see owner == nullptr by then).
struct RedisClient::Socket {
  RedisClient* owner = nullptr;
  bool writing = false;
  uv_tcp_t tcp;
  uv_connect_t connectReq;
  uv_write_t writeReq;
  std::string writeBuffer;  // the bytes of the write in flight
  char readBuffer[kReadBufferBytes];
};

// A getaddrinfo in flight: it may outlive the client (a cancelled request
// still calls back), so it is on its own.
struct RedisClient::Resolve {
  RedisClient* owner = nullptr;
  uv_getaddrinfo_t req;
};

RedisClient::RedisClient(uv_loop_t* loop, RedisUrl url, RedisClientOptions options)
    : loop_(loop), url_(std::move(url)), options_(options), liveness_(new Liveness) {}

RedisClient::~RedisClient() {
  // Inside a callback, call() frees the liveness once the callback returns.
  liveness_->alive = false;
  if (liveness_->calls == 0) delete liveness_;
  teardown();
}

template <class F>
bool RedisClient::call(const char* what, F&& fn) noexcept {
  Liveness* const liveness = liveness_;
  ++liveness->calls;
  try {
    fn();
  } catch (const std::exception& e) {
    logThrow(what, e.what());
  } catch (...) {
    logThrow(what, nullptr);
  }
  const bool alive = liveness->alive;
  if (--liveness->calls == 0 && !alive) delete liveness;
  return alive;
}

RedisClient::Kind RedisClient::kindOf(std::string_view name) noexcept {
  if (name.size() < 5 || name.size() > 12) return Kind::kPlain;
  if (equalsUpper(name, "SUBSCRIBE")) return Kind::kSubscribe;
  if (equalsUpper(name, "UNSUBSCRIBE")) return Kind::kUnsubscribe;
  if (equalsUpper(name, "PSUBSCRIBE")) return Kind::kPsubscribe;
  if (equalsUpper(name, "PUNSUBSCRIBE")) return Kind::kPunsubscribe;
  if (equalsUpper(name, "SSUBSCRIBE")) return Kind::kSsubscribe;
  if (equalsUpper(name, "SUNSUBSCRIBE")) return Kind::kSunsubscribe;
  if (equalsUpper(name, "RESET")) return Kind::kReset;
  return Kind::kPlain;
}

std::unordered_set<std::string>& RedisClient::subscriptions(Kind kind) noexcept {
  switch (kind) {
    case Kind::kPsubscribe:
    case Kind::kPunsubscribe:
      return patterns_;
    case Kind::kSsubscribe:
    case Kind::kSunsubscribe:
      return shardChannels_;
    default:
      return channels_;
  }
}

bool RedisClient::isSubscribed() const noexcept {
  return !channels_.empty() || !patterns_.empty() || !shardChannels_.empty();
}

std::size_t RedisClient::bufferedBytes() const noexcept {
  return out_.size() + (socket_ && socket_->writing ? socket_->writeBuffer.size() : 0);
}

// ---------------------------------------------------------------- connecting

bool RedisClient::connect() {
  if (state_ != State::kIdle) return false;
  reader_ = redisReaderCreateWithFunctions(&kReplyFunctions);
  timer_ = new (std::nothrow) uv_timer_t;
  prepare_ = new (std::nothrow) uv_prepare_t;
  if (!reader_ || !timer_ || !prepare_) {
    if (reader_) redisReaderFree(reader_);
    reader_ = nullptr;
    delete timer_;
    timer_ = nullptr;
    delete prepare_;
    prepare_ = nullptr;
    return false;
  }
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  uv_prepare_init(loop_, prepare_);
  prepare_->data = this;
  ++generation_;
  state_ = State::kResolving;

  // AUTH proves the server alive as well; without credentials a PING does.
  try {
    std::string_view args[3] = {"AUTH", url_.user, url_.password};
    std::span<const std::string_view> handshake(args, 3);
    if (!url_.hasCredentials()) {
      args[0] = "PING";
      handshake = handshake.first(1);
    } else if (url_.user.empty()) {
      args[1] = url_.password;
      handshake = handshake.first(2);
    }
    const char* argv[3];
    std::size_t lens[3];
    for (std::size_t i = 0; i < handshake.size(); ++i) {
      argv[i] = handshake[i].data();
      lens[i] = handshake[i].size();
    }
    char* formatted = nullptr;
    const int n =
        redisFormatCommandArgv(&formatted, static_cast<int>(handshake.size()), argv, lens);
    if (n < 0) throw std::bad_alloc();
    handshake_.assign(formatted, static_cast<std::size_t>(n));
    redisFreeCommand(formatted);
    pending_.emplace_back().kind = Kind::kHandshake;
  } catch (...) {
    failSoon("out of memory");
    return true;
  }

  if (options_.connectTimeout.count() > 0) {
    // From now, not from when the loop last looked at the clock.
    uv_update_time(loop_);
    uv_timer_start(
        timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<RedisClient*>(t->data);
          std::string reason = std::move(self->failReason_);
          if (reason.empty()) {
            reason = "connect timeout: " + self->url_.endpoint() + " did not answer within " +
                     std::to_string(self->options_.connectTimeout.count()) + " ms";
          }
          self->fail(std::move(reason));
        },
        static_cast<std::uint64_t>(options_.connectTimeout.count()), 0);
  }

  sockaddr_storage literal{};
  if (uv_ip4_addr(url_.host.c_str(), url_.port, reinterpret_cast<sockaddr_in*>(&literal)) == 0 ||
      uv_ip6_addr(url_.host.c_str(), url_.port, reinterpret_cast<sockaddr_in6*>(&literal)) == 0) {
    addresses_.push_back(literal);
    connectNext();
    return true;
  }
  resolve_ = new (std::nothrow) Resolve;
  if (!resolve_) {
    failSoon("out of memory");
    return true;
  }
  resolve_->owner = this;
  resolve_->req.data = resolve_;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const int rc = uv_getaddrinfo(
      loop_, &resolve_->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* result) {
        auto* r = static_cast<Resolve*>(req->data);
        RedisClient* owner = r->owner;
        delete r;
        if (owner) {
          owner->resolved(status, result);
        } else {
          uv_freeaddrinfo(result);
        }
      },
      url_.host.c_str(), std::to_string(url_.port).c_str(), &hints);
  if (rc != 0) {
    delete resolve_;
    resolve_ = nullptr;
    failSoon("cannot resolve " + url_.host + ": " + uv_strerror(rc));
  }
  return true;
}

void RedisClient::failSoon(std::string reason) noexcept {
  // connect() never calls back: the timer reports it from the loop.
  failReason_ = std::move(reason);
  uv_timer_start(
      timer_, [](uv_timer_t* t) { static_cast<RedisClient*>(t->data)->fail(""); }, 0, 0);
}

void RedisClient::resolved(int status, addrinfo* result) noexcept {
  resolve_ = nullptr;
  if (status < 0) {
    uv_freeaddrinfo(result);
    fail("cannot resolve " + url_.host + ": " + uv_strerror(status));
    return;
  }
  for (addrinfo* a = result; a; a = a->ai_next) {
    if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
        a->ai_addrlen > sizeof(sockaddr_storage)) {
      continue;
    }
    sockaddr_storage address{};
    std::memcpy(&address, a->ai_addr, a->ai_addrlen);
    try {
      addresses_.push_back(address);
    } catch (...) {
      break;
    }
  }
  uv_freeaddrinfo(result);
  if (addresses_.empty()) {
    fail("cannot resolve " + url_.host + ": no IPv4 or IPv6 address");
    return;
  }
  connectNext();
}

void RedisClient::connectNext() noexcept {
  // Each address in turn ("localhost" may be ::1 first while Redis listens
  // on 127.0.0.1 only), all within the one connect timeout.
  if (nextAddress_ >= addresses_.size()) {
    failSoon("cannot connect to " + url_.endpoint() + ": " + lastConnectError_);
    return;
  }
  const sockaddr_storage& address = addresses_[nextAddress_++];
  auto* s = new (std::nothrow) Socket;
  if (!s) {
    failSoon("out of memory");
    return;
  }
  const int init = uv_tcp_init(loop_, &s->tcp);
  if (init != 0) {
    delete s;
    failSoon(std::string("cannot make a TCP handle: ") + uv_strerror(init));
    return;
  }
  s->owner = this;
  s->tcp.data = s;
  s->connectReq.data = s;
  s->writeReq.data = s;
  socket_ = s;
  state_ = State::kConnecting;
  const int rc =
      uv_tcp_connect(&s->connectReq, &s->tcp, reinterpret_cast<const sockaddr*>(&address),
                     [](uv_connect_t* req, int status) {
                       auto* sock = static_cast<Socket*>(req->data);
                       if (sock->owner) sock->owner->connected(status);
                     });
  if (rc != 0) {
    lastConnectError_ = uv_strerror(rc);
    closeSocket();
    connectNext();
  }
}

void RedisClient::closeSocket() noexcept {
  Socket* s = socket_;
  socket_ = nullptr;
  s->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&s->tcp),
           [](uv_handle_t* h) { delete static_cast<Socket*>(h->data); });
}

void RedisClient::connected(int status) noexcept {
  if (status < 0) {
    lastConnectError_ = uv_strerror(status);
    closeSocket();
    connectNext();
    return;
  }
  uv_tcp_nodelay(&socket_->tcp, 1);
  state_ = State::kHandshake;
  const int rc = uv_read_start(
      reinterpret_cast<uv_stream_t*>(&socket_->tcp),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* sock = static_cast<Socket*>(h->data);
        *buf = uv_buf_init(sock->readBuffer, sizeof(sock->readBuffer));
      },
      [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
        auto* sock = static_cast<Socket*>(stream->data);
        if (sock->owner) sock->owner->readBytes(nread, buf->base);
      });
  if (rc != 0) {
    fail(std::string("cannot read from ") + url_.endpoint() + ": " + uv_strerror(rc));
    return;
  }
  socket_->writeBuffer.swap(handshake_);
  startWrite();
}

bool RedisClient::handshakeAnswered(RedisReply& reply) noexcept {
  if (reply.type == RedisReply::Type::kError) {
    fail((url_.hasCredentials() ? "AUTH failed: " : "the server refused PING: ") + reply.str);
    return false;
  }
  state_ = State::kReady;
  closeAndDelete(timer_);
  timer_ = nullptr;
  scheduleFlush();
  return call("onConnected", [this] {
    if (onConnected_) onConnected_();
  });
}

// ---------------------------------------------------------------- writing

bool RedisClient::command(std::span<const std::string_view> args, ReplyCallback callback) {
  if (state_ == State::kIdle || args.empty()) return false;
  const char* argvStack[kStackArgs];
  std::size_t lensStack[kStackArgs];
  std::vector<const char*> argvHeap;
  std::vector<std::size_t> lensHeap;
  const char** argv = argvStack;
  std::size_t* lens = lensStack;
  if (args.size() > kStackArgs) {
    argvHeap.resize(args.size());
    lensHeap.resize(args.size());
    argv = argvHeap.data();
    lens = lensHeap.data();
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    argv[i] = args[i].data();
    lens[i] = args[i].size();
  }
  char* formatted = nullptr;
  const int n = redisFormatCommandArgv(&formatted, static_cast<int>(args.size()), argv, lens);
  if (n < 0) throw std::bad_alloc();
  std::unique_ptr<char, void (*)(char*)> owned(formatted, redisFreeCommand);
  if (bufferedBytes() + static_cast<std::size_t>(n) > options_.maxOutputBytes) {
    ++dropped_;
    return false;
  }

  Pending p;
  p.callback = std::move(callback);
  p.kind = kindOf(args[0]);
  if (p.kind != Kind::kPlain && p.kind != Kind::kReset) {
    const auto channels = static_cast<std::int32_t>(args.size() - 1);
    const bool unsubscribe = p.kind == Kind::kUnsubscribe || p.kind == Kind::kPunsubscribe ||
                             p.kind == Kind::kSunsubscribe;
    // Without channels an UNSUBSCRIBE is confirmed once per subscription it
    // ends: counted when its turn comes. A SUBSCRIBE without any gets an error.
    p.due = channels > 0 ? channels : unsubscribe ? -1 : 1;
    p.confirmations.type = RedisReply::Type::kArray;
    if (p.kind == Kind::kSunsubscribe) {
      for (std::size_t i = 1; i < args.size(); ++i) p.channels.emplace_back(args[i]);
    }
  }
  pending_.push_back(std::move(p));
  try {
    out_.append(formatted, static_cast<std::size_t>(n));
  } catch (...) {
    pending_.pop_back();
    throw;
  }
  scheduleFlush();
  return true;
}

void RedisClient::scheduleFlush() noexcept {
  // Commands queued during this callback go out together, before the loop
  // next waits; a write in flight takes them when it completes.
  if (state_ != State::kReady || out_.empty() || socket_->writing) return;
  uv_prepare_start(prepare_, [](uv_prepare_t* p) {
    auto* self = static_cast<RedisClient*>(p->data);
    uv_prepare_stop(p);
    self->flush();
  });
}

void RedisClient::flush() noexcept {
  if (state_ != State::kReady || out_.empty() || socket_->writing) return;
  socket_->writeBuffer.swap(out_);
  startWrite();
}

void RedisClient::startWrite() noexcept {
  Socket* s = socket_;
  uv_buf_t buf = uv_buf_init(s->writeBuffer.data(), static_cast<unsigned>(s->writeBuffer.size()));
  const int rc = uv_write(&s->writeReq, reinterpret_cast<uv_stream_t*>(&s->tcp), &buf, 1,
                          [](uv_write_t* req, int status) {
                            auto* sock = static_cast<Socket*>(req->data);
                            sock->writing = false;
                            if (sock->owner) sock->owner->written(status);
                          });
  if (rc != 0) {
    fail(std::string("cannot write to ") + url_.endpoint() + ": " + uv_strerror(rc));
    return;
  }
  s->writing = true;
}

void RedisClient::written(int status) noexcept {
  if (status < 0) {
    fail(std::string("cannot write to ") + url_.endpoint() + ": " + uv_strerror(status));
    return;
  }
  std::string& buffer = socket_->writeBuffer;
  if (buffer.capacity() > kKeptCapacity) {
    std::string().swap(buffer);
  } else {
    buffer.clear();
  }
  flush();
}

// ---------------------------------------------------------------- reading

void RedisClient::readBytes(ssize_t nread, const char* data) noexcept {
  if (nread == 0) return;
  if (nread < 0) {
    fail(nread == UV_EOF
             ? url_.endpoint() + " closed the connection"
             : "cannot read from " + url_.endpoint() + ": " + uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (redisReaderFeed(reader_, data, static_cast<std::size_t>(nread)) != REDIS_OK) {
    fail("out of memory");
    return;
  }
  const std::uint64_t generation = generation_;
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
      fail(std::string("protocol error from ") + url_.endpoint() + ": " + reader_->errstr);
      return;
    }
    if (!raw) return;
    std::unique_ptr<RedisReply> reply(static_cast<RedisReply*>(raw));
    // A callback may have closed this connection, even started another.
    if (!dispatch(*reply) || generation_ != generation || state_ == State::kIdle) return;
  }
}

namespace {

// The confirmation a reply is, by its shape: [kind, channel or nil, count].
std::string_view confirmationName(const RedisReply& r) noexcept {
  if (r.type != RedisReply::Type::kArray || r.elements.size() != 3) return {};
  const auto& e = r.elements;
  if (e[0].type != RedisReply::Type::kString || e[2].type != RedisReply::Type::kInteger ||
      (e[1].type != RedisReply::Type::kString && e[1].type != RedisReply::Type::kNil)) {
    return {};
  }
  return e[0].str;
}

bool isString(const RedisReply& r) noexcept {
  return r.type == RedisReply::Type::kString;
}

}  // namespace

bool RedisClient::dispatch(RedisReply& reply) noexcept {
  // Only in subscribe mode can an array be a message: elsewhere
  // ["message", a, b] is just what LRANGE found.
  if (isSubscribed() && reply.type == RedisReply::Type::kArray && !reply.elements.empty() &&
      isString(reply.elements[0])) {
    const auto& e = reply.elements;
    const std::string_view name = e[0].str;
    if ((name == "message" || name == "smessage") && e.size() == 3 && isString(e[1]) &&
        isString(e[2])) {
      return call("onMessage", [&] {
        if (onMessage_) onMessage_(e[1].str, e[2].str, name[0] == 's');
      });
    }
    if (name == "pmessage" && e.size() == 4 && isString(e[2]) && isString(e[3])) {
      return call("onMessage", [&] {
        if (onMessage_) onMessage_(e[2].str, e[3].str, false);
      });
    }
  }

  if (const std::string_view name = confirmationName(reply); !name.empty()) {
    const Kind kind = name == "subscribe"      ? Kind::kSubscribe
                      : name == "unsubscribe"  ? Kind::kUnsubscribe
                      : name == "psubscribe"   ? Kind::kPsubscribe
                      : name == "punsubscribe" ? Kind::kPunsubscribe
                      : name == "ssubscribe"   ? Kind::kSsubscribe
                      : name == "sunsubscribe" ? Kind::kSunsubscribe
                                               : Kind::kPlain;
    Pending* front = pending_.empty() ? nullptr : &pending_.front();
    bool ours = kind != Kind::kPlain && front && front->kind == kind;
    const RedisReply& channel = reply.elements[1];
    if (ours && !front->channels.empty()) {
      // A SUNSUBSCRIBE's channel, or the server's own (a slot moved).
      auto it = std::find(front->channels.begin(), front->channels.end(), channel.str);
      ours = it != front->channels.end();
      if (ours) front->channels.erase(it);
    }
    if (kind != Kind::kPlain && (ours || isSubscribed())) {
      auto& set = subscriptions(kind);
      if (ours && front->due < 0)
        front->due = std::max<std::int32_t>(1, static_cast<std::int32_t>(set.size()));
      try {
        if (channel.type == RedisReply::Type::kString) {
          if (kind == Kind::kSubscribe || kind == Kind::kPsubscribe || kind == Kind::kSsubscribe) {
            set.insert(channel.str);
          } else {
            set.erase(channel.str);
          }
        }
        if (!ours) {
          return call("onPush", [&] {
            if (onPush_) onPush_(reply);
          });
        }
        front->confirmations.elements.push_back(std::move(reply));
      } catch (...) {
        fail("out of memory");
        return false;
      }
      if (--front->due > 0) return true;
      RedisReply confirmations = std::move(front->confirmations);
      return complete(confirmations);
    }
  }

  if (pending_.empty()) {
    fail("protocol error from " + url_.endpoint() + ": a reply no command asked for");
    return false;
  }
  switch (pending_.front().kind) {
    case Kind::kHandshake:
      pending_.pop_front();
      return handshakeAnswered(reply);
    case Kind::kReset:
      // RESET leaves subscribe mode.
      if (reply.type == RedisReply::Type::kStatus) {
        channels_.clear();
        patterns_.clear();
        shardChannels_.clear();
      }
      break;
    default:
      break;
  }
  return complete(reply);
}

bool RedisClient::complete(RedisReply& reply) noexcept {
  ReplyCallback callback = std::move(pending_.front().callback);
  pending_.pop_front();
  if (!callback) return true;
  return call("a reply callback", [&] { callback(reply); });
}

// ---------------------------------------------------------------- closing

void RedisClient::close() noexcept {
  if (state_ == State::kIdle) return;
  fail("closed by the client");
}

void RedisClient::fail(std::string reason) noexcept {
  if (state_ == State::kIdle) return;
  if (reason.empty()) reason = std::move(failReason_);
  std::deque<Pending> pending = std::move(pending_);
  pending_.clear();
  teardown();
  // Each callback may close, connect again or destroy the client: from here
  // on only the locals are ours.
  for (auto& p : pending) {
    if (!p.callback) continue;
    RedisReply lost;
    lost.type = RedisReply::Type::kDisconnected;
    try {
      lost.str = reason;
    } catch (...) {
    }
    if (!call("a reply callback", [&] { p.callback(lost); })) return;
  }
  call("onDisconnected", [&] {
    if (onDisconnected_) onDisconnected_(reason);
  });
}

void RedisClient::teardown() noexcept {
  state_ = State::kIdle;
  if (resolve_) {
    resolve_->owner = nullptr;  // its callback frees it
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_->req));
    resolve_ = nullptr;
  }
  if (socket_) closeSocket();
  if (timer_) closeAndDelete(timer_);
  timer_ = nullptr;
  if (prepare_) closeAndDelete(prepare_);
  prepare_ = nullptr;
  if (reader_) redisReaderFree(reader_);
  reader_ = nullptr;
  addresses_.clear();
  nextAddress_ = 0;
  lastConnectError_.clear();
  failReason_.clear();
  handshake_.clear();
  out_.clear();
  pending_.clear();
  channels_.clear();
  patterns_.clear();
  shardChannels_.clear();
}

}  // namespace spry::detail
