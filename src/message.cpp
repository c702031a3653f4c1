#include "spry/message.h"

#include "spry/error.h"

namespace spry {

Message::Message(Type type, std::shared_ptr<const std::string> storage) noexcept
    : type_(type), view_(*storage), storage_(std::move(storage)) {}

Message Message::text(std::string payload) {
  return Message(Type::kText, std::make_shared<const std::string>(std::move(payload)));
}

Message Message::binary(std::string payload) {
  return Message(Type::kBinary, std::make_shared<const std::string>(std::move(payload)));
}

Message Message::binary(std::span<const std::byte> payload) {
  return binary(std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
}

Message Message::owned() const {
  if (storage_) return *this;
  Message m(type_, std::make_shared<const std::string>(view_));
  m.utf8Checked_ = utf8Checked_;
  return m;
}

HttpError::HttpError(int status, std::string message)
    : std::runtime_error(std::move(message)), status_(status) {
  if (status < 400 || status > 599) {
    throw std::invalid_argument("spry: HttpError status must be 400..599, got " +
                                std::to_string(status));
  }
}

}  // namespace spry
