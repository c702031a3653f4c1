#include "ws/permessage_deflate.h"

#include <sys/mman.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

namespace spry::detail {
namespace {

std::atomic<std::size_t> g_liveStreams{0};

// What every message's deflate output ends with after Z_SYNC_FLUSH, and what
// the receiver appends before inflating (RFC 7692 7.2.1, 7.2.2).
constexpr unsigned char kTail[4] = {0x00, 0x00, 0xff, 0xff};

// Inflated pieces grow the output by at least this much at a time.
constexpr std::size_t kMinGrowth = 1024;
// Idle inflaters a loop keeps for messages that arrive in pieces.
constexpr std::size_t kMaxSpareInflaters = 8;
// Buffers larger than this are given back by trim().
constexpr std::size_t kKeepBufferBytes = 64 * 1024;

int clampInt(int v, int lo, int hi) noexcept {
  return std::min(std::max(v, lo), hi);
}

// zlib's memory comes from here: blocks of a page or more (a deflate
// context is four of 64 KiB at the default settings, an inflate window 32
// KiB) are mapped and unmapped, so a context given back returns its memory
// to the system at once. From malloc, glibc would keep such blocks (they are
// under its mmap threshold) and a server whose busy sockets went quiet would
// stay at its peak.
constexpr std::size_t kMapFrom = 4096;
struct alignas(16) BlockHeader {
  std::size_t size;  // of the whole block, header included; 0: from malloc
};

void* zAlloc(void*, uInt items, uInt size) noexcept {
  const std::size_t bytes = std::size_t{items} * size + sizeof(BlockHeader);
  void* p;
  if (bytes >= kMapFrom) {
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return Z_NULL;
    static_cast<BlockHeader*>(p)->size = bytes;
  } else {
    p = std::malloc(bytes);
    if (p == nullptr) return Z_NULL;
    static_cast<BlockHeader*>(p)->size = 0;
  }
  return static_cast<BlockHeader*>(p) + 1;
}

void zFree(void*, void* address) noexcept {
  if (address == nullptr) return;
  BlockHeader* h = static_cast<BlockHeader*>(address) - 1;
  if (h->size != 0) {
    munmap(h, h->size);
  } else {
    std::free(h);
  }
}

std::unique_ptr<z_stream_s> newStream() {
  auto z = std::make_unique<z_stream_s>();
  std::memset(z.get(), 0, sizeof(z_stream_s));
  z->zalloc = zAlloc;
  z->zfree = zFree;
  return z;
}

}  // namespace

std::size_t liveZlibStreams() noexcept {
  return g_liveStreams.load(std::memory_order_relaxed);
}

// ---------------------------------------------------------------- Deflater

Deflater::Deflater(int windowBits, int level, int memLevel)
    : z_(newStream()),
      windowBits_(clampInt(windowBits, 9, 15)),
      level_(clampInt(level, 1, 9)),
      memLevel_(clampInt(memLevel, 1, 9)) {
  if (deflateInit2(z_.get(), level_, Z_DEFLATED, -windowBits_, memLevel_, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    throw std::bad_alloc();
  }
  g_liveStreams.fetch_add(1, std::memory_order_relaxed);
}

Deflater::~Deflater() {
  deflateEnd(z_.get());
  g_liveStreams.fetch_sub(1, std::memory_order_relaxed);
}

void Deflater::reset() noexcept {
  deflateReset(z_.get());
}

bool Deflater::compress(std::string_view message, std::string& out, bool keepContext) {
  const std::size_t start = out.size();
  z_stream_s& z = *z_;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  z.avail_in = 0;
  std::size_t inLeft = message.size();
  // deflateBound covers Z_FINISH; a sync flush adds its empty stored block.
  std::size_t room =
      deflateBound(&z, static_cast<uLong>(std::min<std::size_t>(message.size(), UINT32_MAX))) + 16;
  bool ok = true;
  for (;;) {
    if (z.avail_in == 0 && inLeft != 0) {
      const auto take = static_cast<uInt>(std::min<std::size_t>(inLeft, UINT32_MAX));
      z.avail_in = take;
      inLeft -= take;
    }
    const std::size_t have = out.size();
    out.resize(have + room);
    z.next_out = reinterpret_cast<Bytef*>(out.data() + have);
    z.avail_out = static_cast<uInt>(std::min<std::size_t>(room, UINT32_MAX));
    const int rc = deflate(&z, inLeft == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH);
    out.resize(out.size() - z.avail_out);
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      ok = false;
      break;
    }
    // Done once every byte is in and the flush fit (output room left over).
    if (inLeft == 0 && z.avail_in == 0 && z.avail_out != 0) break;
    room = std::max<std::size_t>(room, 4096);
  }
  if (ok && out.size() - start >= 4 && std::memcmp(out.data() + out.size() - 4, kTail, 4) == 0) {
    out.resize(out.size() - 4);
  } else {
    ok = false;
  }
  if (!ok) {
    out.resize(start);
    deflateReset(&z);
    return false;
  }
  if (!keepContext) deflateReset(&z);
  if (counters_ != nullptr) {
    CompressionCounters::add(counters_->deflated, 1);
    CompressionCounters::add(counters_->deflateIn, message.size());
    CompressionCounters::add(counters_->deflateOut, out.size() - start);
  }
  return true;
}

// ---------------------------------------------------------------- Inflater

Inflater::Inflater() : z_(newStream()) {
  if (inflateInit2(z_.get(), -15) != Z_OK) throw std::bad_alloc();
  g_liveStreams.fetch_add(1, std::memory_order_relaxed);
}

Inflater::~Inflater() {
  inflateEnd(z_.get());
  g_liveStreams.fetch_sub(1, std::memory_order_relaxed);
}

void Inflater::reset() noexcept {
  inflateReset(z_.get());
  ended_ = false;
}

Inflater::Status Inflater::inflate(std::string_view in, std::string& out, std::size_t limit,
                                   bool last) {
  const std::size_t had = out.size();
  Status s = run(reinterpret_cast<const unsigned char*>(in.data()), in.size(), out, limit);
  if (s == Status::kOk && last) s = run(kTail, sizeof(kTail), out, limit);
  if (counters_ != nullptr) {
    if (last && s == Status::kOk) CompressionCounters::add(counters_->inflated, 1);
    CompressionCounters::add(counters_->inflateIn, in.size());
    CompressionCounters::add(counters_->inflateOut, out.size() > had ? out.size() - had : 0);
  }
  return s;
}

Inflater::Status Inflater::run(const unsigned char* in, std::size_t size, std::string& out,
                               std::size_t limit) {
  if (ended_) return Status::kOk;  // after BFINAL, the rest of the message is ignored
  z_stream_s& z = *z_;
  z.next_in = const_cast<Bytef*>(in);
  std::size_t inLeft = size;
  z.avail_in = 0;
  // The last call filled the output: inflate may hold more of it (a long
  // match), so it is called again even with no input left.
  bool full = false;
  for (;;) {
    if (z.avail_in == 0 && inLeft != 0) {
      const auto take = static_cast<uInt>(std::min<std::size_t>(inLeft, UINT32_MAX));
      z.avail_in = take;
      inLeft -= take;
    }
    if (z.avail_in == 0 && !full) return Status::kOk;
    const std::size_t have = out.size();
    int rc;
    if (have < limit) {
      // Grow by what this input could plausibly make, never past the limit.
      std::size_t grow = std::max<std::size_t>(
          {kMinGrowth, std::min<std::size_t>(have, 1u << 20),
           std::min<std::size_t>(static_cast<std::size_t>(z.avail_in) * 4, 1u << 20)});
      grow = std::min(grow, limit - have);
      out.resize(have + grow);
      z.next_out = reinterpret_cast<Bytef*>(out.data() + have);
      z.avail_out = static_cast<uInt>(grow);
      rc = ::inflate(&z, Z_SYNC_FLUSH);
      full = z.avail_out == 0;
      out.resize(out.size() - z.avail_out);
    } else {
      // At the limit: one more byte of output means too big; input that
      // makes none (block headers, the tail) is still fine.
      unsigned char probe;
      z.next_out = &probe;
      z.avail_out = 1;
      rc = ::inflate(&z, Z_SYNC_FLUSH);
      if (z.avail_out == 0) return Status::kTooBig;
      full = false;
    }
    if (rc == Z_STREAM_END) {
      ended_ = true;
      return Status::kOk;
    }
    if (rc == Z_OK) continue;
    // No progress: input used up (the top of the loop sees it) or no room.
    if (rc == Z_BUF_ERROR && (z.avail_in == 0 || full)) continue;
    if (rc == Z_MEM_ERROR) throw std::bad_alloc();
    return Status::kCorrupt;
  }
}

// ---------------------------------------------------------------- CompressionPool

CompressionPool::CompressionPool() = default;
CompressionPool::~CompressionPool() = default;

Deflater& CompressionPool::sharedDeflater(int windowBits, int level, int memLevel) {
  used_ = true;
  windowBits = clampInt(windowBits, 9, 15);
  level = clampInt(level, 1, 9);
  memLevel = clampInt(memLevel, 1, 9);
  for (const auto& d : deflaters_) {
    if (d->windowBits() == windowBits && d->level() == level && d->memLevel() == memLevel) {
      return *d;
    }
  }
  deflaters_.push_back(std::make_unique<Deflater>(windowBits, level, memLevel));
  deflaters_.back()->countInto(&counters_);
  return *deflaters_.back();
}

Inflater& CompressionPool::sharedInflater() {
  used_ = true;
  if (!inflater_) {
    inflater_ = std::make_unique<Inflater>();
    inflater_->countInto(&counters_);
  }
  return *inflater_;
}

std::unique_ptr<Inflater> CompressionPool::takeInflater() {
  used_ = true;
  if (spare_.empty()) {
    auto inflater = std::make_unique<Inflater>();
    inflater->countInto(&counters_);
    return inflater;
  }
  std::unique_ptr<Inflater> i = std::move(spare_.back());
  spare_.pop_back();
  return i;
}

void CompressionPool::giveBack(std::unique_ptr<Inflater> inflater) noexcept {
  if (!inflater) return;
  if (spare_.size() >= kMaxSpareInflaters) return;  // freed here
  inflater->reset();
  try {
    spare_.push_back(std::move(inflater));
  } catch (...) {
  }
}

CompressionPool::Dedicated* CompressionPool::dedicated(const void* owner) noexcept {
  const auto it = dedicated_.find(owner);
  return it == dedicated_.end() ? nullptr : &it->second;
}

CompressionPool::Dedicated& CompressionPool::makeDedicated(const void* owner, int windowBits,
                                                           int level, int memLevel) {
  used_ = true;
  auto deflater = std::make_unique<Deflater>(windowBits, level, memLevel);
  deflater->countInto(&counters_);
  Dedicated& d = dedicated_[owner];
  if (!d.deflater) CompressionCounters::add(counters_.dedicated, 1);
  d.deflater = std::move(deflater);
  return d;
}

void CompressionPool::dropDedicated(const void* owner) noexcept {
  if (dedicated_.erase(owner) != 0) {
    counters_.dedicated.store(dedicated_.size(), std::memory_order_relaxed);
  }
}

void CompressionPool::trim() noexcept {
  deflaters_.clear();
  inflater_.reset();
  spare_.clear();
  if (inflated_.capacity() > kKeepBufferBytes) std::string().swap(inflated_);
  if (compressed_.capacity() > kKeepBufferBytes) std::string().swap(compressed_);
}

// ---------------------------------------------------------------- PublishFrames

bool PublishFrames::isBinary() const noexcept {
  return (static_cast<std::uint8_t>((*plain_)[0]) & 0x0F) ==
         static_cast<std::uint8_t>(WsOpcode::kBinary);
}

std::string_view PublishFrames::payload() const noexcept {
  const std::string& f = *plain_;
  const std::uint8_t length7 = static_cast<std::uint8_t>(f[1]) & 0x7F;
  const std::size_t header = length7 < 126 ? 2 : length7 == 126 ? 4 : kMaxFrameHeader;
  return std::string_view(f).substr(header);
}

const SharedFrame& PublishFrames::compressed(int bits, Deflater& deflater) {
  const int slot = clampInt(bits, 9, 15) - 9;
  SharedFrame& frame = compressed_[slot];
  if ((tried_ & (1u << slot)) != 0) return frame;
  tried_ = static_cast<std::uint8_t>(tried_ | (1u << slot));
  const std::string_view message = payload();
  std::string z;
  z.reserve(message.size() / 2 + 64);
  if (deflater.compress(message, z, false) && z.size() < message.size()) {
    frame = makeSharedFrame(isBinary() ? WsOpcode::kBinary : WsOpcode::kText, z, true);
  }
  return frame;
}

}  // namespace spry::detail
