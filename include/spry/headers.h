#pragma once
/// HTTP header list: ordered, repeated names kept, names compared case-insensitively.

#include <cstddef>
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
/// Storage is recycled: removed fields keep their strings' capacity for later
/// adds, and a destroyed list hands its storage to a per-thread pool that the
/// next list on the same thread takes from, so steady-state use does not allocate.
class Headers {
 public:
  using Field = std::pair<std::string, std::string>;

  Headers() noexcept = default;
  /// Copies the fields only (not the other list's spare storage).
  Headers(const Headers& other);
  Headers& operator=(const Headers& other);
  /// Takes the other list's storage; the other list is left empty and usable.
  Headers(Headers&& other) noexcept;
  Headers& operator=(Headers&& other) noexcept;
  ~Headers();

  /// The first value of `name`, or an empty view when absent. Valid until the list changes.
  std::string_view get(std::string_view name) const noexcept;
  /// Every value of `name`, in order.
  std::vector<std::string_view> getAll(std::string_view name) const;
  /// True when `name` is present.
  bool has(std::string_view name) const noexcept;
  /// Appends a field, keeping existing ones of the same name. The views are copied.
  void add(std::string_view name, std::string_view value);
  /// Replaces every field of `name` with one field, placed last. The views are copied
  /// before anything changes, so they may refer into this list.
  void set(std::string_view name, std::string_view value);
  /// Removes every field of `name`, keeping the others' order; returns how many were removed.
  std::size_t remove(std::string_view name);
  /// Removes every field (their storage is kept for reuse).
  void clear() noexcept {
    size_ = 0;
    plain_ = true;
  }
  /// True when every field can be written as is (a token name, no CR, LF or
  /// NUL in the value) and none is a field the response writer sets itself
  /// (Content-Length, Transfer-Encoding, Date, Connection); the writer then
  /// skips its per-field checks. May stay false after such a field is removed.
  bool isPlain() const noexcept { return plain_; }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  auto begin() const noexcept { return fields_.begin(); }
  auto end() const noexcept { return fields_.begin() + static_cast<std::ptrdiff_t>(size_); }

 private:
  friend class Response;
  // add() for a field known to be plain (the content types Response sets).
  void addPlain(std::string_view name, std::string_view value);
  void acquireStorage(std::size_t atLeast);
  void copyFrom(const Headers& other);
  // Moves the fields of `name` in [0, end) behind the others; returns how many others.
  std::size_t compact(std::size_t end, std::string_view name) noexcept;

  // [0, size_) are the fields; [size_, fields_.size()) are spare fields whose
  // strings keep their capacity for the next add().
  std::vector<Field> fields_;
  std::size_t size_ = 0;
  bool plain_ = true;
};

}  // namespace spry
