#include "spry/headers.h"

#include "http/token.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>

namespace spry {

namespace {

// A block of this many bytes holds a typical response's fields (16 entries
// of 12 bytes and 830 bytes of names and values); blocks of this size are
// pooled. A list that outgrows it doubles into a block of its own.
constexpr std::uint32_t kBlockBytes = 1024;
// The pool bounds what it keeps so that a burst cannot pin memory for the
// thread's lifetime.
constexpr std::size_t kPooledBlocks = 64;

// Set by the pool's destructor at thread exit: a Headers destroyed later (a
// thread_local constructed before the pool) must not touch the dead pool.
thread_local bool tPoolDestroyed = false;

}  // namespace

// Standard blocks of destroyed lists, for the next list on this thread.
class Headers::Pool {
 public:
  Pool() noexcept = default;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() {
    tPoolDestroyed = true;
    while (free_ != nullptr) {
      Block* next = free_->next;
      ::operator delete(free_);
      free_ = next;
    }
  }

  static Pool* get() noexcept {
    if (tPoolDestroyed) return nullptr;
    thread_local Pool p;
    return &p;
  }

  Block* take() noexcept {
    Block* b = free_;
    if (b != nullptr) {
      free_ = b->next;
      --count_;
    }
    return b;
  }

  bool give(Block* b) noexcept {
    if (count_ >= kPooledBlocks) return false;
    b->next = free_;
    free_ = b;
    ++count_;
    return true;
  }

