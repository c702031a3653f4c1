// spry-load: a WebSocket load generator on one libuv loop, for loopback
// targets only. It is not part of the library; bench/run drives it.
//
//   echo    N connections; closed loop (--depth D messages in flight on each)
//           or open loop (--rate R msgs/s offered in total, latency measured
//           from each message's scheduled send time). Every echoed payload is
//           compared with what was sent.
//   fanout  --publishers P and --subscribers M on one topic (/broadcast); each
//           publisher keeps --depth publishes in flight, a publish being done
//           once every other client has received it.
//   idle    hold N open connections for --hold seconds; report the server's
//           RSS per connection.
//   http    N keep-alive HTTP/1.1 connections sending GET --path (default
//           /hello/world) in batches of --depth requests per write (pipelined,
//           like bench/pipeline.lua for wrk); a connection writes its next
//           batch once every response of the last one is in. --request bare
//           (Host only) or browser (10 typical browser headers, 541 bytes).
//           Every response must be "HTTP/1.1 200"; bodies are read by
//           Content-Length or chunked encoding, so -n counts are exact.
//   handshake  TLS only: N connections at a time, each opened, taken through
//           the TLS handshake and closed, then opened again, as fast as they
//           go; handshakes/s, full and resumed (--resume).
//
// The target is a URL (ws://, wss://, http://, https://; wss and https speak
// TLS through tls_client.h) or --host/--port/--path. --raw speaks plain TCP
// to a byte echo: it sends exactly the bytes of the masked WebSocket frame it
// would send, without a handshake, and reads the same bytes back.
// --server-pid adds the server's CPU time per message (from /proc) to every
// mode. --json sends realistic JSON text (json_payload.h) instead of the
// repeating pattern; --deflate offers permessage-deflate (deflate.h), sends
// compressed and inflates what comes compressed (fan-out: one delivery per
// publish, the others compared byte for byte). The last line of output is
// "RESULT key=value ...".

#include <openssl/evp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cctype>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "deflate.h"
#include "histogram.h"
#include "json_payload.h"
#include "proc_stats.h"
#include "tls_client.h"

