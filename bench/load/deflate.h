#pragma once
// permessage-deflate (RFC 7692) on the client side of spry-load: the offer,
// the check of the server's answer, and zlib raw deflate / inflate of whole
// messages. Not the library's code (src/ws/permessage_deflate.*): the load
// tool is an independent client.

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace load {

// What a browser offers (Chromium, Firefox): the extension and
// client_max_window_bits without a value.
constexpr std::string_view kDeflateOffer = "permessage-deflate; client_max_window_bits";

// What the server answered.
struct DeflateParams {
  bool negotiated = false;
  bool serverNoContextTakeover = false;
  bool clientNoContextTakeover = false;
  int serverMaxWindowBits = 15;  // the server's deflate window
  int clientMaxWindowBits = 15;  // ours (the server inflates with at least this)
  std::string response;          // the header value, as sent
};

namespace deflate_detail {

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// "N" or "\"N\"", 8..15; -1 otherwise.
inline int windowBits(std::string_view v) {
  v = trim(v);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.empty() || v.size() > 2) return -1;
  int n = 0;
  for (char ch : v) {
    if (ch < '0' || ch > '9') return -1;
    n = n * 10 + (ch - '0');
  }
  return n >= 8 && n <= 15 ? n : -1;
}

}  // namespace deflate_detail

// Checks a Sec-WebSocket-Extensions response to kDeflateOffer: exactly one
// extension, permessage-deflate, with only the parameters RFC 7692 allows in
// a response (client_max_window_bits only because we offered it), none
// twice. false with `error` set otherwise.
inline bool parseDeflateResponse(std::string_view value, DeflateParams& out, std::string& error) {
  using deflate_detail::equalsIgnoreCase;
  using deflate_detail::trim;
  out = DeflateParams{};
  out.response = std::string(trim(value));
  if (value.find(',') != std::string_view::npos) {
    error = "more than one extension accepted: " + out.response;
    return false;
  }
  std::string_view rest = value;
  bool first = true;
  bool seen[4] = {false, false, false, false};
  while (true) {
    const auto semi = rest.find(';');
    const std::string_view item = trim(rest.substr(0, semi));
    if (first) {
      if (!equalsIgnoreCase(item, "permessage-deflate")) {
        error = "an extension we did not offer: " + out.response;
        return false;
      }
      first = false;
    } else {
      const auto eq = item.find('=');
      const std::string_view name = trim(item.substr(0, eq));
      const bool hasValue = eq != std::string_view::npos;
      const int bits = hasValue ? deflate_detail::windowBits(item.substr(eq + 1)) : -1;
      int which = -1;
      if (equalsIgnoreCase(name, "server_no_context_takeover") && !hasValue) {
        which = 0;
        out.serverNoContextTakeover = true;
      } else if (equalsIgnoreCase(name, "client_no_context_takeover") && !hasValue) {
        which = 1;
        out.clientNoContextTakeover = true;
      } else if (equalsIgnoreCase(name, "server_max_window_bits") && bits > 0) {
        which = 2;
        out.serverMaxWindowBits = bits;
      } else if (equalsIgnoreCase(name, "client_max_window_bits") && bits > 0) {
        which = 3;
        out.clientMaxWindowBits = bits;
      }
      if (which < 0 || seen[which]) {
        error = "a parameter RFC 7692 does not allow here (or twice): " + out.response;
        return false;
      }
      seen[which] = true;
    }
    if (semi == std::string_view::npos) break;
    rest = rest.substr(semi + 1);
  }
  out.negotiated = true;
  return true;
}

