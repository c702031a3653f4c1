#include <nlohmann/json.hpp>

#include "app_state.h"
#include "connection.h"
#include "http/request_data.h"
#include "http/token.h"
#include "loop_context.h"
#include "spry/error.h"
#include "spry/request.h"

namespace spry {

void Locals::put(const std::type_info& type, std::shared_ptr<void> value) {
  for (auto& [t, v] : values_) {
    if (*t == type) {
      v = std::move(value);
      return;
    }
  }
  values_.emplace_back(&type, std::move(value));
}

void* Locals::lookup(const std::type_info& type) const noexcept {
  for (const auto& [t, v] : values_) {
    if (*t == type) return v.get();
  }
  return nullptr;
}

void Locals::missing(const std::type_info& type) {
  throw std::logic_error(std::string("spry: request local of type ") + type.name() +
                         " is not set (is the middleware that sets it registered on this route?)");
}

Request::Request() : d_(std::make_unique<detail::RequestData>()) {}
Request::~Request() = default;

std::string_view Request::method() const noexcept {
  return d_->method;
}
std::string_view Request::path() const noexcept {
  return d_->path;
}
std::string_view Request::target() const noexcept {
  return d_->target;
}
int Request::httpMinorVersion() const noexcept {
  return d_->versionMinor;
}

std::string_view Request::param(std::string_view name) const noexcept {
  for (const auto& [k, v] : d_->params) {
    if (k == name) return v;
  }
  return {};
}

std::span<const std::pair<std::string_view, std::string_view>> Request::params() const noexcept {
  return d_->params;
}

namespace {
// Splits "a=1&b=2&a=3" into decoded pairs; malformed escapes keep the raw text.
std::vector<std::pair<std::string, std::string>> parseQuery(std::string_view q) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    std::string_view rawKey = part.substr(0, eq);
    std::string_view rawValue =
        eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
    std::string key, value;
    if (!detail::percentDecode(rawKey, key, true)) key.assign(rawKey);
    if (!detail::percentDecode(rawValue, value, true)) value.assign(rawValue);
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}
}  // namespace

