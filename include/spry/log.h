#pragma once
/// Logging: spry prints nothing except through this sink (default: stderr).

#include <functional>
#include <string_view>

namespace spry {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

/// Receives one line, without newline. Called from any of spry's threads, one call at a time.
using LogSink = std::function<void(LogLevel, std::string_view line)>;

/// Replaces the sink; an empty sink restores the stderr default. Thread-safe.
void setLogSink(LogSink sink);
/// Lines below `level` are discarded before formatting (default kInfo). Thread-safe.
void setLogLevel(LogLevel level) noexcept;
/// True when lines of `level` pass the threshold (to skip building them). Thread-safe.
bool logEnabled(LogLevel level) noexcept;
/// Sends a line to the sink when `level` passes the threshold. Thread-safe.
void log(LogLevel level, std::string_view line);

}  // namespace spry
