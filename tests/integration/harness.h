#pragma once
// Loopback test harness: an App served on a libuv loop of the test's own (on
// a background thread), blocking raw-socket clients with timeouts, and a
// Probe that records what the server's WebSockets saw.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <spry/spry.h>

namespace spry::test {

using namespace std::chrono_literals;

// Runs fn on `loop` and waits for its result.
template <class F>
auto runOn(const Loop& loop, F fn) -> decltype(fn()) {
  std::packaged_task<decltype(fn())()> task(std::move(fn));
  auto result = task.get_future();
  REQUIRE(loop.post([&task] { task(); }));
  return result.get();
}

// Runs `app` on a loop owned by the test, attached with App::attach. The
// destructor stops the app, joins the thread and checks that the loop closes
// cleanly (every handle released: each test is also a leak check).
class TestServer {
 public:
  explicit TestServer(App& app, ListenOptions options = {.port = 0}) : app_(app) {
    std::promise<std::uint16_t> bound;
    auto ready = bound.get_future();
    thread_ = std::thread([this, options, &bound] {
      uv_loop_init(&loop_);
      try {
        bound.set_value(app_.attach(&loop_, options));
      } catch (...) {
        bound.set_exception(std::current_exception());
        uv_run(&loop_, UV_RUN_DEFAULT);
        loopClosed_ = uv_loop_close(&loop_);
        return;
      }
      uv_run(&loop_, UV_RUN_DEFAULT);
      loopClosed_ = uv_loop_close(&loop_);
    });
    try {
      port_ = ready.get();
    } catch (...) {
      thread_.join();
      throw;
    }
  }
  ~TestServer() { stop(); }

  std::uint16_t port() const noexcept { return port_; }
  Loop loop() const { return app_.loops().at(0); }

  // Runs fn on the server's loop and waits for it.
  template <class F>
  auto onLoop(F fn) -> decltype(fn()) {
    return runOn(loop(), std::move(fn));
  }

  void stop(std::chrono::milliseconds deadline = 2000ms) {
    if (!thread_.joinable()) return;
    app_.stop(deadline);
    thread_.join();
    CHECK_MESSAGE(loopClosed_ == 0, "the loop still had open handles after stop()");
  }

 private:
  App& app_;
  uv_loop_t loop_{};
  std::thread thread_;
  std::uint16_t port_ = 0;
  int loopClosed_ = -1;
};

// A blocking TCP client for raw protocol bytes; every read has a timeout.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port, const char* host = "127.0.0.1") {
    bool v6 = std::strchr(host, ':') != nullptr;
    fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc;
    if (v6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(port);
      ::inet_pton(AF_INET6, host, &a.sin6_addr);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      ::inet_pton(AF_INET, host, &a.sin_addr);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    }
    REQUIRE_MESSAGE(rc == 0, "connect failed: " << std::strerror(errno));
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  int fd() const noexcept { return fd_; }

  // Sends everything; false when the peer has gone (EPIPE/ECONNRESET).
  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Sends one byte at a time (split packets).
  bool sendSlowly(std::string_view data, std::chrono::microseconds gap = 0us) {
    for (char c : data) {
      if (!send(std::string_view(&c, 1))) return false;
      if (gap.count()) std::this_thread::sleep_for(gap);
    }
    return true;
  }

