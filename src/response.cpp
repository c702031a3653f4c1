#include <nlohmann/json.hpp>

#include "spry/response.h"

#include "http/http_writer.h"

namespace spry {

void Response::materialize() const {
  if (contentType_.empty()) return;
  headers_.add("Content-Type", contentType_);
  contentType_ = {};
}

Response& Response::setStatus(int status) {
  if (status < 100 || status > 599) {
    throw std::invalid_argument("spry: Response status must be 100..599, got " +
                                std::to_string(status));
  }
  status_ = status;
  return *this;
}

Response& Response::header(std::string_view name, std::string_view value) {
  if (!contentType_.empty() && equalsIgnoreCase(name, "content-type")) contentType_ = {};
  if (headers_.empty()) {
    headers_.add(name, value);  // nothing to replace (most responses)
  } else {
    headers_.set(name, value);
  }
  return *this;
}

Response& Response::setBody(std::string body) {
  body_ = std::move(body);
  return *this;
}

Response Response::text(std::string body, int status) {
  return Response(status, std::move(body), detail::kTextPlainType);
}

Response Response::html(std::string body, int status) {
  return Response(status, std::move(body), detail::kTextHtmlType);
}

Response Response::json(const nlohmann::json& body, int status) {
  return Response(status, body.dump(), detail::kJsonType);
}

Response Response::bytes(std::string body, std::string_view contentType, int status) {
  Response r(status, std::move(body), {});
  r.headers_.add("Content-Type", contentType);
  return r;
}

Response Response::bytes(std::span<const std::byte> body, std::string_view contentType,
                         int status) {
  return bytes(std::string(reinterpret_cast<const char*>(body.data()), body.size()), contentType,
               status);
}

Response Response::redirect(std::string location, int status) {
  if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308) {
    throw std::invalid_argument(
        "spry: Response::redirect status must be 301, 302, 303, 307 or 308, got " +
        std::to_string(status));
  }
  Response r(status);
  r.headers().set("Location", location);
  return r;
}

Response Response::stream(StreamProducer producer, std::string_view contentType, int status) {
  if (!producer) throw std::invalid_argument("spry: Response::stream needs a producer");
  Response r(status);
  r.headers().set("Content-Type", contentType);
  r.producer_ = std::move(producer);
  return r;
}

Deferred::operator Response() const {
  Response r(200);
  r.pending_ = state_;  // level 0: the Deferred's
  return r;
}

}  // namespace spry
