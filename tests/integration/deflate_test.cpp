// Loopback tests of permessage-deflate (RFC 7692): the 101's answer per mode,
// compressed messages both ways (whole, fragmented, split across reads), the
// per-message options, the protocol errors (1002, 1007, 1009), inflate bombs,
// zlib memory of idle sockets, dedicated contexts, pub/sub fan-out compressed
// once, and addStream's backpressure. The client side of the extension is
// written here on zlib, independently of spry's codec.

#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "strings.h"
#include "ws/permessage_deflate.h"
#include "ws_client.h"

using namespace spry::test;
using spry::Compression;
using spry::Message;
using spry::WebSocket;

namespace {

std::size_t liveStreams(TestServer& server) {
  return server.onLoop([] { return spry::detail::liveZlibStreams(); });
}

// ---------------------------------------------------------------- the client's codec

constexpr std::string_view kTail("\x00\x00\xff\xff", 4);
constexpr std::uint8_t kRsv1 = 0x4;  // in WsFrame::rsv (RSV1 RSV2 RSV3 as bits 2 1 0)

// `message` compressed as one permessage-deflate message: raw deflate, a
// fresh stream (we always agree client_no_context_takeover), the 00 00 ff ff
// tail removed.
std::string compress(std::string_view message, int windowBits = 15, int level = 6) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, level, Z_DEFLATED, -windowBits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  z.avail_in = static_cast<uInt>(message.size());
  std::string out;
  unsigned char buf[16384];
  do {
    z.next_out = buf;
    z.avail_out = sizeof(buf);
    const int rc = deflate(&z, Z_SYNC_FLUSH);
    REQUIRE((rc == Z_OK || rc == Z_BUF_ERROR));
    out.append(reinterpret_cast<char*>(buf), sizeof(buf) - z.avail_out);
  } while (z.avail_out == 0);
  deflateEnd(&z);
  REQUIRE(out.size() >= kTail.size());
  REQUIRE(std::string_view(out).substr(out.size() - kTail.size()) == kTail);
  out.resize(out.size() - kTail.size());
  return out;
}

// Inflates the server's messages. It inflates into 256 bytes at a time, so
// that a back reference can only be served from zlib's window: a message
// that needs a larger window than `windowBits` fails instead of succeeding
// by luck from the output buffer.
class ClientInflater {
 public:
  explicit ClientInflater(int windowBits = 15) { REQUIRE(inflateInit2(&z_, -windowBits) == Z_OK); }
  ~ClientInflater() { inflateEnd(&z_); }
  ClientInflater(const ClientInflater&) = delete;
  ClientInflater& operator=(const ClientInflater&) = delete;

  // nullopt when zlib finds the data corrupt (or too far back for our window).
  // keepContext: the server may refer back to earlier messages (dedicated
  // mode without server_no_context_takeover).
  std::optional<std::string> inflate(std::string_view payload, bool keepContext) {
    std::string in(payload);
    in.append(kTail);
    z_.next_in = reinterpret_cast<Bytef*>(in.data());
    z_.avail_in = static_cast<uInt>(in.size());
    std::string out;
    bool ok = true;
    for (;;) {
      unsigned char buf[256];
      z_.next_out = buf;
      z_.avail_out = sizeof(buf);
      const int rc = ::inflate(&z_, Z_SYNC_FLUSH);
      if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
        ok = false;
        break;
      }
      out.append(reinterpret_cast<char*>(buf), sizeof(buf) - z_.avail_out);
      if (rc == Z_STREAM_END || z_.avail_out != 0) break;
    }
    if (!ok || !keepContext) inflateReset(&z_);
    if (!ok) return std::nullopt;
    return out;
  }

 private:
  z_stream z_{};
};

// One data message as the server sent it.
struct Received {
  std::uint8_t opcode = 0;
  bool compressed = false;    // RSV1 on its first frame
  bool rsvElsewhere = false;  // any other RSV bit, or RSV1 on a continuation
  int frames = 0;
  std::string wire;      // the payloads of its frames, joined
  std::string payload;   // inflated when compressed
  bool inflated = true;  // false: the client could not inflate it
};

// Reads the next data message (answers pings, skips pongs); inflates it with
// `inflater` when it came compressed. nullopt on Close, timeout or EOF.
std::optional<Received> readMessage(WsClient& c, ClientInflater& inflater, bool keepContext = false,
                                    std::chrono::milliseconds timeout = 3000ms) {
  Received m;
  for (;;) {
    auto f = c.readFrame(timeout);
    if (!f || f->opcode == ws::kClose) return std::nullopt;
    if (f->opcode == ws::kPing) {
      c.sendPong(f->payload);
      continue;
    }
    if (f->opcode == ws::kPong) continue;
    if (m.frames == 0) {
      m.opcode = f->opcode;
      m.compressed = (f->rsv & kRsv1) != 0;
      if ((f->rsv & ~kRsv1) != 0) m.rsvElsewhere = true;
    } else if (f->opcode != ws::kContinuation || f->rsv != 0) {
      m.rsvElsewhere = true;
    }
    ++m.frames;
    m.wire += f->payload;
    if (f->fin) break;
  }
  if (m.compressed) {
    auto inflated = inflater.inflate(m.wire, keepContext);
    m.inflated = inflated.has_value();
    if (inflated) m.payload = std::move(*inflated);
  } else {
    m.payload = m.wire;
  }
  return m;
}

