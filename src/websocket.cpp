#include "spry/websocket.h"

#include "connection.h"
#include "loop_context.h"
#include "ws/utf8.h"
#include "ws/websocket_session.h"

namespace spry {

namespace {
using detail::Connection;

// The connection this handle names, if it still exists. Reads nothing that
// the loop thread changes (wsId is fixed before any handle exists), so any
// thread may call it.
std::shared_ptr<Connection> named(const std::weak_ptr<Connection>& weak,
                                  std::uint64_t id) noexcept {
  auto c = weak.lock();
  if (!c || c->wsId() != id) return nullptr;
  return c;
}

// For calls that belong on the socket's loop: the connection while open
// enough to use, after checking the thread.
std::shared_ptr<Connection> onLoop(const std::weak_ptr<Connection>& weak, std::uint64_t id,
                                   const char* what) {
  auto c = named(weak, id);
  if (!c) return nullptr;
  if (!c->loopContext().isCurrentThread()) {
    throw std::logic_error(std::string("spry: WebSocket::") + what +
                           " called off the socket's loop thread (only add, close, ping and "
                           "publish may be; or use ws.loop().post)");
  }
  return c->isClosed() ? nullptr : c;
}

// Runs `op` on the socket's loop: now when already there, else posted (in
// order with the caller's other posts). Returns op's result, or true once posted.
template <class Op>
bool onSocketLoop(const std::weak_ptr<Connection>& weak, std::uint64_t id, Op op) {
  auto c = named(weak, id);
  if (!c) return false;
  if (c->loopContext().isCurrentThread()) return !c->isClosed() && op(*c);
  // Shared: `c` may be the last owner of the connection, and it of the loop.
  auto loop = c->loopContext().shared_from_this();
  c.reset();
  return loop->post([weak, id, op = std::move(op)]() mutable {
    auto conn = named(weak, id);
    if (conn && !conn->isClosed()) op(*conn);
  });
}

void checkCloseArguments(std::uint16_t code, std::string_view reason) {
  if (!detail::isValidCloseCode(code)) {
    throw std::invalid_argument("spry: WebSocket::close: code " + std::to_string(code) +
                                " may not be sent (use 1000-1003, 1007-1014 or 3000-4999)");
  }
  if (reason.size() > 123) {
    throw std::invalid_argument("spry: WebSocket::close: reason is " +
                                std::to_string(reason.size()) + " bytes, at most 123 fit");
  }
  if (!detail::isValidUtf8(reason)) {
    throw std::invalid_argument("spry: WebSocket::close: reason is not valid UTF-8");
  }
}
}  // namespace

bool WebSocket::listen(std::function<void(const Message&)> onMessage) const {
  auto c = onLoop(conn_, id_, "listen");
  return c && c->wsListen(std::move(onMessage));
}

bool WebSocket::onClose(std::function<void(std::uint16_t, std::string_view)> fn) const {
  auto c = onLoop(conn_, id_, "onClose");
  return c && c->wsOnClose(std::move(fn));
}

bool WebSocket::onDrain(std::function<void()> fn) const {
  auto c = onLoop(conn_, id_, "onDrain");
  return c && c->wsOnDrain(std::move(fn));
}

bool WebSocket::add(const Message& message) const {
  auto c = named(conn_, id_);
  if (!c) return false;
  if (c->loopContext().isCurrentThread()) return !c->isClosed() && c->wsSend(message);
  // Off the loop: report a bad message to this caller, then post an owned copy.
  if (message.isText() && !detail::isValidUtf8(message.data())) {
    throw std::invalid_argument("spry: WebSocket::add: text message is not valid UTF-8");
  }
  c.reset();
  return onSocketLoop(conn_, id_,
                      [m = message.owned()](Connection& conn) { return conn.wsSend(m); });
}

bool WebSocket::add(std::string_view text) const {
  return add(Message::view(Message::Type::kText, text));
}

bool WebSocket::add(std::span<const std::byte> bytes) const {
  return add(
      Message::view(Message::Type::kBinary,
                    std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())));
}

