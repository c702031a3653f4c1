// Fuzzes the server-side WebSocket session with permessage-deflate
// negotiated. Two modes, chosen by the input:
//   raw:        the bytes are fed as they are (masked frames, RSV1 anywhere,
//               fuzzed deflate data);
//   structured: the bytes describe messages (type, fragments, payload), which
//               the harness compresses with zlib and frames with RSV1, so the
//               inflater sees valid streams as well as corrupted ones.
// Invariants: delivered text is valid UTF-8, no message exceeds the limit,
// at most one Close each way, no zlib stream or wslay context leaks; the same
// bytes fed one at a time give the same messages, output and outcome; and in
// structured mode the compressed messages deliver what the same messages
// sent uncompressed deliver.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ws/permessage_deflate.h"
#include "ws/websocket_session.h"

namespace {

// An independent UTF-8 check (RFC 3629): no overlongs, no surrogates,
// nothing above U+10FFFF.
bool isUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

struct Recorder final : spry::detail::SessionHandler {
  std::string out;
  std::string events;  // messages, pongs and the peer's Close, in order
  int closes = 0;
  int compressedMessages = 0;
  int plainMessages = 0;
  std::uint64_t maxMessage = 0;
  void onWsMessage(bool binary, std::string_view payload, bool compressed) noexcept override {
    if (payload.size() > maxMessage) std::abort();
    if (!binary && !isUtf8(payload)) std::abort();
    ++(compressed ? compressedMessages : plainMessages);
    events += binary ? 'B' : 'T';
    events += std::to_string(payload.size());
    events += payload;
  }
  void onWsPong(std::string_view payload) noexcept override {
    if (payload.size() > 125) std::abort();
    events += 'P';
    events += std::to_string(payload.size());
    events += payload;
  }
  void onWsCloseReceived(std::uint16_t code, std::string_view reason) noexcept override {
    if (++closes > 1 || reason.size() > 123) std::abort();
    events += 'C';
    events += std::to_string(code);
    events += reason;
  }
  void onWsOutput(std::string_view bytes) noexcept override { out.append(bytes); }
};

// Counts the Close frames among the server's unmasked output frames (control
// frames only: data is framed by the session's owner).
int closeFramesIn(std::string_view s) {
  int closes = 0;
  while (s.size() >= 2) {
    const auto b0 = static_cast<unsigned char>(s[0]);
    const auto b1 = static_cast<unsigned char>(s[1]);
    if (b1 & 0x80) std::abort();  // server frames are never masked
    if (b0 & 0x70) std::abort();  // nor carry RSV bits (control frames)
    std::uint64_t len = b1 & 0x7F;
    if (len > 125) std::abort();
    if (s.size() < 2 + len) std::abort();
    if ((b0 & 0x0F) == 0x8) ++closes;
    s.remove_prefix(2 + len);
  }
  if (!s.empty()) std::abort();
  return closes;
}

struct Outcome {
  bool failed = false;
  std::uint16_t failCode = 0;
  bool closeSent = false;
  bool closeReceived = false;
};

// Feeds `input` in rounds of `chunk` bytes (each round one feed, or one feed
// per byte), with the same actions after the same rounds.
Outcome run(Recorder& rec, std::string_view input, std::size_t chunk, std::uint8_t actions,
            bool byteByByte) {
  spry::detail::SessionLimits limits;
  limits.maxMessageBytes = (actions & 1) ? 64 : 1 << 16;
  rec.maxMessage = limits.maxMessageBytes;
  Outcome o;
  {
    spry::detail::HandledSession session(rec, limits);
    session.enableDeflate();
    std::size_t round = 0;
    std::string buffer;  // feed() may unmask in place
    while (!input.empty()) {
      const std::string_view piece = input.substr(0, chunk);
      if (byteByByte) {
        for (char c : piece) session.feed(&c, 1);
      } else {
        buffer.assign(piece);
        session.feed(buffer.data(), buffer.size());
      }
      input.remove_prefix(piece.size());
      ++round;
      if ((actions & 2) && round % 3 == 0) session.releaseIfIdle();
      if ((actions & 4) && round == 2) session.sendPing("p");
      if ((actions & 8) && round == 4) session.sendClose(1000, "bye");
    }
    if (session.wantsTcpClose() && !session.closeSent()) std::abort();
    if (session.closeSent() && session.holdsContext()) std::abort();
    if (closeFramesIn(rec.out) > 1) std::abort();
    o = {session.failed(), session.failCode(), session.closeSent(), session.closeReceived()};
  }
  if (spry::detail::WebSocketSession::liveContexts() != 0) std::abort();
  // The thread's pool keeps a few streams; a leak would grow past this.
  if (spry::detail::liveZlibStreams() > 16) std::abort();
  return o;
}

// ---------------------------------------------------------------- structured mode

constexpr std::uint8_t kMask[4] = {0x91, 0x3c, 0x5a, 0xe7};

void appendFrame(std::string& out, std::uint8_t opcode, std::string_view payload, bool fin,
                 bool rsv1) {
  out.push_back(static_cast<char>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode));
  const std::size_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xFFFF) {
    out.push_back(static_cast<char>(0x80 | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n));
  } else {
    out.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i)
      out.push_back(static_cast<char>(static_cast<std::uint64_t>(n) >> (8 * i)));
  }
  for (auto b : kMask) out.push_back(static_cast<char>(b));
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(static_cast<char>(static_cast<unsigned char>(payload[i]) ^ kMask[i % 4]));
  }
}

