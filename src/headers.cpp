#include "spry/headers.h"

#include "http/token.h"

#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <utility>

namespace spry {

namespace {

// A block of this many bytes holds a typical response's fields (16 entries
// of 12 bytes and 830 bytes of lines); blocks of this size are pooled. A
// list that outgrows it doubles into a block of its own.
constexpr std::uint32_t kBlockBytes = 1024;
// Readable bytes past a block's capacity (see Headers::Entry).
constexpr std::size_t kSlack = 16;
// The pool bounds what it keeps so that a burst cannot pin memory for the
// thread's lifetime.
constexpr std::uint32_t kPooledBlocks = 64;

// The per-thread pool of standard blocks, linked through their first bytes.
// Trivially destructible and constant-initialized, so reaching it is one
// thread-pointer-relative access with no guard; tReaper frees what it holds
// at thread exit. Initial-exec: the default model for position-independent
// code reaches it through a call (__tls_get_addr), and a call in add()
// makes it save registers. The pool is 16 bytes of the static TLS that
// glibc keeps even for a library loaded with dlopen.
struct PoolState {
  char* free;
  std::uint32_t count;
  bool reaperArmed;
  bool dead;  // the thread is exiting: blocks go back to the heap
};
[[gnu::tls_model("initial-exec")]] thread_local PoolState tPool{};

struct PoolReaper {
  bool armed = false;
  ~PoolReaper() {
    tPool.dead = true;
    while (tPool.free != nullptr) {
      char* next;
      std::memcpy(&next, tPool.free, sizeof next);
      ::operator delete(tPool.free);
      tPool.free = next;
    }
    tPool.count = 0;
  }
};
thread_local PoolReaper tReaper;

char* newBlock(std::size_t capacity) {
  return static_cast<char*>(::operator new(capacity + kSlack));
}

char* takeBlock() noexcept {
  char* b = tPool.free;
  if (b != nullptr) {
    std::memcpy(&tPool.free, b, sizeof(char*));
    --tPool.count;
  }
  return b;
}

// Returns false when the pool keeps no more (or the thread is exiting).
bool giveBlock(char* b) noexcept {
  if (tPool.count >= kPooledBlocks || tPool.dead) return false;
  if (!tPool.reaperArmed) {
    // The first block this thread pools: from now on the reaper must run at
    // thread exit (touching it registers its destructor).
    tPool.reaperArmed = true;
    tReaper.armed = true;
  }
  std::memcpy(b, &tPool.free, sizeof(char*));
  tPool.free = b;
  ++tPool.count;
  return true;
}

// Copies at most 32 bytes without a call: two overlapping moves of the
// widest size that fits. Exact at both ends: the source is the caller's, the
// destination may border an entry.
inline void copySmall(char* to, const char* from, std::size_t n) noexcept {
  auto two = [&](auto word) {
    constexpr std::size_t w = sizeof word;
    decltype(word) a, b;
    std::memcpy(&a, from, w);
    std::memcpy(&b, from + n - w, w);
    std::memcpy(to, &a, w);
    std::memcpy(to + n - w, &b, w);
  };
  struct Word16 {
    std::uint64_t lo, hi;
  };
  if (n >= 16) {
    two(Word16{});
  } else if (n >= 8) {
    two(std::uint64_t{});
  } else if (n >= 4) {
    two(std::uint32_t{});
  } else if (n != 0) {  // 1 to 3 bytes
    to[0] = from[0];
    to[n / 2] = from[n / 2];
    to[n - 1] = from[n - 1];
  }
}

// Any size: a call for the long ones.
inline void copyExact(char* to, const char* from, std::size_t n) noexcept {
  if (n <= 32) {
    copySmall(to, from, n);
  } else {
    std::memcpy(to, from, n);
  }
}

// True when some byte of `w` is below 0x0e (exact as a yes/no answer).
constexpr bool hasLowByte(std::uint64_t w) noexcept {
  return ((w - 0x0e0e0e0e0e0e0e0eULL) & ~w & 0x8080808080808080ULL) != 0;
}

// True when some byte of `w` is CR, LF or NUL.
constexpr bool hasBreakByte(std::uint64_t w) noexcept {
  return hasLowByte(w) &&
         (detail::hasZeroByte(w) || detail::hasZeroByte(w ^ 0x0d0d0d0d0d0d0d0dULL) ||
          detail::hasZeroByte(w ^ 0x0a0a0a0a0a0a0a0aULL));
}

// True when `value` holds no CR, LF or NUL: words (overlapping at the end)
// rather than bytes.
inline bool isSafeValue(std::string_view value) noexcept {
  const char* p = value.data();
  const std::size_t n = value.size();
  if (n >= 8) {
    std::uint64_t w;
    for (std::size_t i = 0; i + 8 < n; i += 8) {
      std::memcpy(&w, p + i, 8);
      if (hasBreakByte(w)) return false;
    }
    std::memcpy(&w, p + n - 8, 8);
    return !hasBreakByte(w);
  }
  if (n >= 4) {
    std::uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + n - 4, 4);
    return !hasBreakByte(std::uint64_t{a} | std::uint64_t{b} << 32);
  }
  auto bad = [](char c) noexcept { return c == '\r' || c == '\n' || c == '\0'; };
  return n == 0 || !(bad(p[0]) || bad(p[n / 2]) || bad(p[n - 1]));
}

// A field the writer may copy as is: a token name that is not one of the
// writer's own fields, a value without CR, LF or NUL.
inline bool isPlainField(std::string_view name, std::string_view value) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(name.data());
  const std::size_t n = name.size();
  // Four table look-ups a round, without a branch each.
  auto tchar = [](unsigned char c) noexcept { return unsigned{detail::isTchar(c)}; };
  unsigned token = n != 0 ? 1u : 0u;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    token &= tchar(p[i]) & tchar(p[i + 1]) & tchar(p[i + 2]) & tchar(p[i + 3]);
  }
  for (; i < n; ++i) token &= tchar(p[i]);
  return token != 0 && !detail::isWriterField(name) && isSafeValue(value);
}

}  // namespace

