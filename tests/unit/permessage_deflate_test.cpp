#include "ws/permessage_deflate.h"

#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using namespace spry::detail;
using Status = Inflater::Status;

namespace {

// ---------------------------------------------------------------- negotiation helpers

std::optional<DeflateAgreement> negotiate(std::initializer_list<std::string_view> fields,
                                          bool dedicated = false, int windowBits = 15) {
  const std::vector<std::string_view> list(fields);
  return negotiateDeflate(list, DeflateServerConfig{dedicated, windowBits});
}

// The 101's Sec-WebSocket-Extensions value, or "" when nothing was agreed.
std::string answer(std::initializer_list<std::string_view> fields, bool dedicated = false,
                   int windowBits = 15) {
  const auto agreement = negotiate(fields, dedicated, windowBits);
  return agreement ? deflateResponse(*agreement) : std::string();
}

constexpr std::string_view kShared =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
constexpr std::string_view kDedicated = "permessage-deflate; client_no_context_takeover";

std::string withWindow(std::string_view base, int bits) {
  return std::string(base) + "; server_max_window_bits=" + std::to_string(bits);
}

// ---------------------------------------------------------------- codec helpers

std::string fromHex(std::string_view hex) {
  REQUIRE(hex.size() % 2 == 0);
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  std::string out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    out += static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1]));
  }
  return out;
}

std::string toHex(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : s) {
    const auto b = static_cast<unsigned char>(c);
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

std::string randomBytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Text that compresses well but not to nothing.
std::string prose(std::size_t n) {
  static constexpr std::string_view kWords[] = {"alpha ",   "beta ", "gamma ", "delta ",
                                                "epsilon ", "zeta ", "eta ",   "theta\n"};
  std::mt19937 rng(7);
  std::string s;
  while (s.size() < n) s += kWords[rng() % std::size(kWords)];
  s.resize(n);
  return s;
}

// Hex digits: compresses to a little over half.
std::string hexNoise(std::size_t n, std::uint32_t seed) {
  return toHex(randomBytes(n / 2, seed)).substr(0, n);
}

// A message's payload as another client would make it: zlib directly, raw
// deflate with a `bits` window, Z_SYNC_FLUSH, the 00 00 ff ff tail removed.
std::string clientDeflate(std::string_view message, int bits, int level = 6) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, level, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, static_cast<uLong>(message.size())) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  z.avail_in = static_cast<uInt>(message.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_SYNC_FLUSH) == Z_OK);
  REQUIRE(z.avail_in == 0);
  REQUIRE(z.avail_out > 0);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  REQUIRE(out.size() >= 4);
  REQUIRE(out.substr(out.size() - 4) == fromHex("0000ffff"));
  out.resize(out.size() - 4);
  return out;
}

// Inflates payloads one after the other with one zlib stream (context
// takeover on the receiving side, which Inflater never does).
std::vector<std::string> zlibInflateAll(const std::vector<std::string>& payloads) {
  z_stream z{};
  REQUIRE(inflateInit2(&z, -15) == Z_OK);
  std::vector<std::string> messages;
  for (const std::string& p : payloads) {
    const std::string in = p + fromHex("0000ffff");
    std::string out(1 << 16, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    const int rc = inflate(&z, Z_SYNC_FLUSH);
    CHECK((rc == Z_OK || rc == Z_BUF_ERROR));
    CHECK(z.avail_in == 0);
    out.resize(out.size() - z.avail_out);
    messages.push_back(out);
  }
  inflateEnd(&z);
  return messages;
}

std::string deflateWith(Deflater& d, std::string_view message, bool keepContext = false) {
  std::string out;
  REQUIRE(d.compress(message, out, keepContext));
  return out;
}

// One whole message through a fresh-or-reset inflater.
Status inflateWhole(Inflater& inflater, std::string_view payload, std::string& out,
                    std::size_t limit) {
  inflater.reset();
  return inflater.inflate(payload, out, limit, true);
}

std::string inflated(std::string_view payload, std::size_t limit = 1 << 24) {
  Inflater inflater;
  std::string out;
  REQUIRE(inflater.inflate(payload, out, limit, true) == Status::kOk);
  return out;
}

// One unmasked frame: its first byte, header size and payload.
struct Frame {
  std::uint8_t first = 0;
  std::size_t headerSize = 0;
  std::string payload;
};

Frame parseFrame(std::string_view b) {
  REQUIRE(b.size() >= 2);
  Frame f;
  f.first = static_cast<std::uint8_t>(b[0]);
  const auto b1 = static_cast<std::uint8_t>(b[1]);
  REQUIRE((b1 & 0x80) == 0);
  std::uint64_t length = b1 & 0x7F;
  std::size_t i = 2;
  const std::size_t ext = length == 126 ? 2 : length == 127 ? 8 : 0;
  REQUIRE(b.size() >= 2 + ext);
  if (ext != 0) {
    length = 0;
    for (std::size_t k = 0; k < ext; ++k)
      length = (length << 8) | static_cast<std::uint8_t>(b[i++]);
  }
  f.headerSize = i;
  REQUIRE(b.size() - i == length);  // exactly one frame
  f.payload = std::string(b.substr(i));
  return f;
}

}  // namespace

// ======================================================================= negotiation

