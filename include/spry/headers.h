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
class Headers {
 public:
  using Field = std::pair<std::string, std::string>;

  /// The first value of `name`, or an empty view when absent. Valid until the list changes.
  std::string_view get(std::string_view name) const noexcept;
  /// Every value of `name`, in order.
  std::vector<std::string_view> getAll(std::string_view name) const;
  /// True when `name` is present.
  bool has(std::string_view name) const noexcept;
  /// Appends a field, keeping existing ones of the same name.
  void add(std::string name, std::string value);
  /// Replaces every field of `name` with one field.
  void set(std::string name, std::string value);
  /// Removes every field of `name`; returns how many were removed.
  std::size_t remove(std::string_view name);
  /// Removes every field.
  void clear() noexcept { fields_.clear(); }

  std::size_t size() const noexcept { return fields_.size(); }
  bool empty() const noexcept { return fields_.empty(); }
  auto begin() const noexcept { return fields_.begin(); }
  auto end() const noexcept { return fields_.end(); }

 private:
  std::vector<Field> fields_;
};

}  // namespace spry
