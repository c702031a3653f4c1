#pragma once
/// Options: every limit has a safe default and a name that says its unit.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "spry/tls.h"

namespace spry {

class Request;
class Response;

/// A further listener of App::listen (ListenOptions::also): same routes, same
/// loops, its own address and, with `tls`, https/wss.
struct ListenerOptions {
  std::string host = "127.0.0.1";   ///< address to bind, as ListenOptions::host
  std::uint16_t port = 8080;        ///< 0 picks a free port (see App::listeners())
  std::optional<TlsOptions> tls{};  ///< set: a TLS listener (https, wss)
};

/// Where and how App::listen serves.
struct ListenOptions {
  std::string host = "127.0.0.1";  ///< address to bind: IPv4, IPv6 ("::1") or "localhost"
  std::uint16_t port = 8080;       ///< 0 picks a free port (see App::port())
  unsigned threads = 0;            ///< event loops, one thread each; 0: one per available core
                                   ///< (uv_available_parallelism); 1 runs on the calling thread
  bool handleSignals = true;       ///< SIGINT/SIGTERM stop gracefully (listen() only)
  std::chrono::milliseconds shutdownTimeout{5000};  ///< graceful stop deadline for signals
  /// Open connections across all loops; past it a new one gets 503 and is
  /// closed. 0: the open-file limit minus a reserve of 64 descriptors.
  std::size_t maxConnections = 0;
  /// Called once, on the thread that called listen(), when the socket is bound
  /// (with the real port). Examples print their "listening on" line here.
  std::function<void(const std::string& host, std::uint16_t port)> onListening{};
  /// Set: this listener speaks TLS (https, wss). Errors in its files throw
  /// from listen() and name the file.
  std::optional<TlsOptions> tls{};
  /// More listeners, plain or TLS, serving the same routes on the same loops.
  std::vector<ListenerOptions> also{};
};

/// HTTP limits and timeouts, for the whole app.
struct HttpOptions {
  std::size_t maxHeaderBytes = 16 * 1024;             ///< request line + headers → 431
  std::size_t maxUrlBytes = 8 * 1024;                 ///< request-target → 414
  std::size_t maxHeaderCount = 100;                   ///< → 431
  std::size_t maxBodyBytes = 1024 * 1024;             ///< request body → 413
  std::chrono::milliseconds headerTimeout{10'000};    ///< first byte to end of headers → 408
  std::chrono::milliseconds bodyTimeout{30'000};      ///< end of headers to end of body → 408
  std::chrono::milliseconds keepAliveTimeout{5'000};  ///< idle between requests → close
  std::chrono::milliseconds lingerTimeout{
      2'000};  ///< after an error response: read and discard, then close
  /// Output waiting for a client that reads none of it this long → close
  /// (a response or stream the client stopped reading); 0 disables.
  std::chrono::milliseconds sendTimeout{30'000};
  std::size_t maxPipelinedBytes = 64 * 1024;  ///< unanswered pipelined input before reading pauses
  /// Output high-water mark: BodyWriter::write returns false above it, and
  /// pipelined requests wait to be handled until the output drains below it.
  std::size_t streamHighWaterBytes = 64 * 1024;
};

/// Routing behaviour (Spry's defaults).
struct RouterOptions {
  bool caseSensitive = true;        ///< "/Users" and "/users" differ
  bool strictTrailingSlash = true;  ///< "/users/" and "/users" differ
};

/// What a WebSocket does when its send buffer passes maxBackpressureBytes.
enum class BackpressurePolicy {
  kPauseReading,  ///< stop reading from that socket until the buffer drains (default)
  kClose,         ///< close with 1008 (Policy Violation)
  kDrop,          ///< drop the message: add() returns false
};

/// permessage-deflate (RFC 7692) on a ws route: see WebSocketOptions::compression.
enum class Compression {
  kOff,        ///< never negotiated (the default: no zlib memory, no CPU)
  kShared,     ///< one deflate stream per loop and window size, reset after every message;
               ///< answers server_ and client_no_context_takeover: no zlib memory per socket
  kDedicated,  ///< a deflate context per socket kept between messages (better ratios on
               ///< similar messages), made at its first compressed message and given back
               ///< after `releaseAfter` without one; answers client_no_context_takeover
};

/// How a ws route compresses. Receiving needs no setting: a compressed
/// message is inflated with the loop's stream when it arrives whole, or with
/// one from a per-loop pool while it arrives in pieces; maxMessageBytes
/// applies to the inflated size.
struct CompressionOptions {
  Compression mode = Compression::kOff;
  /// Messages smaller than this are sent uncompressed (so are messages that
  /// would not get smaller); a message may also opt out with SendOptions.
  std::size_t threshold = 64;
  int level = 6;  ///< zlib level, 1 (fast) to 9 (small)
  /// Our largest deflate window, 9 to 15 (2^bits bytes); a client's
  /// server_max_window_bits lowers it per socket.
  int windowBits = 15;
  /// zlib memLevel, 1 to 9: a deflate context holds about 2^(memLevel+9)
  /// bytes beside its 2 * 2^windowBits of window (kDedicated: per busy socket).
  int memLevel = 8;
  /// kDedicated: a socket that sent no compressed message this long gives
  /// its deflate context back (made again, empty, for the next one).
  std::chrono::milliseconds releaseAfter{10'000};
};

/// Limits and liveness of one ws route.
struct WebSocketOptions {
  std::size_t maxMessageBytes = 1024 * 1024;       ///< larger incoming message → close 1009
  std::chrono::milliseconds idleTimeout{120'000};  ///< nothing received → close 1001; 0 disables
  std::chrono::milliseconds pingInterval{30'000};  ///< ping when quiet this long; 0 disables
  std::chrono::milliseconds pongTimeout{10'000};   ///< no answer to a ping → drop TCP
  std::chrono::milliseconds closeTimeout{5'000};   ///< our Close unanswered → drop TCP
  /// Queued output the client reads none of for this long → drop TCP (with
  /// kDrop the socket would otherwise live on, sending nothing); 0 disables.
  std::chrono::milliseconds sendTimeout{30'000};
  /// A message begun (first fragment or part of a frame) and not complete
  /// within this long → close 1008 (a client trickling one message forever
  /// keeps idleTimeout from firing); 0 disables.
  std::chrono::milliseconds messageTimeout{30'000};
  std::size_t maxBackpressureBytes = 1024 * 1024;  ///< send buffer limit, see policy
  BackpressurePolicy backpressure = BackpressurePolicy::kPauseReading;
  std::vector<std::string> protocols{};       ///< subprotocols, server preference order
  std::vector<std::string> allowedOrigins{};  ///< empty: any Origin; else exact matches → 403
  /// Also allow this server's own origins (App::isOwnOrigin: the bound host
  /// and port, known only once listening); with it, an empty allowedOrigins
  /// no longer means any Origin.
  bool allowOwnOrigin = false;
  /// permessage-deflate; off by default (see CompressionOptions).
  CompressionOptions compression{};
  /// Answers a GET without upgrade headers; when empty: 426 Upgrade Required.
  std::function<Response(Request&)> fallback{};
};

}  // namespace spry