TEST_SUITE("negotiateDeflate") {
  TEST_CASE("a bare offer in both modes") {
    CHECK(answer({"permessage-deflate"}) == kShared);
    CHECK(answer({"permessage-deflate"}, true) == kDedicated);
    const auto shared = negotiate({"permessage-deflate"});
    REQUIRE(shared);
    CHECK(shared->serverWindowBits == 15);
    CHECK(shared->serverNoContextTakeover);
    CHECK_FALSE(shared->serverWindowOffered);
    const auto dedicated = negotiate({"permessage-deflate"}, true);
    REQUIRE(dedicated);
    CHECK(dedicated->serverWindowBits == 15);
    CHECK_FALSE(dedicated->serverNoContextTakeover);
    CHECK_FALSE(dedicated->serverWindowOffered);
  }

  TEST_CASE("exact response strings") {
    struct Row {
      std::string_view offer;
      bool dedicated;
      int windowBits;
      std::string_view response;
    };
    const Row rows[] = {
        {"permessage-deflate", false, 15,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"permessage-deflate", true, 15, "permessage-deflate; client_no_context_takeover"},
        {"permessage-deflate; server_no_context_takeover", true, 15,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"permessage-deflate; client_no_context_takeover", true, 15,
         "permessage-deflate; client_no_context_takeover"},
        {"permessage-deflate; client_max_window_bits", false, 15,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"permessage-deflate; client_max_window_bits=10", true, 15,
         "permessage-deflate; client_no_context_takeover"},
        {"permessage-deflate", false, 12,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=12"},
        {"permessage-deflate", true, 9,
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=9"},
        {"permessage-deflate; server_max_window_bits=15", false, 15,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=15"},
        {"permessage-deflate; server_max_window_bits=10", true, 12,
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=10"},
        {"permessage-deflate; server_max_window_bits=13", true, 12,
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=12"},
        {"permessage-deflate; server_max_window_bits=9", false, 15,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9"},
        {"permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
         "client_max_window_bits; server_max_window_bits=11",
         true, 14,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=11"},
        // What Chrome and Firefox send.
        {"permessage-deflate; client_max_window_bits", true, 15,
         "permessage-deflate; client_no_context_takeover"},
    };
    for (const Row& row : rows) {
      CAPTURE(row.offer);
      CAPTURE(row.dedicated);
      CAPTURE(row.windowBits);
      CHECK(answer({row.offer}, row.dedicated, row.windowBits) == row.response);
    }
  }

  TEST_CASE("deflateResponse alone") {
    CHECK(deflateResponse({15, true, false}) == kShared);
    CHECK(deflateResponse({15, false, false}) == kDedicated);
    CHECK(deflateResponse({15, false, true}) == withWindow(kDedicated, 15));
    for (int bits = 9; bits < 15; ++bits) {
      CAPTURE(bits);
      const auto b = static_cast<std::uint8_t>(bits);
      CHECK(deflateResponse({b, true, false}) == withWindow(kShared, bits));
      CHECK(deflateResponse({b, true, true}) == withWindow(kShared, bits));
      CHECK(deflateResponse({b, false, false}) == withWindow(kDedicated, bits));
    }
  }

  // Every combination of the four parameters (absent, bare, with good and bad
  // values, quoted or not), in two orders, both modes and every configured
  // window, against the rules stated plainly here.
  TEST_CASE("every parameter combination") {
    struct Variant {
      std::string_view text;  // "" = absent
      bool valid;
      int bits;  // server_max_window_bits: the value; 0 when absent
    };
    const Variant serverReset[] = {
        {"", true, 0},
        {"server_no_context_takeover", true, 0},
        {"server_no_context_takeover=1", false, 0},
        {"server_no_context_takeover=\"\"", false, 0},
        {"server_no_context_takeover=true", false, 0},
    };
    const Variant clientReset[] = {
        {"", true, 0},
        {"client_no_context_takeover", true, 0},
        {"client_no_context_takeover=1", false, 0},
        {"client_no_context_takeover=\"x\"", false, 0},
    };
    const Variant serverWindow[] = {
        {"", true, 0},
        {"server_max_window_bits", false, 0},
        {"server_max_window_bits=8", false, 0},  // zlib cannot: declined
        {"server_max_window_bits=9", true, 9},
        {"server_max_window_bits=10", true, 10},
        {"server_max_window_bits=11", true, 11},
        {"server_max_window_bits=12", true, 12},
        {"server_max_window_bits=13", true, 13},
        {"server_max_window_bits=14", true, 14},
        {"server_max_window_bits=15", true, 15},
        {"server_max_window_bits=\"12\"", true, 12},
        {"server_max_window_bits=\"1\\3\"", true, 13},
        {"server_max_window_bits=\"\\9\"", true, 9},
        {"server_max_window_bits=16", false, 0},
        {"server_max_window_bits=7", false, 0},
        {"server_max_window_bits=0", false, 0},
        {"server_max_window_bits=010", false, 0},
        {"server_max_window_bits=09", false, 0},
        {"server_max_window_bits=100", false, 0},
        {"server_max_window_bits=-9", false, 0},
        {"server_max_window_bits=\"\"", false, 0},
        {"server_max_window_bits=\" 9\"", false, 0},
        {"server_max_window_bits=\"\\\"9\\\"\"", false, 0},
        {"server_max_window_bits=a", false, 0},
    };
    const Variant clientWindow[] = {
        {"", true, 0},
        {"client_max_window_bits", true, 0},
        {"client_max_window_bits=8", true, 0},
        {"client_max_window_bits=9", true, 0},
        {"client_max_window_bits=12", true, 0},
        {"client_max_window_bits=15", true, 0},
        {"client_max_window_bits=\"10\"", true, 0},
        {"client_max_window_bits=16", false, 0},
        {"client_max_window_bits=7", false, 0},
        {"client_max_window_bits=08", false, 0},
        {"client_max_window_bits=\"\"", false, 0},
    };
    long checked = 0;
    for (const Variant& sr : serverReset) {
      for (const Variant& cr : clientReset) {
        for (const Variant& sw : serverWindow) {
          for (const Variant& cw : clientWindow) {
            const std::string_view params[] = {sr.text, cr.text, sw.text, cw.text};
            for (bool reversed : {false, true}) {
              std::string offer = "permessage-deflate";
              for (int k = 0; k < 4; ++k) {
                const std::string_view p = params[reversed ? 3 - k : k];
                if (!p.empty()) offer.append("; ").append(p);
              }
              const std::string offerThenBare = offer + ", permessage-deflate";
              const bool valid = sr.valid && cr.valid && sw.valid && cw.valid;
              for (bool dedicated : {false, true}) {
                for (int windowBits = 9; windowBits <= 15; ++windowBits) {
                  const auto got = negotiate({offer}, dedicated, windowBits);
                  const auto fallback = negotiate({offerThenBare}, dedicated, windowBits);
                  ++checked;
                  if (!valid) {
                    if (got) {
                      CAPTURE(offer);
                      FAIL_CHECK("an invalid offer was accepted");
                    }
                    // The next offer is tried: a bare one, on our own terms.
                    const bool ok = fallback && fallback->serverWindowBits == windowBits &&
                                    fallback->serverNoContextTakeover == !dedicated &&
                                    !fallback->serverWindowOffered;
                    if (!ok) {
                      CAPTURE(offerThenBare);
                      FAIL_CHECK("the offer after an invalid one was not accepted");
                    }
                    continue;
                  }
                  const int bits = sw.bits != 0 && sw.bits < windowBits ? sw.bits : windowBits;
                  const bool weReset = !dedicated || !sr.text.empty();
                  const bool ok =
                      got && fallback && got->serverWindowBits == bits &&
                      got->serverNoContextTakeover == weReset &&
                      got->serverWindowOffered == (sw.bits != 0) &&
                      fallback->serverWindowBits == got->serverWindowBits &&
                      fallback->serverNoContextTakeover == got->serverNoContextTakeover &&
                      fallback->serverWindowOffered == got->serverWindowOffered;
                  if (!ok) {
                    CAPTURE(offer);
                    CAPTURE(dedicated);
                    CAPTURE(windowBits);
                    FAIL_CHECK("wrong agreement");
                    continue;
                  }
                  std::string expected = "permessage-deflate";
                  if (weReset) expected += "; server_no_context_takeover";
                  expected += "; client_no_context_takeover";
                  if (sw.bits != 0 || bits < 15) {
                    expected += "; server_max_window_bits=" + std::to_string(bits);
                  }
                  if (deflateResponse(*got) != expected) {
                    CAPTURE(offer);
                    CAPTURE(dedicated);
                    CAPTURE(windowBits);
                    CHECK(deflateResponse(*got) == expected);
                  }
                }
              }
            }
          }
        }
      }
    }
    CHECK(checked == 5 * 4 * 24 * 11 * 2 * 2 * 7);
  }

  TEST_CASE("a repeated parameter declines the offer") {
    const std::string_view repeated[] = {
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=12",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=10; client_max_window_bits",
        "permessage-deflate; client_max_window_bits; server_no_context_takeover; "
        "client_max_window_bits=9",
    };
    for (const std::string_view offer : repeated) {
      CAPTURE(offer);
      CHECK_FALSE(negotiate({offer}));
      CHECK_FALSE(negotiate({offer}, true));
      CHECK(answer({std::string(offer) + ", permessage-deflate"}, true) == kDedicated);
    }
  }

  TEST_CASE("the extension name ignores case; parameter names do not") {
    CHECK(answer({"PerMessage-Deflate"}) == kShared);
    CHECK(answer({"PERMESSAGE-DEFLATE; server_max_window_bits=10"}) == withWindow(kShared, 10));
    CHECK_FALSE(negotiate({"permessage-deflate; Server_No_Context_Takeover"}));
    CHECK_FALSE(negotiate({"permessage-deflate; SERVER_MAX_WINDOW_BITS=10"}));
    CHECK_FALSE(negotiate({"permessage_deflate"}));
    CHECK_FALSE(negotiate({"permessage-deflate-x"}));
    CHECK_FALSE(negotiate({"x-permessage-deflate"}));
  }

  TEST_CASE("optional whitespace around ; , and =") {
    CHECK(answer({"permessage-deflate ;server_max_window_bits = 10 ;  client_max_window_bits"}) ==
          withWindow(kShared, 10));
    CHECK(answer({"\t permessage-deflate\t;\tserver_no_context_takeover\t,\tfoo"}, true) ==
          kShared);
    CHECK(answer({"  ,  permessage-deflate  ;  server_max_window_bits=\t\"11\"  ,  "}) ==
          withWindow(kShared, 11));
  }

  TEST_CASE("several offers: the first acceptable one wins") {
    CHECK(answer({"permessage-deflate; server_max_window_bits=8, permessage-deflate"}) == kShared);
    CHECK(answer({"permessage-deflate; server_max_window_bits=10, "
                  "permessage-deflate; server_max_window_bits=12"}) == withWindow(kShared, 10));
    CHECK(answer({"permessage-deflate; server_max_window_bits=12, permessage-deflate"}, true) ==
          withWindow(kDedicated, 12));
    CHECK(answer({"permessage-deflate; foo, permessage-deflate; client_max_window_bits"}) ==
          kShared);
    CHECK(answer({"permessage-deflate; server_max_window_bits=8; client_max_window_bits, "
                  "permessage-deflate; server_max_window_bits=16, "
                  "permessage-deflate; server_no_context_takeover=1, "
                  "permessage-deflate; server_no_context_takeover"},
                 true) == kShared);
    CHECK_FALSE(
        negotiate({"permessage-deflate; server_max_window_bits=8, "
                   "permessage-deflate; server_max_window_bits=7"}));
  }

  TEST_CASE("several fields are one list, in order") {
    CHECK(answer({"x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=11"}) ==
          withWindow(kShared, 11));
    CHECK(answer({"permessage-deflate; server_max_window_bits=8",
                  "permessage-deflate; server_max_window_bits=9"}) == withWindow(kShared, 9));
    CHECK(answer({"permessage-deflate; server_max_window_bits=10",
                  "permessage-deflate; server_max_window_bits=12"}) == withWindow(kShared, 10));
    CHECK(answer({"", "foo", "", "permessage-deflate"}, true) == kDedicated);
    CHECK_FALSE(negotiate({}));
    CHECK_FALSE(negotiate({""}));
    CHECK_FALSE(negotiate({"", "   ", ","}));
  }

  TEST_CASE("other extensions are skipped") {
    CHECK(answer({"x-webkit-deflate-frame, permessage-deflate"}) == kShared);
    CHECK(answer({"deflate-frame; max_window_bits=10, permessage-deflate; "
                  "server_max_window_bits=13"}) == withWindow(kShared, 13));
    // Commas and semicolons inside another extension's quoted value are not boundaries.
    CHECK(answer({"foo; bar=\"a, permessage-deflate; server_max_window_bits=9\", "
                  "permessage-deflate; server_max_window_bits=10"}) == withWindow(kShared, 10));
    CHECK(answer({"foo; bar=\"a \\\" , b\"; baz, permessage-deflate"}) == kShared);
    CHECK_FALSE(negotiate({"foo; permessage-deflate"}));
    CHECK_FALSE(negotiate({"x-webkit-deflate-frame"}));
  }

  TEST_CASE("empty list elements are allowed") {
    CHECK(answer({", , permessage-deflate ,,"}) == kShared);
    CHECK(answer({",permessage-deflate;server_max_window_bits=14,"}) == withWindow(kShared, 14));
  }

  TEST_CASE("garbage is declined without a crash") {
    const std::string_view garbage[] = {
        "",
        ",",
        ";",
        "=",
        "\"",
        "\\",
        "\"permessage-deflate\"",
        "permessage-deflate;",
        "permessage-deflate; ",
        "permessage-deflate;;",
        "permessage-deflate;,",
        "permessage-deflate; =10",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; server_max_window_bits= ",
        "permessage-deflate; server_max_window_bits==10",
        "permessage-deflate; server_max_window_bits=10 10",
        "permessage-deflate; server_max_window_bits=1{5",
        "permessage-deflate; server_max_window_bits=\"10",
        "permessage-deflate; server_max_window_bits=\"10\\",
        "permessage-deflate; server_max_window_bits=\"10\"x",
        "permessage-deflate; server_max_window_bits=\"1\x01\"",
        "permessage-deflate; server_max_window_bits=\"1\x7f\"",
        "permessage-deflate; server_max_window_bits=\"1\\\x01\"",
        "permessage-deflate server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover client_no_context_takeover",
        "permessage-deflate=1",
        "permessage-deflate; client_max_window_bits=\"",
        "permessage-deflate; \"client_max_window_bits\"",
        "permessage-deflate(); client_max_window_bits",
        "permessage\\-deflate",
        "permessage-d\xc3\xa9"
        "flate",
        "permessage-deflate\xff",
        "permessage-deflate; server_max_window_bits=9\xff",
        "permessage-deflate; a\xff=1",
        "permessage-deflate @",
        "@ permessage-deflate",
        "permessage-deflate; client_max_window_bits=9=9",
        "permessage-deflate; server_max_window_bits=99999999999999999999",
    };
    for (const std::string_view g : garbage) {
      CAPTURE(g);
      CHECK_FALSE(negotiate({g}));
      CHECK_FALSE(negotiate({g}, true, 9));
      // Another field is read on its own, whatever this one left open.
      CHECK(answer({g, "permessage-deflate"}) == kShared);
    }
    // A NUL inside the value (string_view carries it).
    CHECK_FALSE(negotiate({std::string_view("permessage-deflate\0", 19)}));
    CHECK_FALSE(
        negotiate({std::string_view("permessage-deflate; server_no_context_takeover\0", 47)}));
  }

  TEST_CASE("after garbage, a later offer is accepted when the boundary is clear") {
    CHECK(answer({"permessage-deflate; server_max_window_bits=1{5, "
                  "permessage-deflate; server_max_window_bits=10"}) == withWindow(kShared, 10));
    CHECK(answer({"@@@, permessage-deflate"}) == kShared);
    CHECK(answer({"permessage-deflate;;, permessage-deflate"}) == kShared);
    CHECK(answer({"permessage-deflate; =, permessage-deflate"}) == kShared);
    CHECK(answer({"permessage-deflate x y z, permessage-deflate; server_max_window_bits=9"}) ==
          withWindow(kShared, 9));
    CHECK(answer({"permessage-deflate; server_max_window_bits=\"1\x01\", permessage-deflate"}) ==
          kShared);
    // A quote in the garbage opens a quoted string: the comma inside is no boundary.
    CHECK(answer({"permessage-deflate; a b=\"x, permessage-deflate\", permessage-deflate; "
                  "server_max_window_bits=11"}) == withWindow(kShared, 11));
    // An unterminated quote runs to the end of its field: nothing after it in that field.
    CHECK_FALSE(negotiate({"foo; a=\"unterminated, permessage-deflate"}));
    CHECK(answer({"foo; a=\"unterminated, permessage-deflate", "permessage-deflate"}, true) ==
          kDedicated);
  }

  TEST_CASE("random strings never crash and never agree to more than asked") {
    std::mt19937 rng(20261203);
    static constexpr std::string_view kPieces[] = {"permessage-deflate",
                                                   "PerMessage-Deflate",
                                                   "server_no_context_takeover",
                                                   "client_no_context_takeover",
                                                   "server_max_window_bits",
                                                   "client_max_window_bits",
                                                   ";",
                                                   ",",
                                                   "=",
                                                   "\"",
                                                   "\\",
                                                   " ",
                                                   "\t",
                                                   "8",
                                                   "9",
                                                   "10",
                                                   "15",
                                                   "16",
                                                   "010",
                                                   "x",
                                                   "@",
                                                   "\x01",
                                                   "\xff",
                                                   std::string_view("\0", 1)};
    for (int round = 0; round < 20000; ++round) {
      std::string s;
      const int n = static_cast<int>(rng() % 16);
      for (int k = 0; k < n; ++k) s += kPieces[rng() % std::size(kPieces)];
      const int windowBits = 9 + static_cast<int>(rng() % 7);
      const bool dedicated = (rng() & 1) != 0;
      const auto got = negotiate({s}, dedicated, windowBits);
      if (got) {
        const bool ok = got->serverWindowBits >= 9 && got->serverWindowBits <= windowBits &&
                        (dedicated || got->serverNoContextTakeover);
        if (!ok) {
          CAPTURE(s);
          FAIL_CHECK("agreement outside what was configured");
        }
      }
      if (!negotiate({s, "permessage-deflate"}, dedicated, windowBits)) {
        CAPTURE(s);
        FAIL_CHECK("a good offer in the next field was not accepted");
      }
    }
  }
}

// ======================================================================= codec

TEST_SUITE("Deflater") {
  TEST_CASE("RFC 7692 7.2.3.1: \"Hello\" is f2 48 cd c9 c9 07 00 at every level and window") {
    // zlib 1.2.13 makes the RFC's bytes at levels 1 to 9 and windows 9 to 15.
    for (int level = 1; level <= 9; ++level) {
      for (int bits = 9; bits <= 15; ++bits) {
        CAPTURE(level);
        CAPTURE(bits);
        Deflater d(bits, level, 8);
        CHECK(toHex(deflateWith(d, "Hello")) == "f248cdc9c90700");
        // Without context takeover the next message starts afresh.
        CHECK(toHex(deflateWith(d, "Hello")) == "f248cdc9c90700");
      }
    }
  }

  TEST_CASE("RFC 7692 7.2.3.2: context takeover makes the second \"Hello\" f2 00 11 00 00") {
    for (int level : {1, 6, 9}) {
      CAPTURE(level);
      Deflater d(15, level, 8);
      const std::string first = deflateWith(d, "Hello", true);
      const std::string second = deflateWith(d, "Hello", true);
      CHECK(toHex(first) == "f248cdc9c90700");
      CHECK(toHex(second) == "f200110000");
      // A receiver keeping its window reads both.
      const auto messages = zlibInflateAll({first, second});
      REQUIRE(messages.size() == 2);
      CHECK(messages[0] == "Hello");
      CHECK(messages[1] == "Hello");
      // reset() ends the takeover.
      d.reset();
      CHECK(toHex(deflateWith(d, "Hello", true)) == "f248cdc9c90700");
      // keepContext=false resets after the message.
      CHECK(toHex(deflateWith(d, "Hello", false)) == "f200110000");
      CHECK(toHex(deflateWith(d, "Hello", false)) == "f248cdc9c90700");
    }
  }

  TEST_CASE("compress appends to what is there") {
    Deflater d(15, 6, 8);
    std::string out = "head";
    REQUIRE(d.compress("Hello", out, false));
    CHECK(out == "head" + fromHex("f248cdc9c90700"));
  }

  TEST_CASE("the empty message") {
    Deflater d(15, 6, 8);
    const std::string z = deflateWith(d, "");
    CHECK(toHex(z) == "00");
    CHECK(inflated(z).empty());
    CHECK(inflated("").empty());  // an empty compressed payload reads as empty too
  }

  TEST_CASE("settings are clamped") {
    Deflater low(1, 0, 0);
    CHECK(low.windowBits() == 9);
    CHECK(low.level() == 1);
    CHECK(low.memLevel() == 1);
    Deflater high(20, 12, 12);
    CHECK(high.windowBits() == 15);
    CHECK(high.level() == 9);
    CHECK(high.memLevel() == 9);
    CHECK(toHex(deflateWith(low, "Hello")) == "f248cdc9c90700");
  }

  TEST_CASE("round trips through Inflater for windows 9 to 15") {
    const std::string messages[] = {"",
                                    "a",
                                    "Hello",
                                    prose(100'000),
                                    randomBytes(50'000, 1),
                                    hexNoise(300'000, 2),
                                    std::string(1 << 20, 'z'),
                                    randomBytes(3 << 20, 3)};
    for (int bits = 9; bits <= 15; ++bits) {
      for (int level : {1, 6, 9}) {
        Deflater d(bits, level, 8);
        for (const std::string& m : messages) {
          CAPTURE(bits);
          CAPTURE(level);
          CAPTURE(m.size());
          std::string z;
          REQUIRE(d.compress(m, z, false));
          if (m.size() >= 1000) {
            // Incompressible data grows a little, within maxCompressedBytes.
            CHECK(z.size() <= maxCompressedBytes(m.size()));
          }
          CHECK(inflated(z, m.size()) == m);  // exactly the message's size is enough
        }
      }
    }
  }

  TEST_CASE("a big message with context takeover, then a small one") {
    Deflater d(10, 6, 8);
    const std::string big = hexNoise(200'000, 9);
    const std::string first = deflateWith(d, big, true);
    const std::string second = deflateWith(d, big.substr(big.size() - 300), true);
    CHECK(second.size() < 30);  // a back-reference into the 1 KiB window
    std::string out;
    Inflater i;
    REQUIRE(i.inflate(first, out, big.size(), true) == Status::kOk);
    CHECK(out == big);
  }
}

TEST_SUITE("Inflater") {
  TEST_CASE("the RFC 7692 7.2.3 examples") {
    // 7.2.3.1, one compressed block.
    CHECK(inflated(fromHex("f248cdc9c90700")) == "Hello");
    // 7.2.3.3, a block with no compression.
    CHECK(inflated(fromHex("000500faff48656c6c6f00")) == "Hello");
    // 7.2.3.4, BFINAL set: what follows the final block is ignored.
    CHECK(inflated(fromHex("f348cdc9c90700")) == "Hello");
    CHECK(inflated(fromHex("f348cdc9c9070000")) == "Hello");
    CHECK(inflated(fromHex("f348cdc9c90700ffffffff")) == "Hello");
    {
      // ... also when it comes in later pieces.
      Inflater i;
      std::string out;
      CHECK(i.inflate(fromHex("f348cdc9c90700"), out, 5, false) == Status::kOk);
      CHECK(i.inflate(fromHex("ffff"), out, 5, false) == Status::kOk);
      CHECK(i.inflate(fromHex("f248cdc9c90700"), out, 5, true) == Status::kOk);
      CHECK(out == "Hello");
    }
    // A stored block with BFINAL set.
    CHECK(inflated(fromHex("010500faff48656c6c6f")) == "Hello");
    // 7.2.3.5, two blocks in one message.
    CHECK(inflated(fromHex("f24805000000ffffcac9c90700")) == "Hello");
    // 7.2.3.2's second message needs the first one's window, which we
    // never keep (client_no_context_takeover): a distance too far back.
    std::string out;
    Inflater i;
    CHECK(i.inflate(fromHex("f200110000"), out, 1000, true) == Status::kCorrupt);
  }

  TEST_CASE("7.2.3.1 fragmented: f2 48 cd, then c9 c9 07 00") {
    Inflater i;
    std::string out;
    CHECK(i.inflate(fromHex("f248cd"), out, 100, false) == Status::kOk);
    CHECK(i.inflate(fromHex("c9c90700"), out, 100, true) == Status::kOk);
    CHECK(out == "Hello");
    // An empty last piece.
    i.reset();
    out.clear();
    CHECK(i.inflate(fromHex("f248cdc9c90700"), out, 100, false) == Status::kOk);
    CHECK(i.inflate("", out, 100, true) == Status::kOk);
    CHECK(out == "Hello");
  }

  TEST_CASE("a message fed one byte at a time") {
    const std::string message = prose(20'000) + randomBytes(5'000, 4);
    const std::string z = clientDeflate(message, 15);
    Inflater i;
    std::string out;
    for (std::size_t k = 0; k < z.size(); ++k) {
      REQUIRE(i.inflate(std::string_view(z).substr(k, 1), out, message.size(), false) ==
              Status::kOk);
    }
    REQUIRE(i.inflate("", out, message.size(), true) == Status::kOk);
    CHECK(out == message);
  }

  TEST_CASE("client windows 8 to 15 all inflate with our 15-bit window") {
    // zlib refuses a raw deflate window of 8 (deflateInit2 with -8 fails since
    // 1.2.9; with a zlib header it silently uses 9), so a "client_max_window_bits=8"
    // zlib client sends 9-bit data: "8" is tested as 9. A true 256-byte window
    // only makes nearer distances, which any larger window reads.
    const std::string messages[] = {"Hello", prose(70'000), randomBytes(40'000, 5),
                                    hexNoise(100'000, 6) + prose(5'000) + hexNoise(9'000, 6)};
    for (int bits = 8; bits <= 15; ++bits) {
      const int zlibBits = bits == 8 ? 9 : bits;
      for (const std::string& m : messages) {
        for (int level : {1, 9}) {
          CAPTURE(bits);
          CAPTURE(level);
          CAPTURE(m.size());
          CHECK(inflated(clientDeflate(m, zlibBits, level), m.size()) == m);
        }
      }
    }
  }

  TEST_CASE("a bomb stops at the limit without allocating past it") {
    const std::string zeros(10 << 20, '\0');
    const std::string bomb = clientDeflate(zeros, 15, 9);
    CHECK(bomb.size() < 20'000);
    constexpr std::size_t kLimit = 64 * 1024;
    {
      Inflater i;
      std::string out;
      CHECK(i.inflate(bomb, out, kLimit, true) == Status::kTooBig);
      CHECK(out.size() <= kLimit);
      CHECK(out.capacity() <= 2 * kLimit);
    }
    {
      // In pieces: the piece that crosses the limit says so.
      Inflater i;
      std::string out;
      Status s = Status::kOk;
      std::size_t fed = 0;
      while (s == Status::kOk && fed < bomb.size()) {
        const std::string_view piece = std::string_view(bomb).substr(fed, 1000);
        fed += piece.size();
        s = i.inflate(piece, out, kLimit, fed == bomb.size());
        CHECK(out.size() <= kLimit);
      }
      CHECK(s == Status::kTooBig);
      CHECK(out.capacity() <= 2 * kLimit);
    }
  }

  TEST_CASE("exactly the limit is fine; one byte more is too big") {
    for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{1024}, std::size_t{65536},
                          std::size_t{100'000}, std::size_t{1} << 20}) {
      CAPTURE(n);
      for (const std::string& m : {std::string(n, 'q'), randomBytes(n, 8)}) {
        const std::string z = clientDeflate(m, 15);
        Inflater i;
        std::string out;
        CHECK(i.inflate(z, out, n, true) == Status::kOk);
        CHECK(out == m);
        out.clear();
        i.reset();
        CHECK(i.inflate(z, out, n - 1, true) == Status::kTooBig);
        CHECK(out.size() <= n - 1);
      }
    }
    // A limit of zero: the empty message fits, "Hello" does not.
    Inflater i;
    std::string out;
    CHECK(i.inflate(fromHex("00"), out, 0, true) == Status::kOk);
    i.reset();
    CHECK(i.inflate(fromHex("f248cdc9c90700"), out, 0, true) == Status::kTooBig);
    CHECK(out.empty());
  }

  TEST_CASE("the limit counts what `out` already held") {
    Inflater i;
    std::string out = "12345";
    CHECK(i.inflate(fromHex("f248cdc9c90700"), out, 10, true) == Status::kOk);
    CHECK(out == "12345Hello");
    i.reset();
    out = "123456";
    CHECK(i.inflate(fromHex("f248cdc9c90700"), out, 10, true) == Status::kTooBig);
    CHECK(out.size() <= 10);
  }

  TEST_CASE("corrupt streams") {
    const std::string corrupt[] = {
        fromHex("ff"),                        // BTYPE 11, reserved
        fromHex("fe"),                        // BTYPE 11 without BFINAL
        fromHex("000500000048656c6c6f"),      // stored: NLEN is not ~LEN
        fromHex("f200110000"),                // a distance before the start
        fromHex("f248cdc9c907000000ffffff"),  // a bad block after a good one
    };
    for (const std::string& z : corrupt) {
      CAPTURE(toHex(z));
      Inflater i;
      std::string out;
      CHECK(i.inflate(z, out, 1 << 20, true) == Status::kCorrupt);
      // reset() makes it usable again.
      i.reset();
      out.clear();
      CHECK(i.inflate(fromHex("f248cdc9c90700"), out, 100, true) == Status::kOk);
      CHECK(out == "Hello");
    }
    // Corruption found in a later piece.
    Inflater i;
    std::string out;
    CHECK(i.inflate(fromHex("f248cdc9c907000000ffff"), out, 100, false) == Status::kOk);
    CHECK(out == "Hello");
    CHECK(i.inflate(fromHex("ff"), out, 100, true) == Status::kCorrupt);
  }

  TEST_CASE("one inflater, many messages, reset between them") {
    Inflater i;
    Deflater d(12, 6, 8);
    for (int k = 0; k < 50; ++k) {
      const std::string m = prose(static_cast<std::size_t>(k) * 997) + std::to_string(k);
      std::string out;
      CHECK(inflateWhole(i, deflateWith(d, m), out, m.size()) == Status::kOk);
      CHECK(out == m);
    }
  }
}

TEST_SUITE("liveZlibStreams") {
  TEST_CASE("counts deflaters and inflaters up and down") {
    const std::size_t base = liveZlibStreams();
    {
      Deflater d(15, 6, 8);
      CHECK(liveZlibStreams() == base + 1);
      {
        Inflater i;
        CHECK(liveZlibStreams() == base + 2);
        Deflater d2(9, 1, 1);
        CHECK(liveZlibStreams() == base + 3);
      }
      CHECK(liveZlibStreams() == base + 1);
    }
    CHECK(liveZlibStreams() == base);
  }
}

TEST_SUITE("CompressionPool") {
  TEST_CASE("one shared deflater per settings, made when first needed") {
    const std::size_t base = liveZlibStreams();
    CompressionPool pool;
    CHECK(liveZlibStreams() == base);
    Deflater& a = pool.sharedDeflater(15, 6, 8);
    CHECK(liveZlibStreams() == base + 1);
    CHECK(&pool.sharedDeflater(15, 6, 8) == &a);
    CHECK(liveZlibStreams() == base + 1);
    Deflater& b = pool.sharedDeflater(12, 6, 8);
    Deflater& c = pool.sharedDeflater(15, 9, 8);
    Deflater& e = pool.sharedDeflater(15, 6, 9);
    CHECK(&b != &a);
    CHECK(&c != &a);
    CHECK(&e != &a);
    CHECK(b.windowBits() == 12);
    CHECK(c.level() == 9);
    CHECK(e.memLevel() == 9);
    CHECK(liveZlibStreams() == base + 4);
    CHECK(&pool.sharedDeflater(12, 6, 8) == &b);
    CHECK(&pool.sharedInflater() == &pool.sharedInflater());
    CHECK(liveZlibStreams() == base + 5);
    pool.trim();
    CHECK(liveZlibStreams() == base);
    // Made again on demand after a trim.
    CHECK(toHex(deflateWith(pool.sharedDeflater(15, 6, 8), "Hello")) == "f248cdc9c90700");
    CHECK(liveZlibStreams() == base + 1);
  }

  TEST_CASE("takeInflater and giveBack") {
    const std::size_t base = liveZlibStreams();
    {
      CompressionPool pool;
      std::unique_ptr<Inflater> a = pool.takeInflater();
      std::unique_ptr<Inflater> b = pool.takeInflater();
      REQUIRE(a);
      REQUIRE(b);
      CHECK(a.get() != b.get());
      CHECK(liveZlibStreams() == base + 2);
      // Given back mid-message (after a failure): reset on the way in.
      std::string out;
      CHECK(a->inflate(fromHex("f248cd"), out, 100, false) == Status::kOk);
      Inflater* const raw = a.get();
      pool.giveBack(std::move(a));
      pool.giveBack(nullptr);
      CHECK(liveZlibStreams() == base + 2);
      std::unique_ptr<Inflater> again = pool.takeInflater();
      CHECK(again.get() == raw);
      CHECK(liveZlibStreams() == base + 2);
      out.clear();
      CHECK(again->inflate(fromHex("f248cdc9c90700"), out, 100, true) == Status::kOk);
      CHECK(out == "Hello");
      pool.giveBack(std::move(again));
      pool.giveBack(std::move(b));
      CHECK(liveZlibStreams() == base + 2);
      pool.trim();
      CHECK(liveZlibStreams() == base);
      // Many given back: only a few are kept.
      std::vector<std::unique_ptr<Inflater>> many;
      for (int k = 0; k < 100; ++k) many.push_back(pool.takeInflater());
      CHECK(liveZlibStreams() == base + 100);
      for (auto& i : many) pool.giveBack(std::move(i));
      CHECK(liveZlibStreams() > base);
      CHECK(liveZlibStreams() <= base + 16);
    }
    CHECK(liveZlibStreams() == base);
  }

  TEST_CASE("trim gives back large buffers") {
    CompressionPool pool;
    pool.inflated().assign(1 << 20, 'x');
    pool.compressed().assign(1 << 20, 'y');
    pool.trim();
    CHECK(pool.inflated().capacity() < (1 << 20));
    CHECK(pool.compressed().capacity() < (1 << 20));
  }
}

TEST_SUITE("PublishFrames") {
  TEST_CASE("the compressed frame is made once per window") {
    const std::string message = prose(5'000);
    const SharedFrame plain = makeSharedFrame(WsOpcode::kText, message);
    PublishFrames frames(plain);
    CHECK(frames.plain() == plain);
    CHECK_FALSE(frames.isBinary());
    CHECK(frames.payload() == message);

    CompressionPool pool;
    Deflater& d15 = pool.sharedDeflater(15, 6, 8);
    Deflater& d10 = pool.sharedDeflater(10, 6, 8);
    const SharedFrame& a = frames.compressed(15, d15);
    REQUIRE(a);
    const std::string* first = a.get();
    CHECK(frames.compressed(15, d15).get() == first);
    CHECK(frames.compressed(15, d10).get() == first);  // made already: the deflater is not used
    const SharedFrame& b = frames.compressed(10, d10);
    REQUIRE(b);
    CHECK(b.get() != first);
    CHECK(frames.compressed(10, d10).get() == b.get());

    for (const SharedFrame* f : {&frames.compressed(15, d15), &frames.compressed(10, d10)}) {
      const Frame parsed = parseFrame(**f);
      CHECK(parsed.first == 0xC1);  // FIN, RSV1, text
      CHECK(parsed.payload.size() < message.size());
      CHECK(parsed.headerSize == frameHeaderSize(parsed.payload.size()));
      CHECK(inflated(parsed.payload, message.size()) == message);
    }
    // The shared deflater is left reset for the next user.
    CHECK(toHex(deflateWith(d15, "Hello", true)) == "f248cdc9c90700");
  }

  TEST_CASE("binary, and each header size") {
    CompressionPool pool;
    Deflater& d = pool.sharedDeflater(15, 6, 8);
    // Compressed sizes under 126, under 65536, and over.
    for (const std::string& message :
         {std::string(1000, 'b'), prose(20'000), hexNoise(300'000, 11)}) {
      CAPTURE(message.size());
      PublishFrames frames(makeSharedFrame(WsOpcode::kBinary, message));
      CHECK(frames.isBinary());
      CHECK(frames.payload() == message);
      const SharedFrame& f = frames.compressed(15, d);
      REQUIRE(f);
      const Frame parsed = parseFrame(*f);
      CHECK(parsed.first == 0xC2);  // FIN, RSV1, binary
      CHECK(parsed.headerSize == frameHeaderSize(parsed.payload.size()));
      CHECK(inflated(parsed.payload, message.size()) == message);
    }
    CHECK(parseFrame(*PublishFrames(makeSharedFrame(WsOpcode::kBinary, std::string(1000, 'b')))
                          .compressed(15, d))
              .headerSize == 2);
    CHECK(parseFrame(
              *PublishFrames(makeSharedFrame(WsOpcode::kBinary, prose(20'000))).compressed(15, d))
              .headerSize == 4);
    CHECK(parseFrame(*PublishFrames(makeSharedFrame(WsOpcode::kBinary, hexNoise(300'000, 11)))
                          .compressed(15, d))
              .headerSize == 10);
  }

  TEST_CASE("null when the payload does not shrink") {
    CompressionPool pool;
    Deflater& d = pool.sharedDeflater(15, 6, 8);
    for (const std::string& message :
         {std::string(), std::string("Hi"), randomBytes(1000, 12), randomBytes(100'000, 13)}) {
      CAPTURE(message.size());
      PublishFrames frames(makeSharedFrame(WsOpcode::kText, message));
      CHECK(frames.payload() == message);
      CHECK_FALSE(frames.compressed(15, d));
      CHECK_FALSE(frames.compressed(15, d));
      CHECK_FALSE(frames.compressed(9, d));
    }
    CHECK(toHex(deflateWith(d, "Hello")) == "f248cdc9c90700");
  }
}
