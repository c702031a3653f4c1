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

CompressionPool& SessionHandler::compressionPool() noexcept {
  thread_local CompressionPool pool;
  return pool;
}

// Made with the wslay context and freed with it (destroyContext); it is
// also wslay's user pointer, through which the callbacks reach the session.
struct WebSocketSession::WslayState {
  explicit WslayState(WebSocketSession& s) noexcept : session(s) {}
  WslayState(const WslayState&) = delete;
  WslayState& operator=(const WslayState&) = delete;
  ~WslayState() {
    if (ctx != nullptr) wslay_event_context_free(ctx);
  }

  WebSocketSession& session;
  wslay_event_context* ctx = nullptr;
  WslayInput* input = nullptr;  // set while wslay runs
  // A message reassembled from fragments (or from a frame wslay read in
  // pieces); its capacity is given back once it is delivered.
  std::string message;
  // The inflater of a compressed message that arrives in pieces, from the
  // loop's pool until the message ends (a whole one uses the loop's own).
  std::unique_ptr<Inflater> inflater;
  // Frame being received, as wslay's start callback reported it.
  std::uint64_t frameLength = 0;
  std::uint8_t frameOpcode = 0;
  bool frameFin = false;
  bool compressed = false;  // the data message in progress has RSV1
  // wslay writes a frame header, then its payload, within one
  // wslay_event_send; the header waits here so the owner gets each control
  // frame in one piece.
  std::uint8_t stashLength = 0;
  std::uint8_t stash[10];
};

struct WebSocketSession::WslayInput {
  const std::uint8_t* next = nullptr;
  const std::uint8_t* end = nullptr;
  // A message that arrived in one piece is delivered straight from wslay's
  // buffer; anything else is reassembled in WslayState::message.
  std::string_view whole;
  bool haveWhole = false;
  // Pings received (each a length byte and the payload) and pongs wslay sent.
  std::string pings;
  std::size_t pingCount = 0;
  std::size_t pongsSent = 0;
  std::uint16_t wslayCloseCode = 0;
  std::uint16_t failCode = 0;  // a callback failed the message (inflate: 1007, 1009)
  bool wslayClosed = false;    // wslay tried to send its own Close (intercepted)
  bool pingReceived = false;   // wslay has a pong to send
  bool internalError = false;  // out of memory inside a wslay callback
};

// The C callbacks handed to wslay. Each is a noexcept barrier: nothing may
// unwind through wslay.
struct WebSocketSession::WslayCallbacks {
  // wslay calls back only from inside runWslay, so input is set.
  static WslayState& state(void* user) noexcept { return *static_cast<WslayState*>(user); }