// The frames of one message: `payload` (already compressed when `rsv1`) cut
// into `pieces` frames, RSV1 on the first only.
std::vector<std::string> frameList(std::uint8_t opcode, std::string_view payload,
                                   std::size_t pieces, bool rsv1 = true) {
  pieces = std::max<std::size_t>(1, std::min(pieces, std::max<std::size_t>(1, payload.size())));
  std::vector<std::string> out;
  const std::size_t step = (payload.size() + pieces - 1) / pieces;
  for (std::size_t i = 0, at = 0; i < pieces; ++i, at += step) {
    const std::string_view part = payload.substr(std::min(at, payload.size()), step);
    const bool first = i == 0;
    out.push_back(WsClient::frame(first ? opcode : ws::kContinuation, part, i + 1 == pieces, true,
                                  first && rsv1 ? kRsv1 : 0));
  }
  return out;
}

std::string framesOf(std::uint8_t opcode, std::string_view payload, std::size_t pieces,
                     bool rsv1 = true) {
  std::string out;
  for (const auto& f : frameList(opcode, payload, pieces, rsv1)) out += f;
  return out;
}

// Sends `bytes` in pieces of `chunk` bytes, one write each.
bool sendInPieces(WsClient& c, std::string_view bytes, std::size_t chunk) {
  while (!bytes.empty()) {
    if (!c.raw().send(bytes.substr(0, chunk))) return false;
    bytes.remove_prefix(std::min(chunk, bytes.size()));
  }
  return true;
}

// ---------------------------------------------------------------- payloads

// Compressible UTF-8 text of exactly `size` bytes (chat-like JSON with
// multibyte characters, never cut inside one).
std::string jsonText(std::size_t size, unsigned seed = 1) {
  static const char* const kWords[] = {"{\"user\":\"alice\",",
                                       "\"text\":\"héllo wörld\",",
                                       "\"room\":\"lobby\",",
                                       "\"emoji\":\"🙂\",",
                                       "\"n\":",
                                       "\"at\":\"2026-12-03T14:35:00Z\"},"};
  std::string s;
  std::mt19937 rng(seed);
  while (s.size() < size) {
    std::string w = kWords[rng() % std::size(kWords)];
    if (w == "\"n\":") w += std::to_string(rng() % 1000) + ",";
    if (s.size() + w.size() > size) w.assign(size - s.size(), 'x');
    s += w;
  }
  return s;
}

// Compressible binary of `size` bytes, every byte value present.
std::string patternBytes(std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 7 + i / 997) % 251);
  return s;
}

std::string randomBytes(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Random lower-case letters: text that deflate shrinks by about a third only.
std::string randomLetters(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(size, 'a');
  for (auto& c : s) c = static_cast<char>('a' + rng() % 26);
  return s;
}

// A compressed message of zeros, byte-aligned and without the tail, that
// inflates to about `chunks` x 16 MiB: a 16 MiB chunk of zeros compresses to
// the same bytes every time once the window holds zeros, so the stream is the
// first chunk and then copies of the second.
std::string zeroBomb(std::size_t chunks) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  const std::string zeros(16u << 20, '\0');
  std::vector<std::string> parts;
  for (int i = 0; i < 3; ++i) {
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(zeros.data()));
    z.avail_in = static_cast<uInt>(zeros.size());
    std::string out;
    unsigned char buf[65536];
    do {
      z.next_out = buf;
      z.avail_out = sizeof(buf);
      REQUIRE(deflate(&z, Z_SYNC_FLUSH) != Z_STREAM_ERROR);
      out.append(reinterpret_cast<char*>(buf), sizeof(buf) - z.avail_out);
    } while (z.avail_out == 0 || z.avail_in != 0);
    parts.push_back(std::move(out));
  }
  deflateEnd(&z);
  REQUIRE(parts[1] == parts[2]);
  std::string bomb = parts[0];
  for (std::size_t i = 1; i < chunks; ++i) bomb += parts[1];
  REQUIRE(std::string_view(bomb).substr(bomb.size() - kTail.size()) == kTail);
  bomb.resize(bomb.size() - kTail.size());
  return bomb;
}

// ---------------------------------------------------------------- the server side

spry::WebSocketOptions withCompression(Compression mode, spry::CompressionOptions c = {}) {
  spry::WebSocketOptions o;
  c.mode = mode;
  o.compression = c;
  return o;
}

// Echoes every message, noting "c" or "p": whether it came compressed.
void echoNoting(Probe& p, const WebSocket& ws) {
  p.watch(ws);
  ws.listen([ws, &p](const Message& m) {
    ++p.messages;
    p.note(m.wasCompressed() ? "c" : "p");
    ws.add(m);
  });
}

std::string offerHeader(std::string_view offer) {
  return offer.empty() ? std::string() : cat("Sec-WebSocket-Extensions: ", offer, "\r\n");
}

// The parameters of a Sec-WebSocket-Extensions answer, trimmed, in order.
std::vector<std::string> paramsOf(std::string_view value) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in{std::string(value)};
  while (std::getline(in, part, ';')) {
    part.erase(0, part.find_first_not_of(" \t"));
    part.erase(part.find_last_not_of(" \t") + 1);
    out.push_back(part);
  }
  return out;
}

