#include "redis/envelope.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using spry::Message;
using spry::detail::DecodedEnvelope;
using spry::detail::decodeEnvelope;
using spry::detail::encodeEnvelope;
using spry::detail::OriginId;
using namespace std::string_view_literals;

namespace {
const OriginId kOrigin = {'\x00', '\x01', '\xFF', 'a', 'b', '\x7F', '\x80', 'z'};
}

TEST_CASE("the documented layout: magic, version, origin, kind, payload") {
  const std::string e = encodeEnvelope(kOrigin, Message::Type::kText, "hi");
  CHECK(e.size() == 15 + 2);
  CHECK(std::string_view(e).substr(0, 5) == "\xFFspry"sv);
  CHECK(e[5] == 1);
  CHECK(std::string_view(e).substr(6, 8) == std::string_view(kOrigin.data(), 8));
  CHECK(e[14] == 't');
  CHECK(std::string_view(e).substr(15) == "hi");
  CHECK(encodeEnvelope(kOrigin, Message::Type::kBinary, "")[14] == 'b');
}

TEST_CASE("round trip, binary-safe") {
  const std::string payload("\x00\xFF\x80spry\x00", 8);
  for (auto type : {Message::Type::kText, Message::Type::kBinary}) {
    if (type == Message::Type::kText) {
      const std::string e = encodeEnvelope(kOrigin, type, "héllo");  // d views it
      const auto d = decodeEnvelope(e);
      CHECK(d.status == DecodedEnvelope::Status::kOk);
      CHECK(d.type == Message::Type::kText);
      CHECK(d.payload == "héllo");
      CHECK(d.origin == kOrigin);
      continue;
    }
    const std::string e = encodeEnvelope(kOrigin, type, payload);
    const auto d = decodeEnvelope(e);
    CHECK(d.status == DecodedEnvelope::Status::kOk);
    CHECK(d.type == Message::Type::kBinary);
    CHECK(d.payload == payload);
    CHECK(d.origin == kOrigin);
  }
  const std::string emptyEnvelope = encodeEnvelope(kOrigin, Message::Type::kBinary, "");
  const auto empty = decodeEnvelope(emptyEnvelope);
  CHECK(empty.status == DecodedEnvelope::Status::kOk);
  CHECK(empty.payload.empty());
}

TEST_CASE("foreign messages: text when valid UTF-8, binary otherwise") {
  auto d = decodeEnvelope("hello");
  CHECK(d.status == DecodedEnvelope::Status::kForeign);
  CHECK(d.type == Message::Type::kText);
  CHECK(d.payload == "hello");
  d = decodeEnvelope("");
  CHECK(d.status == DecodedEnvelope::Status::kForeign);
  CHECK(d.type == Message::Type::kText);
  d = decodeEnvelope("\x80\x81\x00"sv);
  CHECK(d.status == DecodedEnvelope::Status::kForeign);
  CHECK(d.type == Message::Type::kBinary);
  CHECK(d.payload.size() == 3);
  // A prefix of the magic is not the magic.
  d = decodeEnvelope("\xFFspr"sv);
  CHECK(d.status == DecodedEnvelope::Status::kForeign);
  CHECK(d.type == Message::Type::kBinary);
}

TEST_CASE("the magic with a bad header is invalid, never delivered") {
  std::string e = encodeEnvelope(kOrigin, Message::Type::kText, "x");
  CHECK(decodeEnvelope(std::string_view(e).substr(0, 14)).status ==
        DecodedEnvelope::Status::kInvalid);
  std::string v2 = e;
  v2[5] = 2;
  CHECK(decodeEnvelope(v2).status == DecodedEnvelope::Status::kInvalid);
  std::string kind = e;
  kind[14] = 'x';
  CHECK(decodeEnvelope(kind).status == DecodedEnvelope::Status::kInvalid);
  // Text that is not UTF-8 would make browsers fail the connection (1007).
  const std::string bad = encodeEnvelope(kOrigin, Message::Type::kText, "\xC0\xAF");
  CHECK(decodeEnvelope(bad).status == DecodedEnvelope::Status::kInvalid);
}
