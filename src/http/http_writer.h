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
  std::string_view now();  // uses time(nullptr)
  std::string_view at(std::time_t t);

 private:
  std::time_t cached_ = -1;
  char value_[32] = {};
  std::size_t size_ = 0;
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

// The most bytes the writeHead below writes for these arguments.
std::size_t headRoom(int status, std::span<const FieldView> own, const Headers& headers,
                     bool keepAlive, bool http10, std::string_view date) noexcept;
// writeHead into room of headRoom() bytes at `out`; returns the end of the head.
char* writeHead(char* out, int status, std::span<const FieldView> own,
                std::span<const std::string_view> reserved, const Headers& headers,
                BodyFraming framing, std::uint64_t bodySize, bool keepAlive, bool http10,
                std::string_view date) noexcept;

// Appends one chunk ("<hex>\r\n<data>\r\n"); an empty `data` appends nothing.
void writeChunk(std::string& out, std::string_view data);
// Appends the last chunk "0\r\n\r\n".
void writeLastChunk(std::string& out);

}  // namespace spry::detail