// A client on `path` that offered `offer`; REQUIREs the 101.
std::unique_ptr<WsClient> connect(std::uint16_t port, std::string_view path,
                                  std::string_view offer = "permessage-deflate",
                                  std::string* answer = nullptr) {
  auto c = std::make_unique<WsClient>(port);
  auto r = c->handshake(path, offerHeader(offer));
  REQUIRE(r);
  REQUIRE(r->status == 101);
  if (answer) *answer = std::string(r->headers.get("Sec-WebSocket-Extensions"));
  return c;
}

long vmKb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return -1;
}

// Resets the process's peak RSS (VmHWM); false where the kernel does not allow it.
bool resetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good();
}

}  // namespace

// ------------------------------------------------------------------ negotiation

TEST_CASE("deflate: out-of-range compression settings are refused by app.ws, naming the field") {
  spry::App app;
  auto route = [](WebSocket, spry::Request&) {};
  auto refused = [&](spry::CompressionOptions c, const std::string& field) {
    c.mode = Compression::kShared;
    try {
      app.ws("/z", route, {.compression = c});
      FAIL("accepted " << field);
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("compression." + field) != std::string::npos);
    }
  };
  refused({.windowBits = 8}, "windowBits");
  refused({.windowBits = 16}, "windowBits");
  refused({.level = 0}, "level");
  refused({.level = 10}, "level");
  refused({.memLevel = 0}, "memLevel");
  refused({.memLevel = 10}, "memLevel");
  // The edges are accepted.
  CHECK_NOTHROW(
      app.ws("/edges", route,
             {.compression = {
                  .mode = Compression::kDedicated, .level = 9, .windowBits = 9, .memLevel = 1}}));
}

TEST_CASE("deflate: the 101 answers the offer per mode; off and no offer: no extension") {
  spry::App app;
  Probe p;
  auto route = [&p](WebSocket ws, spry::Request&) { echoNoting(p, ws); };
  app.ws("/off", route);
  app.ws("/shared", route, withCompression(Compression::kShared));
  app.ws("/dedicated", route, withCompression(Compression::kDedicated));
  app.ws("/shared10", route, withCompression(Compression::kShared, {.windowBits = 10}));
  TestServer server(app);

  using Params = std::vector<std::string>;
  const Params shared = {"permessage-deflate", "server_no_context_takeover",
                         "client_no_context_takeover"};
  struct Case {
    const char* path;
    const char* offer;
    std::optional<Params> answer;  // nullopt: no Sec-WebSocket-Extensions at all
  };
  const Case cases[] = {
      {"/off", "permessage-deflate", std::nullopt},
      {"/off", "permessage-deflate; client_max_window_bits", std::nullopt},
      {"/shared", "", std::nullopt},
      {"/shared", "permessage-deflate", shared},
      // Chromium's offer.
      {"/shared", "permessage-deflate; client_max_window_bits", shared},
      {"/shared", "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits", shared},
      {"/dedicated", "permessage-deflate; client_max_window_bits",
       Params{"permessage-deflate", "client_no_context_takeover"}},
      {"/dedicated", "permessage-deflate; server_no_context_takeover", shared},
      {"/shared", "permessage-deflate; server_max_window_bits=10",
       Params{"permessage-deflate", "server_no_context_takeover", "client_no_context_takeover",
              "server_max_window_bits=10"}},
      {"/shared10", "permessage-deflate",
       Params{"permessage-deflate", "server_no_context_takeover", "client_no_context_takeover",
              "server_max_window_bits=10"}},
      // A window of 8 cannot be served: the next offer is taken, or none.
      {"/shared", "permessage-deflate; server_max_window_bits=8, permessage-deflate", shared},
      {"/shared", "permessage-deflate; server_max_window_bits=8", std::nullopt},
      {"/shared", "permessage-deflate; no_such_parameter", std::nullopt},
  };
  for (const Case& k : cases) {
    INFO(std::string(k.path));
    INFO(std::string(k.offer));
    WsClient c(server.port());
    auto r = c.handshake(k.path, offerHeader(k.offer));
    REQUIRE(r);
    CHECK(r->status == 101);
    if (!k.answer) {
      CHECK_FALSE(r->headers.has("Sec-WebSocket-Extensions"));
      continue;
    }
    REQUIRE(r->headers.has("Sec-WebSocket-Extensions"));
    const Params got = paramsOf(r->headers.get("Sec-WebSocket-Extensions"));
    REQUIRE(!got.empty());
    CHECK(got.front() == "permessage-deflate");
    CHECK(std::set<std::string>(got.begin(), got.end()) ==
          std::set<std::string>(k.answer->begin(), k.answer->end()));
    CHECK(got.size() == k.answer->size());
  }
}

// ------------------------------------------------------------------ echo