bool WebSocket::addStream(std::function<std::optional<Message>()> next,
                          std::function<void()> done) const {
  if (!next) throw std::invalid_argument("spry: WebSocket::addStream needs a source function");
  auto c = onLoop(conn_, id_, "addStream");
  return c && c->wsAddStream(std::move(next), std::move(done));
}

bool WebSocket::close(std::uint16_t code, std::string_view reason) const {
  checkCloseArguments(code, reason);
  return onSocketLoop(conn_, id_, [code, r = std::string(reason)](Connection& conn) {
    return conn.wsClose(code, r);
  });
}

bool WebSocket::ping(std::string_view payload) const {
  if (payload.size() > 125) {
    throw std::invalid_argument("spry: WebSocket::ping: payload is " +
                                std::to_string(payload.size()) + " bytes, at most 125 fit");
  }
  return onSocketLoop(conn_, id_,
                      [p = std::string(payload)](Connection& conn) { return conn.wsPing(p); });
}

bool WebSocket::subscribe(std::string_view topic) const {
  auto c = onLoop(conn_, id_, "subscribe");
  return c && c->wsSubscribe(topic);
}

bool WebSocket::unsubscribe(std::string_view topic) const {
  auto c = onLoop(conn_, id_, "unsubscribe");
  return c && c->wsUnsubscribe(topic);
}

bool WebSocket::isSubscribed(std::string_view topic) const {
  auto c = onLoop(conn_, id_, "isSubscribed");
  return c && c->wsIsSubscribed(topic);
}

bool WebSocket::publish(std::string_view topic, const Message& message) const {
  auto c = named(conn_, id_);
  if (!c) return false;
  if (c->loopContext().isCurrentThread() && c->wsReadyState() != ReadyState::kOpen) return false;
  if (message.isText() && !detail::isValidUtf8(message.data())) {
    throw std::invalid_argument("spry: WebSocket::publish: text message is not valid UTF-8");
  }
  return c->app().publish(topic, message, c.get());
}

ReadyState WebSocket::readyState() const noexcept {
  auto c = named(conn_, id_);
  if (!c || !c->loopContext().isCurrentThread() || c->isClosed()) return ReadyState::kClosed;
  return c->wsReadyState();
}

std::optional<std::uint16_t> WebSocket::closeCode() const noexcept {
  auto c = named(conn_, id_);
  return c && c->loopContext().isCurrentThread() ? c->wsCloseCode() : std::nullopt;
}

std::string WebSocket::closeReason() const {
  auto c = named(conn_, id_);
  return c && c->loopContext().isCurrentThread() && c->wsCloseCode() ? c->wsCloseReason()
                                                                     : std::string();
}

std::string WebSocket::protocol() const {
  auto c = named(conn_, id_);
  return c ? c->wsProtocol() : std::string();
}

std::size_t WebSocket::bufferedAmount() const noexcept {
  auto c = named(conn_, id_);
  return c && c->loopContext().isCurrentThread() && !c->isClosed() ? c->bufferedAmount() : 0;
}

std::string WebSocket::remoteAddress() const {
  auto c = named(conn_, id_);
  return c ? c->wsRemoteAddress() : std::string();
}

Loop WebSocket::loop() const {
  auto c = conn_.lock();
  return c ? c->loop() : Loop();
}

void WebSocket::putData(const std::type_info& type, std::shared_ptr<void> value) const {
  if (auto c = onLoop(conn_, id_, "setData")) c->wsPutData(type, std::move(value));
}

void* WebSocket::getData(const std::type_info& type) const noexcept {
  // Not onLoop(): onClose may still read the data, which is released after it.
  auto c = named(conn_, id_);
  return c && c->loopContext().isCurrentThread() ? c->wsGetData(type) : nullptr;
}

}  // namespace spry