  static ssize_t recv(wslay_event_context_ptr ctx, std::uint8_t* buf, std::size_t len, int,
                      void* user) noexcept {
    WslayInput& in = *state(user).input;
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
      state(user).session.onWslayOutput(data, len, (flags & WSLAY_MSG_MORE) != 0);
    } catch (...) {
    }
    return static_cast<ssize_t>(len);
  }

  static void frameStart(wslay_event_context_ptr, const wslay_event_on_frame_recv_start_arg* arg,
                         void* user) noexcept {
    WslayState& w = state(user);
    w.frameOpcode = arg->opcode;
    w.frameFin = arg->fin != 0;
    w.frameLength = arg->payload_length;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
      w.input->haveWhole = false;
      w.message.clear();
      w.compressed = (arg->rsv & WSLAY_RSV1_BIT) != 0;
    }
  }

  static void frameChunk(wslay_event_context_ptr ctx,
                         const wslay_event_on_frame_recv_chunk_arg* arg, void* user) noexcept {
    WslayState& w = state(user);
    // wslay buffers control frames itself even without buffering.
    if (w.frameOpcode >= WSLAY_CONNECTION_CLOSE) return;
    const char* data = reinterpret_cast<const char*>(arg->data);
    // A frame's chunks add up to its length, so one chunk of that length is
    // all of it.
    if (w.frameFin && w.frameOpcode != WSLAY_CONTINUATION_FRAME &&
        arg->data_length == w.frameLength) {
      // wslay's input buffer stays untouched until the message callback has
      // run, so this needs no copy.
      w.input->whole = std::string_view(data, arg->data_length);
      w.input->haveWhole = true;
      return;
    }
    try {
      if (w.compressed) {
        // Inflated as it arrives: what is kept is never over the limit.
        if (!w.inflater) w.inflater = w.session.compressionPool().takeInflater();
        const std::uint16_t code =
            inflateFailure(w.inflater->inflate(std::string_view(data, arg->data_length), w.message,
                                               static_cast<std::size_t>(std::min<std::uint64_t>(
                                                   w.session.limits_.maxMessageBytes, SIZE_MAX)),
                                               false));
        if (code != 0) {
          w.input->failCode = code;
          wslay_event_shutdown_read(ctx);
        }
        return;
      }
      w.message.append(data, arg->data_length);
    } catch (...) {
      w.input->internalError = true;
      wslay_event_shutdown_read(ctx);
    }
  }

  // The end of a compressed message that came in pieces: the inflater's
  // tail, then the message. Returns 0 or the close code.
  static std::uint16_t finishInflating(WslayState& w, bool binary) {
    WebSocketSession& s = w.session;
    if (!w.inflater) w.inflater = s.compressionPool().takeInflater();  // an empty payload
    std::uint16_t code = inflateFailure(w.inflater->inflate(
        {}, w.message,
        static_cast<std::size_t>(std::min<std::uint64_t>(s.limits_.maxMessageBytes, SIZE_MAX)),
        true));
    s.compressionPool().giveBack(std::move(w.inflater));
    if (code == 0 && !binary && !isValidUtf8(w.message)) code = kCloseInvalidPayload;
    if (code == 0) s.onWsMessage(binary, w.message, true);
    return code;
  }

  static void message(wslay_event_context_ptr ctx, const wslay_event_on_msg_recv_arg* arg,
                      void* user) noexcept {
    WslayState& w = state(user);
    WebSocketSession& s = w.session;
    WslayInput& in = *w.input;
    try {
      if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
        // A chunk that failed to append must not be delivered as a message.
        const bool binary = arg->opcode == WSLAY_BINARY_FRAME;
        if (!s.closeSent_ && !in.internalError && in.failCode == 0) {
          std::uint16_t code = 0;
          if (!w.compressed) {
            s.onWsMessage(binary, in.haveWhole ? in.whole : std::string_view(w.message), false);
          } else if (in.haveWhole) {
            code = s.deliverCompressed(binary, in.whole);
          } else {
            code = finishInflating(w, binary);
          }
          if (code != 0) {
            in.failCode = code;
            wslay_event_shutdown_read(ctx);
          }
        }
        if (w.inflater) w.session.compressionPool().giveBack(std::move(w.inflater));
        w.compressed = false;
        in.haveWhole = false;
        // An idle socket keeps no payload capacity.
        std::string().swap(w.message);
      } else if (arg->opcode == WSLAY_PING) {
        in.pingReceived = true;  // wslay has just queued the pong
        // Kept until wslay has sent it: a Close that wslay queues later in
        // this chunk goes out first and disables writing, dropping the pong.
        try {
          in.pings.push_back(static_cast<char>(arg->msg_length));
          in.pings.append(reinterpret_cast<const char*>(arg->msg), arg->msg_length);
        } catch (...) {
          in.internalError = true;
        }
        ++in.pingCount;
      } else if (arg->opcode == WSLAY_PONG && !s.closeSent_) {
        s.onWsPong(std::string_view(reinterpret_cast<const char*>(arg->msg), arg->msg_length));
      }
      // wslay answers pings itself, and never sees a Close (the guard keeps it).
    } catch (...) {
      // Out of memory finishing a compressed message (the handler never
      // throws here): it is lost, so the connection cannot go on.
      in.internalError = true;
      wslay_event_shutdown_read(ctx);
    }
  }

  static constexpr wslay_event_callbacks kTable = {
      recv, send, nullptr, frameStart, frameChunk, nullptr, message,
  };
};

// Held by every open socket, idle or not.
static_assert(sizeof(void*) != 8 || sizeof(WebSocketSession) <= 72);

WebSocketSession::WebSocketSession(const SessionLimits& limits) : limits_(limits) {}

WebSocketSession::~WebSocketSession() {
  destroyContext();
}

std::size_t WebSocketSession::liveContexts() noexcept {
  return g_liveContexts.load(std::memory_order_relaxed);
}

bool WebSocketSession::wslayRunning() const noexcept {
  return wslay_ != nullptr && wslay_->input != nullptr;
}

