#pragma once
/// Errors that map to HTTP responses.

#include <stdexcept>
#include <string>

namespace spry {

/// Thrown by a handler or middleware: answered with `status` and `message` as a
/// plain-text body (the message is meant for the client). Other exceptions
/// become a 500 with a generic body; their text only reaches the log. It is an
/// answer, not a failure: App::filter<E> sees it only when E is HttpError or
/// derives from it, never through a base such as std::exception.
class HttpError : public std::runtime_error {
 public:
  /// Throws std::invalid_argument when `status` is not in 400..599.
  explicit HttpError(int status, std::string message = {});
  int status() const noexcept { return status_; }

 private:
  int status_;
};

}  // namespace spry
