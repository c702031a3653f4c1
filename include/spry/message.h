#pragma once
/// A WebSocket message: text or binary (Spry's `String | List<int>`).

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace spry {

namespace detail {
class WebSocketEndpoint;
class PullState;
}  // namespace detail

/// Text or binary payload. A received message is a view into the bytes just
/// read (or into the socket's buffer for a message that came in pieces),
/// valid during the listen callback only: call owned() to keep it.
/// A message built with text() or binary() owns its payload and is cheap to copy.
class Message {
 public:
  enum class Type { kText, kBinary };

  /// An owning text message (the payload should be UTF-8: ws.add checks it).
  static Message text(std::string payload);
  /// An owning binary message.
  static Message binary(std::string payload);
  static Message binary(std::span<const std::byte> payload);
  /// A non-owning message over `payload`, which must outlive every use.
  static Message view(Type type, std::string_view payload) noexcept {
    return Message(type, payload);
  }

  Type type() const noexcept { return type_; }
  bool isText() const noexcept { return type_ == Type::kText; }
  bool isBinary() const noexcept { return type_ == Type::kBinary; }
  /// The payload as characters (for text, UTF-8).
  std::string_view data() const noexcept { return view_; }
  /// The payload as bytes.
  std::span<const std::byte> bytes() const noexcept {
    return {reinterpret_cast<const std::byte*>(view_.data()), view_.size()};
  }
  std::size_t size() const noexcept { return view_.size(); }
  /// True when this message owns its payload.
  bool isOwned() const noexcept { return storage_ != nullptr; }
  /// A copy that owns its payload (shares it when already owned).
  Message owned() const;
  /// True for a received message that came compressed (permessage-deflate);
  /// data() is the inflated payload either way.
  bool wasCompressed() const noexcept { return compressed_; }

 private:
  friend class detail::WebSocketEndpoint;
  friend class detail::PullState;
  Message(Type type, std::string_view view) noexcept : type_(type), view_(view) {}
  // A received message: the session has validated its UTF-8 already.
  static Message received(Type type, std::string_view view, bool compressed) noexcept {
    Message m(type, view);
    m.utf8Checked_ = true;
    m.compressed_ = compressed;
    return m;
  }
  Message(Type type, std::shared_ptr<const std::string> storage) noexcept;
  Message(Type type, std::string_view view, std::shared_ptr<const void> storage) noexcept
      : type_(type), view_(view), storage_(std::move(storage)) {}

  Type type_ = Type::kText;
  std::string_view view_;
  // A std::string (text(), binary()) or the bytes of owned(), kept in one
  // allocation with their count.
  std::shared_ptr<const void> storage_;
  bool utf8Checked_ = false;
  bool compressed_ = false;
};

}  // namespace spry
