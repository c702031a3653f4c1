#pragma once
// HTTP/1.1 response serialization: status line, headers, Date, framing.

#include <cstdint>
#include <ctime>
#include <span>
#include <string>
#include <string_view>

#include "spry/headers.h"

namespace spry::detail {

// "OK", "Not Found", ...; "Unknown" for an unregistered code.
std::string_view reasonPhrase(int status) noexcept;

// The value of the Date header (IMF-fixdate), formatted at most once per second.
class DateCache {
 public:
  // Uses time(nullptr). Inline: the value changes once a second, and the
  // usual call is the comparison alone.
  std::string_view now() {
    const std::time_t t = std::time(nullptr);
    return t == cached_ ? std::string_view{line_ + 6, size_} : at(t);
  }
  std::string_view at(std::time_t t);
  // "Date: <now>\r\n" (empty when the clock cannot be formatted); its
  // buffer may be read kDateLineBytes from the start (writeResponseHead
  // copies it so).
  std::string_view nowLine() {
    if (const std::time_t t = std::time(nullptr); t != cached_) at(t);
    return line();
  }
  // The line of the last value formatted, as nowLine() gives it.
  std::string_view line() const noexcept { return {line_, lineSize_}; }
  static constexpr std::size_t kDateLineBytes = 48;

 private:
  std::time_t cached_ = -1;
  char line_[kDateLineBytes] = {'D', 'a', 't', 'e', ':', ' '};  // the value follows
  std::size_t size_ = 0;
  std::size_t lineSize_ = 0;  // 0 until a value is formatted
};

// How the body that follows the head is framed.
enum class BodyFraming { kContentLength, kChunked, kNone };

// Appends "HTTP/1.1 <status> <reason>\r\n", the user's headers, then Date,
// Content-Length (kContentLength: `bodySize`) or Transfer-Encoding: chunked
// (kChunked), Connection: close when !keepAlive (Connection: keep-alive for an
// HTTP/1.0 keep-alive), and the blank line. The user's Content-Length and
// Transfer-Encoding are always dropped; Date and Connection only when the writer
// sets its own (an empty `date` writes none; 1xx get no Connection from the writer,
// so a 101's "Connection: Upgrade" survives). Fields whose name is not a token or
// whose value contains CR, LF or NUL are dropped (response splitting). 1xx, 204
// and 304 never get a body framing header.
void writeHead(std::string& out, int status, const Headers& headers, BodyFraming framing,
               std::uint64_t bodySize, bool keepAlive, bool http10, std::string_view date);

// A header field by view, for fields a protocol writes itself.
struct FieldView {
  std::string_view name;
  std::string_view value;
};

// writeHead for a response some of whose fields a protocol owns (the 101 of an
// upgrade): `own` is written right after the status line as is (the caller
// checks its fields: isSafeField), then `headers` less every field named
// (ignoring case) in `reserved`, then as above.
void writeHead(std::string& out, int status, std::span<const FieldView> own,
               std::span<const std::string_view> reserved, const Headers& headers,
               BodyFraming framing, std::uint64_t bodySize, bool keepAlive, bool http10,
               std::string_view date);

// Internal access to a Headers list's lines ("Name: value\r\n", in order,
// without gaps). A line may be read in 16-byte pieces: up to 15 bytes past
// its end are readable.
struct HeaderLines {
  static std::string_view all(const Headers& h) noexcept { return {h.block_, h.high_}; }
  static std::string_view line(const Headers& h, std::size_t i) noexcept {
    const Headers::Entry e = h.entry(i);
    return {h.block_ + e.at, e.nameSize + e.valueSize + Headers::kLineExtra};
  }
};

// The Content-Type values of Response::text, html and json, kept inside
// their whole lines so that the head writer copies a line as is
// (contentTypeLine); padded for 48-byte copies.
inline constexpr char kContentTypeLines[] =
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Type: application/json\r\n"
    "................................................";
inline constexpr std::size_t kContentTypeName = 14;  // "Content-Type: "
inline constexpr std::string_view kTextPlainType{kContentTypeLines + kContentTypeName, 25};
inline constexpr std::string_view kTextHtmlType{kContentTypeLines + 41 + kContentTypeName, 24};
inline constexpr std::string_view kJsonType{kContentTypeLines + 81 + kContentTypeName, 16};
static_assert(kTextPlainType == "text/plain; charset=utf-8" &&
              kTextHtmlType == "text/html; charset=utf-8" && kJsonType == "application/json");
// The whole line of one of the three values above.
constexpr std::string_view contentTypeLine(std::string_view type) noexcept {
  return {type.data() - kContentTypeName, type.size() + kContentTypeName + 2};
}

// Room for writeResponseHead beyond the header list's own bytes: the status
// line, the Content-Type line, Date, Content-Length, Connection and the
// blank line at their longest, and the writer's 48-byte copies running past
// the end of the head.
inline constexpr std::size_t kHeadRoom = 256;

// The most bytes writeResponseHead writes for `headers` (its pieces may run
// 16 bytes past the end of the head: the caller's body copy may as well).
inline std::size_t responseHeadRoom(const Headers& headers) noexcept {
  return kHeadRoom + HeaderLines::all(headers).size();
}

// writeHead into room of responseHeadRoom() bytes at `out`, for the usual
// response: `contentType` is empty or contentTypeLine() of a library type
// (written first), `dateLine` a DateCache::nowLine(). The caller frames: a
// 1xx, 204 or 304 must come with kNone. Returns the end of the head.
char* writeResponseHead(char* out, int status, std::string_view contentType, const Headers& headers,
                        BodyFraming framing, std::uint64_t bodySize, bool keepAlive, bool http10,
                        std::string_view dateLine) noexcept;

// Appends one chunk ("<hex>\r\n<data>\r\n"); an empty `data` appends nothing.
void writeChunk(std::string& out, std::string_view data);
// Appends the last chunk "0\r\n\r\n".
void writeLastChunk(std::string& out);

}  // namespace spry::detail
