// Fuzzes the llhttp adapter: random bytes, split at points chosen by the input.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "http/http_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  // The first byte picks the split size (1..256), the second the limits.
  std::size_t chunk = static_cast<std::size_t>(data[0]) + 1;
  spry::detail::HttpLimits limits;
  if (data[1] & 1) {
    limits.maxHeaderBytes = 256;
    limits.maxUrlBytes = 64;
    limits.maxHeaderCount = 4;
    limits.maxBodyBytes = 128;
  }
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  spry::detail::HttpParser parser(limits);
  std::size_t requests = 0;
  while (!input.empty()) {
    // Each read in a buffer of its own, freed before the next: a view the
    // parser kept into an earlier read would be a use after free.
    const std::size_t n = std::min(chunk, input.size());
    auto read = std::make_unique<char[]>(n);
    std::copy_n(input.data(), n, read.get());
    std::string_view piece(read.get(), n);
    while (!piece.empty()) {
      auto step = parser.feed(piece);
      if (step.consumed > piece.size()) std::abort();
      piece.remove_prefix(step.consumed);
      input.remove_prefix(step.consumed);
      using S = spry::detail::HttpParser::Status;
      if (step.status == S::kError) {
        int status = parser.errorStatus();
        if (status < 400 || status > 599) std::abort();
        return 0;
      }
      if (step.status == S::kRequestComplete) {
        // Every view of the request is read: the copy touches each byte.
        auto req = parser.takeRequest();
        if (req.method.empty() || req.body.size() > limits.maxBodyBytes) std::abort();
        if (req.upgrade || ++requests > 10000) return 0;
      }
      if (step.status == S::kNeedMore) break;
    }
  }
  return 0;
}
