#pragma once
// What a Request, a Deferred and a BodyWriter carry internally: the parsed
// request, and the state shared between a handler's handles and the HTTP
// exchange that answers them.

#include <cstdint>
#include <exception>
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

// Returns a request to its thread's pool instead of freeing it.
struct RequestRecycler {
  void operator()(Request* request) const noexcept;
};
using RequestPtr = std::unique_ptr<Request, RequestRecycler>;

// One answer a request waits for: level 0 is its Deferred, each other level
// a coroutine (handler or middleware) that suspended. A level's answer goes
// to the coroutine awaiting it, or to the exchange when it is the request's
// answer, or is kept until one of them comes.
struct PendingLevel {
  bool done = false;   // completed (its answer is kept below until taken)
  bool taken = false;  // its answer went to someone: nobody else may ask
  std::optional<Response> early;
  std::exception_ptr error;
  ResponseAwaiter* waiter = nullptr;
  // Completed with another level's placeholder: that level's answer
  // completes this one (with the placeholder's headers).
  bool forwarding = false;
  std::uint32_t forwardTo = 0;
  Headers forwardHeaders;
};

// What is behind a Deferred and every placeholder of one request. Handles,
// placeholders and suspended coroutines hold it; the request holds it weakly.
struct DeferredState {
  std::weak_ptr<Connection> conn;
  std::uint64_t requestSerial = 0;
  Request* req = nullptr;  // valid while this state lives (see `request`)
  static constexpr std::uint32_t kNone = 0xffffffff;
  std::uint32_t registered = kNone;  // the level the exchange sends as the answer
  Headers placeholderHeaders;        // set by middleware on that level's placeholder
  std::vector<PendingLevel> levels{1};
  // The request once its exchange is done with it (answered, or the client
  // left) while coroutines or Deferred handles still refer to it: it stays
  // valid, and out of the pool, until the last of them lets go.
  RequestPtr request;
};

// The request's state, made at its first Deferred or suspended coroutine.
std::shared_ptr<DeferredState> pendingStateOf(Request& req);

// Completes level `level` with a response or an error (see PendingLevel).
// Returns false when the client has gone away. The caller holds `state`.
bool completeLevel(DeferredState& state, std::uint32_t level, Response response,
                   std::exception_ptr error);

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
  // While the handler runs, the views point into the connection's input (or
  // the parser's copy of a head that came in pieces). own() copies them once
  // into `storage` when the request outlives that (deferred, streamed,
  // upgraded).
  std::string_view method;  // static storage
  std::string_view target;
  std::string_view path;   // into target
  std::string_view query;  // raw, without '?'
  int versionMinor = 1;
  RequestHeaders headers;
  std::string body;
  std::vector<std::pair<std::string_view, std::string_view>> params;
  std::string decoded;  // percent-decoded path segments, when the path had escapes
  mutable std::optional<std::vector<std::pair<std::string, std::string>>> queryPairs;
  Locals locals;
  std::string_view remoteAddress;
  std::uint16_t remotePort = 0;
  bool secure = false;                                        // through a TLS listener
  std::shared_ptr<const TlsPeerCertificate> peerCertificate;  // with verifyClient
  LoopContext* loop = nullptr;
  std::shared_ptr<LoopContext> loopRef;  // once owned
  Connection* connection = nullptr;      // while the handler runs
  std::weak_ptr<Connection> conn;        // once owned
  std::uint64_t serial = 0;
  bool webSocket = false;
  bool deferred = false;
  bool owned = false;
  bool aborted = false;  // the client left before the answer was sent (owned requests only)
  std::weak_ptr<DeferredState> deferredState;
  // What the chain of a request without a route points at (its 404/405
  // answer, the shared middleware), kept while its coroutines may run.
  std::shared_ptr<void> keepAlive;
  std::string storage;

  // A request from the thread's pool (or a new one); no allocation once warm.
  static RequestPtr acquire();
  static RequestData& of(Request& req) noexcept { return *req.d_; }

  // Splits the target into path and query.
  void splitTarget() noexcept;
  // Copies what the views point at into storage, once; afterwards the
  // request depends on nothing but itself (and its loop, which it keeps).
  void own();
  // Empties the request for its next use, keeping modest capacities.
  void reset() noexcept;
};

}  // namespace spry::detail

namespace spry {
// Internal access to Response's private parts.
struct ResponseAccess {
  static Response::StreamProducer& producer(Response& r) noexcept { return r.producer_; }
  // A placeholder's state and level.
  static detail::DeferredState* pendingState(const Response& r) noexcept {
    return r.pending_.get();
  }
  static std::uint32_t pendingLevel(const Response& r) noexcept { return r.level_; }
  // The header list as it is, and the library content type not yet in it.
  static const Headers& headerList(const Response& r) noexcept { return r.headers_; }
  static std::string_view pendingContentType(const Response& r) noexcept { return r.contentType_; }
};
}  // namespace spry