std::optional<std::string_view> Request::query(std::string_view name) const {
  if (!d_->queryPairs) d_->queryPairs = parseQuery(d_->query);
  for (const auto& [k, v] : *d_->queryPairs) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

std::vector<std::string_view> Request::queryAll(std::string_view name) const {
  if (!d_->queryPairs) d_->queryPairs = parseQuery(d_->query);
  std::vector<std::string_view> out;
  for (const auto& [k, v] : *d_->queryPairs) {
    if (k == name) out.emplace_back(v);
  }
  return out;
}

const RequestHeaders& Request::headers() const noexcept {
  return d_->headers;
}
std::string_view Request::header(std::string_view name) const noexcept {
  return d_->headers.get(name);
}

std::optional<std::string_view> Request::cookie(std::string_view name) const {
  // Cookie: a=1; b=2 (RFC 6265 section 4.2.1), possibly in several fields.
  for (std::string_view line : d_->headers.getAll("Cookie")) {
    while (!line.empty()) {
      auto semi = line.find(';');
      std::string_view pair = line.substr(0, semi);
      line = semi == std::string_view::npos ? std::string_view{} : line.substr(semi + 1);
      while (!pair.empty() && (pair.front() == ' ' || pair.front() == '\t')) pair.remove_prefix(1);
      while (!pair.empty() && (pair.back() == ' ' || pair.back() == '\t')) pair.remove_suffix(1);
      auto eq = pair.find('=');
      if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
      std::string_view value = pair.substr(eq + 1);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      return value;
    }
  }
  return std::nullopt;
}

std::string_view Request::text() const noexcept {
  return d_->body;
}
std::span<const std::byte> Request::bytes() const noexcept {
  return {reinterpret_cast<const std::byte*>(d_->body.data()), d_->body.size()};
}

nlohmann::json Request::json() const {
  auto parsed = nlohmann::json::parse(d_->body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) throw HttpError(400, "request body is not valid JSON");
  return parsed;
}

Locals& Request::locals() noexcept {
  return d_->locals;
}
std::string_view Request::remoteAddress() const noexcept {
  return d_->remoteAddress;
}
std::uint16_t Request::remotePort() const noexcept {
  return d_->remotePort;
}
bool Request::isSecure() const noexcept {
  return d_->secure;
}
const TlsPeerCertificate* Request::peerCertificate() const noexcept {
  return d_->peerCertificate.get();
}
Loop Request::loop() const {
  return d_->loop->handle();
}

Deferred Request::defer() {
  if (d_->webSocket) {
    throw std::logic_error(
        "spry: Request::defer() in a ws route: the connection is a WebSocket now, it cannot "
        "carry an HTTP response");
  }
  if (d_->deferred) throw std::logic_error("spry: Request::defer() called twice for one request");
  d_->own();
  d_->deferred = true;
  return Deferred(detail::pendingStateOf(*this));
}

bool Request::isAborted() const noexcept {
  return d_->aborted;
}

namespace detail {

void ownRequest(Request& req) {
  RequestData::of(req).own();
}

std::shared_ptr<DeferredState> pendingStateOf(Request& req) {
  RequestData& d = RequestData::of(req);
  if (auto s = d.deferredState.lock()) return s;
  auto s = std::make_shared<DeferredState>();
  s->conn = d.conn;
  s->requestSerial = d.serial;
  s->req = &req;
  d.deferredState = s;
  return s;
}

namespace {
// Requests of a thread, kept for reuse: a request is taken at each dispatch
// and given back once answered, so steady traffic allocates none. At most 16
// are kept, each with at most 4 KiB in each of its buffers (reset), so that a
// burst of deferred requests or large bodies cannot pin memory.
class RequestPool {
 public:
  static constexpr std::size_t kMaxKept = 16;
  ~RequestPool() {
    alive_ = false;
    for (Request* r : free_) delete r;
  }
  static RequestPool* get() noexcept {
    thread_local RequestPool pool;
    return alive_ ? &pool : nullptr;
  }
  Request* take() noexcept {
    if (free_.empty()) return nullptr;
    Request* r = free_.back();
    free_.pop_back();
    return r;
  }
  bool give(Request* r) noexcept {
    if (free_.size() >= kMaxKept) return false;
    if (free_.capacity() == 0) {
      try {
        free_.reserve(kMaxKept);
      } catch (...) {
        return false;
      }
    }
    free_.push_back(r);
    return true;
  }

 private:
  static thread_local bool alive_;
  std::vector<Request*> free_;
};
thread_local bool RequestPool::alive_ = true;

// Keeps capacities that a typical request reuses, gives back larger ones.
void shrinkTo(std::string& s, std::size_t keep) noexcept {
  if (s.capacity() > keep) {
    std::string().swap(s);
  } else {
    s.clear();
  }
}
}  // namespace

void RequestRecycler::operator()(Request* request) const noexcept {
  if (!request) return;
  RequestData::of(*request).reset();
  RequestPool* pool = RequestPool::get();
  if (!pool || !pool->give(request)) delete request;
}

RequestPtr RequestData::acquire() {
  RequestPool* pool = RequestPool::get();
  Request* r = pool ? pool->take() : nullptr;
  return RequestPtr(r ? r : new Request());
}

void RequestData::splitTarget() noexcept {
  std::string_view t = target;
  // RFC 9112 3.2.2: a server must accept the absolute-form
  // ("http://host/a?x"); it routes on the path, as for the origin-form.
  bool absolute = false;
  if (!t.empty() && t.front() != '/') {
    if (auto scheme = t.find("://"); scheme != std::string_view::npos) {
      absolute = true;
      auto rest = t.find_first_of("/?#", scheme + 3);
      t = rest == std::string_view::npos ? std::string_view{} : t.substr(rest);
    }
  }
  // One pass for the query's '?' and a fragment's '#': a fragment belongs
  // to neither the path nor the query (clients should not send one, but
  // llhttp lets it through).
  std::size_t q = std::string_view::npos;
  std::size_t end = findFirstOf(t, 0, '?', '#', '#');
  if (end < t.size() && t[end] == '?') {
    q = end;
    end = findFirstOf(t, q + 1, '#', '#', '#');
  }
  path = t.substr(0, std::min(q, end));
  if (absolute && path.empty()) path = "/";
  query = q == std::string_view::npos ? std::string_view{} : t.substr(q + 1, end - q - 1);
}

void RequestData::own() {
  if (owned) return;
  auto& fields = HeaderAccess::fields(headers);
  std::size_t total = target.size() + remoteAddress.size();
  for (const auto& [name, value] : fields) total += name.size() + value.size();
  for (const auto& [name, value] : params) total += name.size() + value.size();
  storage.clear();
  storage.reserve(total);  // no reallocation below: the views stay put
  auto copy = [this](std::string_view v) -> std::string_view {
    if (v.empty()) return {};
    const std::size_t at = storage.size();
    storage.append(v);
    return {storage.data() + at, v.size()};
  };
  const std::string_view oldTarget = target;
  target = copy(target);
  // path and query are parts of the target (or the literal "/").
  auto rebase = [&](std::string_view v) -> std::string_view {
    if (v.data() >= oldTarget.data() &&
        v.data() + v.size() <= oldTarget.data() + oldTarget.size()) {
      return {target.data() + (v.data() - oldTarget.data()), v.size()};
    }
    return v;
  };
  path = rebase(path);
  query = rebase(query);
  for (auto& [name, value] : fields) {
    name = copy(name);
    value = copy(value);
  }
  for (auto& [name, value] : params) {
    name = copy(name);
    value = copy(value);
  }
  remoteAddress = copy(remoteAddress);
  if (loop) loopRef = loop->shared_from_this();
  if (connection) conn = connection->self();
  connection = nullptr;
  owned = true;
}

void RequestData::reset() noexcept {
  method = target = path = query = {};
  versionMinor = 1;
  HeaderAccess::fields(headers).clear();
  shrinkTo(body, 4096);  // a larger body is one allocation among its copies anyway
  params.clear();
  shrinkTo(decoded, 4096);
  if (queryPairs) queryPairs.reset();
  if (!locals.empty()) locals.clear();
  remoteAddress = {};
  remotePort = 0;
  if (secure) {
    secure = false;
    peerCertificate.reset();
  }
  loop = nullptr;
  connection = nullptr;
  serial = 0;
  webSocket = deferred = false;
  if (owned) {
    // Only a request that outlived its handler holds these (own(), defer(),
    // coroutines).
    loopRef.reset();
    conn.reset();
    deferredState.reset();
    keepAlive.reset();
    aborted = false;
    shrinkTo(storage, 4096);
    owned = false;
  }
}
}  // namespace detail

}  // namespace spry
