#include "http/http_writer.h"

#include <charconv>
#include <cstdint>
#include <cstring>

#include "http/token.h"

namespace spry::detail {

namespace {

bool isReserved(std::string_view name, std::span<const std::string_view> reserved) noexcept {
  for (std::string_view r : reserved) {
    if (equalsIgnoreCase(name, r)) return true;
  }
  return false;
}

// Writes into room reserved beforehand (writeHead sizes it).
// "Sun, 06 Nov 1994 08:49:37 GMT": what DateCache makes for years 1000..9999.
constexpr std::size_t kDateSize = 29;

struct Cursor {
  char* p;
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
  // A literal: its size is a constant, so the copy is a few stores.
  template <std::size_t N>
  void lit(const char (&s)[N]) noexcept {
    std::memcpy(p, s, N - 1);
    p += N - 1;
  }
  void number(std::uint64_t n) noexcept { p = std::to_chars(p, p + 20, n).ptr; }
  void field(std::string_view name, std::string_view value) noexcept {
    put(name);
    lit(": ");
    put(value);
    lit("\r\n");
  }
};

// "HTTP/1.1 200 OK\r\n" for the statuses most responses have.
std::string_view commonStatusLine(int status) noexcept {
  switch (status) {
    case 200:
      return "HTTP/1.1 200 OK\r\n";
    case 204:
      return "HTTP/1.1 204 No Content\r\n";
    case 304:
      return "HTTP/1.1 304 Not Modified\r\n";
    case 404:
      return "HTTP/1.1 404 Not Found\r\n";
    default:
      return {};
  }
}

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

namespace {
std::string_view connectionValue(int status, bool keepAlive, bool http10) noexcept {
  // Connection management belongs to the final response; on a 101 the
  // user's "Connection: Upgrade" must survive.
  if (status >= 100 && status < 200) return {};
  if (!keepAlive) return "close";
  if (http10) return "keep-alive";
  return {};
}
}  // namespace

std::size_t headRoom(int status, std::span<const FieldView> own, const Headers& headers,
                     bool keepAlive, bool http10, std::string_view date) noexcept {
  std::size_t room = 96 + reasonPhrase(status).size() + date.size() +
                     connectionValue(status, keepAlive, http10).size();
  for (const FieldView& f : own) room += f.name.size() + f.value.size() + 4;
  for (const auto& [name, value] : headers) room += name.size() + value.size() + 4;
  return room;
}

char* writeHead(char* out, int status, std::span<const FieldView> own,
                std::span<const std::string_view> reserved, const Headers& headers,
                BodyFraming framing, std::uint64_t bodySize, bool keepAlive, bool http10,
                std::string_view date) noexcept {
  // 1xx, 204 and 304 never carry a body, so a framing header would lie.
  const bool bodyless = (status >= 100 && status < 200) || status == 204 || status == 304;
  const std::string_view connection = connectionValue(status, keepAlive, http10);
  Cursor c{out};

  if (std::string_view line = commonStatusLine(status); !line.empty()) {
    c.put(line);
  } else {
    c.lit("HTTP/1.1 ");
    c.number(static_cast<std::uint64_t>(status < 0 ? 0 : status));
    c.lit(" ");
    c.put(reasonPhrase(status));
    c.lit("\r\n");
  }

  for (const FieldView& f : own) c.field(f.name, f.value);  // the caller's own: checked by it
  if (headers.isPlain() && reserved.empty()) {
    // Checked as they were added (the usual case): nothing to drop.
    for (const auto& [name, value] : headers) c.field(name, value);
  } else {
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
  }

  if (!date.empty()) {
    c.lit("Date: ");
    if (date.size() == kDateSize) {
      std::memcpy(c.p, date.data(), kDateSize);  // a constant size: a few stores
      c.p += kDateSize;
    } else {
      c.put(date);
    }
    c.lit("\r\n");
  }
  if (!bodyless) {
    if (framing == BodyFraming::kContentLength) {
      c.lit("Content-Length: ");
      c.number(bodySize);
      c.lit("\r\n");
    } else if (framing == BodyFraming::kChunked) {
      c.lit("Transfer-Encoding: chunked\r\n");
    }
  }
  if (!connection.empty()) {
    c.lit("Connection: ");
    c.put(connection);
    c.lit("\r\n");
  }
  c.lit("\r\n");
  return c.p;
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
  out.resize(start + headRoom(status, own, headers, keepAlive, http10, date));
  char* end = writeHead(out.data() + start, status, own, reserved, headers, framing, bodySize,
                        keepAlive, http10, date);
  out.resize(static_cast<std::size_t>(end - out.data()));
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
