#pragma once
/// HTTP header list: ordered, repeated names kept, names compared case-insensitively.

#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spry {

/// True when a and b are equal ignoring ASCII case.
constexpr bool equalsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const char x = (a[i] >= 'A' && a[i] <= 'Z') ? char(a[i] + 32) : a[i];
    const char y = (b[i] >= 'A' && b[i] <= 'Z') ? char(b[i] + 32) : b[i];
    if (x != y) return false;
  }
  return true;
}

/// An ordered list of header fields; lookups ignore ASCII case in names.
/// The fields' bytes live in one buffer and the list holds their offsets, so
/// an add is one append. Storage is recycled: a destroyed list hands its
/// buffers to a per-thread pool that the next list on the same thread takes
/// from, so steady-state use does not allocate.
class Headers {
 public:
  /// A field as views into the list: valid until the list changes.
  using Field = std::pair<std::string_view, std::string_view>;

  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using iterator_concept = std::random_access_iterator_tag;
    using value_type = Field;
    using difference_type = std::ptrdiff_t;
    using reference = Field;
    using pointer = void;
    Iterator() noexcept = default;
    Field operator*() const noexcept { return list_->at(i_); }
    Field operator[](difference_type n) const noexcept {
      return list_->at(static_cast<std::size_t>(static_cast<difference_type>(i_) + n));
    }
    Iterator& operator++() noexcept {
      ++i_;
      return *this;
    }
    Iterator operator++(int) noexcept { return {list_, i_++}; }
    Iterator& operator--() noexcept {
      --i_;
      return *this;
    }
    Iterator operator--(int) noexcept { return {list_, i_--}; }
    Iterator& operator+=(difference_type n) noexcept {
      i_ = static_cast<std::size_t>(static_cast<difference_type>(i_) + n);
      return *this;
    }
    Iterator& operator-=(difference_type n) noexcept { return *this += -n; }
    friend Iterator operator+(Iterator it, difference_type n) noexcept { return it += n; }
    friend Iterator operator+(difference_type n, Iterator it) noexcept { return it += n; }
    friend Iterator operator-(Iterator it, difference_type n) noexcept { return it -= n; }
    friend difference_type operator-(const Iterator& a, const Iterator& b) noexcept {
      return static_cast<difference_type>(a.i_) - static_cast<difference_type>(b.i_);
    }
    friend bool operator==(const Iterator& a, const Iterator& b) noexcept { return a.i_ == b.i_; }
    friend auto operator<=>(const Iterator& a, const Iterator& b) noexcept { return a.i_ <=> b.i_; }

   private:
    friend class Headers;
    Iterator(const Headers* list, std::size_t i) noexcept : list_(list), i_(i) {}
    const Headers* list_ = nullptr;
    std::size_t i_ = 0;
  };

  Headers() noexcept = default;
  /// Copies the fields only.
  Headers(const Headers& other);
  Headers& operator=(const Headers& other);
  /// Takes the other list's storage; the other list is left empty and usable.
  Headers(Headers&& other) noexcept;
  Headers& operator=(Headers&& other) noexcept;
  ~Headers();

  /// The first value of `name`, or an empty view when absent. Valid until the list changes.
  std::string_view get(std::string_view name) const noexcept;
  /// Every value of `name`, in order. Valid until the list changes.
  std::vector<std::string_view> getAll(std::string_view name) const;
  /// True when `name` is present.
  bool has(std::string_view name) const noexcept;
  /// Appends a field, keeping existing ones of the same name. The views are
  /// copied before anything changes, so they may refer into this list.
  void add(std::string_view name, std::string_view value);
  /// Replaces every field of `name` with one field, placed last. The views are copied
  /// before anything changes, so they may refer into this list.
  void set(std::string_view name, std::string_view value);
  /// Removes every field of `name`, keeping the others' order; returns how many were removed.
  std::size_t remove(std::string_view name);
  /// Removes every field (the storage is kept for reuse).
  void clear() noexcept {
    count_ = 0;
    low_ = capacity_;
    plain_ = true;
  }
  /// True when every field can be written as is (a token name, no CR, LF or
  /// NUL in the value) and none is a field the response writer sets itself
  /// (Content-Length, Transfer-Encoding, Date, Connection); the writer then
  /// skips its per-field checks. May stay false after such a field is removed.
  bool isPlain() const noexcept { return plain_; }

  std::size_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  /// The i-th field (i < size()).
  Field at(std::size_t i) const noexcept {
    const Entry& e = entries()[i];
    const char* base = data();
    return {{base + e.at, e.nameSize}, {base + e.at + e.nameSize, e.valueSize}};
  }
  Iterator begin() const noexcept { return {this, 0}; }
  Iterator end() const noexcept { return {this, count_}; }

 private:
  friend class Response;
  class Pool;
  // One block holds the list: entries grow up from its start, the fields'
  // bytes (name then value) grow down from its end. Blocks of the standard
  // size are recycled through a per-thread pool; a move hands the block over.
  struct Block {
    Block* next;  // in the pool's free list
  };
  struct Entry {
    std::uint32_t at;  // the name's offset; the value follows it
    std::uint32_t nameSize;
    std::uint32_t valueSize;
  };
  const char* data() const noexcept {
    return block_ != nullptr ? reinterpret_cast<const char*>(block_ + 1) : nullptr;
  }
  const Entry* entries() const noexcept { return reinterpret_cast<const Entry*>(data()); }
  Entry* entries() noexcept { return reinterpret_cast<Entry*>(const_cast<char*>(data())); }
  // add() without the plain check: for fields known to be plain (the
  // content types Response sets) and for copies.
  void append(std::string_view name, std::string_view value);
  // Moves the live fields and the new one into a block with room to spare.
  void growAndAppend(std::string_view name, std::string_view value);
  void release() noexcept;
  // Drops the fields of `name` in [0, end), keeping the others' order; returns how many others.
  std::size_t compact(std::size_t end, std::string_view name) noexcept;

  Block* block_ = nullptr;
  std::uint32_t capacity_ = 0;  // the block's byte capacity
  std::uint32_t count_ = 0;     // fields
  std::uint32_t low_ = 0;       // the lowest byte of field bytes: [low_, capacity_) holds them
  bool plain_ = true;
};

}  // namespace spry
