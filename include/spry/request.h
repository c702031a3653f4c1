#pragma once
/// An HTTP request as handlers and middleware see it.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "spry/headers.h"
#include "spry/loop.h"
#include "spry/request_headers.h"
#include "spry/response.h"
#include "spry/tls.h"

namespace spry {

namespace detail {
struct RequestData;
}

/// Typed per-request values: middleware sets them, handlers read them. One
/// value per type; wrap in a struct to keep several of the same type.
class Locals {
 public:
  /// Stores `value` (replacing any previous value of type T) and returns it.
  template <class T>
  T& set(T value) {
    auto holder = std::make_shared<T>(std::move(value));
    T& ref = *holder;
    put(typeid(T), std::move(holder));
    return ref;
  }
  /// The value of type T, or nullptr.
  template <class T>
  T* find() const noexcept {
    return static_cast<T*>(lookup(typeid(T)));
  }
  /// The value of type T; throws std::logic_error naming the type when absent
  /// (a handler that runs without the middleware that sets it).
  template <class T>
  T& get() const {
    if (T* v = find<T>()) return *v;
    missing(typeid(T));
  }
  bool empty() const noexcept { return values_.empty(); }
  /// Removes every value.
  void clear() noexcept { values_.clear(); }

 private:
  void put(const std::type_info& type, std::shared_ptr<void> value);
  void* lookup(const std::type_info& type) const noexcept;
  [[noreturn]] static void missing(const std::type_info& type);
  std::vector<std::pair<const std::type_info*, std::shared_ptr<void>>> values_;
};

/// One HTTP request. Valid until its response has been sent (for a ws route:
/// during the ws handler call only). Loop thread only.
///
/// Its method, path, target, parameters, headers and cookies are views into
/// the bytes the request arrived in, not copies, valid while the handler
/// runs. A handler that uses one later (a timer, a Deferred, a stream's
/// callbacks) copies it (std::string) or reads it again from the request
/// then: a deferred or streamed request is copied once, when it starts to
/// outlive its handler, and stays valid until its response is sent.
///
/// In a coroutine handler or middleware (returning spry::Task) the request
/// is copied before the coroutine starts: it, and every view taken from it
/// at any time, stays valid until the response is sent and every coroutine
/// of the request has ended (also when the client left, see isAborted).
class Request {
 public:
  /// "GET", "POST", ...
  std::string_view method() const noexcept;
  /// The path as received (still percent-encoded), without the query string.
  std::string_view path() const noexcept;
  /// The request-target as received ("/a/b?x=1").
  std::string_view target() const noexcept;
  /// HTTP minor version: 0 or 1.
  int httpMinorVersion() const noexcept;

  /// A decoded route parameter (":name", or "**" for a catch-all); empty when absent.
  std::string_view param(std::string_view name) const noexcept;
  /// Every route parameter (name, decoded value), in pattern order.
  std::span<const std::pair<std::string_view, std::string_view>> params() const noexcept;

  /// The first decoded value of query parameter `name` ('+' is a space).
  std::optional<std::string_view> query(std::string_view name) const;
  /// Every value of query parameter `name`, in order.
  std::vector<std::string_view> queryAll(std::string_view name) const;

  const RequestHeaders& headers() const noexcept;
  /// The first value of header `name` (case-insensitive), empty when absent.
  std::string_view header(std::string_view name) const noexcept;
  /// The value of cookie `name` from the Cookie header(s).
  std::optional<std::string_view> cookie(std::string_view name) const;

  /// The body as received (de-chunked). Empty in a ws route.
  std::string_view text() const noexcept;
  std::span<const std::byte> bytes() const noexcept;
  /// The body parsed as JSON; throws HttpError(400) when it is not valid JSON.
  nlohmann::json json() const;

  /// Values that middleware attached to this request.
  Locals& locals() noexcept;

  /// The peer's address ("127.0.0.1", "::1") and port.
  std::string_view remoteAddress() const noexcept;
  std::uint16_t remotePort() const noexcept;
  /// True when the connection came through a TLS listener (https, wss).
  bool isSecure() const noexcept;
  /// The client's certificate, on a TLS listener with verifyClient; null
  /// otherwise. Valid as long as the request.
  const TlsPeerCertificate* peerCertificate() const noexcept;

  /// The loop this request is served on.
  Loop loop() const;

  /// Answers later: return the Deferred from the handler, call send() when
  /// ready. Throws std::logic_error in a ws route or when called twice.
  Deferred defer();
  /// True once the client has gone away before this request's response was
  /// sent (a suspended coroutine may stop early: its answer is discarded).
  bool isAborted() const noexcept;

  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request();

 private:
  friend struct detail::RequestData;
  Request();
  std::unique_ptr<detail::RequestData> d_;
};

}  // namespace spry
