#pragma once
// What a Request, a Deferred and a BodyWriter carry internally: the parsed
// request, and the state shared between a handler's handles and the HTTP
// exchange that answers them.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/http_parser.h"
#include "spry/request.h"
#include "spry/response.h"

namespace spry::detail {

class Connection;
class LoopContext;

// What is behind a Deferred.
struct DeferredState {
  std::weak_ptr<Connection> conn;
  std::uint64_t requestSerial = 0;
  bool sent = false;
  bool registered = false;        // the exchange has seen the placeholder
  std::optional<Response> early;  // sent before the handler returned
  Headers placeholderHeaders;     // set by middleware on the placeholder
  // The request, once its connection closed before send(): it stays valid
  // until send() as documented, that is as long as a Deferred refers to it.
  std::unique_ptr<Request> request;
};

// What is behind a BodyWriter.
struct StreamState {
  std::weak_ptr<Connection> conn;
  bool ended = false;
  bool aborted = false;
  bool wantDrain = false;
  bool headOnly = false;   // HEAD: nothing is written
  bool chunked = true;     // HTTP/1.0 gets a close-delimited body
  bool producing = false;  // inside the producer call: the exchange finishes the response
  std::function<void()> onDrain;
  std::function<void()> onAbort;
  static BodyWriter makeWriter(std::shared_ptr<StreamState> s) { return BodyWriter(std::move(s)); }
};

struct RequestData {
  ParsedRequest parsed;
  std::string_view path;   // into parsed.target
  std::string_view query;  // raw, without '?'
  std::vector<std::pair<std::string, std::string>> params;
  mutable std::optional<std::vector<std::pair<std::string, std::string>>> queryPairs;
  Locals locals;
  std::string remoteAddress;
  std::uint16_t remotePort = 0;
  std::shared_ptr<LoopContext> loop;
  std::weak_ptr<Connection> conn;
  std::uint64_t serial = 0;
  bool webSocket = false;
  bool deferred = false;
  std::shared_ptr<DeferredState> deferredState;

  static std::unique_ptr<Request> makeRequest(std::unique_ptr<RequestData> d);
  static RequestData& of(Request& req) noexcept { return *req.d_; }
};

}  // namespace spry::detail

namespace spry {
// Internal access to Response's private parts.
struct ResponseAccess {
  static Response::StreamProducer& producer(Response& r) noexcept { return r.producer_; }
};
}  // namespace spry
