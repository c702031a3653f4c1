#include "router.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <stdexcept>
#include <string>

using spry::detail::joinPaths;
using spry::detail::percentDecode;
using spry::detail::RouteMatch;
using spry::detail::RouteMatchCopy;
using spry::detail::Router;
using spry::detail::RouterOptions;
using Kind = RouteMatch::Kind;
using Params = std::vector<std::pair<std::string, std::string>>;

namespace {

// The route id a path reaches, or a negative code for the other outcomes, so
// priority tables read as one CHECK per line.
long idOf(const Router& r, std::string_view method, std::string_view path) {
  const RouteMatchCopy m = r.match(method, path);
  switch (m.kind) {
    case Kind::kFound:
      return long(m.routeId);
    case Kind::kNotFound:
      return -404;
    case Kind::kMethodNotAllowed:
      return -405;
    case Kind::kBadPath:
      return -400;
    case Kind::kAsterisk:
      return -200;
  }
  return -1;
}

std::string addError(Router& r, std::string_view method, std::string_view pattern) {
  try {
    r.add(method, pattern, 99);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

// A brute-force reference for the differential test: among the routes whose
// pattern fits the path and whose method accepts the request, the winner has
// the lexicographically smallest per-segment rank (constant 0, parameter 1,
// `*` 2, `**` 3; a shorter rank list before its extensions).
struct RefRoute {
  std::string method;
  std::vector<std::string> segments;
  std::size_t id;
};

bool refFits(const RefRoute& route, const std::vector<std::string>& path) {
  std::size_t i = 0;
  for (const std::string& s : route.segments) {
    if (s == "**") return true;
    if (i == path.size()) return false;
    if (s == "*" || s[0] == ':') {
      if (path[i].empty()) return false;
    } else if (s != path[i]) {
      return false;
    }
    ++i;
  }
  return i == path.size();
}

std::vector<int> refRank(const RefRoute& route) {
  std::vector<int> rank;
  for (const std::string& s : route.segments) {
    rank.push_back(s == "**" ? 3 : s == "*" ? 2 : s[0] == ':' ? 1 : 0);
  }
  return rank;
}

int refMethodRank(const RefRoute& route, std::string_view method) {
  if (route.method == method) return 0;
  if (method == "HEAD" && route.method == "GET") return 1;
  if (route.method == "*") return 2;
  return -1;
}

}  // namespace

TEST_SUITE("joinPaths") {
  TEST_CASE("cases from the header") {
    CHECK(joinPaths("users", "/") == "/users");
    CHECK(joinPaths("/", "") == "/");
    CHECK(joinPaths("a/", "/b/") == "/a/b/");
    CHECK(joinPaths("a", "b/") == "/a/b/");
  }
  TEST_CASE("empty segments are dropped, the lead slash is added") {
    CHECK(joinPaths("", "") == "/");
    CHECK(joinPaths("", "/") == "/");
    CHECK(joinPaths("//", "//") == "/");
    CHECK(joinPaths("a", "") == "/a");
    CHECK(joinPaths("a/", "") == "/a");
    CHECK(joinPaths("/a//b/", "c") == "/a/b/c");
    CHECK(joinPaths("", "x") == "/x");
    CHECK(joinPaths("/api", "/users/:id") == "/api/users/:id");
    CHECK(joinPaths("api", "**") == "/api/**");
  }
  TEST_CASE("only a trailing slash of the path is kept, once") {
    CHECK(joinPaths("a/", "b") == "/a/b");
    CHECK(joinPaths("a", "b//") == "/a/b/");
    CHECK(joinPaths("a", "//") == "/a");
    CHECK(joinPaths("", "b/") == "/b/");
  }
}

TEST_SUITE("percentDecode") {
  TEST_CASE("plain text is copied and replaces out") {
    std::string out = "old";
    CHECK(percentDecode("abc", out));
    CHECK(out == "abc");
    CHECK(percentDecode("", out));
    CHECK(out.empty());
  }
  TEST_CASE("escapes, either case of hex digit") {
    std::string out;
    CHECK(percentDecode("a%20b%2fc%2Fd", out));
    CHECK(out == "a b/c/d");
    CHECK(percentDecode("%C3%A9", out));
    CHECK(out == "\xC3\xA9");
    CHECK(percentDecode("%25", out));
    CHECK(out == "%");
    CHECK(percentDecode("%ff", out));
    CHECK(out == "\xFF");
  }
  TEST_CASE("plus is a space only for query strings") {
    std::string out;
    CHECK(percentDecode("a+b", out));
    CHECK(out == "a+b");
    CHECK(percentDecode("a+b%2B", out, true));
    CHECK(out == "a b+");
  }
  TEST_CASE("bad escapes and NULs fail") {
    std::string out;
    CHECK_FALSE(percentDecode("%", out));
    CHECK_FALSE(percentDecode("%4", out));
    CHECK_FALSE(percentDecode("a%4", out));
    CHECK_FALSE(percentDecode("%zz", out));
    CHECK_FALSE(percentDecode("%g0", out));
    CHECK_FALSE(percentDecode("%0g", out));
    CHECK_FALSE(percentDecode("%00", out));
    CHECK_FALSE(percentDecode(std::string_view("a\0b", 3), out));
    CHECK_FALSE(percentDecode("%%20", out));
  }
}

TEST_SUITE("router") {
  TEST_CASE("constants") {
    Router r;
    r.add("GET", "/", 1);
    r.add("GET", "/users", 2);
    r.add("GET", "/users/all", 3);
    CHECK(idOf(r, "GET", "/") == 1);
    CHECK(idOf(r, "GET", "/users") == 2);
    CHECK(idOf(r, "GET", "/users/all") == 3);
    CHECK(idOf(r, "GET", "/user") == -404);
    CHECK(idOf(r, "GET", "/users/al") == -404);
    CHECK(idOf(r, "GET", "/users/all/x") == -404);
    CHECK(idOf(r, "GET", "/Users") == -404);
    CHECK(r.match("GET", "/users").params.empty());
  }

  TEST_CASE("many constants at one level are all found") {
    Router r;
    for (std::size_t i = 0; i < 300; ++i) r.add("GET", "/c" + std::to_string(i), i);
    for (std::size_t i = 0; i < 300; ++i)
      CHECK(idOf(r, "GET", "/c" + std::to_string(i)) == long(i));
    CHECK(idOf(r, "GET", "/c300") == -404);
    CHECK(idOf(r, "GET", "/c") == -404);
  }

  TEST_CASE("parameters are decoded and listed in pattern order") {
    Router r;
    r.add("GET", "/users/:id/posts/:post", 1);
    const RouteMatchCopy m = r.match("GET", "/users/j%C3%B6rg/posts/a%20b");
    REQUIRE(m.kind == Kind::kFound);
    CHECK(m.routeId == 1);
    CHECK(m.params == Params{{"id", "j\xC3\xB6rg"}, {"post", "a b"}});
  }

  TEST_CASE("%2F stays inside its parameter") {
    Router r;
    r.add("GET", "/files/:name", 1);
    r.add("GET", "/files/:dir/:name", 2);
    const RouteMatchCopy m = r.match("GET", "/files/a%2Fb");
    REQUIRE(m.kind == Kind::kFound);
    CHECK(m.routeId == 1);
    CHECK(m.params == Params{{"name", "a/b"}});
    CHECK(idOf(r, "GET", "/files/a/b") == 2);
  }

  TEST_CASE("constants are compared after decoding, on both sides") {
    Router r;
    r.add("GET", "/hello world", 1);
    r.add("GET", "/a%3Ab", 2);
    r.add("GET", "/x%2Fy", 3);
    CHECK(idOf(r, "GET", "/hello%20world") == 1);
    CHECK(idOf(r, "GET", "/a:b") == 2);
    CHECK(idOf(r, "GET", "/a%3ab") == 2);
    CHECK(idOf(r, "GET", "/x%2Fy") == 3);
    CHECK(idOf(r, "GET", "/x/y") == -404);
  }

  TEST_CASE("parameters and * never match an empty segment") {
    Router r;
    r.add("GET", "/a/:p/b", 1);
    r.add("GET", "/c/*/d", 2);
    CHECK(idOf(r, "GET", "/a/x/b") == 1);
    CHECK(idOf(r, "GET", "/a//b") == -404);
    CHECK(idOf(r, "GET", "/c/x/d") == 2);
    CHECK(idOf(r, "GET", "/c//d") == -404);
  }

  TEST_CASE("* matches one segment and is not listed") {
    Router r;
    r.add("GET", "/img/*/:size", 1);
    const RouteMatchCopy m = r.match("GET", "/img/anything/big");
    REQUIRE(m.kind == Kind::kFound);
    CHECK(m.params == Params{{"size", "big"}});
    CHECK(idOf(r, "GET", "/img/a/b/big") == -404);
    CHECK(idOf(r, "GET", "/img/big") == -404);
  }

  TEST_CASE("** matches zero or more segments") {
    Router r;
    r.add("GET", "/static/**", 1);
    RouteMatchCopy m = r.match("GET", "/static");
    REQUIRE(m.kind == Kind::kFound);
    CHECK(m.params == Params{{"**", ""}});
    m = r.match("GET", "/static/a");
    CHECK(m.params == Params{{"**", "a"}});
    m = r.match("GET", "/static/a/b/c%20d");
    CHECK(m.params == Params{{"**", "a/b/c d"}});
    m = r.match("GET", "/static/a%2Fb/c");
    CHECK(m.params == Params{{"**", "a/b/c"}});
    m = r.match("GET", "/static/a//b/");
    CHECK(m.params == Params{{"**", "a//b/"}});
    CHECK(idOf(r, "GET", "/stat") == -404);
    CHECK(idOf(r, "GET", "/") == -404);
  }

  TEST_CASE("** at the root catches everything, after other routes") {
    Router r;
    r.add("GET", "/**", 1);
    r.add("GET", "/api/:v", 2);
    CHECK(idOf(r, "GET", "/") == 1);
    CHECK(idOf(r, "GET", "/api/3") == 2);
    CHECK(r.match("GET", "/api").params == Params{{"**", "api"}});
    CHECK(r.match("GET", "/api/3/x").params == Params{{"**", "api/3/x"}});
  }

  TEST_CASE("** after parameters lists both") {
    Router r;
    r.add("GET", "/repo/:owner/:name/**", 1);
    const RouteMatchCopy m = r.match("GET", "/repo/me/spry/src/router.cpp");
    REQUIRE(m.kind == Kind::kFound);
    CHECK(m.params == Params{{"owner", "me"}, {"name", "spry"}, {"**", "src/router.cpp"}});
  }

  TEST_CASE("priority per segment: constant, parameter, *, **") {
    Router r;
    r.add("GET", "/p/new", 1);
    r.add("GET", "/p/:id", 2);
    r.add("GET", "/p/*", 3);
    r.add("GET", "/p/**", 4);
    CHECK(idOf(r, "GET", "/p/new") == 1);
    CHECK(idOf(r, "GET", "/p/7") == 2);
    CHECK(idOf(r, "GET", "/p/7/8") == 4);
    CHECK(idOf(r, "GET", "/p") == 4);

    Router s;
    s.add("GET", "/p/*", 3);
    s.add("GET", "/p/**", 4);
    CHECK(idOf(s, "GET", "/p/7") == 3);
    CHECK(idOf(s, "GET", "/p/7/8") == 4);
  }

  TEST_CASE("priority does not depend on registration order") {
    Router r;
    r.add("GET", "/p/**", 4);
    r.add("GET", "/p/*", 3);
    r.add("GET", "/p/:id", 2);
    r.add("GET", "/p/new", 1);
    CHECK(idOf(r, "GET", "/p/new") == 1);
    CHECK(idOf(r, "GET", "/p/7") == 2);
    CHECK(idOf(r, "GET", "/p/7/8") == 4);
  }

  TEST_CASE("backtracking from a constant to a parameter") {
    Router r;
    r.add("GET", "/users/new/x", 1);
    r.add("GET", "/users/:id/edit", 2);
    CHECK(idOf(r, "GET", "/users/new/x") == 1);
    const RouteMatchCopy m = r.match("GET", "/users/new/edit");
    REQUIRE(m.kind == Kind::kFound);
    CHECK(m.routeId == 2);
    CHECK(m.params == Params{{"id", "new"}});
  }

  TEST_CASE("backtracking drops the captures of abandoned branches") {
    Router r;
    r.add("GET", "/a/:x/:y/z", 1);
    r.add("GET", "/a/:x/*/w", 2);
    r.add("GET", "/a/*/:q/v", 3);
    CHECK(r.match("GET", "/a/1/2/z").params == Params{{"x", "1"}, {"y", "2"}});
    CHECK(r.match("GET", "/a/1/2/w").params == Params{{"x", "1"}});
    CHECK(r.match("GET", "/a/1/2/v").params == Params{{"q", "2"}});
    CHECK(idOf(r, "GET", "/a/1/2/u") == -404);
  }

  TEST_CASE("backtracking down to a ** of a shallower node") {
    Router r;
    r.add("GET", "/a/b/c", 1);
    r.add("GET", "/a/:p/d", 2);
    r.add("GET", "/a/**", 3);
    CHECK(idOf(r, "GET", "/a/b/c") == 1);
    CHECK(idOf(r, "GET", "/a/b/d") == 2);
    CHECK(r.match("GET", "/a/b/e").params == Params{{"**", "b/e"}});
  }

  TEST_CASE("parameter names may differ between routes sharing a position") {
    Router r;
    r.add("GET", "/users/:id", 1);
    r.add("GET", "/users/:uid/posts", 2);
    CHECK(r.match("GET", "/users/5").params == Params{{"id", "5"}});
    CHECK(r.match("GET", "/users/5/posts").params == Params{{"uid", "5"}});
  }

  TEST_CASE("method routing, 404 and 405 with a sorted Allow") {
    Router r;
    r.add("POST", "/items", 1);
    r.add("GET", "/items", 2);
    r.add("DELETE", "/items/:id", 3);
    CHECK(idOf(r, "POST", "/items") == 1);
    CHECK(idOf(r, "GET", "/items") == 2);
    CHECK(idOf(r, "GET", "/nothing") == -404);

    RouteMatchCopy m = r.match("PUT", "/items");
    CHECK(m.kind == Kind::kMethodNotAllowed);
    CHECK(m.allow == "GET, HEAD, POST");
    CHECK(m.params.empty());

    m = r.match("GET", "/items/4");
    CHECK(m.kind == Kind::kMethodNotAllowed);
    CHECK(m.allow == "DELETE");

    m = r.match("GET", "/nothing");
    CHECK(m.kind == Kind::kNotFound);
    CHECK(m.allow.empty());
  }

  TEST_CASE("a method found on a less specific route beats 405 on a more specific one") {
    Router r;
    r.add("POST", "/users/new", 1);
    r.add("GET", "/users/:id", 2);
    CHECK(idOf(r, "GET", "/users/new") == 2);
    CHECK(idOf(r, "POST", "/users/new") == 1);
    const RouteMatchCopy m = r.match("PUT", "/users/new");
    CHECK(m.kind == Kind::kMethodNotAllowed);
    CHECK(m.allow == "GET, HEAD, POST");
  }

  TEST_CASE("Allow merges every route the path reaches, without duplicates") {
    Router r;
    r.add("GET", "/f/:a", 1);
    r.add("HEAD", "/f/x", 2);
    r.add("GET", "/f/**", 3);
    r.add("PATCH", "/f/*", 4);
    const RouteMatchCopy m = r.match("DELETE", "/f/x");
    CHECK(m.kind == Kind::kMethodNotAllowed);
    CHECK(m.allow == "GET, HEAD, PATCH");
  }

  TEST_CASE("405 lists the routes the path reached, for their shared middleware") {
    Router r;
    r.add("GET", "/f/:a", 1);
    r.add("POST", "/f/x", 2);
    r.add("GET", "/g", 3);
    RouteMatchCopy m = r.match("DELETE", "/f/x");
    REQUIRE(m.kind == Kind::kMethodNotAllowed);
    std::sort(m.allowedRoutes.begin(), m.allowedRoutes.end());
    CHECK(m.allowedRoutes == std::vector<std::size_t>{1, 2});
    m = r.match("DELETE", "/f/y");
    CHECK(m.allowedRoutes == std::vector<std::size_t>{1});
    CHECK(r.match("GET", "/f/y").allowedRoutes.empty());
    CHECK(r.match("GET", "/nothing").allowedRoutes.empty());
  }

  TEST_CASE("OPTIONS * is about the server: every registered method is allowed") {
    Router r;
    CHECK(r.match("OPTIONS", "*").kind == Kind::kAsterisk);
    CHECK(r.match("OPTIONS", "*").allow == "OPTIONS");
    r.add("POST", "/b", 1);
    r.add("*", "/any", 2);
    CHECK(r.match("OPTIONS", "*").allow == "OPTIONS, POST");
    r.add("GET", "/a", 3);
    r.add("PROPFIND", "/c/:x", 4);
    r.add("GET", "/d", 5);
    r.add("OPTIONS", "/e", 6);
    const RouteMatchCopy m = r.match("OPTIONS", "*");
    CHECK(m.kind == Kind::kAsterisk);
    CHECK(m.allow == "GET, HEAD, OPTIONS, POST, PROPFIND");
    CHECK(m.params.empty());
    // Only OPTIONS has an asterisk form; a failed registration adds no method.
    CHECK(idOf(r, "GET", "*") == -400);
    CHECK(idOf(r, "HEAD", "*") == -400);
    CHECK(idOf(r, "OPTIONS", "*x") == -400);
    CHECK_FALSE(addError(r, "PATCH", "no-slash").empty());
    CHECK(r.match("OPTIONS", "*").allow == "GET, HEAD, OPTIONS, POST, PROPFIND");
  }

  TEST_CASE("HEAD falls back to GET, an explicit HEAD wins") {
    Router r;
    r.add("GET", "/a", 1);
    r.add("GET", "/b", 2);
    r.add("HEAD", "/b", 3);
    r.add("POST", "/c", 4);
    CHECK(idOf(r, "HEAD", "/a") == 1);
    CHECK(idOf(r, "HEAD", "/b") == 3);
    CHECK(idOf(r, "GET", "/b") == 2);
    CHECK(idOf(r, "HEAD", "/c") == -405);
    CHECK(r.match("HEAD", "/c").allow == "POST");
  }

  TEST_CASE("a * method route matches every method, after specific ones") {
    Router r;
    r.add("*", "/any", 1);
    r.add("GET", "/any", 2);
    r.add("*", "/only", 3);
    CHECK(idOf(r, "GET", "/any") == 2);
    CHECK(idOf(r, "HEAD", "/any") == 2);
    CHECK(idOf(r, "POST", "/any") == 1);
    CHECK(idOf(r, "PROPFIND", "/any") == 1);
    CHECK(idOf(r, "HEAD", "/only") == 3);
    CHECK(idOf(r, "DELETE", "/only") == 3);
  }

  TEST_CASE("a more specific path with a method wins over a * method on a shallower one") {
    Router r;
    r.add("*", "/api/**", 1);
    r.add("GET", "/api/users", 2);
    CHECK(idOf(r, "GET", "/api/users") == 2);
    CHECK(idOf(r, "POST", "/api/users") == 1);
  }

  TEST_CASE("methods are case-sensitive") {
    Router r;
    r.add("GET", "/a", 1);
    CHECK(idOf(r, "get", "/a") == -405);
  }

  TEST_CASE("bad paths") {
    Router r;
    r.add("GET", "/**", 1);
    CHECK(idOf(r, "GET", "/a%zz") == -400);
    CHECK(idOf(r, "GET", "/a/%4") == -400);
    CHECK(idOf(r, "GET", "/%00") == -400);
    CHECK(idOf(r, "GET", "") == -400);
    CHECK(idOf(r, "GET", "a") == -400);
    CHECK(idOf(r, "GET", "*") == -400);

    // Decoding is checked even where no route would match.
    Router empty;
    CHECK(idOf(empty, "GET", "/x/%") == -400);
  }

  TEST_CASE("strict trailing slash (default): the slash is significant") {
    Router r;
    r.add("GET", "/a", 1);
    r.add("GET", "/a/", 2);
    r.add("GET", "/b/", 3);
    r.add("GET", "/c/:p/", 4);
    CHECK(idOf(r, "GET", "/a") == 1);
    CHECK(idOf(r, "GET", "/a/") == 2);
    CHECK(idOf(r, "GET", "/b/") == 3);
    CHECK(idOf(r, "GET", "/b") == -404);
    CHECK(idOf(r, "GET", "/a//") == -404);
    CHECK(r.match("GET", "/c/x/").params == Params{{"p", "x"}});
    CHECK(idOf(r, "GET", "/c/x") == -404);
  }

  TEST_CASE("strict: a parameter does not swallow the trailing slash, ** does") {
    Router r;
    r.add("GET", "/u/:id", 1);
    r.add("GET", "/s/**", 2);
    CHECK(idOf(r, "GET", "/u/1/") == -404);
    CHECK(idOf(r, "GET", "/u/") == -404);
    CHECK(r.match("GET", "/s/").params == Params{{"**", ""}});
    CHECK(r.match("GET", "/s/x/").params == Params{{"**", "x/"}});
  }

  TEST_CASE("non-strict trailing slash: /a/ and /a are one path") {
    Router r(RouterOptions{.strictTrailingSlash = false});
    r.add("GET", "/a", 1);
    r.add("GET", "/b/", 2);
    r.add("GET", "/u/:id", 3);
    r.add("GET", "/s/**", 4);
    CHECK(idOf(r, "GET", "/a") == 1);
    CHECK(idOf(r, "GET", "/a/") == 1);
    CHECK(idOf(r, "GET", "/b") == 2);
    CHECK(idOf(r, "GET", "/b/") == 2);
    CHECK(idOf(r, "GET", "/a//") == -404);
    CHECK(r.match("GET", "/u/1/").params == Params{{"id", "1"}});
    CHECK(r.match("GET", "/s/x/").params == Params{{"**", "x"}});
    CHECK(r.match("GET", "/s/").params == Params{{"**", ""}});
    CHECK(addError(r, "GET", "/a/") == "spry: route GET /a/ is already registered (as /a)");
  }

  TEST_CASE("case-insensitive constants keep parameter values as sent") {
    Router r(RouterOptions{.caseSensitive = false});
    r.add("GET", "/Users/:Name", 1);
    r.add("GET", "/caf%C3%A9", 2);
    const RouteMatchCopy m = r.match("GET", "/uSERS/MiXeD");
    REQUIRE(m.kind == Kind::kFound);
    CHECK(m.params == Params{{"Name", "MiXeD"}});
    CHECK(idOf(r, "GET", "/USERS/x") == 1);
    CHECK(idOf(r, "GET", "/CAF%c3%a9") == 2);
    CHECK(addError(r, "GET", "/users/:n") ==
          "spry: route GET /users/:n is already registered (as /Users/:Name)");
  }

  TEST_CASE("case-insensitive lookup among many sorted constants") {
    Router r(RouterOptions{.caseSensitive = false});
    const char* names[] = {"Zeta", "alpha", "Mid", "beta", "_x", "ZZ", "a"};
    for (std::size_t i = 0; i < std::size(names); ++i) r.add("GET", std::string("/") + names[i], i);
    CHECK(idOf(r, "GET", "/ZETA") == 0);
    CHECK(idOf(r, "GET", "/ALPHA") == 1);
    CHECK(idOf(r, "GET", "/mid") == 2);
    CHECK(idOf(r, "GET", "/Beta") == 3);
    CHECK(idOf(r, "GET", "/_X") == 4);
    CHECK(idOf(r, "GET", "/zz") == 5);
    CHECK(idOf(r, "GET", "/A") == 6);
  }

  TEST_CASE("duplicates throw, naming both patterns") {
    Router r;
    r.add("GET", "/users/:uid", 1);
    r.add("GET", "/files/*", 2);
    r.add("*", "/all", 3);
    CHECK(addError(r, "GET", "/users/:id") ==
          "spry: route GET /users/:id is already registered (as /users/:uid)");
    CHECK(addError(r, "GET", "/files/*") ==
          "spry: route GET /files/* is already registered (as /files/*)");
    CHECK(addError(r, "*", "/all") == "spry: route * /all is already registered (as /all)");

    // Same pattern, other method; and same position, other shape: all fine.
    CHECK(addError(r, "POST", "/users/:id").empty());
    CHECK(addError(r, "GET", "/all").empty());
    CHECK(addError(r, "GET", "/users/*").empty());
    CHECK(addError(r, "GET", "/users/**").empty());
    CHECK(addError(r, "GET", "/users/me").empty());

    // The failed registrations changed nothing.
    CHECK(idOf(r, "GET", "/users/7") == 1);
    CHECK(idOf(r, "GET", "/files/a") == 2);
  }

  TEST_CASE("malformed patterns throw, naming the pattern") {
    Router r;
    CHECK(addError(r, "GET", "/a/**/b") ==
          "spry: bad route pattern \"/a/**/b\": '**' must be the last segment");
    CHECK(addError(r, "GET", "/a/**/") ==
          "spry: bad route pattern \"/a/**/\": '**' must be the last segment");
    CHECK(addError(r, "GET", "/a/:") == "spry: bad route pattern \"/a/:\": empty parameter name");
    CHECK(addError(r, "GET", "/:id/:id") ==
          "spry: bad route pattern \"/:id/:id\": parameter name repeated");
    CHECK(addError(r, "GET", "/a:b") ==
          "spry: bad route pattern \"/a:b\": a segment mixes ':' or '*' with other text");
    CHECK(addError(r, "GET", "/*x") ==
          "spry: bad route pattern \"/*x\": a segment mixes ':' or '*' with other text");
    CHECK_FALSE(addError(r, "GET", "/x*").empty());
    CHECK_FALSE(addError(r, "GET", "/***").empty());
    CHECK_FALSE(addError(r, "GET", "/:a:b").empty());
    CHECK_FALSE(addError(r, "GET", "/:a*").empty());
    CHECK_FALSE(addError(r, "GET", "/::").empty());
    CHECK(addError(r, "GET", "a") == "spry: bad route pattern \"a\": must start with '/'");
    CHECK_FALSE(addError(r, "GET", "").empty());
    CHECK(addError(r, "GET", "/a//b") == "spry: bad route pattern \"/a//b\": empty segment");
    CHECK_FALSE(addError(r, "GET", "//").empty());
    CHECK(addError(r, "GET", "/a%zz") == "spry: bad route pattern \"/a%zz\": bad percent-escape");
    CHECK_FALSE(addError(r, "GET", "/%00").empty());
    CHECK(addError(r, "", "/a") == "spry: bad route pattern \"/a\": empty method");

    // Nothing was registered by the failed calls.
    CHECK(idOf(r, "GET", "/a/x/b") == -404);
    CHECK(idOf(r, "GET", "/a") == -404);
  }

  TEST_CASE("non-strict accepts a trailing slash after **") {
    Router r(RouterOptions{.strictTrailingSlash = false});
    CHECK(addError(r, "GET", "/a/**/").empty());
    CHECK(r.match("GET", "/a/b/c").params == Params{{"**", "b/c"}});
  }

  TEST_CASE("hostile paths: thousands of segments and long ones") {
    Router r;
    r.add("GET", "/a/:b/c", 1);
    r.add("GET", "/s/**", 2);
    std::string deep = "/s";
    for (int i = 0; i < 20000; ++i) deep += "/x";
    const RouteMatchCopy m = r.match("GET", deep);
    REQUIRE(m.kind == Kind::kFound);
    CHECK(m.params.back().second.size() == 20000 * 2 - 1);

    std::string deepMiss = "/a";
    for (int i = 0; i < 20000; ++i) deepMiss += "/x";
    CHECK(idOf(r, "GET", deepMiss) == -404);

    std::string slashes(100000, '/');
    CHECK(idOf(r, "GET", slashes) == -404);

    const std::string longSegment = "/a/" + std::string(1 << 20, 'q') + "/c";
    CHECK(r.match("GET", longSegment).params.front().second.size() == std::size_t(1) << 20);
  }

  TEST_CASE("every level offers a constant, a parameter and a *; the last segment decides") {
    Router r;
    std::string pattern;
    for (int depth = 0; depth < 20; ++depth) {
      r.add("GET", pattern + "/k/end", std::size_t(depth * 3));
      r.add("GET", pattern + "/:p" + std::to_string(depth) + "/stop", std::size_t(depth * 3 + 1));
      r.add("GET", pattern + "/*/halt", std::size_t(depth * 3 + 2));
      pattern += "/k";
    }
    std::string path;
    for (int depth = 0; depth < 20; ++depth) path += "/k";
    CHECK(idOf(r, "GET", path + "/nope") == -404);
    CHECK(idOf(r, "GET", "/k/k/halt") == 5);
  }

  TEST_CASE("random routes and paths agree with a brute-force reference") {
    const char* patternParts[] = {"a", "b", ":p", "*", "**"};
    const char* pathParts[] = {"a", "b", "c", ""};
    const char* methods[] = {"GET", "POST", "*"};
    const char* requestMethods[] = {"GET", "HEAD", "POST", "PUT"};
    std::mt19937 rng(12345);
    int found = 0, notAllowed = 0, notFound = 0, duplicates = 0;
    auto pick = [&rng](std::size_t n) {
      return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };

    for (int round = 0; round < 200; ++round) {
      Router router;
      std::vector<RefRoute> routes;
      std::set<std::pair<std::string, std::string>> shapes;
      for (std::size_t id = 0; id < 12; ++id) {
        RefRoute route{methods[pick(3)], {}, id};
        std::string pattern, shape;
        const std::size_t length = pick(5);
        for (std::size_t i = 0; i < length; ++i) {
          std::string part = patternParts[pick(length == i + 1 ? 5 : 4)];
          if (part == ":p") part += std::to_string(i);  // distinct names
          pattern += "/" + part;
          shape += "/" + (part[0] == ':' ? std::string(":") : part);
          route.segments.push_back(part);
        }
        if (pattern.empty()) pattern = shape = "/";
        const bool duplicate = !shapes.insert({route.method, shape}).second;
        CAPTURE(pattern);
        if (duplicate) {
          CHECK_THROWS_AS(router.add(route.method, pattern, id), std::invalid_argument);
          ++duplicates;
        } else {
          router.add(route.method, pattern, id);
          routes.push_back(route);
        }
      }

      for (int probe = 0; probe < 40; ++probe) {
        std::vector<std::string> path;
        std::string raw;
        const std::size_t length = pick(5);
        for (std::size_t i = 0; i < length; ++i) {
          path.push_back(pathParts[pick(4)]);
          raw += "/" + path.back();
        }
        // "/" is the root, zero segments, whether built from none or from one empty one.
        if (raw.empty() || raw == "/") {
          raw = "/";
          path.clear();
        }
        const std::string method = requestMethods[pick(4)];

        const RefRoute* best = nullptr;
        std::set<std::string> allow;
        for (const RefRoute& r : routes) {
          if (!refFits(r, path)) continue;
          if (r.method != "*") allow.insert(r.method);
          if (r.method == "GET") allow.insert("HEAD");
          if (refMethodRank(r, method) < 0) continue;
          if (!best || refRank(r) < refRank(*best) ||
              (refRank(r) == refRank(*best) &&
               refMethodRank(r, method) < refMethodRank(*best, method))) {
            best = &r;
          }
        }

        CAPTURE(raw);
        CAPTURE(method);
        const RouteMatchCopy m = router.match(method, raw);
        if (best) {
          REQUIRE(m.kind == Kind::kFound);
          CHECK(m.routeId == best->id);
          ++found;
        } else if (!allow.empty()) {
          REQUIRE(m.kind == Kind::kMethodNotAllowed);
          std::string joined;
          for (const std::string& a : allow) joined += (joined.empty() ? "" : ", ") + a;
          CHECK(m.allow == joined);
          ++notAllowed;
        } else {
          CHECK(m.kind == Kind::kNotFound);
          ++notFound;
        }
      }
    }
    // The generator must exercise every outcome for the comparison to mean much.
    CHECK(found > 1000);
    CHECK(notAllowed > 100);
    CHECK(notFound > 1000);
    CHECK(duplicates > 50);
  }

  TEST_CASE("backtracking from a constant into a parameter after a deeper failure") {
    Router r;
    r.add("GET", "/a/b/c/d/e", 1);
    r.add("GET", "/a/:p/c/d/f", 2);
    r.add("GET", "/a/b/:q/d/g", 3);
    CHECK(idOf(r, "GET", "/a/b/c/d/e") == 1);
    CHECK(r.match("GET", "/a/b/c/d/f").params == Params{{"p", "b"}});
    CHECK(r.match("GET", "/a/b/c/d/g").params == Params{{"q", "c"}});
    CHECK(idOf(r, "GET", "/a/b/c/d/h") == -404);
    CHECK(idOf(r, "POST", "/a/b/c/d/f") == -405);
  }

  TEST_CASE("captures taken before the walk needs to branch are kept") {
    Router r;
    r.add("GET", "/u/:id/x/:a/new", 1);
    r.add("GET", "/u/:id/x/:a/:b", 2);
    r.add("GET", "/u/:id/x/**", 3);
    CHECK(r.match("GET", "/u/7/x/8/new").params == Params{{"id", "7"}, {"a", "8"}});
    CHECK(r.match("GET", "/u/7/x/8/9").params == Params{{"id", "7"}, {"a", "8"}, {"b", "9"}});
    CHECK(r.match("GET", "/u/7/x/8/9/10").params == Params{{"id", "7"}, {"**", "8/9/10"}});
  }

  TEST_CASE("an escape in the middle of a path, after constants and parameters") {
    Router r;
    r.add("GET", "/api/time", 1);
    r.add("GET", "/hello/:name/x", 2);
    r.add("GET", "/files/**", 3);
    r.add("GET", "/100%25", 4);
    CHECK(idOf(r, "GET", "/api/t%69me") == 1);
    CHECK(idOf(r, "GET", "/%61pi/time") == 1);
    CHECK(r.match("GET", "/hello/a%20b/x").params == Params{{"name", "a b"}});
    CHECK(r.match("GET", "/hello/ab/%78").params == Params{{"name", "ab"}});
    CHECK(r.match("GET", "/files/a/b%2Fc/d").params == Params{{"**", "a/b/c/d"}});
    CHECK(idOf(r, "GET", "/100%25") == 4);
    CHECK(idOf(r, "GET", "/100%") == -400);
    // A miss before the escape is still a bad path when the escape is bad.
    CHECK(idOf(r, "GET", "/nothing/%zz") == -400);
    CHECK(idOf(r, "GET", "/api/%zz") == -400);
    CHECK(idOf(r, "GET", "/nothing/%41") == -404);
    CHECK(idOf(r, "GET", std::string_view("/api/ti\0me", 10)) == -400);
    CHECK(idOf(r, "GET", std::string_view("/hello/a\0b/x", 12)) == -400);
  }

  TEST_CASE("deep paths, more segments than fit any fixed stack") {
    Router r;
    std::string pattern;
    std::string path;
    Params expected;
    for (int i = 0; i < 24; ++i) {
      pattern += "/:p" + std::to_string(i);
      path += "/v" + std::to_string(i);
      expected.emplace_back(std::string("p").append(std::to_string(i)),
                            std::string("v").append(std::to_string(i)));
    }
    r.add("GET", pattern, 1);
    r.add("GET", pattern + "/end", 2);
    std::string constants;
    for (int i = 0; i < 30; ++i) constants += "/segment" + std::to_string(i);
    r.add("GET", constants, 3);

    CHECK(r.match("GET", path).params == expected);
    CHECK(idOf(r, "GET", path + "/end") == 2);
    CHECK(idOf(r, "GET", path + "/more/still") == -404);
    CHECK(idOf(r, "GET", constants) == 3);
    CHECK(idOf(r, "GET", constants + "/x") == -404);

    // Escaped past the 16th segment.
    std::string escaped = path;
    escaped.replace(escaped.find("/v20"), 4, "/v%320");
    expected[20].second = "v20";
    CHECK(r.match("GET", escaped).params == expected);
  }

  TEST_CASE("constants of 8 bytes and more") {
    Router r;
    r.add("GET", "/documentation/introduction", 1);
    r.add("GET", "/documentation/introductions", 2);
    r.add("GET", "/abcdefgh", 3);
    r.add("GET", "/abcdefghi/:x", 4);
    CHECK(idOf(r, "GET", "/documentation/introduction") == 1);
    CHECK(idOf(r, "GET", "/documentation/introductions") == 2);
    CHECK(idOf(r, "GET", "/documentation/introductio") == -404);
    CHECK(idOf(r, "GET", "/documentation/introductionz") == -404);
    CHECK(idOf(r, "GET", "/documentatio/introduction") == -404);
    CHECK(idOf(r, "GET", "/abcdefgh") == 3);
    CHECK(idOf(r, "GET", "/abcdefg") == -404);
    CHECK(r.match("GET", "/abcdefghi/1").params == Params{{"x", "1"}});
    CHECK(idOf(r, "GET", "/abcdefghij/1") == -404);
    CHECK(idOf(r, "GET", "/documentation/intro%64uction") == 1);

    Router folded(RouterOptions{.caseSensitive = false});
    folded.add("GET", "/Documentation/Introduction", 1);
    CHECK(idOf(folded, "GET", "/DOCUMENTATION/introDUCTION") == 1);
    CHECK(idOf(folded, "GET", "/documentation/introductio") == -404);
  }

  TEST_CASE("sibling constants of every length from 1 to 17 bytes") {
    const std::string letters = "abcdefghijklmnopq";
    Router r;
    Router folded(RouterOptions{.caseSensitive = false});
    for (std::size_t n = 1; n <= letters.size(); ++n) {
      r.add("GET", std::string("/").append(letters, 0, n), n);
      folded.add("GET", std::string("/x/").append(letters, 0, n).append("/:p"), n);
    }
    for (std::size_t n = 1; n <= letters.size(); ++n) {
      CAPTURE(n);
      CHECK(idOf(r, "GET", std::string("/").append(letters, 0, n)) == long(n));
      std::string upper = letters.substr(0, n);
      std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
      CHECK(idOf(folded, "GET", "/x/" + upper + "/v") == long(n));
      CHECK(idOf(r, "GET", "/" + upper) == -404);
      std::string other = letters.substr(0, n);
      other.back() = 'z';
      CHECK(idOf(r, "GET", "/" + other) == -404);
    }
    CHECK(idOf(r, "GET", "/" + letters + "r") == -404);
  }

  TEST_CASE("constants that hold a decoded '/' or '%' match only after decoding") {
    Router r;
    r.add("GET", "/a%2Fb", 1);
    r.add("GET", "/p%25q", 2);
    r.add("GET", "/a/b", 3);
    CHECK(idOf(r, "GET", "/a%2Fb") == 1);
    CHECK(idOf(r, "GET", "/a%2fb") == 1);
    CHECK(idOf(r, "GET", "/a/b") == 3);
    CHECK(idOf(r, "GET", "/p%25q") == 2);
    CHECK(idOf(r, "GET", "/p%q") == -400);
  }

  TEST_CASE("an escaped segment among many constants") {
    Router r;
    for (std::size_t i = 0; i < 20; ++i) r.add("GET", "/c" + std::to_string(i) + "/:x", i);
    CHECK(r.match("GET", "/c%31%37/y").params == Params{{"x", "y"}});
    CHECK(idOf(r, "GET", "/c%31%37/y") == 17);
    CHECK(idOf(r, "GET", "/c%zz/y") == -400);
    CHECK(idOf(r, "GET", "/c99/y") == -404);
  }

  TEST_CASE("methods compare whole, short and long") {
    Router r;
    r.add("GET", "/m", 1);
    r.add("PROPPATCH", "/m", 2);
    r.add("MKCOL", "/m", 3);
    r.add("X", "/m", 4);
    CHECK(idOf(r, "GET", "/m") == 1);
    CHECK(idOf(r, "GXT", "/m") == -405);
    CHECK(idOf(r, "GE", "/m") == -405);
    CHECK(idOf(r, "PROPPATCH", "/m") == 2);
    CHECK(idOf(r, "PROPXATCH", "/m") == -405);
    CHECK(idOf(r, "MKCOL", "/m") == 3);
    CHECK(idOf(r, "MKCXL", "/m") == -405);
    CHECK(idOf(r, "X", "/m") == 4);
    CHECK(idOf(r, "", "/m") == -405);
    CHECK(r.match("DELETE", "/m").allow == "GET, HEAD, MKCOL, PROPPATCH, X");
    r.add("*", "/any", 5);
    CHECK(idOf(r, "", "/any") == 5);
  }

  TEST_CASE("HEAD and 405 after a path of parameters") {
    Router r;
    r.add("GET", "/hello/:name", 1);
    r.add("PUT", "/hello/:name", 2);
    const RouteMatchCopy head = r.match("HEAD", "/hello/world");
    REQUIRE(head.kind == Kind::kFound);
    CHECK(head.routeId == 1);
    CHECK(head.params == Params{{"name", "world"}});
    RouteMatchCopy m = r.match("POST", "/hello/world");
    REQUIRE(m.kind == Kind::kMethodNotAllowed);
    CHECK(m.allow == "GET, HEAD, PUT");
    CHECK(m.params.empty());
    std::sort(m.allowedRoutes.begin(), m.allowedRoutes.end());
    CHECK(m.allowedRoutes == std::vector<std::size_t>{1, 2});
  }

  TEST_CASE("reused buffers: params and decoded keep no stale state") {
    Router r;
    r.add("GET", "/a/:x/:y", 1);
    r.add("GET", "/s/**", 2);
    RouteMatch match;
    spry::detail::ParamViews params;
    std::string decoded;
    r.match("GET", "/a/1%202/3", match, params, decoded);
    REQUIRE(match.kind == Kind::kFound);
    CHECK(params.size() == 2);
    CHECK(params[0].second == "1 2");
    r.match("GET", "/s/x%2Fy/z", match, params, decoded);
    REQUIRE(params.size() == 1);
    CHECK(params[0].second == "x/y/z");
    r.match("GET", "/a/1/2", match, params, decoded);
    REQUIRE(params.size() == 2);
    CHECK(params[1].second == "2");
    r.match("GET", "/nothing", match, params, decoded);
    CHECK(match.kind == Kind::kNotFound);
    CHECK(params.empty());
  }

  TEST_CASE("a moved router keeps its routes") {
    Router a;
    a.add("GET", "/x/:y", 7);
    Router b(std::move(a));
    CHECK(idOf(b, "GET", "/x/1") == 7);
    Router c;
    c = std::move(b);
    CHECK(c.match("GET", "/x/1").params == Params{{"y", "1"}});
  }
}
