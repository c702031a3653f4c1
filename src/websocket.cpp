#include "spry/websocket.h"

#include "app_state.h"
#include "loop_context.h"
#include "ws/utf8.h"
#include "ws/websocket_endpoint.h"

namespace spry {

namespace {
using detail::WebSocketEndpoint;
using Endpoint = std::shared_ptr<WebSocketEndpoint>;

// For calls that belong on the socket's loop: the endpoint while open enough
// to use, after checking the thread. Any thread may lock the handle: the
// endpoint's connection and loop are fixed for its life.
Endpoint onOwnLoop(const std::weak_ptr<WebSocketEndpoint>& weak, const char* what) {
  auto e = weak.lock();
  if (!e) return nullptr;
  if (!e->loopContext().isCurrentThread()) {
    throw std::logic_error(std::string("spry: WebSocket::") + what +
                           " called off the socket's loop thread (only add, close, ping and "
                           "publish may be; or use ws.loop().post)");
  }
  return e->isClosed() ? nullptr : e;
}

// The endpoint when the caller runs on its loop, else null (a read from
// another thread sees nothing rather than racing).
Endpoint onThisThread(const std::weak_ptr<WebSocketEndpoint>& weak) noexcept {
  auto e = weak.lock();
  return e && e->loopContext().isCurrentThread() ? e : nullptr;
}

// Runs `op` on the socket's loop: now when already there, else posted (in
// order with the caller's other posts). Returns op's result, or true once posted.
template <class Op>
bool runOnLoop(const std::weak_ptr<WebSocketEndpoint>& weak, Op op) {
  auto e = weak.lock();
  if (!e) return false;
  if (e->loopContext().isCurrentThread()) return !e->isClosed() && op(*e);
  // Shared: `e` may be the last owner of the connection, and it of the loop.
  auto loop = e->loopContext().shared_from_this();
  e.reset();
  return loop->post([weak, op = std::move(op)]() mutable {
    auto endpoint = weak.lock();
    if (endpoint && !endpoint->isClosed()) op(*endpoint);
  });
}

void checkCloseArguments(std::uint16_t code, std::string_view reason) {
  if (!detail::isValidCloseCode(code)) {
    throw std::invalid_argument("spry: WebSocket::close: code " + std::to_string(code) +
                                " may not be sent (use 1000-1003, 1007-1014 or 3000-4999)");
  }
  if (reason.size() > detail::kMaxCloseReason) {
    throw std::invalid_argument("spry: WebSocket::close: reason is " +
                                std::to_string(reason.size()) + " bytes, at most 123 fit");
  }
  if (!detail::isValidUtf8(reason)) {
    throw std::invalid_argument("spry: WebSocket::close: reason is not valid UTF-8");
  }
}
}  // namespace

bool WebSocket::listen(std::function<void(const Message&)> onMessage) const {
  auto e = onOwnLoop(endpoint_, "listen");
  return e && e->listen(std::move(onMessage));
}

bool WebSocket::onClose(std::function<void(std::uint16_t, std::string_view)> fn) const {
  auto e = onOwnLoop(endpoint_, "onClose");
  return e && e->onClose(std::move(fn));
}

bool WebSocket::onDrain(std::function<void()> fn) const {
  auto e = onOwnLoop(endpoint_, "onDrain");
  return e && e->onDrain(std::move(fn));
}

// Both add(message) overloads, inlined into each (every echo takes it).
[[gnu::always_inline]] inline bool WebSocket::sendMessage(const Message& message,
                                                          SendOptions options) const {
  auto e = endpoint_.lock();
  if (!e) return false;
  if (e->loopContext().isCurrentThread()) return !e->isClosed() && e->send(message, options);
  // Off the loop: report a bad message to this caller, then post an owned copy.
  if (message.isText() && !detail::isValidUtf8(message.data())) {
    throw std::invalid_argument("spry: WebSocket::add: text message is not valid UTF-8");
  }
  e.reset();
  return runOnLoop(endpoint_, [m = message.owned(), options](WebSocketEndpoint& endpoint) {
    return endpoint.send(m, options);
  });
}

bool WebSocket::add(const Message& message) const {
  return sendMessage(message, SendOptions{});
}

bool WebSocket::add(const Message& message, SendOptions options) const {
  return sendMessage(message, options);
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
  auto e = onOwnLoop(endpoint_, "addStream");
  return e && e->addStream(std::move(next), std::move(done));
}

bool WebSocket::close(std::uint16_t code, std::string_view reason) const {
  checkCloseArguments(code, reason);
  return runOnLoop(endpoint_, [code, r = std::string(reason)](WebSocketEndpoint& endpoint) {
    return endpoint.close(code, r);
  });
}

bool WebSocket::ping(std::string_view payload) const {
  if (payload.size() > detail::kMaxControlPayload) {
    throw std::invalid_argument("spry: WebSocket::ping: payload is " +
                                std::to_string(payload.size()) + " bytes, at most 125 fit");
  }
  return runOnLoop(endpoint_, [p = std::string(payload)](WebSocketEndpoint& endpoint) {
    return endpoint.ping(p);
  });
}

bool WebSocket::subscribe(std::string_view topic) const {
  auto e = onOwnLoop(endpoint_, "subscribe");
  return e && e->subscribe(topic);
}

bool WebSocket::unsubscribe(std::string_view topic) const {
  auto e = onOwnLoop(endpoint_, "unsubscribe");
  return e && e->unsubscribe(topic);
}

bool WebSocket::isSubscribed(std::string_view topic) const {
  auto e = onOwnLoop(endpoint_, "isSubscribed");
  return e && e->isSubscribed(topic);
}

bool WebSocket::publish(std::string_view topic, const Message& message) const {
  auto e = endpoint_.lock();
  if (!e) return false;
  if (e->loopContext().isCurrentThread() && e->readyState() != ReadyState::kOpen) return false;
  if (message.isText() && !detail::isValidUtf8(message.data())) {
    throw std::invalid_argument("spry: WebSocket::publish: text message is not valid UTF-8");
  }
  return e->app().publish(topic, message, e);
}

ReadyState WebSocket::readyState() const noexcept {
  auto e = onThisThread(endpoint_);
  return e ? e->readyState() : ReadyState::kClosed;
}

std::optional<std::uint16_t> WebSocket::closeCode() const noexcept {
  auto e = onThisThread(endpoint_);
  return e ? e->closeCode() : std::nullopt;
}

std::string WebSocket::closeReason() const {
  auto e = onThisThread(endpoint_);
  return e && e->closeCode() ? e->closeReason() : std::string();
}

std::string WebSocket::protocol() const {
  auto e = endpoint_.lock();
  return e ? e->protocol() : std::string();
}

std::size_t WebSocket::bufferedAmount() const noexcept {
  auto e = onThisThread(endpoint_);
  return e && !e->isClosed() ? e->bufferedAmount() : 0;
}

std::string WebSocket::remoteAddress() const {
  auto e = endpoint_.lock();
  return e ? e->remoteAddress() : std::string();
}

Loop WebSocket::loop() const {
  auto e = endpoint_.lock();
  return e ? e->loopContext().handle() : Loop();
}

void WebSocket::putData(const std::type_info& type, std::shared_ptr<void> value) const {
  if (auto e = onOwnLoop(endpoint_, "setData")) e->putData(type, std::move(value));
}

void* WebSocket::getData(const std::type_info& type) const noexcept {
  // Not onOwnLoop(): onClose may still read the data, which is released after it.
  auto e = onThisThread(endpoint_);
  return e ? e->getData(type) : nullptr;
}

}  // namespace spry
