#include "redis/backoff.h"

#include <algorithm>
#include <random>

namespace spry::detail {

Backoff::Backoff(BackoffOptions options, std::uint64_t seed) noexcept : options_(options) {
  options_.initial = std::max(options_.initial, std::chrono::milliseconds(1));
  options_.max = std::max(options_.max, options_.initial);
  options_.jitter = std::clamp(options_.jitter, 0.0, 1.0);
  if (seed == 0) {
    try {
      std::random_device device;
      seed = (static_cast<std::uint64_t>(device()) << 32) | device();
    } catch (...) {
      seed =
          static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }
  }
  state_ = seed;
}

double Backoff::random() noexcept {
  // splitmix64: tiny, and good enough to spread reconnects.
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

std::chrono::milliseconds Backoff::next() noexcept {
  // Doubling stops once the cap is reached, so the base never overflows.
  double base = static_cast<double>(options_.initial.count());
  const double max = static_cast<double>(options_.max.count());
  for (unsigned i = 0; i < attempts_ && base < max; ++i) base *= 2;
  base = std::min(base, max);
  ++attempts_;
  const double delay = base * (1.0 - options_.jitter * random());
  return std::chrono::milliseconds(std::max<std::int64_t>(1, static_cast<std::int64_t>(delay)));
}

}  // namespace spry::detail
