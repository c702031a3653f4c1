#include "ws/websocket_session.h"

#include <wslay/wslay.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "ws/utf8.h"

namespace spry::detail {
namespace {

std::atomic<std::size_t> g_liveContexts{0};

constexpr std::uint8_t kFin = 0x80;
constexpr std::uint8_t kRsvBits = 0x70;
constexpr std::uint8_t kMaskBit = 0x80;
constexpr std::uint8_t kCloseByte0 = kFin | static_cast<std::uint8_t>(WsOpcode::kClose);
constexpr std::uint8_t kPingByte0 = kFin | static_cast<std::uint8_t>(WsOpcode::kPing);
constexpr std::uint8_t kPongByte0 = kFin | static_cast<std::uint8_t>(WsOpcode::kPong);
constexpr std::size_t kMaxControlPayload = 125;
constexpr std::size_t kMaxCloseReason = kMaxControlPayload - 2;

std::uint64_t readBigEndian(const std::uint8_t* p, int bytes) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// Unmasks a payload in place, eight bytes at a time (the key repeats every
// four), and tells whether it is all ASCII, which then needs no UTF-8 check.
bool unmaskIsAscii(std::uint8_t* p, std::size_t n, const std::uint8_t* maskKey) noexcept {
  std::uint8_t key[4];
  std::memcpy(key, maskKey, 4);
  std::uint32_t key32;
  std::memcpy(&key32, key, 4);
  const std::uint64_t key64 = (std::uint64_t{key32} << 32) | key32;
  std::uint64_t seen = 0;
  std::size_t i = 0;
  for (; n - i >= 8; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, p + i, 8);
    word ^= key64;
    std::memcpy(p + i, &word, 8);
    seen |= word;
  }
  if (n - i >= 4) {
    std::uint32_t word;
    std::memcpy(&word, p + i, 4);
    word ^= key32;
    std::memcpy(p + i, &word, 4);
    seen |= word;
    i += 4;
  }
  for (; i < n; ++i) {
    p[i] ^= key[i & 3];
    seen |= p[i];
  }
  return (seen & kHighBits) == 0;
}

// Text with a byte over 0x7F: the full check, kept out of the fast loop.
[[gnu::noinline]] bool isValidNonAsciiText(std::string_view s) noexcept {
  return isValidUtf8(s);
}

}  // namespace

bool isValidCloseCode(std::uint16_t code) noexcept {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

void appendFrameHeader(std::string& out, WsOpcode opcode, std::uint64_t payloadSize, bool fin,
                       bool rsv1) {
  char h[10];
  h[0] = static_cast<char>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | static_cast<int>(opcode));
  std::size_t n;
  if (payloadSize < 126) {
    h[1] = static_cast<char>(payloadSize);
    n = 2;
  } else if (payloadSize <= 0xFFFF) {
    h[1] = 126;
    h[2] = static_cast<char>(payloadSize >> 8);
    h[3] = static_cast<char>(payloadSize);
    n = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; ++i) h[2 + i] = static_cast<char>(payloadSize >> (56 - 8 * i));
    n = 10;
  }
  out.append(h, n);
}

// Every check fires at the first byte that reveals the violation, which is
// never later than where wslay would notice it, so wslay is never handed a
// byte it would answer on its own.
std::uint16_t WebSocketSession::Guard::checkFirstByte(std::uint8_t b0) noexcept {
  if ((b0 & kRsvBits) != 0) return kCloseProtocolError;
  const std::uint8_t opcode = b0 & 0x0F;
  if (opcode >= 0x8) {
    if (opcode > 0xA || (b0 & kFin) == 0) return kCloseProtocolError;
    closeFrame = opcode == 0x8;
    return 0;
  }
  if (opcode == 0x0) return fragmented ? 0 : kCloseProtocolError;
  if (opcode <= 0x2) return fragmented ? kCloseProtocolError : 0;
  return kCloseProtocolError;
}

std::uint16_t WebSocketSession::Guard::checkSecondByte(std::uint8_t b0, std::uint8_t b1) noexcept {
  if ((b1 & kMaskBit) == 0) return kCloseProtocolError;
  const std::uint8_t opcode = b0 & 0x0F;
  const std::uint8_t length7 = b1 & 0x7F;
  if (opcode >= 0x8 && (length7 > kMaxControlPayload || (opcode == 0x8 && length7 == 1))) {
    return kCloseProtocolError;
  }
  headerNeed = static_cast<std::uint8_t>(6 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0));
  return 0;
}

