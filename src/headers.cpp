#include "spry/headers.h"

#include "http/token.h"

#include <algorithm>
#include <functional>
#include <new>

namespace spry {

namespace {

using Fields = std::vector<Headers::Field>;

// Room for a typical message's fields at the first one: one allocation
// rather than a chain of regrowths (1, 2, 4, 8...) that moves every field.
constexpr std::size_t kInitialFields = 8;
// The pool bounds what it keeps so that one odd message cannot pin memory
// for the thread's lifetime.
constexpr std::size_t kPoolLists = 32;
constexpr std::size_t kPooledFields = 16;
constexpr std::size_t kPooledStringBytes = 1024;

// Set by the pool's destructor at thread exit: a Headers destroyed later (a
// thread_local constructed before the pool) must not touch the dead pool.
thread_local bool tPoolDestroyed = false;

void trimForPool(std::string& s) noexcept {
  if (s.capacity() > kPooledStringBytes) {
    std::string().swap(s);
  } else {
    s.clear();
  }
}

// Field vectors of destroyed Headers, with their spare strings, for the next
// Headers on this thread.
class FieldsPool {
 public:
  FieldsPool() noexcept = default;
  FieldsPool(const FieldsPool&) = delete;
  FieldsPool& operator=(const FieldsPool&) = delete;
  ~FieldsPool() { tPoolDestroyed = true; }

  Fields take() noexcept {
    if (lists_.empty()) return {};
    Fields f = std::move(lists_.back());
    lists_.pop_back();
    return f;
  }

  // Keeps `f` when there is room; otherwise leaves it to its owner to free.
  void give(Fields& f) noexcept {
    if (lists_.size() == lists_.capacity()) {
      if (lists_.size() >= kPoolLists) return;
      try {
        lists_.reserve(kPoolLists);
      } catch (const std::bad_alloc&) {
        return;
      }
    }
    if (f.size() > kPooledFields) f.erase(f.begin() + kPooledFields, f.end());
    if (f.capacity() > 2 * kPooledFields) f.shrink_to_fit();
    if (f.capacity() > 2 * kPooledFields) return;
    for (auto& [name, value] : f) {
      trimForPool(name);
      trimForPool(value);
    }
    lists_.push_back(std::move(f));
  }

 private:
  std::vector<Fields> lists_;
};

FieldsPool& pool() noexcept {
  thread_local FieldsPool p;
  return p;
}

Fields takeFromPool() noexcept {
  return tPoolDestroyed ? Fields{} : pool().take();
}

void giveToPool(Fields& f) noexcept {
  if (!tPoolDestroyed && f.capacity() != 0) pool().give(f);
}

// True when `s` lies inside the field objects themselves (a short string's
// inline buffer), whose bytes change when fields are swapped.
bool pointsInto(std::string_view s, const Fields& fields) noexcept {
  const std::less<const void*> less;
  const void* p = s.data();
  return !less(p, fields.data()) && less(p, fields.data() + fields.size());
}

}  // namespace

Headers::Headers(const Headers& other) {
  copyFrom(other);
}

Headers& Headers::operator=(const Headers& other) {
  if (this != &other) copyFrom(other);
  return *this;
}

Headers::Headers(Headers&& other) noexcept
    : fields_(std::exchange(other.fields_, {})),
      size_(std::exchange(other.size_, 0)),
      plain_(std::exchange(other.plain_, true)) {}

Headers& Headers::operator=(Headers&& other) noexcept {
  if (this != &other) {
    giveToPool(fields_);
    fields_ = std::exchange(other.fields_, {});
    size_ = std::exchange(other.size_, 0);
    plain_ = std::exchange(other.plain_, true);
  }
  return *this;
}

Headers::~Headers() {
  giveToPool(fields_);
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
  return std::any_of(begin(), end(),
                     [&](const Field& f) { return equalsIgnoreCase(f.first, name); });
}

void Headers::add(std::string_view name, std::string_view value) {
  if (plain_ && (!detail::isSafeField(name, value) || detail::isWriterField(name))) plain_ = false;
  addPlain(name, value);
}

void Headers::addPlain(std::string_view name, std::string_view value) {
  // A pooled vector arrives with spare fields, hence acquire before choosing.
  if (fields_.capacity() == 0) acquireStorage(kInitialFields);
  if (size_ < fields_.size()) {
    Field& f = fields_[size_];
    f.first.assign(name);
    f.second.assign(value);
  } else {
    fields_.emplace_back(name, value);
  }
  ++size_;
}

void Headers::set(std::string_view name, std::string_view value) {
  if (!has(name)) {
    add(name, value);  // the usual case: nothing to replace
    return;
  }
  // The new field goes into a spare slot first, so `name` and `value` are
  // read before any live field moves, even when they point into this list.
  add(name, value);
  const std::size_t last = size_ - 1;
  const std::size_t kept = compact(last, fields_[last].first);
  if (kept != last) std::swap(fields_[kept], fields_[last]);
  size_ = kept + 1;
}

std::size_t Headers::remove(std::string_view name) {
  std::string inlineCopy;  // a short name: never allocates
  if (pointsInto(name, fields_)) {
    inlineCopy.assign(name);
    name = inlineCopy;
  }
  const std::size_t kept = compact(size_, name);
  const std::size_t removed = size_ - kept;
  size_ = kept;
  return removed;
}

std::size_t Headers::compact(std::size_t end, std::string_view name) noexcept {
  // Swaps rather than moves: removed fields land in [kept, end) with their
  // capacity intact, and the kept ones keep their order.
  std::size_t kept = 0;
  for (std::size_t i = 0; i < end; ++i) {
    if (equalsIgnoreCase(fields_[i].first, name)) continue;
    if (kept != i) std::swap(fields_[kept], fields_[i]);
    ++kept;
  }
  return kept;
}

void Headers::acquireStorage(std::size_t atLeast) {
  fields_ = takeFromPool();
  if (fields_.capacity() < atLeast) fields_.reserve(std::max(atLeast, kInitialFields));
}

void Headers::copyFrom(const Headers& other) {
  size_ = 0;
  plain_ = other.plain_;
  if (other.size_ == 0) return;
  if (fields_.capacity() == 0) acquireStorage(other.size_);
  for (const auto& [name, value] : other) addPlain(name, value);
}

}  // namespace spry