TEST_CASE("deflate: compressed echo of text and binary, whole, fragmented and split across reads") {
  spry::App app;
  Probe p;
  auto route = [&p](WebSocket ws, spry::Request&) { echoNoting(p, ws); };
  app.ws("/shared", route, withCompression(Compression::kShared));
  app.ws("/dedicated", route, withCompression(Compression::kDedicated));
  TestServer server(app);

  const std::size_t sizes[] = {0,   1,    63,   64,    65,    125,   126,
                               127, 1000, 4096, 65535, 65536, 65537, 300000};
  // How the client sends each message: 0 whole; 1 the compressed payload in 3
  // frames with a ping after the first; 2 in frames of one byte each (up to
  // 300 compressed bytes) or in 7 frames; 3 one frame written a byte at a time
  // (up to 4 KiB compressed) or 997 bytes at a time; 4 whole, compressed with
  // a 9-bit window at level 1.
  constexpr int kWays = 5;
  long expectNotes = 0;
  for (const char* path : {"/shared", "/dedicated"}) {
    INFO(std::string(path));
    const bool dedicated = std::string_view(path) == "/dedicated";
    auto c = connect(server.port(), path, "permessage-deflate; client_max_window_bits");
    ClientInflater inflater;
    for (std::size_t size : sizes) {
      for (std::uint8_t opcode : {ws::kText, ws::kBinary}) {
        for (int way = 0; way < kWays; ++way) {
          CAPTURE(size);
          CAPTURE(static_cast<int>(opcode));
          CAPTURE(way);
          const std::string message = opcode == ws::kText
                                          ? jsonText(size, static_cast<unsigned>(size + way))
                                          : patternBytes(size);
          const std::string z = way == 4 ? compress(message, 9, 1) : compress(message);
          bool sent = false;
          if (way == 0 || way == 4) {
            sent = c->raw().send(framesOf(opcode, z, 1));
          } else if (way == 1) {
            // A ping between the first frame and the rest.
            const auto frames = frameList(opcode, z, 3);
            sent = c->raw().send(frames.front()) && c->sendPing("between");
            for (std::size_t i = 1; i < frames.size(); ++i) sent = sent && c->raw().send(frames[i]);
          } else if (way == 2) {
            sent = c->raw().send(framesOf(opcode, z, z.size() <= 300 ? z.size() : 7));
          } else {
            sent = sendInPieces(*c, framesOf(opcode, z, 1), z.size() <= 4096 ? 1 : 997);
          }
          REQUIRE(sent);
          auto m = readMessage(*c, inflater, /*keepContext=*/dedicated);
          REQUIRE(m);
          CHECK(m->opcode == opcode);
          CHECK_FALSE(m->rsvElsewhere);
          CHECK(m->inflated);
          CHECK(m->payload.size() == message.size());
          CHECK(m->payload == message);
          if (size < 64) CHECK_FALSE(m->compressed);  // below the threshold
          if (size >= 1000) CHECK(m->compressed);
          if (m->compressed) CHECK(m->wire.size() < message.size());
          ++expectNotes;
        }
      }
    }
    REQUIRE(waitUntil([&] { return p.messages.load() >= expectNotes; }));
    c->sendClose(1000);
    CHECK(c->raw().waitClosed());
  }
  auto notes = p.takeNotes();
  CHECK(static_cast<long>(notes.size()) == expectNotes);
  CHECK(std::count(notes.begin(), notes.end(), "c") == expectNotes);
  CHECK(p.waitClosed(2));
  CHECK(p.takeCodes() == std::vector<int>{1000, 1000});
}

TEST_CASE("deflate: uncompressed messages on a compressing connection are delivered") {
  spry::App app;
  Probe p;
  app.ws(
      "/s", [&p](WebSocket ws, spry::Request&) { echoNoting(p, ws); },
      withCompression(Compression::kShared));
  TestServer server(app);
  auto c = connect(server.port(), "/s");
  ClientInflater inflater;
  const std::string big = jsonText(5000, 7);
  // plain whole, compressed whole, plain fragmented, compressed fragmented,
  // plain binary.
  REQUIRE(c->sendText(big));
  REQUIRE(c->raw().send(framesOf(ws::kText, compress(big), 1)));
  REQUIRE(c->raw().send(framesOf(ws::kText, big, 4, /*rsv1=*/false)));
  REQUIRE(c->raw().send(framesOf(ws::kText, compress(big), 4)));
  REQUIRE(c->sendBinary(patternBytes(3000)));
  for (int i = 0; i < 5; ++i) {
    CAPTURE(i);
    auto m = readMessage(*c, inflater);
    REQUIRE(m);
    CHECK(m->inflated);
    CHECK(m->compressed);
    CHECK(m->payload == (i == 4 ? patternBytes(3000) : big));
  }
  REQUIRE(waitUntil([&] { return p.messages.load() == 5; }));
  CHECK(p.takeNotes() == std::vector<std::string>{"p", "c", "p", "c", "p"});
}

// ------------------------------------------------------------------ per message

