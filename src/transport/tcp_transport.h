#pragma once
// A Transport over one accepted TCP socket, watched by a libuv poll handle:
// reads land in the loop's shared buffer, writes go straight to the kernel
// (send/sendmsg) and what it does not take waits for the socket to become
// writable. A uv_poll_t is 160 bytes where a uv_tcp_t is 248, and the socket
// calls are ours: no libuv write requests, no extra read for EAGAIN. Also
// here: FIN after the output, the linger, and stall detection for send
// timeouts.

#include <uv.h>

#include <cstdint>
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

  // Takes an accepted, non-blocking socket and starts reading from it. On
  // failure the socket is closed and false returned; no event follows.
  bool open(uv_loop_t* loop, int fd) noexcept;
  // The socket (-1 before open and once closed).
  int fd() const noexcept;
  // Sends the events to `events` from now on (a TLS transport layered on
  // this one, before open()).
  void setEvents(TransportEvents& events) noexcept { events_ = &events; }
  TransportEvents* events() const noexcept { return events_; }
  // After the next complete flush, give the output buffer's capacity back
  // (a WebSocket's 101: many sockets go quiet right after it).
  void releaseAfterFlush() noexcept { releaseAfterFlush_ = true; }

  void flush() noexcept override;
  bool isWriting() const noexcept override { return blocked_; }
  void pauseReading() noexcept override;
  void resumeReading() noexcept override;
  void closeAfterFlush(std::uint64_t lingerMs) noexcept override;
  void close() noexcept override;
  bool isStalled(std::uint64_t now, std::uint64_t limitMs) noexcept override;
  std::string peerAddress(std::uint16_t* port) const override;

 private:
  struct Slow;

  static void onPoll(uv_poll_t* h, int status, int events) noexcept;
  static void onClosedHandle(uv_handle_t* h) noexcept;
  void onReadable() noexcept;
  void onWritable() noexcept;
  void peerEnd() noexcept;
  // Watches for what is wanted now: readable while reading, writable while
  // blocked.
  void watch() noexcept;
  void shutdownWrite() noexcept;
  Slow* slow() noexcept;  // made on first use; null without memory
  void dropSlow() noexcept;
  // Writes what the kernel takes now; false on a socket error (closed then).
  bool tryWrite() noexcept;
  void block() noexcept;
  void drained() noexcept;
  // Bytes the peer has acknowledged since the socket blocked (may start
  // negative: what the kernel held then).
  std::int64_t acknowledged() const noexcept;

  // Small members first: they fill the base class's tail padding.
  bool open_ = false;
  bool reading_ = false;
  bool peerEnded_ = false;
  bool shutdownSent_ = false;
  bool releaseAfterFlush_ = false;
  bool blocked_ = false;          // output waits for the socket to become writable (in slow_)
  std::uint8_t watching_ = 0;     // the uv_poll events started
  std::uint8_t handlesOpen_ = 0;  // the poll handle, plus the linger timer once made
  TransportEvents* events_;
  Slow* slow_ = nullptr;  // while output waits for a writable socket, or lingering
  uv_poll_t poll_;
};

}  // namespace spry::detail
