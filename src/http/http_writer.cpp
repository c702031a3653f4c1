#include "http/http_writer.h"

#include <charconv>
#include <cstdint>
#include <cstring>

#include "http/token.h"

namespace spry::detail {

namespace {

// A name outside the token grammar (empty, ':', spaces, CR/LF/NUL) or a value
// with CR, LF or NUL could split the response or inject fields.
// True when some byte of `w` is zero (exact as a yes/no answer).
constexpr bool hasZeroByte(std::uint64_t w) noexcept {
  return ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL) != 0;
}

bool isSafeField(std::string_view name, std::string_view value) noexcept {
  if (!isToken(name)) return false;
  // Eight bytes at a time: a word with no byte below 0x0e holds no CR, LF
  // or NUL (the usual case); otherwise its bytes are looked at one by one.
  auto bad = [](char c) noexcept { return c == '\r' || c == '\n' || c == '\0'; };
  const char* p = value.data();
  std::size_t n = value.size();
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    const bool low = ((w - 0x0e0e0e0e0e0e0e0eULL) & ~w & 0x8080808080808080ULL) != 0;
    if (low && (hasZeroByte(w) || hasZeroByte(w ^ 0x0d0d0d0d0d0d0d0dULL) ||
                hasZeroByte(w ^ 0x0a0a0a0a0a0a0a0aULL))) {
      return false;
    }
  }
  for (; n > 0; --n, ++p) {
    if (bad(*p)) return false;
  }
  return true;
}

bool isReserved(std::string_view name, std::span<const std::string_view> reserved) noexcept {
  for (std::string_view r : reserved) {
    if (equalsIgnoreCase(name, r)) return true;
  }
  return false;
}

// Writes into room reserved beforehand (writeHead sizes it).
struct Cursor {
  char* p;
  void put(std::string_view s) noexcept {
    if (s.empty()) return;  // data() may be null
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void number(std::uint64_t n) noexcept { p = std::to_chars(p, p + 20, n).ptr; }
  void field(std::string_view name, std::string_view value) noexcept {
    put(name);
    put(": ");
    put(value);
    put("\r\n");
  }
};

void twoDigits(char* p, int v) noexcept {
  p[0] = char('0' + v / 10);
  p[1] = char('0' + v % 10);
}

}  // namespace

std::string_view reasonPhrase(int status) noexcept {
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

std::string_view DateCache::now() {
  return at(std::time(nullptr));
}

std::string_view DateCache::at(std::time_t t) {
  if (t == cached_) return {value_, size_};
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
    return {value_, size_};
  }
  // Fixed English names: strftime's %a/%b would follow the process locale.
  static constexpr char kDays[] = "SunMonTueWedThuFriSat";
  static constexpr char kMonths[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  char* p = value_;
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
  size_ = 29;
  cached_ = t;
  return {value_, size_};
}

void writeHead(std::string& out, int status, const Headers& headers, BodyFraming framing,
               std::uint64_t bodySize, bool keepAlive, bool http10, std::string_view date) {
  writeHead(out, status, {}, {}, headers, framing, bodySize, keepAlive, http10, date);
}

void writeHead(std::string& out, int status, std::span<const FieldView> own,
               std::span<const std::string_view> reserved, const Headers& headers,
               BodyFraming framing, std::uint64_t bodySize, bool keepAlive, bool http10,
               std::string_view date) {
  // 1xx, 204 and 304 never carry a body, so a framing header would lie.
  const bool bodyless = (status >= 100 && status < 200) || status == 204 || status == 304;
  // Connection management belongs to the final response; on a 101 the user's
  // "Connection: Upgrade" must survive.
  const bool interim = status >= 100 && status < 200;
  std::string_view connection;
  if (!interim) {
    if (!keepAlive) {
      connection = "close";
    } else if (http10) {
      connection = "keep-alive";
    }
  }

  // The head is written through a cursor into room sized for every field,
  // the status line and the framing fields (one allocation at most, no
  // per-append checks), then trimmed to what was written.
  std::size_t room = 96 + reasonPhrase(status).size() + date.size() + connection.size();
  for (const FieldView& f : own) room += f.name.size() + f.value.size() + 4;
  for (const auto& [name, value] : headers) room += name.size() + value.size() + 4;
  const std::size_t start = out.size();
  out.resize(start + room);
  Cursor c{out.data() + start};

  c.put("HTTP/1.1 ");
  c.number(static_cast<std::uint64_t>(status < 0 ? 0 : status));
  c.put(" ");
  c.put(reasonPhrase(status));
  c.put("\r\n");

  for (const FieldView& f : own) {
    if (isSafeField(f.name, f.value)) c.field(f.name, f.value);
  }
  for (const auto& [name, value] : headers) {
    if (!isSafeField(name, value)) continue;
    if (isReserved(name, reserved)) continue;
    if (equalsIgnoreCase(name, "content-length") || equalsIgnoreCase(name, "transfer-encoding")) {
      continue;
    }
    if (!date.empty() && equalsIgnoreCase(name, "date")) continue;
    if (!connection.empty() && equalsIgnoreCase(name, "connection")) continue;
    c.field(name, value);
  }

  if (!date.empty()) c.field("Date", date);
  if (!bodyless) {
    if (framing == BodyFraming::kContentLength) {
      c.put("Content-Length: ");
      c.number(bodySize);
      c.put("\r\n");
    } else if (framing == BodyFraming::kChunked) {
      c.field("Transfer-Encoding", "chunked");
    }
  }
  if (!connection.empty()) c.field("Connection", connection);
  c.put("\r\n");
  out.resize(static_cast<std::size_t>(c.p - out.data()));
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