TEST_CASE("deflate: wasCompressed, {.compress = false}, threshold and incompressible messages") {
  spry::App app;
  Probe p;
  const std::string big = jsonText(4000, 3);
  const std::string random = randomBytes(4096, 11);
  app.ws(
      "/cmd",
      [&](WebSocket ws, spry::Request&) {
        p.watch(ws);
        ws.listen([ws, &big, &random](const Message& m) {
          ws.add(m.wasCompressed() ? "was compressed" : "was plain");
          const std::string_view cmd = m.data();
          if (cmd == "plain-big") ws.add(Message::text(big), {.compress = false});
          if (cmd == "big") ws.add(Message::text(big));
          if (cmd == "big-binary") ws.add(Message::binary(big), {.compress = true});
          if (cmd == "below") ws.add(Message::text(std::string(99, 'a')));
          if (cmd == "at") ws.add(Message::text(std::string(100, 'a')));
          if (cmd == "random") ws.add(Message::binary(random));
        });
      },
      withCompression(Compression::kShared, {.threshold = 100}));
  TestServer server(app);
  auto c = connect(server.port(), "/cmd");
  ClientInflater inflater;

  struct Case {
    const char* cmd;
    bool sendCompressed;
    bool expectCompressed;
    std::string expect;
  };
  const Case cases[] = {
      {"plain-big", true, false, big},
      {"plain-big", false, false, big},
      {"big", false, true, big},
      {"big-binary", true, true, big},
      {"below", true, false, std::string(99, 'a')},
      {"at", false, true, std::string(100, 'a')},
      {"random", true, false, random},
  };
  for (const Case& k : cases) {
    INFO(std::string(k.cmd));
    CAPTURE(k.sendCompressed);
    if (k.sendCompressed) {
      REQUIRE(c->raw().send(framesOf(ws::kText, compress(k.cmd), 1)));
    } else {
      REQUIRE(c->sendText(k.cmd));
    }
    auto flag = readMessage(*c, inflater);
    REQUIRE(flag);
    CHECK_FALSE(flag->compressed);  // below the threshold
    CHECK(flag->payload == (k.sendCompressed ? "was compressed" : "was plain"));
    auto m = readMessage(*c, inflater);
    REQUIRE(m);
    CHECK(m->compressed == k.expectCompressed);
    CHECK(m->inflated);
    CHECK(m->payload == k.expect);
    if (m->compressed) CHECK(m->wire.size() < k.expect.size());
  }
  // Nothing else came.
  CHECK_FALSE(c->readFrame(50ms));
}

// ------------------------------------------------------------------ protocol errors

TEST_CASE("deflate: RSV1 where it may not be is 1002; corrupt deflate and bad UTF-8 are 1007") {
  spry::App app;
  Probe p;
  auto route = [&p](WebSocket ws, spry::Request&) { echoNoting(p, ws); };
  app.ws("/s", route, withCompression(Compression::kShared));
  app.ws("/off", route);
  TestServer server(app);

  const std::string hello = compress("Hello, hello, hello, hello");
  std::string badUtf8 = jsonText(200, 5);
  badUtf8.insert(100, "\xc3\x28");  // an invalid two-byte sequence
  const std::string zBad = compress(badUtf8);
  const std::string corrupt("\xff\xff\xff\xff\xff\xff", 6);  // BTYPE 11: reserved

  struct Case {
    const char* name;
    const char* path;
    const char* offer;
    std::string bytes;
    std::uint16_t code;
  };
  const Case cases[] = {
      {"RSV1 on a continuation after a compressed first frame", "/s", "permessage-deflate",
       WsClient::frame(ws::kText, hello.substr(0, 4), false, true, kRsv1) +
           WsClient::frame(ws::kContinuation, hello.substr(4), true, true, kRsv1),
       1002},
      {"RSV1 on a continuation after a plain first frame", "/s", "permessage-deflate",
       WsClient::frame(ws::kText, "abc", false) +
           WsClient::frame(ws::kContinuation, hello, true, true, kRsv1),
       1002},
      {"RSV1 on a ping", "/s", "permessage-deflate",
       WsClient::frame(ws::kPing, "x", true, true, kRsv1), 1002},
      {"RSV1 on a pong", "/s", "permessage-deflate",
       WsClient::frame(ws::kPong, "x", true, true, kRsv1), 1002},
      {"RSV1 on a ping between compressed fragments", "/s", "permessage-deflate",
       WsClient::frame(ws::kText, hello.substr(0, 4), false, true, kRsv1) +
           WsClient::frame(ws::kPing, "", true, true, kRsv1),
       1002},
      {"RSV1 without an offer", "/s", "", WsClient::frame(ws::kText, hello, true, true, kRsv1),
       1002},
      {"RSV1 on a route without compression", "/off", "permessage-deflate",
       WsClient::frame(ws::kText, hello, true, true, kRsv1), 1002},
      {"RSV2 with deflate negotiated", "/s", "permessage-deflate",
       WsClient::frame(ws::kText, "abc", true, true, 0x2), 1002},
      {"RSV3 with deflate negotiated", "/s", "permessage-deflate",
       WsClient::frame(ws::kText, "abc", true, true, 0x1), 1002},
      {"corrupt deflate, whole", "/s", "permessage-deflate",
       WsClient::frame(ws::kBinary, corrupt, true, true, kRsv1), 1007},
      // The first fragment ends on a block boundary (its sync flush kept), so
      // the next byte starts a block header: BTYPE 11.
      {"corrupt deflate after a valid first fragment", "/s", "permessage-deflate",
       WsClient::frame(ws::kBinary, cat(hello, kTail), false, true, kRsv1) +
           WsClient::frame(ws::kContinuation, corrupt, true),
       1007},
      {"invalid UTF-8 once inflated, whole", "/s", "permessage-deflate",
       WsClient::frame(ws::kText, zBad, true, true, kRsv1), 1007},
      {"invalid UTF-8 once inflated, fragmented", "/s", "permessage-deflate",
       framesOf(ws::kText, zBad, 5), 1007},
  };
  int closes = 0;
  for (const Case& k : cases) {
    INFO(std::string(k.name));
    auto c = connect(server.port(), k.path, k.offer);
    REQUIRE(c->raw().send(k.bytes));
    CHECK(c->readCloseCode() == k.code);
    ++closes;
    REQUIRE(p.waitClosed(closes));
    CHECK(p.lastCode.load() == k.code);
  }
  // The same bytes as binary are fine: UTF-8 is checked on text only.
  auto c = connect(server.port(), "/s");
  ClientInflater inflater;
  REQUIRE(c->raw().send(framesOf(ws::kBinary, zBad, 5)));
  auto m = readMessage(*c, inflater);
  REQUIRE(m);
  CHECK(m->payload == badUtf8);
  CHECK(p.takeNotes().back() == "c");
}

