#include "http/http_parser.h"

#include <llhttp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "http/token.h"

namespace spry::detail {

namespace {}  // namespace

struct HttpParser::Impl {
  struct Span {
    std::size_t off = 0;
    std::size_t len = 0;
  };
  struct FieldSpan {
    Span name;
    Span value;
  };
  enum class Phase { kIdle, kHeaders, kBody, kComplete, kFailed };
  // Why a callback paused llhttp; each pause hands control back to feed().
  enum class Pause { kNone, kHeadersComplete, kChunkComplete, kMessageComplete };
  // After llhttp rejects a method it does not know, the rest of the request
  // line is checked here to tell an unknown method (501) from garbage (400).
  enum class Probe { kOff, kMethod, kTargetStart, kTarget, kVersion, kCr, kLf };

  explicit Impl(const HttpLimits& l) noexcept : limits(l) {
    llhttp_init(&parser, HTTP_REQUEST, &settings());
    parser.data = this;
  }

  Step feed(std::string_view data);
  Step finishFeed(Step step, const char* end) noexcept;
  void startNext() noexcept;
  void own(std::size_t length);
  Step fail(int status, const char* reason, std::size_t consumed) noexcept;
  Step probeRequestLine(std::string_view data, std::size_t from) noexcept;
  int reject(int status, const char* reason) noexcept;
  int statusFor(llhttp_errno_t err) const noexcept;
  void rememberTail(const char* at, std::size_t len) noexcept;
  std::size_t offsetOf(const char* at) const noexcept { return std::size_t(at - base); }
  std::string_view viewOf(Span span) const noexcept { return {base + span.off, span.len}; }
  std::string_view fieldValue(std::string_view name) const noexcept;
  // True when bytes [from, to) are an optional ':' (after a name), optional
  // whitespace, then `breaks` line breaks (CRLF or LF), and nothing else.
  bool isLineEnd(std::size_t from, std::size_t to, int breaks) const noexcept {
    std::size_t i = from;
    if (i < to && base[i] == ':') ++i;
    while (i < to && isOws(base[i])) ++i;
    for (int b = 0; b < breaks; ++b) {
      if (i < to && base[i] == '\r') ++i;
      if (i >= to || base[i] != '\n') return false;
      ++i;
    }
    return i == to;
  }
  bool headEndIsClean() const noexcept;

  int onMessageBegin();
  int onUrl(std::string_view s);
  int onVersionComplete();
  int onHeaderField(std::string_view s);
  int onHeaderFieldComplete();
  int onHeaderValue(std::string_view s);
  int onHeadersComplete();
  int onBody(std::string_view s);
  int onChunkHeader();
  int onChunkExtension(std::string_view s);
  int onChunkComplete();
  int onMessageComplete();
  int checkTransferEncoding() noexcept;

  // llhttp is C: an exception must never unwind through it, so every
  // callback goes through one of these two barriers.
  template <int (Impl::*Fn)()>
  static int barrier(llhttp_t* p) noexcept {
    auto* self = static_cast<Impl*>(p->data);
    try {
      return (self->*Fn)();
    } catch (...) {
      return self->reject(500, "out of memory");
    }
  }
  template <int (Impl::*Fn)(std::string_view)>
  static int barrier(llhttp_t* p, const char* at, std::size_t len) noexcept {
    auto* self = static_cast<Impl*>(p->data);
    try {
      return (self->*Fn)(std::string_view(at, len));
    } catch (...) {
      return self->reject(500, "out of memory");
    }
  }

  static const llhttp_settings_t& settings() noexcept {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t t;
      llhttp_settings_init(&t);
      t.on_message_begin = &barrier<&Impl::onMessageBegin>;
      t.on_url = &barrier<&Impl::onUrl>;
      t.on_version_complete = &barrier<&Impl::onVersionComplete>;
      t.on_header_field = &barrier<&Impl::onHeaderField>;
      t.on_header_field_complete = &barrier<&Impl::onHeaderFieldComplete>;
      t.on_header_value = &barrier<&Impl::onHeaderValue>;
      t.on_headers_complete = &barrier<&Impl::onHeadersComplete>;
      t.on_body = &barrier<&Impl::onBody>;
      t.on_chunk_header = &barrier<&Impl::onChunkHeader>;
      t.on_chunk_extension_name = &barrier<&Impl::onChunkExtension>;
      t.on_chunk_extension_value = &barrier<&Impl::onChunkExtension>;
      t.on_chunk_complete = &barrier<&Impl::onChunkComplete>;
      t.on_message_complete = &barrier<&Impl::onMessageComplete>;
      return t;
    }();
    return s;
  }

