#include "http/http_parser.h"

#include <llhttp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "http/token.h"

namespace spry::detail {

namespace {

// True when one of the `n` bytes at `p` is a space. A header name holds
// nothing else below 0x21 (llhttp refuses every other byte outside tchar),
// so a word with no byte below 0x21 has no space; the test is exact.
inline bool anySpace(const char* p, std::size_t n) noexcept {
  constexpr std::uint64_t kBelow = 0x2121212121212121ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  auto below = [](std::uint64_t w) { return ((w - kBelow) & ~w & kHigh) != 0; };
  if (n >= 8) {
    std::uint64_t w;
    for (std::size_t i = 0; i + 8 < n; i += 8) {
      std::memcpy(&w, p + i, 8);
      if (below(w)) return true;
    }
    std::memcpy(&w, p + n - 8, 8);  // the last eight, overlapping
    return below(w);
  }
  if (n >= 4) {
    std::uint32_t a;
    std::uint32_t b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + n - 4, 4);
    return below((std::uint64_t(a) << 32) | b);
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] == ' ') return true;
  }
  return false;
}

// True when the four bytes at `p` are `lower` (letters only) in any case:
// or-ing in the case bit maps a byte onto a letter only from that letter.
inline bool isWord4(const char* p, const char* lower) noexcept {
  std::uint32_t a;
  std::uint32_t b;
  std::memcpy(&a, p, 4);
  std::memcpy(&b, lower, 4);
  return (a | 0x20202020u) == b;
}

inline bool isWord2(const char* p, const char* lower) noexcept {
  std::uint16_t a;
  std::uint16_t b;
  std::memcpy(&a, p, 2);
  std::memcpy(&b, lower, 2);
  return (a | 0x2020u) == b;
}

inline bool isCrlf(const char* p) noexcept {
  std::uint16_t a;
  std::uint16_t b;
  std::memcpy(&a, p, 2);
  std::memcpy(&b, "\r\n", 2);
  return a == b;
}

}  // namespace

struct HttpParser::Impl {
  enum class Phase { kIdle, kHeaders, kBody, kComplete, kFailed };
  // Why a callback paused llhttp; each pause hands control back to feed().
  enum class Pause { kNone, kHeadersComplete, kChunkComplete, kMessageComplete };
  // After llhttp rejects a method it does not know, the rest of the request
  // line is checked here to tell an unknown method (501) from garbage (400).
  enum class Probe { kOff, kMethod, kTargetStart, kTarget, kVersion, kCr, kLf };

  // What a chunked body accumulates, reset when one begins.
  struct ChunkedBody {
    std::size_t trailerBytes = 0;
    std::size_t trailerNameBytes = 0;
    std::size_t trailerCount = 0;
    std::size_t extensionBytes = 0;
  };
  // What one request's head accumulates, reset between requests.
  struct Progress {
    const char* lastEnd = nullptr;    // end of the target, or of the last field's name or value
    std::size_t headEnd = 0;          // offset from base, once the head is complete
    const char* nameStart = nullptr;  // of the field whose name is arriving
    // Bytes fed while the head was incomplete, blank lines before it included,
    // so that neither a slow head nor endless CRLFs escape maxHeaderBytes.
    std::size_t headerBytes = 0;
    std::size_t hosts = 0;        // Host fields
    std::size_t expectField = 0;  // 1 + the index of the first Expect field, or 0
    // A name's first piece has come, not its colon; or the trailers, whose
    // names are only checked. Either way names take the slow way.
    bool slowNames = false;
    bool nameHasSpace = false;  // in the pieces so far
    bool valuePending = false;  // the last field's name is complete, its value not begun
    bool expectContinue = false;
    // The last two bytes llhttp consumed, possibly from an earlier feed; kept
    // up to date wherever parsing goes on after llhttp returns.
    char tail[2] = {0, 0};
  };

  explicit Impl(const HttpLimits& l) noexcept : limits(l) {
    llhttp_init(&parser, HTTP_REQUEST, &settings());
    parser.data = this;
  }

