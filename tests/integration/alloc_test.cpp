// Heap allocations per small HTTP GET on the server's hot path. Its own
// executable: it replaces the global allocation functions to count them.
//
// Counted: every operator new (all forms) made on the server's loop thread
// while a measurement runs. The flag that enables counting is thread_local and
// is set and cleared from inside the loop (TestServer::onLoop), so the client,
// doctest and the main thread never count. Not counted: malloc/realloc called
// directly (libuv, the output buffer).

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>

#include "harness.h"
#include "strings.h"

namespace {

// The target in steady state is zero allocations per request; a measured run
// may see a few from periodic work (the Date header's refresh, a timer):
// at most one per kRequestsPerNoiseAllocation requests.
constexpr long kRequestsPerNoiseAllocation = 100;
constexpr int kWarmupBatches = 5;
constexpr int kBatches = 10;
constexpr int kPipelined = 16;            // requests per batch, sent in one write
constexpr int kSequentialRequests = 200;  // one at a time on one keep-alive connection
constexpr int kBrowserRequests = 200;

std::atomic<long> gAllocations{0};
thread_local bool tCounting = false;

void count() noexcept {
  if (tCounting) gAllocations.fetch_add(1, std::memory_order_relaxed);
}

void* allocate(std::size_t n) noexcept {
  count();
  return std::malloc(n == 0 ? 1 : n);
}

void* allocateAligned(std::size_t n, std::align_val_t al) noexcept {
  count();
  auto a = static_cast<std::size_t>(al);
  if (a < sizeof(void*)) a = sizeof(void*);
  std::size_t rounded = n == 0 ? a : (n + a - 1) / a * a;  // aligned_alloc wants a multiple
  return std::aligned_alloc(a, rounded);
}

void* orThrow(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t n) {
  return orThrow(allocate(n));
}
void* operator new[](std::size_t n) {
  return orThrow(allocate(n));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return allocate(n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return allocate(n);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return orThrow(allocateAligned(n, a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return orThrow(allocateAligned(n, a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocateAligned(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocateAligned(n, a);
}

void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}

using namespace spry::test;

namespace {

constexpr std::string_view kBareGet = "GET /hello/world HTTP/1.1\r\nHost: x\r\n\r\n";

constexpr std::string_view kBrowserGet =
    "GET /hello/world HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: http://localhost:8080/\r\n"
    "Cookie: session=3f2a9c1e7b5d4a60; theme=dark\r\n"
    "Connection: keep-alive\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Sec-Fetch-User: ?1\r\n"
    "\r\n";

// The routes of examples/hello that a GET /hello/world goes through.
void addHelloRoutes(spry::App& app) {
  app.use([](spry::Request&, const spry::Next& next) {
    auto res = next();
    res.header("Server", "spry");
    return res;
  });
  app.get("/hello/:name", [](spry::Request& req) { return cat("Hello, ", req.param("name")); });
}

// Counts the loop thread's allocations between start() and stop(). Both run
// on the loop, so work still queued there when they are called is included.
class AllocationMeter {
 public:
  explicit AllocationMeter(TestServer& server) : server_(server) {}
  void start() {
    server_.onLoop([] {
      gAllocations = 0;
      tCounting = true;
    });
  }
  long stop() {
    return server_.onLoop([] {
      tCounting = false;
      return gAllocations.load();
    });
  }

 private:
  TestServer& server_;
};

// Sends `n` copies of `request` in one write and reads `n` complete responses.
void exchange(RawClient& c, std::string_view request, int n) {
  std::string batch;
  for (int i = 0; i < n; ++i) batch.append(request);
  REQUIRE(c.send(batch));
  for (int i = 0; i < n; ++i) {
    auto r = readResponse(c);
    REQUIRE(r);
    REQUIRE(r->status == 200);
    REQUIRE(r->body == "Hello, world");
    REQUIRE_MESSAGE(r->head.find("\r\nServer: spry\r\n") != std::string::npos, r->head);
  }
}

void report(std::string_view what, long allocations, int requests) {
  MESSAGE(what << ": " << allocations << " allocations on the loop thread over " << requests
               << " requests = " << static_cast<double>(allocations) / requests << " per request");
  CHECK(allocations <= requests / kRequestsPerNoiseAllocation);
}

}  // namespace

TEST_CASE("a bare GET, pipelined, allocates nothing on the loop thread") {
  spry::App app;
  addHelloRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  for (int i = 0; i < kWarmupBatches; ++i) exchange(c, kBareGet, kPipelined);

  AllocationMeter meter(server);
  meter.start();
  for (int i = 0; i < kBatches; ++i) exchange(c, kBareGet, kPipelined);
  report("bare GET, pipelined", meter.stop(), kBatches * kPipelined);
}

TEST_CASE("a bare GET, one at a time on a keep-alive connection, allocates nothing") {
  spry::App app;
  addHelloRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  for (int i = 0; i < kWarmupBatches; ++i) exchange(c, kBareGet, 1);

  AllocationMeter meter(server);
  meter.start();
  for (int i = 0; i < kSequentialRequests; ++i) exchange(c, kBareGet, 1);
  report("bare GET, sequential", meter.stop(), kSequentialRequests);
}

TEST_CASE("a browser-like GET with typical headers allocates nothing") {
  CHECK(kBrowserGet.size() > 500);
  CHECK(kBrowserGet.size() < 600);
  spry::App app;
  addHelloRoutes(app);
  TestServer server(app);
  RawClient c(server.port());
  for (int i = 0; i < kWarmupBatches; ++i) exchange(c, kBrowserGet, 1);

  AllocationMeter meter(server);
  meter.start();
  for (int i = 0; i < kBrowserRequests; ++i) exchange(c, kBrowserGet, 1);
  report("browser-like GET, sequential", meter.stop(), kBrowserRequests);
}