// Raw deflate of whole messages, reset after each (we never keep our
// context, which is valid whatever the server allowed). A window of 8 bits
// (zlib's raw deflate has none) is served by Huffman coding alone: no back
// references, so any window reads it.
class MessageDeflater {
 public:
  MessageDeflater(int windowBits, int level) {
    const bool huffmanOnly = windowBits < 9;
    ok_ = deflateInit2(&z_, level, Z_DEFLATED, -(huffmanOnly ? 9 : windowBits), 8,
                       huffmanOnly ? Z_HUFFMAN_ONLY : Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~MessageDeflater() {
    if (ok_) deflateEnd(&z_);
  }
  MessageDeflater(const MessageDeflater&) = delete;
  MessageDeflater& operator=(const MessageDeflater&) = delete;

  // Appends the compressed payload of `in` (the 00 00 ff ff tail removed).
  bool compress(std::string_view in, std::string& out) {
    if (!ok_) return false;
    const std::size_t old = out.size();
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    std::size_t room = deflateBound(&z_, static_cast<uLong>(in.size())) + 16;
    for (;;) {
      const std::size_t at = out.size();
      out.resize(at + room);
      z_.next_out = reinterpret_cast<Bytef*>(out.data() + at);
      z_.avail_out = static_cast<uInt>(room);
      const int rc = deflate(&z_, Z_SYNC_FLUSH);
      out.resize(out.size() - z_.avail_out);
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        out.resize(old);
        deflateReset(&z_);
        return false;
      }
      if (z_.avail_out != 0) break;  // all of it flushed
      room = 4096;
    }
    deflateReset(&z_);
    static constexpr char kTail[4] = {0, 0, '\xff', '\xff'};
    if (out.size() - old < 4 || std::memcmp(out.data() + out.size() - 4, kTail, 4) != 0) {
      out.resize(old);
      return false;
    }
    out.resize(out.size() - 4);
    return true;
  }

 private:
  z_stream z_{};
  bool ok_ = false;
};

// Raw inflate with a 15-bit window (reads any server window). keepContext:
// the server keeps its context (it did not say server_no_context_takeover),
// so the window carries into the next message of the same connection.
class MessageInflater {
 public:
  MessageInflater() { ok_ = inflateInit2(&z_, -15) == Z_OK; }
  ~MessageInflater() {
    if (ok_) inflateEnd(&z_);
  }
  MessageInflater(const MessageInflater&) = delete;
  MessageInflater& operator=(const MessageInflater&) = delete;

  // Replaces `out` with the inflated message, at most `limit` bytes. false:
  // corrupt, or larger than the limit (`error` says which).
  bool inflate(std::string_view in, std::string& out, std::size_t limit, bool keepContext,
               const char*& error) {
    out.clear();
    if (!ok_) {
      error = "inflateInit2 failed";
      return false;
    }
    static constexpr unsigned char kTail[4] = {0, 0, 0xff, 0xff};
    const bool good =
        run(reinterpret_cast<const unsigned char*>(in.data()), in.size(), out, limit, error) &&
        run(kTail, 4, out, limit, error);
    if (!good || !keepContext) inflateReset(&z_);
    return good;
  }

 private:
  bool run(const unsigned char* in, std::size_t n, std::string& out, std::size_t limit,
           const char*& error) {
    z_.next_in = const_cast<Bytef*>(in);
    z_.avail_in = static_cast<uInt>(n);
    for (;;) {
      const std::size_t at = out.size();
      if (at > limit) {
        error = "inflated message larger than expected";
        return false;
      }
      const std::size_t room =
          std::min<std::size_t>(limit + 1 - at, std::max<std::size_t>(4096, 4 * n));
      out.resize(at + room);
      z_.next_out = reinterpret_cast<Bytef*>(out.data() + at);
      z_.avail_out = static_cast<uInt>(room);
      const int rc = ::inflate(&z_, Z_SYNC_FLUSH);
      out.resize(out.size() - z_.avail_out);
      if (rc == Z_STREAM_END) {
        // A final block (BFINAL): allowed; the rest of the message is ignored.
        inflateReset(&z_);
        break;
      }
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        error = z_.msg ? z_.msg : "corrupt deflate data";
        return false;
      }
      // Output space left over: everything the input held is out.
      if (z_.avail_out != 0) break;
    }
    if (out.size() > limit) {
      error = "inflated message larger than expected";
      return false;
    }
    return true;
  }

  z_stream z_{};
  bool ok_ = false;
};

}  // namespace load