  Step feed(std::string_view data);
  Step finishFeed(Step step, const char* end) noexcept;
  void startNext() noexcept;
  void own(std::size_t length);
  void rebase(const char* to) noexcept;
  Step fail(int status, const char* reason, std::size_t consumed) noexcept;
  Step probeRequestLine(std::string_view data, std::size_t from) noexcept;
  int reject(int status, const char* reason) noexcept;
  int statusFor(llhttp_errno_t err) const noexcept;
  void rememberTail(const char* at, std::size_t len) noexcept;
  std::size_t offsetOf(const char* at) const noexcept { return std::size_t(at - base); }
  std::vector<RequestHeaders::Field>& fields() noexcept {
    return HeaderAccess::fields(request.headers);
  }
  // True when bytes [from, to) are an optional ':' (after a name), optional
  // whitespace, then `breaks` line breaks (CRLF or LF), and nothing else.
  static bool isLineEnd(const char* from, const char* to, int breaks) noexcept {
    const char* i = from;
    if (i < to && *i == ':') ++i;
    while (i < to && isOws(*i)) ++i;
    for (int b = 0; b < breaks; ++b) {
      if (i < to && *i == '\r') ++i;
      if (i >= to || *i != '\n') return false;
      ++i;
    }
    return i == to;
  }
  bool headEndIsClean() noexcept;
  bool headEndIsCleanSlow() noexcept;
  bool isNewLine(const char* at) noexcept;
  void measureRoom() noexcept {
    auto& out = fields();
    fieldsRoom = out.data() + std::min(out.capacity(), limits.maxHeaderCount);
  }
  bool isPlainName(const char* at, std::size_t len) const noexcept;
  void noteField(const char* name, std::size_t size) noexcept;
  int onNamePiece(const char* at, std::size_t len, bool ends) noexcept;
  int completeName(const char* name, std::size_t size, bool space) noexcept;
  int onTrailerName(const char* at, std::size_t len, bool ends) noexcept;
  int onValuePiece(const char* at, std::size_t len) noexcept;
  int checkTransferEncoding() noexcept;

