// Fuzzes a server TlsSession: the first byte picks what the rest is,
//   even: the client's first flight (random bytes where a ClientHello goes);
//   odd:  bytes after a completed handshake with an in-process client.
// The second byte cuts the input into reads of that many bytes (0: one
// read). The session must never crash, never hand out plaintext that the
// client did not send, and end kFailed or still waiting, never open on junk.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "tls/tls_context.h"
#include "tls/tls_session.h"
#include "tls_certs.h"
#include "tls_client.h"

using namespace spry::detail;

namespace {

std::shared_ptr<const TlsContext> context() {
  static const auto ctx = [] {
    const auto& certs = spry_test::TlsCerts::get();
    spry::TlsOptions o;
    o.certFile = certs.path("ec.pem");
    o.keyFile = certs.path("ec.key");
    return TlsContext::create(o, nullptr);
  }();
  return ctx;
}

void feed(spry_test::TlsServer& server, std::string_view input, std::size_t step) {
  if (step == 0) step = input.size();
  while (!input.empty()) {
    const std::size_t n = std::min(step, input.size());
    server.session.advance(input.data(), n);
    input.remove_prefix(n);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const bool afterHandshake = data[0] & 1;
  const std::size_t step = data[1];
  const std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  spry_test::TlsServer server(context(), 1024);
  if (!afterHandshake) {
    feed(server, input, step);
    if (!server.plain.empty() || server.session.state() == TlsState::kOpen) std::abort();
  } else {
    spry_test::TlsClient client;
    spry_test::pump(client, server);
    if (server.session.state() != TlsState::kOpen) std::abort();
    client.write("hello");
    spry_test::pump(client, server);
    if (server.plain != "hello") std::abort();
    feed(server, input, step);
    // Forged records cannot pass the AEAD: nothing more is decrypted.
    if (server.plain != "hello") std::abort();
    server.session.write("bye");
  }
  server.session.receiveEnd();
  server.session.close();
  if (server.session.state() == TlsState::kOpen || server.session.hasInput()) std::abort();
  return 0;
}