std::uint16_t WebSocketSession::Guard::finishHeader(const std::uint8_t* h,
                                                    std::uint64_t maxMessageBytes) noexcept {
  const std::uint8_t opcode = h[0] & 0x0F;
  const std::uint8_t length7 = h[1] & 0x7F;
  std::uint64_t length = length7;
  if (length7 == 126) {
    length = readBigEndian(h + 2, 2);
    if (length < 126) return kCloseProtocolError;
  } else if (length7 == 127) {
    length = readBigEndian(h + 2, 8);
    if ((length >> 63) != 0 || length <= 0xFFFF) return kCloseProtocolError;
  }
  if (opcode == 0x8) {
    close.reset(new (std::nothrow) PeerClose);
    if (!close) return kCloseInternalError;
    close->length = static_cast<std::uint8_t>(length);
    std::memcpy(close->key, h + headerNeed - 4, 4);
    closePayloadPending = close->length != 0;
  } else {
    if (opcode < 0x8) {
      // messageBytes never exceeds the limit, so the subtraction cannot wrap.
      const bool fin = (h[0] & kFin) != 0;
      if (opcode == 0x0) {
        if (length > maxMessageBytes - messageBytes) return kCloseMessageTooBig;
        messageBytes = fin ? 0 : messageBytes + length;
      } else {
        if (length > maxMessageBytes) return kCloseMessageTooBig;
        messageBytes = fin ? 0 : length;
      }
      fragmented = !fin;
    }
    payloadLeft = length;
  }
  headerHave = 0;
  headerNeed = 2;
  return 0;
}

WebSocketSession::Guard::Result WebSocketSession::Guard::scan(const std::uint8_t* p, std::size_t n,
                                                              std::uint64_t maxMessageBytes,
                                                              bool untilIdle) noexcept {
  Result r;
  std::size_t i = 0;
  // A header begun in an earlier chunk has its start "before" this one.
  std::size_t frameStart = 0;
  std::uint16_t code = 0;
  while (i < n) {
    if (untilIdle && i != 0 && idle()) break;
    if (payloadLeft != 0) {
      const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(payloadLeft, n - i));
      i += take;
      payloadLeft -= take;
      continue;
    }
    if (closePayloadPending) {
      PeerClose& c = *close;
      while (i < n && c.have < c.length) {
        c.payload[c.have] = static_cast<std::uint8_t>(p[i++] ^ c.key[c.have % 4]);
        ++c.have;
      }
      if (c.have == c.length) {
        closePayloadPending = false;
        r.closeReady = true;
      }
      break;  // nothing after a Close is read
    }

    if (headerHave == 0) {
      frameStart = i;
      // The whole header is in this chunk: check it in place.
      if (n - i >= 2) {
        if ((code = checkFirstByte(p[i])) != 0) break;
        if ((code = checkSecondByte(p[i], p[i + 1])) != 0) break;
        const std::uint8_t need = headerNeed;
        if (n - i >= need) {
          if ((code = finishHeader(p + i, maxMessageBytes)) != 0) break;
          i += need;
          if (closeFrame && !closePayloadPending) {
            r.closeReady = true;
            break;
          }
          continue;
        }
      }
    }

    const std::size_t take = std::min<std::size_t>(headerNeed - headerHave, n - i);
    std::memcpy(header + headerHave, p + i, take);
    const std::uint8_t had = headerHave;
    headerHave = static_cast<std::uint8_t>(headerHave + take);
    i += take;
    if (had == 0 && (code = checkFirstByte(header[0])) != 0) break;
    if (headerHave < 2) continue;
    if (had < 2 && (code = checkSecondByte(header[0], header[1])) != 0) break;
    if (headerHave < headerNeed) continue;
    if ((code = finishHeader(header, maxMessageBytes)) != 0) break;
    if (closeFrame && !closePayloadPending) {
      r.closeReady = true;
      break;
    }
  }
  r.consumed = i;
  if (code != 0) {
    r.failCode = code;
    r.wslayBytes = frameStart;
  } else {
    r.wslayBytes = closeFrame ? frameStart : i;
  }
  return r;
}

