#include "spry/headers.h"

#include <algorithm>

namespace spry {

std::string_view Headers::get(std::string_view name) const noexcept {
  for (const auto& [n, v] : fields_) {
    if (equalsIgnoreCase(n, name)) return v;
  }
  return {};
}

std::vector<std::string_view> Headers::getAll(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& [n, v] : fields_) {
    if (equalsIgnoreCase(n, name)) out.emplace_back(v);
  }
  return out;
}

bool Headers::has(std::string_view name) const noexcept {
  return std::any_of(fields_.begin(), fields_.end(),
                     [&](const Field& f) { return equalsIgnoreCase(f.first, name); });
}

namespace {
// Room for a typical message's fields at the first one: one allocation
// rather than a chain of regrowths (1, 2, 4, 8...) that moves every field.
constexpr std::size_t kInitialFields = 8;
}  // namespace

void Headers::add(std::string name, std::string value) {
  if (fields_.capacity() == 0) fields_.reserve(kInitialFields);
  fields_.emplace_back(std::move(name), std::move(value));
}

void Headers::set(std::string name, std::string value) {
  remove(name);
  if (fields_.capacity() == 0) fields_.reserve(kInitialFields);
  fields_.emplace_back(std::move(name), std::move(value));
}

std::size_t Headers::remove(std::string_view name) {
  auto before = fields_.size();
  std::erase_if(fields_, [&](const Field& f) { return equalsIgnoreCase(f.first, name); });
  return before - fields_.size();
}

}  // namespace spry
