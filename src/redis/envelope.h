#pragma once
// What a publish looks like on a Redis channel, so that every process (and
// any other program) can tell who sent it and whether it is text:
//
//   offset  size  field
//   0       5     magic "\xFF" "spry" (0xFF never occurs in UTF-8 text)
//   5       1     version, 1
//   6       8     origin id: the publishing process's bridge, opaque bytes
//   14      1     kind: 't' text (UTF-8), 'b' binary
//   15      n     payload, verbatim
//
// A channel message without the magic is foreign (redis-cli, a worker in
// another language): text when it is valid UTF-8, binary otherwise.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "spry/message.h"

namespace spry::detail {

using OriginId = std::array<char, 8>;

inline constexpr std::string_view kEnvelopeMagic{"\xFFspry", 5};
inline constexpr char kEnvelopeVersion = 1;
inline constexpr std::size_t kEnvelopeHeaderBytes = kEnvelopeMagic.size() + 1 + 8 + 1;

// The envelope of `payload` from `origin`.
std::string encodeEnvelope(const OriginId& origin, Message::Type type, std::string_view payload);

struct DecodedEnvelope {
  enum class Status : std::uint8_t {
    kOk,       // ours or another spry process's: origin, type, payload set
    kForeign,  // no magic: type from the bytes, payload is the whole message
    kInvalid,  // the magic, but an unknown version, a short header, a bad
               // kind, or text that is not UTF-8
  };
  Status status = Status::kInvalid;
  OriginId origin{};
  Message::Type type = Message::Type::kBinary;
  std::string_view payload;  // a view into the decoded bytes
};

DecodedEnvelope decodeEnvelope(std::string_view bytes) noexcept;

}  // namespace spry::detail
