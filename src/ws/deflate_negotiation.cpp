// permessage-deflate negotiation (RFC 7692 sections 5 and 7.1): reads the
// client's Sec-WebSocket-Extensions offers and writes the 101's answer.
//
// Grammar (RFC 6455 section 9.1 with RFC 7692's parameters):
//   Sec-WebSocket-Extensions = 1#extension
//   extension = token *( OWS ";" OWS param )
//   param     = token [ OWS "=" OWS ( token / quoted-string ) ]
// A client's bad syntax never fails the handshake: the element it is in is
// declined and parsing goes on after the next comma outside quotes. Each
// field is read alone, so an unterminated quote costs only the rest of its
// own field. Negotiating allocates nothing; the response is one string.

#include <algorithm>
#include <cstddef>
#include <iterator>

#include "http/token.h"
#include "spry/headers.h"
#include "ws/permessage_deflate.h"

namespace spry::detail {

namespace {

// A parameter's value, unquoted. Only the first few characters are kept:
// every value this extension accepts is one or two digits.
struct Value {
  static constexpr std::size_t kKept = 3;
  char chars[kKept] = {};
  std::size_t size = 0;  // the whole value's length, kept or not

  void push(char c) noexcept {
    if (size < kKept) chars[size] = c;
    ++size;
  }
};

// A window size: 1*DIGIT without leading zeros, 8..15 (RFC 7692 7.1.2).
// 0 when the value is not one.
int windowBitsOf(const Value& v) noexcept {
  if (v.size == 1) return v.chars[0] == '8' || v.chars[0] == '9' ? v.chars[0] - '0' : 0;
  if (v.size == 2 && v.chars[0] == '1' && v.chars[1] >= '0' && v.chars[1] <= '5') {
    return 10 + (v.chars[1] - '0');
  }
  return 0;
}

// RFC 9110 qdtext and the octets a quoted-pair may escape (without HTAB/SP,
// which both allow).
constexpr bool isQdtext(unsigned char c) noexcept {
  return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5B) ||
         (c >= 0x5D && c <= 0x7E) || c >= 0x80;
}
constexpr bool isQuotable(unsigned char c) noexcept {
  return c == '\t' || (c >= 0x20 && c != 0x7F);
}

struct Offer {
  bool serverNoContextTakeover = false;
  int serverMaxWindowBits = 0;  // 0: not named
};

enum class Element { kNone, kOther, kInvalid, kDeflate };

// One field value and a position in it.
class ListReader {
 public:
  explicit ListReader(std::string_view list) noexcept : s_(list) {}
  bool atEnd() const noexcept { return i_ == s_.size(); }

  // Reads the next element and the comma after it. kNone: an empty element
  // (nothing to decline); kDeflate: a well-formed permessage-deflate offer,
  // in `offer`.
  Element next(Offer& offer) noexcept {
    skipOws();
    if (atEnd()) return Element::kNone;
    if (s_[i_] == ',') {
      ++i_;
      return Element::kNone;
    }
    const std::string_view name = token();
    if (name.empty()) return skipRest();
    const bool deflate = equalsIgnoreCase(name, "permessage-deflate");
    bool valid = true;
    unsigned seen = 0;
    while (true) {
      skipOws();
      if (atEnd() || s_[i_] == ',') {
        if (!atEnd()) ++i_;
        if (!deflate) return Element::kOther;
        return valid ? Element::kDeflate : Element::kInvalid;
      }
      if (s_[i_] != ';') return skipRest();
      ++i_;
      skipOws();
      const std::string_view param = token();
      if (param.empty()) return skipRest();
      skipOws();
      Value value;
      bool hasValue = false;
      if (!atEnd() && s_[i_] == '=') {
        ++i_;
        skipOws();
        if (!readValue(value)) return skipRest();
        hasValue = true;
      }
      if (deflate && valid) valid = applyParam(param, hasValue, value, seen, offer);
    }
  }

 private:
  void skipOws() noexcept {
    while (!atEnd() && isOws(s_[i_])) ++i_;
  }

  std::string_view token() noexcept {
    const std::size_t start = i_;
    while (!atEnd() && isTchar(static_cast<unsigned char>(s_[i_]))) ++i_;
    return s_.substr(start, i_ - start);
  }