 private:
  Block* free_ = nullptr;
  std::size_t count_ = 0;
};

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

Headers::Headers(Headers&& other) noexcept
    : block_(std::exchange(other.block_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      count_(std::exchange(other.count_, 0)),
      low_(std::exchange(other.low_, 0)),
      plain_(std::exchange(other.plain_, true)) {}

Headers& Headers::operator=(Headers&& other) noexcept {
  if (this != &other) {
    release();
    block_ = std::exchange(other.block_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    count_ = std::exchange(other.count_, 0);
    low_ = std::exchange(other.low_, 0);
    plain_ = std::exchange(other.plain_, true);
  }
  return *this;
}

Headers::~Headers() {
  release();
}

void Headers::release() noexcept {
  if (block_ == nullptr) return;
  if (capacity_ == kBlockBytes) {
    if (Pool* pool = Pool::get(); pool != nullptr && pool->give(block_)) {
      block_ = nullptr;
      return;
    }
  }
  ::operator delete(block_);
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
  const Entry* e = entries();
  const char* base = data();
  for (std::uint32_t i = 0; i < count_; ++i) {
    if (e[i].nameSize == name.size() && equalsIgnoreCase({base + e[i].at, e[i].nameSize}, name)) {
      return true;
    }
  }
  return false;
}

void Headers::add(std::string_view name, std::string_view value) {
  if (plain_ && (!detail::isSafeField(name, value) || detail::isWriterField(name))) plain_ = false;
  append(name, value);
}

void Headers::append(std::string_view name, std::string_view value) {
  const std::size_t bytes = name.size() + value.size();
  if (block_ == nullptr && bytes + sizeof(Entry) <= kBlockBytes) {
    // A new list's first field: a pooled block (the usual case) or a fresh one.
    Pool* pool = Pool::get();
    block_ = pool != nullptr ? pool->take() : nullptr;
    if (block_ == nullptr)
      block_ = static_cast<Block*>(::operator new(sizeof(Block) + kBlockBytes));
    capacity_ = kBlockBytes;
    low_ = kBlockBytes;
  }
  // Free room lies between the entries and the lowest field byte.
  if (block_ == nullptr || bytes + sizeof(Entry) > low_ - std::size_t{count_} * sizeof(Entry)) {
    growAndAppend(name, value);
    return;
  }
  char* base = const_cast<char*>(data());
  const auto at = static_cast<std::uint32_t>(low_ - bytes);
  // The free room never overlaps a field, so a view into this list is read intact.
  if (!name.empty()) std::memcpy(base + at, name.data(), name.size());
  if (!value.empty()) std::memcpy(base + at + name.size(), value.data(), value.size());
  entries()[count_] = {at, static_cast<std::uint32_t>(name.size()),
                       static_cast<std::uint32_t>(value.size())};
  ++count_;
  low_ = at;
}

void Headers::growAndAppend(std::string_view name, std::string_view value) {
  // Live bytes only: the bytes of removed fields are left behind.
  std::size_t live = 0;
  for (std::uint32_t i = 0; i < count_; ++i) {
    live += std::size_t{entries()[i].nameSize} + entries()[i].valueSize;
  }
  const std::size_t bytes = name.size() + value.size();
  const std::size_t needed = live + bytes + (std::size_t{count_} + 1) * sizeof(Entry);
  if (needed > std::numeric_limits<std::uint32_t>::max() / 4) {
    throw std::length_error("spry::Headers: more than 1 GiB of header fields");
  }
  std::size_t capacity = kBlockBytes;
  // Spare room keeps set() in a loop from moving the list at every call.
  while (capacity < needed + needed / 2) capacity *= 2;

  Block* fresh = nullptr;
  if (capacity == kBlockBytes) {
    if (Pool* pool = Pool::get()) fresh = pool->take();
  }
  if (fresh == nullptr) fresh = static_cast<Block*>(::operator new(sizeof(Block) + capacity));
  char* to = reinterpret_cast<char*>(fresh + 1);
  auto* toEntries = reinterpret_cast<Entry*>(to);
  std::size_t low = capacity;
  for (std::uint32_t i = 0; i < count_; ++i) {
    const Entry e = entries()[i];
    const std::size_t n = std::size_t{e.nameSize} + e.valueSize;
    low -= n;
    if (n != 0) std::memcpy(to + low, data() + e.at, n);
    toEntries[i] = {static_cast<std::uint32_t>(low), e.nameSize, e.valueSize};
  }
  // The new field is copied while the old block is alive: `name` and
  // `value` may point into it.
  low -= bytes;
  if (!name.empty()) std::memcpy(to + low, name.data(), name.size());
  if (!value.empty()) std::memcpy(to + low + name.size(), value.data(), value.size());
  toEntries[count_] = {static_cast<std::uint32_t>(low), static_cast<std::uint32_t>(name.size()),
                       static_cast<std::uint32_t>(value.size())};
  release();
  block_ = fresh;
  capacity_ = static_cast<std::uint32_t>(capacity);
  low_ = static_cast<std::uint32_t>(low);
  ++count_;
}

void Headers::set(std::string_view name, std::string_view value) {
  if (!has(name)) {
    add(name, value);  // the usual case: nothing to replace
    return;
  }
  // The new field is appended first, so `name` and `value` are read before
  // anything is dropped, even when they point into this list.
  add(name, value);
  const std::uint32_t last = count_ - 1;
  const Entry added = entries()[last];
  const std::size_t kept = compact(last, {data() + added.at, added.nameSize});
  entries()[kept] = added;
  count_ = static_cast<std::uint32_t>(kept + 1);
}

std::size_t Headers::remove(std::string_view name) {
  // compact() never moves bytes, so `name` stays readable even when it points into this list.
  const std::size_t before = count_;
  count_ = static_cast<std::uint32_t>(compact(before, name));
  if (count_ == 0) low_ = capacity_;
  return before - count_;
}

std::size_t Headers::compact(std::size_t end, std::string_view name) noexcept {
  Entry* e = entries();
  const char* base = data();
  std::size_t kept = 0;
  for (std::size_t i = 0; i < end; ++i) {
    const Entry f = e[i];
    if (f.nameSize == name.size() && equalsIgnoreCase({base + f.at, f.nameSize}, name)) continue;
    e[kept++] = f;
  }
  return kept;
}

}  // namespace spry
