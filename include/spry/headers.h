#pragma once
/// HTTP header list: ordered, repeated names kept, names compared case-insensitively.

#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spry {

namespace detail {
struct HeaderLines;
}  // namespace detail

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
/// The fields live in one buffer as the lines a response head is made of
/// ("Name: value\r\n", in order, without gaps), so an add is one append and
/// a writer copies the whole list at once. Storage is recycled: a destroyed
/// list hands its buffer to a per-thread pool that the next list on the same
/// thread takes from, so steady-state use does not allocate.
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
  Headers(Headers&& other) noexcept
      : block_(std::exchange(other.block_, nullptr)),
        capacity_(std::exchange(other.capacity_, 0)),
        count_(std::exchange(other.count_, 0)),
        high_(std::exchange(other.high_, 0)),
        plain_(std::exchange(other.plain_, true)) {}
  Headers& operator=(Headers&& other) noexcept;
  ~Headers() {
    if (block_ != nullptr) release();
  }

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
    high_ = 0;
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
    const Entry e = entry(i);
    const char* name = data() + e.at;
    return {{name, e.nameSize}, {name + e.nameSize + kSeparator, e.valueSize}};
  }
  Iterator begin() const noexcept { return {this, 0}; }
  Iterator end() const noexcept { return {this, count_}; }

 private:
  friend struct detail::HeaderLines;
  // One block holds the list: the fields' lines grow up from its start,
  // their entries grow down from its end. Blocks of the standard size are
  // recycled through a per-thread pool; a move hands the block over. Every
  // block has kSlack bytes past its capacity, so that a reader may copy a
  // line in 16-byte pieces (up to 15 bytes past its end).
  struct Entry {
    std::uint32_t at;  // the line's offset: the name, ": ", the value, CRLF
    std::uint32_t nameSize;
    std::uint32_t valueSize;
  };
  static constexpr std::size_t kSeparator = 2;  // ": " after the name
  static constexpr std::size_t kLineExtra = 4;  // ": " and CRLF
  // Only with a block (every list with a field has one).
  const char* data() const noexcept { return block_; }
  Entry entry(std::size_t i) const noexcept {
    Entry e;
    std::memcpy(&e, block_ + capacity_ - (i + 1) * sizeof(Entry), sizeof(Entry));
    return e;
  }
  void setEntry(std::size_t i, const Entry& e) noexcept {
    std::memcpy(block_ + capacity_ - (i + 1) * sizeof(Entry), &e, sizeof(Entry));
  }
  // Bytes between the last line and the lowest entry.
  std::size_t room() const noexcept {
    return capacity_ - high_ - std::size_t{count_} * sizeof(Entry);
  }
  // add() without the plain check: for copies.
  void append(std::string_view name, std::string_view value);
  // append() when the block is missing or full.
  void appendSlow(std::string_view name, std::string_view value);
  // Writes the line and its entry into room known to be there.
  void put(std::string_view name, std::string_view value) noexcept;
  // Moves the live fields and the new one into a block with room to spare.
  void growAndAppend(std::string_view name, std::string_view value);
  void release() noexcept;
  // Drops the fields of `name` among the first `end` and closes the gaps,
  // keeping the others' order; returns how many fields are left.
  std::size_t compact(std::size_t end, std::string_view name) noexcept;

  char* block_ = nullptr;
  std::uint32_t capacity_ = 0;  // the block's bytes (without the slack)
  std::uint32_t count_ = 0;     // fields
  std::uint32_t high_ = 0;      // [0, high_) holds the lines, in order
  bool plain_ = true;
};

}  // namespace spry
