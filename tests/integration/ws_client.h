#pragma once
// A blocking WebSocket client for loopback tests, on RawClient: it sends the
// handshake and masked frames byte for byte as the test asks (also malformed
// ones), and reads server frames (unmasked) one at a time with a timeout. It
// never answers pings by itself: tests decide whether a peer is alive.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "harness.h"

namespace spry::test {

namespace ws {
inline constexpr std::uint8_t kContinuation = 0x0;
inline constexpr std::uint8_t kText = 0x1;
inline constexpr std::uint8_t kBinary = 0x2;
inline constexpr std::uint8_t kClose = 0x8;
inline constexpr std::uint8_t kPing = 0x9;
inline constexpr std::uint8_t kPong = 0xA;
// The sample nonce of RFC 6455 section 1.3 and its accept value.
inline constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";
inline constexpr std::string_view kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
}  // namespace ws

struct WsFrame {
  std::uint8_t opcode = 0;
  bool fin = false;
  std::uint8_t rsv = 0;
  std::string payload;

  // The status code of a Close frame: 1005 when it carries none.
  std::uint16_t closeCode() const {
    if (payload.size() < 2) return 1005;
    return static_cast<std::uint16_t>((static_cast<std::uint8_t>(payload[0]) << 8) |
                                      static_cast<std::uint8_t>(payload[1]));
  }
  std::string closeReason() const { return payload.size() > 2 ? payload.substr(2) : std::string(); }
};

class WsClient {
 public:
  explicit WsClient(std::uint16_t port) : raw_(port) {}

  RawClient& raw() noexcept { return raw_; }

  // The request line and headers of a valid handshake for `path`; `extra`
  // lines ("Name: value\r\n") are added.
  static std::string handshakeRequest(std::string_view path, std::string_view extra = {}) {
    std::string r = "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n";
    r += "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    r += "Sec-WebSocket-Key: " + std::string(ws::kKey) + "\r\n";
    r += "Sec-WebSocket-Version: 13\r\n";
    r += extra;
    r += "\r\n";
    return r;
  }

  // Sends a valid handshake (plus `extra` header lines) and reads the answer.
  std::optional<HttpResponse> handshake(std::string_view path, std::string_view extra = {}) {
    return handshakeRaw(handshakeRequest(path, extra));
  }

  // Sends `request` as is and reads the answer. After a 101 the response has
  // no body; any bytes after its head stay buffered for readFrame.
  std::optional<HttpResponse> handshakeRaw(std::string_view request) {
    if (!raw_.send(request)) return std::nullopt;
    auto head = raw_.readUntil("\r\n\r\n");
    if (!head) return std::nullopt;
    // Put the head back for readResponse, which knows how to read bodies.
    raw_.buffer().insert(0, *head);
    if (head->compare(0, 12, "HTTP/1.1 101") == 0) {
      auto r = readResponse(raw_, /*headRequest=*/true);
      open_ = r.has_value();
      return r;
    }
    return readResponse(raw_);
  }

  // Handshake that must succeed (101 with the right accept value).
  bool open(std::string_view path, std::string_view extra = {}) {
    auto r = handshake(path, extra);
    return r && r->status == 101 && r->headers.get("Sec-WebSocket-Accept") == ws::kAccept;
  }

  // One frame, masked with a fixed non-zero key unless `masked` is false.
  bool sendFrame(std::uint8_t opcode, std::string_view payload, bool fin = true, bool masked = true,
                 std::uint8_t rsv = 0) {
    return raw_.send(frame(opcode, payload, fin, masked, rsv));
  }
  static std::string frame(std::uint8_t opcode, std::string_view payload, bool fin = true,
                           bool masked = true, std::uint8_t rsv = 0) {
    std::string f = frameHeader(opcode, payload.size(), fin, masked, rsv);
    if (!masked) return f.append(payload);
    for (std::size_t i = 0; i < payload.size(); ++i) {
      f.push_back(static_cast<char>(static_cast<std::uint8_t>(payload[i]) ^ kMask[i % 4]));
    }
    return f;
  }
  // The header of such a frame announcing `length` payload bytes (in the
  // shortest length form), masking key included; any length may be claimed.
  static std::string frameHeader(std::uint8_t opcode, std::uint64_t length, bool fin = true,
                                 bool masked = true, std::uint8_t rsv = 0) {
    std::string f;
    f.push_back(static_cast<char>((fin ? 0x80 : 0) | ((rsv & 0x7) << 4) | (opcode & 0x0F)));
    const std::uint8_t maskBit = masked ? 0x80 : 0;
    if (length < 126) {
      f.push_back(static_cast<char>(maskBit | length));
    } else if (length <= 0xFFFF) {
      f.push_back(static_cast<char>(maskBit | 126));
      f.push_back(static_cast<char>(length >> 8));
      f.push_back(static_cast<char>(length));
    } else {
      f.push_back(static_cast<char>(maskBit | 127));
      for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>(length >> (8 * i)));
    }
    if (masked) {
      for (auto b : kMask) f.push_back(static_cast<char>(b));
    }
    return f;
  }