  // The llhttp callbacks. llhttp is C: an exception must never unwind
  // through it, so each is noexcept and the few that allocate catch. Only
  // callbacks that do work are registered: each costs llhttp a call.
  static Impl& of(llhttp_t* p) noexcept { return *static_cast<Impl*>(p->data); }
  static int onMessageBegin(llhttp_t* p) noexcept;
  static int onUrl(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int onVersionComplete(llhttp_t* p) noexcept;
  static int onHeaderField(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int onHeaderValue(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int onHeadersComplete(llhttp_t* p) noexcept;
  static int onBody(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int onChunkHeader(llhttp_t* p) noexcept;
  static int onChunkExtension(llhttp_t* p, const char* at, std::size_t len) noexcept;
  static int onChunkComplete(llhttp_t* p) noexcept;
  static int onMessageComplete(llhttp_t* p) noexcept;

  static const llhttp_settings_t& settings() noexcept {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t t;
      llhttp_settings_init(&t);
      t.on_message_begin = &onMessageBegin;
      t.on_url = &onUrl;
      t.on_version_complete = &onVersionComplete;
      t.on_header_field = &onHeaderField;
      t.on_header_value = &onHeaderValue;
      t.on_headers_complete = &onHeadersComplete;
      t.on_body = &onBody;
      t.on_chunk_header = &onChunkHeader;
      t.on_chunk_extension_name = &onChunkExtension;
      t.on_chunk_extension_value = &onChunkExtension;
      t.on_chunk_complete = &onChunkComplete;
      t.on_message_complete = &onMessageComplete;
      return t;
    }();
    return s;
  }

  HttpLimits limits;
  llhttp_t parser{};
  Phase phase = Phase::kIdle;
  Pause pause = Pause::kNone;
  // Built in place as the head arrives: the target and each field are views
  // from the start (see rebase), a value trimmed as its pieces come.
  RequestView request;
  // Where the request's bytes start, and so its views and pointers (and
  // headEnd, an offset): the first byte fed for this request (borrowed: in
  // the caller's data, during one feed), or the parser's copy of the head
  // (owned: once the head or its body outlives a feed; see rebase).
  const char* base = nullptr;
  bool owned = false;
  std::string headCopy;
  // The end of the bytes handed to the running llhttp_execute: a name piece
  // that ends before it ends at its colon (see onHeaderField).
  const char* execEnd = nullptr;
  // Where the fields may go without growing their list or passing
  // maxHeaderCount (see onHeaderField): recomputed whenever the list may
  // have changed (the owner takes it after each request).
  const RequestHeaders::Field* fieldsRoom = nullptr;
  Progress progress;
  ChunkedBody chunkedBody;
  // A request without keep-alive ends the connection's HTTP: RFC 9112 9.6 says
  // not to process what follows, whichever way llhttp was compiled.
  bool closed = false;
  Probe probe = Probe::kOff;
  std::size_t versionIndex = 0;
  int errorStatus = 0;
  const char* errorReason = "";
};

void HttpParser::Impl::startNext() noexcept {
  request.method = {};
  request.target = {};
  request.versionMajor = request.versionMinor = 1;
  fields().clear();
  measureRoom();
  request.body.clear();
  request.keepAlive = true;
  request.upgrade = false;
  base = nullptr;
  if (owned) {
    owned = false;
    // A head that came in pieces may have been large: do not keep its room.
    if (headCopy.capacity() > 4096) {
      std::string().swap(headCopy);
    } else {
      headCopy.clear();
    }
  }
  progress = {};  // the chunked body's counters are reset when one begins
  phase = Phase::kIdle;
}

HttpParser::Step HttpParser::Impl::fail(int status, const char* reason,
                                        std::size_t consumed) noexcept {
  if (errorStatus == 0) {
    errorStatus = status;
    errorReason = reason;
  }
  phase = Phase::kFailed;
  return {Status::kError, consumed};
}

int HttpParser::Impl::reject(int status, const char* reason) noexcept {
  if (errorStatus == 0) {
    errorStatus = status;
    errorReason = reason;
  }
  return -1;
}

int HttpParser::Impl::statusFor(llhttp_errno_t err) const noexcept {
  switch (err) {
    case HPE_INVALID_CONSTANT:
      // RTSP-only methods (DESCRIBE, PLAY, ...) fail here on an HTTP request line.
      return parser.method > HTTP_SOURCE ? 501 : 400;
    case HPE_INVALID_VERSION: {
      // Only this reason means "well-formed but unsupported"; the others are syntax.
      const char* reason = llhttp_get_error_reason(&parser);
      return reason != nullptr && std::strcmp(reason, "Invalid HTTP version") == 0 ? 505 : 400;
    }
    case HPE_PAUSED_H2_UPGRADE:
      return 505;
    default:
      return 400;
  }
}

inline bool HttpParser::Impl::headEndIsClean() noexcept {
  // The usual end: CRLF after the last field's value, then the blank line
  // (after the request line itself there are always more bytes than four).
  const char* const lastEnd = progress.lastEnd;
  if (base + progress.headEnd - lastEnd == 4 && isCrlf(lastEnd) && isCrlf(lastEnd + 2)) {
    return true;
  }
  return headEndIsCleanSlow();
}

bool HttpParser::Impl::headEndIsCleanSlow() noexcept {
  // The blank line must follow the last field line at once (see
  // onHeaderField): anything else is a continuation line or a stray byte.
  const char* const lastEnd = progress.lastEnd;
  const char* const headEnd = base + progress.headEnd;
  if (fields().empty()) {
    // After the target: the version (llhttp checked it) and a line break.
    const char* i = lastEnd;
    while (i < headEnd && *i != '\n') ++i;
    return i < headEnd && isLineEnd(i + 1, headEnd, 1);
  }
  return isLineEnd(lastEnd, headEnd, 2);
}

void HttpParser::Impl::rebase(const char* to) noexcept {
  // The views of the request so far move with its bytes.
  auto move = [this, to](std::string_view& v) {
    if (v.data() != nullptr) v = {to + (v.data() - base), v.size()};
  };
  move(request.target);
  if (progress.lastEnd != nullptr) progress.lastEnd = to + (progress.lastEnd - base);
  if (progress.nameStart != nullptr) progress.nameStart = to + (progress.nameStart - base);
  for (auto& [name, value] : fields()) {
    move(name);
    move(value);
  }
  base = to;
}

void HttpParser::Impl::own(std::size_t length) {
  // The views of a request in progress must outlive the caller's bytes:
  // its head so far is copied, once, and later head bytes are appended.
  if (owned) return;
  headCopy.assign(base, length);
  rebase(headCopy.data());
  owned = true;
}

void HttpParser::Impl::rememberTail(const char* at, std::size_t len) noexcept {
  if (len >= 2) {
    progress.tail[0] = at[len - 2];
    progress.tail[1] = at[len - 1];
  } else if (len == 1) {
    progress.tail[0] = progress.tail[1];
    progress.tail[1] = at[0];
  }
}

HttpParser::Step HttpParser::Impl::feed(std::string_view data) {
  if (phase == Phase::kComplete) {
    startNext();
  } else if (phase == Phase::kFailed) {
    return {Status::kError, 0};
  }
  if (closed) return {Status::kNeedMore, data.size()};
  // An empty view may have a null data(): llhttp would offset it (UB).
  if (data.empty()) return {Status::kNeedMore, 0};
  if (probe != Probe::kOff) return probeRequestLine(data, 0);

  std::size_t pos = 0;
  for (;;) {
    const bool inHead = phase == Phase::kIdle || phase == Phase::kHeaders;
    std::size_t len = data.size() - pos;
    const char* const fed = data.data() + pos;
    const char* at = fed;
    std::size_t copied = 0;  // size of the head copy before this step
    if (inHead) {
      // Never hand llhttp more head bytes than the limit allows: it pauses at
      // the end of the head, so whatever it consumed here was all head.
      const std::size_t budget = limits.maxHeaderBytes - progress.headerBytes;
      if (len > budget) {
        if (budget == 0) return fail(431, "request header section too large", pos);
        len = budget;
      }
      if (owned) {
        // The rest of a head begun in an earlier feed is parsed from the
        // copy, so that each view stays one contiguous run of bytes.
        copied = headCopy.size();
        headCopy.append(at, len);
        if (headCopy.data() != base) rebase(headCopy.data());
        at = base + copied;
      } else if (phase == Phase::kIdle) {
        base = at;
      }
    }
    execEnd = at + len;
    const llhttp_errno_t err = llhttp_execute(&parser, at, len);
    std::size_t used = len;
    if (err != HPE_OK) {
      const char* stop = parser.error_pos;  // as llhttp_get_error_pos, without the call
      used = (stop != nullptr && stop >= at && stop <= at + len) ? std::size_t(stop - at) : 0;
    }
    if (inHead) {
      progress.headerBytes += used;
      if (owned) headCopy.resize(copied + used);
    }
    pos += used;

    switch (err) {
      case HPE_OK:
        rememberTail(at, used);
        if (pos < data.size()) continue;  // stopped by the head budget
        return finishFeed({Status::kNeedMore, pos}, data.data() + pos);
      case HPE_PAUSED: {
        llhttp_resume(&parser);
        switch (std::exchange(pause, Pause::kNone)) {
          case Pause::kHeadersComplete:
            rememberTail(at, used);
            progress.headEnd = offsetOf(at + used);
            if (!headEndIsClean()) return fail(400, "obsolete line folding or a bare CR", pos);
            if (progress.expectContinue)
              return finishFeed({Status::kExpectContinue, pos}, data.data() + pos);
            continue;
          case Pause::kChunkComplete:
            rememberTail(at, used);
            // llhttp 8 in loose mode skips any two bytes after chunk data;
            // accepting them would let a request smuggle bytes past a proxy.
            if (progress.tail[0] != '\r' || progress.tail[1] != '\n') {
              return fail(400, "chunk data not followed by CRLF", pos);
            }
            continue;
          case Pause::kMessageComplete:
            // Without a body, the head ended with the message, in this step.
            if (progress.headEnd == 0) {
              progress.headEnd = offsetOf(at + used);
              if (!headEndIsClean()) return fail(400, "obsolete line folding or a bare CR", pos);
            }
            return {Status::kRequestComplete, pos};
          case Pause::kNone:
            return fail(500, "unexpected parser pause", pos);
        }
        return fail(500, "unexpected parser pause", pos);
      }
      case HPE_PAUSED_UPGRADE:
        // The owner may decline the upgrade and keep speaking HTTP/1.1.
        llhttp_resume_after_upgrade(&parser);
        if (progress.headEnd == 0) {
          progress.headEnd = offsetOf(at + used);
          if (!headEndIsClean()) return fail(400, "obsolete line folding or a bare CR", pos);
        }
        return {Status::kRequestComplete, pos};
      default: {
        // llhttp stops at the first byte that fits no method it knows: a token
        // character, or a space after a token (the tail is cleared per request).
        if (err == HPE_INVALID_METHOD && used < len) {
          const auto c = static_cast<unsigned char>(fed[used]);
          const char before = used > 0 ? at[used - 1] : progress.tail[1];
          if (isTchar(c) || (c == ' ' && isTchar(static_cast<unsigned char>(before)))) {
            probe = Probe::kMethod;
            return probeRequestLine(data, pos);
          }
        }
        const char* reason = llhttp_get_error_reason(&parser);
        return fail(statusFor(err), reason != nullptr ? reason : "bad request", pos);
      }
    }
  }
}

HttpParser::Step HttpParser::Impl::finishFeed(Step step, const char* end) noexcept {
  // The caller's bytes are only lent for this feed: a request still in
  // progress keeps its head in a copy of its own.
  if (owned || phase == Phase::kIdle || phase == Phase::kComplete) return step;
  try {
    own(phase == Phase::kBody ? progress.headEnd : std::size_t(end - base));
  } catch (...) {
    return fail(500, "out of memory", step.consumed);
  }
  return step;
}

HttpParser::Step HttpParser::Impl::probeRequestLine(std::string_view data,
                                                    std::size_t from) noexcept {
  static constexpr std::string_view kVersionShape = "HTTP/#.#";
  for (std::size_t i = from; i < data.size(); ++i) {
    if (++progress.headerBytes > limits.maxHeaderBytes)
      return fail(400, "Invalid method encountered", i);
    const auto c = static_cast<unsigned char>(data[i]);
    const bool targetChar = c > ' ' && c != 0x7f;
    bool ok = false;
    switch (probe) {
      case Probe::kMethod:
        ok = isTchar(c) || c == ' ';
        if (c == ' ') probe = Probe::kTargetStart;
        break;
      case Probe::kTargetStart:
        ok = targetChar;
        probe = Probe::kTarget;
        break;
      case Probe::kTarget:
        ok = targetChar || c == ' ';
        if (c == ' ') probe = Probe::kVersion;
        break;
      case Probe::kVersion: {
        const char want = kVersionShape[versionIndex];
        ok = want == '#' ? (c >= '0' && c <= '9') : c == static_cast<unsigned char>(want);
        if (++versionIndex == kVersionShape.size()) probe = Probe::kCr;
        break;
      }
      case Probe::kCr:
        if (c == '\n') return fail(501, "unknown method", i + 1);
        ok = c == '\r';
        probe = Probe::kLf;
        break;
      case Probe::kLf:
        if (c == '\n') return fail(501, "unknown method", i + 1);
        break;
      case Probe::kOff:
        break;
    }
    if (!ok) return fail(400, "Invalid method encountered", i);
  }
  return {Status::kNeedMore, data.size()};
}

int HttpParser::Impl::onMessageBegin(llhttp_t* p) noexcept {
  of(p).phase = Phase::kHeaders;
  return 0;
}

int HttpParser::Impl::onUrl(llhttp_t* p, const char* at, std::size_t len) noexcept {
  // Pieces of one view are contiguous (see feed), so a view runs from its
  // first piece to the end of its last.
  Impl& self = of(p);
  const char* start = self.request.target.data() != nullptr ? self.request.target.data() : at;
  const std::size_t size = std::size_t(at + len - start);
  if (size > self.limits.maxUrlBytes) return self.reject(414, "request target too long");
  self.request.target = {start, size};
  self.progress.lastEnd = at + len;
  return 0;
}

int HttpParser::Impl::onVersionComplete(llhttp_t* p) noexcept {
  // llhttp also accepts HTTP/0.9 and HTTP/2.0 request lines.
  if (p->http_major != 1 || p->http_minor > 1) {
    return of(p).reject(505, "unsupported HTTP version");
  }
  return 0;
}

int HttpParser::Impl::onHeaderField(llhttp_t* p, const char* at, std::size_t len) noexcept {
  Impl& self = of(p);
  Progress& pr = self.progress;
  auto& out = self.fields();
  // The usual case, done here without a call: a whole header name in one
  // piece (see isPlainName), right after the line before it, with room for
  // it. Anything else is left to onNamePiece, which looks at the piece
  // afresh.
  const char* const end = at + len;
  if (self.isPlainName(at, len) && !pr.slowNames &&
      (out.empty() || (at - pr.lastEnd == 2 && isCrlf(at - 2))) &&
      out.data() + out.size() < self.fieldsRoom) [[likely]] {
    pr.lastEnd = end;
    pr.valuePending = true;
    self.noteField(at, len);
    // The value is empty until its first piece (its view points after the
    // name: every view of a request lies in its bytes).
    // fieldsRoom is within the capacity: no reallocation here.
    if (out.data() + out.size() == out.data() + out.capacity()) __builtin_unreachable();
    out.emplace_back(std::string_view(at, len), std::string_view(end, 0));
    return 0;
  }
  // llhttp ends a name's last piece at its colon and reports the name
  // complete right after: a piece that stops short of the bytes handed to
  // llhttp stops at the colon (or at a space llhttp goes on to refuse).
  return self.onNamePiece(at, len, end < self.execEnd && *end == ':');
}

// The name's first piece is preceded by a line break alone (or, first of
// all, by the request line, which llhttp checked): see onNamePiece.
bool HttpParser::Impl::isNewLine(const char* at) noexcept {
  return fields().empty() || isLineEnd(progress.lastEnd, at, 1);
}

int HttpParser::Impl::onNamePiece(const char* at, std::size_t len, bool ends) noexcept {
  if (phase == Phase::kBody) return onTrailerName(at, len, ends);
  Progress& pr = progress;
  if (!pr.slowNames) {
    // llhttp (even in strict mode) joins obs-fold continuation lines; RFC
    // 9112 lets a server reject them, which rules out a proxy reading them
    // differently. A field line starts right after the line before it, and
    // a value's pieces are contiguous: the bytes between the views tell,
    // and they are few (llhttp itself refuses control bytes elsewhere).
    // The first line after the request line cannot start with a space.
    if (!(at - pr.lastEnd == 2 && isCrlf(at - 2)) && !isNewLine(at)) {
      return reject(400, "obsolete line folding or a bare CR");
    }
    pr.nameStart = at;
    pr.slowNames = true;
    pr.nameHasSpace = false;
  }
  pr.nameHasSpace |= anySpace(at, len);
  if (!ends) return 0;
  pr.slowNames = false;
  return completeName(pr.nameStart, std::size_t(at + len - pr.nameStart), pr.nameHasSpace);
}

inline bool HttpParser::Impl::isPlainName(const char* at, std::size_t len) const noexcept {
  // The usual name piece: 1 to 16 bytes that end at a colon, all of it
  // within the bytes handed to llhttp with 16 bytes to read (a name is
  // followed by its value's line at least). llhttp ends a name's last piece
  // at its colon, so this is a whole name.
  if (len - 1 >= 16 || execEnd - at < 17 || at[len] != ':') return false;
    // llhttp as built here (without LLHTTP_STRICT_MODE) takes a space as a
    // token character anywhere in a name but its first byte; it refuses every
    // other byte outside tchar, and accepts an empty name. Both are refused
    // once the name is complete, where llhttp would have refused a bad byte.
#ifdef __SSE2__
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
  const auto spaces =
      static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(' '))));
  return (spaces & ((1u << len) - 1)) == 0;
#else
  return !anySpace(at, len);
#endif
}