// ------------------------------------------------------------------ inflate bombs

TEST_CASE("deflate: an inflate bomb is 1009 at maxMessageBytes, fast and without memory") {
  spry::App app;
  Probe p;
  auto route = [&p](WebSocket ws, spry::Request&) { echoNoting(p, ws); };
  app.ws("/64k", route, [] {
    auto o = withCompression(Compression::kShared);
    o.maxMessageBytes = 64 * 1024;
    return o;
  }());
  app.ws("/1m", route, withCompression(Compression::kShared));  // maxMessageBytes 1 MiB
  TestServer server(app);

  // 1 MB inflating to 1 GiB (and 64 KB to 64 MiB), under each route's limit
  // of compressed bytes on the wire.
  const std::string bomb1g = zeroBomb(64);
  const std::string bomb64m = zeroBomb(4);
  REQUIRE(bomb1g.size() < spry::detail::maxCompressedBytes(1 << 20));
  REQUIRE(bomb64m.size() < spry::detail::maxCompressedBytes(64 * 1024));
  MESSAGE("bombs: " << bomb1g.size() << " B (1 GiB inflated), " << bomb64m.size()
                    << " B (64 MiB inflated)");

  struct Case {
    const char* name;
    const char* path;
    std::string bytes;
  };
  Case cases[] = {
      {"64 KiB limit, whole frame", "/64k", framesOf(ws::kBinary, bomb64m, 1)},
      {"1 MiB limit, whole frame", "/1m", framesOf(ws::kBinary, bomb1g, 1)},
      {"1 MiB limit, 16 frames", "/1m", framesOf(ws::kText, bomb1g, 16)},
  };
  const bool canResetPeak = resetPeakRss();
  if (!canResetPeak) MESSAGE("no /proc/self/clear_refs: checking RSS after, not the peak");
  int closes = 0;
  for (const Case& k : cases) {
    INFO(std::string(k.name));
    auto c = connect(server.port(), k.path);
    const std::size_t streamsBefore = liveStreams(server);
    resetPeakRss();
    const long before = vmKb(canResetPeak ? "VmHWM:" : "VmRSS:");
    const auto start = std::chrono::steady_clock::now();
    // Sent from a thread while we wait for the Close: the server may fail
    // the connection before it has read all of it.
    std::thread sender([&c, &k] { c->raw().send(k.bytes); });
    const std::uint16_t code = c->readCloseCode(3000ms);
    const auto took = std::chrono::steady_clock::now() - start;
    c->raw().shutdownWrite();  // wakes the sender if it still blocks
    sender.join();
    CHECK(code == 1009);
    ++closes;
    REQUIRE(p.waitClosed(closes));
    CHECK(p.lastCode.load() == 1009);
    const long after = vmKb(canResetPeak ? "VmHWM:" : "VmRSS:");
    MESSAGE(k.name << ": 1009 after "
                   << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                   << " ms, peak RSS +" << (after - before) << " kB");
    CHECK(took < 1500ms);
    CHECK(after - before < 24 * 1024);  // kB: well under the 64 MiB or 1 GiB inflated
    CHECK(liveStreams(server) <= streamsBefore + 1);
  }
  // A message just at the limit still passes (the limit is on inflated bytes).
  auto c = connect(server.port(), "/64k");
  ClientInflater inflater;
  const std::string atLimit(64 * 1024, 'z');
  REQUIRE(c->raw().send(framesOf(ws::kBinary, compress(atLimit), 3)));
  auto m = readMessage(*c, inflater);
  REQUIRE(m);
  CHECK(m->payload == atLimit);
  const std::string over(64 * 1024 + 1, 'z');
  REQUIRE(c->raw().send(framesOf(ws::kBinary, compress(over), 1)));
  CHECK(c->readCloseCode() == 1009);
}

// ------------------------------------------------------------------ zlib memory

