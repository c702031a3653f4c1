#include "spry/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

namespace spry {

namespace {
std::mutex& sinkMutex() {
  static std::mutex m;
  return m;
}
LogSink& sink() {
  static LogSink s;
  return s;
}
std::atomic<LogLevel> gLevel{LogLevel::kInfo};

const char* levelName(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}
}  // namespace

void setLogSink(LogSink s) {
  std::lock_guard lock(sinkMutex());
  sink() = std::move(s);
}

void setLogLevel(LogLevel level) noexcept {
  gLevel.store(level, std::memory_order_relaxed);
}

bool logEnabled(LogLevel level) noexcept {
  return level >= gLevel.load(std::memory_order_relaxed);
}

void log(LogLevel level, std::string_view line) {
  if (level < gLevel.load(std::memory_order_relaxed)) return;
  std::lock_guard lock(sinkMutex());
  if (sink()) {
    // A throwing sink must not take the server down with it.
    try {
      sink()(level, line);
    } catch (...) {
    }
    return;
  }
  std::fprintf(stderr, "spry %s: %.*s\n", levelName(level), static_cast<int>(line.size()),
               line.data());
}

}  // namespace spry
