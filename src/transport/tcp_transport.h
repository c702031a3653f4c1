#pragma once
// A Transport over one accepted libuv TCP handle: the output queue (tried
// with uv_try_write first, then handed to uv_write), reading with the loop's
// shared buffer, FIN after the output, and stall detection for send timeouts.

#include <uv.h>

#include <deque>
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

  void write(std::string_view bytes) override;
  void writeShared(const SharedBytes& bytes) override;
  void flush() noexcept override;
  std::size_t bufferedAmount() const noexcept override;
  bool isWriting() const noexcept override { return write_ != nullptr; }
  void pauseReading() noexcept override;
  void resumeReading() noexcept override;
  void closeAfterFlush(std::uint64_t lingerMs) noexcept override;
  void close() noexcept override;
  bool isEnding() const noexcept override { return ending_ || closed_; }
  bool isClosed() const noexcept override { return closed_; }
  bool isStalled(std::uint64_t now, std::uint64_t limitMs) noexcept override;
  std::string peerAddress(std::uint16_t* port) const override;
  void releaseIdleMemory() noexcept override;

 private:
  struct Chunk;
  struct Queue;
  struct WriteRequest;

  static void onAlloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf) noexcept;
  static void onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) noexcept;
  static void onWriteDone(uv_write_t* req, int status) noexcept;
  static void onClosedHandle(uv_handle_t* h) noexcept;
  void handleClosed() noexcept;
  void shutdownWrite() noexcept;
  bool queueEmpty() const noexcept;
  // Writes what the kernel takes now; false on a socket error (closed then).
  bool tryWrite() noexcept;
  void startWrite() noexcept;
  void drained() noexcept;
  std::size_t unacknowledgedBytes() noexcept;

  uv_tcp_t tcp_;
  TransportEvents& events_;
  std::string out_;               // not yet handed to the kernel; precedes queue_
  std::unique_ptr<Queue> queue_;  // large shared chunks, made only when one is queued
  WriteRequest* write_ = nullptr;
  uv_timer_t* lingerTimer_ = nullptr;  // made when lingering starts
  bool reading_ = false;
  bool closed_ = false;
  bool peerEnded_ = false;
  bool ending_ = false;
  bool shutdownSent_ = false;
  bool releaseAfterFlush_ = false;
  std::uint8_t handlesOpen_ = 1;  // the TCP handle, plus the linger timer once made
  std::uint32_t lingerMs_ = 0;
};

}  // namespace spry::detail
