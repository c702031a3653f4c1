#!/usr/bin/python3
"""Process-level graceful shutdown of examples/echo (stdlib only).

  1. echo --threads 2 --port 0 with WebSocket clients on /echo and /broadcast:
     SIGTERM makes every client receive Close 1001; once they answer, the
     process exits 0 within the 5 s shutdown deadline.
  2. A shutdown stalled by clients that never answer the Close: a second
     SIGINT ends the process at once (any non-zero status).

  shutdown_test.py --echo-exe build/examples/echo
"""

import argparse
import base64
import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from checks import report, summary  # noqa: E402
from server_process import ServerProcess  # noqa: E402

STEP = 5.0


def start_server(exe, threads):
    """examples/echo on 127.0.0.1, any port; its stderr is kept for the checks."""
    return ServerProcess([exe, "--host", "127.0.0.1", "--port", "0", "--threads", str(threads)],
                         stderr=subprocess.PIPE)


class Client:
    """A blocking WebSocket client: masked frames out, unmasked frames in."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=STEP)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError("handshake refused: %r" % head[:40])

    def _more(self, timeout=STEP):
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _exact(self, n, timeout):
        until = time.monotonic() + timeout
        while len(self.buf) < n:
            self._more(max(until - time.monotonic(), 0.01))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + body)

    def send_text(self, text):
        self.send(0x1, text.encode())

    def send_close(self, code):
        self.send(0x8, struct.pack("!H", code))

    def read_frame(self, timeout=STEP):
        b0, b1 = self._exact(2, timeout)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exact(2, timeout))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8, timeout))[0]
        return b0 & 0x0F, self._exact(n, timeout)

    def read_close(self, timeout=STEP):
        """The code of the next Close (pings answered, data skipped); None on failure."""
        until = time.monotonic() + timeout
        try:
            while True:
                opcode, payload = self.read_frame(max(until - time.monotonic(), 0.01))
                if opcode == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if opcode == 0x9:
                    self.send(0xA, payload)
        except (OSError, EOFError):
            return None

    def wait_eof(self, timeout=STEP):
        until = time.monotonic() + timeout
        try:
            while True:
                self._more(max(until - time.monotonic(), 0.01))
        except EOFError:
            return True
        except OSError:
            return False

    def close(self):
        self.sock.close()


def wait_exit(proc, timeout):
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def graceful_sigterm(exe):
    server = start_server(exe, 2)
    proc, port = server.proc, server.port
    try:
        echo = [Client(port, "/echo") for _ in range(4)]
        broadcast = [Client(port, "/broadcast") for _ in range(4)]
        ok = True
        for i, c in enumerate(echo):
            c.send_text("hi %d" % i)
            opcode, payload = c.read_frame()
            ok = ok and opcode == 0x1 and payload == ("hi %d" % i).encode()
        report(ok, "every /echo client gets its message back")
        broadcast[0].send_text("to all")
        got = [c.read_frame() for c in broadcast[1:]]
        report(all(g == (0x1, b"to all") for g in got), "/broadcast reaches the other clients")

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        clients = echo + broadcast
        codes = [c.read_close() for c in clients]
        report(codes == [1001] * len(clients), "every client receives Close 1001",
               "codes %r" % codes)
        # The listeners close when the stop begins (a loop that has not seen
        # it yet may still accept, hence the retries).
        refused = False
        until = time.monotonic() + 2.0
        while not refused and time.monotonic() < until:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                time.sleep(0.05)
            except OSError:
                refused = True
        report(refused, "new connections are refused during the shutdown")
        for c in clients:
            c.send_close(1001)
        eofs = [c.wait_eof() for c in clients]
        report(all(eofs), "the server closes every connection after the handshake")
        status = wait_exit(proc, max(started + 5.0 - time.monotonic(), 0.01))
        report(status == 0, "the process exits 0 within 5 s of SIGTERM",
               "still running" if status is None else "status %s" % status)
        for c in clients:
            c.close()
    finally:
        server.kill()
        err = proc.stderr.read().decode(errors="replace")
        report("SIGTERM" in err and "ThreadSanitizer" not in err,
               "stderr names the signal and has no sanitizer report", err[-2000:])


def second_signal(exe):
    server = start_server(exe, 2)
    proc, port = server.proc, server.port
    try:
        # Clients that never answer the Close: the shutdown waits for them.
        stalled = [Client(port, "/echo") for _ in range(6)]
        proc.send_signal(signal.SIGINT)
        codes = [c.read_close() for c in stalled]
        report(codes == [1001] * len(stalled), "stalled clients receive Close 1001",
               "codes %r" % codes)
        report(proc.poll() is None, "the shutdown waits for the stalled clients")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        status = wait_exit(proc, 2.0)
        report(status is not None and status != 0, "a second SIGINT ends the process at once",
               "still running after %.1f s" % (time.monotonic() - started) if status is None
               else "status %s" % status)
        for c in stalled:
            c.close()
    finally:
        server.kill()
        err = proc.stderr.read().decode(errors="replace")
        report("ThreadSanitizer" not in err, "no sanitizer report", err[-2000:])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--echo-exe", required=True)
    args = parser.parse_args()
    for test in (graceful_sigterm, second_signal):
        try:
            test(args.echo_exe)
        except Exception as e:  # a step that could not run is a failure
            report(False, test.__name__, repr(e))
    return summary()


if __name__ == "__main__":
    sys.exit(main())