bool WebSocketSession::createContext() noexcept {
  std::unique_ptr<WslayState> state(new (std::nothrow) WslayState(*this));
  if (!state) return false;
  wslay_event_context_ptr ctx = nullptr;
  if (wslay_event_context_server_init(&ctx, &WslayCallbacks::kTable, state.get()) != 0) {
    return false;
  }
  state->ctx = ctx;
  // Messages are reassembled here, so wslay allocates nothing per message.
  wslay_event_config_set_no_buffering(ctx, 1);
  // A second line behind the guard; wslay applies it to control frames too,
  // so it must never drop below their 125 bytes. Compressed messages count
  // their wire bytes there (the guard's looser bound).
  std::uint64_t wireLimit = limits_.maxMessageBytes;
  if (guard_.rsv1Allowed) {
    wslay_event_config_set_allowed_rsv_bits(ctx, WSLAY_RSV1_BIT);
    wireLimit = maxCompressedBytes(wireLimit);
  }
  wslay_event_config_set_max_recv_msg_length(
      ctx, std::max<std::uint64_t>(wireLimit, kMaxControlPayload));
  wslay_ = std::move(state);
  g_liveContexts.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void WebSocketSession::destroyContext() noexcept {
  if (wslay_ == nullptr) return;
  wslay_.reset();
  g_liveContexts.fetch_sub(1, std::memory_order_relaxed);
}

// Once our Close is out, input is only scanned for the peer's Close, so
// wslay has nothing left to do.
void WebSocketSession::dropUnusedContext() noexcept {
  if (closeSent_ && !wslayRunning()) destroyContext();
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
    if ((b0 != kTextByte0 && b0 != kBinaryByte0) || (b1 & kMaskBit) == 0) {
      // A whole compressed message (permessage-deflate), out of line.
      if (!guard_.rsv1Allowed) break;
      const std::size_t used = deliverWholeCompressed(frame, n - i);
      if (used == kFailed) return n;
      if (used == 0) break;
      i += used;
      if (closeSent_) break;
      continue;
    }
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
    onWsMessage(b0 == kBinaryByte0, message, false);
    // The handler may have sent a Close; nothing else can stop the session
    // here (a failure sends one too).
    if (closeSent_) break;
  }
  return i;
}

// The fast path's compressed case: a whole single-frame compressed message
// (FIN, RSV1, masked, minimal length, within the wire bound) at the start of
// `frame`. Returns its size once delivered, 0 when it is not one (the slow
// path takes it), kFailed when it failed the connection.
[[gnu::noinline]] std::size_t WebSocketSession::deliverWholeCompressed(std::uint8_t* frame,
                                                                       std::size_t n) noexcept {
  constexpr std::uint8_t kTextByte0 = kFinBit | kRsv1Bit | WSLAY_TEXT_FRAME;
  constexpr std::uint8_t kBinaryByte0 = kFinBit | kRsv1Bit | WSLAY_BINARY_FRAME;
  const std::uint8_t b0 = frame[0];
  const std::uint8_t b1 = frame[1];
  if ((b0 != kTextByte0 && b0 != kBinaryByte0) || (b1 & kMaskBit) == 0) return 0;
  std::uint64_t length = b1 & 0x7F;
  std::size_t header = 6;
  if (length == 126) {
    if (n < 8) return 0;
    length = readBigEndian(frame + 2, 2);
    if (length < 126) return 0;
    header = 8;
  } else if (length == 127) {
    if (n < 14) return 0;
    length = readBigEndian(frame + 2, 8);
    if ((length >> 63) != 0 || length <= 0xFFFF) return 0;
    header = 14;
  }
  if (length > maxCompressedBytes(limits_.maxMessageBytes) || length > n - header) return 0;
  const auto size = static_cast<std::size_t>(length);
  std::uint8_t* payload = frame + header;
  unmaskIsAscii(payload, size, payload - 4);
  const std::string_view message(reinterpret_cast<const char*>(payload), size);
  if (const std::uint16_t code = deliverCompressed(b0 == kBinaryByte0, message); code != 0) {
    fail(code);
    return kFailed;
  }
  return header + size;
}

std::uint16_t WebSocketSession::inflateFailure(Inflater::Status status) noexcept {
  switch (status) {
    case Inflater::Status::kOk:
      return 0;
    case Inflater::Status::kTooBig:
      return kCloseMessageTooBig;
    case Inflater::Status::kCorrupt:
      return kCloseInvalidPayload;
  }
  return kCloseInternalError;
}

