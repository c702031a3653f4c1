#pragma once
// A Transport over one accepted libuv TCP handle: the output queue (tried
// with uv_try_write first, then handed to uv_write), reading with the loop's
// shared buffer, FIN after the output, and stall detection for send timeouts.

#include <uv.h>

#include <memory>
#include <string>

#include "transport/transport.h"

namespace spry::detail {

class TcpTransport final : public Transport {
 public:
  explicit TcpTransport(TransportEvents& events) noexcept;
  ~TcpTransport();
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  uv_tcp_t* handle() noexcept { return &tcp_; }
  // After the next complete flush, give the output buffer's capacity back
  // (a WebSocket's 101: many sockets go quiet right after it).
  void releaseAfterFlush() noexcept { releaseAfterFlush_ = true; }

  void flush() noexcept override;
  bool isWriting() const noexcept override { return write_ != nullptr; }
  void pauseReading() noexcept override;
  void resumeReading() noexcept override;
  void closeAfterFlush(std::uint64_t lingerMs) noexcept override;
  void close() noexcept override;
  bool isStalled(std::uint64_t now, std::uint64_t limitMs) noexcept override;
  std::string peerAddress(std::uint16_t* port) const override;

 private:
  struct WriteRequest;
  struct Linger;

  static void onAlloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf) noexcept;
  static void onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) noexcept;
  static void onWriteDone(uv_write_t* req, int status) noexcept;
  static void onClosedHandle(uv_handle_t* h) noexcept;
  void shutdownWrite() noexcept;
  // Writes what the kernel takes now; false on a socket error (closed then).
  bool tryWrite() noexcept;
  void startWrite() noexcept;
  void drained() noexcept;
  std::size_t unacknowledgedBytes() noexcept;

  // Small members first: they fill the base class's tail padding.
  bool reading_ = false;
  bool peerEnded_ = false;
  bool shutdownSent_ = false;
  bool releaseAfterFlush_ = false;
  std::uint8_t handlesOpen_ = 1;  // the TCP handle, plus the linger timer once started
  TransportEvents& events_;
  WriteRequest* write_ = nullptr;
  Linger* linger_ = nullptr;  // made by closeAfterFlush with a linger time
  uv_tcp_t tcp_;
};

}  // namespace spry::detail
