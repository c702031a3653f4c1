#pragma once
// The bytes a connection has queued and not yet handed to the kernel: one
// growable buffer of 16 bytes per connection (a std::string is 32), whose
// append is inline, since a WebSocket message appends twice (frame header,
// payload) on the hot path.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>

namespace spry::detail {

class OutputBuffer {
 public:
  OutputBuffer() noexcept = default;
  OutputBuffer(const OutputBuffer&) = delete;
  OutputBuffer& operator=(const OutputBuffer&) = delete;
  ~OutputBuffer() { std::free(data_); }

  char* data() noexcept { return data_; }
  const char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  bool empty() const noexcept { return size_ == 0; }
  std::string_view view() const noexcept { return {data_, size_}; }

  // Throws std::bad_alloc when memory (or the 4 GiB a buffer may hold) runs out.
  void append(std::string_view bytes) {
    if (!bytes.empty()) std::memcpy(extend(bytes.size()), bytes.data(), bytes.size());
  }

  // `n` more bytes at the end, for the caller to fill; valid until the next
  // change of the buffer.
  char* extend(std::size_t n) {
    if (n > capacity_ - size_) [[unlikely]]
      grow(n);
    char* p = data_ + size_;
    size_ += static_cast<std::uint32_t>(n);
    return p;
  }

  // Drops the first `n` bytes (written to the kernel).
  // Gives back the last `n` bytes of an extend() that were not written.
  void unextend(std::size_t n) noexcept { size_ -= static_cast<std::uint32_t>(n); }
  void consume(std::size_t n) noexcept {
    if (n >= size_) {
      size_ = 0;
      return;
    }
    std::memmove(data_, data_ + n, size_ - n);
    size_ -= static_cast<std::uint32_t>(n);
  }
  void clear() noexcept { size_ = 0; }
  // Gives the memory back.
  void release() noexcept {
    std::free(data_);
    data_ = nullptr;
    size_ = capacity_ = 0;
  }
  void swap(OutputBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
  }

 private:
  void grow(std::size_t n) {
    constexpr std::size_t kMax = UINT32_MAX;
    if (n > kMax - size_) throw std::bad_alloc();
    std::size_t want = std::size_t{size_} + n;
    std::size_t next = capacity_ < 64 ? 64 : std::size_t{capacity_} * 2;
    if (next > kMax) next = kMax;
    if (next < want) next = want;
    auto* p = static_cast<char*>(std::realloc(data_, next));
    if (!p) throw std::bad_alloc();
    data_ = p;
    capacity_ = static_cast<std::uint32_t>(next);
  }

  char* data_ = nullptr;
  std::uint32_t size_ = 0;
  std::uint32_t capacity_ = 0;
};

}  // namespace spry::detail