// The C callbacks handed to wslay. Each is a noexcept barrier: nothing may
// unwind through wslay.
struct WebSocketSession::WslayCallbacks {
  static WebSocketSession& self(void* user) noexcept {
    return *static_cast<WebSocketSession*>(user);
  }

  static ssize_t recv(wslay_event_context_ptr ctx, std::uint8_t* buf, std::size_t len, int,
                      void* user) noexcept {
    WslayInput& in = *self(user).input_;
    const auto avail = static_cast<std::size_t>(in.end - in.next);
    if (avail == 0) {
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    const std::size_t n = std::min(len, avail);
    std::memcpy(buf, in.next, n);
    in.next += n;
    return static_cast<ssize_t>(n);
  }

  static ssize_t send(wslay_event_context_ptr, const std::uint8_t* data, std::size_t len, int flags,
                      void* user) noexcept {
    try {
      self(user).onWslayOutput(data, len, (flags & WSLAY_MSG_MORE) != 0);
    } catch (...) {
    }
    return static_cast<ssize_t>(len);
  }

  static void frameStart(wslay_event_context_ptr, const wslay_event_on_frame_recv_start_arg* arg,
                         void* user) noexcept {
    WebSocketSession& s = self(user);
    s.frameOpcode_ = arg->opcode;
    s.frameFin_ = arg->fin != 0;
    s.frameLength_ = arg->payload_length;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
      s.input_->haveWhole = false;
      s.message_.clear();
    }
  }

  static void frameChunk(wslay_event_context_ptr ctx,
                         const wslay_event_on_frame_recv_chunk_arg* arg, void* user) noexcept {
    WebSocketSession& s = self(user);
    // wslay buffers control frames itself even without buffering.
    if (s.frameOpcode_ >= WSLAY_CONNECTION_CLOSE) return;
    const char* data = reinterpret_cast<const char*>(arg->data);
    // A frame's chunks add up to its length, so one chunk of that length is
    // all of it.
    if (s.frameFin_ && s.frameOpcode_ != WSLAY_CONTINUATION_FRAME &&
        arg->data_length == s.frameLength_) {
      // wslay's input buffer stays untouched until the message callback has
      // run, so this needs no copy.
      s.input_->whole = std::string_view(data, arg->data_length);
      s.input_->haveWhole = true;
      return;
    }
    try {
      s.message_.append(data, arg->data_length);
    } catch (...) {
      s.internalError_ = true;
      wslay_event_shutdown_read(ctx);
    }
  }

  static void message(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg,
                      void* user) noexcept {
    WebSocketSession& s = self(user);
    try {
      if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
        // A chunk that failed to append must not be delivered as a message.
        WslayInput& in = *s.input_;
        if (!s.closeSent_ && !s.internalError_) {
          s.handler_.onWsMessage(arg->opcode == WSLAY_BINARY_FRAME,
                                 in.haveWhole ? in.whole : std::string_view(s.message_));
        }
        in.haveWhole = false;
        // An idle socket keeps no payload capacity.
        std::string().swap(s.message_);
      } else if (arg->opcode == WSLAY_PING) {
        s.pingReceived_ = true;  // wslay has just queued the pong
        // Kept until wslay has sent it: a Close that wslay queues later in
        // this chunk goes out first and disables writing, dropping the pong.
        WslayInput& in = *s.input_;
        try {
          in.pings.push_back(static_cast<char>(arg->msg_length));
          in.pings.append(reinterpret_cast<const char*>(arg->msg), arg->msg_length);
        } catch (...) {
          s.internalError_ = true;
        }
        ++in.pingCount;
      } else if (arg->opcode == WSLAY_PONG && !s.closeSent_) {
        s.handler_.onWsPong(
            std::string_view(reinterpret_cast<const char*>(arg->msg), arg->msg_length));
      }
      // wslay answers pings itself, and never sees a Close (the guard keeps it).
    } catch (...) {
    }
  }

  static constexpr wslay_event_callbacks kTable = {
      recv, send, nullptr, frameStart, frameChunk, nullptr, message,
  };
};

// Held by every open socket, idle or not.
static_assert(sizeof(void*) != 8 || sizeof(WebSocketSession) <= 160);

