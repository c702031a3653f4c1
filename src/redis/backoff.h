#pragma once
// Delays between reconnect attempts: exponential from `initial`, capped at
// `max`, each shortened by a random part of up to `jitter` of itself so that
// processes that lost the same server do not come back in step.

#include <chrono>
#include <cstdint>

namespace spry::detail {

struct BackoffOptions {
  std::chrono::milliseconds initial{100};  // the first delay (before jitter)
  std::chrono::milliseconds max{1000};     // no delay is longer
  double jitter = 0.5;                     // a delay is in ((1 - jitter) * d, d], 0 <= jitter <= 1
};

class Backoff {
 public:
  // `seed` 0 takes one from std::random_device.
  explicit Backoff(BackoffOptions options = {}, std::uint64_t seed = 0) noexcept;

  // The delay before the next attempt; each call doubles the base, up to max.
  std::chrono::milliseconds next() noexcept;
  // After a success: the next delay starts again from `initial`.
  void reset() noexcept { attempts_ = 0; }
  // Delays handed out since construction or reset().
  unsigned attempts() const noexcept { return attempts_; }

 private:
  double random() noexcept;  // uniform in [0, 1)

  BackoffOptions options_;
  unsigned attempts_ = 0;
  std::uint64_t state_;
};

}  // namespace spry::detail
