// spry::Task<T> alone: laziness, values, exceptions, suspension and
// resumption by hand, destruction while suspended, symmetric transfer over
// long chains, foreign awaitables. No loop: a test drives the coroutines.
#include <doctest/doctest.h>

#include <coroutine>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "spry/task.h"

using spry::Task;
using spry::detail::TaskAccess;

namespace {

// Runs a task to its end (or first suspension) and returns it started.
template <class T>
bool run(Task<T>& t) {
  return TaskAccess::start(t);
}

// An awaitable resumed by the test: records who waits on it.
struct Gate {
  std::coroutine_handle<> waiter;
  int value = 0;
  auto wait() {
    struct Awaiter {
      Gate& g;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) noexcept { g.waiter = h; }
      int await_resume() const noexcept { return g.value; }
    };
    return Awaiter{*this};
  }
  void open(int v) {
    value = v;
    auto h = std::exchange(waiter, {});
    if (!h) FAIL("nobody waits at the gate");
    h.resume();
  }
};

// Counts its destructions: shows a frame's locals were destroyed.
struct Tracked {
  int* destroyed;
  explicit Tracked(int* d) : destroyed(d) {}
  Tracked(const Tracked&) = delete;
  ~Tracked() { ++*destroyed; }
};

Task<int> answer() {
  co_return 42;
}

Task<std::string> greet(std::string name) {
  co_return "hello " + name;
}

Task<> nothing(int* ran) {
  ++*ran;
  co_return;
}

Task<int> sum(int n) {
  int s = 0;
  for (int i = 1; i <= n; ++i) s += co_await answer() - 41;
  co_return s;
}

Task<int> thrower() {
  throw std::runtime_error("boom");
  co_return 0;  // NOLINT: unreachable, makes this a coroutine
}

Task<int> catcher() {
  try {
    co_return co_await thrower();
  } catch (const std::runtime_error& e) {
    co_return std::string(e.what()) == "boom" ? 7 : -1;
  }
}

Task<int> viaGate(Gate& g, int* destroyed) {
  Tracked t(destroyed);
  int v = co_await g.wait();
  co_return v * 2;
}

Task<int> outer(Gate& g, int* destroyed) {
  Tracked t(destroyed);
  int v = co_await viaGate(g, destroyed);
  co_return v + 1;
}

}  // namespace

TEST_CASE("a task is lazy: nothing runs before it is started or awaited") {
  int ran = 0;
  auto t = nothing(&ran);
  CHECK(ran == 0);
  CHECK_FALSE(t.isReady());
  CHECK(run(t));
  CHECK(ran == 1);
  CHECK(t.isReady());
  TaskAccess::take(t);
}

TEST_CASE("values come back through co_await, also move-only ones") {
  auto t = sum(10);
  REQUIRE(run(t));
  CHECK(TaskAccess::take(t) == 10);

  auto g = greet("spry");
  REQUIRE(run(g));
  CHECK(TaskAccess::take(g) == "hello spry");

  auto makeOwned = []() -> Task<std::unique_ptr<int>> { co_return std::make_unique<int>(5); };
  auto use = [&]() -> Task<int> {
    auto p = co_await makeOwned();
    co_return *p;
  };
  auto u = use();
  REQUIRE(run(u));
  CHECK(TaskAccess::take(u) == 5);
}

TEST_CASE("exceptions propagate through co_await and out of take()") {
  auto t = thrower();
  REQUIRE(run(t));
  CHECK_THROWS_WITH_AS(TaskAccess::take(t), "boom", std::runtime_error);

  auto c = catcher();
  REQUIRE(run(c));
  CHECK(TaskAccess::take(c) == 7);
}

TEST_CASE("a suspended chain resumes from the innermost awaiter, and returns through every level") {
  Gate gate;
  int destroyed = 0;
  auto t = outer(gate, &destroyed);
  CHECK_FALSE(run(t));  // parked at the gate, two frames deep
  CHECK(gate.waiter);
  CHECK(destroyed == 0);
  gate.open(20);
  REQUIRE(t.isReady());
  CHECK(TaskAccess::take(t) == 41);
  CHECK(destroyed == 2);  // both frames' locals, once each
}

TEST_CASE("destroying a suspended task destroys every frame of its chain, and nothing runs after") {
  Gate gate;
  int destroyed = 0;
  {
    auto t = outer(gate, &destroyed);
    CHECK_FALSE(run(t));
    CHECK(destroyed == 0);
  }
  CHECK(destroyed == 2);
}

TEST_CASE("a million ready awaits in a row use no stack (symmetric transfer)") {
  auto loop = []() -> Task<long> {
    long s = 0;
    for (int i = 0; i < 1'000'000; ++i) s += co_await answer();
    co_return s;
  };
  auto t = loop();
  REQUIRE(run(t));
  CHECK(TaskAccess::take(t) == 42'000'000L);
}

namespace {
Task<int> depth(int n) {
  if (n == 0) co_return 0;
  co_return 1 + co_await depth(n - 1);
}
}  // namespace

TEST_CASE("a chain a hundred thousand tasks deep starts and finishes without growing the stack") {
  auto t = depth(100'000);
  REQUIRE(run(t));
  CHECK(TaskAccess::take(t) == 100'000);
}

TEST_CASE("resuming one awaiter a million times in a row does not grow the stack either") {
  // The gate resumes the coroutine from the test, which awaits the gate again:
  // each round trip returns to the caller (no nested resumes).
  Gate gate;
  auto loop = [&]() -> Task<long> {
    long s = 0;
    for (int i = 0; i < 1'000'000; ++i) s += co_await gate.wait();
    co_return s;
  };
  auto t = loop();
  CHECK_FALSE(run(t));
  for (int i = 0; i < 1'000'000; ++i) gate.open(1);
  REQUIRE(t.isReady());
  CHECK(TaskAccess::take(t) == 1'000'000L);
}

TEST_CASE("any standard awaitable works inside a task (no await_transform)") {
  struct BoolSuspend {  // await_suspend returning bool: false means go on at once
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<>) const noexcept { return false; }
    int await_resume() const noexcept { return 3; }
  };
  struct WithOperator {  // operator co_await on the operand
    struct A {
      bool await_ready() const noexcept { return true; }
      void await_suspend(std::coroutine_handle<>) const noexcept {}
      int await_resume() const noexcept { return 4; }
    };
    A operator co_await() const noexcept { return {}; }
  };
  auto t = []() -> Task<int> {
    co_await std::suspend_never{};
    int a = co_await BoolSuspend{};
    int b = co_await WithOperator{};
    co_return a + b;
  }();
  REQUIRE(run(t));
  CHECK(TaskAccess::take(t) == 7);
}

TEST_CASE("a task can be awaited as an lvalue, and an empty task is a logic_error") {
  auto t = []() -> Task<int> {
    auto inner = answer();
    int v = co_await inner;
    co_return v;
  }();
  REQUIRE(run(t));
  CHECK(TaskAccess::take(t) == 42);

  auto e = []() -> Task<int> {
    Task<int> empty;
    co_return co_await empty;
  }();
  REQUIRE(run(e));
  CHECK_THROWS_AS(TaskAccess::take(e), std::logic_error);
}

TEST_CASE("move assignment destroys the task it replaces") {
  Gate gate;
  int destroyed = 0;
  auto t = viaGate(gate, &destroyed);
  CHECK_FALSE(run(t));
  t = answer();
  CHECK(destroyed == 1);
  REQUIRE(run(t));
  CHECK(TaskAccess::take(t) == 42);
}