  HttpLimits limits;
  llhttp_t parser{};
  Phase phase = Phase::kIdle;
  Pause pause = Pause::kNone;
  RequestView request;
  // Where the offsets below count from: the first byte fed for this request
  // (borrowed: in the caller's data, during one feed), or the parser's copy
  // of the head (owned: once the head or its body outlives a feed).
  const char* base = nullptr;
  bool owned = false;
  std::string headCopy;
  Span target;
  bool inTarget = false;
  std::vector<FieldSpan> fields;
  FieldSpan current;
  bool inName = false;
  bool inValue = false;
  std::size_t lastEnd = 0;  // end of the target, or of the last field's name or value
  std::size_t headEnd = 0;  // once the head is complete
  std::size_t trailerNameBytes = 0;
  // Bytes fed while the head was incomplete, blank lines before it included,
  // so that neither a slow head nor endless CRLFs escape maxHeaderBytes.
  std::size_t headerBytes = 0;
  std::size_t trailerBytes = 0;
  std::size_t extensionBytes = 0;
  std::size_t fieldCount = 0;
  bool expectContinue = false;
  bool afterLf = false;
  // A request without keep-alive ends the connection's HTTP: RFC 9112 9.6 says
  // not to process what follows, whichever way llhttp was compiled.
  bool closed = false;
  Probe probe = Probe::kOff;
  std::size_t versionIndex = 0;
  // The last two bytes llhttp consumed, possibly from an earlier feed.
  char tail[2] = {0, 0};
  int errorStatus = 0;
  const char* errorReason = "";
};