inline void HttpParser::Impl::noteField(const char* name, std::size_t size) noexcept {
  // What onHeadersComplete needs to know, noted now so that it need not
  // look through the fields again.
  Progress& pr = progress;
  if (size == 4) {
    if (isWord4(name, "host")) ++pr.hosts;
  } else if (size == 6 && pr.expectField == 0) {
    if (isWord4(name, "expe") && isWord2(name + 4, "ct")) pr.expectField = fields().size() + 1;
  }
}

int HttpParser::Impl::completeName(const char* name, std::size_t size, bool space) noexcept {
  Progress& pr = progress;
  if (size == 0 || space) return reject(400, "invalid header name");
  pr.lastEnd = name + size;
  pr.valuePending = true;
  // Header fields are counted by the list, trailer fields after them.
  if (fields().size() >= limits.maxHeaderCount) return reject(431, "too many header fields");
  noteField(name, size);
  try {
    fields().emplace_back(std::string_view(name, size), std::string_view(name + size, 0));
  } catch (...) {
    return reject(500, "out of memory");
  }
  measureRoom();
  return 0;
}

int HttpParser::Impl::onTrailerName(const char* at, std::size_t len, bool ends) noexcept {
  // Trailer fields are dropped (RFC 9110 forbids merging them into the
  // header section unless each is known to allow it), only checked.
  ChunkedBody& body = chunkedBody;
  body.trailerBytes += len;
  if (body.trailerBytes > limits.maxHeaderBytes) return reject(431, "trailer section too large");
  if (len != 0 && std::memchr(at, ' ', len) != nullptr) return reject(400, "invalid header name");
  body.trailerNameBytes += len;
  if (!ends) return 0;
  if (std::exchange(body.trailerNameBytes, 0) == 0) return reject(400, "invalid header name");
  if (fields().size() + ++body.trailerCount > limits.maxHeaderCount) {
    return reject(431, "too many header fields");
  }
  return 0;
}

