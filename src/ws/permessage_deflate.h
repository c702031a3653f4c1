#pragma once
// permessage-deflate (RFC 7692): what the handshake agrees, and the zlib
// streams that compress and inflate messages. No socket holds a stream
// while idle: the loop's CompressionPool lends them out.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ws/frame_writer.h"

struct z_stream_s;

namespace spry::detail {

// ---------------------------------------------------------------- negotiation

// What the server side brings to the negotiation (from CompressionOptions).
struct DeflateServerConfig {
  bool dedicated = false;  // keep our context between messages unless the client forbids it
  int windowBits = 15;     // our largest deflate window, 9..15
};

// What one socket agreed.
struct DeflateAgreement {
  // Our deflate window, 9..15: the configured one, lowered to the client's
  // server_max_window_bits.
  std::uint8_t serverWindowBits = 15;
  // We reset our deflate stream after every message: always in shared mode,
  // and in dedicated mode when the client offered server_no_context_takeover.
  bool serverNoContextTakeover = true;
  // Whether the accepted offer named server_max_window_bits (the response
  // then names it too).
  bool serverWindowOffered = false;
};

// Parses every Sec-WebSocket-Extensions field of the request (in order) and
// accepts the first permessage-deflate offer this server can serve. An offer
// with an unknown, repeated or malformed parameter, or with
// server_max_window_bits=8 (zlib's raw deflate has no 256-byte window), is
// declined and the next one tried. nullopt: none was acceptable; the
// extension is then left out and the handshake goes on without it.
std::optional<DeflateAgreement> negotiateDeflate(std::span<const std::string_view> fields,
                                                 const DeflateServerConfig& config);

// The Sec-WebSocket-Extensions value of the 101 for `agreement`: only
// parameters RFC 7692 allows in a response. client_no_context_takeover is
// always there (our inflate state never outlives a message);
// server_no_context_takeover when agreement.serverNoContextTakeover;
// server_max_window_bits when offered or below 15. Never
// client_max_window_bits: we inflate with a 15-bit window, which reads any.
std::string deflateResponse(const DeflateAgreement& agreement);

// ---------------------------------------------------------------- codec

// Number of zlib streams (deflate or inflate) alive in this process, for
// tests that check that idle sockets hold none.
std::size_t liveZlibStreams() noexcept;

// What one loop's streams did (spry::Stats): written by the loop thread
// only, read from any.
struct CompressionCounters {
  std::atomic<std::uint64_t> deflated{0};  // messages compressed (a publish: once per window)
  std::atomic<std::uint64_t> deflateIn{0};
  std::atomic<std::uint64_t> deflateOut{0};
  std::atomic<std::uint64_t> inflated{0};  // compressed messages received
  std::atomic<std::uint64_t> inflateIn{0};
  std::atomic<std::uint64_t> inflateOut{0};
  std::atomic<std::uint64_t> dedicated{0};  // kDedicated contexts held now
  static void add(std::atomic<std::uint64_t>& c, std::uint64_t v) noexcept {
    c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  }
};

// Compresses whole messages: raw deflate, each message ended with an empty
// stored block whose 00 00 ff ff tail is removed (RFC 7692 7.2.1).
class Deflater {
 public:
  // windowBits 9..15, level 1..9, memLevel 1..9 (clamped). Throws
  // std::bad_alloc when zlib cannot allocate.
  Deflater(int windowBits, int level, int memLevel);
  ~Deflater();
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  // Appends the compressed payload of `message` to `out`. keepContext: the
  // window carries into the next message (context takeover); otherwise the
  // stream is reset afterwards. false on a zlib error (the stream is reset
  // and `out` is back to its size before the call).
  bool compress(std::string_view message, std::string& out, bool keepContext);
  void reset() noexcept;
  int windowBits() const noexcept { return windowBits_; }
  int level() const noexcept { return level_; }
  int memLevel() const noexcept { return memLevel_; }
  // Where compress() counts what it did (the pool's streams); none by default.
  void countInto(CompressionCounters* counters) noexcept { counters_ = counters; }

