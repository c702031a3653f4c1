// uv-raw-echo: the limit a libuv server can reach. A TCP echo with no
// framing and no allocation per read: every read lands in one loop-wide
// buffer and is written straight back with uv_try_write; only what the kernel
// does not take is copied into a uv_write (reading pauses until it is done).
// Same set-up as spry's connections: TCP_NODELAY, backlog 511.
//
//   uv-raw-echo [--host 127.0.0.1] [--port 8080] [--threads 1]
// Prints "listening on http://HOST:PORT/" first; exits 0 on SIGINT/SIGTERM.

#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr int kBacklog = 511;

struct Conn {
  uv_tcp_t tcp;
  bool writing = false;
};

struct WriteReq {
  uv_write_t req;
  Conn* conn;
  std::vector<char> data;
};

std::vector<char> gReadBuffer(256 << 10);
uv_tcp_t gServer;
uv_signal_t gSigint;
uv_signal_t gSigterm;

void onClosed(uv_handle_t* h) {
  delete static_cast<Conn*>(h->data);
}

void closeConn(Conn* c) {
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), onClosed);
  }
}

void onAlloc(uv_handle_t*, std::size_t, uv_buf_t* buf) {
  buf->base = gReadBuffer.data();
  buf->len = gReadBuffer.size();
}

void onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);

void onWrite(uv_write_t* req, int status) {
  std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));
  Conn* c = w->conn;
  c->writing = false;
  if (status < 0) {
    closeConn(c);
    return;
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), onAlloc, onRead);
}

void onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(s->data);
  if (n < 0) {
    closeConn(c);
    return;
  }
  if (n == 0) return;
  uv_buf_t out = uv_buf_init(buf->base, static_cast<unsigned>(n));
  int written = uv_try_write(s, &out, 1);
  if (written == n) return;
  if (written < 0 && written != UV_EAGAIN) {
    closeConn(c);
    return;
  }
  if (written < 0) written = 0;
  // The kernel is full: keep the rest and stop reading until it is written.
  auto* w = new WriteReq;
  w->conn = c;
  w->data.assign(buf->base + written, buf->base + n);
  w->req.data = w;
  out = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  if (uv_write(&w->req, s, &out, 1, onWrite) != 0) {
    delete w;
    closeConn(c);
    return;
  }
  c->writing = true;
  uv_read_stop(s);
}

void onConnection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* c = new Conn;
  c->tcp.data = c;
  uv_tcp_init(server->loop, &c->tcp);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    closeConn(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), onAlloc, onRead);
}

void onSignal(uv_signal_t* sig, int) {
  uv_walk(
      sig->loop,
      [](uv_handle_t* h, void*) {
        if (uv_is_closing(h)) return;
        if (h->type == UV_TCP && h != reinterpret_cast<uv_handle_t*>(&gServer)) {
          uv_close(h, onClosed);
        } else {
          uv_close(h, nullptr);
        }
      },
      nullptr);
}

int usage() {
  std::fprintf(stderr, "usage: uv-raw-echo [--host ADDR] [--port N] [--threads 1]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 8080;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    std::string v = argv[++i];
    if (a == "--host") {
      host = v;
    } else if (a == "--port") {
      port = std::atoi(v.c_str());
      if (port < 0 || port > 65535) return usage();
    } else if (a == "--threads") {
      if (v != "1") {
        std::fprintf(stderr, "uv-raw-echo: one loop only (--threads 1)\n");
        return 2;
      }
    } else {
      return usage();
    }
  }

  uv_loop_t* loop = uv_default_loop();
  sockaddr_storage addr{};
  bool v6 = host.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr))
              : uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) return usage();
  uv_tcp_init(loop, &gServer);
  rc = uv_tcp_bind(&gServer, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&gServer), kBacklog, onConnection);
  if (rc != 0) {
    std::fprintf(stderr, "uv-raw-echo: cannot listen on %s:%d: %s\n", host.c_str(), port,
                 uv_strerror(rc));
    return 1;
  }
  sockaddr_storage bound{};
  int len = sizeof(bound);
  uv_tcp_getsockname(&gServer, reinterpret_cast<sockaddr*>(&bound), &len);
  int realPort = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  std::printf("listening on http://%s%s%s:%d/\n", v6 ? "[" : "", host.c_str(), v6 ? "]" : "",
              realPort);
  std::fflush(stdout);

  uv_signal_init(loop, &gSigint);
  uv_signal_start(&gSigint, onSignal, SIGINT);
  uv_signal_init(loop, &gSigterm);
  uv_signal_start(&gSigterm, onSignal, SIGTERM);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 ? 0 : 1;
}
