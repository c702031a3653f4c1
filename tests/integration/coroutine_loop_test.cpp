// Coroutines on spry's loops: Loop::sleep, Loop::work (libuv's thread pool,
// so this runs under ThreadSanitizer in suite 'threads'), Loop::spawn, the
// loop-thread rule, and what happens to suspended frames when the app stops.
// The app listens with two loops on a background thread.

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "spry/spry.h"

using namespace std::chrono_literals;
using spry::Loop;
using spry::Task;

namespace {

class Running {
 public:
  explicit Running(spry::App& app) : app_(app) {
    std::promise<void> bound;
    auto ready = bound.get_future();
    thread_ = std::thread([this, &bound] {
      app_.listen(
          {.port = 0,
           .threads = 2,
           .handleSignals = false,
           .onListening = [&bound](const std::string&, std::uint16_t) { bound.set_value(); }});
    });
    ready.get();
    // onListening runs once the first loop is bound: wait until all are up.
    for (int i = 0; i < 500 && app_.loops().size() < 2; ++i) std::this_thread::sleep_for(2ms);
    REQUIRE(app_.loops().size() == 2);
  }
  ~Running() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    app_.stop(1000ms);
    thread_.join();
  }
  std::vector<Loop> loops() const { return app_.loops(); }

 private:
  spry::App& app_;
  std::thread thread_;
};

// Counts its destructions: shows a frame was destroyed.
struct Tracked {
  std::atomic<int>* destroyed;
  explicit Tracked(std::atomic<int>* d) : destroyed(d) {}
  Tracked(const Tracked&) = delete;
  ~Tracked() { destroyed->fetch_add(1); }
};

template <class T>
T waitFor(std::future<T>& f) {
  REQUIRE(f.wait_for(10s) == std::future_status::ready);
  return f.get();
}

}  // namespace

TEST_CASE(
    "sleep resumes on the loop after the delay; work runs on the pool and resumes on the loop") {
  spry::App app;
  Running running(app);
  Loop loop = running.loops()[0];
  std::promise<std::string> result;
  auto f = result.get_future();
  const auto main = std::this_thread::get_id();
  REQUIRE(loop.spawn([](Loop loop, std::promise<std::string>& out, std::thread::id main) -> Task<> {
    std::string log;
    const auto loopThread = std::this_thread::get_id();
    if (loopThread == main) log += "on-main ";
    const auto t0 = std::chrono::steady_clock::now();
    co_await loop.sleep(30ms);
    const auto slept = std::chrono::steady_clock::now() - t0;
    // The loop's clock counts whole milliseconds: up to 1 ms under the steady clock's.
    log += slept >= 29ms ? "slept " : "early ";
    if (std::this_thread::get_id() != loopThread) log += "moved ";
    std::thread::id poolThread;
    int s = co_await loop.work([&poolThread] {
      poolThread = std::this_thread::get_id();
      int s = 0;
      for (int i = 1; i <= 100; ++i) s += i;
      return s;
    });
    log += std::to_string(s) + " ";
    if (poolThread == loopThread) log += "pool-is-loop ";
    if (std::this_thread::get_id() != loopThread) log += "moved ";
    co_await loop.work([] {});  // void work
    try {
      co_await loop.work([]() -> int { throw std::runtime_error("from the pool"); });
      log += "no-throw ";
    } catch (const std::runtime_error& e) {
      log += e.what();
    }
    co_await loop.sleep(0ms);  // a yield
    out.set_value(log);
  }(loop, result, main)));
  CHECK(waitFor(f) == "slept 5050 from the pool");
}

TEST_CASE("many coroutines on both loops share the pool (ThreadSanitizer: results cross threads)") {
  spry::App app;
  Running running(app);
  constexpr int kPerLoop = 50;
  std::atomic<int> done{0};
  std::atomic<long> total{0};
  std::promise<void> all;
  auto f = all.get_future();
  for (const Loop& loop : running.loops()) {
    for (int i = 0; i < kPerLoop; ++i) {
      auto task = [](Loop loop, int i, std::atomic<int>& done, std::atomic<long>& total,
                     std::promise<void>& all) -> Task<> {
        std::vector<int> data(1000, i);  // on the frame; read by the pool
        long sum = 0;
        for (int round = 0; round < 5; ++round) {
          sum += co_await loop.work([&data] {
            long s = 0;
            for (int v : data) s += v;
            return s;
          });
          data[0] += 1;  // written on the loop between jobs
          co_await loop.sleep(1ms);
        }
        total.fetch_add(sum);
        if (done.fetch_add(1) + 1 == 2 * kPerLoop) all.set_value();
      };
      REQUIRE(loop.spawn(task(loop, i, done, total, all)));  // posted: we are not the loop
    }
  }
  waitFor(f);
  long expected = 0;
  for (int l = 0; l < 2; ++l) {
    for (int i = 0; i < kPerLoop; ++i) expected += 5L * 1000 * i + (0 + 1 + 2 + 3 + 4);
  }
  CHECK(total.load() == expected);
}