int HttpParser::Impl::onHeaderValue(llhttp_t* p, const char* at, std::size_t len) noexcept {
  Impl& self = of(p);
  Progress& pr = self.progress;
  // The usual case: a value's first piece after ": ", which llhttp (having
  // skipped whitespace before the value) starts with another byte.
  if (pr.valuePending && len != 0 && at - pr.lastEnd == 2 && at[-1] == ' ') [[likely]] {
    pr.valuePending = false;
    pr.lastEnd = at + len;
    // llhttp skips whitespace before a value, not after it.
    const char* end = at + len;
    while (isOws(end[-1])) --end;
    self.fields().back().second = {at, std::size_t(end - at)};
    return 0;
  }
  return self.onValuePiece(at, len);
}

int HttpParser::Impl::onValuePiece(const char* at, std::size_t len) noexcept {
  Progress& pr = progress;
  if (phase == Phase::kBody) {
    chunkedBody.trailerBytes += len;
    if (chunkedBody.trailerBytes > limits.maxHeaderBytes) {
      return reject(431, "trailer section too large");
    }
    return 0;
  }
  // llhttp reports an empty value as an empty piece after its line break.
  auto& out = fields();
  if (len == 0 || out.empty()) return 0;
  std::string_view& value = out.back().second;
  const char* start = at;
  if (pr.valuePending) {
    // After the name: ':' and optional whitespace, no line break.
    if (!isLineEnd(pr.lastEnd, at, 0)) return reject(400, "obsolete line folding or a bare CR");
    pr.valuePending = false;
  } else if (at != pr.lastEnd) {
    return reject(400, "obsolete line folding or a bare CR");  // a continuation line
  } else {
    start = value.data();
  }
  pr.lastEnd = at + len;
  // The view ends at the last byte that is not whitespace so far (a value's
  // first piece starts with one).
  const char* end = at + len;
  while (end != at && isOws(end[-1])) --end;
  if (end != at) value = {start, std::size_t(end - start)};
  return 0;
}

