#include "ws/websocket_session.h"

#include <wslay/wslay.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "ws/utf8.h"

namespace spry::detail {
namespace {

std::atomic<std::size_t> g_liveContexts{0};

// The first byte of the frames wslay sends that the session looks at.
constexpr std::uint8_t kCloseByte0 = kFinBit | static_cast<std::uint8_t>(WsOpcode::kClose);
constexpr std::uint8_t kPongByte0 = kFinBit | static_cast<std::uint8_t>(WsOpcode::kPong);

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
  constexpr std::uint8_t kTextByte0 = kFinBit | WSLAY_TEXT_FRAME;
  constexpr std::uint8_t kBinaryByte0 = kFinBit | WSLAY_BINARY_FRAME;
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
  const FrameGuard::Result r = guard_.scan(p, n, limits_.maxMessageBytes, untilIdle);
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
    handler_.onWsOutput(makeControlFrame(WsOpcode::kPong, payload).view());
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
  const std::unique_ptr<FrameGuard::PeerClose> close = std::move(guard_.close);
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
  handler_.onWsOutput(makeCloseFrame(code, reason).view());
  dropUnusedContext();
}

void WebSocketSession::sendPing(std::string_view payload) noexcept {
  if (closeSent_) return;
  handler_.onWsOutput(makeControlFrame(WsOpcode::kPing, payload).view());
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
