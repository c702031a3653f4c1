#pragma once
// Path router: patterns of constant, `:name`, `*` and `**` segments, matched
// per method. Protocol-free: it maps (method, raw path) to a route id chosen
// by the caller, so it can be unit-tested and fuzzed alone.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spry::detail {

struct RouterOptions {
  bool caseSensitive = true;        // constants compared exactly (Spry's default)
  bool strictTrailingSlash = true;  // "/a/" and "/a" are different paths (Spry's default)
};

// Joins a group prefix and a path: split both on '/', drop empty segments,
// concatenate, lead with '/'. joinPaths("users", "/") == "/users",
// joinPaths("/", "") == "/", joinPaths("a/", "/b/") == "/a/b" (a trailing slash
// of `path` is kept: joinPaths("a", "b/") == "/a/b/").
std::string joinPaths(std::string_view prefix, std::string_view path);

// Percent-decodes one path segment or query component into `out`, replacing
// its contents. Returns false on a bad escape (`%zz`, `%4`) or a NUL, raw or
// decoded; `out` is then unspecified. `plusIsSpace` is for query strings.
bool percentDecode(std::string_view in, std::string& out, bool plusIsSpace = false);

struct RouteMatch {
  enum class Kind {
    kFound,             // routeId and params are set
    kNotFound,          // no pattern matches the path (404)
    kMethodNotAllowed,  // the path matches under other methods (405); allow is set
    kBadPath,           // bad percent-encoding in the path (400)
    kAsterisk,          // OPTIONS with the target `*` (RFC 9110 9.3.7): about the
                        // server, not a resource; allow lists every method registered
  };
  Kind kind = Kind::kNotFound;
  std::size_t routeId = 0;
  std::string allow;  // "GET, HEAD, POST": sorted, comma+space separated, for the Allow header
  // kMethodNotAllowed: the ids of the routes the path reached under other
  // methods (unsorted), so the caller can run the middleware they share.
  std::vector<std::size_t> allowedRoutes;
};

// Decoded parameter values by name, in pattern order; `*` segments are not
// listed; a `**` catch-all is listed under the name "**" with the decoded
// rest of the path joined by '/' (may be empty).
using ParamViews = std::vector<std::pair<std::string_view, std::string_view>>;

// A match with its parameters copied (tests, tools).
struct RouteMatchCopy : RouteMatch {
  std::vector<std::pair<std::string, std::string>> params;
};

class Router {
 public:
  explicit Router(RouterOptions options = {});
  ~Router();
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;

  // Registers `pattern` for `method` ("GET", "POST", ...; "*" means every
  // method) under `routeId`. Throws std::invalid_argument whose message names
  // the pattern when the pattern is malformed (no leading '/', an empty
  // segment other than a trailing slash, `**` not last, empty parameter name,
  // a parameter name repeated, a segment mixing ':' or '*' with other text, a
  // bad percent-escape) or when the same method and pattern shape (parameter
  // names ignored) is already registered. Constants are percent-decoded, so
  // "%3A" spells a literal ':'. Parameters and `*` never match an empty
  // segment.
  void add(std::string_view method, std::string_view pattern, std::size_t routeId);

  // Matches a raw (still percent-encoded) path without query string. Splits on
  // '/' before decoding, so "%2F" stays inside its segment. A path that does
  // not start with '/' or holds a bad escape is kBadPath, except `*` with
  // OPTIONS, which is kAsterisk (its allow: every registered method, HEAD
  // with GET, and OPTIONS). Priority per segment: constant, then parameter,
  // then `*`, then `**`, with backtracking.
  // A HEAD request falls back to the GET route; a route registered for "*"
  // matches any method, after method-specific routes of the same pattern.
  //
  // The parameters are views: names into the router, values into `path`, or
  // into `decoded` when the path holds escapes. Neither `params` nor
  // `decoded` allocates once they have the capacity of earlier matches.
  void match(std::string_view method, std::string_view path, RouteMatch& result, ParamViews& params,
             std::string& decoded) const;
  RouteMatchCopy match(std::string_view method, std::string_view path) const;

  const RouterOptions& options() const noexcept { return options_; }

 private:
  struct Node;
  struct Route;
  struct Matcher;

  RouterOptions options_;
  std::unique_ptr<Node> root_;
  std::vector<std::string> methods_;  // sorted, without "*": for OPTIONS *
};

}  // namespace spry::detail