TEST_CASE("awaiting another loop's sleep or work is a logic_error naming the misuse") {
  spry::App app;
  Running running(app);
  auto loops = running.loops();
  std::promise<std::string> result;
  auto f = result.get_future();
  REQUIRE(loops[0].spawn([](Loop other, std::promise<std::string>& out) -> Task<> {
    std::string log;
    try {
      co_await other.sleep(1ms);
      log += "slept ";
    } catch (const std::logic_error& e) {
      log += std::string(e.what()).find("Loop::sleep") != std::string::npos ? "sleep " : "?";
    }
    try {
      co_await other.work([] { return 1; });
      log += "worked ";
    } catch (const std::logic_error& e) {
      log += std::string(e.what()).find("Loop::work") != std::string::npos ? "work" : "?";
    }
    out.set_value(log);
  }(loops[1], result)));
  CHECK(waitFor(f) == "sleep work");
}

TEST_CASE("an exception escaping a spawned coroutine is logged, the loop goes on") {
  std::mutex m;
  std::vector<std::string> lines;
  spry::setLogSink([&](spry::LogLevel, std::string_view line) {
    std::lock_guard lock(m);
    lines.emplace_back(line);
  });
  {
    spry::App app;
    Running running(app);
    Loop loop = running.loops()[0];
    REQUIRE(loop.spawn([](Loop loop) -> Task<> {
      co_await loop.sleep(1ms);
      throw std::runtime_error("escaped");
    }(loop)));
    std::promise<void> after;
    auto f = after.get_future();
    REQUIRE(loop.spawn([](Loop loop, std::promise<void>& p) -> Task<> {
      co_await loop.sleep(20ms);
      p.set_value();
    }(loop, after)));
    waitFor(f);
  }
  spry::setLogSink({});
  bool found = false;
  for (const auto& l : lines)
    found = found || (l.find("spawned coroutine") != std::string::npos &&
                      l.find("escaped") != std::string::npos);
  CHECK(found);
}

TEST_CASE("stopping the app destroys suspended frames; none is resumed afterwards") {
  std::atomic<int> destroyed{0};
  std::atomic<int> resumed{0};
  std::atomic<int> started{0};
  {
    spry::App app;
    Running running(app);
    for (const Loop& loop : running.loops()) {
      // Asleep for a minute: destroyed by the stop, never resumed.
      REQUIRE(loop.spawn(
          [](Loop loop, std::atomic<int>* d, std::atomic<int>* r, std::atomic<int>* s) -> Task<> {
            Tracked t(d);
            s->fetch_add(1);
            co_await loop.sleep(60s);
            r->fetch_add(1);
          }(loop, &destroyed, &resumed, &started)));
      // In the pool while the app stops: the job finishes, the frame is gone.
      REQUIRE(loop.spawn(
          [](Loop loop, std::atomic<int>* d, std::atomic<int>* r, std::atomic<int>* s) -> Task<> {
            Tracked t(d);
            s->fetch_add(1);
            co_await loop.work([] { std::this_thread::sleep_for(200ms); });
            co_await loop.sleep(60s);
            r->fetch_add(1);
          }(loop, &destroyed, &resumed, &started)));
      // Nested: the frame it awaits goes with it.
      REQUIRE(loop.spawn(
          [](Loop loop, std::atomic<int>* d, std::atomic<int>* r, std::atomic<int>* s) -> Task<> {
            Tracked t(d);
            auto inner = [](Loop loop, std::atomic<int>* d) -> Task<int> {
              Tracked t(d);
              co_await loop.sleep(60s);
              co_return 1;
            };
            s->fetch_add(1);
            r->fetch_add(co_await inner(loop, d));
          }(loop, &destroyed, &resumed, &started)));
    }
    for (int i = 0; i < 500 && started.load() < 6; ++i) std::this_thread::sleep_for(2ms);
    REQUIRE(started.load() == 6);
    const auto t0 = std::chrono::steady_clock::now();
    running.stop();
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  }
  CHECK(destroyed.load() == 8);
  CHECK(resumed.load() == 0);
}

TEST_CASE("spawn on a stopped or empty loop returns false and drops the task") {
  std::atomic<int> destroyed{0};
  Loop stale;
  {
    spry::App app;
    Running running(app);
    stale = running.loops()[0];
  }
  auto make = [](std::atomic<int>* d) -> Task<> {
    Tracked t(d);
    co_return;
  };
  CHECK_FALSE(stale.spawn(make(&destroyed)));
  CHECK_FALSE(Loop().spawn(make(&destroyed)));
  CHECK(destroyed.load() == 0);  // never started: their frames held no Tracked yet
}
