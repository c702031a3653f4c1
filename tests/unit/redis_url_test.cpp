#include "redis/redis_url.h"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

using spry::detail::RedisUrl;

namespace {

// The message a URL is rejected with, or "" when it parses.
std::string errorOf(std::string_view url) {
  try {
    RedisUrl::parse(url);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("host and port: names, IPv4, bracketed IPv6, the default port") {
  RedisUrl u = RedisUrl::parse("redis://127.0.0.1:7000");
  CHECK(u.host == "127.0.0.1");
  CHECK(u.port == 7000);
  CHECK(u.user.empty());
  CHECK(u.password.empty());
  CHECK_FALSE(u.hasCredentials());
  CHECK(u.endpoint() == "127.0.0.1:7000");

  u = RedisUrl::parse("redis://localhost");
  CHECK(u.host == "localhost");
  CHECK(u.port == 6379);

  u = RedisUrl::parse("redis://redis-1.internal_net:1");
  CHECK(u.host == "redis-1.internal_net");
  CHECK(u.port == 1);

  u = RedisUrl::parse("redis://[::1]:65535");
  CHECK(u.host == "::1");
  CHECK(u.port == 65535);
  CHECK(u.endpoint() == "[::1]:65535");

  u = RedisUrl::parse("redis://[2001:db8::2]");
  CHECK(u.host == "2001:db8::2");
  CHECK(u.port == 6379);

  // The scheme is case-insensitive; a lone trailing slash is no path.
  u = RedisUrl::parse("REDIS://h:6380/");
  CHECK(u.host == "h");
  CHECK(u.port == 6380);
}

TEST_CASE("credentials: user and password, password alone, percent-decoded") {
  RedisUrl u = RedisUrl::parse("redis://alice:s3cret@10.0.0.1:6379");
  CHECK(u.user == "alice");
  CHECK(u.password == "s3cret");
  CHECK(u.hasCredentials());
  CHECK(u.endpoint() == "10.0.0.1:6379");  // no credentials in messages

  u = RedisUrl::parse("redis://:pw@localhost");
  CHECK(u.user.empty());
  CHECK(u.password == "pw");
  CHECK(u.hasCredentials());

  u = RedisUrl::parse("redis://us%65r:p%40ss%3Aw%2Frd%25%00%ff@[::1]:1234");
  CHECK(u.user == "user");
  CHECK(u.password == std::string("p@ss:w/rd%\0\xff", 12));
  CHECK(u.host == "::1");
  CHECK(u.port == 1234);

  // The last '@' ends the user info; ':' in the password needs no escape.
  u = RedisUrl::parse("redis://bob:a:b@c@h");
  CHECK(u.user == "bob");
  CHECK(u.password == "a:b@c");
  CHECK(u.host == "h");

  // "user:@" is a user with an empty password; ":@" is no credentials.
  u = RedisUrl::parse("redis://bob:@h");
  CHECK(u.user == "bob");
  CHECK(u.password.empty());
  CHECK(u.hasCredentials());
  CHECK_FALSE(RedisUrl::parse("redis://:@h").hasCredentials());
}

TEST_CASE("other schemes are rejected; rediss:// is named as not supported yet") {
  CHECK(contains(errorOf("rediss://h:6379"), "rediss:// (Redis over TLS) is not supported yet"));
  CHECK(contains(errorOf("http://h:6379"), "scheme 'http://' is not supported"));
  CHECK(contains(errorOf("unix:///tmp/redis.sock"), "scheme 'unix://' is not supported"));
  CHECK(contains(errorOf("localhost:6379"), "has no scheme"));
  CHECK(contains(errorOf(""), "has no scheme"));
}

TEST_CASE("a path, a /db, a query or a fragment is rejected") {
  const std::string db = errorOf("redis://h:6379/0");
  CHECK(contains(db, "takes no path ('/0')"));
  CHECK(contains(db, "ignores databases"));
  CHECK(errorOf("redis://h/").empty());
  CHECK(contains(errorOf("redis://h//"), "takes no path"));
  CHECK(contains(errorOf("redis://h/x/y"), "takes no path ('/x/y')"));
  CHECK(contains(errorOf("redis://h?db=1"), "takes no query"));
  CHECK(contains(errorOf("redis://h#x"), "takes no fragment"));
}

TEST_CASE("empty or malformed hosts are rejected") {
  CHECK(contains(errorOf("redis://"), "has no host"));
  CHECK(contains(errorOf("redis://:6379"), "has no host"));
  CHECK(contains(errorOf("redis://:pw@"), "has no host"));
  CHECK(contains(errorOf("redis://:pw@:6379"), "has no host"));
  CHECK(contains(errorOf("redis://[]:6379"), "is not an IPv6 address"));
  CHECK(contains(errorOf("redis://[::1:6379"), "without its closing ']'"));
  CHECK(contains(errorOf("redis://[nope]:6379"), "'[nope]' is not an IPv6 address"));
  CHECK(contains(errorOf("redis://[::1]x"), "after the IPv6 address"));
  CHECK(contains(errorOf("redis://::1:6379"), "put it in brackets"));
  CHECK(contains(errorOf("redis://ho st:6379"), "is not a host name"));
  CHECK(contains(errorOf("redis://h%41:6379"), "is not a host name"));
}

TEST_CASE("bad ports are rejected") {
  for (const char* url :
       {"redis://h:", "redis://h:0", "redis://h:65536", "redis://h:99999999", "redis://h:-1",
        "redis://h:+80", "redis://h:80x", "redis://h: 80", "redis://[::1]:", "redis://[::1]:0"}) {
    CAPTURE(url);
    CHECK(contains(errorOf(url), "is not a number from 1 to 65535"));
  }
  CHECK(contains(errorOf("redis://h:abc"), "port 'abc'"));
}

TEST_CASE("bad user info is rejected without repeating the secret") {
  const std::string noColon = errorOf("redis://hunter2@h");
  CHECK(contains(noColon, "has a user name without ':'"));
  CHECK_FALSE(contains(noColon, "hunter2"));

  const std::string badEscape = errorOf("redis://:hunter2%zz@h");
  CHECK(contains(badEscape, "bad percent-encoding in the password"));
  CHECK_FALSE(contains(badEscape, "hunter2"));
  CHECK(contains(errorOf("redis://:pw%4@h"), "bad percent-encoding in the password"));
  CHECK(contains(errorOf("redis://:pw%@h"), "bad percent-encoding in the password"));
  CHECK(contains(errorOf("redis://us%g1:pw@h"), "bad percent-encoding in the user name"));

  // A raw '/' in a password would end the authority early.
  const std::string rawSlash = errorOf("redis://:hunter/2@h:6379");
  CHECK(contains(rawSlash, "percent-encode them"));
  CHECK_FALSE(contains(rawSlash, "hunter"));
}
