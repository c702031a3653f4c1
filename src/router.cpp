#include "router.h"

#include "http/token.h"

#include <algorithm>
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

// Appends rather than assigns so the matcher can decode every segment of a
// path into one buffer, which makes the `**` value a plain substring of it.
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

struct Router::Route {
  std::string method;
  std::size_t id;
  std::vector<std::string> paramNames;  // in pattern order, one per `:name`
  bool catchAll;
  std::string pattern;  // as registered, for error messages
};

// Every `:name` at one position shares a node, whatever its name, which is
// what makes "same shape, names ignored" a duplicate: both land on one node.
struct Router::Node {
  std::vector<std::pair<std::string, std::unique_ptr<Node>>> constants;  // sorted by key
  std::unique_ptr<Node> param;
  std::unique_ptr<Node> star;
  std::unique_ptr<Node> catchAll;
  std::vector<Route> routes;

  const Node* findConstant(std::string_view segment, bool fold) const noexcept {
    if (constants.size() <= 8) {
      // A few keys: a scan that compares sizes first beats a binary search.
      for (const auto& [key, node] : constants) {
        if (key.size() != segment.size()) continue;
        if (fold ? compareKey(key, segment, true) == 0 : key == segment) return node.get();
      }
      return nullptr;
    }
    auto it = std::lower_bound(constants.begin(), constants.end(), segment,
                               [fold](const auto& entry, std::string_view s) {
                                 return compareKey(entry.first, s, fold) < 0;
                               });
    if (it == constants.end() || compareKey(it->first, segment, fold) != 0) return nullptr;
    return it->second.get();
  }

  Node& constantChild(std::string key) {
    auto it = std::lower_bound(constants.begin(), constants.end(), key,
                               [](const auto& entry, const std::string& k) {
                                 return compareKey(entry.first, k, false) < 0;
                               });
    if (it == constants.end() || it->first != key) {
      it = constants.emplace(it, std::move(key), std::make_unique<Node>());
    }
    return *it->second;
  }
};

namespace {
// A stack of views that holds its first kInline on the stack: a path's
// segments and a route's captures, without an allocation per request.
class ViewStack {
 public:
  static constexpr std::size_t kInline = 16;
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::string_view operator[](std::size_t i) const noexcept {
    if (i < kInline) return {inline_[i].data, inline_[i].size};
    return more_[i - kInline];
  }
  std::string_view back() const noexcept { return (*this)[size_ - 1]; }
  void push_back(std::string_view v) {
    if (size_ < kInline) {
      inline_[size_] = {v.data(), v.size()};
    } else {
      more_.push_back(v);
    }
    ++size_;
  }
  void emplace_back(const char* data, std::size_t size) { push_back({data, size}); }
  void pop_back() noexcept {
    --size_;
    if (size_ >= kInline) more_.pop_back();
  }
  void clear() noexcept {
    size_ = 0;
    more_.clear();
  }

 private:
  // Left uninitialized (a match builds one per request): only [0, size_)
  // is ever read.
  struct Slot {
    const char* data;
    std::size_t size;
  };
  Slot inline_[kInline];
  std::vector<std::string_view> more_;
  std::size_t size_ = 0;
};
}  // namespace

struct Router::MatchState {
  std::string_view method;
  ViewStack segments;                     // decoded, views into one buffer
  ViewStack captures;                     // `:name` values along the current branch
  std::vector<std::string_view> allowed;  // methods seen on nodes the path reached
  std::vector<std::size_t> allowedIds;    // and the routes that carry them
  const Route* route = nullptr;
  std::string_view rest;  // `**` value of the chosen route

  // Method-specific beats "*" on one node; HEAD borrows GET before "*" since a
  // GET handler is the closer answer to a HEAD request.
  bool accept(const Node& node) {
    const Route* any = nullptr;
    const Route* get = nullptr;
    for (const Route& r : node.routes) {
      if (r.method == method) {
        route = &r;
        return true;
      }
      if (r.method == "*") any = &r;
      if (r.method == "GET") get = &r;
    }
    route = (method == "HEAD" && get) ? get : any;
    if (route) return true;
    for (const Route& r : node.routes) {
      allowed.push_back(r.method);
      allowedIds.push_back(r.id);
      if (r.method == "GET") allowed.push_back("HEAD");
    }
    return false;
  }