namespace load {
namespace {

enum class Mode { kEcho, kFanout, kIdle, kHttp, kHandshake };

struct Options {
  std::string mode = "echo";
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string path;              // default: /echo, /broadcast for fanout, /hello/world for http
  std::string request = "bare";  // http: bare | browser
  bool raw = false;
  std::size_t connections = 100;
  std::size_t size = 32;
  bool binary = false;
  std::size_t depth = 1;
  double rate = 0;             // open loop when > 0
  std::uint64_t messages = 0;  // 0: run for --duration
  double duration = 5;
  double warmup = 1;
  double timeout = 0;  // 0: derived from the other limits
  int serverPid = 0;
  std::size_t publishers = 1;
  std::size_t subscribers = 1000;
  double hold = 3;
  std::size_t sourceAddrs = 0;  // 0: one per 25,000 connections
  std::size_t connectConcurrency = 256;
  std::string label;
  std::string url;
  bool tls = false;          // wss:// or https://
  std::string caFile;        // verify the server; empty: no verification
  std::string serverName;    // SNI (and the name verified with --ca)
  bool resume = false;       // resume the first connection's session on the others
  std::string cipherSuites;  // TLS 1.3 suites offered; empty: OpenSSL's default order
  bool deflate = false;      // offer permessage-deflate; compress what we send
  bool json = false;         // realistic JSON text messages instead of the pattern
  bool echoFirst = false;    // idle: one message echoed on every connection before the hold
};

constexpr std::string_view kWsGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
constexpr std::string_view kTextAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::size_t kConnectionsPerSource = 25000;
constexpr std::uint8_t kOpText = 0x1;
constexpr std::uint8_t kOpBinary = 0x2;
constexpr std::uint8_t kOpClose = 0x8;
constexpr std::uint8_t kOpPing = 0x9;
constexpr std::uint8_t kOpPong = 0xA;

std::string base64(const unsigned char* p, std::size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  const int len =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

std::string acceptFor(std::string_view key) {
  std::string s(key);
  s.append(kWsGuid);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdLen = 0;
  EVP_Digest(s.data(), s.size(), md, &mdLen, EVP_sha1(), nullptr);
  return base64(md, mdLen);
}

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

std::size_t headerBytes(std::size_t payload) {
  return 2 + (payload < 126 ? 0 : payload <= 0xFFFF ? 2 : 8);
}

// Send times of the messages in flight on one connection, oldest first.
class TimeFifo {
 public:
  void push(std::uint64_t t) {
    if (size_ == buf_.size()) grow();
    buf_[(head_ + size_) & (buf_.size() - 1)] = t;
    ++size_;
  }
  std::uint64_t pop() noexcept {
    const std::uint64_t t = buf_[head_];
    head_ = (head_ + 1) & (buf_.size() - 1);
    --size_;
    return t;
  }
  bool empty() const noexcept { return size_ == 0; }

 private:
  void grow() {
    std::vector<std::uint64_t> next(std::max<std::size_t>(16, buf_.size() * 2));
    for (std::size_t i = 0; i < size_; ++i) next[i] = buf_[(head_ + i) & (buf_.size() - 1)];
    buf_.swap(next);
    head_ = 0;
  }
  std::vector<std::uint64_t> buf_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

enum class State { kNew, kConnecting, kHandshake, kOpen, kClosing, kClosed };
enum class Role { kEcho, kPublisher, kSubscriber, kIdle, kHttp, kHandshake };

class Load;

struct Conn {
  uv_tcp_t tcp{};
  uv_connect_t connectReq{};
  Load* load = nullptr;
  std::uint32_t index = 0;
  Role role = Role::kEcho;
  State state = State::kNew;
  bool writing = false;  // a uv_write is in flight; out_ waits for it
  bool dirty = false;    // listed in Load::dirty_
  std::string in;        // handshake bytes, a partial frame or a partial HTTP response
  std::string out;       // not yet handed to the kernel (TLS: not yet encrypted)
  // TLS: the session, its BIO's side, the ciphertext not yet handed to the kernel.
  SSL* ssl = nullptr;
  TlsWire tlsWire;
  std::string wire;
  bool tlsDone = false;          // handshake complete
  bool closeAfterWrite = false;  // handshake mode: close once the wire is written
  std::uint64_t started = 0;     // handshake mode: connect time

  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    if (ssl) SSL_free(ssl);
  }
  std::string key;
  std::array<std::uint8_t, 4> mask{};
  std::uint64_t sendSeq = 0;
  std::uint64_t recvSeq = 0;
  // --deflate, the server keeping its context: this connection's inflate window.
  std::unique_ptr<MessageInflater> inflater;
  TimeFifo sent;  // echo: send (or scheduled) time of each message in flight; http: of each request
};

struct WriteReq {
  uv_write_t req;
  Conn* conn;
  std::string data;
};

// One publisher's publishes in flight (fanout). Completion is in order:
// every receiver gets a publisher's messages in order, so publish k+1 cannot
// reach its last receiver before publish k has reached all of them.
struct Publisher {
  std::vector<std::uint64_t> stamp;      // by seq % window
  std::vector<std::uint32_t> remaining;  // deliveries still expected
  std::uint64_t oldest = 0;              // lowest incomplete seq
  std::size_t inFlight = 0;
  // --deflate: how the first delivery of each publish in flight came (0 not
  // yet, 1 plain, 2 compressed, its bytes in ref); every other delivery of
  // that publish must come the same way, byte for byte.
  std::vector<std::uint8_t> refState;
  std::vector<std::string> ref;
};

struct Snapshot {
  std::uint64_t t = 0;
  std::uint64_t received = 0;     // echo replies, or fanout deliveries
  std::uint64_t completed = 0;    // fanout publishes
  std::uint64_t resumed = 0;      // handshake mode: resumed handshakes
  std::uint64_t clientCpuNs = 0;  // this process
  ProcSample proc;
};

class Load {
 public:
  Load(Options o, Mode mode) : o_(std::move(o)), mode_(mode) {}
  int run();
  void warmUp();

 private:
  enum class Phase { kConnecting, kRunning, kClosing, kDone };

  // setup
  bool resolve();
  void buildPattern();
  void createConnections();

  // connections
  void connectNext();
  void openConn(Conn& c);
  void onConnected(Conn& c);
  void onTransportReady(Conn& c);
  void markOpen(Conn& c);
  void onBytes(Conn& c, const char* p, std::size_t n);
  void tlsInput(Conn& c, const char* p, std::size_t n);
  void tlsFail(Conn& c, const char* what, int rc);
  void onTlsHandshake(Conn& c);
  void endHandshakeConn(Conn& c);
  void startHandshakes();
  void warmUpTls(int fd);
  void allOpen();
  void handleInput(Conn& c, const char* p, std::size_t n);
  void handshakeInput(Conn& c, const char* p, std::size_t n);
  std::size_t parseFrames(Conn& c, const char* p, std::size_t n);
  std::size_t parseRaw(Conn& c, const char* p, std::size_t n);
  std::size_t parseHttp(Conn& c, const char* p, std::size_t n);
  void onFrame(Conn& c, std::uint8_t opcode, const char* p, std::size_t n, bool compressed);
  bool checkExtensions(Conn& c, std::string_view extensions);
  bool inflateFor(Conn& c, const char* p, std::size_t n);
  void onEnd(Conn& c, int status);

  // writing
  void appendFrame(Conn& c, std::uint8_t opcode, const char* payload, std::size_t n);
  static void appendMaskedFrame(std::string& out, const std::array<std::uint8_t, 4>& mask,
                                std::uint8_t opcode, const char* payload, std::size_t n,
                                bool compressed = false);
  void appendMessage(Conn& c, std::string_view payload, const std::string* compressed);
  void markDirty(Conn& c);
  void flushDirty();
  void flush(Conn& c);

  // scenarios
  // The message connection (or publisher) a sends as its seq-th: one of the
  // payloads_, consecutive ones different.
  std::size_t indexFor(std::uint64_t a, std::uint64_t seq) const noexcept {
    return static_cast<std::size_t>((a * 131 + seq * 7) % payloads_.size());
  }
  std::string_view payloadFor(std::uint64_t a, std::uint64_t seq) const noexcept {
    return payloads_[indexFor(a, seq)];
  }
  void compressPayloads();
  void sendEcho(Conn& c, std::uint64_t stamp);
  void onEchoReply(Conn& c, const char* p, std::size_t n, bool rawFrame);
  void pumpPublisher(std::size_t pub);
  void onDelivery(Conn& c, const char* p, std::size_t n, std::string_view wire, bool compressed);
  void onCompressedDelivery(Conn& c, const char* p, std::size_t n);
  bool sameAsFirstDelivery(Publisher& pub, std::size_t slot, std::string_view wire,
                           bool compressed);
  void delivered(std::size_t pubId, std::uint64_t seq, std::uint64_t now);
  void startHold();
  void sendHttpBatch(Conn& c, std::uint64_t stamp);
  void onHttpResponse(Conn& c);
  void startPacer();
  void onPacerTick();
  std::uint64_t outstanding() const noexcept;
  void maybeDone();

  // phases
  Snapshot snapshot() const;
  void startMeasuring();
  void stopMeasuring();
  void closeAll();
  void closeConn(Conn& c);
  void onConnClosed(Conn& c);
  void finish();
  void fail(const std::string& what);
  void report();

  static void startTimer(uv_timer_t* t, double seconds, uv_timer_cb cb);

  Options o_;
  Mode mode_;
  TlsClient tls_;  // before conns_: their SSLs go first
  uv_loop_t* loop_ = nullptr;
  sockaddr_storage addr_{};
  std::vector<sockaddr_in> sources_;
  std::string hostHeader_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> dirty_;
  std::vector<char> readBuf_ = std::vector<char>(256 << 10);
  std::vector<char> plainBuf_;  // TLS: decrypted bytes
  std::mt19937_64 rng_{0x5eed};
  Phase phase_ = Phase::kConnecting;
  std::size_t nextConn_ = 0;
  std::size_t connecting_ = 0;
  std::size_t open_ = 0;
  std::size_t inited_ = 0;
  std::size_t closed_ = 0;

  // payload
  std::string pattern_;
  std::size_t period_ = 64;
  std::vector<std::string> jsonPayloads_;   // --json: the messages themselves
  std::vector<std::string_view> payloads_;  // every distinct message, o_.size bytes each
  std::size_t headerAt_ = 0;                // fanout: where "F<publisher><seq>" goes

  // --deflate
  DeflateParams deflate_;  // what the server answered (every connection the same)
  std::unique_ptr<MessageDeflater> deflater_;
  std::unique_ptr<MessageInflater> inflater_;    // the server resets its context: one for all
  std::vector<std::string> compressedPayloads_;  // payloads_, compressed (echo, idle)
  std::string inflated_, compressedScratch_;
  std::uint64_t inflatedTotal_ = 0;
  std::uint64_t compressedIn_ = 0;
  std::uint64_t mismatches_ = 0;  // fanout: a delivery unlike the publish's first one
  // Data frames both ways over the whole run: header, mask and payload.
  std::uint64_t wireOutBytes_ = 0, wireOutMsgs_ = 0, wireInBytes_ = 0, wireInMsgs_ = 0;
  std::size_t pendingEchoes_ = 0;  // idle --echo-first
  std::uint8_t opcode_ = kOpText;
  std::size_t frameBytes_ = 0;  // one client frame: header, mask, payload
  std::string rawScratch_;
  std::string httpRequest_;  // one request, sent --depth times per batch

  // progress
  bool measuring_ = false;
  bool stopping_ = false;  // no new sends
  bool timedOut_ = false;
  std::uint64_t sentTotal_ = 0;
  std::uint64_t receivedTotal_ = 0;   // echo replies / fanout deliveries
  std::uint64_t completedTotal_ = 0;  // fanout publishes
  std::uint64_t quota_ = 0;           // messages (echo) or publishes (fanout) to send
  std::uint64_t errors_ = 0;
  std::uint64_t resumedTotal_ = 0;  // handshake mode
  std::uint64_t tlsConns_ = 0;      // TLS handshakes completed (every mode)
  std::uint64_t tlsResumed_ = 0;    // of which resumed
  std::string tlsProtocol_, tlsCipher_;
  bool handshakesStarted_ = false;
  std::vector<Publisher> publishers_;
  std::vector<std::uint64_t> expectSeq_;  // fanout: [receiver * P + publisher]
  std::uint32_t expectedDeliveries_ = 0;
  Histogram latency_;
  Snapshot start_, end_;
  std::uint64_t connectStart_ = 0, connectEnd_ = 0;
  ProcSample rssBefore_, rssOpen_, rssEchoed_, rssAfter_;

  // open loop
  int timerFd_ = -1;
  uv_poll_t pacer_{};
  bool pacerInit_ = false;
  std::uint64_t pacerStart_ = 0;
  double intervalNs_ = 0;
  std::uint64_t maxLagNs_ = 0;
  std::uint64_t lateSends_ = 0;  // sent more than 1 ms after their schedule

  uv_timer_t phaseTimer_{};
  uv_timer_t graceTimer_{};
  uv_timer_t deadlineTimer_{};
};

// ---------------------------------------------------------------- setup

bool Load::resolve() {
  std::string host = o_.host == "localhost" ? "127.0.0.1" : o_.host;
  sockaddr_in v4{};
  sockaddr_in6 v6{};
  if (uv_ip4_addr(host.c_str(), o_.port, &v4) == 0) {
    if ((ntohl(v4.sin_addr.s_addr) >> 24) != 127) return false;
    std::memcpy(&addr_, &v4, sizeof(v4));
    hostHeader_ = host + ":" + std::to_string(o_.port);
  } else if (uv_ip6_addr(host.c_str(), o_.port, &v6) == 0) {
    if (!IN6_IS_ADDR_LOOPBACK(&v6.sin6_addr)) return false;
    std::memcpy(&addr_, &v6, sizeof(v6));
    hostHeader_ = "[" + host + "]:" + std::to_string(o_.port);
  } else {
    return false;
  }
  // Past ~28k connections one source address runs out of ephemeral ports:
  // spread them over 127.0.0.1, .2, ...
  std::size_t total = mode_ == Mode::kFanout ? o_.publishers + o_.subscribers : o_.connections;
  std::size_t k =
      o_.sourceAddrs ? o_.sourceAddrs : (total + kConnectionsPerSource - 1) / kConnectionsPerSource;
  if (k > 1 && addr_.ss_family == AF_INET) {
    for (std::size_t i = 0; i < k && i < 254; ++i) {
      sockaddr_in s{};
      uv_ip4_addr(("127.0.0." + std::to_string(i + 1)).c_str(), 0, &s);
      sources_.push_back(s);
    }
  }
  return true;
}

void Load::buildPattern() {
  const bool binary = o_.binary;
  opcode_ = binary ? kOpBinary : kOpText;
  period_ = binary ? 256 : kTextAlphabet.size();
  pattern_.resize(o_.size + period_);
  for (std::size_t i = 0; i < pattern_.size(); ++i) {
    pattern_[i] = binary ? static_cast<char>((i * 167 + 13) & 0xFF) : kTextAlphabet[i % period_];
  }
  payloads_.clear();
  if (o_.json) {
    // Distinct documents, ~4 MB in all, 8 to 256: enough that a message
    // comes again only once it has left a 32 KiB deflate window (a server
    // keeping its context would otherwise see nothing but repeats).
    const std::size_t count = std::clamp<std::size_t>((4u << 20) / o_.size, 8, 256);
    jsonPayloads_.clear();
    for (std::size_t k = 0; k < count; ++k) {
      jsonPayloads_.push_back(jsonMessage(o_.size, static_cast<std::uint32_t>(k)));
    }
    for (const auto& m : jsonPayloads_) payloads_.emplace_back(m);
    headerAt_ = kJsonIdOffset;
  } else {
    for (std::size_t k = 0; k < period_; ++k) payloads_.emplace_back(pattern_.data() + k, o_.size);
    headerAt_ = 0;
  }
  frameBytes_ = headerBytes(o_.size) + 4 + o_.size;
  if (mode_ == Mode::kHttp) {
    // Host is 127.0.0.1 whatever the port, so that the bytes (and the
    // server's instructions per request) do not depend on the port drawn.
    httpRequest_ = "GET " + o_.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (o_.request == "browser") {
      // What a recent Chrome sends for a top-level navigation: 10 fields,
      // 541 bytes with the default path.
      httpRequest_ +=
          "Connection: keep-alive\r\n"
          "Cache-Control: max-age=0\r\n"
          "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36\r\n"
          "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
          "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
          "Sec-Fetch-Site: none\r\n"
          "Sec-Fetch-Mode: navigate\r\n"
          "Accept-Encoding: gzip, deflate, br, zstd\r\n"
          "Accept-Language: en-US,en;q=0.9\r\n"
          "Cookie: session=3f6c1a9e5b2d4c7f8a0e1b3d5c7f9a2e; theme=dark\r\n";
    }
    httpRequest_ += "\r\n";
  }
}

void Load::createConnections() {
  std::size_t total = o_.connections;
  if (mode_ == Mode::kFanout) total = o_.publishers + o_.subscribers;
  conns_.reserve(total);
  for (std::size_t i = 0; i < total; ++i) {
    auto c = std::make_unique<Conn>();
    c->load = this;
    c->index = static_cast<std::uint32_t>(i);
    c->role = mode_ == Mode::kEcho        ? Role::kEcho
              : mode_ == Mode::kIdle      ? Role::kIdle
              : mode_ == Mode::kHttp      ? Role::kHttp
              : mode_ == Mode::kHandshake ? Role::kHandshake
              : i < o_.publishers         ? Role::kPublisher
                                          : Role::kSubscriber;
    std::uint64_t r = rng_();
    std::memcpy(c->mask.data(), &r, 4);
    unsigned char raw[16];
    for (int k = 0; k < 2; ++k) {
      std::uint64_t v = rng_();
      std::memcpy(raw + 8 * k, &v, 8);
    }
    c->key = base64(raw, sizeof(raw));
    conns_.push_back(std::move(c));
  }
}

// ---------------------------------------------------------------- connections

void Load::connectNext() {
  while (phase_ == Phase::kConnecting && connecting_ < o_.connectConcurrency &&
         nextConn_ < conns_.size()) {
    // --resume: the others wait for the session of the first.
    if (nextConn_ > 0 && tls_.resume() && !tls_.haveSession()) return;
    openConn(*conns_[nextConn_++]);
  }
}

void Load::openConn(Conn& c) {
  uv_tcp_init(loop_, &c.tcp);
  ++inited_;
  c.tcp.data = &c;
  c.state = State::kConnecting;
  c.in.clear();
  c.out.clear();
  c.wire.clear();
  c.tlsDone = false;
  c.closeAfterWrite = false;
  c.started = uv_hrtime();
  ++connecting_;
  if (!sources_.empty()) {
    const auto& src = sources_[c.index % sources_.size()];
    int rc = uv_tcp_bind(&c.tcp, reinterpret_cast<const sockaddr*>(&src), 0);
    if (rc != 0) {
      fail("bind to a 127.0.0.x source address: " + std::string(uv_strerror(rc)));
      return;
    }
  }
  c.connectReq.data = &c;
  int rc = uv_tcp_connect(&c.connectReq, &c.tcp, reinterpret_cast<const sockaddr*>(&addr_),
                          [](uv_connect_t* req, int status) {
                            auto& conn = *static_cast<Conn*>(req->data);
                            Load& self = *conn.load;
                            if (conn.state != State::kConnecting) return;
                            if (status < 0) {
                              self.fail("connect: " + std::string(uv_strerror(status)));
                              self.closeConn(conn);
                              return;
                            }
                            self.onConnected(conn);
                            self.flushDirty();
                          });
  if (rc != 0) fail("connect: " + std::string(uv_strerror(rc)));
}

void Load::onConnected(Conn& c) {
  uv_tcp_nodelay(&c.tcp, 1);
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c.tcp),
      [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
        auto& cc = *static_cast<Conn*>(h->data);
        buf->base = cc.load->readBuf_.data();
        buf->len = cc.load->readBuf_.size();
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto& cc = *static_cast<Conn*>(s->data);
        Load& l = *cc.load;
        if (n < 0) {
          l.onEnd(cc, static_cast<int>(n));
        } else if (n > 0) {
          l.onBytes(cc, buf->base, static_cast<std::size_t>(n));
        }
        l.flushDirty();
      });
  if (!o_.tls) {
    onTransportReady(c);
    return;
  }
  // Idle and handshake runs hold many connections: no record buffers while
  // idle. Echo keeps them, as a browser would.
  const bool release = mode_ == Mode::kIdle || mode_ == Mode::kHandshake;
  c.tlsWire = TlsWire{.in = nullptr, .inLen = 0, .out = &c.wire};
  c.ssl = tls_.newConnection(&c.tlsWire, o_.host == "localhost" ? "127.0.0.1" : o_.host, release);
  if (!c.ssl) {
    fail("TLS: " + TlsClient::errors());
    closeConn(c);
    return;
  }
  tlsInput(c, nullptr, 0);  // the ClientHello
}

// The byte stream is there (TCP connected, or TLS handshake done).
void Load::onTransportReady(Conn& c) {
  if (mode_ == Mode::kHandshake) return;
  if (o_.raw || mode_ == Mode::kHttp) {
    markOpen(c);
  } else {
    c.state = State::kHandshake;
    c.out = "GET " + o_.path + " HTTP/1.1\r\nHost: " + hostHeader_ +
            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: " +
            c.key + "\r\nSec-WebSocket-Version: 13\r\n";
    if (o_.deflate) c.out.append("Sec-WebSocket-Extensions: ").append(kDeflateOffer).append("\r\n");
    c.out += "\r\n";
    flush(c);
  }
}

void Load::onBytes(Conn& c, const char* p, std::size_t n) {
  if (c.ssl) {
    tlsInput(c, p, n);
  } else {
    handleInput(c, p, n);
  }
}

// Ciphertext in: the handshake while it lasts, then every record decrypted
// and handed to handleInput. Everything lent is consumed (the BIO gives
// OpenSSL all of it before OpenSSL asks again).
void Load::tlsInput(Conn& c, const char* p, std::size_t n) {
  c.tlsWire.in = p;
  c.tlsWire.inLen = n;
  if (!c.tlsDone) {
    const int rc = SSL_do_handshake(c.ssl);
    if (rc != 1) {
      if (SSL_get_error(c.ssl, rc) == SSL_ERROR_WANT_READ) {
        flush(c);
      } else {
        tlsFail(c, "handshake", rc);
      }
      return;
    }
    c.tlsDone = true;
    onTlsHandshake(c);
  }
  while (c.state != State::kClosed) {
    const int k = SSL_read(c.ssl, plainBuf_.data(), static_cast<int>(plainBuf_.size()));
    if (k > 0) {
      handleInput(c, plainBuf_.data(), static_cast<std::size_t>(k));
      continue;
    }
    const int err = SSL_get_error(c.ssl, k);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      onEnd(c, UV_EOF);
    } else {
      tlsFail(c, "read", k);
    }
    break;
  }
  c.tlsWire.in = nullptr;
  c.tlsWire.inLen = 0;
  // Handshake mode, --resume: the first connection stays until its session
  // (a TLS 1.3 ticket arrives after the handshake).
  if (mode_ == Mode::kHandshake && c.tlsDone && c.state == State::kConnecting &&
      tls_.haveSession()) {
    endHandshakeConn(c);
  }
  if (!c.wire.empty() || !c.out.empty()) markDirty(c);
}

