#include "tls/ticket_key_store.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace spry::detail {

TicketKeyStore::TicketKeyStore(std::chrono::seconds rotation,
                               std::function<Clock::time_point()> now)
    : rotation_(std::max(rotation, std::chrono::seconds(1))), now_(std::move(now)) {
  if (!rotateLocked()) throw std::runtime_error("TLS: no random bytes for session ticket keys");
  OPENSSL_cleanse(&previous_, sizeof(previous_));
  hasPrevious_ = false;
}

bool TicketKeyStore::rotateLocked() {
  Key next;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&next), sizeof(next)) != 1) return false;
  previous_ = current_;
  hasPrevious_ = true;
  current_ = next;
  OPENSSL_cleanse(&next, sizeof(next));
  created_ = now_();
  return true;
}

void TicketKeyStore::expireLocked() {
  // Rotated on use: a ticket's age is also checked by OpenSSL against the
  // session timeout, so a key that outlived its turn while idle does no harm.
  if (now_() - created_ >= rotation_) rotateLocked();
}

bool TicketKeyStore::encryptionKey(Key& out) {
  std::lock_guard lock(mutex_);
  expireLocked();
  if (now_() - created_ >= rotation_) return false;  // the rotation failed: no ticket
  out = current_;
  return true;
}

TicketKeyStore::Match TicketKeyStore::find(const unsigned char* name, Key& out) {
  std::lock_guard lock(mutex_);
  expireLocked();
  if (std::memcmp(name, current_.name, sizeof(current_.name)) == 0) {
    out = current_;
    return Match::kCurrent;
  }
  if (hasPrevious_ && std::memcmp(name, previous_.name, sizeof(previous_.name)) == 0) {
    out = previous_;
    return Match::kPrevious;
  }
  return Match::kNone;
}

bool TicketKeyStore::rotate() {
  std::lock_guard lock(mutex_);
  return rotateLocked();
}

}  // namespace spry::detail
