#include "redis/backoff.h"

#include <doctest/doctest.h>

#include <chrono>
#include <set>

using spry::detail::Backoff;
using spry::detail::BackoffOptions;
using namespace std::chrono_literals;

TEST_CASE("defaults: from 100 ms, doubling, capped at 1 s, each delay jittered within bounds") {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    Backoff b({}, seed);
    // Bases 100, 200, 400, 800, then the 1000 cap; jitter 0.5 takes up to half.
    const long bases[] = {100, 200, 400, 800, 1000, 1000, 1000, 1000};
    for (long base : bases) {
      const long d = b.next().count();
      CAPTURE(seed);
      CAPTURE(base);
      CHECK(d <= base);
      CHECK(d >= base / 2);
    }
    CHECK(b.attempts() == 8);
  }
}

TEST_CASE("many attempts never pass the cap nor overflow") {
  Backoff b({.initial = 100ms, .max = 1000ms, .jitter = 0.5}, 7);
  for (int i = 0; i < 100000; ++i) {
    const auto d = b.next();
    REQUIRE(d <= 1000ms);
    if (i >= 4) REQUIRE(d >= 500ms);
  }
}

TEST_CASE("reset starts again from the initial delay") {
  Backoff b({.initial = 50ms, .max = 400ms, .jitter = 0}, 3);
  CHECK(b.next() == 50ms);
  CHECK(b.next() == 100ms);
  CHECK(b.next() == 200ms);
  CHECK(b.next() == 400ms);
  CHECK(b.next() == 400ms);
  b.reset();
  CHECK(b.attempts() == 0);
  CHECK(b.next() == 50ms);
}

TEST_CASE("jitter spreads delays; full jitter may go near zero but not to it") {
  Backoff b({.initial = 1000ms, .max = 1000ms, .jitter = 1.0}, 11);
  std::set<long> seen;
  for (int i = 0; i < 1000; ++i) {
    const long d = b.next().count();
    CHECK(d >= 1);
    CHECK(d <= 1000);
    seen.insert(d);
  }
  CHECK(seen.size() > 300);  // not one value repeated
}

TEST_CASE("options are sanitized: max below initial, jitter out of range, zero initial") {
  Backoff a({.initial = 500ms, .max = 100ms, .jitter = 0}, 1);
  CHECK(a.next() == 500ms);  // the cap is raised to the initial delay
  CHECK(a.next() == 500ms);
  Backoff b({.initial = 100ms, .max = 1000ms, .jitter = 7}, 1);
  for (int i = 0; i < 100; ++i) CHECK(b.next() >= 1ms);
  Backoff c({.initial = 0ms, .max = 0ms, .jitter = -1}, 1);
  CHECK(c.next() == 1ms);
  // Seeds differ between two default-constructed ones (random_device).
  Backoff d, e;
  bool differ = false;
  for (int i = 0; i < 20 && !differ; ++i) differ = d.next() != e.next();
  CHECK(differ);
}