void Load::tlsFail(Conn& c, const char* what, int rc) {
  const bool quiet = c.state == State::kClosing || c.state == State::kClosed;
  const std::string why = TlsClient::why(c.ssl, rc);
  c.out.clear();  // nothing more to encrypt
  if (!quiet)
    fail("TLS " + std::string(what) + " on connection " + std::to_string(c.index) + ": " + why);
  flush(c);  // an alert, if OpenSSL wrote one
  closeConn(c);
}

void Load::onTlsHandshake(Conn& c) {
  const bool reused = SSL_session_reused(c.ssl) == 1;
  ++tlsConns_;
  if (reused) ++tlsResumed_;
  if (tlsProtocol_.empty()) {
    tlsProtocol_ = SSL_get_version(c.ssl);
    tlsCipher_ = SSL_CIPHER_get_name(SSL_get_current_cipher(c.ssl));
  }
  if (mode_ != Mode::kHandshake) {
    flush(c);  // our Finished
    onTransportReady(c);
    return;
  }
  if (phase_ == Phase::kRunning && !stopping_) {
    ++receivedTotal_;
    if (reused) ++resumedTotal_;
    if (measuring_) latency_.record(uv_hrtime() - c.started);
    if (quota_ != 0 && receivedTotal_ >= quota_) {
      stopMeasuring();
      stopping_ = true;
    }
  }
  // The seed of --resume waits for its session (see tlsInput).
  if (tls_.resume() && !tls_.haveSession()) return;
  endHandshakeConn(c);
}

// Handshake mode: our last flight goes out, then the connection closes and
// (onConnClosed) opens again.
void Load::endHandshakeConn(Conn& c) {
  flush(c);
  if (c.state == State::kClosed) return;
  if (c.writing || !c.wire.empty()) {
    c.closeAfterWrite = true;
  } else {
    closeConn(c);
  }
  if (stopping_) closeAll();
}

// Handshake mode: every slot opens (the first alone with --resume, until it
// has a session), then warm-up, the measured time, and the end.
void Load::startHandshakes() {
  if (handshakesStarted_) return;
  handshakesStarted_ = true;
  for (std::size_t i = nextConn_; i < conns_.size(); ++i) openConn(*conns_[i]);
  nextConn_ = conns_.size();
  connectEnd_ = uv_hrtime();
  if (o_.messages != 0) {
    quota_ = receivedTotal_ + o_.messages;  // the seed of --resume is not one of them
    startMeasuring();
    return;
  }
  startTimer(&phaseTimer_, o_.warmup, [](uv_timer_t* t) {
    auto& self = *static_cast<Load*>(t->data);
    self.startMeasuring();
    startTimer(&self.phaseTimer_, self.o_.duration, [](uv_timer_t* t2) {
      auto& s = *static_cast<Load*>(t2->data);
      s.stopMeasuring();
      s.stopping_ = true;
      s.closeAll();
    });
  });
}

void Load::markOpen(Conn& c) {
  if (tls_.resume() && !tls_.haveSession()) {
    fail("--resume: the server gave the first connection no session to resume");
    closeConn(c);
    return;
  }
  c.state = State::kOpen;
  --connecting_;
  ++open_;
  if (open_ == conns_.size()) {
    allOpen();
  } else {
    connectNext();
  }
}

void Load::handshakeInput(Conn& c, const char* p, std::size_t n) {
  c.in.append(p, n);
  const auto end = c.in.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (c.in.size() > 16384) fail("handshake response too large");
    return;
  }
  std::string_view head(c.in.data(), end + 2);
  if (head.substr(0, 12) != "HTTP/1.1 101") {
    fail("handshake refused: " + std::string(head.substr(0, head.find("\r\n"))));
    closeConn(c);
    return;
  }
  const std::string expected = acceptFor(c.key);
  bool accepted = false;
  std::string extensions;  // every Sec-WebSocket-Extensions field, joined
  std::size_t pos = head.find("\r\n") + 2;
  while (pos < head.size()) {
    const auto eol = head.find("\r\n", pos);
    std::string_view line = head.substr(pos, eol - pos);
    if (startsWithIgnoreCase(line, "sec-websocket-accept:")) {
      std::string_view v = line.substr(21);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
      accepted = v == expected;
    } else if (startsWithIgnoreCase(line, "sec-websocket-extensions:")) {
      if (!extensions.empty()) extensions += ", ";
      extensions += line.substr(25);
    }
    pos = eol + 2;
  }
  if (!accepted) {
    fail("handshake: wrong or missing Sec-WebSocket-Accept");
    closeConn(c);
    return;
  }
  if (!checkExtensions(c, extensions)) return;
  std::string rest = c.in.substr(end + 4);
  c.in.clear();
  markOpen(c);
  if (!rest.empty()) handleInput(c, rest.data(), rest.size());
}

// The extensions of a 101: none unless we offered deflate, and then
// permessage-deflate, the same answer on every connection.
bool Load::checkExtensions(Conn& c, std::string_view extensions) {
  std::string_view v = extensions;
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  if (!o_.deflate) {
    if (v.empty()) return true;
    fail("handshake: the server accepted an extension we did not offer: " + std::string(v));
    closeConn(c);
    return false;
  }
  if (v.empty()) {
    fail(
        "--deflate: the server did not negotiate permessage-deflate (its 101 has no "
        "Sec-WebSocket-Extensions); is compression on?");
    closeConn(c);
    return false;
  }
  DeflateParams params;
  std::string error;
  if (!parseDeflateResponse(v, params, error)) {
    fail("--deflate: " + error);
    closeConn(c);
    return false;
  }
  if (!deflate_.negotiated) {
    deflate_ = params;
    deflater_ =
        std::make_unique<MessageDeflater>(params.clientMaxWindowBits, Z_DEFAULT_COMPRESSION);
    inflater_ = std::make_unique<MessageInflater>();
  } else if (params.response != deflate_.response) {
    fail("--deflate: connections negotiated differently: \"" + deflate_.response + "\" and \"" +
         params.response + "\"");
    closeConn(c);
    return false;
  }
  return true;
}

// Inflates a compressed message of c into inflated_: with c's own window
// when the server keeps its context, else with the one stream reset after
// every message.
bool Load::inflateFor(Conn& c, const char* p, std::size_t n) {
  const bool keep = !deflate_.serverNoContextTakeover;
  MessageInflater* inflater = inflater_.get();
  if (keep) {
    if (!c.inflater) c.inflater = std::make_unique<MessageInflater>();
    inflater = c.inflater.get();
  }
  ++inflatedTotal_;
  const char* error = "";
  if (inflater->inflate(std::string_view(p, n), inflated_, o_.size, keep, error)) return true;
  fail("connection " + std::to_string(c.index) + ": inflating a message: " + error);
  return false;
}

void Load::handleInput(Conn& c, const char* p, std::size_t n) {
  if (c.state == State::kHandshake) {
    handshakeInput(c, p, n);
    return;
  }
  if (c.state != State::kOpen && c.state != State::kClosing) return;
  if (o_.raw && c.state == State::kClosing) return;
  auto parse = [&](const char* d, std::size_t len) {
    return mode_ == Mode::kHttp ? parseHttp(c, d, len)
           : o_.raw             ? parseRaw(c, d, len)
                                : parseFrames(c, d, len);
  };
  if (c.in.empty()) {
    const std::size_t used = parse(p, n);
    if (used < n && c.state != State::kClosed) c.in.assign(p + used, n - used);
  } else {
    c.in.append(p, n);
    const std::size_t used = parse(c.in.data(), c.in.size());
    if (c.state != State::kClosed) c.in.erase(0, used);
  }
  maybeDone();
}

std::size_t Load::parseRaw(Conn& c, const char* p, std::size_t n) {
  std::size_t i = 0;
  while (n - i >= frameBytes_) {
    onEchoReply(c, p + i, frameBytes_, true);
    i += frameBytes_;
  }
  return i;
}

