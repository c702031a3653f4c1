#include "router.h"

#include "http/token.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>

namespace spry::detail {

namespace {

constexpr char foldCase(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? char(c + 32) : c;
}

constexpr int hexValue(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in` onto the end of `out` (patterns and percentDecode;
// the matcher decodes a whole path at once, see decodeSegments).
bool appendDecoded(std::string_view in, std::string& out, bool plusIsSpace) {
  std::size_t i = 0;
  while (i < in.size()) {
    // A run of bytes that stand for themselves, appended at once.
    std::size_t j = i;
    while (j < in.size() && in[j] != '%' && in[j] != '\0' && !(plusIsSpace && in[j] == '+')) ++j;
    out.append(in.data() + i, j - i);
    if (j == in.size()) break;
    char c = in[j];
    if (c == '%') {
      if (in.size() - j < 3) return false;
      const int hi = hexValue(in[j + 1]);
      const int lo = hexValue(in[j + 2]);
      if (hi < 0 || lo < 0) return false;
      c = char(hi * 16 + lo);
      i = j + 3;
    } else if (c == '+') {
      c = ' ';
      i = j + 1;
    } else {
      return false;  // a NUL would truncate the value for any C API it reaches later
    }
    if (c == '\0') return false;
    out.push_back(c);
  }
  return true;
}

// Three-way comparison of a stored constant with a path segment. Keys are
// stored already folded when matching ignores case, so only the segment side
// is folded here, which keeps lookups free of allocation. Bytes compare as
// unsigned, like std::string, so the order agrees with the sorted insertion.
int compareKey(std::string_view key, std::string_view segment, bool fold) noexcept {
  const std::size_t n = std::min(key.size(), segment.size());
  for (std::size_t i = 0; i < n; ++i) {
    const auto a = static_cast<unsigned char>(key[i]);
    const auto b = static_cast<unsigned char>(fold ? foldCase(segment[i]) : segment[i]);
    if (a != b) return a < b ? -1 : 1;
  }
  if (key.size() == segment.size()) return 0;
  return key.size() < segment.size() ? -1 : 1;
}

struct PatternSegment {
  enum class Kind { kConstant, kParam, kStar, kCatchAll };
  Kind kind;
  std::string text;  // decoded (and folded) constant, or parameter name
};

[[noreturn]] void throwBadPattern(std::string_view pattern, std::string_view why) {
  std::string message = "spry: bad route pattern \"";
  message.append(pattern).append("\": ").append(why);
  throw std::invalid_argument(message);
}

std::vector<PatternSegment> parsePattern(std::string_view pattern, const RouterOptions& options) {
  using Kind = PatternSegment::Kind;
  if (pattern.empty() || pattern.front() != '/') throwBadPattern(pattern, "must start with '/'");
  std::vector<PatternSegment> segments;
  std::string_view rest = pattern.substr(1);
  // "/" is the root itself, not one empty segment.
  while (!rest.empty()) {
    const std::size_t slash = rest.find('/');
    const std::string_view raw = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    const bool last = slash == std::string_view::npos;
    const bool trailingSlash = !last && rest.empty();

    if (raw.empty()) throwBadPattern(pattern, "empty segment");
    if (!segments.empty() && segments.back().kind == Kind::kCatchAll) {
      throwBadPattern(pattern, "'**' must be the last segment");
    }

    if (raw == "**") {
      segments.push_back({Kind::kCatchAll, {}});
    } else if (raw == "*") {
      segments.push_back({Kind::kStar, {}});
    } else if (raw.front() == ':') {
      std::string_view name = raw.substr(1);
      if (name.empty()) throwBadPattern(pattern, "empty parameter name");
      if (name.find_first_of(":*") != std::string_view::npos) {
        throwBadPattern(pattern, "a segment mixes ':' or '*' with other text");
      }
      for (const PatternSegment& s : segments) {
        if (s.kind == Kind::kParam && s.text == name) {
          throwBadPattern(pattern, "parameter name repeated");
        }
      }
      segments.push_back({Kind::kParam, std::string(name)});
    } else {
      if (raw.find_first_of(":*") != std::string_view::npos) {
        throwBadPattern(pattern, "a segment mixes ':' or '*' with other text");
      }
      std::string text;
      if (!appendDecoded(raw, text, false)) throwBadPattern(pattern, "bad percent-escape");
      if (!options.caseSensitive) std::transform(text.begin(), text.end(), text.begin(), foldCase);
      segments.push_back({Kind::kConstant, std::move(text)});
    }

    if (trailingSlash && options.strictTrailingSlash) {
      if (segments.back().kind == Kind::kCatchAll) {
        throwBadPattern(pattern, "'**' must be the last segment");
      }
      segments.push_back({Kind::kConstant, {}});
    }
  }
  return segments;
}

// "GET, HEAD, POST": sorted and without duplicates.
std::string allowHeader(std::vector<std::string_view>& methods) {
  std::sort(methods.begin(), methods.end());
  methods.erase(std::unique(methods.begin(), methods.end()), methods.end());
  std::string out;
  for (std::string_view m : methods) {
    if (!out.empty()) out.append(", ");
    out.append(m);
  }
  return out;
}

// Eight path bytes at a time (little-endian: byte i of a word is bits 8i..8i+7).
static_assert(std::endian::native == std::endian::little, "the word scans assume little-endian");
constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
constexpr std::uint64_t kLow7 = 0x7f7f7f7f7f7f7f7fULL;

constexpr std::uint64_t repeat(char c) noexcept {
  return kOnes * static_cast<unsigned char>(c);
}

// foldCase on each byte; bytes from 0x80 up are left alone.
constexpr std::uint64_t foldWord(std::uint64_t w) noexcept {
  const std::uint64_t low = w & kLow7;
  const std::uint64_t atLeastA = low + repeat(char(0x80 - 'A'));
  const std::uint64_t aboveZ = low + repeat(char(0x80 - 'Z' - 1));
  return w | (((atLeastA & ~aboveZ & ~w) & kHigh) >> 2);
}

// A key's first bytes as a word, and the mask of the bytes that count.
// `separator` follows a key shorter than 8 bytes inside the mask, so one
// compare checks the key and that its segment ends right after it.
std::pair<std::uint64_t, std::uint64_t> keyWord(std::string_view key, char separator) noexcept {
  std::uint64_t word = 0;
  const std::size_t n = std::min<std::size_t>(key.size(), 8);
  for (std::size_t i = 0; i < n; ++i) {
    word |= std::uint64_t(static_cast<unsigned char>(key[i])) << (8 * i);
  }
  if (n == 8) return {word, ~std::uint64_t{0}};
  word |= std::uint64_t(static_cast<unsigned char>(separator)) << (8 * n);
  // n + 1 bytes count; for n == 7 that is the whole word (a shift by 64
  // would be undefined).
  return {word, ~std::uint64_t{0} >> (8 * (7 - n))};
}

// A method as two integers, so a route's method compares in two
// instructions: its size and its bytes (sizes 4 to 8 as their first and last
// four bytes, which together cover every byte; sizes 2 and 3 likewise with
// two bytes each). A method longer than 8 bytes also compares its name.
struct MethodKey {
  std::size_t size;
  std::uint64_t bytes;
};
constexpr std::size_t kAnyMethod = ~std::size_t{0};  // the size of "*"

inline MethodKey methodKey(std::string_view m) noexcept {
  const char* p = m.data();
  const std::size_t n = m.size();
  if (n >= 4) {
    std::uint32_t first;
    std::uint32_t last;
    std::memcpy(&first, p, 4);
    std::memcpy(&last, p + n - 4, 4);
    return {n, first | (std::uint64_t(last) << 32)};
  }
  if (n >= 2) {
    std::uint16_t first;
    std::uint16_t last;
    std::memcpy(&first, p, 2);
    std::memcpy(&last, p + n - 2, 2);
    return {n, first | (std::uint64_t(last) << 16)};
  }
  return {n, n == 1 ? static_cast<unsigned char>(p[0]) : 0u};
}

}  // namespace

std::string joinPaths(std::string_view prefix, std::string_view path) {
  std::string out;
  out.reserve(prefix.size() + path.size() + 2);
  auto appendSegments = [&out](std::string_view s) {
    while (!s.empty()) {
      const std::size_t slash = s.find('/');
      const std::string_view segment = s.substr(0, slash);
      if (!segment.empty()) out.append(1, '/').append(segment);
      if (slash == std::string_view::npos) break;
      s.remove_prefix(slash + 1);
    }
  };
  appendSegments(prefix);
  appendSegments(path);
  const bool pathHasSegment = path.find_first_not_of('/') != std::string_view::npos;
  if (out.empty() || (pathHasSegment && path.back() == '/')) out.push_back('/');
  return out;
}

bool percentDecode(std::string_view in, std::string& out, bool plusIsSpace) {
  out.clear();
  return appendDecoded(in, out, plusIsSpace);
}

namespace {
// Decodes the segments of `rest` into `out`, each followed by a NUL but the
// last, in one pass: runs that need nothing are copied whole. Decoding never
// lengthens text, so `out` is sized once and cut to what was written.
bool decodeSegments(std::string_view rest, std::string& out) {
  out.resize(rest.size());
  char* const begin = out.data();
  char* to = begin;
  for (std::size_t i = 0;;) {
    const std::size_t j = findFirstOf(rest, i, '/', '%', '\0');
    std::memcpy(to, rest.data() + i, j - i);
    to += j - i;
    if (j == rest.size()) break;
    if (rest[j] == '/') {
      *to++ = '\0';
      i = j + 1;
      continue;
    }
    if (rest[j] == '\0' || rest.size() - j < 3) return false;
    const int hi = hexValue(rest[j + 1]);
    const int lo = hexValue(rest[j + 2]);
    // A NUL would truncate the value for any C API it reaches later.
    if (hi < 0 || lo < 0 || (hi | lo) == 0) return false;
    *to++ = char(hi * 16 + lo);
    i = j + 3;
  }
  out.resize(std::size_t(to - begin));
  return true;
}

[[gnu::noinline]] void asterisk(const std::vector<std::string>& methods, RouteMatch& result) {
  std::vector<std::string_view> allow(methods.begin(), methods.end());
  allow.push_back("OPTIONS");
  if (std::binary_search(methods.begin(), methods.end(), "GET")) allow.push_back("HEAD");
  result.kind = RouteMatch::Kind::kAsterisk;
  result.allow = allowHeader(allow);
}
}  // namespace

struct Router::Route {
  std::string method;
  MethodKey key;  // size kAnyMethod for "*"
  bool isGet;
  std::size_t id;
  std::vector<std::string> paramNames;  // in pattern order, one per `:name`
  bool catchAll;
  std::string pattern;  // as registered, for error messages
};

// Every `:name` at one position shares a node, whatever its name, which is
// what makes "same shape, names ignored" a duplicate: both land on one node.
struct Router::Node {
  struct Constant {
    std::string key;  // decoded (and folded), never empty
    std::unique_ptr<Node> node;
  };
  // A constant as the matcher tries it: its first bytes and the separator
  // after them in one word (see keyWord).
  struct Probe {
    std::uint64_t word;
    std::uint64_t mask;
    const Node* node;
    std::size_t size;
    const std::string* key;
  };
  // Which children exist, so a level tells in one test whether anything is
  // left to try after its first choice. kManyConstants: too many to probe,
  // the node searches them instead.
  enum Kinds : unsigned {
    kConstants = 1,
    kTrailing = 2,
    kParam = 4,
    kStar = 8,
    kCatchAll = 16,
    kManyConstants = 32,
  };
  static constexpr std::size_t kMaxProbes = 8;

  std::vector<Constant> constants;  // sorted by key
  // Raw probes leave out keys holding '%' or '/': such a key never equals a
  // segment read undecoded (a raw '%' must be decoded first, a raw '/' ends
  // the segment). Decoded probes hold every key.
  struct Probes {
    std::vector<Probe> whole;    // keys under 8 bytes: the word holds key and separator
    std::vector<Probe> partial;  // longer keys: the word holds their first 8 bytes
  };
  Probes rawProbes;
  Probes decodedProbes;
  std::unique_ptr<Node> trailing;  // the empty constant: a trailing slash (strict)
  std::unique_ptr<Node> param;
  std::unique_ptr<Node> star;
  std::unique_ptr<Node> catchAll;
  std::vector<Route> routes;
  unsigned kinds = 0;

  Node& constantChild(std::string key) {
    if (key.empty()) {
      kinds |= kTrailing;
      if (!trailing) trailing = std::make_unique<Node>();
      return *trailing;
    }
    auto it = std::lower_bound(constants.begin(), constants.end(), key,
                               [](const Constant& entry, const std::string& k) {
                                 return compareKey(entry.key, k, false) < 0;
                               });
    if (it != constants.end() && it->key == key) return *it->node;
    it = constants.insert(it, {std::move(key), std::make_unique<Node>()});
    kinds |= constants.size() > kMaxProbes ? kConstants | kManyConstants : kConstants;
    Node& added = *it->node;
    rawProbes = {};
    decodedProbes = {};
    for (const Constant& c : constants) {
      const bool whole = c.key.size() < 8;
      const auto [word, mask] = keyWord(c.key, '\0');
      (whole ? decodedProbes.whole : decodedProbes.partial)
          .push_back({word, mask, c.node.get(), c.key.size(), &c.key});
      if (c.key.find_first_of("%/") != std::string::npos) continue;
      const auto [rawWord, rawMask] = keyWord(c.key, '/');
      (whole ? rawProbes.whole : rawProbes.partial)
          .push_back({rawWord, rawMask, c.node.get(), c.key.size(), &c.key});
    }
    return added;
  }
};

// One match over one input: the raw path (after its leading '/', segments
// end at '/') or, once the path turned out to hold escapes, the decoded path
// (segments end at a NUL, which no decoded segment holds, since a decoded
// one may hold a '/'). Segments are found as the walk reaches them, so the
// usual path is read once and never copied.
struct Router::Matcher {
  enum class Outcome { kMiss, kFound, kDecode };
  // Segment ends that stand for "this raw segment needs decoding first" and
  // "not looked for yet".
  static constexpr std::size_t kDecodeFirst = ~std::size_t{0};
  static constexpr std::size_t kUnknownEnd = kDecodeFirst - 1;

  // The eight bytes from `pos` (pos < size); past the end of the text they
  // read as `fill`, so the end of the text looks like a separator.
  template <char kFill>
  static std::uint64_t wordAt(const char* data, std::size_t size, std::size_t pos) noexcept {
    const std::size_t room = size - pos;
    std::uint64_t w;
    if (room >= 8) [[likely]] {
      std::memcpy(&w, data + pos, 8);
      return w;
    }
    if (size >= 8) {
      std::memcpy(&w, data + size - 8, 8);
      w >>= 8 * (8 - room);
    } else {
      w = 0;
      for (std::size_t i = 0; i < room; ++i) {
        w |= std::uint64_t(static_cast<unsigned char>(data[pos + i])) << (8 * i);
      }
    }
    return w | (repeat(kFill) << (8 * room));
  }

  // The end of the non-empty segment at `pos`, or kDecodeFirst when a raw
  // one holds a byte that needs decoding (or makes the path bad). Raw, the
  // bytes below '0' are the candidates: '/', '%' and NUL are among them, and
  // so are a few that go on ('-', '.', ...), each looked at in turn.
  template <bool kRaw>
  static std::size_t segmentEnd(const char* data, std::size_t size, std::size_t pos) noexcept {
    if constexpr (kRaw) {
      for (std::size_t at = pos;; at += 8) {
        const std::uint64_t w = wordAt<'/'>(data, size, at);
        // Exact per byte (no borrow crosses bytes): high bit clear and
        // (b & 0x7f) + 0x50 without its high bit.
        std::uint64_t below = ~(((w & kLow7) + repeat(0x50)) | w) & kHigh;
        for (; below != 0; below &= below - 1) {
          const unsigned bit = unsigned(std::countr_zero(below)) - 7;  // the byte's lowest
          const auto c = static_cast<unsigned char>(w >> bit);
          if (c == '/') return at + (bit >> 3);
          if (c == '%' || c == '\0') return kDecodeFirst;
        }
        if (size - at <= 8) return size;
      }
    } else {
      const void* nul = std::memchr(data + pos, '\0', size - pos);
      return nul ? std::size_t(static_cast<const char*>(nul) - data) : size;
    }
  }

  // A key of 8 bytes or more whose first 8 matched in the word.
  template <bool kRaw>
  [[gnu::noinline]] static bool longKeyMatches(const char* data, std::size_t size,
                                               const std::string& key, std::size_t pos,
                                               bool fold) noexcept {
    constexpr char kSeparator = kRaw ? '/' : '\0';
    const std::size_t n = key.size();
    if (n > size - pos) return false;
    if (n < size - pos && data[pos + n] != kSeparator) return false;
    for (std::size_t i = 8; i < n; ++i) {
      if ((fold ? foldCase(data[pos + i]) : data[pos + i]) != key[i]) return false;
    }
    return true;
  }

  struct Step {
    const Node* next;  // null: no such constant
    std::size_t end;   // or kDecodeFirst, or kUnknownEnd
  };

  // Only what every match needs is set here; the rest is set before it is read.
  Matcher(const Router& r, ParamViews& p, std::string_view name) noexcept
      : router(r), params(p), methodName(name), method(methodKey(name)) {}

  const Router& router;
  ParamViews& params;
  std::string_view methodName;
  MethodKey method;
  // The text walked: segment `pos` exists while pos <= size. A trailing slash
  // that is not significant is left out of `size` (so "/a/" walks as "/a").
  const char* data;
  std::size_t size;
  const Route* route;     // with kFound
  std::size_t restBegin;  // `**` value of the chosen route
  std::size_t restEnd;
  // The routes of the nodes the path reached under other methods (the
  // walk's accepts that failed): if no route matches, Allow and the ids.
  std::vector<std::string_view> allowed;
  std::vector<std::size_t> allowedIds;

  // Where the walk starts: "/" (an empty text) has no segment at all.
  std::size_t reset(const char* text, std::size_t n, char separator) noexcept {
    data = text;
    size = n;
    if (!router.options_.strictTrailingSlash && n > 0 && text[n - 1] == separator) size = n - 1;
    return n == 0 ? 1 : 0;
  }

  // The constant child named by the non-empty segment at `pos`, compared in
  // place a word at a time, which needs no segment end (a node with few
  // constants).
  template <bool kRaw, bool kFold>
  [[gnu::always_inline]] static Step probe(const char* text, std::size_t n, const Node& node,
                                           std::size_t pos) noexcept {
    constexpr char kSeparator = kRaw ? '/' : '\0';
    std::uint64_t w = wordAt<kSeparator>(text, n, pos);
    if (kFold) w = foldWord(w);
    const Node::Probes& probes = kRaw ? node.rawProbes : node.decodedProbes;
    for (const Node::Probe& p : probes.whole) {
      if (((w ^ p.word) & p.mask) == 0) return {p.node, pos + p.size};
    }
    for (const Node::Probe& p : probes.partial) {
      if (((w ^ p.word) & p.mask) == 0 && longKeyMatches<kRaw>(text, n, *p.key, pos, kFold)) {
        return {p.node, pos + p.size};
      }
    }
    return {nullptr, kUnknownEnd};
  }

  // Why the single way below stopped.
  enum class Stop {
    kEnd,      // past the last segment
    kMiss,     // at a level with nothing more to try: no route, and none reached
    kDecode,   // at a raw byte that needs decoding first
    kGeneral,  // at a level the general walk must take on
  };

  // The walk while each level leaves a single way on (a node with only a few
  // constants or only a parameter): nothing is left to come back to, so it
  // needs no recursion and no state beyond its registers.
  template <bool kFold>
  [[gnu::always_inline]] static Stop walkSingle(const Node*& node, std::size_t& pos,
                                                const char* text, std::size_t n,
                                                ParamViews& params) noexcept {
    for (; pos < n;) {
      const unsigned kinds = node->kinds;
      if (kinds == Node::kConstants) {
        // An empty segment's '/' is no key's first byte: it misses.
        const Step step = probe<true, kFold>(text, n, *node, pos);
        if (!step.next) return Stop::kMiss;
        node = step.next;
        pos = step.end + 1;
      } else if (kinds == Node::kParam) {
        const std::size_t end = segmentEnd<true>(text, n, pos);
        // Neither empty (end == pos wraps around) nor to be decoded first.
        if (end - pos - 1 >= n - pos) return end == pos ? Stop::kMiss : Stop::kDecode;
        params.emplace_back(std::string_view{}, std::string_view(text + pos, end - pos));
        node = node->param.get();
        pos = end + 1;
      } else {
        return Stop::kGeneral;
      }
    }
    if (pos > n) return Stop::kEnd;
    // The empty segment after a trailing slash.
    const unsigned kinds = node->kinds;
    return kinds == Node::kConstants || kinds == Node::kParam ? Stop::kMiss : Stop::kGeneral;
  }

  // The same for any node: many constants are searched for the segment.
  template <bool kRaw>
  [[gnu::always_inline]] Step findConstant(const char* text, std::size_t n, const Node& node,
                                           std::size_t pos) const noexcept {
    const bool fold = !router.options_.caseSensitive;
    if (!(node.kinds & Node::kManyConstants)) [[likely]] {
      return fold ? probe<kRaw, true>(text, n, node, pos) : probe<kRaw, false>(text, n, node, pos);
    }
    const std::size_t end = segmentEnd<kRaw>(text, n, pos);
    if (end == kDecodeFirst) return {nullptr, end};
    const std::string_view segment(text + pos, end - pos);
    auto it = std::lower_bound(node.constants.begin(), node.constants.end(), segment,
                               [fold](const Node::Constant& entry, std::string_view v) {
                                 return compareKey(entry.key, v, fold) < 0;
                               });
    if (it == node.constants.end() || compareKey(it->key, segment, fold) != 0) {
      return {nullptr, end};
    }
    return {it->node.get(), end};
  }

  // The route of `node` registered for exactly the request's method.
  [[gnu::always_inline]] static const Route* exactRoute(const Node& node, const MethodKey& method,
                                                        std::string_view name) noexcept {
    for (const Route& r : node.routes) {
      if (r.key.size == method.size && r.key.bytes == method.bytes &&
          (method.size <= 8 || r.method == name)) [[likely]] {
        return &r;
      }
    }
    return nullptr;
  }

  // Method-specific beats "*" on one node; HEAD borrows GET before "*" since a
  // GET handler is the closer answer to a HEAD request. A node none of whose
  // routes fits goes into Allow.
  [[gnu::always_inline]] bool accept(const Node& node) {
    route = exactRoute(node, method, methodName);
    return route != nullptr || acceptOther(node);
  }

  bool acceptOther(const Node& node) {
    const Route* any = nullptr;
    const Route* get = nullptr;
    for (const Route& r : node.routes) {
      if (r.key.size == kAnyMethod) any = &r;
      if (r.isGet) get = &r;
    }
    route = (get && methodName == "HEAD") ? get : any;
    if (route) return true;
    for (const Route& r : node.routes) {
      allowed.push_back(r.method);
      allowedIds.push_back(r.id);
      if (r.isGet) allowed.push_back("HEAD");
    }
    return false;
  }

  template <bool kRaw>
  [[gnu::noinline]] Outcome walk(const Node* node, std::size_t pos) {
    return walkFrom<kRaw>(node, pos);
  }

  // Captures go straight into `params` (values only; the names come from the
  // route found), and a failed branch truncates them back. A level with a
  // single way on continues in this loop rather than recursing, so recursion
  // happens only where a later alternative may still be needed. Its depth is
  // bounded by the deepest pattern, not by the path; and each node is entered
  // at most once per match, so backtracking costs at most the size of the tree.
  template <bool kRaw>
  [[gnu::always_inline]] Outcome walkFrom(const Node* node, std::size_t pos) {
    constexpr char kSeparator = kRaw ? '/' : '\0';
    constexpr unsigned kAfterConstant = Node::kParam | Node::kStar | Node::kCatchAll;
    // Copies the compiler may keep in registers: stores into `params` could
    // otherwise alias the members.
    const char* const text = data;
    const std::size_t n = size;
    for (;;) {
      if (pos > n) {
        if (accept(*node)) return Outcome::kFound;
        break;
      }
      const unsigned kinds = node->kinds;
      if (pos == n || text[pos] == kSeparator) [[unlikely]] {
        // Parameters and `*` never match an empty segment.
        if (!node->trailing) break;
        if (!(kinds & Node::kCatchAll)) {
          node = node->trailing.get();
          ++pos;
          continue;
        }
        const std::size_t mark = params.size();
        const Outcome o = walk<kRaw>(node->trailing.get(), pos + 1);
        if (o != Outcome::kMiss) return o;
        params.resize(mark);
        break;
      }
      std::size_t end = kUnknownEnd;
      if (kinds & Node::kConstants) {
        const Step step = findConstant<kRaw>(text, n, *node, pos);
        end = step.end;
        if (end == kDecodeFirst) [[unlikely]] {
          return Outcome::kDecode;
        }
        if (step.next) {
          if (!(kinds & kAfterConstant)) [[likely]] {
            node = step.next;
            pos = end + 1;
            continue;
          }
          const std::size_t mark = params.size();
          const Outcome o = walk<kRaw>(step.next, end + 1);
          if (o != Outcome::kMiss) return o;
          params.resize(mark);
        }
      }
      if (kinds & (Node::kParam | Node::kStar)) {
        if (end == kUnknownEnd) end = segmentEnd<kRaw>(text, n, pos);
        if (end == kDecodeFirst) [[unlikely]] {
          return Outcome::kDecode;
        }
        if (node->param) {
          const std::size_t mark = params.size();
          params.emplace_back(std::string_view{}, std::string_view(text + pos, end - pos));
          if (!(kinds & (Node::kStar | Node::kCatchAll))) [[likely]] {
            node = node->param.get();
            pos = end + 1;
            continue;
          }
          const Outcome o = walk<kRaw>(node->param.get(), end + 1);
          if (o != Outcome::kMiss) return o;
          params.resize(mark);
        }
        if (node->star) {
          if (!(kinds & Node::kCatchAll)) {
            node = node->star.get();
            pos = end + 1;
            continue;
          }
          const std::size_t mark = params.size();
          const Outcome o = walk<kRaw>(node->star.get(), end + 1);
          if (o != Outcome::kMiss) return o;
          params.resize(mark);
        }
      }
      break;
    }
    if (node->catchAll && accept(*node->catchAll)) {
      restBegin = restEnd = pos;
      if (pos <= n) {
        restEnd = n;
        if (kRaw && findFirstOf({text, n}, pos, '%', '\0', '\0') != n) return Outcome::kDecode;
      }
      return Outcome::kFound;
    }
    return Outcome::kMiss;
  }

  // Everything but the usual match, out of its way: the general walk from
  // where the single way stopped, a path with escapes, and failures.
  [[gnu::noinline]] static void finish(const Router& router, ParamViews& params,
                                       std::string_view method, const Node* node, std::size_t pos,
                                       Stop stop, std::string_view path, RouteMatch& result,
                                       std::string& decoded) {
    // A raw miss read only part of the path: it stands if nothing in the
    // path needs decoding.
    const std::string_view rest = path.substr(1);
    auto plain = [rest] { return findFirstOf(rest, 0, '%', '\0', '\0') == rest.size(); };
    if (stop == Stop::kMiss && plain()) {
      params.clear();
      result.kind = RouteMatch::Kind::kNotFound;
      return;
    }
    Matcher m(router, params, method);
    m.reset(rest.data(), rest.size(), '/');
    Outcome raw = stop == Stop::kMiss ? Outcome::kMiss : Outcome::kDecode;
    if (stop == Stop::kEnd || stop == Stop::kGeneral) raw = m.walk<true>(node, pos);
    if (raw == Outcome::kFound) {
      m.found(result);
      return;
    }
    if (raw == Outcome::kMiss && plain()) {
      m.missed(result);
      return;
    }
    params.clear();
    m.allowed.clear();
    m.allowedIds.clear();
    if (!decodeSegments(rest, decoded)) {
      result.kind = RouteMatch::Kind::kBadPath;
      return;
    }
    if (m.walk<false>(router.root_.get(), m.reset(decoded.data(), decoded.size(), '\0')) !=
        Outcome::kFound) {
      m.missed(result);
      return;
    }
    // The `**` value joins its segments with '/', as sent.
    if (m.route->catchAll) {
      std::replace(decoded.begin() + std::ptrdiff_t(m.restBegin),
                   decoded.begin() + std::ptrdiff_t(m.restEnd), '\0', '/');
    }
    m.found(result);
  }

  void missed(RouteMatch& result) {
    params.clear();
    if (allowed.empty()) {
      result.kind = RouteMatch::Kind::kNotFound;
      return;
    }
    result.kind = RouteMatch::Kind::kMethodNotAllowed;
    result.allow = allowHeader(allowed);
    result.allowedRoutes = std::move(allowedIds);
  }

  void found(RouteMatch& result) {
    result.kind = RouteMatch::Kind::kFound;
    result.routeId = route->id;
    auto* out = params.data();
    for (const std::string& name : route->paramNames) (out++)->first = name;
    if (route->catchAll) [[unlikely]] {
      params.emplace_back("**", std::string_view(data + restBegin, restEnd - restBegin));
    }
  }
};

Router::Router(RouterOptions options) : options_(options), root_(std::make_unique<Node>()) {}
Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

void Router::add(std::string_view method, std::string_view pattern, std::size_t routeId) {
  using Kind = PatternSegment::Kind;
  if (method.empty()) throwBadPattern(pattern, "empty method");
  std::vector<PatternSegment> segments = parsePattern(pattern, options_);

  Node* node = root_.get();
  std::vector<std::string> names;
  bool catchAll = false;
  auto child = [](Node& parent, std::unique_ptr<Node>& slot, unsigned kind) -> Node& {
    parent.kinds |= kind;
    if (!slot) slot = std::make_unique<Node>();
    return *slot;
  };
  for (PatternSegment& segment : segments) {
    switch (segment.kind) {
      case Kind::kConstant:
        node = &node->constantChild(std::move(segment.text));
        break;
      case Kind::kParam:
        names.push_back(std::move(segment.text));
        node = &child(*node, node->param, Node::kParam);
        break;
      case Kind::kStar:
        node = &child(*node, node->star, Node::kStar);
        break;
      case Kind::kCatchAll:
        catchAll = true;
        node = &child(*node, node->catchAll, Node::kCatchAll);
        break;
    }
  }

  for (const Route& r : node->routes) {
    if (r.method == method) {
      std::string message = "spry: route ";
      message.append(method).append(" ").append(pattern);
      message.append(" is already registered (as ").append(r.pattern).append(")");
      throw std::invalid_argument(message);
    }
  }
  MethodKey key{kAnyMethod, 0};
  if (method != "*") {
    key = methodKey(method);
    auto it = std::lower_bound(methods_.begin(), methods_.end(), method);
    if (it == methods_.end() || *it != method) methods_.emplace(it, method);
  }
  node->routes.push_back({std::string(method), key, method == "GET", routeId, std::move(names),
                          catchAll, std::string(pattern)});
}

void Router::match(std::string_view method, std::string_view path, RouteMatch& result,
                   ParamViews& params, std::string& decoded) const {
  params.clear();
  if (path.size() == 1 && path[0] == '*' && method == "OPTIONS") [[unlikely]] {
    asterisk(methods_, result);
    return;
  }
  if (path.empty() || path.front() != '/') {
    result.kind = RouteMatch::Kind::kBadPath;
    return;
  }

  // The usual path takes a single way at each level down to a route for
  // exactly the request's method; anything else continues in the general
  // walk from where that stopped, which decides alike.
  const std::string_view rest = path.substr(1);
  const char* const text = rest.data();
  const std::size_t start = rest.empty() ? 1 : 0;  // "/" has no segment at all
  std::size_t n = rest.size();
  if (!options_.strictTrailingSlash && n > 0 && text[n - 1] == '/') --n;
  const Node* node = root_.get();
  std::size_t pos = start;
  const Matcher::Stop stop = options_.caseSensitive
                                 ? Matcher::walkSingle<false>(node, pos, text, n, params)
                                 : Matcher::walkSingle<true>(node, pos, text, n, params);
  if (stop == Matcher::Stop::kEnd) {
    if (const Route* route = Matcher::exactRoute(*node, methodKey(method), method)) {
      result.kind = RouteMatch::Kind::kFound;
      result.routeId = route->id;
      auto* out = params.data();
      for (const std::string& name : route->paramNames) (out++)->first = name;
      return;
    }
  }
  Matcher::finish(*this, params, method, node, pos, stop, path, result, decoded);
}

RouteMatchCopy Router::match(std::string_view method, std::string_view path) const {
  RouteMatchCopy out;
  ParamViews params;
  std::string decoded;
  match(method, path, out, params, decoded);
  for (const auto& [name, value] : params) out.params.emplace_back(name, value);
  return out;
}

}  // namespace spry::detail