inline void Headers::put(std::string_view name, std::string_view value) noexcept {
  char* p = block_ + high_;
  // The free room never overlaps a field, so a view into this list is read intact.
  copyExact(p, name.data(), name.size());
  p += name.size();
  std::memcpy(p, ": ", 2);
  copyExact(p + 2, value.data(), value.size());
  std::memcpy(p + 2 + value.size(), "\r\n", 2);
  setEntry(count_, {high_, static_cast<std::uint32_t>(name.size()),
                    static_cast<std::uint32_t>(value.size())});
  ++count_;
  high_ += static_cast<std::uint32_t>(name.size() + value.size() + kLineExtra);
}

// Inline in add() and the copies: the usual add is one block from the
// pool and one line.
[[gnu::always_inline]] inline void Headers::append(std::string_view name, std::string_view value) {
  const std::size_t bytes = name.size() + value.size() + kLineExtra + sizeof(Entry);
  if (block_ == nullptr && bytes <= kBlockBytes && tPool.free != nullptr) {
    block_ = takeBlock();
    capacity_ = kBlockBytes;
  }
  if (bytes <= room()) [[likely]] {
    put(name, value);
    return;
  }
  appendSlow(name, value);
}

Headers::Headers(const Headers& other) : plain_(other.plain_) {
  for (const auto& [name, value] : other) append(name, value);
}

Headers& Headers::operator=(const Headers& other) {
  if (this != &other) {
    clear();
    plain_ = other.plain_;
    for (const auto& [name, value] : other) append(name, value);
  }
  return *this;
}

Headers& Headers::operator=(Headers&& other) noexcept {
  if (this != &other) {
    if (block_ != nullptr) release();
    block_ = std::exchange(other.block_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    count_ = std::exchange(other.count_, 0);
    high_ = std::exchange(other.high_, 0);
    plain_ = std::exchange(other.plain_, true);
  }
  return *this;
}

void Headers::release() noexcept {
  if (capacity_ != kBlockBytes || !giveBlock(block_)) ::operator delete(block_);
  block_ = nullptr;
}

std::string_view Headers::get(std::string_view name) const noexcept {
  for (const auto& [n, v] : *this) {
    if (equalsIgnoreCase(n, name)) return v;
  }
  return {};
}

std::vector<std::string_view> Headers::getAll(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& [n, v] : *this) {
    if (equalsIgnoreCase(n, name)) out.emplace_back(v);
  }
  return out;
}

bool Headers::has(std::string_view name) const noexcept {
  for (std::uint32_t i = 0; i < count_; ++i) {
    const Entry e = entry(i);
    if (e.nameSize == name.size() && equalsIgnoreCase({data() + e.at, e.nameSize}, name)) {
      return true;
    }
  }
  return false;
}