  // Closes our sending side (FIN), keeps reading.
  void shutdownWrite() { ::shutdown(fd_, SHUT_WR); }
  // Closes abortively (RST).
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    ::close(fd_);
    fd_ = -1;
  }

  // Reads what is available within `timeout`: empty on timeout; sets closed()
  // when the peer closed (EOF or reset).
  std::string readSome(std::chrono::milliseconds timeout = 2000ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return {};
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) {
      closed_ = true;
      return {};
    }
    return std::string(buf, static_cast<std::size_t>(n));
  }

  // Reads until `buffer_` holds at least n bytes; false on timeout or close.
  bool fill(std::size_t n, std::chrono::milliseconds timeout = 2000ms) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (buffer_.size() < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      std::string got = readSome(left);
      if (got.empty() && closed_) return false;
      buffer_ += got;
    }
    return true;
  }

  // Reads until `delim` is buffered; returns everything up to and including it.
  std::optional<std::string> readUntil(std::string_view delim,
                                       std::chrono::milliseconds timeout = 2000ms) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto pos = buffer_.find(delim);
      if (pos != std::string::npos) {
        std::string out = buffer_.substr(0, pos + delim.size());
        buffer_.erase(0, pos + delim.size());
        return out;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      std::string got = readSome(left);
      if (got.empty() && closed_) return std::nullopt;
      buffer_ += got;
    }
  }

  // Takes n buffered bytes (after fill(n)).
  std::string take(std::size_t n) {
    std::string out = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return out;
  }

  // True once the peer has closed: waits up to `timeout` for EOF, discarding data.
  bool waitClosed(std::chrono::milliseconds timeout = 2000ms) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (!closed_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      buffer_ += readSome(left);
    }
    return true;
  }

  bool closed() const noexcept { return closed_; }
  std::string& buffer() noexcept { return buffer_; }

  // Shrinks the kernel receive buffer (and stops its autotuning), so that a
  // client that does not read makes the server's writes back up quickly.
  void setReceiveBuffer(int bytes) {
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  }

  // True when data (or EOF) is ready to read within `timeout`.
  bool readable(std::chrono::milliseconds timeout = 0ms) {
    if (!buffer_.empty()) return true;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
  }

  // The local port of this client (the server's remotePort()).
  std::uint16_t localPort() const {
    sockaddr_storage a{};
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    return a.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port)
                                   : ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
  }

 private:
  int fd_ = -1;
  bool closed_ = false;
  std::string buffer_;
};

struct HttpResponse {
  int status = 0;
  std::string head;  // status line and headers
  Headers headers;
  std::string body;
};

// Reads one response (Content-Length, chunked, or close-delimited body).
// `headRequest`: the response to a HEAD has no body whatever it says.
inline std::optional<HttpResponse> readResponse(RawClient& c, bool headRequest = false,
                                                std::chrono::milliseconds timeout = 2000ms) {
  auto head = c.readUntil("\r\n\r\n", timeout);
  if (!head) return std::nullopt;
  HttpResponse r;
  r.head = *head;
  if (r.head.size() < 12 || r.head.compare(0, 5, "HTTP/") != 0) return std::nullopt;
  r.status = std::stoi(r.head.substr(9, 3));
  std::size_t pos = r.head.find("\r\n") + 2;
  while (pos < r.head.size() - 2) {
    auto end = r.head.find("\r\n", pos);
    std::string line = r.head.substr(pos, end - pos);
    auto colon = line.find(':');
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    r.headers.add(line.substr(0, colon), value);
    pos = end + 2;
  }
  if (headRequest || r.status < 200 || r.status == 204 || r.status == 304) return r;
  if (auto cl = r.headers.get("Content-Length"); !cl.empty()) {
    std::size_t n = std::stoul(std::string(cl));
    if (!c.fill(n, timeout)) return std::nullopt;
    r.body = c.take(n);
  } else if (equalsIgnoreCase(r.headers.get("Transfer-Encoding"), "chunked")) {
    for (;;) {
      auto sizeLine = c.readUntil("\r\n", timeout);
      if (!sizeLine) return std::nullopt;
      std::size_t n = std::stoul(*sizeLine, nullptr, 16);
      if (n == 0) {
        if (!c.readUntil("\r\n", timeout)) return std::nullopt;
        break;
      }
      if (!c.fill(n + 2, timeout)) return std::nullopt;
      r.body += c.take(n);
      c.take(2);
    }
  } else {
    c.waitClosed(timeout);
    r.body = std::move(c.buffer());
    c.buffer().clear();
  }
  return r;
}

