#include "redis/envelope.h"

#include <cstring>

#include "ws/utf8.h"

namespace spry::detail {

std::string encodeEnvelope(const OriginId& origin, Message::Type type, std::string_view payload) {
  std::string out;
  out.reserve(kEnvelopeHeaderBytes + payload.size());
  out.append(kEnvelopeMagic);
  out.push_back(kEnvelopeVersion);
  out.append(origin.data(), origin.size());
  out.push_back(type == Message::Type::kText ? 't' : 'b');
  out.append(payload);
  return out;
}

DecodedEnvelope decodeEnvelope(std::string_view bytes) noexcept {
  DecodedEnvelope d;
  if (!bytes.starts_with(kEnvelopeMagic)) {
    d.status = DecodedEnvelope::Status::kForeign;
    d.type = isValidUtf8(bytes) ? Message::Type::kText : Message::Type::kBinary;
    d.payload = bytes;
    return d;
  }
  if (bytes.size() < kEnvelopeHeaderBytes || bytes[kEnvelopeMagic.size()] != kEnvelopeVersion) {
    return d;
  }
  std::memcpy(d.origin.data(), bytes.data() + kEnvelopeMagic.size() + 1, d.origin.size());
  const char kind = bytes[kEnvelopeHeaderBytes - 1];
  if (kind != 't' && kind != 'b') return d;
  d.type = kind == 't' ? Message::Type::kText : Message::Type::kBinary;
  d.payload = bytes.substr(kEnvelopeHeaderBytes);
  if (d.type == Message::Type::kText && !isValidUtf8(d.payload)) return d;
  d.status = DecodedEnvelope::Status::kOk;
  return d;
}

}  // namespace spry::detail