  bool sendText(std::string_view text) { return sendFrame(ws::kText, text); }
  bool sendBinary(std::string_view bytes) { return sendFrame(ws::kBinary, bytes); }
  bool sendPing(std::string_view payload = {}) { return sendFrame(ws::kPing, payload); }
  bool sendPong(std::string_view payload = {}) { return sendFrame(ws::kPong, payload); }
  // A Close with `code` and `reason`; code 0 sends an empty Close.
  bool sendClose(std::uint16_t code = 1000, std::string_view reason = {}) {
    std::string p;
    if (code != 0) {
      p.push_back(static_cast<char>(code >> 8));
      p.push_back(static_cast<char>(code));
      p.append(reason);
    }
    return sendFrame(ws::kClose, p);
  }

  // The next frame from the server, or nullopt on timeout or connection end.
  // A masked server frame is a protocol error: it is reported as nullopt.
  std::optional<WsFrame> readFrame(std::chrono::milliseconds timeout = 2000ms) {
    if (!raw_.fill(2, timeout)) return std::nullopt;
    const auto b0 = static_cast<std::uint8_t>(raw_.buffer()[0]);
    const auto b1 = static_cast<std::uint8_t>(raw_.buffer()[1]);
    if (b1 & 0x80) return std::nullopt;
    std::size_t headerSize = 2;
    std::uint64_t n = b1 & 0x7F;
    if (n == 126) headerSize = 4;
    if (n == 127) headerSize = 10;
    if (!raw_.fill(headerSize, timeout)) return std::nullopt;
    if (headerSize > 2) {
      n = 0;
      for (std::size_t i = 2; i < headerSize; ++i) {
        n = (n << 8) | static_cast<std::uint8_t>(raw_.buffer()[i]);
      }
    }
    if (!raw_.fill(headerSize + n, timeout)) return std::nullopt;
    raw_.take(headerSize);
    WsFrame f;
    f.fin = (b0 & 0x80) != 0;
    f.rsv = static_cast<std::uint8_t>((b0 >> 4) & 0x7);
    f.opcode = b0 & 0x0F;
    f.payload = raw_.take(static_cast<std::size_t>(n));
    return f;
  }

  // Reads frames until a Close; answers pings when `answerPings`. Returns the
  // Close, or nullopt on timeout or connection end.
  std::optional<WsFrame> readClose(std::chrono::milliseconds timeout = 2000ms,
                                   bool answerPings = true) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto f = readFrame(left);
      if (!f) return std::nullopt;
      if (f->opcode == ws::kClose) return f;
      if (f->opcode == ws::kPing && answerPings) sendPong(f->payload);
    }
  }

  // The code of the next Close from the server (0 when none came).
  std::uint16_t readCloseCode(std::chrono::milliseconds timeout = 2000ms) {
    auto f = readClose(timeout);
    return f ? f->closeCode() : 0;
  }

  // Completes a server-initiated close: reads the Close, echoes its code,
  // then waits for TCP to end. Returns the code (0 when the steps failed).
  std::uint16_t closeHandshake(std::chrono::milliseconds timeout = 2000ms) {
    auto f = readClose(timeout);
    if (!f) return 0;
    sendClose(f->closeCode() == 1005 ? 0 : f->closeCode());
    return raw_.waitClosed(timeout) ? f->closeCode() : 0;
  }

  // The next data message (pings answered, other control frames skipped):
  // nullopt on timeout, close or connection end.
  std::optional<WsFrame> readMessage(std::chrono::milliseconds timeout = 2000ms) {
    for (;;) {
      auto f = readFrame(timeout);
      if (!f || f->opcode == ws::kClose) return std::nullopt;
      if (f->opcode == ws::kPing) {
        sendPong(f->payload);
        continue;
      }
      if (f->opcode == ws::kPong) continue;
      return f;
    }
  }

  bool isOpen() const noexcept { return open_; }

 private:
  // The masking key of every client frame: fixed, so that tests are repeatable.
  static constexpr std::uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};

  RawClient raw_;
  bool open_ = false;
};

}  // namespace spry::test