// Complete responses from p; returns the bytes they take (a partial response
// waits in Conn::in for the next read and is parsed again from its start).
std::size_t Load::parseHttp(Conn& c, const char* p, std::size_t n) {
  std::size_t i = 0;
  const std::string_view all(p, n);
  auto bad = [&](const std::string& what) {
    fail("connection " + std::to_string(c.index) + ": " + what);
    closeConn(c);
    return n;
  };
  while (i < n && c.state == State::kOpen) {
    const std::size_t headEnd = all.find("\r\n\r\n", i);
    if (headEnd == std::string_view::npos) {
      if (n - i > 65536) return bad("response head over 64 KiB");
      break;
    }
    const std::string_view head = all.substr(i, headEnd + 2 - i);  // lines with their CRLF
    const std::string_view status = head.substr(0, head.find("\r\n"));
    if (status.substr(0, 12) != "HTTP/1.1 200" || (status.size() > 12 && status[12] != ' ')) {
      return bad("response is not HTTP/1.1 200: " + std::string(status.substr(0, 80)));
    }
    std::uint64_t length = 0;
    bool haveLength = false, chunked = false, closing = false;
    for (std::size_t pos = status.size() + 2; pos < head.size();) {
      const std::size_t eol = head.find("\r\n", pos);
      std::string_view line = head.substr(pos, eol - pos);
      pos = eol + 2;
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) return bad("malformed response header line");
      const std::string_view name = line.substr(0, colon);
      std::string_view v = line.substr(colon + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      auto is = [&](std::string_view want) {
        return name.size() == want.size() && startsWithIgnoreCase(name, want);
      };
      if (is("content-length")) {
        if (v.empty() || v.size() > 15 || haveLength) return bad("bad Content-Length");
        for (char ch : v) {
          if (ch < '0' || ch > '9') return bad("bad Content-Length");
          length = length * 10 + static_cast<std::uint64_t>(ch - '0');
        }
        haveLength = true;
      } else if (is("transfer-encoding")) {
        chunked = v.size() >= 7 && startsWithIgnoreCase(v.substr(v.size() - 7), "chunked");
      } else if (is("connection")) {
        closing = startsWithIgnoreCase(v, "close");
      }
    }
    if (closing) return bad("the server closes the keep-alive connection (Connection: close)");
    std::size_t end = headEnd + 4;  // past the body, once complete
    if (chunked) {
      // size [; ext] CRLF data CRLF ... 0 CRLF [trailers] CRLF
      bool complete = false;
      for (;;) {
        const std::size_t eol = all.find("\r\n", end);
        if (eol == std::string_view::npos) break;
        std::uint64_t size = 0;
        std::size_t digits = 0;
        for (std::size_t k = end; k < eol; ++k, ++digits) {
          const char ch = p[k];
          int d = ch >= '0' && ch <= '9'   ? ch - '0'
                  : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                  : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                           : -1;
          if (d < 0) break;
          if (digits >= 15) return bad("chunk size too large");
          size = size * 16 + static_cast<std::uint64_t>(d);
        }
        if (digits == 0) return bad("bad chunk size line");
        if (size == 0) {
          // Trailer fields, then an empty line.
          std::size_t t = eol + 2;
          for (;;) {
            const std::size_t te = all.find("\r\n", t);
            if (te == std::string_view::npos) break;
            if (te == t) {
              end = te + 2;
              complete = true;
              break;
            }
            t = te + 2;
          }
          break;
        }
        if (n - (eol + 2) < size + 2) break;
        if (p[eol + 2 + size] != '\r' || p[eol + 3 + size] != '\n') {
          return bad("chunk data not followed by CRLF");
        }
        end = eol + 2 + static_cast<std::size_t>(size) + 2;
      }
      if (!complete) break;
    } else if (haveLength) {
      if (n - end < length) break;
      end += static_cast<std::size_t>(length);
    } else {
      return bad("response without Content-Length or chunked encoding");
    }
    i = end;
    onHttpResponse(c);
  }
  return c.state == State::kClosed ? n : i;
}

std::size_t Load::parseFrames(Conn& c, const char* p, std::size_t n) {
  std::size_t i = 0;
  while (n - i >= 2 && c.state != State::kClosed) {
    const auto b0 = static_cast<std::uint8_t>(p[i]);
    const auto b1 = static_cast<std::uint8_t>(p[i + 1]);
    std::size_t h = 2;
    std::uint64_t len = b1 & 0x7F;
    if (len == 126) {
      h = 4;
      if (n - i < h) break;
      len = (std::uint64_t{static_cast<std::uint8_t>(p[i + 2])} << 8) |
            static_cast<std::uint8_t>(p[i + 3]);
    } else if (len == 127) {
      h = 10;
      if (n - i < h) break;
      len = 0;
      for (int k = 0; k < 8; ++k) len = (len << 8) | static_cast<std::uint8_t>(p[i + 2 + k]);
    }
    // RSV1: a compressed message, only with deflate negotiated and only on
    // a data frame (we take no fragmented messages at all).
    const bool compressed = (b0 & 0x40) != 0;
    if ((b1 & 0x80) != 0 || (b0 & 0x30) != 0 || (b0 & 0x80) == 0 ||
        (compressed && (!deflate_.negotiated || (b0 & 0x08) != 0))) {
      fail("server sent a masked, reserved or fragmented frame");
      closeConn(c);
      return n;
    }
    if (n - i - h < len) break;
    const std::uint8_t opcode = b0 & 0x0F;
    if (opcode == kOpText || opcode == kOpBinary) {
      wireInBytes_ += h + len;
      ++wireInMsgs_;
    }
    onFrame(c, opcode, p + i + h, static_cast<std::size_t>(len), compressed);
    i += h + static_cast<std::size_t>(len);
  }
  return i;
}

void Load::onFrame(Conn& c, std::uint8_t opcode, const char* p, std::size_t n, bool compressed) {
  switch (opcode) {
    case kOpText:
    case kOpBinary:
      if (c.state == State::kClosing) return;
      if (opcode != opcode_) {
        fail("message of the wrong type (text/binary)");
        return;
      }
      if (compressed) ++compressedIn_;
      if (mode_ == Mode::kEcho || (mode_ == Mode::kIdle && !c.sent.empty())) {
        if (compressed) {
          inflateFor(c, p, n);  // on failure the comparison fails too
          onEchoReply(c, inflated_.data(), inflated_.size(), false);
        } else {
          onEchoReply(c, p, n, false);
        }
        if (mode_ == Mode::kIdle && --pendingEchoes_ == 0) startHold();
      } else if (mode_ == Mode::kFanout) {
        if (compressed) {
          onCompressedDelivery(c, p, n);
        } else {
          onDelivery(c, p, n, std::string_view(p, n), false);
        }
      } else {
        fail("unexpected message on an idle connection");
      }
      return;
    case kOpPing:
      if (c.state == State::kOpen) {
        appendFrame(c, kOpPong, p, n);
        markDirty(c);
      }
      return;
    case kOpPong:
      return;
    case kOpClose:
      if (c.state != State::kClosing) {
        unsigned code = n >= 2 ? (static_cast<unsigned>(static_cast<std::uint8_t>(p[0])) << 8 |
                                  static_cast<std::uint8_t>(p[1]))
                               : 1005;
        fail("server closed connection " + std::to_string(c.index) + " with " +
             std::to_string(code) + " " + std::string(n > 2 ? std::string_view(p + 2, n - 2) : ""));
      }
      closeConn(c);
      return;
    default:
      fail("unexpected opcode " + std::to_string(opcode));
      closeConn(c);
  }
}

void Load::onEnd(Conn& c, int status) {
  if (c.state != State::kClosing && c.state != State::kClosed) {
    fail("connection " + std::to_string(c.index) + " ended by the server: " + uv_strerror(status));
  }
  closeConn(c);
}

// ---------------------------------------------------------------- writing

void Load::appendFrame(Conn& c, std::uint8_t opcode, const char* payload, std::size_t n) {
  appendMaskedFrame(c.out, c.mask, opcode, payload, n);
}

// A data message: compressed (RSV1) when `compressed` is given, else plain.
void Load::appendMessage(Conn& c, std::string_view payload, const std::string* compressed) {
  const std::size_t before = c.out.size();
  if (compressed) {
    appendMaskedFrame(c.out, c.mask, opcode_, compressed->data(), compressed->size(), true);
  } else {
    appendMaskedFrame(c.out, c.mask, opcode_, payload.data(), payload.size());
  }
  wireOutBytes_ += c.out.size() - before;
  ++wireOutMsgs_;
}

void Load::appendMaskedFrame(std::string& out, const std::array<std::uint8_t, 4>& mask,
                             std::uint8_t opcode, const char* payload, std::size_t n,
                             bool compressed) {
  const std::size_t h = headerBytes(n);
  const std::size_t old = out.size();
  out.resize(old + h + 4 + n);
  auto* o = reinterpret_cast<std::uint8_t*>(out.data() + old);
  o[0] = static_cast<std::uint8_t>(0x80 | (compressed ? 0x40 : 0) | opcode);
  if (n < 126) {
    o[1] = static_cast<std::uint8_t>(0x80 | n);
  } else if (n <= 0xFFFF) {
    o[1] = 0x80 | 126;
    o[2] = static_cast<std::uint8_t>(n >> 8);
    o[3] = static_cast<std::uint8_t>(n);
  } else {
    o[1] = 0x80 | 127;
    for (int k = 0; k < 8; ++k)
      o[2 + k] = static_cast<std::uint8_t>(std::uint64_t{n} >> (56 - 8 * k));
  }
  std::memcpy(o + h, mask.data(), 4);
  std::uint8_t* dst = o + h + 4;
  const auto* src = reinterpret_cast<const std::uint8_t*>(payload);
  std::uint64_t m8;
  std::uint8_t m[8];
  for (int k = 0; k < 8; ++k) m[k] = mask[static_cast<std::size_t>(k & 3)];
  std::memcpy(&m8, m, 8);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v;
    std::memcpy(&v, src + i, 8);
    v ^= m8;
    std::memcpy(dst + i, &v, 8);
  }
  for (; i < n; ++i) dst[i] = src[i] ^ mask[i & 3];
}

void Load::markDirty(Conn& c) {
  if (!c.dirty) {
    c.dirty = true;
    dirty_.push_back(&c);
  }
}

void Load::flushDirty() {
  for (Conn* c : dirty_) {
    c->dirty = false;
    flush(*c);
  }
  dirty_.clear();
}

void Load::flush(Conn& c) {
  if (c.writing || c.state == State::kClosed) return;
  // TLS: what waits in out is encrypted into wire (one SSL_write, records of
  // up to 16 KiB), and wire is what goes to the kernel.
  if (c.ssl && c.tlsDone && !c.out.empty()) {
    const int rc = SSL_write(c.ssl, c.out.data(), static_cast<int>(c.out.size()));
    if (rc != static_cast<int>(c.out.size())) {
      tlsFail(c, "write", rc);
      return;
    }
    c.out.clear();
  }
  std::string& out = c.ssl ? c.wire : c.out;
  if (out.empty()) return;
  auto* stream = reinterpret_cast<uv_stream_t*>(&c.tcp);
  uv_buf_t buf = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
  const int n = uv_try_write(stream, &buf, 1);
  if (n == static_cast<int>(out.size())) {
    out.clear();
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    if (c.state != State::kClosing) fail("write: " + std::string(uv_strerror(n)));
    closeConn(c);
    return;
  }
  if (n > 0) out.erase(0, static_cast<std::size_t>(n));
  auto* w = new WriteReq;
  w->conn = &c;
  w->data.swap(out);
  w->req.data = w;
  buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  c.writing = true;
  const int rc = uv_write(&w->req, stream, &buf, 1, [](uv_write_t* req, int status) {
    std::unique_ptr<WriteReq> done(static_cast<WriteReq*>(req->data));
    Conn& conn = *done->conn;
    conn.writing = false;
    if (status < 0) {
      if (conn.state != State::kClosing && conn.state != State::kClosed) {
        conn.load->fail("write: " + std::string(uv_strerror(status)));
      }
      conn.load->closeConn(conn);
      return;
    }
    conn.load->flush(conn);
    if (conn.closeAfterWrite && !conn.writing) conn.load->closeConn(conn);
  });
  if (rc != 0) {
    c.writing = false;
    delete w;
    fail("write: " + std::string(uv_strerror(rc)));
    closeConn(c);
  }
}

// ---------------------------------------------------------------- scenarios

// --deflate: every distinct message compressed once, as a browser would
// compress it (our context reset after every message, so a message's
// compressed form never depends on what went before).
void Load::compressPayloads() {
  if (!deflate_.negotiated || !compressedPayloads_.empty()) return;
  for (std::string_view m : payloads_) {
    std::string z;
    if (!deflater_->compress(m, z)) {
      fail("deflate failed");
      return;
    }
    compressedPayloads_.push_back(std::move(z));
  }
}

void Load::sendEcho(Conn& c, std::uint64_t stamp) {
  const std::size_t k = indexFor(c.index, c.sendSeq);
  appendMessage(c, payloads_[k], compressedPayloads_.empty() ? nullptr : &compressedPayloads_[k]);
  ++c.sendSeq;
  c.sent.push(stamp);
  ++sentTotal_;
  markDirty(c);
}