 private:
  std::unique_ptr<z_stream_s> z_;
  CompressionCounters* counters_ = nullptr;
  int windowBits_;
  int level_;
  int memLevel_;
};

// Inflates messages with a 15-bit window, which reads what any client
// window (8 to 15) produced. Reset between messages (we always answer
// client_no_context_takeover).
class Inflater {
 public:
  enum class Status { kOk, kTooBig, kCorrupt };
  Inflater();  // throws std::bad_alloc
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // Inflates the next piece of one message's payload, appending to `out`,
  // which never grows past `limit` bytes: output beyond it is kTooBig, found
  // before anything past the limit is allocated. `last`: the message's
  // final piece (the 00 00 ff ff tail is added). After kTooBig or kCorrupt,
  // or after `last`, reset() before the next message.
  Status inflate(std::string_view in, std::string& out, std::size_t limit, bool last);
  void reset() noexcept;
  // Where inflate() counts what it did (the pool's streams); none by default.
  void countInto(CompressionCounters* counters) noexcept { counters_ = counters; }

 private:
  Status run(const unsigned char* in, std::size_t size, std::string& out, std::size_t limit);
  std::unique_ptr<z_stream_s> z_;
  CompressionCounters* counters_ = nullptr;
  bool ended_ = false;  // the stream ended (BFINAL): the rest of the message is ignored
};

// ---------------------------------------------------------------- per loop

// One loop's streams: the shared deflaters (one per window size and
// settings, made when first needed), the inflater for messages that arrive
// whole, a pool of inflaters for messages that arrive in pieces, and the
// buffers messages are compressed and inflated into. Loop thread only.
class CompressionPool {
 public:
  CompressionPool();
  ~CompressionPool();
  CompressionPool(const CompressionPool&) = delete;
  CompressionPool& operator=(const CompressionPool&) = delete;

  // A stream reset after every use (throws std::bad_alloc).
  Deflater& sharedDeflater(int windowBits, int level, int memLevel);
  Inflater& sharedInflater();
  // An inflater of its own for a message arriving in pieces; give it back
  // when the message ends (it is reset and kept, up to a few).
  std::unique_ptr<Inflater> takeInflater();
  void giveBack(std::unique_ptr<Inflater> inflater) noexcept;

  // Where a message that arrived whole is inflated (the view handed to the
  // handler points into it) and where a message is compressed before it is
  // framed. Their capacity is trimmed by trim().
  std::string& inflated() noexcept { return inflated_; }
  std::string& compressed() noexcept { return compressed_; }

  // kDedicated: the deflate context of each socket that has one, kept here
  // (keyed by its owner) so a socket holds none of it in its own object.
  struct Dedicated {
    std::unique_ptr<Deflater> deflater;
    std::uint64_t lastUsed = 0;  // loop time, kept by the owner
  };
  Dedicated* dedicated(const void* owner) noexcept;  // null: none
  // Makes `owner`'s context (throws std::bad_alloc).
  Dedicated& makeDedicated(const void* owner, int windowBits, int level, int memLevel);
  void dropDedicated(const void* owner) noexcept;
  std::size_t dedicatedCount() const noexcept { return dedicated_.size(); }

  // Gives back every pooled stream and large buffers (the loop's idle sweep);
  // the dedicated contexts stay (their owners give them back).
  void trim() noexcept;
  const CompressionCounters& counters() const noexcept { return counters_; }
  // Whether a stream was asked for since the last call (which clears it).
  bool takeUsed() noexcept {
    const bool u = used_;
    used_ = false;
    return u;
  }

 private:
  std::vector<std::unique_ptr<Deflater>> deflaters_;
  std::unique_ptr<Inflater> inflater_;
  std::vector<std::unique_ptr<Inflater>> spare_;
  std::unordered_map<const void*, Dedicated> dedicated_;
  CompressionCounters counters_;
  std::string inflated_;
  std::string compressed_;
  bool used_ = false;
};

// The frames of one publish on one loop: the plain frame, framed once for
// every loop, and the compressed ones, made on this loop the first time a
// subscriber with that server window asks (so once per loop per window).
class PublishFrames {
 public:
  explicit PublishFrames(const SharedFrame& plain) noexcept : plain_(plain) {}
  const SharedFrame& plain() const noexcept { return plain_; }
  bool isBinary() const noexcept;
  std::string_view payload() const noexcept;
  // The compressed frame for window `bits` (9..15), made with `deflater`
  // (the loop's shared one for that window) on first use; null when the
  // message does not get smaller compressed or zlib failed: send plain().
  const SharedFrame& compressed(int bits, Deflater& deflater);

 private:
  SharedFrame plain_;
  SharedFrame compressed_[7];
  std::uint8_t tried_ = 0;  // bit (bits - 9): compression was attempted
};

}  // namespace spry::detail
