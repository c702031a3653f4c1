#pragma once
// Latency histogram in nanoseconds: log-linear buckets (64 per power of two,
// about 1.6 % resolution), fixed size, no allocation while recording.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace load {

class Histogram {
 public:
  void record(std::uint64_t ns) noexcept {
    ++counts_[index(ns)];
    ++total_;
    max_ = std::max(max_, ns);
  }
  void merge(const Histogram& other) noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
  }
  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t max() const noexcept { return max_; }

  // The value at quantile q (0..1]: the middle of the bucket that holds it,
  // never above the largest value recorded.
  std::uint64_t quantile(double q) const noexcept {
    if (total_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const std::uint64_t lo = lowerBound(i);
        const std::uint64_t hi = lowerBound(i + 1);
        return std::min(max_, lo + (hi - lo) / 2);
      }
    }
    return max_;
  }

 private:
  static constexpr std::size_t kSub = 64;
  static constexpr std::size_t kBuckets = 2 * kSub + 57 * kSub;

  static std::size_t index(std::uint64_t v) noexcept {
    if (v < 2 * kSub) return static_cast<std::size_t>(v);
    const int e = 63 - __builtin_clzll(v);  // 7..63
    const int shift = e - 6;
    return 2 * kSub + static_cast<std::size_t>(e - 7) * kSub +
           static_cast<std::size_t>((v >> shift) - kSub);
  }
  static std::uint64_t lowerBound(std::size_t i) noexcept {
    if (i < 2 * kSub) return i;
    const std::size_t k = i - 2 * kSub;
    const int e = static_cast<int>(k / kSub) + 7;
    if (e > 63) return UINT64_MAX;
    return static_cast<std::uint64_t>(k % kSub + kSub) << (e - 6);
  }

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace load