// One request on a fresh connection.
inline std::optional<HttpResponse> request(std::uint16_t port, const std::string& raw) {
  RawClient c(port);
  c.send(raw);
  return readResponse(c, raw.rfind("HEAD ", 0) == 0);
}

inline std::string get(std::string_view path, std::string_view extraHeaders = {}) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n" + std::string(extraHeaders) +
         "\r\n";
}

inline std::string post(std::string_view path, std::string_view body,
                        std::string_view extraHeaders = {}) {
  return "POST " + std::string(path) +
         " HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(extraHeaders) + "\r\n" + std::string(body);
}

// A thread-safe list of events, for recording the order in which handlers,
// middleware and callbacks ran on the server's loop.
class Recorder {
 public:
  void add(std::string event) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return events_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> events_;
};

// Captures spry's log lines while alive, then restores the default sink.
class LogCapture {
 public:
  explicit LogCapture(spry::LogLevel level = spry::LogLevel::kInfo) {
    spry::setLogLevel(level);
    spry::setLogSink(
        [this](spry::LogLevel, std::string_view line) { lines_.add(std::string(line)); });
  }
  ~LogCapture() {
    spry::setLogSink({});
    spry::setLogLevel(spry::LogLevel::kInfo);
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<std::string> lines() const { return lines_.events(); }
  // True when some line contains every one of `parts`.
  bool contains(std::initializer_list<std::string_view> parts) const {
    for (const auto& line : lines_.events()) {
      bool all = true;
      for (auto p : parts) all = all && line.find(p) != std::string::npos;
      if (all) return true;
    }
    return false;
  }

 private:
  Recorder lines_;
};

// Polls `done` until it holds or `timeout` passes; returns its last value.
template <class F>
bool waitUntil(F done, std::chrono::milliseconds timeout = 2000ms) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return done();
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// What the server saw of its WebSockets, written on the loop thread and read
// by the test: opens, messages, closes with every code, and notes.
struct Probe {
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  std::atomic<int> lastCode{0};
  std::atomic<long> messages{0};
  std::mutex mutex;
  std::string lastReason;
  std::vector<int> codes;
  std::vector<std::string> notes;

  // Counts the open and registers an onClose that records the close; it also
  // notes a socket that still looks live inside its onClose.
  void watch(const WebSocket& ws) {
    ++opened;
    ws.onClose([this, ws](std::uint16_t code, std::string_view reason) {
      {
        std::lock_guard lock(mutex);
        lastReason = std::string(reason);
        // closeCode() already reports the code inside onClose.
        if (ws.closeCode() != code) notes.push_back("closeCode() differs in onClose");
        if (ws.add("late") || ws.close() || ws.isOpen()) notes.push_back("live in onClose");
      }
      record(code);
    });
  }
  // Records a close with `code` (for routes with an onClose of their own).
  void record(std::uint16_t code) {
    {
      std::lock_guard lock(mutex);
      codes.push_back(code);
    }
    lastCode = code;
    ++closed;
  }
  void note(std::string s) {
    std::lock_guard lock(mutex);
    notes.push_back(std::move(s));
  }
  std::vector<std::string> takeNotes() {
    std::lock_guard lock(mutex);
    return notes;
  }
  std::vector<int> takeCodes() {
    std::lock_guard lock(mutex);
    return codes;
  }
  std::string reason() {
    std::lock_guard lock(mutex);
    return lastReason;
  }
  // True once `n` sockets have closed (waits up to `timeout`).
  bool waitClosed(int n = 1, std::chrono::milliseconds timeout = 2000ms) {
    return waitUntil([&] { return closed.load() >= n; }, timeout);
  }
};

// A ws route handler's body: watches `ws` and echoes every message with its
// type, counting it.
inline void echo(Probe& p, const WebSocket& ws) {
  p.watch(ws);
  ws.listen([ws, &p](const Message& m) {
    ++p.messages;
    ws.add(m);
  });
}

}  // namespace spry::test
