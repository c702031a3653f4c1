#include "http/http_writer.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

using spry::Headers;
using spry::detail::BodyFraming;
using spry::detail::DateCache;
using spry::detail::FieldView;
using spry::detail::reasonPhrase;
using spry::detail::writeChunk;
using spry::detail::writeHead;
using spry::detail::writeLastChunk;
using namespace std::string_literals;

namespace {

constexpr std::string_view kDate = "Sun, 06 Nov 1994 08:49:37 GMT";

std::string head(int status, const Headers& headers = {},
                 BodyFraming framing = BodyFraming::kContentLength, std::uint64_t size = 0,
                 bool keepAlive = true, bool http10 = false, std::string_view date = kDate) {
  std::string out;
  writeHead(out, status, headers, framing, size, keepAlive, http10, date);
  return out;
}

}  // namespace

TEST_CASE("reason phrases") {
  CHECK(reasonPhrase(100) == "Continue");
  CHECK(reasonPhrase(101) == "Switching Protocols");
  CHECK(reasonPhrase(200) == "OK");
  CHECK(reasonPhrase(201) == "Created");
  CHECK(reasonPhrase(202) == "Accepted");
  CHECK(reasonPhrase(203) == "Non-Authoritative Information");
  CHECK(reasonPhrase(204) == "No Content");
  CHECK(reasonPhrase(205) == "Reset Content");
  CHECK(reasonPhrase(206) == "Partial Content");
  CHECK(reasonPhrase(301) == "Moved Permanently");
  CHECK(reasonPhrase(302) == "Found");
  CHECK(reasonPhrase(303) == "See Other");
  CHECK(reasonPhrase(304) == "Not Modified");
  CHECK(reasonPhrase(307) == "Temporary Redirect");
  CHECK(reasonPhrase(308) == "Permanent Redirect");
  CHECK(reasonPhrase(400) == "Bad Request");
  CHECK(reasonPhrase(401) == "Unauthorized");
  CHECK(reasonPhrase(403) == "Forbidden");
  CHECK(reasonPhrase(404) == "Not Found");
  CHECK(reasonPhrase(405) == "Method Not Allowed");
  CHECK(reasonPhrase(408) == "Request Timeout");
  CHECK(reasonPhrase(411) == "Length Required");
  CHECK(reasonPhrase(413) == "Content Too Large");
  CHECK(reasonPhrase(414) == "URI Too Long");
  CHECK(reasonPhrase(417) == "Expectation Failed");
  CHECK(reasonPhrase(421) == "Misdirected Request");
  CHECK(reasonPhrase(422) == "Unprocessable Content");
  CHECK(reasonPhrase(426) == "Upgrade Required");
  CHECK(reasonPhrase(428) == "Precondition Required");
  CHECK(reasonPhrase(429) == "Too Many Requests");
  CHECK(reasonPhrase(431) == "Request Header Fields Too Large");
  CHECK(reasonPhrase(451) == "Unavailable For Legal Reasons");
  CHECK(reasonPhrase(500) == "Internal Server Error");
  CHECK(reasonPhrase(501) == "Not Implemented");
  CHECK(reasonPhrase(502) == "Bad Gateway");
  CHECK(reasonPhrase(503) == "Service Unavailable");
  CHECK(reasonPhrase(504) == "Gateway Timeout");
  CHECK(reasonPhrase(505) == "HTTP Version Not Supported");
  CHECK(reasonPhrase(299) == "Unknown");
  CHECK(reasonPhrase(0) == "Unknown");
  CHECK(reasonPhrase(-1) == "Unknown");
  // Every code the brief lists has a phrase.
  for (int s : {100, 101}) CHECK(reasonPhrase(s) != "Unknown");
  for (int s = 200; s <= 206; ++s) CHECK(reasonPhrase(s) != "Unknown");
  for (int s = 300; s <= 308; ++s) {
    if (s != 306) CHECK(reasonPhrase(s) != "Unknown");  // 306 is unused (RFC 9110 15.4.7)
  }
  for (int s = 400; s <= 417; ++s) CHECK(reasonPhrase(s) != "Unknown");
  for (int s : {421, 422, 426, 428, 429, 431, 451}) CHECK(reasonPhrase(s) != "Unknown");
  for (int s = 500; s <= 505; ++s) CHECK(reasonPhrase(s) != "Unknown");
}