  std::string_view restFrom(std::size_t depth) const noexcept {
    if (depth == segments.size()) return {};
    const char* begin = segments[depth].data();
    const char* end = segments.back().data() + segments.back().size();
    return {begin, std::size_t(end - begin)};
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
  auto child = [](std::unique_ptr<Node>& slot) -> Node& {
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
        node = &child(node->param);
        break;
      case Kind::kStar:
        node = &child(node->star);
        break;
      case Kind::kCatchAll:
        catchAll = true;
        node = &child(node->catchAll);
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
  node->routes.push_back(
      {std::string(method), routeId, std::move(names), catchAll, std::string(pattern)});
  if (method != "*") {
    auto it = std::lower_bound(methods_.begin(), methods_.end(), method);
    if (it == methods_.end() || *it != method) methods_.emplace(it, method);
  }
}

// Recursion follows the tree, so its depth is bounded by the deepest pattern,
// not by the path; and each node is entered at most once per match, so
// backtracking costs at most the size of the tree.
bool Router::walk(const Node& node, std::size_t depth, MatchState& state) const {
  if (depth == state.segments.size()) {
    if (state.accept(node)) return true;
  } else {
    const std::string_view segment = state.segments[depth];
    if (const Node* next = node.findConstant(segment, !options_.caseSensitive)) {
      if (walk(*next, depth + 1, state)) return true;
    }
    if (!segment.empty()) {
      if (node.param) {
        state.captures.push_back(segment);
        if (walk(*node.param, depth + 1, state)) return true;
        state.captures.pop_back();
      }
      if (node.star && walk(*node.star, depth + 1, state)) return true;
    }
  }
  if (node.catchAll && state.accept(*node.catchAll)) {
    state.rest = state.restFrom(depth);
    return true;
  }
  return false;
}

void Router::match(std::string_view method, std::string_view path, RouteMatch& result,
                   ParamViews& params, std::string& decoded) const {
  params.clear();
  if (path == "*" && method == "OPTIONS") {
    std::vector<std::string_view> allow(methods_.begin(), methods_.end());
    allow.push_back("OPTIONS");
    if (std::binary_search(methods_.begin(), methods_.end(), "GET")) allow.push_back("HEAD");
    result.kind = RouteMatch::Kind::kAsterisk;
    result.allow = allowHeader(allow);
    return;
  }
  if (path.empty() || path.front() != '/') {
    result.kind = RouteMatch::Kind::kBadPath;
    return;
  }

  MatchState state;
  state.method = method;
  std::string_view rest = path.substr(1);
  // One pass splits the path and looks for what needs decoding; nothing to
  // decode (the usual case) leaves the segments as views of the path.
  bool plain = true;
  if (!rest.empty()) {
    for (std::size_t start = 0;;) {
      const std::size_t stop = findFirstOf(rest, start, '/', '%', '\0');
      if (stop < rest.size() && rest[stop] != '/') {
        plain = false;
        break;
      }
      state.segments.push_back(rest.substr(start, stop - start));
      if (stop == rest.size()) break;
      start = stop + 1;
    }
  }
  if (!plain) {
    // Decoding never lengthens text, so with this capacity the buffer never
    // reallocates and the segment views taken while filling it stay valid.
    state.segments.clear();
    decoded.clear();
    decoded.reserve(path.size());
    for (;;) {
      const std::size_t slash = rest.find('/');
      const std::size_t start = decoded.size();
      if (!appendDecoded(rest.substr(0, slash), decoded, false)) {
        result.kind = RouteMatch::Kind::kBadPath;
        return;
      }
      state.segments.emplace_back(decoded.data() + start, decoded.size() - start);
      if (slash == std::string_view::npos) break;
      decoded.push_back('/');
      rest.remove_prefix(slash + 1);
    }
  }
  if (!options_.strictTrailingSlash && !state.segments.empty() && state.segments.back().empty()) {
    state.segments.pop_back();
  }

  if (!walk(*root_, 0, state)) {
    if (state.allowed.empty()) {
      result.kind = RouteMatch::Kind::kNotFound;
      return;
    }
    result.kind = RouteMatch::Kind::kMethodNotAllowed;
    result.allow = allowHeader(state.allowed);
    result.allowedRoutes = std::move(state.allowedIds);
    return;
  }

  const Route& route = *state.route;
  result.kind = RouteMatch::Kind::kFound;
  result.routeId = route.id;
  for (std::size_t i = 0; i < route.paramNames.size(); ++i) {
    params.emplace_back(route.paramNames[i], state.captures[i]);
  }
  if (route.catchAll) params.emplace_back("**", state.rest);
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