void Headers::add(std::string_view name, std::string_view value) {
  if (plain_ && !isPlainField(name, value)) plain_ = false;
  // The usual add: a pooled block, a name and a value of at most 32 bytes,
  // and no call on the way (none to save registers for).
  if (block_ == nullptr && tPool.free != nullptr) {
    block_ = takeBlock();
    capacity_ = kBlockBytes;
  }
  if (name.size() <= 32 && value.size() <= 32 &&
      name.size() + value.size() + kLineExtra + sizeof(Entry) <= room()) [[likely]] {
    const std::uint32_t at = high_;
    char* p = block_ + at;
    // The free room never overlaps a field, so a view into this list is read intact.
    copySmall(p, name.data(), name.size());
    p += name.size();
    std::memcpy(p, ": ", 2);
    copySmall(p + 2, value.data(), value.size());
    std::memcpy(p + 2 + value.size(), "\r\n", 2);
    setEntry(count_, {at, static_cast<std::uint32_t>(name.size()),
                      static_cast<std::uint32_t>(value.size())});
    count_ += 1;
    high_ = at + static_cast<std::uint32_t>(name.size() + value.size() + kLineExtra);
    return;
  }
  appendSlow(name, value);
}

void Headers::appendSlow(std::string_view name, std::string_view value) {
  const std::size_t bytes = name.size() + value.size() + kLineExtra + sizeof(Entry);
  if (block_ == nullptr && bytes <= kBlockBytes) {
    // A new list's first field: a pooled block (the usual case) or a fresh one.
    block_ = takeBlock();
    if (block_ == nullptr) block_ = newBlock(kBlockBytes);
    capacity_ = kBlockBytes;
  }
  if (bytes <= room()) {
    put(name, value);
  } else {
    growAndAppend(name, value);
  }
}

void Headers::growAndAppend(std::string_view name, std::string_view value) {
  const std::size_t bytes = name.size() + value.size() + kLineExtra;
  const std::size_t needed = high_ + bytes + (std::size_t{count_} + 1) * sizeof(Entry);
  if (needed > std::numeric_limits<std::uint32_t>::max() / 4) {
    throw std::length_error("spry::Headers: more than 1 GiB of header fields");
  }
  std::size_t capacity = kBlockBytes;
  // Spare room keeps add() in a loop from moving the list at every call.
  while (capacity < needed + needed / 2) capacity *= 2;

  char* fresh = capacity == kBlockBytes ? takeBlock() : nullptr;
  if (fresh == nullptr) fresh = newBlock(capacity);
  if (high_ != 0) std::memcpy(fresh, block_, high_);
  if (count_ != 0) {
    const std::size_t entryBytes = std::size_t{count_} * sizeof(Entry);
    std::memcpy(fresh + capacity - entryBytes, block_ + capacity_ - entryBytes, entryBytes);
  }
  // The new field is copied while the old block is alive: `name` and
  // `value` may point into it.
  char* old = std::exchange(block_, fresh);
  const std::uint32_t oldCapacity = std::exchange(capacity_, static_cast<std::uint32_t>(capacity));
  put(name, value);
  if (old != nullptr) {
    if (oldCapacity != kBlockBytes || !giveBlock(old)) ::operator delete(old);
  }
}

void Headers::set(std::string_view name, std::string_view value) {
  if (count_ == 0 || !has(name)) {
    add(name, value);  // the usual case: nothing to replace
    return;
  }
  // The new field is appended first, so `name` and `value` are read before
  // anything is dropped, even when they point into this list.
  add(name, value);
  const Entry added = entry(count_ - 1);
  count_ = static_cast<std::uint32_t>(compact(count_ - 1, {data() + added.at, added.nameSize}));
}

std::size_t Headers::remove(std::string_view name) {
  const std::size_t before = count_;
  count_ = static_cast<std::uint32_t>(compact(before, name));
  return before - count_;
}

std::size_t Headers::compact(std::size_t end, std::string_view name) noexcept {
  // First the entries, reading names where they are (`name` may point into
  // this list); then the lines move down over the gaps, in order, so a
  // memmove never overwrites a line not yet moved.
  std::size_t kept = 0;
  for (std::size_t i = 0; i < count_; ++i) {
    const Entry e = entry(i);
    if (i < end && e.nameSize == name.size() &&
        equalsIgnoreCase({data() + e.at, e.nameSize}, name)) {
      continue;
    }
    setEntry(kept++, e);
  }
  std::uint32_t to = 0;
  for (std::size_t i = 0; i < kept; ++i) {
    Entry e = entry(i);
    const std::uint32_t size = e.nameSize + e.valueSize + kLineExtra;
    if (e.at != to) {
      std::memmove(block_ + to, block_ + e.at, size);
      e.at = to;
      setEntry(i, e);
    }
    to += size;
  }
  high_ = to;
  return kept;
}

}  // namespace spry