  // A token or a quoted-string, unquoted into `value`. false: neither (the
  // position is then where the value began).
  bool readValue(Value& value) noexcept {
    if (atEnd()) return false;
    if (s_[i_] != '"') {
      const std::string_view t = token();
      for (char c : t) value.push(c);
      return !t.empty();
    }
    const std::size_t start = i_++;
    while (!atEnd()) {
      const auto c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c == '\\' && !atEnd() && isQuotable(static_cast<unsigned char>(s_[i_]))) {
        value.push(s_[i_++]);
      } else if (isQdtext(c)) {
        value.push(static_cast<char>(c));
      } else {
        break;
      }
    }
    i_ = start;
    return false;
  }

  // After a syntax error: on to just past the next comma outside a quoted
  // string (an unterminated quote runs to the end of the field).
  Element skipRest() noexcept {
    bool quoted = false;
    while (!atEnd()) {
      const char c = s_[i_++];
      if (quoted) {
        if (c == '\\' && !atEnd()) {
          ++i_;
        } else if (c == '"') {
          quoted = false;
        }
      } else if (c == '"') {
        quoted = true;
      } else if (c == ',') {
        break;
      }
    }
    return Element::kInvalid;
  }

  // One parameter of a permessage-deflate offer; false declines the offer.
  static bool applyParam(std::string_view name, bool hasValue, const Value& value, unsigned& seen,
                         Offer& offer) noexcept {
    static constexpr std::string_view kNames[] = {
        "server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
        "client_max_window_bits"};
    std::size_t k = 0;
    while (k < std::size(kNames) && name != kNames[k]) ++k;
    if (k == std::size(kNames)) return false;
    if ((seen & (1u << k)) != 0) return false;
    seen |= 1u << k;
    switch (k) {
      case 0:
        offer.serverNoContextTakeover = true;
        return !hasValue;
      case 1:
        return !hasValue;
      case 2:
        offer.serverMaxWindowBits = hasValue ? windowBitsOf(value) : 0;
        return offer.serverMaxWindowBits != 0;
      default:
        // We never answer client_max_window_bits (we inflate with a 15-bit
        // window), but a malformed value still declines the offer.
        return !hasValue || windowBitsOf(value) != 0;
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace

std::optional<DeflateAgreement> negotiateDeflate(std::span<const std::string_view> fields,
                                                 const DeflateServerConfig& config) {
  for (const std::string_view field : fields) {
    ListReader reader(field);
    while (!reader.atEnd()) {
      Offer offer;
      if (reader.next(offer) != Element::kDeflate) continue;
      // zlib's raw deflate cannot make a 256-byte window (it uses 512).
      if (offer.serverMaxWindowBits == 8) continue;
      DeflateAgreement agreement;
      const int ours = std::clamp(config.windowBits, 9, 15);
      const int theirs = offer.serverMaxWindowBits != 0 ? offer.serverMaxWindowBits : 15;
      agreement.serverWindowBits = static_cast<std::uint8_t>(std::min(ours, theirs));
      agreement.serverNoContextTakeover = !config.dedicated || offer.serverNoContextTakeover;
      agreement.serverWindowOffered = offer.serverMaxWindowBits != 0;
      return agreement;
    }
  }
  return std::nullopt;
}

std::string deflateResponse(const DeflateAgreement& agreement) {
  constexpr std::string_view kName = "permessage-deflate";
  constexpr std::string_view kServerReset = "; server_no_context_takeover";
  constexpr std::string_view kClientReset = "; client_no_context_takeover";
  constexpr std::string_view kWindow = "; server_max_window_bits=";
  std::string out;
  out.reserve(kName.size() + kServerReset.size() + kClientReset.size() + kWindow.size() + 2);
  out += kName;
  if (agreement.serverNoContextTakeover) out += kServerReset;
  out += kClientReset;
  const unsigned bits = agreement.serverWindowBits;
  if (agreement.serverWindowOffered || bits < 15) {
    out += kWindow;
    if (bits >= 10) out += static_cast<char>('0' + bits / 10);
    out += static_cast<char>('0' + bits % 10);
  }
  return out;
}

}  // namespace spry::detail
