#pragma once
// A real redis-server for a test: on a free loopback port, without
// persistence, in a temporary directory that goes with it. A machine without
// /usr/bin/redis-server fails the test with a message saying so (CI installs
// it through scripts/setup): it never skips.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

namespace spry::test {

inline constexpr const char* kRedisServerPath = "/usr/bin/redis-server";

// A loopback port nothing listens on (just now).
inline std::uint16_t freeLoopbackPort() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(s);
  return ntohs(a.sin_port);
}

// Starts args[0] with `args`; in the child, stdout becomes `stdoutFd` and
// `closeFd` (the pipe's other end) is closed, each when not -1. The child
// dies with the test, even a crashed one.
inline pid_t spawnChild(std::vector<std::string> args, int stdoutFd = -1, int closeFd = -1) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (stdoutFd != -1) {
      ::dup2(stdoutFd, 1);
      ::close(stdoutFd);
    }
    if (closeFd != -1) ::close(closeFd);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

inline bool acceptsOn(std::uint16_t port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(s);
  return ok;
}

class RedisServer {
 public:
  // Starts the server with `extraArgs` (e.g. {"--requirepass", "pw"}) and
  // waits until it accepts connections.
  explicit RedisServer(std::vector<std::string> extraArgs = {}) : extraArgs_(extraArgs) {
    if (::access(kRedisServerPath, X_OK) != 0) {
      FAIL("redis-server not found at "
           << kRedisServerPath << ": install Debian's redis-server package (scripts/setup)");
    }
    char dirTemplate[] = "/tmp/spry-redis-XXXXXX";
    REQUIRE(::mkdtemp(dirTemplate) != nullptr);
    dir_ = dirTemplate;
    // A port taken between freeLoopbackPort() and the server's bind makes it
    // exit: then another port.
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = freeLoopbackPort();
      if (start(extraArgs)) return;
    }
    std::filesystem::remove_all(dir_);
    FAIL("redis-server did not start; see its log in " << dir_);
  }
  ~RedisServer() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  std::string url(std::string_view credentials = {}) const {
    return "redis://" + std::string(credentials) + "127.0.0.1:" + std::to_string(port_);
  }

  // SIGKILL: the server vanishes mid-conversation.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // SIGSTOP / SIGCONT: a server that stops reading (a stall), then goes on.
  void pause() {
    if (pid_ > 0) ::kill(pid_, SIGSTOP);
  }
  void resume() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
  }

  // After kill() or stop(): the server again, on the same port (empty,
  // without the old one's subscriptions); false if it did not come up.
  bool restart() {
    if (pid_ > 0) return true;
    // The old socket may linger a moment (redis-server binds with
    // SO_REUSEADDR, so TIME_WAIT does not block it): a few tries.
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (start(extraArgs_)) return true;
    }
    return false;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);  // a paused server would never handle the SIGTERM
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
  }

 private:
  bool start(const std::vector<std::string>& extraArgs) {
    std::vector<std::string> args = {kRedisServerPath,
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--dir",
                                     dir_,
                                     "--logfile",
                                     dir_ + "/redis.log",
                                     "--daemonize",
                                     "no"};
    args.insert(args.end(), extraArgs.begin(), extraArgs.end());
    pid_ = spawnChild(args);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (acceptsOn(port_)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill();
    return false;
  }

  std::vector<std::string> extraArgs_;
  std::string dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace spry::test