TEST_CASE("DateCache formats IMF-fixdate") {
  DateCache cache;
  CHECK(cache.at(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(cache.at(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
  CHECK(cache.at(951782400) == "Tue, 29 Feb 2000 00:00:00 GMT");
  CHECK(cache.at(1700000000) == "Tue, 14 Nov 2023 22:13:20 GMT");
  CHECK(cache.at(4102444799) == "Thu, 31 Dec 2099 23:59:59 GMT");
  CHECK(cache.at(1709251199) == "Thu, 29 Feb 2024 23:59:59 GMT");
  CHECK(cache.at(1709251200) == "Fri, 01 Mar 2024 00:00:00 GMT");
}

TEST_CASE("DateCache reformats only when the second changes") {
  DateCache cache;
  const std::string_view a = cache.at(784111777);
  const std::string_view b = cache.at(784111777);
  CHECK(a.data() == b.data());
  CHECK(a == b);
  const std::string_view c = cache.at(784111778);
  CHECK(c == "Sun, 06 Nov 1994 08:49:38 GMT");
  // The view points into the cache, so the earlier view now shows the new second.
  CHECK(a == c);
}

TEST_CASE("DateCache::now is the current time") {
  DateCache cache;
  const std::time_t before = std::time(nullptr);
  const std::string value(cache.now());
  const std::time_t after = std::time(nullptr);
  CHECK(value.size() == 29);
  CHECK(value.substr(25) == " GMT");
  DateCache check;
  const bool matches = value == check.at(before) || value == check.at(after);
  CHECK(matches);
}

TEST_CASE("a minimal response") {
  CHECK(head(200) ==
        "HTTP/1.1 200 OK\r\n"
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "Content-Length: 0\r\n"
        "\r\n");
}

TEST_CASE("writeHead appends to what is already there") {
  std::string out = "previous";
  writeHead(out, 404, {}, BodyFraming::kContentLength, 9, true, false, kDate);
  CHECK(out ==
        "previousHTTP/1.1 404 Not Found\r\n"
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "Content-Length: 9\r\n"
        "\r\n");
}

TEST_CASE("user headers come first, in order, then Date, framing, Connection") {
  Headers h;
  h.add("Content-Type", "text/html; charset=utf-8");
  h.add("Set-Cookie", "a=1");
  h.add("Set-Cookie", "b=2");
  h.add("x-lower", "kept as given");
  CHECK(head(200, h, BodyFraming::kContentLength, 1234, false) ==
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Set-Cookie: a=1\r\n"
        "Set-Cookie: b=2\r\n"
        "x-lower: kept as given\r\n"
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "Content-Length: 1234\r\n"
        "Connection: close\r\n"
        "\r\n");
}

TEST_CASE("framing headers") {
  SUBCASE("chunked") {
    CHECK(head(200, {}, BodyFraming::kChunked) ==
          "HTTP/1.1 200 OK\r\n"
          "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
          "Transfer-Encoding: chunked\r\n"
          "\r\n");
  }
  SUBCASE("none") {
    CHECK(head(200, {}, BodyFraming::kNone, 0, false) ==
          "HTTP/1.1 200 OK\r\n"
          "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
          "Connection: close\r\n"
          "\r\n");
  }
  SUBCASE("large Content-Length") {
    const auto out = head(200, {}, BodyFraming::kContentLength, 18446744073709551615ULL);
    CHECK(out.find("Content-Length: 18446744073709551615\r\n") != std::string::npos);
  }
  SUBCASE("bodyless statuses never get one") {
    for (int status : {100, 101, 103, 204, 304}) {
      CAPTURE(status);
      for (auto framing : {BodyFraming::kContentLength, BodyFraming::kChunked}) {
        const auto out = head(status, {}, framing, 10);
        CHECK(out.find("Content-Length") == std::string::npos);
        CHECK(out.find("Transfer-Encoding") == std::string::npos);
      }
    }
    CHECK(head(204) ==
          "HTTP/1.1 204 No Content\r\n"
          "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
          "\r\n");
  }
  SUBCASE("statuses next to the bodyless ones keep it") {
    for (int status : {200, 205, 206, 303, 305}) {
      CAPTURE(status);
      CHECK(head(status).find("Content-Length: 0\r\n") != std::string::npos);
    }
  }
}

TEST_CASE("the writer owns Content-Length, Transfer-Encoding, Date and Connection") {
  Headers h;
  h.add("content-length", "999");
  h.add("Transfer-Encoding", "gzip, chunked");
  h.add("DATE", "yesterday");
  h.add("Connection", "keep-alive");
  h.add("X-Kept", "yes");
  SUBCASE("all dropped when the writer sets them") {
    CHECK(head(200, h, BodyFraming::kContentLength, 5, false) ==
          "HTTP/1.1 200 OK\r\n"
          "X-Kept: yes\r\n"
          "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
          "Content-Length: 5\r\n"
          "Connection: close\r\n"
          "\r\n");
  }
  SUBCASE("framing fields are dropped even when no framing is written") {
    const auto out = head(304, h, BodyFraming::kNone);
    CHECK(out.find("999") == std::string::npos);
    CHECK(out.find("gzip") == std::string::npos);
  }
  SUBCASE("Date and Connection stay when the writer has none to set") {
    const auto out = head(200, h, BodyFraming::kChunked, 0, true, false, "");
    CHECK(out ==
          "HTTP/1.1 200 OK\r\n"
          "DATE: yesterday\r\n"
          "Connection: keep-alive\r\n"
          "X-Kept: yes\r\n"
          "Transfer-Encoding: chunked\r\n"
          "\r\n");
  }
}

TEST_CASE("Connection header choice") {
  auto connectionOf = [](bool keepAlive, bool http10) {
    const auto out = head(200, {}, BodyFraming::kContentLength, 0, keepAlive, http10);
    const auto at = out.find("Connection: ");
    if (at == std::string::npos) return std::string();
    return out.substr(at + 12, out.find("\r\n", at) - at - 12);
  };
  CHECK(connectionOf(true, false).empty());
  CHECK(connectionOf(false, false) == "close");
  CHECK(connectionOf(true, true) == "keep-alive");
  CHECK(connectionOf(false, true) == "close");
}

TEST_CASE("101 keeps the upgrade's own Connection header") {
  Headers h;
  h.add("Upgrade", "websocket");
  h.add("Connection", "Upgrade");
  h.add("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  const std::string expected =
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
      "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
      "\r\n";
  CHECK(head(101, h, BodyFraming::kNone) == expected);
  // Connection management belongs to the final response, not an interim one.
  CHECK(head(101, h, BodyFraming::kNone, 0, false) == expected);
  CHECK(head(100, {}, BodyFraming::kNone, 0, false, true) ==
        "HTTP/1.1 100 Continue\r\n"
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "\r\n");
}

TEST_CASE("fields that could split the response are dropped") {
  Headers h;
  h.add("X-Good", "fine");
  h.add("X-CR", "a\rb");
  h.add("X-LF", "a\nSet-Cookie: evil=1");
  h.add("X-CRLF", "a\r\n\r\n<html>");
  h.add("X-NUL", "a\0b"s);
  h.add("Bad\r\nName", "v");
  h.add("Bad:Name", "v");
  h.add("Bad Name", "v");
  h.add("Bad\tName", "v");
  h.add("", "empty name");
  h.add("Bad\0Name"s, "v");
  h.add("X-Tab-Value", "a\tb");
  h.add("X-Empty-Value", "");
  h.add("X-Obs-Text", "caf\xc3\xa9");
  CHECK(head(200, h) ==
        "HTTP/1.1 200 OK\r\n"
        "X-Good: fine\r\n"
        "X-Tab-Value: a\tb\r\n"
        "X-Empty-Value: \r\n"
        "X-Obs-Text: caf\xc3\xa9\r\n"
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "Content-Length: 0\r\n"
        "\r\n");
}

TEST_CASE("a protocol's own fields come first, as given, and reserve their names") {
  Headers h;
  h.add("x-owned", "from the user");
  h.add("X-Kept", "yes");
  h.add("X-Also-Owned", "from the user");
  const FieldView own[] = {{"X-Owned", "by the protocol"}};  // checked by the caller
  const std::string_view reserved[] = {"X-Owned", "x-also-owned"};
  std::string out;
  writeHead(out, 200, own, reserved, h, BodyFraming::kContentLength, 0, true, false, kDate);
  CHECK(out ==
        "HTTP/1.1 200 OK\r\n"
        "X-Owned: by the protocol\r\n"
        "X-Kept: yes\r\n"
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "Content-Length: 0\r\n"
        "\r\n");
}

TEST_CASE("without own fields or reserved names it is the plain writeHead") {
  Headers h;
  h.add("X-Kept", "yes");
  h.add("Content-Length", "9");
  std::string out;
  writeHead(out, 404, {}, {}, h, BodyFraming::kContentLength, 3, false, false, kDate);
  CHECK(out == head(404, h, BodyFraming::kContentLength, 3, false));
}

TEST_CASE("an unknown status keeps its number") {
  CHECK(head(599).rfind("HTTP/1.1 599 Unknown\r\n", 0) == 0);
  CHECK(head(299).rfind("HTTP/1.1 299 Unknown\r\n", 0) == 0);
}

TEST_CASE("chunks are framed in lowercase hex") {
  std::string out;
  writeChunk(out, "hello");
  CHECK(out == "5\r\nhello\r\n");
  out.clear();
  writeChunk(out, std::string(255, 'x'));
  CHECK(out.rfind("ff\r\n", 0) == 0);
  CHECK(out.size() == 4 + 255 + 2);
  CHECK(out.substr(out.size() - 2) == "\r\n");
  out.clear();
  writeChunk(out, std::string(0xabcde, 'y'));
  CHECK(out.rfind("abcde\r\n", 0) == 0);
  out.clear();
  writeChunk(out, std::string(16, 'z'));
  CHECK(out.rfind("10\r\n", 0) == 0);
}

TEST_CASE("an empty chunk would end the body, so it writes nothing") {
  std::string out = "keep";
  writeChunk(out, "");
  CHECK(out == "keep");
}

TEST_CASE("binary chunk data passes through") {
  std::string out;
  const std::string data = "\0\r\n0\r\n\r\n"s;
  writeChunk(out, data);
  CHECK(out == "8\r\n" + data + "\r\n");
}

TEST_CASE("last chunk") {
  std::string out = "x";
  writeLastChunk(out);
  CHECK(out == "x0\r\n\r\n");
}

TEST_CASE("a whole chunked response") {
  std::string out;
  Headers h;
  h.add("Content-Type", "text/plain");
  writeHead(out, 200, h, BodyFraming::kChunked, 0, true, false, kDate);
  writeChunk(out, "Hello, ");
  writeChunk(out, "");
  writeChunk(out, "world!");
  writeLastChunk(out);
  CHECK(out ==
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/plain\r\n"
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "Transfer-Encoding: chunked\r\n"
        "\r\n"
        "7\r\nHello, \r\n"
        "6\r\nworld!\r\n"
        "0\r\n\r\n");
}

TEST_CASE("every byte at every offset of a field value: CR, LF and NUL drop the field") {
  // The value check reads eight bytes at a time: each byte value is tried at
  // each offset of a 19-byte value (two words and a tail).
  const std::string clean = "abcdefghijklmnopqrs";
  for (int b = 0; b < 256; ++b) {
    const auto c = static_cast<char>(b);
    const bool dropped = c == '\r' || c == '\n' || c == '\0';
    for (std::size_t pos = 0; pos < clean.size(); ++pos) {
      std::string value = clean;
      value[pos] = c;
      CAPTURE(b);
      CAPTURE(pos);
      Headers h;
      h.add("X-V", value);
      const std::string out = head(200, h);
      std::string field = "X-V: ";
      field += value;
      field += "\r\n";
      CHECK((out.find(field) != std::string::npos) == !dropped);
      CHECK((out.find("X-V") != std::string::npos) == !dropped);
    }
  }
}

TEST_CASE("writeResponseHead writes what writeHead writes, from lines and padded pieces") {
  DateCache dates;
  REQUIRE(dates.at(784111777) == kDate);
  REQUIRE(dates.line() == "Date: "s + std::string(kDate) + "\r\n");
  Headers plain;
  plain.add("Server", "spry");
  plain.add("X-Long-Header-Name-Over-Sixteen", std::string(40, 'v'));
  Headers unsafe;
  unsafe.add("Server", "spry");
  unsafe.add("Bad Name", "x");
  unsafe.add("Date", "yesterday");
  unsafe.add("Connection", "upgrade");
  unsafe.add("Content-Length", "5");
  unsafe.add("X-Split", "a\r\nInjected: yes");
  Headers none;
  for (const Headers* h : {&plain, &unsafe, &none}) {
    for (int status : {200, 101, 204, 304, 404, 431, 511, 599, 42}) {
      for (std::string_view type : {std::string_view{}, spry::detail::kTextPlainType,
                                    spry::detail::kTextHtmlType, spry::detail::kJsonType}) {
        for (bool keepAlive : {true, false}) {
          for (bool http10 : {false, true}) {
            for (std::uint64_t size : {0ULL, 7ULL, 12ULL, 99ULL, 100ULL, 123456789ULL}) {
              const bool hasBody = status >= 200 && status != 204 && status != 304;
              const BodyFraming framing =
                  hasBody ? BodyFraming::kContentLength : BodyFraming::kNone;
              // The same fields through writeHead: the type first, as a field.
              Headers fields;
              if (!type.empty()) fields.add("Content-Type", type);
              for (const auto& [name, value] : *h) fields.add(name, value);
              std::string expected;
              writeHead(expected, status, fields, framing, size, keepAlive, http10, kDate);
              // Poisoned room: the pieces may run past the head, never past the room.
              std::string room(spry::detail::responseHeadRoom(*h), '#');
              const std::string_view line =
                  type.empty() ? type : spry::detail::contentTypeLine(type);
              const char* end = spry::detail::writeResponseHead(
                  room.data(), status, line, *h, framing, size, keepAlive, http10, dates.line());
              REQUIRE(end <= room.data() + room.size() - 16);
              CHECK(std::string_view(room.data(), static_cast<std::size_t>(end - room.data())) ==
                    expected);
            }
          }
        }
      }
    }
  }
}
