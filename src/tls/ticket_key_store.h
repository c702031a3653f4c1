#pragma once
// Keys for stateless session tickets, shared by every TLS context of the
// process and every loop thread, so a client resumes on whichever loop its
// next connection lands. The current key encrypts new tickets; the one before
// it still decrypts (and asks for a fresh ticket), so a ticket is good for
// one to two rotations. A reload builds new contexts over the same store: the
// keys survive it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

namespace spry::detail {

class TicketKeyStore {
 public:
  using Clock = std::chrono::steady_clock;

  // RFC 5077's layout: the name travels in the ticket, the keys never do.
  struct Key {
    unsigned char name[16];
    unsigned char aes[32];   // AES-256-CBC
    unsigned char hmac[32];  // HMAC-SHA256
  };
  enum class Match { kNone, kCurrent, kPrevious };

  // A store whose keys are replaced every `rotation` (at least one second).
  // `now` is the clock (tests pass their own). Throws std::runtime_error when
  // the random generator fails.
  explicit TicketKeyStore(std::chrono::seconds rotation,
                          std::function<Clock::time_point()> now = &Clock::now);

  // The key that encrypts a new ticket, rotated first when due. False when
  // the random generator fails (no ticket is issued then). Thread-safe.
  bool encryptionKey(Key& out);
  // The key a ticket named `name` (16 bytes) was encrypted with. Thread-safe.
  Match find(const unsigned char* name, Key& out);
  // Replaces the current key now (the current one becomes the previous).
  bool rotate();
  std::chrono::seconds rotation() const noexcept { return rotation_; }

 private:
  bool rotateLocked();
  void expireLocked();

  const std::chrono::seconds rotation_;
  const std::function<Clock::time_point()> now_;
  std::mutex mutex_;
  Key current_{};
  Key previous_{};
  bool hasPrevious_ = false;
  Clock::time_point created_{};  // of current_
};

}  // namespace spry::detail
