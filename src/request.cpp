#include <nlohmann/json.hpp>

#include "app_state.h"
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

Request::Request(std::unique_ptr<detail::RequestData> data) : d_(std::move(data)) {}
Request::~Request() = default;

std::string_view Request::method() const noexcept {
  return d_->parsed.method;
}
std::string_view Request::path() const noexcept {
  return d_->path;
}
std::string_view Request::target() const noexcept {
  return d_->parsed.target;
}
int Request::httpMinorVersion() const noexcept {
  return d_->parsed.versionMinor;
}

std::string_view Request::param(std::string_view name) const noexcept {
  for (const auto& [k, v] : d_->params) {
    if (k == name) return v;
  }
  return {};
}

const std::vector<std::pair<std::string, std::string>>& Request::params() const noexcept {
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

const Headers& Request::headers() const noexcept {
  return d_->parsed.headers;
}
std::string_view Request::header(std::string_view name) const noexcept {
  return d_->parsed.headers.get(name);
}

std::optional<std::string_view> Request::cookie(std::string_view name) const {
  // Cookie: a=1; b=2 (RFC 6265 section 4.2.1), possibly in several fields.
  for (std::string_view line : d_->parsed.headers.getAll("Cookie")) {
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
  return d_->parsed.body;
}
std::span<const std::byte> Request::bytes() const noexcept {
  return {reinterpret_cast<const std::byte*>(d_->parsed.body.data()), d_->parsed.body.size()};
}

nlohmann::json Request::json() const {
  auto parsed = nlohmann::json::parse(d_->parsed.body, nullptr, /*allow_exceptions=*/false);
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
  d_->deferred = true;
  d_->deferredState = std::make_shared<detail::DeferredState>();
  d_->deferredState->conn = d_->conn;
  d_->deferredState->requestSerial = d_->serial;
  return Deferred(d_->deferredState);
}

namespace detail {
std::unique_ptr<Request> RequestData::makeRequest(std::unique_ptr<RequestData> d) {
  std::string_view t = d->parsed.target;
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
  // A fragment belongs to neither the path nor the query (clients should not
  // send one, but llhttp lets it through).
  t = t.substr(0, t.find('#'));
  auto q = t.find('?');
  d->path = t.substr(0, q);
  if (absolute && d->path.empty()) d->path = "/";
  d->query = q == std::string_view::npos ? std::string_view{} : t.substr(q + 1);
  return std::unique_ptr<Request>(new Request(std::move(d)));
}
}  // namespace detail

}  // namespace spry
