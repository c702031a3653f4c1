#pragma once
/// A request's header fields, as views into the request's own bytes.

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

#include "spry/headers.h"

namespace spry {

namespace detail {
struct HeaderAccess;
}  // namespace detail

/// The header fields of a request, in the order received, repeated names
/// kept; lookups ignore ASCII case in names. Names and values are views,
/// valid as long as the Request: a handler that keeps one copies it.
class RequestHeaders {
 public:
  using Field = std::pair<std::string_view, std::string_view>;

  /// The first value of `name`, or an empty view when absent.
  std::string_view get(std::string_view name) const noexcept {
    for (const auto& [n, v] : fields_) {
      if (equalsIgnoreCase(n, name)) return v;
    }
    return {};
  }
  /// Every value of `name`, in order.
  std::vector<std::string_view> getAll(std::string_view name) const {
    std::vector<std::string_view> out;
    for (const auto& [n, v] : fields_) {
      if (equalsIgnoreCase(n, name)) out.push_back(v);
    }
    return out;
  }
  /// True when `name` is present.
  bool has(std::string_view name) const noexcept {
    for (const auto& f : fields_) {
      if (equalsIgnoreCase(f.first, name)) return true;
    }
    return false;
  }

  std::size_t size() const noexcept { return fields_.size(); }
  bool empty() const noexcept { return fields_.empty(); }
  auto begin() const noexcept { return fields_.begin(); }
  auto end() const noexcept { return fields_.end(); }

 private:
  friend struct detail::HeaderAccess;
  std::vector<Field> fields_;
};

}  // namespace spry