// `message` as one permessage-deflate payload (raw deflate, tail removed).
std::string compress(std::string_view message, int windowBits, int level) {
  z_stream z{};
  if (deflateInit2(&z, level, Z_DEFLATED, -windowBits, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  z.avail_in = static_cast<uInt>(message.size());
  std::string out;
  unsigned char buf[4096];
  do {
    z.next_out = buf;
    z.avail_out = sizeof(buf);
    if (deflate(&z, Z_SYNC_FLUSH) == Z_STREAM_ERROR) std::abort();
    out.append(reinterpret_cast<char*>(buf), sizeof(buf) - z.avail_out);
  } while (z.avail_out == 0);
  deflateEnd(&z);
  if (out.size() < 4) std::abort();
  out.resize(out.size() - 4);
  return out;
}

// Frames `payload` as one message in `pieces` frames (the first with
// `opcode`), optionally with a Ping after the first frame.
void appendMessage(std::string& out, std::uint8_t opcode, std::string_view payload,
                   std::size_t pieces, bool rsv1, bool pingInside) {
  const std::size_t step = payload.empty() ? 0 : (payload.size() + pieces - 1) / pieces;
  for (std::size_t i = 0; i < pieces; ++i) {
    const std::size_t at = std::min(i * step, payload.size());
    appendFrame(out, i == 0 ? opcode : 0x0, payload.substr(at, step), i + 1 == pieces,
                rsv1 && i == 0);
    if (pingInside && i == 0 && pieces > 1) appendFrame(out, 0x9, "in", true, false);
  }
}

struct Built {
  std::string compressed;  // every data message compressed (RSV1)
  std::string plain;       // the same messages uncompressed
  bool comparable = true;  // no deliberate corruption: plain must match compressed
};

// Each record: a flags byte (bits 0-1 kind: text, binary, ping, pong; bits 2-4
// fragments - 1; bit 5 corrupt one byte of the compressed payload; bit 6 a
// Ping inside the fragments; bit 7 repeat the payload 64 times), a length
// byte, then that many payload bytes.
Built build(std::string_view in, int windowBits, int level) {
  Built b;
  while (in.size() >= 2) {
    const auto flags = static_cast<std::uint8_t>(in[0]);
    std::size_t len = static_cast<std::uint8_t>(in[1]);
    in.remove_prefix(2);
    len = std::min(len, in.size());
    std::string data(in.substr(0, len));
    in.remove_prefix(len);
    const int kind = flags & 3;
    if (kind >= 2) {
      const std::uint8_t opcode = kind == 2 ? 0x9 : 0xA;
      data.resize(std::min<std::size_t>(data.size(), 125));
      appendFrame(b.compressed, opcode, data, true, false);
      appendFrame(b.plain, opcode, data, true, false);
      continue;
    }
    if (flags & 0x80) {
      std::string repeated;
      for (int i = 0; i < 64; ++i) repeated += data;
      data = std::move(repeated);
    }
    const std::uint8_t opcode = kind == 0 ? 0x1 : 0x2;
    const std::size_t pieces = ((flags >> 2) & 7) + 1;
    std::string z = compress(data, windowBits, level);
    if ((flags & 0x20) && !z.empty()) {
      z[data.size() % z.size()] ^= static_cast<char>(0x5a);
      b.comparable = false;
    }
    appendMessage(b.compressed, opcode, z, pieces, true, flags & 0x40);
    appendMessage(b.plain, opcode, data, pieces, false, flags & 0x40);
  }
  return b;
}

void sameRun(std::string_view input, std::size_t chunk, std::uint8_t actions, Recorder& chunked,
             Outcome& a) {
  Recorder bytes;
  a = run(chunked, input, chunk, actions, false);
  const Outcome b = run(bytes, input, chunk, actions, true);
  if (chunked.events != bytes.events || chunked.out != bytes.out || a.failed != b.failed ||
      a.failCode != b.failCode || a.closeSent != b.closeSent ||
      a.closeReceived != b.closeReceived ||
      chunked.compressedMessages != bytes.compressedMessages) {
    std::abort();
  }
}

}  // namespace

// Input: [chunk - 1] [actions] then the bytes (raw mode) or the records
// (structured mode, actions bit 4); actions bit 0: a 64-byte message limit,
// bit 1 release contexts when idle, bit 2 a Ping from us, bit 3 our Close,
// bit 5 the client compresses with a 9-bit window at level 1.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t chunk = static_cast<std::size_t>(data[0]) + 1;
  const std::uint8_t actions = data[1];
  const std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  Recorder chunked;
  Outcome a;
  if (!(actions & 0x10)) {
    sameRun(input, chunk, actions, chunked, a);
    return 0;
  }
  const bool small = actions & 0x20;
  const Built built = build(input, small ? 9 : 15, small ? 1 : 6);
  sameRun(built.compressed, chunk, actions, chunked, a);
  // Every data message went compressed.
  if (chunked.plainMessages != 0) std::abort();
  if (!built.comparable) return 0;
  Recorder plain;
  const Outcome p = run(plain, built.plain, chunk, actions, false);
  if (plain.compressedMessages != 0) std::abort();
  // Our Close (actions bit 3) comes at a different point of the two streams.
  if (actions & 8) return 0;
  // What is valid uncompressed is valid compressed (the reverse does not
  // hold: invalid UTF-8 in a message cut short at the end of the input fails
  // at once uncompressed, and only at the message's end compressed).
  if (!p.failed && a.failed) std::abort();
  // And delivers the same messages.
  if (!a.failed && !p.failed && chunked.events != plain.events) std::abort();
  return 0;
}