void Load::onEchoReply(Conn& c, const char* p, std::size_t n, bool rawFrame) {
  const std::uint64_t now = uv_hrtime();
  if (c.sent.empty()) {
    fail("a reply nobody asked for on connection " + std::to_string(c.index));
    return;
  }
  const std::uint64_t stamp = c.sent.pop();
  const char* expected = payloadFor(c.index, c.recvSeq).data();
  bool ok;
  if (rawFrame) {
    // The same bytes back: header, mask key, masked payload.
    rawScratch_.clear();
    appendMaskedFrame(rawScratch_, c.mask, opcode_, expected, o_.size);
    ok = n == rawScratch_.size() && std::memcmp(p, rawScratch_.data(), n) == 0;
  } else {
    ok = n == o_.size && std::memcmp(p, expected, n) == 0;
  }
  ++c.recvSeq;
  ++receivedTotal_;
  if (!ok) {
    fail("echoed payload differs from what was sent (connection " + std::to_string(c.index) +
         ", message " + std::to_string(c.recvSeq - 1) + ")");
  }
  if (measuring_) latency_.record(now - stamp);
  // Open loop: the pacer sends. Idle (--echo-first): one message only.
  if (o_.rate > 0 || mode_ == Mode::kIdle) return;
  if (quota_ != 0 ? sentTotal_ < quota_ : !stopping_) sendEcho(c, uv_hrtime());
}

void Load::sendHttpBatch(Conn& c, std::uint64_t stamp) {
  std::uint64_t k = o_.depth;
  if (quota_ != 0) k = std::min<std::uint64_t>(k, quota_ - std::min(quota_, sentTotal_));
  if (k == 0 || c.state != State::kOpen) return;
  for (std::uint64_t j = 0; j < k; ++j) {
    c.out.append(httpRequest_);
    c.sent.push(stamp);
  }
  c.sendSeq += k;
  sentTotal_ += k;
  markDirty(c);
}

void Load::onHttpResponse(Conn& c) {
  const std::uint64_t now = uv_hrtime();
  if (c.sent.empty()) {
    fail("a response nobody asked for on connection " + std::to_string(c.index));
    closeConn(c);
    return;
  }
  const std::uint64_t stamp = c.sent.pop();
  ++c.recvSeq;
  ++receivedTotal_;
  if (measuring_) latency_.record(now - stamp);
  // The next batch once the whole last one is answered (one write each).
  if (c.sent.empty() && (quota_ != 0 ? sentTotal_ < quota_ : !stopping_)) sendHttpBatch(c, now);
}

void Load::pumpPublisher(std::size_t pub) {
  Publisher& p = publishers_[pub];
  Conn& c = *conns_[pub];
  char head[32];
  std::string msg;
  while (!stopping_ && p.inFlight < o_.depth && (quota_ == 0 || sentTotal_ < quota_) &&
         c.state == State::kOpen) {
    const std::uint64_t seq = c.sendSeq++;
    const std::size_t slot = seq % o_.depth;
    if (p.remaining[slot] != 0) {
      fail("fanout bookkeeping: slot still in flight");
      return;
    }
    // The message, with "F" + publisher (4 hex) + seq (8 hex) at headerAt_.
    std::snprintf(head, sizeof(head), "F%04zx%08" PRIx64, pub, seq & 0xFFFFFFFFu);
    msg.assign(payloadFor(pub, seq));
    msg.replace(headerAt_, 13, head, 13);
    if (deflate_.negotiated) {
      compressedScratch_.clear();
      if (!deflater_->compress(msg, compressedScratch_)) {
        fail("deflate failed");
        return;
      }
      appendMessage(c, msg, &compressedScratch_);
    } else {
      appendMessage(c, msg, nullptr);
    }
    p.remaining[slot] = expectedDeliveries_;
    p.refState[slot] = 0;
    p.stamp[slot] = uv_hrtime();
    ++p.inFlight;
    ++sentTotal_;
    markDirty(c);
  }
}

// A delivery in clear (or inflated): which publish it is, from its header;
// its bytes against what was published. `wire` is the payload as it came.
void Load::onDelivery(Conn& c, const char* p, std::size_t n, std::string_view wire,
                      bool compressed) {
  const std::uint64_t now = uv_hrtime();
  ++receivedTotal_;
  unsigned pubId = 0;
  unsigned long long seq = 0;
  char head[14];
  if (n != o_.size || p[headerAt_] != 'F') {
    fail("fanout: malformed delivery");
    return;
  }
  std::memcpy(head, p + headerAt_, 13);
  head[13] = '\0';
  if (std::sscanf(head + 1, "%4x%8llx", &pubId, &seq) != 2 || pubId >= publishers_.size()) {
    fail("fanout: malformed delivery header");
    return;
  }
  auto& expect = expectSeq_[c.index * publishers_.size() + pubId];
  if ((expect & 0xFFFFFFFFu) != seq) {
    fail("fanout: delivery out of order on connection " + std::to_string(c.index));
    expect = seq;
  }
  const std::uint64_t fullSeq = expect++;
  const std::string_view want = payloadFor(pubId, fullSeq);
  if (std::memcmp(p, want.data(), headerAt_) != 0 ||
      std::memcmp(p + headerAt_ + 13, want.data() + headerAt_ + 13, n - headerAt_ - 13) != 0) {
    fail("fanout: delivered payload differs from what was published");
  }
  Publisher& pub = publishers_[pubId];
  const std::size_t slot = fullSeq % o_.depth;
  if (deflate_.negotiated && pub.remaining[slot] != 0) {
    sameAsFirstDelivery(pub, slot, wire, compressed);
  }
  delivered(pubId, fullSeq, now);
}

// A compressed delivery. With one publisher, its order says which publish it
// is: the first subscriber's copy is inflated and checked (so one inflate per
// publish, whatever the number of subscribers), every other copy must be the
// same bytes as the publish's first delivery. With several publishers only
// the content says whose it is: every copy is inflated.
void Load::onCompressedDelivery(Conn& c, const char* p, std::size_t n) {
  const std::string_view wire(p, n);
  const bool inflateIt = publishers_.size() != 1 || c.index == 1;
  if (inflateIt && inflateFor(c, p, n)) {
    onDelivery(c, inflated_.data(), inflated_.size(), wire, true);
    return;
  }
  if (publishers_.size() != 1) {
    ++receivedTotal_;  // whose it was is lost with its content
    return;
  }
  const std::uint64_t now = uv_hrtime();
  ++receivedTotal_;
  const std::uint64_t seq = expectSeq_[c.index]++;
  Publisher& pub = publishers_[0];
  const std::size_t slot = seq % o_.depth;
  if (pub.remaining[slot] == 0) {
    fail("fanout: more deliveries than subscribers");
    return;
  }
  sameAsFirstDelivery(pub, slot, wire, true);
  delivered(0, seq, now);
}

// Every delivery of a publish comes as the first one did: compressed or not,
// the same compressed bytes. A mismatch is an error.
bool Load::sameAsFirstDelivery(Publisher& pub, std::size_t slot, std::string_view wire,
                               bool compressed) {
  std::uint8_t& state = pub.refState[slot];
  if (state == 0) {
    state = compressed ? 2 : 1;
    if (compressed) pub.ref[slot].assign(wire);
    return true;
  }
  if (state == (compressed ? 2 : 1) &&
      (!compressed || (pub.ref[slot].size() == wire.size() &&
                       std::memcmp(pub.ref[slot].data(), wire.data(), wire.size()) == 0))) {
    return true;
  }
  ++mismatches_;
  auto describe = [](bool z, std::size_t bytes) {
    return z ? "compressed, " + std::to_string(bytes) + " bytes" : std::string("plain");
  };
  fail("fanout: a delivery of one publish differs from its first delivery (" +
       describe(compressed, wire.size()) + ", against " +
       describe(state == 2, pub.ref[slot].size()) + ")");
  return false;
}

void Load::delivered(std::size_t pubId, std::uint64_t seq, std::uint64_t now) {
  Publisher& pub = publishers_[pubId];
  const std::size_t slot = seq % o_.depth;
  if (pub.remaining[slot] == 0) {
    fail("fanout: more deliveries than subscribers");
    return;
  }
  if (measuring_) latency_.record(now - pub.stamp[slot]);
  if (--pub.remaining[slot] == 0) {
    --pub.inFlight;
    ++completedTotal_;
    pumpPublisher(pubId);
  }
}

std::uint64_t Load::outstanding() const noexcept {
  if (mode_ == Mode::kFanout) return sentTotal_ - completedTotal_;
  return sentTotal_ - receivedTotal_;
}

void Load::startPacer() {
  timerFd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timerFd_ < 0) {
    fail("timerfd_create failed");
    return;
  }
  intervalNs_ = 1e9 / o_.rate;
  // The tick is the send interval (at most one message per tick when the
  // client keeps up), but no shorter than 5 us.
  const auto tick = static_cast<long>(std::max(intervalNs_, 5000.0));
  itimerspec spec{};
  spec.it_interval.tv_sec = tick / 1000000000L;
  spec.it_interval.tv_nsec = tick % 1000000000L;
  spec.it_value = spec.it_interval;
  pacerStart_ = uv_hrtime() + static_cast<std::uint64_t>(tick);
  timerfd_settime(timerFd_, 0, &spec, nullptr);
  uv_poll_init(loop_, &pacer_, timerFd_);
  pacerInit_ = true;
  pacer_.data = this;
  uv_poll_start(&pacer_, UV_READABLE,
                [](uv_poll_t* h, int, int) { static_cast<Load*>(h->data)->onPacerTick(); });
}

void Load::onPacerTick() {
  std::uint64_t expirations;
  if (::read(timerFd_, &expirations, sizeof(expirations)) < 0) return;
  if (stopping_ || phase_ != Phase::kRunning) return;
  const std::uint64_t now = uv_hrtime();
  if (now < pacerStart_) return;
  auto due = static_cast<std::uint64_t>(static_cast<double>(now - pacerStart_) / intervalNs_) + 1;
  due = std::min(due, quota_);
  while (sentTotal_ < due) {
    Conn& c = *conns_[sentTotal_ % conns_.size()];
    const auto scheduled =
        pacerStart_ + static_cast<std::uint64_t>(static_cast<double>(sentTotal_) * intervalNs_);
    const std::uint64_t lag = now - std::min(now, scheduled);
    maxLagNs_ = std::max(maxLagNs_, lag);
    if (lag > 1000000) ++lateSends_;
    if (c.state == State::kOpen) {
      sendEcho(c, scheduled);
    } else {
      ++sentTotal_;
    }
  }
  flushDirty();
  if (sentTotal_ >= quota_) {
    stopping_ = true;
    uv_poll_stop(&pacer_);
  }
}

void Load::maybeDone() {
  if (phase_ != Phase::kRunning) return;
  if (quota_ != 0 && !stopping_) {
    const std::uint64_t done = mode_ == Mode::kFanout ? completedTotal_ : receivedTotal_;
    if (done >= quota_) stopping_ = true;
  }
  if (stopping_ && outstanding() == 0) {
    if (measuring_) stopMeasuring();
    closeAll();
  }
}

// ---------------------------------------------------------------- phases