// A compressed message that arrived whole: inflated with the loop's stream
// into the loop's buffer, checked, delivered. Returns 0 or the close code.
// The buffer is taken out of the pool for the call, so a handler that gets
// here again (another socket, in-process) finds it empty and uses its own.
std::uint16_t WebSocketSession::deliverCompressed(bool binary, std::string_view payload) noexcept {
  CompressionPool& pool = compressionPool();
  std::string out = std::move(pool.inflated());
  out.clear();
  std::uint16_t code = 0;
  try {
    // Reset first: a failed message (or a throw) may have left it mid-stream.
    Inflater& inflater = pool.sharedInflater();
    inflater.reset();
    code = inflateFailure(inflater.inflate(
        payload, out,
        static_cast<std::size_t>(std::min<std::uint64_t>(limits_.maxMessageBytes, SIZE_MAX)),
        true));
  } catch (...) {
    code = kCloseInternalError;
  }
  if (code == 0 && !binary && !isValidUtf8(out)) code = kCloseInvalidPayload;
  if (code == 0) onWsMessage(binary, out, true);
  if (pool.inflated().capacity() < out.capacity()) pool.inflated() = std::move(out);
  return code;
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
  if (wslay_ == nullptr && !createContext()) {
    fail(kCloseInternalError);
    return;
  }
  WslayInput input;
  input.next = p;
  input.end = p + n;
  wslay_event_context* ctx = wslay_->ctx;
  wslay_->input = &input;
  const int received = wslay_event_recv(ctx);
  const bool readable = received == 0 && wslay_event_get_read_enabled(ctx) != 0;
  // wslay queues a frame only to answer a ping or to close, so the common
  // case skips the send call. Pongs go out after the messages of this call.
  if (input.pingReceived || !readable) wslay_event_send(ctx);
  if (input.pongsSent < input.pingCount) sendDroppedPongs(input);
  // Nothing above frees the context while wslay runs (wslayRunning()).
  wslay_->input = nullptr;
  if (input.failCode != 0) {
    fail(input.failCode);
  } else if (input.internalError || received == WSLAY_ERR_NOMEM) {
    fail(kCloseInternalError);
  } else if (input.wslayClosed) {
    // wslay closes with an empty payload on a frame-level error.
    fail(input.wslayCloseCode != 0 ? input.wslayCloseCode : kCloseProtocolError);
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
    onWsOutput(makeControlFrame(WsOpcode::kPong, payload).view());
  }
}

// wslay sends a frame's header (with WSLAY_MSG_MORE when a payload follows)
// and then its payload within one wslay_frame_send, since our send callback
// always takes everything: the two are joined on the stack here. wslay only
// sends from inside runWslay.
void WebSocketSession::onWslayOutput(const std::uint8_t* data, std::size_t len,
                                     bool more) noexcept {
  WslayState& w = *wslay_;
  if (more && w.stashLength == 0 && len <= sizeof(w.stash)) {
    std::memcpy(w.stash, data, len);
    w.stashLength = static_cast<std::uint8_t>(len);
    return;
  }
  const std::size_t header = w.stashLength;
  w.stashLength = 0;
  if (header == 0) {
    emitWslayFrame(data, len);
    return;
  }
  if (header + len <= 2 + kMaxControlPayload) {
    std::uint8_t frame[2 + kMaxControlPayload];
    std::memcpy(frame, w.stash, header);
    std::memcpy(frame + header, data, len);
    emitWslayFrame(frame, header + len);
    return;
  }
  // wslay only sends control frames here, which always fit; pass anything
  // else through unchanged rather than lose it.
  if (!closeSent_) {
    onWsOutput(std::string_view(reinterpret_cast<const char*>(w.stash), header));
    onWsOutput(std::string_view(reinterpret_cast<const char*>(data), len));
  }
}

void WebSocketSession::emitWslayFrame(const std::uint8_t* data, std::size_t len) noexcept {
  if (len == 0) return;
  if (data[0] == kCloseByte0) {
    // wslay's own Close never goes out: its code may be missing or wrong,
    // and only sendClose() may send the one Close.
    WslayInput& in = *wslay_->input;
    in.wslayClosed = true;
    in.wslayCloseCode =
        len >= 4 ? static_cast<std::uint16_t>(readBigEndian(data + 2, 2)) : std::uint16_t{0};
    return;
  }
  if (data[0] == kPongByte0) ++wslay_->input->pongsSent;
  if (!closeSent_) {
    onWsOutput(std::string_view(reinterpret_cast<const char*>(data), len));
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
  onWsCloseReceived(code, reason);
  // RFC 6455 5.5.1: echo the status code received.
  sendClose(code == kCloseNoStatus ? 0 : code, {});
}

void WebSocketSession::sendClose(std::uint16_t code, std::string_view reason) noexcept {
  if (closeSent_) return;
  closeSent_ = true;
  onWsOutput(makeCloseFrame(code, reason).view());
  dropUnusedContext();
}

void WebSocketSession::sendPing(std::string_view payload) noexcept {
  if (closeSent_) return;
  onWsOutput(makeControlFrame(WsOpcode::kPing, payload).view());
}

bool WebSocketSession::releaseIfIdle() noexcept {
  if (wslay_ == nullptr) return true;
  // Freeing the context under wslay's own call stack would be fatal.
  if (wslayRunning()) return false;
  if (!closeSent_ && (!guard_.idle() || wslay_event_get_queued_msg_count(wslay_->ctx) != 0)) {
    return false;
  }
  destroyContext();
  return true;
}

}  // namespace spry::detail
