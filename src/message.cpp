#include "spry/message.h"

#include <cstring>

#include "spry/error.h"

namespace spry {

Message::Message(Type type, std::shared_ptr<const std::string> storage) noexcept
    : type_(type), view_(*storage), storage_(std::move(storage)) {}

namespace {
// The bytes and the reference count in one allocation (make_shared of a
// std::string would take a second one past its small-string size).
std::shared_ptr<const void> copyBytes(std::string_view bytes, const char*& data) {
  auto block = std::make_shared_for_overwrite<char[]>(bytes.size() + 1);
  if (!bytes.empty()) std::memcpy(block.get(), bytes.data(), bytes.size());
  block[bytes.size()] = '\0';
  data = block.get();
  return block;
}
}  // namespace

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
  const char* data = nullptr;
  auto storage = copyBytes(view_, data);
  Message m(type_, std::string_view(data, view_.size()), std::move(storage));
  m.utf8Checked_ = utf8Checked_;
  m.compressed_ = compressed_;
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