int HttpParser::Impl::checkTransferEncoding() noexcept {
  if (parser.http_minor == 0) {
    // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    return reject(400, "Transfer-Encoding in an HTTP/1.0 request");
  }
  // llhttp only insists that chunked come last; "gzip, chunked" would hand the
  // application a body still gzip-coded.
  int chunked = 0;
  for (const auto& [name, value] : fields()) {
    if (!equalsIgnoreCase(name, "transfer-encoding")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const auto coding = trimOws(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (coding.empty()) continue;
      if (!equalsIgnoreCase(coding, "chunked")) return reject(501, "unsupported transfer coding");
      ++chunked;
    }
  }
  if (chunked != 1) return reject(400, "invalid Transfer-Encoding");
  return 0;
}

int HttpParser::Impl::onHeadersComplete(llhttp_t* p) noexcept {
  Impl& self = of(p);
  Progress& pr = self.progress;
  if (p->http_major != 1 || p->http_minor > 1) {
    return self.reject(505, "unsupported HTTP version");
  }
  if (p->method == HTTP_CONNECT) return self.reject(501, "CONNECT is not supported");

  if (pr.hosts > 1) return self.reject(400, "more than one Host header");
  if (pr.hosts == 0 && p->http_minor == 1) return self.reject(400, "missing Host header");

  if ((p->flags & F_TRANSFER_ENCODING) != 0 && self.checkTransferEncoding() != 0) return -1;
  const bool chunked = (p->flags & F_CHUNKED) != 0;
  const bool hasLength = !chunked && (p->flags & F_CONTENT_LENGTH) != 0;
  if (hasLength && p->content_length > self.limits.maxBodyBytes) {
    return self.reject(413, "request body too large");
  }

  RequestView& request = self.request;
  request.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  request.versionMajor = p->http_major;
  request.versionMinor = p->http_minor;
  const bool bodyFollows = chunked || (hasLength && p->content_length > 0);
  pr.expectContinue = bodyFollows && p->http_minor == 1 && pr.expectField != 0 &&
                      equalsIgnoreCase(self.fields()[pr.expectField - 1].second, "100-continue");
  if (hasLength) {
    // A client's Content-Length is a claim, not bytes: reserve only a little
    // up front so that idle connections cannot pin maxBodyBytes each.
    constexpr std::uint64_t kMaxReserve = 64 * 1024;
    try {
      request.body.reserve(static_cast<std::size_t>(std::min(p->content_length, kMaxReserve)));
    } catch (...) {
      return self.reject(500, "out of memory");
    }
  }

  if (chunked) self.chunkedBody = {};
  self.phase = Phase::kBody;
  pr.valuePending = false;  // trailer values are not the last field's
  pr.slowNames = true;
  // Without a body the message completes at once, in this same execute.
  if (!bodyFollows) return 0;
  self.pause = Pause::kHeadersComplete;
  return HPE_PAUSED;
}

int HttpParser::Impl::onBody(llhttp_t* p, const char* at, std::size_t len) noexcept {
  Impl& self = of(p);
  std::string& body = self.request.body;
  if (len > self.limits.maxBodyBytes - body.size()) {
    return self.reject(413, "request body too large");
  }
  try {
    body.append(at, len);
  } catch (...) {
    return self.reject(500, "out of memory");
  }
  return 0;
}

int HttpParser::Impl::onChunkHeader(llhttp_t* p) noexcept {
  // Refuse an oversized chunk before any of its data arrives.
  Impl& self = of(p);
  if (p->content_length > self.limits.maxBodyBytes - self.request.body.size()) {
    return self.reject(413, "request body too large");
  }
  return 0;
}

int HttpParser::Impl::onChunkExtension(llhttp_t* p, const char*, std::size_t len) noexcept {
  // Extensions are discarded, but unbounded ones would be free bandwidth.
  Impl& self = of(p);
  self.chunkedBody.extensionBytes += len;
  if (self.chunkedBody.extensionBytes > self.limits.maxHeaderBytes) {
    return self.reject(413, "chunk extensions too large");
  }
  return 0;
}

int HttpParser::Impl::onChunkComplete(llhttp_t* p) noexcept {
  of(p).pause = Pause::kChunkComplete;
  return HPE_PAUSED;
}

int HttpParser::Impl::onMessageComplete(llhttp_t* p) noexcept {
  Impl& self = of(p);
  // Read before llhttp clears its flags after this callback.
  self.request.keepAlive = llhttp_should_keep_alive(p) != 0;
  self.request.upgrade = p->upgrade != 0;
  self.closed = !self.request.keepAlive;
  self.phase = Phase::kComplete;
  if (self.request.upgrade) return 0;  // llhttp itself stops with HPE_PAUSED_UPGRADE
  self.pause = Pause::kMessageComplete;
  return HPE_PAUSED;
}

HttpParser::HttpParser(const HttpLimits& limits) : impl_(std::make_unique<Impl>(limits)) {}

HttpParser::~HttpParser() = default;

HttpParser::Step HttpParser::feed(std::string_view data) noexcept {
  try {
    return impl_->feed(data);
  } catch (...) {
    return impl_->fail(500, "out of memory", 0);
  }
}

RequestView& HttpParser::request() noexcept {
  return impl_->request;
}

ParsedRequest HttpParser::takeRequest() {
  if (impl_->phase != Impl::Phase::kComplete) return {};
  struct Next {
    Impl& impl;
    ~Next() { impl.startNext(); }
  } next{*impl_};
  const RequestView& r = impl_->request;
  ParsedRequest out;
  out.method = r.method;
  out.target = r.target;
  out.versionMajor = r.versionMajor;
  out.versionMinor = r.versionMinor;
  for (const auto& [name, value] : r.headers)
    out.headers.add(std::string(name), std::string(value));
  out.body = r.body;
  out.keepAlive = r.keepAlive;
  out.upgrade = r.upgrade;
  return out;
}

bool HttpParser::inHeaders() const noexcept {
  return impl_->phase == Impl::Phase::kHeaders;
}

bool HttpParser::idle() const noexcept {
  return impl_->phase == Impl::Phase::kIdle || impl_->phase == Impl::Phase::kComplete;
}

int HttpParser::errorStatus() const noexcept {
  return impl_->errorStatus;
}

std::string_view HttpParser::errorReason() const noexcept {
  return impl_->errorReason;
}

}  // namespace spry::detail