void HttpParser::Impl::startNext() noexcept {
  request.method = {};
  request.target = {};
  request.versionMajor = request.versionMinor = 1;
  HeaderAccess::fields(request.headers).clear();
  request.body.clear();
  request.keepAlive = true;
  request.upgrade = false;
  base = nullptr;
  owned = false;
  // A head that came in pieces may have been large: do not keep its room.
  if (headCopy.capacity() > 4096) {
    std::string().swap(headCopy);
  } else {
    headCopy.clear();
  }
  target = {};
  inTarget = false;
  fields.clear();
  current = {};
  inName = inValue = false;
  lastEnd = headEnd = trailerNameBytes = 0;
  headerBytes = trailerBytes = extensionBytes = fieldCount = 0;
  expectContinue = false;
  afterLf = false;
  tail[0] = tail[1] = 0;
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

bool HttpParser::Impl::headEndIsClean() const noexcept {
  // The blank line must follow the last field line at once (see
  // onHeaderField): anything else is a continuation line or a stray byte.
  if (fields.empty()) {
    // After the target: the version (llhttp checked it) and a line break.
    std::size_t i = lastEnd;
    while (i < headEnd && base[i] != '\n') ++i;
    return i < headEnd && isLineEnd(i + 1, headEnd, 1);
  }
  return (headEnd - lastEnd == 4 && std::memcmp(base + lastEnd, "\r\n\r\n", 4) == 0) ||
         isLineEnd(lastEnd, headEnd, 2);
}

std::string_view HttpParser::Impl::fieldValue(std::string_view name) const noexcept {
  for (const FieldSpan& f : fields) {
    if (equalsIgnoreCase(viewOf(f.name), name)) return trimOws(viewOf(f.value));
  }
  return {};
}

void HttpParser::Impl::own(std::size_t length) {
  // The views of a request in progress must outlive the caller's bytes:
  // its head so far is copied, once, and later head bytes are appended.
  if (owned) return;
  headCopy.assign(base, length);
  base = headCopy.data();
  owned = true;
}

void HttpParser::Impl::rememberTail(const char* at, std::size_t len) noexcept {
  if (len >= 2) {
    tail[0] = at[len - 2];
    tail[1] = at[len - 1];
  } else if (len == 1) {
    tail[0] = tail[1];
    tail[1] = at[0];
  }
}

HttpParser::Step HttpParser::Impl::feed(std::string_view data) {
  if (phase == Phase::kFailed) return {Status::kError, 0};
  if (phase == Phase::kComplete) startNext();
  if (closed) return {Status::kNeedMore, data.size()};
  // An empty view may have a null data(): llhttp would offset it (UB).
  if (data.empty()) return {Status::kNeedMore, 0};
  if (probe != Probe::kOff) return probeRequestLine(data, 0);

  std::size_t pos = 0;
  for (;;) {
    const bool inHead = phase == Phase::kIdle || phase == Phase::kHeaders;
    std::size_t len = data.size() - pos;
    if (inHead) {
      // Never hand llhttp more head bytes than the limit allows: it pauses at
      // the end of the head, so whatever it consumed here was all head.
      const std::size_t budget = limits.maxHeaderBytes - headerBytes;
      if (len > budget) {
        if (budget == 0) return fail(431, "request header section too large", pos);
        len = budget;
      }
    }
    const char* const fed = data.data() + pos;
    const char* at = fed;
    std::size_t copied = 0;  // size of the head copy before this step
    if (inHead) {
      if (owned) {
        // The rest of a head begun in an earlier feed is parsed from the
        // copy, so that each view stays one contiguous run of bytes.
        copied = headCopy.size();
        headCopy.append(at, len);
        base = headCopy.data();
        at = base + copied;
      } else if (phase == Phase::kIdle) {
        base = at;
      }
    }
    const llhttp_errno_t err = llhttp_execute(&parser, at, len);
    std::size_t used = len;
    if (err != HPE_OK) {
      const char* stop = llhttp_get_error_pos(&parser);
      used = (stop != nullptr && stop >= at && stop <= at + len) ? std::size_t(stop - at) : 0;
    }
    if (inHead) {
      headerBytes += used;
      if (owned) headCopy.resize(copied + used);
    }
    rememberTail(at, used);
    pos += used;

    switch (err) {
      case HPE_OK:
        if (pos < data.size()) continue;  // stopped by the head budget
        return finishFeed({Status::kNeedMore, pos}, data.data() + pos);
      case HPE_PAUSED: {
        llhttp_resume(&parser);
        switch (std::exchange(pause, Pause::kNone)) {
          case Pause::kHeadersComplete:
            headEnd = offsetOf(at + used);
            if (!headEndIsClean()) return fail(400, "obsolete line folding or a bare CR", pos);
            if (expectContinue)
              return finishFeed({Status::kExpectContinue, pos}, data.data() + pos);
            continue;
          case Pause::kChunkComplete:
            // llhttp 8 in loose mode skips any two bytes after chunk data;
            // accepting them would let a request smuggle bytes past a proxy.
            if (tail[0] != '\r' || tail[1] != '\n') {
              return fail(400, "chunk data not followed by CRLF", pos);
            }
            continue;
          case Pause::kMessageComplete:
            // Without a body, the head ended with the message, in this step.
            if (headEnd == 0) {
              headEnd = offsetOf(at + used);
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
        if (headEnd == 0) {
          headEnd = offsetOf(at + used);
          if (!headEndIsClean()) return fail(400, "obsolete line folding or a bare CR", pos);
        }
        return {Status::kRequestComplete, pos};
      default: {
        // llhttp stops at the first byte that fits no method it knows: a token
        // character, or a space after a token (the tail is cleared per request).
        if (err == HPE_INVALID_METHOD && used < len) {
          const auto c = static_cast<unsigned char>(fed[used]);
          if (isTchar(c) || (c == ' ' && isTchar(static_cast<unsigned char>(tail[1])))) {
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
    own(phase == Phase::kBody ? headEnd : std::size_t(end - base));
  } catch (...) {
    return fail(500, "out of memory", step.consumed);
  }
  return step;
}

HttpParser::Step HttpParser::Impl::probeRequestLine(std::string_view data,
                                                    std::size_t from) noexcept {
  static constexpr std::string_view kVersionShape = "HTTP/#.#";
  for (std::size_t i = from; i < data.size(); ++i) {
    if (++headerBytes > limits.maxHeaderBytes) return fail(400, "Invalid method encountered", i);
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

int HttpParser::Impl::onMessageBegin() {
  phase = Phase::kHeaders;
  return 0;
}

int HttpParser::Impl::onUrl(std::string_view s) {
  // Pieces of one view are contiguous (see feed), so a view runs from its
  // first piece to the end of its last.
  const std::size_t off = offsetOf(s.data());
  if (!inTarget) {
    target.off = off;
    inTarget = true;
  }
  const std::size_t end = off + s.size();
  if (end - target.off > limits.maxUrlBytes) return reject(414, "request target too long");
  target.len = end - target.off;
  lastEnd = end;
  return 0;
}

int HttpParser::Impl::onVersionComplete() {
  // llhttp also accepts HTTP/0.9 and HTTP/2.0 request lines.
  if (parser.http_major != 1 || parser.http_minor > 1) {
    return reject(505, "unsupported HTTP version");
  }
  return 0;
}

int HttpParser::Impl::onHeaderField(std::string_view s) {
  if (phase == Phase::kBody) {
    // Trailer fields are dropped (RFC 9110 forbids merging them into the
    // header section unless each is known to allow it), only checked.
    trailerBytes += s.size();
    if (trailerBytes > limits.maxHeaderBytes) return reject(431, "trailer section too large");
    if (!s.empty() && std::memchr(s.data(), ' ', s.size()) != nullptr) {
      return reject(400, "invalid header name");
    }
    trailerNameBytes += s.size();
    return 0;
  }
  const std::size_t off = offsetOf(s.data());
  if (!inName) {
    // llhttp (even in strict mode) joins obs-fold continuation lines; RFC
    // 9112 lets a server reject them, which rules out a proxy reading them
    // differently. A field line starts right after the line before it, and
    // a value's pieces are contiguous: the bytes between the views tell,
    // and they are few (llhttp itself refuses control bytes elsewhere).
    // The first line after the request line cannot start with a space.
    if (!fields.empty() &&
        !(off - lastEnd == 2 && base[lastEnd] == '\r' && base[lastEnd + 1] == '\n') &&
        !isLineEnd(lastEnd, off, 1)) {
      return reject(400, "obsolete line folding or a bare CR");
    }
    current = {};
    current.name.off = off;
    inName = true;
  }
  current.name.len = off + s.size() - current.name.off;
  return 0;
}

int HttpParser::Impl::onHeaderFieldComplete() {
  // llhttp refuses every byte outside tchar in a name but a space, and
  // accepts an empty name and a space before the colon.
  if (phase == Phase::kBody) {
    if (std::exchange(trailerNameBytes, 0) == 0) return reject(400, "invalid header name");
  } else {
    inName = false;
    inValue = false;
    const std::string_view name = viewOf(current.name);
    bool space = false;
    for (char c : name) space |= c == ' ';
    if (name.empty() || space) return reject(400, "invalid header name");
    lastEnd = current.name.off + current.name.len;
    fields.push_back(current);
  }
  if (++fieldCount > limits.maxHeaderCount) return reject(431, "too many header fields");
  return 0;
}

int HttpParser::Impl::onHeaderValue(std::string_view s) {
  if (phase == Phase::kBody) {
    trailerBytes += s.size();
    if (trailerBytes > limits.maxHeaderBytes) return reject(431, "trailer section too large");
    return 0;
  }
  // llhttp reports an empty value as an empty piece after its line break.
  if (s.empty() || fields.empty()) return 0;
  Span& value = fields.back().value;
  const std::size_t off = offsetOf(s.data());
  if (!inValue) {
    // After the name: ':' and optional whitespace, no line break.
    if (!(off - lastEnd == 2 && base[lastEnd + 1] == ' ') && !isLineEnd(lastEnd, off, 0)) {
      return reject(400, "obsolete line folding or a bare CR");
    }
    value.off = off;
    inValue = true;
  } else if (off != lastEnd) {
    return reject(400, "obsolete line folding or a bare CR");  // a continuation line
  }
  lastEnd = off + s.size();
  value.len = lastEnd - value.off;
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
  for (const FieldSpan& f : fields) {
    if (!equalsIgnoreCase(viewOf(f.name), "transfer-encoding")) continue;
    std::string_view rest = viewOf(f.value);
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

int HttpParser::Impl::onHeadersComplete() {
  if (parser.http_major != 1 || parser.http_minor > 1) {
    return reject(505, "unsupported HTTP version");
  }
  if (parser.method == HTTP_CONNECT) return reject(501, "CONNECT is not supported");

  std::size_t hosts = 0;
  for (const FieldSpan& f : fields) {
    if (equalsIgnoreCase(viewOf(f.name), "host")) ++hosts;
  }
  if (hosts > 1) return reject(400, "more than one Host header");
  if (hosts == 0 && parser.http_minor == 1) return reject(400, "missing Host header");

  if ((parser.flags & F_TRANSFER_ENCODING) != 0 && checkTransferEncoding() != 0) return -1;
  const bool chunked = (parser.flags & F_CHUNKED) != 0;
  const bool hasLength = !chunked && (parser.flags & F_CONTENT_LENGTH) != 0;
  if (hasLength && parser.content_length > limits.maxBodyBytes) {
    return reject(413, "request body too large");
  }

  request.method = llhttp_method_name(static_cast<llhttp_method_t>(parser.method));
  request.versionMajor = parser.http_major;
  request.versionMinor = parser.http_minor;
  const bool bodyFollows = chunked || (hasLength && parser.content_length > 0);
  expectContinue = bodyFollows && parser.http_minor == 1 &&
                   equalsIgnoreCase(fieldValue("expect"), "100-continue");
  if (hasLength) {
    // A client's Content-Length is a claim, not bytes: reserve only a little
    // up front so that idle connections cannot pin maxBodyBytes each.
    constexpr std::uint64_t kMaxReserve = 64 * 1024;
    request.body.reserve(static_cast<std::size_t>(std::min(parser.content_length, kMaxReserve)));
  }

  phase = Phase::kBody;
  // Without a body the message completes at once, in this same execute.
  if (!bodyFollows) return 0;
  pause = Pause::kHeadersComplete;
  return HPE_PAUSED;
}

int HttpParser::Impl::onBody(std::string_view s) {
  if (s.size() > limits.maxBodyBytes - request.body.size()) {
    return reject(413, "request body too large");
  }
  request.body.append(s);
  return 0;
}

int HttpParser::Impl::onChunkHeader() {
  // Refuse an oversized chunk before any of its data arrives.
  if (parser.content_length > limits.maxBodyBytes - request.body.size()) {
    return reject(413, "request body too large");
  }
  return 0;
}

int HttpParser::Impl::onChunkExtension(std::string_view s) {
  // Extensions are discarded, but unbounded ones would be free bandwidth.
  extensionBytes += s.size();
  if (extensionBytes > limits.maxHeaderBytes) return reject(413, "chunk extensions too large");
  return 0;
}

int HttpParser::Impl::onChunkComplete() {
  pause = Pause::kChunkComplete;
  return HPE_PAUSED;
}

int HttpParser::Impl::onMessageComplete() {
  // Read before llhttp clears its flags after this callback.
  request.keepAlive = llhttp_should_keep_alive(&parser) != 0;
  request.upgrade = parser.upgrade != 0;
  request.target = viewOf(target);
  auto& out = HeaderAccess::fields(request.headers);
  out.clear();
  out.reserve(fields.size());
  for (const FieldSpan& f : fields) {
    // llhttp skips whitespace before a value, not after it.
    std::string_view value = viewOf(f.value);
    while (!value.empty() && isOws(value.back())) value.remove_suffix(1);
    out.emplace_back(viewOf(f.name), value);
  }
  closed = !request.keepAlive;
  phase = Phase::kComplete;
  if (request.upgrade) return 0;  // llhttp itself stops with HPE_PAUSED_UPGRADE
  pause = Pause::kMessageComplete;
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
