#pragma once
// HTTP/1.1 request parser: an llhttp adapter fed plain bytes, never a socket.
// One request at a time: it stops after each complete request so the owner can
// answer in order (pipelining) before feeding the rest.
//
// A request's method, target and header fields are views, not copies: into
// the bytes of the feed that completed the request when its head arrived in
// that feed (the common case), or into the parser's own copy of a head that
// arrived in pieces or waits for its body. Only the body is copied.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spry/headers.h"
#include "spry/request_headers.h"

namespace spry::detail {

struct HttpLimits {
  std::size_t maxHeaderBytes =
      16 * 1024;  // request line + headers → 431 (414 when the URL alone is over maxUrlBytes)
  std::size_t maxUrlBytes = 8 * 1024;      // request-target → 414
  std::size_t maxHeaderCount = 100;        // → 431
  std::size_t maxBodyBytes = 1024 * 1024;  // Content-Length or chunked total → 413
};

// Internal access to a RequestHeaders' fields.
struct HeaderAccess {
  static std::vector<RequestHeaders::Field>& fields(RequestHeaders& h) noexcept {
    return h.fields_;
  }
};

// A complete request as views (see above). Valid until the next feed().
struct RequestView {
  std::string_view method;  // "GET" (static storage)
  std::string_view target;  // raw request-target, "/a/b?x=1"
  int versionMajor = 1;
  int versionMinor = 1;
  RequestHeaders headers;  // names as received, values trimmed of surrounding whitespace
  std::string body;        // de-chunked; the owner may move it out
  bool keepAlive = true;   // from version and Connection header
  bool upgrade = false;    // Connection: upgrade with an Upgrade header (llhttp's notion)
};

// A complete request, copied: for tests and fuzzers.
struct ParsedRequest {
  std::string method;
  std::string target;
  int versionMajor = 1;
  int versionMinor = 1;
  Headers headers;
  std::string body;
  bool keepAlive = true;
  bool upgrade = false;
};

class HttpParser {
 public:
  enum class Status {
    kNeedMore,         // everything consumed, request incomplete
    kExpectContinue,   // headers done with "Expect: 100-continue" and a body to come;
                       // the owner writes "100 Continue" (or a final status), then feeds again
    kRequestComplete,  // request() is ready; bytes after `consumed` belong to the next
                       // request (or, after an upgrade, to the new protocol)
    kError,            // errorStatus/errorReason say why; the parser stays failed
  };
  struct Step {
    Status status = Status::kNeedMore;
    std::size_t consumed = 0;  // bytes of `data` used by this step
  };

  explicit HttpParser(const HttpLimits& limits);
  ~HttpParser();
  HttpParser(const HttpParser&) = delete;
  HttpParser& operator=(const HttpParser&) = delete;

  // Parses from `data`. Stops at the first of: need more input, expect-continue
  // (once per request), a complete request, an error. Never throws.
  Step feed(std::string_view data) noexcept;

  // The request completed by the last feed. Its views stay valid until the
  // next feed() as long as the owner leaves the bytes it fed unchanged.
  RequestView& request() noexcept;
  // The request completed by the last feed, copied.
  ParsedRequest takeRequest();

  // True once bytes of a request have arrived and its headers are not yet
  // complete (for the header read timeout).
  bool inHeaders() const noexcept;
  // True when no byte of a next request has arrived yet (idle keep-alive).
  bool idle() const noexcept;

  // On kError: the HTTP status to answer (400, 413, 414, 431, 501, 505; 500 when
  // memory ran out) and a short reason for logs. Strict parsing, no lenient flags:
  // Content-Length with Transfer-Encoding → 400; HTTP/1.1 without Host → 400; more
  // than one Host → 400; obsolete line folding → 400. After a request without
  // keep-alive, further bytes are consumed and ignored (kNeedMore): the owner
  // closes after its response.
  int errorStatus() const noexcept;
  std::string_view errorReason() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace spry::detail
