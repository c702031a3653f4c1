#include "http/http_writer.h"

#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>

#include "http/token.h"

namespace spry::detail {

namespace {

constexpr std::string_view reasonOf(int status) noexcept {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 102:
      return "Processing";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 207:
      return "Multi-Status";
    case 208:
      return "Already Reported";
    case 226:
      return "IM Used";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 305:
      return "Use Proxy";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 418:
      return "I'm a teapot";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Content";
    case 423:
      return "Locked";
    case 424:
      return "Failed Dependency";
    case 425:
      return "Too Early";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 451:
      return "Unavailable For Legal Reasons";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 506:
      return "Variant Also Negotiates";
    case 507:
      return "Insufficient Storage";
    case 508:
      return "Loop Detected";
    case 510:
      return "Not Extended";
    case 511:
      return "Network Authentication Required";
    default:
      return "Unknown";
  }
}

// "HTTP/1.1 <code> <reason>\r\n" of every registered code, built at compile
// time: a status line is one table look-up and one 48-byte copy.
constexpr int kFirstCode = 100;
constexpr int kCodes = 500;
constexpr std::size_t kLineCopy = 48;  // >= the longest line (46)
constexpr std::size_t statusLineSize(int status) {
  return 15 + reasonOf(status).size();
}
constexpr std::size_t statusTextSize() {
  std::size_t n = kLineCopy;  // padding: the last line is copied 48 bytes too
  for (int s = kFirstCode; s < kFirstCode + kCodes; ++s) {
    if (reasonOf(s) == "Unknown") continue;
    // A line longer than the copy would not build (a throw is no constant).
    if (statusLineSize(s) > kLineCopy) throw "a status line longer than kLineCopy";
    n += statusLineSize(s);
  }
  return n;
}

struct StatusLines {
  char text[statusTextSize()] = {};
  std::uint32_t line[kCodes] = {};  // offset << 8 | size; 0 for an unregistered code
};

constexpr StatusLines kStatusLines = [] {
  StatusLines t;
  std::size_t at = 0;
  for (int s = kFirstCode; s < kFirstCode + kCodes; ++s) {
    const std::string_view reason = reasonOf(s);
    if (reason == "Unknown") continue;
    const std::size_t size = statusLineSize(s);
    char* p = t.text + at;
    for (char c : std::string_view("HTTP/1.1 ")) *p++ = c;
    *p++ = char('0' + s / 100);
    *p++ = char('0' + s / 10 % 10);
    *p++ = char('0' + s % 10);
    *p++ = ' ';
    for (char c : reason) *p++ = c;
    *p++ = '\r';
    *p++ = '\n';
    t.line[s - kFirstCode] = static_cast<std::uint32_t>(at << 8 | size);
    at += size;
  }
  return t;
}();

bool isReserved(std::string_view name, std::span<const std::string_view> reserved) noexcept {
  for (std::string_view r : reserved) {
    if (equalsIgnoreCase(name, r)) return true;
  }
  return false;
}

// "00" to "99".
constexpr auto kDigitPairsTable = [] {
  std::array<char, 200> t{};
  for (int i = 0; i < 100; ++i) {
    t[2 * i] = char('0' + i / 10);
    t[2 * i + 1] = char('0' + i % 10);
  }
  return t;
}();
constexpr const char* kDigitPairs = kDigitPairsTable.data();

// Writes into room reserved beforehand (the callers size it).
struct Cursor {
  char* p;
  // Exact: for bytes the writer knows nothing about.
  void put(std::string_view s) noexcept {
    const std::size_t n = s.size();
    if (n >= 8 && n <= 16) {
      // Most names and values: two overlapping word copies beat a call.
      std::uint64_t a, b;
      std::memcpy(&a, s.data(), 8);
      std::memcpy(&b, s.data() + n - 8, 8);
      std::memcpy(p, &a, 8);
      std::memcpy(p + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
      std::uint32_t a, b;
      std::memcpy(&a, s.data(), 4);
      std::memcpy(&b, s.data() + n - 4, 4);
      std::memcpy(p, &a, 4);
      std::memcpy(p + n - 4, &b, 4);
    } else if (n != 0) {  // data() may be null when empty
      std::memcpy(p, s.data(), n);
    }
    p += n;
  }
  // Bytes that may be read in 16-byte pieces (a Headers line): up to 15
  // bytes past the end are read and written.
  void pieces(std::string_view s) noexcept {
    const std::size_t n = s.size();
    if (n > 128) {
      std::memcpy(p, s.data(), n);
    } else {
      for (std::size_t i = 0; i < n; i += 16) std::memcpy(p + i, s.data() + i, 16);
    }
    p += n;
  }
  // Bytes readable 48 from their start, and at most 48 of them: one copy of
  // a constant size, a few stores.
  void block48(const char* s, std::size_t n) noexcept {
    std::memcpy(p, s, 48);
    p += n;
  }
  // A literal: its size is a constant, so the copy is a few stores.
  template <std::size_t N>
  void lit(const char (&s)[N]) noexcept {
    std::memcpy(p, s, N - 1);
    p += N - 1;
  }
  void number(std::uint64_t n) noexcept {
    if (n < 10) {
      *p++ = char('0' + n);
    } else if (n < 100) {  // most bodies that are not large are short
      std::memcpy(p, kDigitPairs + 2 * n, 2);
      p += 2;
    } else {
      p = std::to_chars(p, p + 20, n).ptr;
    }
  }
  void field(std::string_view name, std::string_view value) noexcept {
    put(name);
    lit(": ");
    put(value);
    lit("\r\n");
  }
  void statusLine(int status) noexcept {
    const unsigned code = static_cast<unsigned>(status) - unsigned{kFirstCode};
    if (code < static_cast<unsigned>(kCodes)) {
      if (const std::uint32_t line = kStatusLines.line[code]; line != 0) {
        block48(kStatusLines.text + (line >> 8), line & 0xff);
        return;
      }
    }
    lit("HTTP/1.1 ");
    number(static_cast<std::uint64_t>(status < 0 ? 0 : status));
    lit(" ");
    put(reasonOf(status));
    lit("\r\n");
  }
};

void twoDigits(char* p, int v) noexcept {
  p[0] = char('0' + v / 10);
  p[1] = char('0' + v % 10);
}

std::string_view connectionValue(int status, bool keepAlive, bool http10) noexcept {
  if (keepAlive && !http10) return {};  // HTTP/1.1 keep-alive: the usual case
  // Connection management belongs to the final response; on a 101 the
  // user's "Connection: Upgrade" must survive.
  if (status >= 100 && status < 200) return {};
  return keepAlive ? "keep-alive" : "close";
}

// The user's fields, less those the writer drops.
[[gnu::noinline]] char* putCheckedFields(char* p, const Headers& headers,
                                         std::span<const std::string_view> reserved, bool ownDate,
                                         std::string_view connection) noexcept {
  Cursor c{p};
  for (std::size_t i = 0; i < headers.size(); ++i) {
    const auto [name, value] = headers.at(i);
    if (!isSafeField(name, value)) continue;
    if (isReserved(name, reserved)) continue;
    if (equalsIgnoreCase(name, "content-length") || equalsIgnoreCase(name, "transfer-encoding")) {
      continue;
    }
    if (ownDate && equalsIgnoreCase(name, "date")) continue;
    if (!connection.empty() && equalsIgnoreCase(name, "connection")) continue;
    c.pieces(HeaderLines::line(headers, i));
  }
  return c.p;
}

[[gnu::always_inline]] inline void putFields(Cursor& c, const Headers& headers,
                                             std::span<const std::string_view> reserved,
                                             bool ownDate, std::string_view connection) noexcept {
  if (headers.isPlain() && reserved.empty()) {
    // Checked as they were added (the usual case): one copy of every line.
    c.pieces(HeaderLines::all(headers));
  } else {
    c.p = putCheckedFields(c.p, headers, reserved, ownDate, connection);
  }
}

// Content-Length or Transfer-Encoding, Connection, the blank line.
[[gnu::always_inline]] inline void putTail(Cursor& c, BodyFraming framing, std::uint64_t bodySize,
                                           std::string_view connection) noexcept {
  if (framing == BodyFraming::kContentLength) {
    c.lit("Content-Length: ");
    c.number(bodySize);
    c.lit("\r\n");
  } else if (framing == BodyFraming::kChunked) {
    c.lit("Transfer-Encoding: chunked\r\n");
  }
  if (connection.empty()) {
    c.lit("\r\n");
  } else if (connection.size() == 5) {
    c.lit("Connection: close\r\n\r\n");
  } else {
    c.lit("Connection: keep-alive\r\n\r\n");
  }
}

// The most bytes writeHeadAt writes; its 16- and 48-byte pieces stay within.
std::size_t headRoom(std::span<const FieldView> own, const Headers& headers,
                     std::string_view date) noexcept {
  std::size_t room = kHeadRoom + HeaderLines::all(headers).size() + date.size();
  for (const FieldView& f : own) room += f.name.size() + f.value.size() + 4;
  return room;
}

char* writeHeadAt(char* out, int status, std::span<const FieldView> own,
                  std::span<const std::string_view> reserved, const Headers& headers,
                  BodyFraming framing, std::uint64_t bodySize, bool keepAlive, bool http10,
                  std::string_view date) noexcept {
  const std::string_view connection = connectionValue(status, keepAlive, http10);
  Cursor c{out};
  c.statusLine(status);
  for (const FieldView& f : own) c.field(f.name, f.value);  // the caller's own: checked by it
  putFields(c, headers, reserved, !date.empty(), connection);
  if (!date.empty()) {
    c.lit("Date: ");
    c.put(date);
    c.lit("\r\n");
  }
  // 1xx, 204 and 304 never carry a body, so a framing header would lie.
  const bool bodyless = (status >= 100 && status < 200) || status == 204 || status == 304;
  putTail(c, bodyless ? BodyFraming::kNone : framing, bodySize, connection);
  return c.p;
}

}  // namespace

std::string_view reasonPhrase(int status) noexcept {
  return reasonOf(status);
}

std::string_view DateCache::at(std::time_t t) {
  if (t == cached_) return {line_ + 6, size_};
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
    return {line_ + 6, size_};
  }
  // Fixed English names: strftime's %a/%b would follow the process locale.
  static constexpr char kDays[] = "SunMonTueWedThuFriSat";
  static constexpr char kMonths[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  char* p = line_ + 6;
  p[0] = kDays[tm.tm_wday * 3];
  p[1] = kDays[tm.tm_wday * 3 + 1];
  p[2] = kDays[tm.tm_wday * 3 + 2];
  p[3] = ',';
  p[4] = ' ';
  twoDigits(p + 5, tm.tm_mday);
  p[7] = ' ';
  p[8] = kMonths[tm.tm_mon * 3];
  p[9] = kMonths[tm.tm_mon * 3 + 1];
  p[10] = kMonths[tm.tm_mon * 3 + 2];
  p[11] = ' ';
  const int year = tm.tm_year + 1900;
  twoDigits(p + 12, year / 100);
  twoDigits(p + 14, year % 100);
  p[16] = ' ';
  twoDigits(p + 17, tm.tm_hour);
  p[19] = ':';
  twoDigits(p + 20, tm.tm_min);
  p[22] = ':';
  twoDigits(p + 23, tm.tm_sec);
  p[25] = ' ';
  p[26] = 'G';
  p[27] = 'M';
  p[28] = 'T';
  p[29] = '\r';
  p[30] = '\n';
  size_ = 29;
  lineSize_ = 29 + 8;
  cached_ = t;
  return {line_ + 6, size_};
}

void writeHead(std::string& out, int status, const Headers& headers, BodyFraming framing,
               std::uint64_t bodySize, bool keepAlive, bool http10, std::string_view date) {
  writeHead(out, status, {}, {}, headers, framing, bodySize, keepAlive, http10, date);
}

void writeHead(std::string& out, int status, std::span<const FieldView> own,
               std::span<const std::string_view> reserved, const Headers& headers,
               BodyFraming framing, std::uint64_t bodySize, bool keepAlive, bool http10,
               std::string_view date) {
  // Written through a cursor into room sized beforehand (one allocation at
  // most, no per-append checks), then trimmed to what was written.
  const std::size_t start = out.size();
  out.resize(start + headRoom(own, headers, date));
  char* end = writeHeadAt(out.data() + start, status, own, reserved, headers, framing, bodySize,
                          keepAlive, http10, date);
  out.resize(static_cast<std::size_t>(end - out.data()));
}

char* writeResponseHead(char* out, int status, std::string_view contentType, const Headers& headers,
                        BodyFraming framing, std::uint64_t bodySize, bool keepAlive, bool http10,
                        std::string_view dateLine) noexcept {
  const std::string_view connection = connectionValue(status, keepAlive, http10);
  Cursor c{out};
  c.statusLine(status);
  if (!contentType.empty()) c.block48(contentType.data(), contentType.size());
  putFields(c, headers, {}, !dateLine.empty(), connection);
  if (!dateLine.empty()) c.block48(dateLine.data(), dateLine.size());
  putTail(c, framing, bodySize, connection);
  return c.p;
}

void writeChunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  char buf[20];
  const auto r = std::to_chars(buf, buf + sizeof buf, data.size(), 16);
  out.append(buf, r.ptr);
  out.append("\r\n");
  out.append(data);
  out.append("\r\n");
}

void writeLastChunk(std::string& out) {
  out.append("0\r\n\r\n");
}

}  // namespace spry::detail