WebSocketSession::WebSocketSession(SessionHandler& handler, const SessionLimits& limits)
    : handler_(handler), limits_(limits) {}

WebSocketSession::~WebSocketSession() {
  destroyContext();
}

std::size_t WebSocketSession::liveContexts() noexcept {
  return g_liveContexts.load(std::memory_order_relaxed);
}

bool WebSocketSession::createContext() noexcept {
  wslay_event_context_ptr ctx = nullptr;
  if (wslay_event_context_server_init(&ctx, &WslayCallbacks::kTable, this) != 0) return false;
  // Messages are reassembled here, so wslay allocates nothing per message.
  wslay_event_config_set_no_buffering(ctx, 1);
  // A second line behind the guard; wslay applies it to control frames too,
  // so it must never drop below their 125 bytes.
  wslay_event_config_set_max_recv_msg_length(
      ctx, std::max<std::uint64_t>(limits_.maxMessageBytes, kMaxControlPayload));
  ctx_ = ctx;
  g_liveContexts.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void WebSocketSession::destroyContext() noexcept {
  if (ctx_ == nullptr) return;
  wslay_event_context_free(ctx_);
  ctx_ = nullptr;
  stashLength_ = 0;
  g_liveContexts.fetch_sub(1, std::memory_order_relaxed);
}

// Once our Close is out, input is only scanned for the peer's Close, so
// wslay has nothing left to do.
void WebSocketSession::dropUnusedContext() noexcept {
  if (closeSent_ && input_ == nullptr) {
    destroyContext();
    std::string().swap(message_);
  }
}

// The fast path. A whole single-frame text or binary message (FIN, no RSV
// bits, masked, minimal length, within the limit) at a frame boundary is one
// that the guard and wslay would pass through untouched: it is unmasked in
// place and delivered here, without wslay. Stops before anything else, and
// after a message whose handler sent a Close. Returns the bytes consumed.
[[gnu::always_inline]] inline std::size_t WebSocketSession::deliverWholeFrames(
    std::uint8_t* p, std::size_t n) noexcept {
  constexpr std::uint8_t kTextByte0 = kFin | WSLAY_TEXT_FRAME;
  constexpr std::uint8_t kBinaryByte0 = kFin | WSLAY_BINARY_FRAME;
  std::size_t i = 0;
  while (n - i >= 6) {
    std::uint8_t* frame = p + i;
    const std::uint8_t b0 = frame[0];
    const std::uint8_t b1 = frame[1];
    if ((b0 != kTextByte0 && b0 != kBinaryByte0) || (b1 & kMaskBit) == 0) break;
    std::uint64_t length = b1 & 0x7F;
    std::size_t header = 6;
    if (length == 126) {
      if (n - i < 8) break;
      length = readBigEndian(frame + 2, 2);
      if (length < 126) break;
      header = 8;
    } else if (length == 127) {
      if (n - i < 14) break;
      length = readBigEndian(frame + 2, 8);
      if ((length >> 63) != 0 || length <= 0xFFFF) break;
      header = 14;
    }
    if (length > limits_.maxMessageBytes || length > n - i - header) break;
    const auto size = static_cast<std::size_t>(length);
    std::uint8_t* payload = frame + header;
    const bool ascii = unmaskIsAscii(payload, size, payload - 4);
    const std::string_view message(reinterpret_cast<const char*>(payload), size);
    if (b0 == kTextByte0 && !ascii && !isValidNonAsciiText(message)) {
      fail(kCloseInvalidPayload);
      return n;
    }
    i += header + size;
    handler_.onWsMessage(b0 == kBinaryByte0, message);
    // The handler may have sent a Close; nothing else can stop the session
    // here (a failure sends one too).
    if (closeSent_) break;
  }
  return i;
}

void WebSocketSession::feed(char* data, std::size_t size) noexcept {
  if (isStopped() || size == 0) return;
  auto* p = reinterpret_cast<std::uint8_t*>(data);
  // Once our Close is out, input is only scanned for the peer's Close. A
  // Close sent during this call leaves the rest of the chunk to wslay still,
  // which checks it but delivers nothing.
  const bool wslayReads = !closeSent_;
  std::size_t i = 0;
  while (i < size && !closeSent_) {
    // At a frame boundary with no message in progress, wslay (which has read
    // exactly what the guard let through) is at one too, with nothing pending.
    if (guard_.idle()) {
      i += deliverWholeFrames(p + i, size - i);
      if (i == size || closeSent_) break;
    }
    // What the fast path left, up to the next boundary where it may resume.
    i += feedSlow(p + i, size - i, true, true);
  }
  if (i < size && !isStopped()) feedSlow(p + i, size - i, false, wslayReads);
  if (closeSent_) dropUnusedContext();
}

// The guard, then wslay over what the guard let through; stops at the first
// frame boundary with no message in progress when untilIdle. Returns the
// bytes consumed (all of them once the session stopped).
std::size_t WebSocketSession::feedSlow(const std::uint8_t* p, std::size_t n, bool untilIdle,
                                       bool wslayReads) noexcept {
  const Guard::Result r = guard_.scan(p, n, limits_.maxMessageBytes, untilIdle);
  if (r.wslayBytes != 0 && wslayReads) runWslay(p, r.wslayBytes);
  if ((r.failCode != 0 || r.closeReady) && !isStopped()) {
    if (r.failCode != 0) {
      fail(r.failCode);
    } else {
      handlePeerClose();
    }
  }
  return isStopped() ? n : r.consumed;
}

void WebSocketSession::runWslay(const std::uint8_t* p, std::size_t n) noexcept {
  if (ctx_ == nullptr && !createContext()) {
    fail(kCloseInternalError);
    return;
  }
  WslayInput input;
  input.next = p;
  input.end = p + n;
  input_ = &input;
  const int received = wslay_event_recv(ctx_);
  const bool readable = received == 0 && wslay_event_get_read_enabled(ctx_) != 0;
  // wslay queues a frame only to answer a ping or to close, so the common
  // case skips the send call. Pongs go out after the messages of this call.
  if (pingReceived_ || !readable) {
    pingReceived_ = false;
    wslay_event_send(ctx_);
  }
  if (input.pongsSent < input.pingCount) sendDroppedPongs(input);
  input_ = nullptr;
  if (internalError_ || received == WSLAY_ERR_NOMEM) {
    fail(kCloseInternalError);
  } else if (wslayClosed_) {
    // wslay closes with an empty payload on a frame-level error.
    fail(wslayCloseCode_ != 0 ? wslayCloseCode_ : kCloseProtocolError);
  } else if (!readable) {
    fail(kCloseProtocolError);
  }
}

// Answers, in order, the pings of this wslay call that wslay did not: the
// same pongs, in the same order, as if the chunk had come in pieces.
void WebSocketSession::sendDroppedPongs(const WslayInput& input) noexcept {
  std::string_view pings = input.pings;
  for (std::size_t k = 0; k < input.pingCount && !pings.empty(); ++k) {
    const auto length = static_cast<std::uint8_t>(pings[0]);
    const std::string_view payload = pings.substr(1, length);
    pings.remove_prefix(1 + payload.size());
    if (k < input.pongsSent || closeSent_) continue;
    std::uint8_t frame[2 + kMaxControlPayload];
    frame[0] = kPongByte0;
    frame[1] = static_cast<std::uint8_t>(payload.size());
    if (!payload.empty()) std::memcpy(frame + 2, payload.data(), payload.size());
    handler_.onWsOutput(std::string_view(reinterpret_cast<const char*>(frame), 2 + payload.size()));
  }
}

// wslay sends a frame's header (with WSLAY_MSG_MORE when a payload follows)
// and then its payload within one wslay_frame_send, since our send callback
// always takes everything: the two are joined on the stack here.
void WebSocketSession::onWslayOutput(const std::uint8_t* data, std::size_t len,
                                     bool more) noexcept {
  if (more && stashLength_ == 0 && len <= sizeof(stash_)) {
    std::memcpy(stash_, data, len);
    stashLength_ = static_cast<std::uint8_t>(len);
    return;
  }
  const std::size_t header = stashLength_;
  stashLength_ = 0;
  if (header == 0) {
    emitWslayFrame(data, len);
    return;
  }
  if (header + len <= 2 + kMaxControlPayload) {
    std::uint8_t frame[2 + kMaxControlPayload];
    std::memcpy(frame, stash_, header);
    std::memcpy(frame + header, data, len);
    emitWslayFrame(frame, header + len);
    return;
  }
  // wslay only sends control frames here, which always fit; pass anything
  // else through unchanged rather than lose it.
  if (!closeSent_) {
    handler_.onWsOutput(std::string_view(reinterpret_cast<const char*>(stash_), header));
    handler_.onWsOutput(std::string_view(reinterpret_cast<const char*>(data), len));
  }
}

void WebSocketSession::emitWslayFrame(const std::uint8_t* data, std::size_t len) noexcept {
  if (len == 0) return;
  if (data[0] == kCloseByte0) {
    // wslay's own Close never goes out: its code may be missing or wrong,
    // and only sendClose() may send the one Close.
    wslayClosed_ = true;
    wslayCloseCode_ =
        len >= 4 ? static_cast<std::uint16_t>(readBigEndian(data + 2, 2)) : std::uint16_t{0};
    return;
  }
  if (data[0] == kPongByte0 && input_ != nullptr) ++input_->pongsSent;
  if (!closeSent_) {
    handler_.onWsOutput(std::string_view(reinterpret_cast<const char*>(data), len));
  }
}

void WebSocketSession::fail(std::uint16_t code) noexcept {
  if (failCode_ == 0) failCode_ = code;
  sendClose(code, {});
}

void WebSocketSession::handlePeerClose() noexcept {
  // Either way the session stops here: the Close's buffer goes with it.
  const std::unique_ptr<Guard::PeerClose> close = std::move(guard_.close);
  if (!close) {
    fail(kCloseInternalError);
    return;
  }
  std::uint16_t code = kCloseNoStatus;
  std::string_view reason;
  if (close->length >= 2) {
    code = static_cast<std::uint16_t>(readBigEndian(close->payload, 2));
    if (!isValidCloseCode(code)) {
      fail(kCloseProtocolError);
      return;
    }
    reason =
        std::string_view(reinterpret_cast<const char*>(close->payload) + 2, close->length - 2u);
    if (!isValidUtf8(reason)) {
      fail(kCloseInvalidPayload);
      return;
    }
  }
  closeReceived_ = true;
  handler_.onWsCloseReceived(code, reason);
  // RFC 6455 5.5.1: echo the status code received.
  sendClose(code == kCloseNoStatus ? 0 : code, {});
}

void WebSocketSession::sendClose(std::uint16_t code, std::string_view reason) noexcept {
  if (closeSent_) return;
  closeSent_ = true;
  std::uint8_t frame[2 + kMaxControlPayload];
  std::size_t payload = 0;
  if (code != 0) {
    std::size_t n = reason.size();
    if (n > kMaxCloseReason) {
      // Cut before the code point that straddles the limit, keeping the
      // reason valid UTF-8.
      n = kMaxCloseReason;
      while (n > 0 && (static_cast<std::uint8_t>(reason[n]) & 0xC0) == 0x80) --n;
    }
    frame[2] = static_cast<std::uint8_t>(code >> 8);
    frame[3] = static_cast<std::uint8_t>(code);
    if (n != 0) std::memcpy(frame + 4, reason.data(), n);
    payload = 2 + n;
  }
  frame[0] = kCloseByte0;
  frame[1] = static_cast<std::uint8_t>(payload);
  handler_.onWsOutput(std::string_view(reinterpret_cast<const char*>(frame), 2 + payload));
  dropUnusedContext();
}

void WebSocketSession::sendPing(std::string_view payload) noexcept {
  if (closeSent_) return;
  const std::size_t n = std::min(payload.size(), kMaxControlPayload);
  std::uint8_t frame[2 + kMaxControlPayload];
  frame[0] = kPingByte0;
  frame[1] = static_cast<std::uint8_t>(n);
  if (n != 0) std::memcpy(frame + 2, payload.data(), n);
  handler_.onWsOutput(std::string_view(reinterpret_cast<const char*>(frame), 2 + n));
}

bool WebSocketSession::releaseIfIdle() noexcept {
  if (ctx_ == nullptr) return true;
  // Freeing the context under wslay's own call stack would be fatal.
  if (input_ != nullptr) return false;
  if (!closeSent_ && (!guard_.idle() || wslay_event_get_queued_msg_count(ctx_) != 0)) {
    return false;
  }
  destroyContext();
  std::string().swap(message_);
  return true;
}

}  // namespace spry::detail
