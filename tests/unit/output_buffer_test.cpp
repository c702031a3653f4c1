#include "transport/output_buffer.h"

#include <doctest/doctest.h>

#include <string>

using spry::detail::OutputBuffer;

TEST_CASE("OutputBuffer: appends keep order and bytes across growth") {
  OutputBuffer b;
  CHECK(b.empty());
  CHECK(b.capacity() == 0);
  std::string want;
  for (int i = 0; i < 1000; ++i) {
    std::string piece(static_cast<std::size_t>(i % 37), static_cast<char>('a' + i % 26));
    b.append(piece);
    want += piece;
  }
  CHECK(b.size() == want.size());
  CHECK(b.view() == want);
  CHECK(b.capacity() >= b.size());
}

TEST_CASE("OutputBuffer: extend gives room to fill in place") {
  OutputBuffer b;
  b.append("ab");
  char* p = b.extend(3);
  p[0] = 'c';
  p[1] = 'd';
  p[2] = 'e';
  CHECK(b.view() == "abcde");
  b.extend(0);
  CHECK(b.view() == "abcde");
}

TEST_CASE("OutputBuffer: consume drops written bytes from the front") {
  OutputBuffer b;
  b.append("hello world");
  b.consume(6);
  CHECK(b.view() == "world");
  b.append("!");
  CHECK(b.view() == "world!");
  b.consume(100);
  CHECK(b.empty());
  b.append("x");
  CHECK(b.view() == "x");
}

TEST_CASE("OutputBuffer: clear keeps the memory, release gives it back") {
  OutputBuffer b;
  b.append(std::string(1000, 'z'));
  const std::size_t cap = b.capacity();
  b.clear();
  CHECK(b.empty());
  CHECK(b.capacity() == cap);
  b.release();
  CHECK(b.capacity() == 0);
  CHECK(b.data() == nullptr);
  b.append("again");
  CHECK(b.view() == "again");
}

TEST_CASE("OutputBuffer: swap exchanges contents") {
  OutputBuffer a;
  OutputBuffer b;
  a.append("first");
  b.append("second, longer");
  a.swap(b);
  CHECK(a.view() == "second, longer");
  CHECK(b.view() == "first");
}

TEST_CASE("OutputBuffer: a size past 4 GiB is refused, not wrapped") {
  OutputBuffer b;
  b.append("abc");
  CHECK_THROWS_AS(b.extend(std::size_t{UINT32_MAX}), std::bad_alloc);
  CHECK(b.view() == "abc");
}

TEST_CASE("OutputBuffer: the object stays 16 bytes") {
  CHECK(sizeof(OutputBuffer) == 16);
}
