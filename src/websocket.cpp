#include "spry/websocket.h"

#include "connection.h"
#include "utf8.h"
#include "websocket_session.h"

namespace spry {

namespace {
// The connection behind a handle, or null once closed or replaced.
std::shared_ptr<detail::Connection> live(const std::weak_ptr<detail::Connection>& weak,
                                         std::uint64_t id) noexcept {
  auto c = weak.lock();
  if (!c || c->wsId() != id || c->isClosed()) return nullptr;
  return c;
}
}  // namespace

bool WebSocket::listen(std::function<void(const Message&)> onMessage) const {
  auto c = live(conn_, id_);
  return c && c->wsListen(std::move(onMessage));
}

bool WebSocket::onClose(std::function<void(std::uint16_t, std::string_view)> fn) const {
  auto c = live(conn_, id_);
  return c && c->wsOnClose(std::move(fn));
}

bool WebSocket::onDrain(std::function<void()> fn) const {
  auto c = live(conn_, id_);
  return c && c->wsOnDrain(std::move(fn));
}

bool WebSocket::add(const Message& message) const {
  auto c = live(conn_, id_);
  return c && c->wsSend(message);
}

bool WebSocket::add(std::string_view text) const {
  return add(Message::view(Message::Type::kText, text));
}

bool WebSocket::add(std::span<const std::byte> bytes) const {
  return add(Message::view(Message::Type::kBinary,
                           std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())));
}

bool WebSocket::addStream(std::function<std::optional<Message>()> next,
                          std::function<void()> done) const {
  if (!next) throw std::invalid_argument("spry: WebSocket::addStream needs a source function");
  auto c = live(conn_, id_);
  return c && c->wsAddStream(std::move(next), std::move(done));
}

bool WebSocket::close(std::uint16_t code, std::string_view reason) const {
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
  auto c = live(conn_, id_);
  return c && c->wsClose(code, reason);
}

bool WebSocket::ping(std::string_view payload) const {
  if (payload.size() > 125) {
    throw std::invalid_argument("spry: WebSocket::ping: payload is " +
                                std::to_string(payload.size()) + " bytes, at most 125 fit");
  }
  auto c = live(conn_, id_);
  return c && c->wsPing(payload);
}

ReadyState WebSocket::readyState() const noexcept {
  auto c = live(conn_, id_);
  return c ? c->wsReadyState() : ReadyState::kClosed;
}

std::optional<std::uint16_t> WebSocket::closeCode() const noexcept {
  auto c = conn_.lock();
  return c && c->wsId() == id_ ? c->wsCloseCode() : std::nullopt;
}

std::string WebSocket::closeReason() const {
  auto c = conn_.lock();
  return c && c->wsId() == id_ && c->wsCloseCode() ? c->wsCloseReason() : std::string();
}

std::string WebSocket::protocol() const {
  auto c = conn_.lock();
  return c && c->wsId() == id_ ? c->wsProtocol() : std::string();
}

std::size_t WebSocket::bufferedAmount() const noexcept {
  auto c = live(conn_, id_);
  return c ? c->bufferedAmount() : 0;
}

std::string WebSocket::remoteAddress() const {
  auto c = conn_.lock();
  return c && c->wsId() == id_ ? c->wsRemoteAddress() : std::string();
}

Loop WebSocket::loop() const {
  auto c = conn_.lock();
  return c ? c->loop() : Loop();
}

void WebSocket::putData(const std::type_info& type, std::shared_ptr<void> value) const {
  if (auto c = live(conn_, id_)) c->wsPutData(type, std::move(value));
}

void* WebSocket::getData(const std::type_info& type) const noexcept {
  // Not live(): onClose may still read the data, which is released after it.
  auto c = conn_.lock();
  return c && c->wsId() == id_ ? c->wsGetData(type) : nullptr;
}

}  // namespace spry
