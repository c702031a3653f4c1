#pragma once
// The byte-moving layer under every protocol: TCP, or TLS wrapping TCP
// (TlsTransport). A protocol above it writes plain bytes and gets plain bytes; it never
// knows which transport carries them.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "transport/output_buffer.h"

namespace spry::detail {

// Bytes shared by many writers (a pub/sub frame), written without a copy.
using SharedBytes = std::shared_ptr<const std::string>;

// What a transport tells its owner. Every call comes from the loop thread and
// must not throw.
class TransportEvents {
 public:
  // Bytes received. `data` is writable (protocols may unmask in place) and
  // valid during the call only.
  virtual void onData(char* data, std::size_t size) noexcept = 0;
  // Everything queued has been handed to the kernel.
  virtual void onDrained() noexcept = 0;
  // The peer sent its FIN (reading has stopped; writing may go on).
  virtual void onPeerEnd() noexcept = 0;
  // The connection is closed, by close() or by the transport itself (an
  // error, the end of closeAfterFlush): no event follows but onReleased.
  virtual void onClosed() noexcept = 0;
  // Every handle is closed: the transport's memory may be released now.
  virtual void onReleased() noexcept = 0;
  // Where reads land: the loop's buffer (a read is consumed before the next
  // one, so connections need no buffer of their own).
  virtual std::string& readBuffer() noexcept = 0;
  // Bytes entering (+) or leaving (-) a kernel-bound write request (stats).
  virtual void onWriteQueued(long delta) noexcept = 0;

 protected:
  ~TransportEvents() = default;
};

// A transport. Output is the same for every transport and lives here, so a
// protocol's writes are inline appends: bytes queue in `out_` (and shared
// chunks after it), and flush() hands them on: to the kernel for TCP, through
// the cipher first for TLS.
class Transport {
 public:
  // Queues bytes after everything queued before; flush() sends them. Throws
  // std::bad_alloc.
  void write(std::string_view bytes) {
    if (!queue_) [[likely]] {
      out_.append(bytes);
    } else {
      queueOwned(bytes);
    }
  }
  // Queues `size` bytes that `fill(char*)` writes in place (a frame's
  // header and payload, with no copy of the header).
  template <class Fill>
  void writeWith(std::size_t size, Fill&& fill) {
    if (!queue_) [[likely]] {
      fill(out_.extend(size));
    } else {
      std::string bytes(size, '\0');
      fill(bytes.data());
      queueOwned(bytes);
    }
  }
  // Queues at most `max` bytes that `fill(char*)` writes in place, returning
  // the end of what it wrote (an HTTP response, sized by an upper bound).
  template <class Fill>
  void writeUpTo(std::size_t max, Fill&& fill) {
    if (!queue_) [[likely]] {
      char* begin = out_.extend(max);
      char* end = fill(begin);
      out_.unextend(max - static_cast<std::size_t>(end - begin));
    } else {
      std::string bytes(max, '\0');
      bytes.resize(static_cast<std::size_t>(fill(bytes.data()) - bytes.data()));
      queueOwned(bytes);
    }
  }
  // Queues shared bytes, without copying them when large.
  void writeShared(const SharedBytes& bytes);
  // Bytes queued and not yet taken by the kernel.
  std::size_t bufferedAmount() const noexcept {
    return out_.size() - outSent_ + (queue_ ? queue_->bytes : 0);
  }
  // closeAfterFlush() was called (or the connection is closed).
  bool isEnding() const noexcept { return ending_ || closed_; }
  bool isClosed() const noexcept { return closed_; }

  // Sends what is queued: at once as far as the kernel takes it, the rest
  // when the socket is writable. onDrained follows once nothing is left.
  virtual void flush() noexcept = 0;
  // True while a write waits for the socket to become writable.
  virtual bool isWriting() const noexcept = 0;
  virtual void pauseReading() noexcept = 0;
  virtual void resumeReading() noexcept = 0;
  // Ends the connection once what is queued has been written; from now on
  // received bytes are dropped and onDrained no longer fires. With
  // `lingerMs`, our FIN goes first and the peer's bytes are read and dropped
  // until its FIN or lingerMs: closing with unread input would reset the
  // connection and could destroy the last answer before the peer reads it.
  virtual void closeAfterFlush(std::uint64_t lingerMs) noexcept = 0;
  // Drops the connection now: unsent bytes are lost; onClosed follows.
  virtual void close() noexcept = 0;
  // True once output has waited `limitMs` with the peer reading none of it.
  virtual bool isStalled(std::uint64_t now, std::uint64_t limitMs) noexcept = 0;
  // The peer's address ("127.0.0.1", "::1") and port; empty when unknown.
  virtual std::string peerAddress(std::uint16_t* port) const = 0;
  // Gives back buffer capacity an idle connection need not hold.
  virtual void releaseIdleMemory() noexcept {
    if (out_.empty() && !queue_) out_.release();
  }

 protected:
  Transport() noexcept = default;
  ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Output after out_: shared bytes, or owned bytes that arrived after them
  // (order is kept).
  struct Chunk {
    SharedBytes shared;
    std::string owned;
    std::size_t offset = 0;
    std::string_view view() const noexcept {
      return std::string_view(shared ? *shared : owned).substr(offset);
    }
  };
  // Made only while a large shared chunk is queued and null once empty: an
  // idle connection holds no deque (libstdc++'s allocates ~570 bytes).
  struct Queue {
    std::deque<Chunk> chunks;
    std::size_t bytes = 0;
  };

  void queueOwned(std::string_view bytes);
  // `n` more bytes of out_ are gone (to the kernel, or encrypted): empty it
  // when all are, drop the gone half once it is half (the copy is amortized
  // over what went).
  void consumeOut(std::size_t n) noexcept {
    outSent_ += static_cast<std::uint32_t>(n);
    if (outSent_ == out_.size()) {
      out_.clear();
      outSent_ = 0;
    } else if (outSent_ >= out_.size() / 2) {
      out_.consume(outSent_);
      outSent_ = 0;
    }
  }

  OutputBuffer out_;              // its first outSent_ bytes are out; precedes queue_
  std::unique_ptr<Queue> queue_;  // null when empty
  std::uint32_t outSent_ = 0;     // written from the front of out_, not yet dropped
  bool closed_ = false;
  bool ending_ = false;
};

}  // namespace spry::detail