TEST_CASE("deflate: idle sockets hold no zlib stream in shared mode") {
  spry::App app;
  Probe p;
  app.ws(
      "/s", [&p](WebSocket ws, spry::Request&) { echoNoting(p, ws); },
      withCompression(Compression::kShared));
  TestServer server(app);
  const std::string text = jsonText(3000, 9);
  const std::string z = compress(text);

  std::vector<std::unique_ptr<WsClient>> clients;
  ClientInflater inflater;
  auto exchange = [&](WsClient& c) {
    // Whole, then fragmented, then split across reads: each echoed compressed.
    REQUIRE(c.raw().send(framesOf(ws::kText, z, 1)));
    REQUIRE(c.raw().send(framesOf(ws::kText, z, 4)));
    REQUIRE(sendInPieces(c, framesOf(ws::kText, z, 1), 100));
    for (int i = 0; i < 3; ++i) {
      auto m = readMessage(c, inflater);
      REQUIRE(m);
      CHECK(m->compressed);
      CHECK(m->payload == text);
    }
  };
  const std::size_t none = liveStreams(server);
  clients.push_back(connect(server.port(), "/s"));
  exchange(*clients.back());
  const std::size_t afterOne = liveStreams(server);
  MESSAGE("zlib streams: " << none << " before, " << afterOne << " after one socket");
  for (int i = 0; i < 20; ++i) {
    clients.push_back(connect(server.port(), "/s"));
    exchange(*clients.back());
  }
  const std::size_t afterMany = liveStreams(server);
  // The loop's streams, not one per socket: 21 idle sockets hold none.
  CHECK(afterMany <= afterOne);
  CHECK(afterOne - none <= 4);
}

TEST_CASE("deflate: dedicated mode keeps its context between messages and gives it back") {
  spry::App app;
  Probe p;
  app.ws(
      "/d", [&p](WebSocket ws, spry::Request&) { echoNoting(p, ws); },
      withCompression(Compression::kDedicated, {.releaseAfter = 200ms}));
  TestServer server(app);

  const std::size_t before = liveStreams(server);
  std::string answer;
  auto c = connect(server.port(), "/d", "permessage-deflate; client_max_window_bits", &answer);
  CHECK(answer.find("server_no_context_takeover") == std::string::npos);
  CHECK(liveStreams(server) == before);  // nothing until the first compressed message
  ClientInflater inflater;               // keeps its context, as the server does
  // Sent uncompressed, so that only the server's deflate context is counted.
  const std::string text = randomLetters(2000, 21);

  auto echo = [&]() -> std::size_t {
    REQUIRE(c->sendText(text));
    auto m = readMessage(*c, inflater, /*keepContext=*/true);
    REQUIRE(m);
    CHECK(m->compressed);
    CHECK(m->inflated);
    CHECK(m->payload == text);
    return m->wire.size();
  };
  const std::size_t first = echo();
  CHECK(liveStreams(server) == before + 1);
  const std::size_t second = echo();
  MESSAGE("dedicated: first " << first << " B, then " << second << " B with the context");
  CHECK(second * 4 < first);  // the second refers back to the first
  // Busy every 50 ms (well under releaseAfter): the context stays.
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(50ms);
    CHECK(echo() * 4 < first);
  }
  // Quiet: given back after releaseAfter, not before.
  const auto quiet = std::chrono::steady_clock::now();
  REQUIRE(waitUntil([&] { return liveStreams(server) == before; }, 3000ms));
  const auto releasedAfter = std::chrono::steady_clock::now() - quiet;
  MESSAGE("context given back after "
          << std::chrono::duration_cast<std::chrono::milliseconds>(releasedAfter).count()
          << " ms of quiet");
  CHECK(releasedAfter >= 150ms);
  // A new, empty context: the same message costs its full size again, and
  // our inflater, which kept its window, still reads it.
  const std::size_t third = echo();
  CHECK(third * 2 > first);
  CHECK(liveStreams(server) == before + 1);
  c->sendClose(1000);
  CHECK(c->raw().waitClosed());
  REQUIRE(p.waitClosed());
  CHECK(waitUntil([&] { return liveStreams(server) == before; }));
}

// ------------------------------------------------------------------ pub/sub

