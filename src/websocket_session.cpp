#include "websocket_session.h"

#include <wslay/wslay.h>

#include <algorithm>
#include <atomic>
#include <cstring>

namespace spry::detail {
namespace {

std::atomic<std::size_t> g_liveContexts{0};

constexpr std::uint8_t kFin = 0x80;
constexpr std::uint8_t kRsvBits = 0x70;
constexpr std::uint8_t kMaskBit = 0x80;
constexpr std::uint8_t kCloseByte0 = kFin | static_cast<std::uint8_t>(WsOpcode::kClose);
constexpr std::uint8_t kPingByte0 = kFin | static_cast<std::uint8_t>(WsOpcode::kPing);
constexpr std::size_t kMaxControlPayload = 125;
constexpr std::size_t kMaxCloseReason = kMaxControlPayload - 2;
// A reassembly buffer grown past this by one large message is given back
// rather than kept for the connection's lifetime.
constexpr std::size_t kKeptMessageCapacity = 64 << 10;

std::uint64_t readBigEndian(const std::uint8_t* p, int bytes) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// Only the peer's Close reason comes through here: text messages are
// checked by wslay as they stream in.
bool isValidUtf8(std::string_view s) noexcept {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<std::uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto b = static_cast<std::uint8_t>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return false;
    if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return false;
    i += len;
  }
  return true;
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
    closeLength = static_cast<std::uint8_t>(length);
    closeHave = 0;
    std::memcpy(closeKey, h + headerNeed - 4, 4);
    closePayloadPending = closeLength != 0;
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

// The hot path, kept small enough to stay in registers: whole, small,
// masked text or binary frames with no message in progress cannot be a
// violation nor a Close, so they are skipped without further bookkeeping.
WebSocketSession::Guard::Result WebSocketSession::Guard::scan(
    const std::uint8_t* p, std::size_t n, std::uint64_t maxMessageBytes) noexcept {
  std::size_t i = 0;
  if (payloadLeft == 0 && headerHave == 0 && !fragmented && !closePayloadPending) {
    while (n - i >= 6) {
      const std::uint8_t b0 = p[i];
      const std::uint8_t b1 = p[i + 1];
      const std::uint8_t length = b1 & 0x7F;
      if ((b0 != (kFin | WSLAY_TEXT_FRAME) && b0 != (kFin | WSLAY_BINARY_FRAME)) ||
          (b1 & kMaskBit) == 0 || length > 125 || length > maxMessageBytes) {
        break;
      }
      const std::size_t end = i + 6 + length;
      if (end > n) {
        payloadLeft = end - n;
        return {n, 0, false};
      }
      i = end;
    }
    if (i == n) return {n, 0, false};
  }
  return scanSlow(p, n, i, maxMessageBytes);
}

WebSocketSession::Guard::Result WebSocketSession::Guard::scanSlow(
    const std::uint8_t* p, std::size_t n, std::size_t i, std::uint64_t maxMessageBytes) noexcept {
  Result r;
  // A header begun in an earlier chunk has its start "before" this one.
  std::size_t frameStart = 0;
  std::uint16_t code = 0;
  while (i < n) {
    if (payloadLeft != 0) {
      const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(payloadLeft, n - i));
      i += take;
      payloadLeft -= take;
      continue;
    }
    if (closePayloadPending) {
      while (i < n && closeHave < closeLength) {
        closePayload[closeHave] = static_cast<std::uint8_t>(p[i++] ^ closeKey[closeHave % 4]);
        ++closeHave;
      }
      if (closeHave == closeLength) {
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
  if (code != 0) {
    r.failCode = code;
    r.wslayBytes = frameStart;
  } else {
    r.wslayBytes = closeFrame ? frameStart : n;
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
    WebSocketSession& s = self(user);
    const auto avail = static_cast<std::size_t>(s.inEnd_ - s.in_);
    if (avail == 0) {
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    const std::size_t n = std::min(len, avail);
    std::memcpy(buf, s.in_, n);
    s.in_ += n;
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
    s.frameOffset_ = 0;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
      s.haveWhole_ = false;
      s.message_.clear();
    }
  }

  static void frameChunk(wslay_event_context_ptr ctx,
                         const wslay_event_on_frame_recv_chunk_arg* arg, void* user) noexcept {
    WebSocketSession& s = self(user);
    // wslay buffers control frames itself even without buffering.
    if (s.frameOpcode_ >= WSLAY_CONNECTION_CLOSE) return;
    const char* data = reinterpret_cast<const char*>(arg->data);
    const bool wholeMessage = s.frameOffset_ == 0 && s.frameFin_ &&
                              s.frameOpcode_ != WSLAY_CONTINUATION_FRAME &&
                              arg->data_length == s.frameLength_;
    s.frameOffset_ += arg->data_length;
    if (wholeMessage) {
      // wslay's input buffer stays untouched until the message callback has
      // run, so the common case needs no copy.
      s.whole_ = std::string_view(data, arg->data_length);
      s.haveWhole_ = true;
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
        if (!s.closeSent_ && !s.internalError_) {
          s.handler_.onWsMessage(arg->opcode == WSLAY_BINARY_FRAME,
                                 s.haveWhole_ ? s.whole_ : std::string_view(s.message_));
        }
        s.haveWhole_ = false;
        if (s.message_.capacity() > kKeptMessageCapacity) {
          std::string().swap(s.message_);
        } else {
          s.message_.clear();
        }
      } else if (arg->opcode == WSLAY_PING) {
        s.pingReceived_ = true;  // wslay has just queued the pong
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
  haveWhole_ = false;
  stashLength_ = 0;
  g_liveContexts.fetch_sub(1, std::memory_order_relaxed);
}

// Once our Close is out, input is only scanned for the peer's Close, so
// wslay has nothing left to do.
void WebSocketSession::dropUnusedContext() noexcept {
  if (closeSent_ && !inWslay_) {
    destroyContext();
    std::string().swap(message_);
  }
}

void WebSocketSession::feed(std::string_view data) noexcept {
  if (isStopped() || data.empty()) return;
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  const Guard::Result r = guard_.scan(p, data.size(), limits_.maxMessageBytes);
  if (r.wslayBytes != 0 && !closeSent_) runWslay(p, r.wslayBytes);
  if ((r.failCode != 0 || r.closeReady) && !isStopped()) {
    if (r.failCode != 0) {
      fail(r.failCode);
    } else {
      handlePeerClose();
    }
  }
  if (closeSent_) dropUnusedContext();
}

void WebSocketSession::runWslay(const std::uint8_t* p, std::size_t n) noexcept {
  if (ctx_ == nullptr && !createContext()) {
    fail(kCloseInternalError);
    return;
  }
  in_ = p;
  inEnd_ = p + n;
  inWslay_ = true;
  const int received = wslay_event_recv(ctx_);
  const bool readable = received == 0 && wslay_event_get_read_enabled(ctx_) != 0;
  // wslay queues a frame only to answer a ping or to close, so the common
  // case skips the send call. Pongs go out after the messages of this chunk.
  if (pingReceived_ || !readable) {
    pingReceived_ = false;
    wslay_event_send(ctx_);
  }
  inWslay_ = false;
  in_ = inEnd_ = nullptr;
  if (internalError_ || received == WSLAY_ERR_NOMEM) {
    fail(kCloseInternalError);
  } else if (wslayClosed_) {
    // wslay closes with an empty payload on a frame-level error.
    fail(wslayCloseCode_ != 0 ? wslayCloseCode_ : kCloseProtocolError);
  } else if (!readable) {
    fail(kCloseProtocolError);
  }
}

void WebSocketSession::onWslayOutput(const std::uint8_t* data, std::size_t len,
                                     bool more) noexcept {
  if (stashLength_ + len <= sizeof(stash_)) {
    std::memcpy(stash_ + stashLength_, data, len);
    stashLength_ = static_cast<std::uint8_t>(stashLength_ + len);
    if (more) return;
    const std::uint8_t frameLength = stashLength_;
    stashLength_ = 0;
    emitWslayFrame(stash_, frameLength);
    return;
  }
  // wslay only sends control frames here, which always fit the stash; pass
  // anything else through unchanged rather than lose it.
  if (!closeSent_) {
    handler_.onWsOutput(std::string_view(reinterpret_cast<const char*>(stash_), stashLength_));
    handler_.onWsOutput(std::string_view(reinterpret_cast<const char*>(data), len));
  }
  stashLength_ = 0;
}

void WebSocketSession::emitWslayFrame(const std::uint8_t* data, std::size_t len) noexcept {
  if (data[0] == kCloseByte0) {
    // wslay's own Close never goes out: its code may be missing or wrong,
    // and only sendClose() may send the one Close.
    wslayClosed_ = true;
    wslayCloseCode_ =
        len >= 4 ? static_cast<std::uint16_t>(readBigEndian(data + 2, 2)) : std::uint16_t{0};
    return;
  }
  if (!closeSent_) {
    handler_.onWsOutput(std::string_view(reinterpret_cast<const char*>(data), len));
  }
}

void WebSocketSession::fail(std::uint16_t code) noexcept {
  if (failCode_ == 0) failCode_ = code;
  sendClose(code, {});
}

void WebSocketSession::handlePeerClose() noexcept {
  std::uint16_t code = kCloseNoStatus;
  std::string_view reason;
  if (guard_.closeLength >= 2) {
    code = static_cast<std::uint16_t>(readBigEndian(guard_.closePayload, 2));
    if (!isValidCloseCode(code)) {
      fail(kCloseProtocolError);
      return;
    }
    reason = std::string_view(reinterpret_cast<const char*>(guard_.closePayload) + 2,
                              guard_.closeLength - 2u);
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
  if (inWslay_) return false;
  if (!closeSent_ && (!guard_.idle() || wslay_event_get_queued_msg_count(ctx_) != 0)) {
    return false;
  }
  destroyContext();
  std::string().swap(message_);
  return true;
}

}  // namespace spry::detail