Snapshot Load::snapshot() const {
  Snapshot s;
  s.t = uv_hrtime();
  s.received = receivedTotal_;
  s.completed = completedTotal_;
  s.resumed = resumedTotal_;
  timespec cpu{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
  s.clientCpuNs = static_cast<std::uint64_t>(cpu.tv_sec) * 1000000000u +
                  static_cast<std::uint64_t>(cpu.tv_nsec);
  s.proc = sampleProcess(o_.serverPid);
  return s;
}

void Load::startTimer(uv_timer_t* t, double seconds, uv_timer_cb cb) {
  uv_timer_start(t, cb, static_cast<std::uint64_t>(std::max(0.0, seconds) * 1000.0), 0);
}

void Load::allOpen() {
  connectEnd_ = uv_hrtime();
  phase_ = Phase::kRunning;
  if (mode_ != Mode::kFanout) compressPayloads();
  if (mode_ == Mode::kIdle) {
    rssOpen_ = sampleProcess(o_.serverPid);
    if (!o_.echoFirst) {
      startHold();
      return;
    }
    // One message each, echoed, before the hold.
    pendingEchoes_ = conns_.size();
    const std::uint64_t now = uv_hrtime();
    for (auto& c : conns_) sendEcho(*c, now);
    flushDirty();
    return;
  }
  if (mode_ == Mode::kFanout) {
    expectedDeliveries_ = static_cast<std::uint32_t>(conns_.size() - 1);
    publishers_.resize(o_.publishers);
    for (auto& p : publishers_) {
      p.stamp.assign(o_.depth, 0);
      p.remaining.assign(o_.depth, 0);
      p.refState.assign(o_.depth, 0);
      p.ref.assign(o_.depth, std::string());
    }
    expectSeq_.assign(conns_.size() * o_.publishers, 0);
  }
  if (o_.messages != 0) {
    // A fixed count: everything is measured, from the first send to the last reply.
    quota_ = o_.messages;
    startMeasuring();
  } else if (o_.rate > 0) {
    quota_ = static_cast<std::uint64_t>(o_.rate * o_.duration);
    startMeasuring();
  } else {
    startTimer(&phaseTimer_, o_.warmup, [](uv_timer_t* t) {
      auto& self = *static_cast<Load*>(t->data);
      self.startMeasuring();
      startTimer(&self.phaseTimer_, self.o_.duration, [](uv_timer_t* t2) {
        auto& s = *static_cast<Load*>(t2->data);
        s.stopMeasuring();
        s.stopping_ = true;
        s.maybeDone();
      });
    });
  }
  if (o_.rate > 0) {
    startPacer();
    return;
  }
  if (mode_ == Mode::kHttp) {
    const std::uint64_t now = uv_hrtime();
    for (auto& c : conns_) sendHttpBatch(*c, now);
  } else if (mode_ == Mode::kEcho) {
    const std::uint64_t now = uv_hrtime();
    for (std::size_t d = 0; d < o_.depth; ++d) {
      for (auto& c : conns_) {
        if (quota_ != 0 && sentTotal_ >= quota_) break;
        sendEcho(*c, now);
      }
    }
  } else {
    for (std::size_t p = 0; p < o_.publishers; ++p) pumpPublisher(p);
  }
  flushDirty();
}

// Idle: every connection open (and with --echo-first, its message echoed):
// hold them, then sample the server's memory.
void Load::startHold() {
  rssEchoed_ = sampleProcess(o_.serverPid);
  startTimer(&phaseTimer_, o_.hold, [](uv_timer_t* t) {
    auto& self = *static_cast<Load*>(t->data);
    self.rssAfter_ = sampleProcess(self.o_.serverPid);
    self.closeAll();
  });
}

void Load::startMeasuring() {
  measuring_ = true;
  start_ = snapshot();
}

void Load::stopMeasuring() {
  if (!measuring_) return;
  end_ = snapshot();
  measuring_ = false;
}

void Load::closeAll() {
  if (phase_ == Phase::kClosing || phase_ == Phase::kDone) return;
  phase_ = Phase::kClosing;
  stopping_ = true;
  if (pacerInit_) uv_poll_stop(&pacer_);
  uv_timer_stop(&phaseTimer_);
  for (auto& cp : conns_) {
    Conn& c = *cp;
    if (c.state == State::kOpen && !o_.raw && mode_ != Mode::kHttp) {
      // A polite close: our Close, then the server's, then TCP.
      const char payload[2] = {static_cast<char>(1000 >> 8), static_cast<char>(1000 & 0xFF)};
      appendFrame(c, kOpClose, payload, 2);
      c.state = State::kClosing;
      flush(c);
    } else if (c.state != State::kNew) {
      closeConn(c);
    }
  }
  startTimer(&graceTimer_, 5.0, [](uv_timer_t* t) {
    auto& self = *static_cast<Load*>(t->data);
    for (auto& c : self.conns_) self.closeConn(*c);
  });
  if (closed_ == inited_) finish();
}

void Load::closeConn(Conn& c) {
  if (c.state == State::kClosed || c.state == State::kNew) return;
  if (c.state == State::kConnecting || c.state == State::kHandshake) --connecting_;
  c.state = State::kClosed;
  uv_close(reinterpret_cast<uv_handle_t*>(&c.tcp), [](uv_handle_t* h) {
    auto& conn = *static_cast<Conn*>(h->data);
    conn.load->onConnClosed(conn);
  });
}

void Load::onConnClosed(Conn& c) {
  if (c.ssl) {
    // Freed without a shutdown, an SSL marks its session not resumable,
    // and --resume shares that session between connections.
    SSL_set_shutdown(c.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c.ssl);
    c.ssl = nullptr;
  }
  ++closed_;
  if (mode_ == Mode::kHandshake && phase_ == Phase::kRunning && !stopping_) {
    openConn(c);  // the next handshake on this slot
    return;
  }
  if (phase_ == Phase::kClosing && closed_ == inited_) finish();
}

void Load::finish() {
  if (phase_ == Phase::kDone) return;
  phase_ = Phase::kDone;
  uv_close(reinterpret_cast<uv_handle_t*>(&phaseTimer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&graceTimer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&deadlineTimer_), nullptr);
  if (pacerInit_) uv_close(reinterpret_cast<uv_handle_t*>(&pacer_), nullptr);
}

void Load::fail(const std::string& what) {
  if (++errors_ <= 5) std::fprintf(stderr, "spry-load: %s\n", what.c_str());
  if (errors_ == 6) std::fprintf(stderr, "spry-load: (further errors not shown)\n");
  // Anything that breaks the set-up or the bookkeeping ends the run; in http
  // mode any error does (a closed connection's requests never complete), and
  // in handshake mode (a refused handshake would only repeat).
  if (phase_ == Phase::kConnecting || mode_ == Mode::kHttp || mode_ == Mode::kHandshake) {
    stopMeasuring();
    closeAll();
  }
}

// ---------------------------------------------------------------- report

void Load::report() {
  const char* modeName = mode_ == Mode::kEcho        ? "echo"
                         : mode_ == Mode::kFanout    ? "fanout"
                         : mode_ == Mode::kHttp      ? "http"
                         : mode_ == Mode::kHandshake ? "handshake"
                                                     : "idle";
  const char* transport = mode_ == Mode::kHandshake ? "tls"
                          : mode_ == Mode::kHttp    ? (o_.tls ? "https" : "http")
                          : o_.raw                  ? "raw"
                          : o_.tls                  ? "wss"
                                                    : "ws";
  std::string r = "RESULT mode=" + std::string(modeName);
  auto add = [&r](const char* key, const std::string& value) {
    r.append(" ").append(key).append("=").append(value);
  };
  auto num = [](double v, int decimals = 3) {
    char b[64];
    std::snprintf(b, sizeof(b), "%.*f", decimals, v);
    return std::string(b);
  };
  if (!o_.label.empty()) add("label", o_.label);
  add("transport", transport);
  add("connections", std::to_string(conns_.size()));
  // The load tool's own core use over the measured time: near 1, it was the limit.
  const double clientUtil = end_.t > start_.t
                                ? static_cast<double>(end_.clientCpuNs - start_.clientCpuNs) /
                                      static_cast<double>(end_.t - start_.t)
                                : 0;
  if (connectEnd_ != 0 && mode_ != Mode::kHandshake)
    add("connect_s", num(static_cast<double>(connectEnd_ - connectStart_) / 1e9));
  if (o_.tls) {
    add("tls_protocol", tlsProtocol_.empty() ? "none" : tlsProtocol_);
    add("tls_cipher", tlsCipher_.empty() ? "none" : tlsCipher_);
    add("tls_verify", o_.caFile.empty() ? "0" : "1");
    add("tls_handshakes", std::to_string(tlsConns_));
    add("tls_resumed", std::to_string(tlsResumed_));
  }

  if (mode_ == Mode::kHandshake) {
    const double secs = static_cast<double>(end_.t - start_.t) / 1e9;
    const auto count = static_cast<double>(end_.received - start_.received);
    const auto resumed = static_cast<double>(end_.resumed - start_.resumed);
    const double cpuUs = static_cast<double>(end_.proc.cpuNs - start_.proc.cpuNs) / 1000.0;
    auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    add("resume", o_.resume ? "1" : "0");
    add("seconds", num(secs));
    add("handshakes", num(count, 0));
    add("resumed", num(resumed, 0));
    add("hs_per_s", num(secs > 0 ? count / secs : 0, 0));
    add("full_per_s", num(secs > 0 ? (count - resumed) / secs : 0, 0));
    add("resumed_per_s", num(secs > 0 ? resumed / secs : 0, 0));
    add("p50_us", num(us(latency_.quantile(0.50)), 1));
    add("p99_us", num(us(latency_.quantile(0.99)), 1));
    add("p999_us", num(us(latency_.quantile(0.999)), 1));
    add("max_us", num(us(latency_.max()), 1));
    if (o_.serverPid > 0 && start_.proc.ok && end_.proc.ok) {
      add("server_cpu_us_per_hs", num(count > 0 ? cpuUs / count : 0, 2));
      add("server_cpu_util", num(secs > 0 ? cpuUs / 1e6 / secs : 0));
    }
    add("client_cpu_util", num(clientUtil));
    std::printf(
        "handshake %s %s: %.0f handshakes (%.0f resumed) in %.2f s = %.0f/s; connect to "
        "handshake done p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
        tlsProtocol_.c_str(), o_.resume ? "resumed" : "full", count, resumed, secs,
        secs > 0 ? count / secs : 0, us(latency_.quantile(0.5)), us(latency_.quantile(0.99)),
        us(latency_.quantile(0.999)), us(latency_.max()));
    if (o_.serverPid > 0 && count > 0) {
      std::printf("server CPU: %.2f us per handshake (%.0f %% of a core)\n", cpuUs / count,
                  secs > 0 ? cpuUs / 1e4 / secs : 0);
    }
  } else if (mode_ == Mode::kHttp) {
    const double secs = static_cast<double>(end_.t - start_.t) / 1e9;
    const auto count = static_cast<double>(end_.received - start_.received);
    const double cpuUs = static_cast<double>(end_.proc.cpuNs - start_.proc.cpuNs) / 1000.0;
    auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    add("request", o_.request);
    add("request_bytes", std::to_string(httpRequest_.size()));
    add("path", o_.path);
    add("depth", std::to_string(o_.depth));
    add("seconds", num(secs));
    add("requests", num(count, 0));
    add("sent", std::to_string(sentTotal_));
    add("req_per_s", num(secs > 0 ? count / secs : 0, 0));
    add("p50_us", num(us(latency_.quantile(0.50)), 1));
    add("p99_us", num(us(latency_.quantile(0.99)), 1));
    add("p999_us", num(us(latency_.quantile(0.999)), 1));
    add("max_us", num(us(latency_.max()), 1));
    if (o_.serverPid > 0 && start_.proc.ok && end_.proc.ok) {
      add("server_cpu_us_per_req", num(count > 0 ? cpuUs / count : 0, 4));
      add("server_cpu_util", num(secs > 0 ? cpuUs / 1e6 / secs : 0));
    }
    add("client_cpu_util", num(clientUtil));
    std::printf(
        "http %s depth %zu: %.0f requests (%zu bytes each) in %.2f s = %.0f/s; latency p50 %.1f "
        "us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
        o_.request.c_str(), o_.depth, count, httpRequest_.size(), secs, secs > 0 ? count / secs : 0,
        us(latency_.quantile(0.5)), us(latency_.quantile(0.99)), us(latency_.quantile(0.999)),
        us(latency_.max()));
    if (o_.serverPid > 0 && count > 0) {
      std::printf("server CPU: %.3f us per request (%.0f %% of a core)\n", cpuUs / count,
                  secs > 0 ? cpuUs / 1e4 / secs : 0);
    }
  } else if (mode_ == Mode::kIdle) {
    const double perConn =
        open_ ? (static_cast<double>(rssAfter_.rssKb) - static_cast<double>(rssBefore_.rssKb)) *
                    1024.0 / static_cast<double>(conns_.size())
              : 0;
    std::printf("idle: %zu connections open in %.2f s; server RSS %" PRIu64 " kB before, %" PRIu64
                " kB all open, %" PRIu64 " kB after %.1f s: %.0f bytes per connection\n",
                open_, connectEnd_ ? static_cast<double>(connectEnd_ - connectStart_) / 1e9 : 0.0,
                rssBefore_.rssKb, rssOpen_.rssKb, rssAfter_.rssKb, o_.hold, perConn);
    if (o_.echoFirst) {
      std::printf("idle: one message echoed on every connection first; server RSS %" PRIu64
                  " kB once all were echoed\n",
                  rssEchoed_.rssKb);
    }
    add("rss_before_kb", std::to_string(rssBefore_.rssKb));
    add("rss_open_kb", std::to_string(rssOpen_.rssKb));
    if (o_.echoFirst) add("rss_echoed_kb", std::to_string(rssEchoed_.rssKb));
    add("echo_first", o_.echoFirst ? "1" : "0");
    add("hold_s", num(o_.hold, 1));
    add("rss_after_kb", std::to_string(rssAfter_.rssKb));
    add("rss_per_conn_bytes", num(perConn, 0));
    if (rssBefore_.ok && rssOpen_.ok) {
      add("server_cpu_us_per_conn", num(static_cast<double>(rssOpen_.cpuNs - rssBefore_.cpuNs) /
                                            1000.0 / static_cast<double>(conns_.size()),
                                        2));
    }
  } else {
    const double secs = static_cast<double>(end_.t - start_.t) / 1e9;
    const auto count = static_cast<double>(end_.received - start_.received);
    const auto completed = static_cast<double>(end_.completed - start_.completed);
    const double cpuUs = static_cast<double>(end_.proc.cpuNs - start_.proc.cpuNs) / 1000.0;
    const double ticks = static_cast<double>((end_.proc.userTicks - start_.proc.userTicks) +
                                             (end_.proc.sysTicks - start_.proc.sysTicks));
    const double userFrac =
        ticks > 0 ? static_cast<double>(end_.proc.userTicks - start_.proc.userTicks) / ticks : 0;
    auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    add("size", std::to_string(o_.size));
    add("type", o_.binary ? "binary" : "text");
    add("depth", std::to_string(o_.depth));
    add("rate", num(o_.rate, 0));
    add("seconds", num(secs));
    if (mode_ == Mode::kEcho) {
      add("messages", num(count, 0));
      add("msgs_per_s", num(secs > 0 ? count / secs : 0, 0));
    } else {
      add("publishers", std::to_string(o_.publishers));
      add("subscribers", std::to_string(o_.subscribers));
      add("deliveries", num(count, 0));
      add("deliveries_per_s", num(secs > 0 ? count / secs : 0, 0));
      add("publishes_per_s", num(secs > 0 ? completed / secs : 0, 0));
    }
    add("p50_us", num(us(latency_.quantile(0.50)), 1));
    add("p99_us", num(us(latency_.quantile(0.99)), 1));
    add("p999_us", num(us(latency_.quantile(0.999)), 1));
    add("max_us", num(us(latency_.max()), 1));
    if (o_.serverPid > 0 && start_.proc.ok && end_.proc.ok) {
      add("server_cpu_us_per_msg", num(count > 0 ? cpuUs / count : 0, 4));
      add("server_cpu_util", num(secs > 0 ? cpuUs / 1e6 / secs : 0));
      add("server_user_frac", num(userFrac));
    }
    add("client_cpu_util", num(clientUtil));
    if (o_.rate > 0) {
      add("max_send_lag_us", num(us(maxLagNs_), 1));
      add("late_sends", std::to_string(lateSends_));
    }
    std::printf(
        "%s %s: %.0f %s in %.2f s = %.0f/s; latency p50 %.1f us, p99 %.1f us, "
        "p99.9 %.1f us, max %.1f us\n",
        modeName, transport, count, mode_ == Mode::kEcho ? "messages" : "deliveries", secs,
        secs > 0 ? count / secs : 0, us(latency_.quantile(0.5)), us(latency_.quantile(0.99)),
        us(latency_.quantile(0.999)), us(latency_.max()));
    if (o_.serverPid > 0 && count > 0) {
      std::printf("server CPU: %.3f us per %s (%.0f %% of a core, %.0f %% user)\n", cpuUs / count,
                  mode_ == Mode::kEcho ? "message" : "delivery", secs > 0 ? cpuUs / 1e4 / secs : 0,
                  userFrac * 100);
    }
    if (o_.rate > 0 && lateSends_ > 0) {
      std::printf("warning: %" PRIu64
                  " sends were over 1 ms behind schedule (max %.0f us): the "
                  "client could not keep the offered rate\n",
                  lateSends_, us(maxLagNs_));
    }
  }
  if (mode_ == Mode::kEcho || mode_ == Mode::kFanout || mode_ == Mode::kIdle) {
    // Wire bytes per data message (header, mask and payload), each way.
    const double out =
        wireOutMsgs_ ? static_cast<double>(wireOutBytes_) / static_cast<double>(wireOutMsgs_) : 0;
    const double in =
        wireInMsgs_ ? static_cast<double>(wireInBytes_) / static_cast<double>(wireInMsgs_) : 0;
    add("payload", o_.json ? "json" : "pattern");
    add("deflate", o_.deflate ? "1" : "0");
    if (deflate_.negotiated) {
      std::string ext;
      for (char ch : deflate_.response) {
        if (ch != ' ' && ch != '\t') ext.push_back(ch);
      }
      add("extension", ext);
      add("compressed_in_frac",
          num(wireInMsgs_ ? static_cast<double>(compressedIn_) / static_cast<double>(wireInMsgs_)
                          : 0));
      add("inflated", std::to_string(inflatedTotal_));
    }
    if (mode_ == Mode::kFanout) {
      add("mismatches", std::to_string(mismatches_));
      if (deflate_.negotiated) {
        add("inflated_per_publish",
            num(sentTotal_ ? static_cast<double>(inflatedTotal_) / static_cast<double>(sentTotal_)
                           : 0));
      }
    }
    add("wire_out_per_msg", num(out, 1));
    add("wire_in_per_msg", num(in, 1));
    if (wireOutMsgs_ || wireInMsgs_) {
      std::printf(
          "wire bytes per message (frame header, mask, payload of %zu bytes%s): %.1f sent, "
          "%.1f received%s%s\n",
          o_.size, o_.json ? " of JSON" : "", out, in, deflate_.negotiated ? "; negotiated: " : "",
          deflate_.negotiated ? deflate_.response.c_str() : "");
    }
    if (deflate_.negotiated && mode_ == Mode::kFanout) {
      std::printf("deflate: %" PRIu64 " of %" PRIu64 " deliveries compressed, %" PRIu64
                  " inflated, %" PRIu64 " unlike their publish's first delivery\n",
                  compressedIn_, wireInMsgs_, inflatedTotal_, mismatches_);
    }
  }
  add("timed_out", timedOut_ ? "1" : "0");
  add("errors", std::to_string(errors_));
  std::printf("%s\n", r.c_str());
  std::fflush(stdout);
}

// A blocking connection: handshake (or, raw, one frame echoed), then close.
void Load::warmUp() {
  int fd = ::socket(addr_.ss_family, SOCK_STREAM, 0);
  if (fd < 0) return;
  const socklen_t len = addr_.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (o_.tls) {
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr_), len) == 0) warmUpTls(fd);
  } else if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr_), len) == 0) {
    std::string req = o_.raw ? std::string("\x81\x80\x01\x02\x03\x04", 6)
                             : "GET " + o_.path + " HTTP/1.1\r\nHost: " + hostHeader_ +
                                   "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "Sec-WebSocket-Version: 13\r\n";
    if (!o_.raw) {
      if (o_.deflate) req.append("Sec-WebSocket-Extensions: ").append(kDeflateOffer).append("\r\n");
      req += "\r\n";
    }
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      std::string in;
      char buf[4096];
      auto receive = [&] {
        const ssize_t k = ::recv(fd, buf, sizeof(buf), 0);
        if (k > 0) in.append(buf, static_cast<std::size_t>(k));
        return k > 0;
      };
      if (o_.raw || !o_.echoFirst) {
        (void)receive();
      } else {
        // --echo-first: one message through the server's compression too.
        while (in.find("\r\n\r\n") == std::string::npos && receive()) {
        }
        const auto end = in.find("\r\n\r\n");
        std::string ext;
        for (std::size_t pos = 0; end != std::string::npos && pos < end;) {
          const auto eol = in.find("\r\n", pos);
          if (startsWithIgnoreCase(std::string_view(in).substr(pos), "sec-websocket-extensions:")) {
            ext = in.substr(pos + 25, eol - pos - 25);
          }
          pos = eol + 2;
        }
        DeflateParams params;
        std::string error, frame, z;
        const bool compressed = !ext.empty() && parseDeflateResponse(ext, params, error) &&
                                MessageDeflater(params.clientMaxWindowBits, Z_DEFAULT_COMPRESSION)
                                    .compress(payloads_[0], z);
        if (compressed) {
          appendMaskedFrame(frame, {1, 2, 3, 4}, opcode_, z.data(), z.size(), true);
        } else {
          appendMaskedFrame(frame, {1, 2, 3, 4}, opcode_, payloads_[0].data(), o_.size);
        }
        if (end != std::string::npos && ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) ==
                                            static_cast<ssize_t>(frame.size())) {
          in.erase(0, end + 4);
          while (in.size() < 2 && receive()) {
          }
        }
      }
    }
  }
  ::close(fd);
  ::usleep(200 * 1000);  // the server notices the close and frees the connection
}