TEST_CASE("deflate: a publish is compressed once for every compressed subscriber") {
  spry::App app;
  Probe p;
  app.ws(
      "/pub",
      [&p](WebSocket ws, spry::Request&) {
        p.watch(ws);
        ws.subscribe("room");
        ws.add("subscribed");
      },
      withCompression(Compression::kShared));
  TestServer server(app);

  auto join = [&](std::string_view offer) {
    auto c = connect(server.port(), "/pub", offer);
    auto f = c->readFrame();
    REQUIRE(f);
    REQUIRE(f->payload == "subscribed");
    return c;
  };
  // What the server's deflate streams did for the last publish (Stats).
  std::uint64_t deflated = 0, deflatedBytes = 0;
  auto publish = [&](const std::string& text) {
    const spry::Stats before = app.stats();
    REQUIRE(server.onLoop([&] { return app.publish("room", Message::text(text)); }));
    const spry::Stats after = app.stats();
    deflated = after.deflateMessages - before.deflateMessages;
    deflatedBytes = after.deflateBytesIn - before.deflateBytesIn;
  };

  SUBCASE("50 compressed subscribers and 10 plain ones") {
    std::vector<std::unique_ptr<WsClient>> compressed, plain;
    for (int i = 0; i < 50; ++i) compressed.push_back(join("permessage-deflate"));
    for (int i = 0; i < 10; ++i) plain.push_back(join(""));
    // A realistic 300-byte chat message.
    const std::string json = jsonText(300, 42);
    publish(json);
    std::optional<std::string> wire;
    ClientInflater inflater;
    int same = 0;
    for (auto& c : compressed) {
      auto m = readMessage(*c, inflater);
      REQUIRE(m);
      CHECK(m->compressed);
      CHECK(m->opcode == ws::kText);
      CHECK(m->payload == json);
      if (!wire) wire = m->wire;
      if (m->wire == *wire) ++same;
    }
    CHECK(same == 50);
    REQUIRE(wire);
    CHECK(wire->size() < json.size());
    for (auto& c : plain) {
      auto m = readMessage(*c, inflater);
      REQUIRE(m);
      CHECK_FALSE(m->compressed);
      CHECK(m->payload == json);
    }
    // Deflate consumed the message once on the loop, not once per subscriber.
    CHECK(deflated == 1);
    CHECK(deflatedBytes == json.size());
  }

  SUBCASE("a subscriber that asked for a 10-bit window gets a frame made with one") {
    auto small = join("permessage-deflate; server_max_window_bits=10");
    auto wide = join("permessage-deflate");
    auto wide2 = join("permessage-deflate; client_max_window_bits");
    auto plain = join("");
    // Repeats 1,500 bytes apart: a 15-bit window refers back past 1 KiB.
    const std::string part = randomLetters(1500, 5);
    const std::string text = part + part;
    publish(text);

    ClientInflater inflater15, inflater10(10);
    auto fromSmall = readMessage(*small, inflater10);
    REQUIRE(fromSmall);
    CHECK(fromSmall->compressed);
    CHECK(fromSmall->inflated);
    CHECK(fromSmall->payload == text);
    auto fromWide = readMessage(*wide, inflater15);
    REQUIRE(fromWide);
    CHECK(fromWide->compressed);
    CHECK(fromWide->payload == text);
    auto fromWide2 = readMessage(*wide2, inflater15);
    REQUIRE(fromWide2);
    CHECK(fromWide2->wire == fromWide->wire);
    // The check can fail: the 15-bit frame does not inflate with a 10-bit window.
    CHECK_FALSE(ClientInflater(10).inflate(fromWide->wire, false).has_value());
    CHECK(fromSmall->wire != fromWide->wire);
    auto fromPlain = readMessage(*plain, inflater15);
    REQUIRE(fromPlain);
    CHECK_FALSE(fromPlain->compressed);
    CHECK(fromPlain->payload == text);
    // Once per window.
    CHECK(deflated == 2);  // once per window: 10 and 15 bits
    CHECK(deflatedBytes == 2 * text.size());
  }
}

// ------------------------------------------------------------------ addStream

TEST_CASE("deflate: addStream with compression keeps its backpressure bound") {
  constexpr int kCount = 1000;  // about 10 MB compressed: more than the kernel buffers
  constexpr std::size_t kSize = 16 * 1024;
  constexpr std::size_t kLimit = 64 * 1024;
  spry::App app;
  Probe p;
  std::atomic<int> done{0};
  std::atomic<std::size_t> maxBuffered{0};
  WebSocket socket;  // loop thread only
  app.ws(
      "/s",
      [&](WebSocket ws, spry::Request&) {
        p.watch(ws);
        socket = ws;
        auto i = std::make_shared<int>(0);
        ws.addStream(
            [ws, i, &maxBuffered]() -> std::optional<Message> {
              maxBuffered = std::max(maxBuffered.load(), ws.bufferedAmount());
              if (*i == kCount) return std::nullopt;
              std::string payload = randomLetters(kSize, static_cast<unsigned>(*i));
              std::string n = std::to_string((*i)++);
              payload.replace(0, n.size(), n);
              return Message::text(std::move(payload));
            },
            [&done] { ++done; });
      },
      [] {
        auto o = withCompression(Compression::kShared);
        o.maxBackpressureBytes = kLimit;
        return o;
      }());
  TestServer server(app);

  auto c = std::make_unique<WsClient>(server.port());
  // A fixed receive buffer (no autotuning), large enough to avoid the
  // silly-window wait of a tiny one.
  c->raw().setReceiveBuffer(256 * 1024);
  REQUIRE(c->open("/s", offerHeader("permessage-deflate")));
  ClientInflater inflater;
  std::size_t peak = 0;
  // Not reading at first: the kernel buffers fill, then spry's must stop growing.
  for (int i = 0; i < 15; ++i) {
    std::this_thread::sleep_for(20ms);
    peak = std::max(peak, server.onLoop([&] { return socket.bufferedAmount(); }));
  }
  std::size_t wire = 0;
  int next = 0;
  bool inOrder = true;
  for (; next < kCount; ++next) {
    if (next % 16 == 0) {
      std::this_thread::sleep_for(2ms);  // a slow reader
      peak = std::max(peak, server.onLoop([&] { return socket.bufferedAmount(); }));
    }
    auto m = readMessage(*c, inflater);
    if (!m) break;
    const std::string n = std::to_string(next);
    if (!m->compressed || !m->inflated || m->payload.size() != kSize ||
        m->payload.compare(0, n.size(), n) != 0) {
      inOrder = false;
      break;
    }
    wire += m->wire.size();
  }
  CHECK(inOrder);
  CHECK(next == kCount);
  CHECK(waitUntil([&] { return done == 1; }));
  MESSAGE("addStream: " << wire / kCount << " B per compressed message, buffered peak " << peak
                        << ", at pull " << maxBuffered.load());
  CHECK(wire < static_cast<std::size_t>(kCount) * kSize);
  // Pulled only below half the limit, and the buffer never ran away.
  CHECK(maxBuffered.load() < kLimit / 2 + kSize + 16);
  CHECK(peak < kLimit + kSize + 16);
}