// The same over TLS, blocking, on the socket itself (outside the loop): the
// server pages in its TLS code (~1-2 MB of libssl and libcrypto) before the
// RSS sample. No session is kept from it.
void Load::warmUpTls(int fd) {
  TlsClient once;
  std::string error;
  if (!once.init(TlsClientOptions{}, error)) return;
  TlsWire unused;
  SSL* ssl = once.newConnection(&unused, o_.host, false);
  if (!ssl) return;
  SSL_set_fd(ssl, fd);  // the socket BIO replaces ours
  const std::string req =
      "GET " + o_.path + " HTTP/1.1\r\nHost: " + hostHeader_ +
      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n" +
      (o_.deflate ? "Sec-WebSocket-Extensions: " + std::string(kDeflateOffer) + "\r\n"
                  : std::string()) +
      "\r\n";
  if (SSL_connect(ssl) == 1 &&
      SSL_write(ssl, req.data(), static_cast<int>(req.size())) == static_cast<int>(req.size())) {
    char buf[512];
    (void)SSL_read(ssl, buf, sizeof(buf));
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  ERR_clear_error();
}

// scheme://host[:port][/path]; host numeric (checked by resolve), IPv6 in
// brackets. An empty path leaves the mode's default.
bool parseUrl(const std::string& url, Options& o) {
  const auto sep = url.find("://");
  if (sep == std::string::npos) return false;
  const std::string scheme = url.substr(0, sep);
  if (scheme == "ws" || scheme == "http") {
    o.tls = false;
  } else if (scheme == "wss" || scheme == "https") {
    o.tls = true;
  } else {
    return false;
  }
  std::string rest = url.substr(sep + 3);
  const auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) o.path = rest.substr(slash);
  std::string port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) return false;
    o.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return false;
      port = authority.substr(close + 2);
    }
  } else {
    const auto colon = authority.find(':');
    o.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (o.host.empty()) return false;
  if (port.empty()) {
    o.port = o.tls ? 443 : 80;
    return true;
  }
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
  const unsigned long p = std::stoul(port);
  if (p == 0 || p > 65535) return false;
  o.port = static_cast<std::uint16_t>(p);
  return true;
}

int Load::run() {
  if (!resolve()) {
    std::fprintf(stderr, "spry-load: %s is not a numeric loopback address (127.0.0.0/8 or ::1)\n",
                 o_.host.c_str());
    return 2;
  }
  buildPattern();
  createConnections();
  if (o_.tls) {
    std::string error;
    if (!tls_.init(TlsClientOptions{.caFile = o_.caFile,
                                    .serverName = o_.serverName,
                                    .cipherSuites = o_.cipherSuites,
                                    .resume = o_.resume},
                   error)) {
      std::fprintf(stderr, "spry-load: %s\n", error.c_str());
      return 2;
    }
    plainBuf_.resize(256 << 10);
    // --resume: the first session lets the other connections start.
    tls_.onSession([this] {
      if (mode_ == Mode::kHandshake) {
        startHandshakes();
      } else {
        connectNext();
      }
    });
  }
  // Many connections need many descriptors: take the hard limit.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < conns_.size() + 64) {
    std::fprintf(stderr, "spry-load: %zu connections need more descriptors than ulimit -n (%lu)\n",
                 conns_.size(), static_cast<unsigned long>(lim.rlim_cur));
    return 2;
  }

  uv_loop_t loop;
  uv_loop_init(&loop);
  loop_ = &loop;
  for (uv_timer_t* t : {&phaseTimer_, &graceTimer_, &deadlineTimer_}) {
    uv_timer_init(loop_, t);
    t->data = this;
  }
  double bound = o_.timeout;
  if (bound <= 0) {
    if (mode_ == Mode::kIdle) {
      bound = o_.hold + 120;
    } else if (o_.messages != 0) {
      bound = o_.rate > 0 ? static_cast<double>(o_.messages) / o_.rate + 120 : 600;
    } else {
      bound = o_.warmup + o_.duration + 60;
    }
  }
  startTimer(&deadlineTimer_, bound, [](uv_timer_t* t) {
    auto& self = *static_cast<Load*>(t->data);
    std::fprintf(stderr, "spry-load: timed out\n");
    self.timedOut_ = true;
    self.stopMeasuring();
    if (self.phase_ != Phase::kClosing) self.closeAll();
    for (auto& c : self.conns_) self.closeConn(*c);
    if (self.closed_ == self.inited_) self.finish();
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(&deadlineTimer_));

  // Idle: one connection through the whole handshake first, so that what a
  // server loads once (code paged in by its first handshake, such as
  // libcrypto's SHA-1 for Sec-WebSocket-Accept, ~2 MB) is not charged to
  // the connections measured.
  if (mode_ == Mode::kIdle) warmUp();
  rssBefore_ = sampleProcess(o_.serverPid);
  connectStart_ = uv_hrtime();
  if (mode_ == Mode::kHandshake) {
    phase_ = Phase::kRunning;
    if (o_.resume) {
      nextConn_ = 1;
      openConn(*conns_[0]);  // the others once it has a session
    } else {
      startHandshakes();
    }
  } else {
    connectNext();
  }
  uv_run(loop_, UV_RUN_DEFAULT);
  // Anything still open (a hang) is closed by the deadline; run what it closed.
  if (phase_ != Phase::kDone) {
    finish();
    uv_run(loop_, UV_RUN_DEFAULT);
  }
  if (timerFd_ >= 0) ::close(timerFd_);
  uv_loop_close(loop_);
  if (mode_ != Mode::kIdle && end_.t == 0) end_ = start_;
  // An exact count must come out exact: every request sent and answered.
  if (mode_ == Mode::kHttp && o_.messages != 0 &&
      (sentTotal_ != o_.messages || receivedTotal_ != o_.messages)) {
    fail("count mismatch: " + std::to_string(o_.messages) + " requests asked for, " +
         std::to_string(sentTotal_) + " sent, " + std::to_string(receivedTotal_) + " answered");
  }
  report();
  if (timedOut_) return 3;
  return errors_ == 0 ? 0 : 1;
}

}  // namespace
}  // namespace load

int main(int argc, char** argv) {
  load::Options o;
  CLI::App cli{"spry-load: WebSocket and HTTP load generator for loopback benchmarks"};
  cli.add_option("--mode", o.mode, "echo | fanout | idle | http | handshake")
      ->check(CLI::IsMember({"echo", "fanout", "idle", "http", "handshake"}))
      ->capture_default_str();
  cli.add_option("url", o.url,
                 "ws://, wss://, http:// or https://HOST:PORT[/PATH] (instead of --host, "
                 "--port, --path); wss and https speak TLS");
  auto* hostOpt =
      cli.add_option("--host", o.host, "numeric loopback address")->capture_default_str();
  auto* portOpt = cli.add_option("--port", o.port, "server port")->capture_default_str();
  auto* pathOpt = cli.add_option("--path", o.path,
                                 "WebSocket path (default /echo, fanout /broadcast), http: GET "
                                 "target (default /hello/world)");
  cli.add_option("--ca", o.caFile,
                 "TLS: verify the server's certificate against these PEM roots (and its IP or "
                 "--sni name); default: no verification");
  cli.add_option("--sni", o.serverName, "TLS: server name to send (SNI)");
  cli.add_option("--ciphersuites", o.cipherSuites,
                 "TLS 1.3 suites to offer, in order (default OpenSSL's: "
                 "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256)");
  cli.add_flag("--resume", o.resume,
               "TLS: connections after the first resume the first one's session");
  cli.add_option("--request", o.request,
                 "http: bare (Host only) or browser (10 typical browser fields, ~540 bytes)")
      ->check(CLI::IsMember({"bare", "browser"}))
      ->capture_default_str();
  cli.add_flag("--raw", o.raw, "plain TCP: the frame bytes without handshake, expect them back");
  cli.add_option("--connections,-c", o.connections, "connections (echo, idle, http)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cli.add_option("--size,-s", o.size, "payload bytes per message")
      ->capture_default_str()
      ->check(CLI::Range(1, 64 << 20));
  cli.add_flag("--binary", o.binary, "binary messages (default text)");
  cli.add_option("--depth,-d", o.depth,
                 "messages in flight per connection / publisher; http: requests per write")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cli.add_option("--rate", o.rate, "open loop: messages/s offered in total (0: closed loop)")
      ->capture_default_str();
  cli.add_option("--messages,-n", o.messages,
                 "stop after this many messages (echo), publishes (fanout) or requests (http); "
                 "no warm-up")
      ->capture_default_str();
  cli.add_option("--duration", o.duration, "measured seconds (without --messages)")
      ->capture_default_str();
  cli.add_option("--warmup", o.warmup, "unmeasured seconds before (closed loop)")
      ->capture_default_str();
  cli.add_option("--timeout", o.timeout, "hard bound in seconds (0: derived)");
  cli.add_option("--server-pid", o.serverPid, "server process: CPU and RSS from /proc");
  cli.add_option("--publishers", o.publishers, "fanout publishers")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  cli.add_option("--subscribers", o.subscribers, "fanout subscribers")->capture_default_str();
  cli.add_option("--hold", o.hold, "idle: seconds to hold the connections")->capture_default_str();
  cli.add_option("--source-addrs", o.sourceAddrs,
                 "spread connections over 127.0.0.1..N (0: one per 25,000)")
      ->capture_default_str();
  cli.add_option("--connect-concurrency", o.connectConcurrency, "connections set up at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cli.add_option("--label", o.label, "copied into the RESULT line");
  cli.add_flag("--deflate", o.deflate,
               "offer permessage-deflate (as a browser does: client_max_window_bits); send "
               "compressed, inflate compressed replies; fail if the server does not agree");
  cli.add_flag("--json", o.json,
               "messages are realistic JSON text of --size bytes (a chat message below 1 KiB, a "
               "document of records above), not the repeating pattern");
  cli.add_flag("--echo-first", o.echoFirst,
               "idle: once all are open, every connection sends one message and waits for its "
               "echo, then the hold starts");
  CLI11_PARSE(cli, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a write to a reset socket is an error, not an exit

  if (!o.url.empty()) {
    if (hostOpt->count() + portOpt->count() + pathOpt->count() > 0) {
      std::fprintf(stderr, "spry-load: give a URL or --host/--port/--path, not both\n");
      return 2;
    }
    if (!load::parseUrl(o.url, o)) {
      std::fprintf(stderr,
                   "spry-load: %s: expected ws://, wss://, http:// or https://HOST:PORT[/PATH]\n",
                   o.url.c_str());
      return 2;
    }
  }

  load::Mode mode = o.mode == "echo"        ? load::Mode::kEcho
                    : o.mode == "fanout"    ? load::Mode::kFanout
                    : o.mode == "http"      ? load::Mode::kHttp
                    : o.mode == "handshake" ? load::Mode::kHandshake
                                            : load::Mode::kIdle;
  if (o.tls && o.raw) {
    std::fprintf(stderr, "spry-load: --raw speaks plain TCP, not TLS\n");
    return 2;
  }
  if (!o.tls && (mode == load::Mode::kHandshake || o.resume || !o.caFile.empty() ||
                 !o.serverName.empty() || !o.cipherSuites.empty())) {
    std::fprintf(stderr,
                 "spry-load: handshake mode, --resume, --ca, --sni and --ciphersuites need a "
                 "wss:// or https:// URL\n");
    return 2;
  }
  if (o.path.empty()) {
    o.path = mode == load::Mode::kFanout ? "/broadcast"
             : mode == load::Mode::kHttp ? "/hello/world"
                                         : "/echo";
  }
  if (mode == load::Mode::kHttp) {
    if (o.raw) {
      std::fprintf(stderr, "spry-load: http has no raw mode\n");
      return 2;
    }
    if (o.path.empty() || o.path.front() != '/' ||
        o.path.find_first_of(" \r\n") != std::string::npos) {
      std::fprintf(stderr, "spry-load: --path must start with / and hold no space or line break\n");
      return 2;
    }
  }
  if (mode == load::Mode::kFanout) {
    if (o.raw) {
      std::fprintf(stderr, "spry-load: fanout has no raw mode\n");
      return 2;
    }
    if (o.size < 16) {
      std::fprintf(stderr, "spry-load: fanout needs --size of at least 16\n");
      return 2;
    }
  }
  if (o.deflate && (o.raw || mode == load::Mode::kHttp || mode == load::Mode::kHandshake)) {
    std::fprintf(stderr, "spry-load: --deflate applies to WebSocket modes (echo, fanout, idle)\n");
    return 2;
  }
  if (o.json && (o.binary || o.size < load::kJsonMinSize)) {
    std::fprintf(stderr, "spry-load: --json is text of at least %zu bytes (no --binary)\n",
                 load::kJsonMinSize);
    return 2;
  }
  if (o.echoFirst && (mode != load::Mode::kIdle || o.raw)) {
    std::fprintf(stderr, "spry-load: --echo-first applies to WebSocket idle mode\n");
    return 2;
  }
  if (o.rate > 0 && mode != load::Mode::kEcho) {
    std::fprintf(stderr, "spry-load: --rate applies to echo only\n");
    return 2;
  }
  return load::Load(std::move(o), mode).run();
}
