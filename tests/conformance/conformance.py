#!/usr/bin/python3
"""RFC 6455 conformance suite for a WebSocket echo server.

A raw-socket client (stdlib only) that can send any frame -- any opcode, FIN
and RSV bits, masked or not, non-minimal or 2^63 lengths, invalid UTF-8 --
and split the byte stream anywhere (byte by byte, fixed chops, random chunk
sizes from a fixed seed). Cases follow the Autobahn|Testsuite categories:

  0 opening handshake        5 fragmentation
  1 framing                  6 UTF-8 handling
  2 ping/pong                7 close handling
  3 reserved bits            9 limits and masking
  4 opcodes                 10 server health after the run

With --deflate, permessage-deflate (RFC 7692) on top, for a server that has
it on: a client compressing with Python's zlib (raw deflate, the 00 00 ff
ff tail stripped on send and appended on receive, context takeover when
the server allows it) that inflates the server's messages with exactly
the window the server announced:

 12 Autobahn's compression with different payloads (16 B to 128 KiB,
    fragmented compressed frames)
 13 Autobahn's compression with different offers (every parameter)
 14 negotiation edge cases, the RFC 7692 examples, violations (RSV1
    misuse, corrupt data, invalid UTF-8 after inflating, inflate bombs)

The server under test must serve an echo endpoint: text back as text, binary
back as binary, and the text message "close" makes it start the closing
handshake with 1000 "bye".

Verdicts: PASS, FAIL, or NON-STRICT -- the server did something RFC 6455
allows but does not recommend (dropped TCP without a Close frame, 1002
instead of 1007 for bad UTF-8, did not close TCP first, detected invalid
UTF-8 only at the end of a message, ...). NON-STRICT counts as passed unless
--strict is given.

Usage:
  conformance.py --url ws://127.0.0.1:8080/echo
  conformance.py --deflate --url ws://127.0.0.1:8080/echo
  conformance.py --url wss://127.0.0.1:8443/echo --tls-ca ca.pem
  conformance.py [options] --server-cmd ./echo --host 127.0.0.1 --port 0
      (--server-cmd must come last; the server must print
       "listening on http://HOST:PORT/" as its first stdout line; it is
       stopped with SIGINT at the end)
  conformance.py --tls-make-cert [options] --server-cmd ./echo --port 0 \
      --cert {tls_cert} --key {tls_key}
      (wss: makes a CA and a certificate for 127.0.0.1, ::1 and localhost
       with the openssl command in a temporary directory, puts their paths
       in place of {tls_cert} and {tls_key}, and trusts that CA)

Over wss every case runs unchanged: the TLS client sits between the frames
and the socket (memory BIOs), each write is a TLS record of its own (so the
byte-by-byte chops reach the server's WebSocket parser byte by byte), and a
client half-close is a TCP FIN without close_notify.

Exit status: 0 when every case passed, 1 when any failed, 2 when the server
could not be reached or started, 77 (skip) when the server command exited 77
or --tls-make-cert finds no openssl command.
The last line printed is "N passed, M failed".
"""

import argparse
import base64
import fnmatch
import hashlib
import json
import os
import random
import re
import select
import shlex
import shutil
import socket
import ssl
import struct
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from server_process import ServerProcess  # noqa: E402
from tls_certs import OpenSSLMissing, TestCa  # noqa: E402

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
OPCODE_NAMES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MiB = 1 << 20

# RSV bits as the 3-bit field (RSV1 is the high bit).
RSV1, RSV2, RSV3 = 4, 2, 1


def code_may_be_sent(code):
    """Codes an endpoint may put on the wire (RFC 6455 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class CaseFailed(Exception):
    pass


class HandshakeRefused(CaseFailed):
    """The server answered the opening handshake with a 4xx status."""


def check(cond, msg):
    if not cond:
        raise CaseFailed(msg)


def preview(data, n=40):
    s = bytes(data[:n])
    return repr(s) + ("..." if len(data) > n else "")


def mask_payload(key, data):
    n = len(data)
    if n == 0:
        return b""
    k = (bytes(key) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def frame(opcode, payload=b"", fin=True, rsv=0, masked=True, length=None, form=None,
          key=None):
    """Builds one frame. `length` overrides the length field (a lie about the
    payload); `form` forces the length encoding: 7, 16 or 64 bits."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    if form is None:
        form = 7 if n < 126 else 16 if n < 65536 else 64
    m = 0x80 if masked else 0
    if form == 7:
        head = bytes([b0, m | n])
    elif form == 16:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + mask_payload(key, payload)


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


def split_bytes(data, chop, rng):
    """chop: None (one write), int (fixed size), 'random' or ('random', max),
    or a list of sizes (the rest goes in one last write)."""
    if chop is None or len(data) == 0:
        return [data]
    out = []
    if isinstance(chop, int):
        for i in range(0, len(data), chop):
            out.append(data[i:i + chop])
        return out
    if chop == "random" or (isinstance(chop, tuple) and chop[0] == "random"):
        hi = 4096 if chop == "random" else chop[1]
        i = 0
        while i < len(data):
            n = rng.randint(1, hi)
            out.append(data[i:i + n])
            i += n
        return out
    i = 0
    for n in chop:
        if i >= len(data):
            break
        out.append(data[i:i + n])
        i += n
    if i < len(data):
        out.append(data[i:])
    return out


def utf8_valid(b):
    try:
        bytes(b).decode("utf-8", "strict")
        return True
    except UnicodeDecodeError:
        return False


class Event:
    def __init__(self, kind, data=b"", code=None, reason=b"", reset=False, stalled=False,
                 compressed=False):
        self.kind = kind  # text binary ping pong close eof timeout
        self.stalled = stalled
        self.compressed = compressed  # a message that came with RSV1 (permessage-deflate)
        self.data = data
        self.code = code
        self.reason = reason
        self.reset = reset

    def describe(self):
        if self.kind in ("text", "binary", "ping", "pong"):
            return "%s%s (%d bytes: %s)" % ("compressed " if self.compressed else "", self.kind,
                                           len(self.data), preview(self.data))
        if self.kind == "close":
            if self.code is None:
                return "Close without status code"
            return "Close %d %r" % (self.code, bytes(self.reason))
        if self.kind == "eof":
            return "TCP reset" if self.reset else "TCP closed"
        if self.stalled:
            return "nothing (timed out; the server had also stopped reading our data)"
        return "nothing (timed out)"


class Conn:
    """A raw WebSocket client connection. Every socket operation is bounded by
    a deadline; frames from the server are checked as they are parsed."""

    def __init__(self, ctx, path=None, offers=None):
        """offers: None (no Sec-WebSocket-Extensions header), or a list of
        header values, one Sec-WebSocket-Extensions line each; the
        permessage-deflate response is checked against them and, when the
        server accepted one, `pmd` holds the negotiated state."""
        self.ctx = ctx
        self.timeout = ctx.timeout
        self.offers = offers
        self.pmd = None
        self.frag_compressed = False
        self.rbuf = bytearray()
        self.eof = False
        self.reset = False
        self.send_broken = False
        self.stalled = False
        self.frag_op = None
        self.frag = bytearray()
        self.close_received = None
        try:
            self.sock = ctx.connect()
        except OSError as e:  # ssl.SSLError included: a failed TLS handshake
            raise CaseFailed("cannot connect to %s:%d: %s" % (ctx.host, ctx.port, e))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self._handshake(path or ctx.path)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- opening handshake -------------------------------------------------
    def _handshake(self, path):
        key = base64.b64encode(os.urandom(16))
        host = self.ctx.host if ":" not in self.ctx.host else "[%s]" % self.ctx.host
        ext = "".join("Sec-WebSocket-Extensions: %s\r\n" % v for v in self.offers or ())
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n%s\r\n"
               % (path, host, self.ctx.port, key.decode(), ext))
        self.send(req.encode())
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.rbuf:
            check(len(self.rbuf) < 65536, "handshake: response headers too long")
            check(not self.eof, "handshake: connection closed, got %s" % preview(self.rbuf))
            check(self._read_some(deadline), "handshake: no response within %gs" % self.timeout)
        end = self.rbuf.index(b"\r\n\r\n") + 4
        head = bytes(self.rbuf[:end]).decode("latin-1")
        del self.rbuf[:end]
        lines = head.split("\r\n")
        self.status_line = lines[0]
        if re.match(r"HTTP/1\.[01] 4\d\d\b", lines[0]):
            raise HandshakeRefused("handshake: status line %r" % lines[0])
        check(re.match(r"HTTP/1\.1 101\b", lines[0]), "handshake: status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.setdefault(k.strip().lower(), []).append(v.strip())
        self.headers = headers
        want = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        got = headers.get("sec-websocket-accept", [None])
        check(got == [want], "handshake: Sec-WebSocket-Accept %r, expected %r" % (got, want))
        up = ",".join(headers.get("upgrade", [])).lower()
        check("websocket" in up, "handshake: Upgrade header %r" % up)
        conn = ",".join(headers.get("connection", [])).lower()
        check("upgrade" in conn, "handshake: Connection header %r" % conn)
        if self.offers is None:
            check("sec-websocket-extensions" not in headers,
                  "handshake: server chose an extension the client did not offer")
        else:
            params = check_pmd_response(self.offers, headers.get("sec-websocket-extensions", []))
            if params is not None:
                self.pmd = PmdState(params)
        check("sec-websocket-protocol" not in headers,
              "handshake: server chose a subprotocol the client did not offer")

    # -- raw I/O -----------------------------------------------------------
    def _recv_once(self):
        try:
            data = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            self.eof = True
            self.reset = True
            return
        if not data:
            self.eof = True
        else:
            self.rbuf += data

    def _buffered(self):
        """TLS: input already taken off the socket, which select cannot see."""
        return isinstance(self.sock, TlsSocket) and self.sock.buffered()

    def _read_some(self, deadline):
        """Waits until deadline for input; False on timeout."""
        if self.eof:
            return True
        if self._buffered():
            self._recv_once()
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], remaining)
        if not r:
            return False
        self._recv_once()
        return True

    def _send_all(self, data):
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while len(view):
            if self.send_broken:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # The server stopped reading -- legitimately, if it has failed
                # the connection. Let the expectations judge what it sent.
                self.stalled = True
                self.send_broken = True
                return False
            rl = [] if self.eof else [self.sock]
            r, w, _ = select.select(rl, [self.sock], [], min(remaining, 0.2))
            if not w and self._close_pending():
                # The server has closed and stopped reading; stop sending.
                self.send_broken = True
                return False
            if r or self._buffered():
                self._recv_once()  # keep reading so a writing server never blocks us
            if w:
                try:
                    n = self.sock.send(view[:1 << 20])
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    self.send_broken = True
                    return False
                view = view[n:]
                deadline = time.monotonic() + self.timeout
        return True

    def send(self, data, chop=None, delay=0.0, rng=None):
        """Sends bytes, split into writes as `chop` says. Returns False when
        the server has already closed the connection."""
        if isinstance(data, (list, tuple)):
            data = b"".join(data)
        pieces = split_bytes(data, chop, rng or random.Random(0))
        for i, piece in enumerate(pieces):
            if not self._send_all(piece):
                return False
            if delay and i + 1 < len(pieces):
                time.sleep(delay)
        return True

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _close_pending(self):
        """Whether a complete Close frame already sits in the input buffer."""
        b, pos = self.rbuf, 0
        while len(b) - pos >= 2:
            op, n, hl = b[pos] & 0xF, b[pos + 1] & 0x7F, 2
            if n == 126:
                if len(b) - pos < 4:
                    return False
                n, hl = struct.unpack_from("!H", b, pos + 2)[0], 4
            elif n == 127:
                if len(b) - pos < 10:
                    return False
                n, hl = struct.unpack_from("!Q", b, pos + 2)[0], 10
            if b[pos + 1] & 0x80:
                hl += 4
            if len(b) - pos < hl + n:
                return False
            if op == OP_CLOSE:
                return True
            pos += hl + n
        return False

    # -- frames from the server --------------------------------------------
    def _parse_frame(self):
        b = self.rbuf
        if len(b) < 2:
            return None
        b0, b1 = b[0], b[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack_from("!H", b, 2)[0]
            pos = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack_from("!Q", b, 2)[0]
            pos = 10
            check(n < (1 << 40), "server protocol violation: frame length %d" % n)
        masked = bool(b1 & 0x80)
        key = None
        if masked:
            if len(b) < pos + 4:
                return None
            key = bytes(b[pos:pos + 4])
            pos += 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        del b[:pos + n]
        if masked:
            payload = mask_payload(key, payload)
        return (bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked, payload)

    def next_event(self, deadline):
        """The next message, control frame, EOF or timeout. Reassembles
        fragmented messages and fails the case on server protocol errors."""
        while True:
            f = self._parse_frame()
            if f is None:
                if self.eof:
                    return Event("eof", reset=self.reset)
                if not self._read_some(deadline):
                    return Event("timeout", stalled=self.stalled)
                continue
            fin, rsv, op, masked, payload = f
            v = "server protocol violation: "
            check(not masked, v + "masked frame from a server (RFC 6455 5.1)")
            if self.pmd is None:
                check(rsv == 0, v + "RSV bits %d set with no extension negotiated" % rsv)
            else:
                check(rsv & (RSV2 | RSV3) == 0, v + "RSV bits %d set: permessage-deflate uses "
                      "RSV1 only" % rsv)
            check(op in OPCODE_NAMES, v + "reserved opcode %d" % op)
            if rsv & RSV1:
                check(op in (OP_TEXT, OP_BINARY), v + "RSV1 on a %s frame (RFC 7692 6: only "
                      "on the first frame of a data message)" % OPCODE_NAMES[op])
            if op >= 8:
                check(fin, v + "fragmented control frame")
                check(len(payload) <= 125, v + "control frame of %d bytes" % len(payload))
                if op == OP_CLOSE:
                    check(self.close_received is None, v + "second Close frame")
                    check(len(payload) != 1, v + "Close frame with a 1-byte payload")
                    code = None
                    reason = b""
                    if len(payload) >= 2:
                        code = struct.unpack("!H", payload[:2])[0]
                        reason = payload[2:]
                        check(code_may_be_sent(code), v + "Close code %d may not be sent" % code)
                        check(utf8_valid(reason), v + "Close reason is not UTF-8: %s"
                              % preview(reason))
                    self.close_received = (code, reason)
                    return Event("close", payload, code, reason)
                return Event("ping" if op == OP_PING else "pong", payload)
            check(self.close_received is None,
                  v + "%s frame after its Close frame" % OPCODE_NAMES[op])
            if op == OP_CONT:
                check(self.frag_op is not None, v + "continuation frame without a start")
                self.frag += payload
            else:
                check(self.frag_op is None, v + "new data frame inside a fragmented message")
                self.frag_op = op
                self.frag = bytearray(payload)
                self.frag_compressed = bool(rsv & RSV1)
            if fin:
                op, data = self.frag_op, bytes(self.frag)
                self.frag_op, self.frag = None, bytearray()
                compressed, self.frag_compressed = self.frag_compressed, False
                if compressed:
                    data = self.pmd.inflate(data, self.ctx.limit)
                if op == OP_TEXT:
                    check(utf8_valid(data), v + "text message is not UTF-8: %s" % preview(data))
                return Event("text" if op == OP_TEXT else "binary", data,
                             compressed=compressed)


class TlsSocket:
    """A TLS client connection that Conn and the cases use like the plain
    socket under it. OpenSSL (Python's ssl) runs on memory BIOs; the socket
    stays an ordinary one, so select(), non-blocking I/O, SO_LINGER and a
    TCP half-close work as with ws. Differences: recv() returns all the
    plaintext at hand (possibly more than asked for; callers only append
    it), and input read while flushing output waits in buffered()."""

    def __init__(self, raw, context, hostname, timeout):
        self.raw = raw
        self.timeout = timeout
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.inc, self.out, server_hostname=hostname)
        self.plain = bytearray()  # decrypted, not yet returned by recv()
        self.unsent = bytearray()  # encrypted, not yet taken by the socket
        self.raw_eof = False  # TCP end seen
        self.eof = False  # end of the TLS stream: close_notify or TCP end
        self.error = None  # a fatal TLS error from the server's side
        self.ended = False  # recv() has reported eof or error
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            self._flush(deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([raw], [], [], remaining)[0]:
                raise socket.timeout("TLS handshake: no answer within %gs" % timeout)
            data = raw.recv(1 << 16)
            if not data:
                raise ConnectionAbortedError("TLS handshake: the server closed the connection")
            self.inc.write(data)
        if not self._flush(deadline):
            raise socket.timeout("TLS handshake: could not send within %gs" % timeout)

    # The socket's own methods.
    def fileno(self):
        return self.raw.fileno()

    def setblocking(self, flag):
        self.raw.setblocking(flag)

    def setsockopt(self, *args):
        self.raw.setsockopt(*args)

    def shutdown(self, how):
        # A TCP FIN without close_notify: the same event as a plain half-close
        # for the server (RFC 8446 6.1 lets a server treat it as the end).
        self.raw.shutdown(how)

    def close(self):
        self.raw.close()

    # Data.
    def buffered(self):
        """Whether recv() has something that select() on the socket cannot show."""
        return bool(self.plain) or ((self.eof or self.error is not None) and not self.ended)

    def recv(self, bufsize):
        if not self.plain:
            try:
                self._flush()
            except OSError:
                pass  # the server has gone: what it sent before comes first
        while not self.plain and not self.eof and self.error is None:
            # Raises BlockingIOError, socket.timeout or ConnectionResetError
            # just as the plain socket would.
            self._take(self.raw.recv(1 << 20))
        if self.plain:
            data = bytes(self.plain)
            self.plain.clear()
            return data
        self.ended = True
        if self.error is not None:
            raise ConnectionResetError("TLS error from the server: %s" % self.error)
        return b""

    def send(self, data):
        """One TLS record of up to 16 KiB of `data`; BlockingIOError while the
        socket has not taken the previous one."""
        if not self._flush():
            raise BlockingIOError("TLS: the previous record is still being sent")
        chunk = bytes(data[:16384])
        try:
            self.obj.write(chunk)
        except ssl.SSLError as e:
            raise BrokenPipeError("TLS: cannot send: %s" % e)
        self._flush(time.monotonic() + self.timeout)
        return len(chunk)

    def sendall(self, data):
        try:
            self.obj.write(bytes(data))
        except ssl.SSLError as e:
            raise BrokenPipeError("TLS: cannot send: %s" % e)
        if not self._flush(time.monotonic() + self.timeout):
            raise socket.timeout("TLS: could not send within %gs" % self.timeout)

    def _take(self, data):
        """Feeds bytes from the socket (b"": its end) and decrypts what it can."""
        if data:
            self.inc.write(data)
        else:
            self.raw_eof = True
            self.inc.write_eof()
        while not self.eof and self.error is None:
            try:
                chunk = self.obj.read(1 << 20)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.eof = True
                break
            except ssl.SSLError as e:
                self.error = e
                break
            if not chunk:
                self.eof = True
                break
            self.plain += chunk

    def _flush(self, deadline=None):
        """Sends the pending ciphertext, until `deadline` (None: what the socket
        takes now), reading meanwhile so that a server that is writing to us
        never blocks us both. True when nothing is left."""
        while True:
            if self.out.pending:
                self.unsent += self.out.read()
            if not self.unsent:
                return True
            remaining = 0 if deadline is None else max(deadline - time.monotonic(), 0)
            r, w, _ = select.select([] if self.raw_eof else [self.raw], [self.raw], [],
                                    remaining)
            if r:
                self._take(self.raw.recv(1 << 20))
            if w:
                n = self.raw.send(self.unsent)
                del self.unsent[:n]
            elif not r and (deadline is None or time.monotonic() >= deadline):
                return False


class Ctx:
    def __init__(self, args, host, port, path, tls=None):
        self.host, self.port, self.path = host, port, path
        self.tls = tls  # an ssl.SSLContext for wss, or None
        self.timeout = args.timeout
        self.close_wait = args.close_wait
        self.limit = args.max_message_bytes
        self.strict = args.strict
        self.seed = args.seed
        self.verbose = args.verbose

    def connect(self):
        """A connected socket: plain, or a TlsSocket after its handshake."""
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.tls is None:
            return s
        try:
            return TlsSocket(s, self.tls, self.host, self.timeout)
        except BaseException:
            s.close()
            raise


class T:
    """What a case gets: connections, a seeded RNG, expectations."""

    def __init__(self, ctx, cid):
        self.ctx = ctx
        self.rng = random.Random("%s-%s" % (ctx.seed, cid))
        self.notes = []
        self.conns = []

    def conn(self, path=None, offers=None):
        c = Conn(self.ctx, path, offers)
        self.conns.append(c)
        return c

    def key(self):
        return bytes(self.rng.getrandbits(8) for _ in range(4))

    def f(self, *a, **kw):
        kw.setdefault("key", self.key())
        return frame(*a, **kw)

    def nonstrict(self, msg):
        self.notes.append(msg)

    def deadline(self, t=None):
        return time.monotonic() + (self.ctx.timeout if t is None else t)

    def cleanup(self):
        for c in self.conns:
            c.close()

    # -- expectations ------------------------------------------------------
    def expect_message(self, c, kind, payload, what=""):
        d = self.deadline()
        while True:
            ev = c.next_event(d)
            if ev.kind == "ping":
                c.send(frame(OP_PONG, ev.data))
                continue
            if ev.kind == "pong":
                continue
            if ev.kind == kind and ev.data == payload:
                return ev
            if ev.kind == kind:
                n = min(len(ev.data), len(payload))
                at = next((i for i in range(n) if ev.data[i] != payload[i]), n)
                raise CaseFailed("%s echo differs%s: got %d bytes, sent %d, first difference "
                                 "at byte %d" % (kind, what, len(ev.data), len(payload), at))
            raise CaseFailed("expected the %s echo of %d bytes%s, got %s"
                             % (kind, len(payload), what, ev.describe()))

    def expect_echo_before_close(self, c, kind, payload, why):
        """An echo the server owes for a message that came before a violation
        or a Close in the same write. A server that fails or closes the
        connection before its application has answered is within RFC 6455,
        so a missing echo is NON-STRICT; a wrong one fails."""
        d = self.deadline()
        while True:
            ev = c.next_event(d)
            if ev.kind in ("ping", "pong"):
                if ev.kind == "ping":
                    c.send(frame(OP_PONG, ev.data))
                continue
            break
        if ev.kind in ("close", "eof"):
            self.nonstrict("the %s message before the %s was not echoed: the connection "
                           "was closed first" % (kind, why))
            self._pushback(c, ev)
            return
        self._pushback(c, ev)
        self.expect_message(c, kind, payload)

    def expect_pongs(self, c, payloads, allow_coalesce=False):
        """Pongs for `payloads`, in order. With allow_coalesce the server may
        answer only the latest of several pings sent back to back (RFC 6455
        5.5.3), so any in-order subsequence ending with the last is fine."""
        d = self.deadline()
        i = 0
        got = []
        while i < len(payloads):
            ev = c.next_event(d)
            if ev.kind == "ping":
                c.send(frame(OP_PONG, ev.data))
                continue
            check(ev.kind == "pong", "expected Pong %d of %d, got %s"
                  % (i + 1, len(payloads), ev.describe()))
            got.append(ev.data)
            if allow_coalesce:
                while i < len(payloads) and payloads[i] != ev.data:
                    i += 1
                check(i < len(payloads), "Pong %s answers no outstanding Ping (pongs so far: %r)"
                      % (preview(ev.data), got))
                i += 1
            else:
                check(ev.data == payloads[i], "Pong %d carries %s, expected %s"
                      % (i + 1, preview(ev.data), preview(payloads[i])))
                i += 1
        return got

    def expect_quiet(self, c, t=0.2):
        """Nothing may arrive for a short while (no reply to a Pong, ...)."""
        ev = c.next_event(time.monotonic() + t)
        check(ev.kind == "timeout", "expected no reply, got %s" % ev.describe())

    def expect_tcp_close(self, c):
        """After the closing handshake the server should close TCP first
        (RFC 6455 7.1.1); only frames are forbidden, a late FIN is NON-STRICT."""
        d = time.monotonic() + self.ctx.close_wait
        ev = c.next_event(d)
        if ev.kind == "eof":
            return
        check(ev.kind == "timeout", "server sent %s after the closing handshake"
              % ev.describe())
        self.nonstrict("server did not close TCP within %gs of the closing handshake "
                       "(RFC 6455 7.1.1: the server SHOULD close it first)"
                       % self.ctx.close_wait)

    def close_handshake(self, c, code=1000, reason=b"", chop=None):
        """Client-initiated close: send Close, expect the echo, expect TCP close."""
        ok = c.send(self.f(OP_CLOSE, close_payload(code, reason)), chop=chop, delay=0.001)
        self.expect_close_reply(c, code, sent=ok)

    def expect_close_reply(self, c, code, sent=True):
        d = self.deadline()
        while True:
            ev = c.next_event(d)
            if ev.kind in ("ping", "pong"):
                continue
            break
        if ev.kind != "close":
            raise CaseFailed("expected a Close reply%s, got %s"
                             % ("" if code is None else " to Close %d" % code, ev.describe()))
        if code is None:
            if ev.code not in (None, 1000):
                self.nonstrict("replied to an empty Close with %s" % ev.describe())
        elif ev.code != code:
            check(ev.code is not None, "replied to Close %d with an empty Close" % code)
            self.nonstrict("replied to Close %d with %d (RFC 6455 5.5.1: typically echoes "
                           "the code)" % (code, ev.code))
        self.expect_tcp_close(c)

    def expect_fail(self, c, codes, preferred=None, no_pong=True, t=None, what=""):
        """The server must fail the connection: a Close with one of `codes`
        (the first is the RFC's recommendation unless `preferred` is given),
        answered by us, then TCP closed by the server. Dropping TCP without a
        Close is allowed (SHOULD, RFC 6455 7.1.7) but NON-STRICT. Any echo,
        or a Pong to a Ping sent after the violation, fails the case."""
        if isinstance(codes, int):
            codes = (codes,)
        preferred = codes[0] if preferred is None else preferred
        d = self.deadline(t)
        while True:
            ev = c.next_event(d)
            if ev.kind == "ping":
                c.send(frame(OP_PONG, ev.data))
                continue
            if ev.kind == "pong":
                check(not no_pong, "server answered the Ping sent after the violation%s: it "
                      "did not fail the connection" % what)
                continue
            if ev.kind in ("text", "binary"):
                raise CaseFailed("server delivered %s instead of failing the connection%s"
                                 % (ev.describe(), what))
            if ev.kind == "close":
                if ev.code is None:
                    self.nonstrict("failed with a Close without status code (expected %s)"
                                   % "/".join(map(str, codes)))
                else:
                    check(ev.code in codes, "closed with %s, expected %s%s"
                          % (ev.describe(), " or ".join(map(str, codes)), what))
                    if preferred and ev.code != preferred:
                        self.nonstrict("closed with %d where %d is the better code"
                                       % (ev.code, preferred))
                c.send(frame(OP_CLOSE, close_payload(ev.code)), chop=None)
                self.expect_tcp_close(c)
                return
            if ev.kind == "eof":
                self.nonstrict("dropped TCP without a Close frame (expected Close %s)"
                               % "/".join(map(str, codes)))
                return
            raise CaseFailed("no Close %s within %gs%s" % ("/".join(map(str, codes)),
                             self.ctx.timeout if t is None else t, what))

    def failed_fast(self, c, codes, preferred=None):
        """For fail-fast checks: waits close_wait for the failure. Returns True
        (and finishes the close) if it came, False if the server is still
        waiting -- or answered the probe Ping -- so the caller can send the
        rest and check the server fails late (NON-STRICT)."""
        if isinstance(codes, int):
            codes = (codes,)
        d = time.monotonic() + self.ctx.close_wait
        while True:
            ev = c.next_event(d)
            if ev.kind == "ping":
                c.send(frame(OP_PONG, ev.data))
                continue
            if ev.kind in ("pong", "timeout"):
                return False
            if ev.kind in ("text", "binary"):
                raise CaseFailed("server delivered %s instead of failing the connection"
                                 % ev.describe())
            # close or eof: judge as a normal failure, with the event pushed back
            self._pushback(c, ev)
            self.expect_fail(c, codes, preferred)
            return True

    def _pushback(self, c, ev):
        orig = c.next_event

        def once(deadline):
            c.next_event = orig
            return ev
        c.next_event = once


# -- permessage-deflate (RFC 7692) --------------------------------------------

PMD = "permessage-deflate"
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: stripped on send, appended on receive
TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
WINDOW_BITS_RE = re.compile(r"^(?:8|9|1[0-5])$")  # 8..15, no leading zeroes (RFC 7692 7.1.2)
NO_VALUE_PARAMS = ("server_no_context_takeover", "client_no_context_takeover")


def _split_unquoted(s, sep):
    """Splits `s` at `sep` outside quoted strings; ValueError on an open quote."""
    parts, cur, quoted, escaped = [], [], False, False
    for ch in s:
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == sep:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if quoted:
        raise ValueError("unterminated quoted string")
    parts.append("".join(cur))
    return parts


def parse_extensions(values):
    """Sec-WebSocket-Extensions values (RFC 6455 9.1) -> [(name, [(param,
    value or None)])], quoted values unquoted. ValueError when malformed."""
    out = []
    for value in values:
        for element in _split_unquoted(value, ","):
            if not element.strip():
                continue  # the #rule allows empty list elements
            pieces = _split_unquoted(element, ";")
            name = pieces[0].strip()
            if not TOKEN_RE.match(name):
                raise ValueError("extension name %r" % name)
            params = []
            for piece in pieces[1:]:
                k, eq, val = piece.partition("=")
                k, val = k.strip(), val.strip() if eq else None
                if not TOKEN_RE.match(k):
                    raise ValueError("parameter name %r" % k)
                if val is not None and val.startswith('"'):
                    if len(val) < 2 or not val.endswith('"'):
                        raise ValueError("parameter value %r" % val)
                    val = re.sub(r"\\(.)", r"\1", val[1:-1])
                if val is not None and not TOKEN_RE.match(val):
                    raise ValueError("parameter value %r" % val)
                params.append((k, val))
            out.append((name, params))
    return out


def pmd_params_problem(params, response):
    """Why these permessage-deflate parameters are invalid in an offer (or a
    response), or None (RFC 7692 5, 7.1)."""
    seen = set()
    for k, val in params:
        if k in seen:
            return "duplicate parameter %s" % k
        seen.add(k)
        if k in NO_VALUE_PARAMS:
            if val is not None:
                return "%s=%s (the parameter has no value)" % (k, val)
        elif k in ("server_max_window_bits", "client_max_window_bits"):
            if val is None:
                if k == "server_max_window_bits" or response:
                    return "%s without a value" % k
            elif not WINDOW_BITS_RE.match(val):
                return "%s=%s (8 to 15, no leading zeroes)" % (k, val)
        else:
            return "unknown parameter %s" % k
    return None


def pmd_accepts(offer, resp):
    """Why the response `resp` cannot accept the offer `offer` (parameter
    lists), or None when it can (RFC 7692 7.1.1-7.1.2)."""
    o, r = dict(offer), dict(resp)
    if "server_no_context_takeover" in o and "server_no_context_takeover" not in r:
        return "server_no_context_takeover offered but not in the response (7.1.1.1)"
    if "server_max_window_bits" in o:
        if "server_max_window_bits" not in r:
            return ("server_max_window_bits=%s offered but not in the response (7.1.2.1)"
                    % o["server_max_window_bits"])
        if int(r["server_max_window_bits"]) > int(o["server_max_window_bits"]):
            return ("server_max_window_bits=%s above the offered %s (7.1.2.1)"
                    % (r["server_max_window_bits"], o["server_max_window_bits"]))
    if "client_max_window_bits" in r:
        if "client_max_window_bits" not in o:
            return "client_max_window_bits in the response but not in the offer (7.1.2.2)"
        if o["client_max_window_bits"] is not None and \
                int(r["client_max_window_bits"]) > int(o["client_max_window_bits"]):
            return ("client_max_window_bits=%s above the offered %s (7.1.2.2)"
                    % (r["client_max_window_bits"], o["client_max_window_bits"]))
    return None


def check_pmd_response(offer_values, response_values):
    """Checks the server's Sec-WebSocket-Extensions against our offers: at
    most one element, permessage-deflate, valid parameters that accept one
    of the valid offers. Returns the accepted parameters (a dict) or None
    when the server declined every offer."""
    if not response_values:
        return None
    shown = ", ".join(response_values)
    try:
        resp = parse_extensions(response_values)
    except ValueError as e:
        raise CaseFailed("handshake: malformed Sec-WebSocket-Extensions %r: %s" % (shown, e))
    check(len(resp) == 1, "handshake: Sec-WebSocket-Extensions %r: expected at most one "
          "element, permessage-deflate" % shown)
    name, params = resp[0]
    # Extension names are compared without case (RFC 6455 does not say).
    check(name.lower() == PMD, "handshake: the server accepted extension %r, not "
          "permessage-deflate" % name)
    problem = pmd_params_problem(params, response=True)
    check(problem is None, "handshake: invalid permessage-deflate response %r: %s (RFC 7692 7.1)"
          % (shown, problem))
    reasons = []
    for i, (oname, oparams) in enumerate(parse_extensions(offer_values), 1):
        if oname.lower() != PMD:
            continue
        bad = pmd_params_problem(oparams, response=False)
        if bad is not None:
            reasons.append("offer %d is invalid (%s) and must be declined" % (i, bad))
            continue
        why = pmd_accepts(oparams, params)
        if why is None:
            return dict(params)
        reasons.append("offer %d: %s" % (i, why))
    raise CaseFailed("handshake: the response %r accepts none of the offers %r: %s"
                     % (shown, offer_values, "; ".join(reasons)))


class PmdState:
    """The client's side of a negotiated permessage-deflate: our compressor
    (the client_* parameters) and our inflater of the server's messages (the
    server_* ones, with exactly the window the server announced, so a server
    that reaches further back than it said fails to inflate)."""

    def __init__(self, params, level=6):
        self.params = params
        self.server_nct = "server_no_context_takeover" in params
        self.client_nct = "client_no_context_takeover" in params
        self.server_bits = int(params.get("server_max_window_bits") or 15)
        self.client_bits = int(params.get("client_max_window_bits") or 15)
        self.level = level
        self.comp = None
        self.decomp = None

    def describe(self):
        return "; ".join([PMD] + [k if v is None else "%s=%s" % (k, v)
                                  for k, v in self.params.items()])

    def compress(self, data, final=False):
        """The payload of one compressed message: raw deflate, sync-flushed,
        the 00 00 ff ff tail stripped; with final, the last block has BFINAL
        set instead (RFC 7692 7.2.3.5) and the next message starts afresh.
        Context takeover unless the server said client_no_context_takeover."""
        if self.comp is None or self.client_nct:
            if self.client_bits == 8:
                # zlib cannot deflate with a 256-byte window (it raises 8 to
                # 9): Huffman-only output has no back references at all.
                self.comp = zlib.compressobj(self.level, zlib.DEFLATED, -9, 8,
                                             zlib.Z_HUFFMAN_ONLY)
            else:
                self.comp = zlib.compressobj(self.level, zlib.DEFLATED, -self.client_bits)
        out = self.comp.compress(data)
        if final:
            # + the empty block's header, as in RFC 7692 7.2.3.5
            out += self.comp.flush(zlib.Z_FINISH) + b"\x00"
            self.comp = None
            return out
        out += self.comp.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(DEFLATE_TAIL)
        return out[:-4]

    def inflate(self, data, limit):
        """A compressed message from the server, inflated with its window."""
        d = self.decomp
        if d is None or self.server_nct or d.eof:
            d = self.decomp = zlib.decompressobj(-self.server_bits)
        v = "server protocol violation: "
        try:
            out = d.decompress(data + DEFLATE_TAIL, limit + 1)
        except zlib.error as e:
            raise CaseFailed(v + "a compressed message (%d bytes: %s) does not inflate with "
                             "the %d-bit window the server announced%s: %s"
                             % (len(data), preview(data), self.server_bits,
                                "" if self.server_nct else " and context takeover", e))
        check(len(out) <= limit and not d.unconsumed_tail,
              v + "a compressed message inflates beyond %d bytes" % limit)
        # d.eof: the message ended with BFINAL set (RFC 7692 7.2.3.5); what
        # follows the final block (an empty block, our tail) is ignored.
        return out


# -- the cases ---------------------------------------------------------------

CASES = []


def case(cid, desc, fn, *args, **kw):
    CASES.append((cid, desc, lambda t: fn(t, *args, **kw)))


PROBE = b"probe"


def echo_case(t, op, payload, chop=None, form=None, delay=0.0):
    c = t.conn()
    c.send(t.f(op, payload, form=form), chop=chop, delay=delay, rng=t.rng)
    t.expect_message(c, "text" if op == OP_TEXT else "binary", payload)
    t.close_handshake(c)


def fail_case(t, frames, codes, preferred=None, chop=None, probe=True, delay=0.0,
              before=()):
    """Sends `frames` (+ a probe Ping), expects the echoes `before`, then the
    failure with `codes`."""
    c = t.conn()
    data = b"".join(frames) + (t.f(OP_PING, PROBE) if probe else b"")
    c.send(data, chop=chop, delay=delay, rng=t.rng)
    for kind, payload in before:
        t.expect_echo_before_close(c, kind, payload, "violation")
    t.expect_fail(c, codes, preferred, no_pong=probe)


def either_echo_or_fail(t, frames, kind, payload, codes):
    """Both echoing and failing are RFC-allowed (e.g. non-minimal lengths)."""
    c = t.conn()
    c.send(b"".join(frames))
    d = t.deadline()
    ev = c.next_event(d)
    while ev.kind in ("ping", "pong") and ev.kind != kind:
        ev = c.next_event(d)
    if ev.kind == kind:
        check(ev.data == payload, "echo differs: got %s" % preview(ev.data))
        t.close_handshake(c)
        return
    t._pushback(c, ev)
    t.expect_fail(c, codes, no_pong=False, what=" (neither echoed nor failed)")


def build_cases(limit):
    rng = random.Random(6455)

    def cap(n):
        return min(n, limit)

    # 0 opening handshake
    def handshake(t):
        c = t.conn()
        t.close_handshake(c)
    case("0.1", "opening handshake: 101, correct Sec-WebSocket-Accept, no extension", handshake)

    def bad_upgrade(t, version, with_key, want_version_header):
        """A refused upgrade gets an HTTP 4xx, never 101 (RFC 6455 4.2.1, 4.4)."""
        try:
            s = t.ctx.connect()
        except OSError as e:
            raise CaseFailed("cannot connect: %s" % e)
        try:
            req = "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n" \
                  "Connection: Upgrade\r\n" % (t.ctx.path, t.ctx.host, t.ctx.port)
            if with_key:
                req += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            req += "Sec-WebSocket-Version: %s\r\n\r\n" % version
            s.sendall(req.encode())
            buf = b""
            deadline = time.monotonic() + t.ctx.timeout
            while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    break
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                buf += chunk
        finally:
            s.close()
        check(b"\r\n" in buf, "no HTTP response to a bad upgrade (got %s)" % preview(buf))
        status = buf.split(b"\r\n", 1)[0].decode("latin-1")
        m = re.match(r"HTTP/1\.[01] (\d{3})", status)
        check(m and 400 <= int(m.group(1)) < 500, "expected a 4xx refusal, got %r" % status)
        if want_version_header and b"\r\nsec-websocket-version:" not in buf.lower():
            t.nonstrict("%s without a Sec-WebSocket-Version header (RFC 6455 4.4)" % status)
    case("0.2", "upgrade with Sec-WebSocket-Version: 99 -> 4xx (426), not 101",
         bad_upgrade, "99", True, True)
    case("0.3", "upgrade without Sec-WebSocket-Key -> 4xx, not 101",
         bad_upgrade, "13", False, False)

    # 1 framing
    sizes = [0, 125, 126, 127, 65535, 65536, MiB, 16 * MiB]
    sizes = sorted(set(s for s in sizes if s <= limit) | {limit if limit < 16 * MiB else 0})
    for i, n in enumerate(sizes, 1):
        case("1.1.%d" % i, "text message, %d bytes" % n, echo_case, OP_TEXT, b"*" * n)
    case("1.1.%d" % (len(sizes) + 1), "text message, %d bytes in chops of 997" % cap(65536),
         echo_case, OP_TEXT, b"*" * cap(65536), chop=997)
    blobs = {n: bytes(rng.getrandbits(8) for _ in range(min(n, 4096))) for n in sizes}
    for i, n in enumerate(sizes, 1):
        blob = (blobs[n] * (n // max(len(blobs[n]), 1) + 1))[:n]
        case("1.2.%d" % i, "binary message, %d bytes" % n, echo_case, OP_BINARY, blob)
    case("1.2.%d" % (len(sizes) + 1), "binary message, %d bytes in chops of 997" % cap(65536),
         echo_case, OP_BINARY, os.urandom(cap(65536)), chop=997)

    nm_codes = (1002,)
    case("1.3.1", "text of 5 bytes with a non-minimal 16-bit length: echo or 1002",
         lambda t: either_echo_or_fail(t, [t.f(OP_TEXT, b"Hello", form=16)], "text",
                                       b"Hello", nm_codes))
    case("1.3.2", "text of 5 bytes with a non-minimal 64-bit length: echo or 1002",
         lambda t: either_echo_or_fail(t, [t.f(OP_TEXT, b"Hello", form=64)], "text",
                                       b"Hello", nm_codes))
    case("1.3.3", "binary of 200 bytes with a 64-bit length: echo or 1002",
         lambda t: either_echo_or_fail(t, [t.f(OP_BINARY, b"\x01" * 200, form=64)], "binary",
                                       b"\x01" * 200, nm_codes))

    def msb_length(t):
        c = t.conn()
        c.send(t.f(OP_BINARY, b"", length=(1 << 63) + 5, form=64)[:10])
        t.expect_fail(c, (1002, 1009), preferred=0, no_pong=False,
                      what=" (64-bit length with the most significant bit set)")
    case("1.3.4", "64-bit length with the most significant bit set (2^63+5) -> 1002/1009",
         msb_length)

    def stream_case(t, msgs, chop, delay=0.0):
        c = t.conn()
        c.send(b"".join(t.f(op, p) for op, p in msgs), chop=chop, delay=delay, rng=t.rng)
        for op, p in msgs:
            t.expect_message(c, "text" if op == OP_TEXT else "binary", p)
        t.close_handshake(c)

    def mixed(n, hi, r):
        out = []
        for _ in range(n):
            size = r.choice([0, 1, 125, 126, 127, r.randint(0, hi)])
            if r.random() < 0.5:
                out.append((OP_TEXT, "".join(r.choice("aé€😀") for _ in range(size // 3)).encode()))
            else:
                out.append((OP_BINARY, bytes(r.getrandbits(8) for _ in range(size))))
        return out
    case("1.4.1", "10 mixed messages sent byte by byte", stream_case,
         mixed(10, 200, random.Random(1)), 1, 0.0002)
    case("1.4.2", "40 mixed messages (0..%d bytes) in random chunks of 1..4096 (seeded)"
         % cap(70000), stream_case, mixed(40, cap(70000), random.Random(2)), "random")
    case("1.4.3", "100 small text messages in one write", stream_case,
         [(OP_TEXT, b"message %d" % i) for i in range(100)], None)
    case("1.4.4", "%d-byte text with writes cut inside the length and the mask key"
         % cap(65536), stream_case, [(OP_TEXT, b"x" * cap(65536))], [1, 2, 2, 3, 1])
    case("1.4.5", "%d-byte binary with writes cut inside the length" % cap(70000),
         stream_case, [(OP_BINARY, b"\xfe" * cap(70000))], [1, 1, 3, 4, 2, 3])

    # 2 ping/pong
    def ping_case(t, payload, chop=None):
        c = t.conn()
        c.send(t.f(OP_PING, payload), chop=chop, delay=0.0005)
        t.expect_pongs(c, [payload])
        t.close_handshake(c)
    case("2.1", "ping, empty payload", ping_case, b"")
    case("2.2", "ping, small text payload", ping_case, b"Hello, world!")
    case("2.3", "ping, small binary payload", ping_case, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")
    case("2.4", "ping, 125-byte binary payload", ping_case, bytes(range(125)))
    case("2.5", "ping, 126-byte payload -> 1002", lambda t: fail_case(
        t, [t.f(OP_PING, b"\xfe" * 126)], 1002))
    case("2.6", "ping, 125-byte payload sent byte by byte", ping_case, b"\xfe" * 125, 1)

    def unsolicited_pong(t, payload):
        c = t.conn()
        c.send(t.f(OP_PONG, payload) + t.f(OP_TEXT, b"after pong"))
        t.expect_message(c, "text", b"after pong")
        t.expect_quiet(c)
        t.close_handshake(c)
    case("2.7", "unsolicited pong without payload is ignored", unsolicited_pong, b"")
    case("2.8", "unsolicited pong with payload is ignored", unsolicited_pong, b"unsolicited")

    def pong_then_ping(t):
        c = t.conn()
        c.send(t.f(OP_PONG, b"unsolicited") + t.f(OP_PING, b"solicited"))
        t.expect_pongs(c, [b"solicited"])
        t.expect_quiet(c)
        t.close_handshake(c)
    case("2.9", "unsolicited pong, then ping: only the ping is answered", pong_then_ping)

    def ten_pings(t, chop):
        c = t.conn()
        payloads = [b"ping-%d" % i for i in range(10)]
        c.send(b"".join(t.f(OP_PING, p) for p in payloads), chop=chop)
        got = t.expect_pongs(c, payloads, allow_coalesce=True)
        if len(got) < 10:
            t.nonstrict("answered %d of 10 back-to-back pings (allowed by RFC 6455 5.5.3)"
                        % len(got))
        t.close_handshake(c)
    case("2.10", "10 pings in a row", ten_pings, None)
    case("2.11", "10 pings in a row, sent byte by byte", ten_pings, 1)

    def ping_among_data(t):
        c = t.conn()
        c.send(t.f(OP_TEXT, b"first") + t.f(OP_PING, b"between") + t.f(OP_BINARY, b"\x02"))
        seen = []
        d = t.deadline()
        while len(seen) < 3:
            ev = c.next_event(d)
            check(ev.kind in ("text", "pong", "binary"), "got %s" % ev.describe())
            seen.append((ev.kind, ev.data))
        check(sorted(seen) == sorted([("text", b"first"), ("pong", b"between"),
                                      ("binary", b"\x02")]), "got %r" % seen)
        t.close_handshake(c)
    case("2.12", "text, ping, binary: two echoes and a pong", ping_among_data)
    case("2.13", "ping of 125 bytes in a non-minimal 16-bit length: pong or 1002",
         lambda t: either_echo_or_fail(t, [t.f(OP_PING, b"p" * 125, form=16)], "pong",
                                       b"p" * 125, (1002,)))

    # 3 reserved bits
    rsv_cases = [
        ("RSV1 on a text frame (no extension negotiated)", OP_TEXT, RSV1),
        ("RSV2 on a text frame", OP_TEXT, RSV2),
        ("RSV3 on a text frame", OP_TEXT, RSV3),
        ("RSV1+RSV3 on a binary frame", OP_BINARY, RSV1 | RSV3),
        ("RSV1+RSV2+RSV3 on a ping", OP_PING, 7),
        ("RSV2 on a close frame", OP_CLOSE, RSV2),
        ("RSV1 on a pong", OP_PONG, RSV1),
    ]
    for i, (desc, op, rsv) in enumerate(rsv_cases, 1):
        payload = close_payload(1000) if op == OP_CLOSE else b"Hello"
        case("3.%d" % i, desc + " -> 1002", lambda t, op=op, rsv=rsv, p=payload: fail_case(
            t, [t.f(op, p, rsv=rsv)], 1002))
    n = len(rsv_cases)
    case("3.%d" % (n + 1), "text echoed, then RSV2 text, then ping: echo, 1002, no pong",
         lambda t: fail_case(t, [t.f(OP_TEXT, b"Hello"), t.f(OP_TEXT, b"Hello", rsv=RSV2)],
                             1002, before=[("text", b"Hello")]))
    case("3.%d" % (n + 2), "RSV3 on the continuation of a fragmented text -> 1002",
         lambda t: fail_case(t, [t.f(OP_TEXT, b"frag1", fin=False),
                                 t.f(OP_CONT, b"frag2", rsv=RSV3)], 1002))
    case("3.%d" % (n + 3), "RSV1 on a text frame, sent byte by byte -> 1002",
         lambda t: fail_case(t, [t.f(OP_TEXT, b"Hello", rsv=RSV1)], 1002, chop=1,
                             delay=0.0005))

    # 4 opcodes
    for i, op in enumerate([3, 4, 5, 6, 7], 1):
        case("4.1.%d" % i, "reserved data opcode %d -> 1002" % op,
             lambda t, op=op: fail_case(t, [t.f(op, b"")], 1002))
    case("4.1.6", "reserved data opcode 5 with payload, after an echoed text -> 1002",
         lambda t: fail_case(t, [t.f(OP_TEXT, b"Hello"), t.f(5, b"reserved")], 1002,
                             before=[("text", b"Hello")]))
    case("4.1.7", "reserved opcode 3 inside a fragmented text -> 1002",
         lambda t: fail_case(t, [t.f(OP_TEXT, b"frag", fin=False), t.f(3, b"x")], 1002))
    for i, op in enumerate([11, 12, 13, 14, 15], 1):
        case("4.2.%d" % i, "reserved control opcode %d -> 1002" % op,
             lambda t, op=op: fail_case(t, [t.f(op, b"")], 1002))
    case("4.2.6", "reserved control opcode 11 with payload, after an echoed text -> 1002",
         lambda t: fail_case(t, [t.f(OP_TEXT, b"Hello"), t.f(11, b"reserved")], 1002,
                             before=[("text", b"Hello")]))

    # 5 fragmentation
    case("5.1", "ping in 2 fragments -> 1002", lambda t: fail_case(
        t, [t.f(OP_PING, b"frag1", fin=False), t.f(OP_CONT, b"frag2")], 1002))
    case("5.2", "pong in 2 fragments -> 1002", lambda t: fail_case(
        t, [t.f(OP_PONG, b"frag1", fin=False), t.f(OP_CONT, b"frag2")], 1002))
    case("5.3", "close with FIN clear -> 1002", lambda t: fail_case(
        t, [t.f(OP_CLOSE, close_payload(1000), fin=False)], 1002, probe=False))

    def frag_case(t, op, parts, chop=None, pings=(), delay=0.0):
        """parts: payloads; pings: indexes after which a ping is interleaved."""
        c = t.conn()
        out = []
        for i, p in enumerate(parts):
            out.append(t.f(op if i == 0 else OP_CONT, p, fin=i == len(parts) - 1))
            if i in pings:
                out.append(t.f(OP_PING, b"ping-%d" % i))
        c.send(b"".join(out), chop=chop, delay=delay, rng=t.rng)
        want = b"".join(parts)
        kind = "text" if op == OP_TEXT else "binary"
        expected_pongs = [b"ping-%d" % i for i in sorted(pings) if i < len(parts) - 1]
        d = t.deadline()
        got_msg, pongs = False, []
        while not got_msg or len(pongs) < len(expected_pongs):
            ev = c.next_event(d)
            if ev.kind == "pong":
                pongs.append(ev.data)
                continue
            check(ev.kind == kind and not got_msg,
                  "expected the %s echo and %d pongs, got %s" % (kind, len(expected_pongs),
                                                                ev.describe()))
            check(ev.data == want, "echo differs: %d bytes, sent %d" % (len(ev.data), len(want)))
            got_msg = True
        check(pongs == expected_pongs, "pongs %r, expected %r" % (pongs, expected_pongs))
        t.close_handshake(c)
    case("5.4", "text in 2 fragments", frag_case, OP_TEXT, [b"fragment1", b"fragment2"])
    case("5.5", "text in 2 fragments, sent byte by byte", frag_case, OP_TEXT,
         [b"fragment1", b"fragment2"], 1, (), 0.0005)
    case("5.6", "text in 2 fragments with a ping between", frag_case, OP_TEXT,
         [b"fragment1", b"fragment2"], None, (0,))
    case("5.7", "text in 2 fragments with a ping between, byte by byte", frag_case, OP_TEXT,
         [b"fragment1", b"fragment2"], 1, (0,), 0.0005)
    case("5.8", "binary in 3 fragments, first and last empty", frag_case, OP_BINARY,
         [b"", b"\x00\x01\x02\xff", b""])
    case("5.9", "text of 100 one-byte fragments with 5 pings between", frag_case, OP_TEXT,
         [b"%d" % (i % 10) for i in range(100)], None, (3, 20, 50, 77, 98))
    case("5.10", "binary of %d bytes in 5 fragments, random chunks" % (5 * cap(300 << 10)
                                                                         // 5),
         frag_case, OP_BINARY, [os.urandom(cap(300 << 10) // 5) for _ in range(5)], "random")
    case("5.11", "continuation (FIN) without a start -> 1002", lambda t: fail_case(
        t, [t.f(OP_CONT, b"non-continuation payload")], 1002))
    case("5.12", "continuation (no FIN) without a start -> 1002", lambda t: fail_case(
        t, [t.f(OP_CONT, b"fragment1", fin=False)], 1002))
    case("5.13", "continuation without a start, then a text message -> 1002",
         lambda t: fail_case(t, [t.f(OP_CONT, b"fragment1", fin=False),
                                 t.f(OP_TEXT, b"Hello")], 1002))
    case("5.14", "text echoed, then a stray continuation -> 1002", lambda t: fail_case(
        t, [t.f(OP_TEXT, b"Hello"), t.f(OP_CONT, b"stray")], 1002,
        before=[("text", b"Hello")]))
    case("5.15", "new text frame inside a fragmented text -> 1002", lambda t: fail_case(
        t, [t.f(OP_TEXT, b"fragment1", fin=False), t.f(OP_TEXT, b"fragment2")], 1002))
    case("5.16", "binary frame inside a fragmented text -> 1002", lambda t: fail_case(
        t, [t.f(OP_TEXT, b"fragment1", fin=False), t.f(OP_BINARY, b"\x01", fin=False)], 1002))
    case("5.17", "fragmented ping inside a fragmented text -> 1002", lambda t: fail_case(
        t, [t.f(OP_TEXT, b"fragment1", fin=False), t.f(OP_PING, b"p1", fin=False),
            t.f(OP_CONT, b"p2"), t.f(OP_CONT, b"fragment2")], 1002))

    def two_fragmented(t):
        c = t.conn()
        c.send(t.f(OP_TEXT, b"one-", fin=False) + t.f(OP_CONT, b"two") +
               t.f(OP_BINARY, b"\x01", fin=False) + t.f(OP_CONT, b"", fin=False) +
               t.f(OP_CONT, b"\x02"))
        t.expect_message(c, "text", b"one-two")
        t.expect_message(c, "binary", b"\x01\x02")
        t.close_handshake(c)
    case("5.18", "a fragmented text then a fragmented binary", two_fragmented)

    case("5.19", "text of 10000 one-byte fragments in one write", frag_case, OP_TEXT,
         [b"abcdefghij"[i % 10:i % 10 + 1] for i in range(10000)])

    # 6 UTF-8
    valid = [
        ("Hello-µ@ßöäüàá-UTF-8!!", "Hello-µ@ßöäüàá-UTF-8!!".encode()),
        ("Greek kosme", "κόσμε".encode()),
        ("code point boundaries U+0000 U+007F U+0080 U+07FF U+0800 U+D7FF U+E000 U+FFFD "
         "U+10000 U+10FFFF",
         "\u0000\u007f\u0080\u07ff\u0800\ud7ff\ue000\ufffd\U00010000\U0010ffff".encode()),
        ("noncharacters U+FFFE U+FFFF U+1FFFF U+10FFFE",
         "\ufffe\uffff\U0001ffff\U0010fffe".encode()),
        ("emoji and CJK", "😀🎉 漢字 テスト".encode()),
    ]
    for i, (desc, payload) in enumerate(valid, 1):
        case("6.1.%d" % i, "valid UTF-8: " + desc, echo_case, OP_TEXT, payload)

    def valid_split(t, payload):
        c = t.conn()
        for k in range(len(payload) + 1):
            c.send(t.f(OP_TEXT, payload[:k], fin=False) + t.f(OP_CONT, payload[k:]))
            t.expect_message(c, "text", payload, " (split at byte %d)" % k)
        t.close_handshake(c)
    case("6.2.1", "valid text split into 2 fragments at every byte (inside code points)",
         valid_split, "Hi-😀-κόσμε-€".encode())
    case("6.2.2", "valid text in 1-byte fragments", frag_case, OP_TEXT,
         [bytes([b]) for b in "κόσμε😀".encode()])
    case("6.2.3", "valid text sent byte by byte", echo_case, OP_TEXT,
         "κόσμε-😀-€".encode(), 1, None, 0.0005)

    invalid = [
        ("lone continuation byte 0x80", b"\x80"),
        ("lone continuation byte 0xbf inside text", b"abc\xbfdef"),
        ("overlong 2-byte C0 80", b"\xc0\x80"),
        ("overlong 2-byte C1 BF", b"\xc1\xbf"),
        ("overlong 3-byte E0 80 80", b"\xe0\x80\x80"),
        ("overlong 3-byte E0 9F BF", b"\xe0\x9f\xbf"),
        ("overlong 4-byte F0 8F BF BF", b"\xf0\x8f\xbf\xbf"),
        ("surrogate U+D800 ED A0 80", b"\xed\xa0\x80"),
        ("surrogate U+DFFF ED BF BF", b"\xed\xbf\xbf"),
        ("surrogate pair ED A0 BD ED B8 80", b"\xed\xa0\xbd\xed\xb8\x80"),
        ("above U+10FFFF: F4 90 80 80", b"\xf4\x90\x80\x80"),
        ("invalid lead byte F5", b"\xf5\x80\x80\x80"),
        ("invalid byte FE", b"\xfe"),
        ("invalid byte FF", b"\xff"),
        ("2-byte lead followed by ASCII", b"\xc2A"),
        ("truncated 3-byte sequence at the end", b"abc\xe2\x82"),
        ("truncated 4-byte sequence at the end", "κόσμε".encode() + b"\xf0\x9f\x98"),
        ("kosme with an embedded surrogate", "κόσμε".encode() + b"\xed\xa0\x80edited"),
    ]
    for i, (desc, payload) in enumerate(invalid, 1):
        case("6.3.%d" % i, "invalid UTF-8, %s -> 1007" % desc,
             lambda t, p=payload: fail_case(t, [t.f(OP_TEXT, p)], (1007, 1002)))
    bad = "κόσμε".encode() + b"\xed\xa0\x80edited"
    case("6.4.1", "surrogate split across 2 fragments -> 1007", lambda t: fail_case(
        t, [t.f(OP_TEXT, bad[:11], fin=False), t.f(OP_CONT, bad[11:])], (1007, 1002)))
    case("6.4.2", "fragments valid alone, the last ends inside a code point -> 1007",
         lambda t: fail_case(t, [t.f(OP_TEXT, "κόσμε".encode(), fin=False),
                                 t.f(OP_CONT, b"\xe2\x82")], (1007, 1002)))
    case("6.4.3", "invalid UTF-8 in a message sent byte by byte -> 1007", lambda t: fail_case(
        t, [t.f(OP_TEXT, bad)], (1007, 1002), chop=1, delay=0.0005))
    case("6.4.4", "invalid UTF-8 in the middle of a %d-byte text -> 1007" % cap(70000),
         lambda t: fail_case(t, [t.f(OP_TEXT, b"a" * (cap(70000) // 2) + b"\xff" +
                                     b"b" * (cap(70000) - cap(70000) // 2 - 1))],
                             (1007, 1002)))

    # Fail fast: the server must close before the message is complete.
    def fail_fast(t, first, rest, probe=True):
        c = t.conn()
        c.send(b"".join(first) + (t.f(OP_PING, PROBE) if probe else b""))
        if t.failed_fast(c, (1007, 1002)):
            return
        t.nonstrict("invalid UTF-8 detected only after the message was complete "
                    "(no fail-fast)")
        if not c.send(b"".join(rest)):
            raise CaseFailed("connection dropped while sending the rest")
        t.expect_fail(c, (1007, 1002), no_pong=False)
    case("6.5.1", "fail fast: invalid UTF-8 in the first fragment (no FIN), rest never sent",
         lambda t: fail_fast(t, [t.f(OP_TEXT, b"Hello\xc0\x80abc", fin=False)],
                             [t.f(OP_CONT, b"world")]))
    case("6.5.2", "fail fast: valid first fragment, surrogate in the second (no FIN)",
         lambda t: fail_fast(t, [t.f(OP_TEXT, "κόσμε".encode(), fin=False),
                                 t.f(OP_CONT, b"\xed\xa0\x80", fin=False)],
                             [t.f(OP_CONT, b"end")]))
    case("6.5.3", "fail fast: first fragment ends with F4 90 (already beyond U+10FFFF)",
         lambda t: fail_fast(t, [t.f(OP_TEXT, b"ab\xf4\x90", fin=False)],
                             [t.f(OP_CONT, b"\x80\x80")]))

    def fail_fast_frame(t):
        # One frame whose first 6 payload bytes hold invalid UTF-8; the other
        # 94 are sent only if the server waits for them.
        c = t.conn()
        payload = b"Hello\xff" + b"x" * 94
        full = t.f(OP_TEXT, payload)
        c.send(full[:6 + 6])
        if t.failed_fast(c, (1007, 1002)):
            return
        t.nonstrict("invalid UTF-8 detected only at the end of the frame (no fail-fast)")
        c.send(full[12:])
        t.expect_fail(c, (1007, 1002), no_pong=False)
    case("6.5.4", "fail fast: invalid byte early in a 100-byte frame, rest withheld",
         fail_fast_frame)

    def not_too_fast(t):
        # An incomplete but still valid prefix must not be failed.
        c = t.conn()
        c.send(t.f(OP_TEXT, b"x\xf0\x9f", fin=False) + t.f(OP_PING, b"wait"))
        t.expect_pongs(c, [b"wait"])
        c.send(t.f(OP_CONT, b"\x98\x80"))
        t.expect_message(c, "text", "x😀".encode())
        t.close_handshake(c)
    case("6.5.5", "a fragment ending inside a valid code point is not failed early",
         not_too_fast)

    # 7 close handling
    case("7.1.1", "empty close: closing handshake, TCP closed by the server",
         lambda t: t.close_handshake(t.conn(), None))
    case("7.1.2", "close 1000 without reason", lambda t: t.close_handshake(t.conn(), 1000))
    case("7.1.3", "close 1000 'Goodbye': code echoed",
         lambda t: t.close_handshake(t.conn(), 1000, b"Goodbye"))
    case("7.1.4", "close 1000 with a 123-byte reason (125-byte payload)",
         lambda t: t.close_handshake(t.conn(), 1000, b"r" * 123))
    case("7.1.5", "close 1000 with a UTF-8 reason 'κόσμε'",
         lambda t: t.close_handshake(t.conn(), 1000, "κόσμε".encode()))
    case("7.1.6", "close 1000 sent byte by byte",
         lambda t: t.close_handshake(t.conn(), 1000, b"bytewise", chop=1))
    case("7.2.1", "close with a 1-byte payload -> 1002", lambda t: fail_case(
        t, [t.f(OP_CLOSE, b"\x03")], 1002, probe=False))
    case("7.2.2", "close with a 124-byte reason (126-byte payload) -> 1002", lambda t: fail_case(
        t, [t.f(OP_CLOSE, close_payload(1000, b"r" * 124))], 1002, probe=False))

    def data_after_close(t):
        c = t.conn()
        c.send(t.f(OP_CLOSE, close_payload(1000)) + t.f(OP_TEXT, b"must be ignored") +
               t.f(OP_PING, b"must be ignored"))
        d = t.deadline()
        ev = c.next_event(d)
        check(ev.kind == "close", "expected the Close reply only, got %s" % ev.describe())
        check(ev.code == 1000 or ev.code is None or code_may_be_sent(ev.code),
              "reply %s" % ev.describe())
        if ev.code != 1000:
            t.nonstrict("replied to Close 1000 with %s" % ev.describe())
        t.expect_tcp_close(c)
    case("7.3.1", "close, then text and ping: both ignored, no echo, no pong",
         data_after_close)

    def double_close(t):
        c = t.conn()
        c.send(t.f(OP_CLOSE, close_payload(1000)) + t.f(OP_CLOSE, close_payload(1001)))
        t.expect_close_reply(c, 1000)
    case("7.3.2", "two close frames in a row: one Close reply", double_close)

    def text_then_close(t):
        c = t.conn()
        c.send(t.f(OP_TEXT, b"last words") + t.f(OP_CLOSE, close_payload(1000)))
        t.expect_echo_before_close(c, "text", b"last words", "Close")
        t.expect_close_reply(c, 1000)
    case("7.3.3", "text and close in one write: echo, then the Close reply", text_then_close)

    def server_close(t):
        c = t.conn()
        c.send(t.f(OP_TEXT, b"close"))
        d = t.deadline()
        ev = c.next_event(d)
        check(ev.kind == "close", "expected the server's Close, got %s" % ev.describe())
        check(ev.code == 1000, "server closed with %s, expected 1000" % ev.describe())
        check(ev.reason == b"bye", "server's close reason %r, expected 'bye'" % ev.reason)
        c.send(t.f(OP_CLOSE, close_payload(1000)))
        t.expect_tcp_close(c)
    case("7.3.4", "server-initiated close ('close' command): 1000 'bye', TCP closed",
         server_close)

    def client_half_close(t):
        c = t.conn()
        c.send(t.f(OP_CLOSE, close_payload(1000)))
        c.shutdown_write()
        t.expect_close_reply(c, 1000)
    case("7.3.5", "close then TCP half-close by the client: Close reply, TCP closed",
         client_half_close)

    def fail_without_reply(t):
        # After failing, the server must close TCP itself (RFC 6455 7.1.7:
        # Fail = optional Close frame + Close the WebSocket Connection); it
        # may wait a while for the client's Close, but not forever.
        c = t.conn()
        c.send(t.f(OP_TEXT, b"Hello", rsv=RSV2))
        d = t.deadline()
        ev = c.next_event(d)
        check(ev.kind in ("close", "eof"), "expected Close 1002, got %s" % ev.describe())
        if ev.kind == "close":
            check(ev.code == 1002, "closed with %s, expected 1002" % ev.describe())
            ev = c.next_event(time.monotonic() + t.ctx.close_wait)
        elif ev.kind == "eof":
            t.nonstrict("dropped TCP without a Close frame")
        if ev.kind == "timeout":
            t.nonstrict("TCP still open %gs after failing the connection, waiting for a Close "
                        "reply that never came" % t.ctx.close_wait)
            return
        check(ev.kind == "eof", "got %s after the Close" % ev.describe())
    case("7.7.1", "violation, Close 1002, client never replies: server closes TCP anyway",
         fail_without_reply)

    def late_data_after_server_close(t):
        c = t.conn()
        c.send(t.f(OP_TEXT, b"close"))
        ev = c.next_event(t.deadline())
        check(ev.kind == "close" and ev.code == 1000, "expected Close 1000, got %s"
              % ev.describe())
        # The server has sent its Close: data that crossed it is not answered.
        c.send(t.f(OP_TEXT, b"late") + t.f(OP_PING, b"late") + t.f(OP_CLOSE, close_payload(1000)))
        t.expect_tcp_close(c)
    case("7.7.2", "server-initiated close; late text, ping, then Close: no echo, no pong",
         late_data_after_server_close)

    def big_then_close(t):
        c = t.conn()
        blob = os.urandom(cap(MiB))
        c.send(t.f(OP_BINARY, blob) + t.f(OP_CLOSE, close_payload(1000)))
        t.expect_echo_before_close(c, "binary", blob, "Close")
        t.expect_close_reply(c, 1000)
    case("7.3.6", "%d-byte binary and close in one write: whole echo, then Close" % cap(MiB),
         big_then_close)

    for i, code in enumerate([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                              3000, 3999, 4000, 4999], 1):
        case("7.4.%d" % i, "valid close code %d echoed" % code,
             lambda t, code=code: t.close_handshake(t.conn(), code, b"reason"))
    for i, code in enumerate([0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                              5000, 65535], 1):
        case("7.5.%d" % i, "invalid close code %d -> 1002" % code,
             lambda t, code=code: fail_case(t, [t.f(OP_CLOSE, close_payload(code))], 1002,
                                            probe=False))
    case("7.6.1", "close reason with a surrogate (invalid UTF-8) -> 1007", lambda t: fail_case(
        t, [t.f(OP_CLOSE, close_payload(1000, bad))], (1007, 1002), probe=False))
    case("7.6.2", "close reason ending inside a code point -> 1007", lambda t: fail_case(
        t, [t.f(OP_CLOSE, close_payload(1000, b"bye\xe2\x82"))], (1007, 1002), probe=False))
    case("7.6.3", "close reason with byte FF -> 1007", lambda t: fail_case(
        t, [t.f(OP_CLOSE, close_payload(1000, b"\xff"))], (1007, 1002), probe=False))

    # 9 limits and masking
    def header_only(t, length, codes, fallback_send):
        codes = (codes,) if isinstance(codes, int) else codes
        c = t.conn()
        head = t.f(OP_BINARY, b"", length=length)
        c.send(head)
        if t.failed_fast(c, codes):
            return
        if not fallback_send:
            raise CaseFailed("no Close %s within %gs of a header claiming %d bytes: the "
                             "limit must be enforced from the header"
                             % ("/".join(map(str, codes)), t.ctx.close_wait, length))
        t.nonstrict("the oversized frame was rejected only after its payload arrived")
        c.send(mask_payload(head[-4:], b"\x00" * length))  # may fail: the server closed
        t.expect_fail(c, codes, no_pong=False)
    case("9.1.1", "header of a binary frame of limit+1 bytes -> 1009 before the payload",
         header_only, limit + 1, 1009, True)
    case("9.1.2", "header claiming 1 GiB, no payload -> 1009 from the header",
         header_only, 1 << 30, 1009, False)
    case("9.1.3", "header claiming 2^63-1 bytes -> 1009 from the header",
         header_only, (1 << 63) - 1, 1009, False)

    def oversized_frame(t, op):
        c = t.conn()
        payload = b"a" * (limit + 1)
        c.send(t.f(op, payload))
        t.expect_fail(c, 1009, no_pong=False)
    case("9.1.4", "one text frame of limit+1 bytes sent whole -> 1009", oversized_frame,
         OP_TEXT)

    def oversized_fragments(t, nfrag, header_only_last):
        c = t.conn()
        size = limit // nfrag + 1
        frames = [t.f(OP_BINARY if i == 0 else OP_CONT, b"\x07" * size, fin=False)
                  for i in range(nfrag - 1)]
        last = t.f(OP_CONT, b"\x07" * size)
        c.send(b"".join(frames))
        if header_only_last:
            head_len = len(last) - size
            c.send(last[:head_len])
            if t.failed_fast(c, 1009):
                return
            t.nonstrict("the message over the limit was rejected only after the last "
                        "fragment's payload arrived")
            c.send(last[head_len:])
        else:
            c.send(last)
        t.expect_fail(c, 1009, no_pong=False)
    case("9.1.5", "2 fragments of limit/2+1: 1009 at the second fragment's header",
         oversized_fragments, 2, True)
    case("9.1.6", "16 fragments adding up to limit+16 -> 1009", oversized_fragments, 16, False)

    def exactly_limit(t):
        c = t.conn()
        q = limit // 4
        parts = [b"\x05" * q, b"\x06" * q, b"\x07" * q, b"\x08" * (limit - 3 * q)]
        c.send(b"".join(t.f(OP_BINARY if i == 0 else OP_CONT, p, fin=i == 3)
                        for i, p in enumerate(parts)))
        t.expect_message(c, "binary", b"".join(parts))
        t.close_handshake(c)
    case("9.1.7", "message of exactly the limit in 4 fragments is echoed", exactly_limit)

    case("9.2.1", "unmasked text frame -> 1002", lambda t: fail_case(
        t, [frame(OP_TEXT, b"Hello", masked=False)], 1002))
    case("9.2.2", "unmasked empty binary frame -> 1002", lambda t: fail_case(
        t, [frame(OP_BINARY, b"", masked=False)], 1002))
    case("9.2.3", "unmasked ping -> 1002", lambda t: fail_case(
        t, [frame(OP_PING, b"Hello", masked=False)], 1002))
    case("9.2.4", "unmasked close -> 1002", lambda t: fail_case(
        t, [frame(OP_CLOSE, close_payload(1000), masked=False)], 1002, probe=False))
    case("9.2.5", "unmasked continuation of a masked fragment -> 1002", lambda t: fail_case(
        t, [t.f(OP_TEXT, b"frag1", fin=False), frame(OP_CONT, b"frag2", masked=False)],
        1002))
    case("9.2.6", "unmasked text after an echoed masked one -> 1002", lambda t: fail_case(
        t, [t.f(OP_TEXT, b"Hello"), frame(OP_TEXT, b"Hello", masked=False)], 1002,
        before=[("text", b"Hello")]))

    # 10 health after the run
    def concurrent(t):
        conns = [t.conn() for _ in range(20)]
        for i, c in enumerate(conns):
            c.send(t.f(OP_TEXT, b"conn %d" % i))
        for i, c in enumerate(conns):
            t.expect_message(c, "text", b"conn %d" % i)
        for c in conns:
            t.close_handshake(c)
    case("10.1", "20 concurrent connections each get their own echo", concurrent)

    def abrupt(t):
        # Clients that vanish mid-handshake, mid-header, mid-payload, inside a
        # fragmented message or right after Close, some with a TCP reset.
        cuts = [b"", frame(OP_TEXT, b"x" * 300, key=b"abcd")[:3],
                frame(OP_TEXT, b"x" * 300, key=b"abcd")[:100],
                frame(OP_BINARY, b"y" * 100000, key=b"abcd")[:50000],
                frame(OP_TEXT, b"frag", fin=False, key=b"abcd"),
                frame(OP_CLOSE, close_payload(1000), key=b"abcd")]
        for i, cut in enumerate(cuts * 2):
            c = t.conn()
            c.send(cut)
            if i >= len(cuts):
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        raw = t.ctx.connect()
        raw.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" % t.ctx.path.encode())
        raw.close()
        c = t.conn()
        c.send(t.f(OP_TEXT, b"survived"))
        t.expect_message(c, "text", b"survived")
        t.close_handshake(c)
    case("10.2", "clients vanishing mid-handshake/frame/message (FIN and RST) do no harm",
         abrupt)

    def still_alive(t):
        c = t.conn()
        c.send(t.f(OP_TEXT, b"still alive?"))
        t.expect_message(c, "text", b"still alive?")
        t.close_handshake(c)
    case("10.3", "server still answers after all cases", still_alive)


# -- permessage-deflate cases (--deflate) --------------------------------------
#
# 12: Autobahn's "compression, different payloads": five kinds of payload,
#     16 B to 128 KiB, several messages a case, compressed frames cut into
#     fragments of 256 B to 32 KiB for the large ones.
# 13: Autobahn's "compression, different parameters": offers with each
#     parameter and combination, every size in one connection.
# 14: ours: negotiation edge cases, RFC 7692 examples, violations.

# What browsers offer, and Autobahn's default offer.
DEFAULT_OFFER = "permessage-deflate; client_max_window_bits"

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud "
         "exercitation ullamco laboris nisi aliquip ex ea commodo consequat").split()
NAMES = ["alice", "bob", "zoë", "jürgen", "łukasz", "李雷", "ñandú", "grace", "mallory"]
CORPUS_SIZE = 320 << 10
_CORPUS = {}


def _corpus_json(rng, n):
    # Every fifth record carries one of six 600-character blobs: repeats a
    # few KiB apart, which a server deflating with a larger window than it
    # announced reaches back to (and our inflater then rejects).
    blobs = ["%0600x" % rng.getrandbits(2400) for _ in range(6)]
    out, size, i = ["["], 1, 0
    while size < n:
        rec = {"id": i, "user": rng.choice(NAMES), "room": "room-%d" % rng.randint(1, 20),
               "ts": 1700000000 + 7 * i,
               "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 24)))}
        if i % 5 == 0:
            rec["attachment"] = rng.choice(blobs)
        line = json.dumps(rec, ensure_ascii=False) + ",\n"
        out.append(line)
        size += len(line.encode())
        i += 1
    return "".join(out).encode()


def _corpus_bitmap(rng, n):
    # 8-bit grayscale rows: runs, rows repeated with a few pixels changed.
    width, rows, row = 512, [], bytes(512)
    while len(rows) * width < n:
        if rng.random() < 0.3:
            new = bytearray()
            while len(new) < width:
                new += bytes([rng.choice((0, 0, 255, rng.randint(0, 255)))]) * rng.randint(1, 64)
            row = bytes(new[:width])
        else:
            new = bytearray(row)
            for _ in range(rng.randint(0, 8)):
                new[rng.randrange(width)] = rng.randint(0, 255)
            row = bytes(new)
        rows.append(row)
    return b"".join(rows)[:n]


def _corpus_verse(rng, n):
    words = ("Habe nun ach Philosophie Juristerei und Medizin leider auch Theologie durchaus "
             "studiert mit heißem Bemühn da steh ich armer Tor bin so klug als wie zuvor "
             "heiße Magister Doktor gar zieh schon an die zehen Jahr herauf herab und quer "
             "krumm meine Schüler an der Nase herum Straße Fräulein Größe Übermut").split()
    out, size = [], 0
    while size < n:
        if rng.random() < 0.05:
            line = "\n%s:\n" % rng.choice(["FAUST", "MEPHISTOPHELES", "GRETCHEN", "WAGNER"])
        else:
            line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 9)))
            line = line[0].upper() + line[1:] + rng.choice([",", ".", "!", ";", "", "?"]) + "\n"
        out.append(line)
        size += len(line.encode())
    return "".join(out).encode()


def _corpus_html(rng, n):
    out = ['<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
           '<title>spry</title></head>\n<body>\n']
    size, i = len(out[0]), 0
    while size < n:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30)))
        s = ('<div class="%s" id="n%d">\n  <h3><a href="/articles/%d/%s">%s</a></h3>\n'
             '  <p>%s &mdash; %s</p>\n</div>\n'
             % (rng.choice(["item", "item odd", "note", "card wide", "row"]), i,
                rng.randint(1, 99999), rng.choice(WORDS), rng.choice(WORDS).title(), text,
                rng.choice(NAMES)))
        out.append(s)
        size += len(s.encode())
        i += 1
    return "".join(out).encode()


def _corpus_pdf(rng, n):
    # Text objects between incompressible (already deflated) streams.
    out, obj = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"), 1
    while len(out) < n:
        if rng.random() < 0.4:
            k = rng.randint(200, 3000)
            out += (b"%d 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n" % (obj, k)
                    + rng.getrandbits(8 * k).to_bytes(k, "little") + b"\nendstream\nendobj\n")
        else:
            out += (b"%d 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                    b"/Contents %d 0 R /Resources << /Font << /F1 5 0 R >> >> >>\nendobj\n"
                    % (obj, obj + 1))
        obj += 1
    return bytes(out[:n])


def corpus(kind):
    if kind not in _CORPUS:
        _CORPUS[kind] = globals()["_corpus_" + kind](random.Random("pmd-" + kind), CORPUS_SIZE)
    return _CORPUS[kind]


def corpus_message(kind, text, size, i):
    """Message i of `size` bytes cut from a corpus (text: whole characters,
    padded with spaces to the size)."""
    data = corpus(kind)
    start = (i * 104729 + size * 31) % (len(data) - size)
    if not text:
        return data[start:start + size]
    while data[start] & 0xC0 == 0x80:
        start += 1
    piece = data[start:start + size].decode("utf-8", "ignore").encode()
    return piece + b" " * (size - len(piece))


def window_probe():
    """Text with repeats at distances from 300 B to 30 KB: a server that
    deflates with a larger window than it announced references one of them,
    and our inflater, limited to the announced window, fails."""
    rng = random.Random("pmd-window-probe")
    out = []
    for d in (300, 600, 1200, 2400, 5000, 10000, 20000, 30000):
        r = "%064x" % rng.getrandbits(256)
        filler = " ".join(rng.choice(WORDS) for _ in range(d // 5))[:d - 64]
        out.append(r + filler.ljust(d - 64) + r + "\n")
    return "".join(out).encode()


def pmd_conn(t, offers=(DEFAULT_OFFER,), require=True):
    c = t.conn(offers=list(offers))
    if c.pmd is None and require:
        raise CaseFailed("the server declined the offer %r: --deflate expects an echo server "
                         "with permessage-deflate on" % " / ".join(offers))
    return c


def pmd_frames(t, c, op, payload, frag=0, compressed=None, final=False):
    """One compressed message as frames: RSV1 on the first only, the
    compressed payload cut into frames of `frag` bytes (0: one frame)."""
    data = c.pmd.compress(payload, final) if compressed is None else compressed
    chunks = [data[i:i + frag] for i in range(0, len(data), frag)] if frag and data else [data]
    return b"".join(t.f(op if i == 0 else OP_CONT, ch, fin=i == len(chunks) - 1,
                        rsv=RSV1 if i == 0 else 0) for i, ch in enumerate(chunks))


def compressible(payload, bits):
    z = zlib.compressobj(1, zlib.DEFLATED, -max(bits, 9))
    return len(z.compress(payload) + z.flush()) < 0.9 * len(payload)


def pmd_exchange(t, c, msgs, chop=None):
    """Sends `msgs` -- (opcode, payload, frag, compress) -- in one go and
    expects the echoes in order. A compressible echo of 1 KiB or more that
    comes back uncompressed is NON-STRICT: a server that never compresses
    would otherwise pass every case."""
    out = []
    for op, payload, frag, compress in msgs:
        out.append(pmd_frames(t, c, op, payload, frag) if compress else t.f(op, payload))
    c.send(b"".join(out), chop=chop, rng=t.rng)
    plain = []
    for op, payload, _, _ in msgs:
        ev = t.expect_message(c, "text" if op == OP_TEXT else "binary", payload)
        if not ev.compressed and len(payload) >= 1024 and \
                compressible(payload, c.pmd.server_bits):
            plain.append(len(payload))
    if plain:
        t.nonstrict("%d compressible echo(es) of 1 KiB or more came back uncompressed (%s "
                    "bytes)" % (len(plain), ", ".join(map(str, plain[:4]))))


def pmd_probe_messages():
    return [(OP_TEXT, corpus_message("json", True, 4096, 1), 0, True),
            (OP_BINARY, corpus_message("bitmap", False, 2048, 2), 0, True),
            (OP_TEXT, window_probe(), 1000, True),
            (OP_TEXT, b"small", 0, True)]


def pmd_negotiation(t, offers, want, accepted=None):
    """Offers `offers` (header lines). want: "decline" (every offer is
    invalid: RFC 7692 5 says decline -- a refused handshake is NON-STRICT),
    "accept" (FAIL if declined or refused), "may" (valid, but declining is
    allowed: NON-STRICT), "either" (declining is the better choice: PASS;
    refusing NON-STRICT). `accepted(t, params)` judges an acceptance. Then
    a few messages either way."""
    try:
        c = t.conn(offers=offers)
    except HandshakeRefused as e:
        if want == "accept":
            raise CaseFailed("the server refused the handshake for a valid offer: %s" % e)
        t.nonstrict("the server refused the handshake (%s) instead of declining the offer%s "
                    "(RFC 7692 5: declining means going on without the extension)"
                    % (status_of(e), " (which was valid)" if want == "may" else ""))
        return
    if c.pmd is None:
        check(want != "accept", "the server declined %r" % " / ".join(offers))
        if want == "may":
            t.nonstrict("the server declined %r (valid; RFC 7692 lets a server decline)"
                        % " / ".join(offers))
        c.send(t.f(OP_TEXT, b"no extension") + t.f(OP_BINARY, b"\x00" * 2000))
        t.expect_message(c, "text", b"no extension")
        t.expect_message(c, "binary", b"\x00" * 2000)
    else:
        check(want != "decline", "the server accepted %r: %s" % (offers, c.pmd.describe()))
        if accepted is not None:
            accepted(t, c.pmd.params)
        pmd_exchange(t, c, pmd_probe_messages())
    t.close_handshake(c)


def status_of(e):
    m = re.search(r"'(HTTP/[^']*)'", str(e))
    return m.group(1) if m else str(e)


def pmd_fail(t, build, codes, preferred=None, offers=(DEFAULT_OFFER,), probe=True,
             before=()):
    """On a deflate connection: sends build(c) (+ a probe Ping), expects the
    echoes `before`, then the failure with `codes`."""
    c = pmd_conn(t, offers)
    c.send(build(c) + (t.f(OP_PING, PROBE) if probe else b""))
    for kind, payload in before:
        t.expect_echo_before_close(c, kind, payload, "violation")
    t.expect_fail(c, codes, preferred, no_pong=probe)


def raw_deflate(data, bits=15, level=6, zdict=None):
    """Sync-flushed raw deflate of `data`, tail stripped: a whole message."""
    if zdict is None:
        z = zlib.compressobj(level, zlib.DEFLATED, -bits)
    else:
        z = zlib.compressobj(level, zlib.DEFLATED, -bits, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def build_deflate_cases(limit, idle=0.0):
    sizes = [(16, 0), (64, 0), (256, 0), (1024, 0), (4096, 0), (8192, 0), (16384, 0),
             (32768, 0), (65536, 0), (131072, 0), (8192, 256), (16384, 256), (32768, 256),
             (65536, 256), (131072, 256), (131072, 1024), (131072, 4096), (131072, 32768)]
    sizes = [(n, f) for n, f in sizes if n <= limit]

    # 12 payloads
    families = [("12.1", "json", OP_TEXT, "JSON chat records (text)"),
                ("12.2", "bitmap", OP_BINARY, "grayscale bitmap (binary)"),
                ("12.3", "verse", OP_TEXT, "German verse (UTF-8 text)"),
                ("12.4", "html", OP_TEXT, "HTML (text)"),
                ("12.5", "pdf", OP_BINARY, "PDF-like, incompressible streams (binary)")]

    def family(t, kind, op, size, frag):
        c = pmd_conn(t)
        count = max(2, min(40, CORPUS_SIZE // size))
        pmd_exchange(t, c, [(op, corpus_message(kind, op == OP_TEXT, size, i), frag, True)
                            for i in range(count)])
        t.close_handshake(c)
    for fid, kind, op, what in families:
        for i, (size, frag) in enumerate(sizes, 1):
            count = max(2, min(40, CORPUS_SIZE // size))
            case("%s.%d" % (fid, i), "deflate: %s, %d messages of %d bytes%s"
                 % (what, count, size, " in frames of %d" % frag if frag else ""),
                 family, kind, op, size, frag)

    # 13 parameters
    def with_offer(t, offers, must_accept):
        try:
            c = pmd_conn(t, offers, require=must_accept)
        except HandshakeRefused as e:
            if must_accept:
                raise
            t.nonstrict("the server refused the handshake (%s) for a valid offer" % status_of(e))
            return
        if c.pmd is None:
            t.nonstrict("the server declined %r (valid; RFC 7692 lets a server decline)"
                        % " / ".join(offers))
            t.close_handshake(c)
            return
        msgs = [(OP_TEXT, window_probe(), 0, True)]
        for i, (size, frag) in enumerate(sizes):
            if i % 2:
                msgs.append((OP_BINARY, corpus_message("bitmap", False, size, i), frag, True))
            else:
                msgs.append((OP_TEXT, corpus_message("json", True, size, i), frag, True))
        pmd_exchange(t, c, msgs)
        t.close_handshake(c)
    offers13 = [
        ("13.1", "permessage-deflate", True),
        ("13.2", "permessage-deflate; client_no_context_takeover", False),
        ("13.3", "permessage-deflate; client_max_window_bits=9", False),
        ("13.4", "permessage-deflate; client_max_window_bits=15", False),
        ("13.5", "permessage-deflate; client_no_context_takeover; client_max_window_bits=9",
         False),
        ("13.6", "permessage-deflate; client_max_window_bits", True),
        ("13.7", "permessage-deflate; server_no_context_takeover", False),
        ("13.8", "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         False),
    ]
    offers13 += [("13.9.%d" % (bits - 8), "permessage-deflate; server_max_window_bits=%d" % bits,
                  False) for bits in range(9, 16)]
    offers13 += [("13.10.%d" % i, "permessage-deflate; server_no_context_takeover; "
                  "client_no_context_takeover; server_max_window_bits=%d; "
                  "client_max_window_bits=%d" % (bits, bits), False)
                 for i, bits in enumerate((9, 12, 15), 1)]
    offers13.append(("13.11", "permessage-deflate; server_max_window_bits=10; "
                     "client_max_window_bits=10; client_no_context_takeover, "
                     "permessage-deflate; client_max_window_bits, permessage-deflate", True))
    # 8 bits: our compressor then sends Huffman-only blocks (no back references).
    offers13.append(("13.12", "permessage-deflate; client_max_window_bits=8", False))
    for cid, offer, must in offers13:
        case(cid, "deflate: offer %r, %d sizes and a window probe" % (offer, len(sizes)),
             with_offer, [offer], must)

    # 14.1 negotiation
    def not_eight(t, params):
        if params.get("server_max_window_bits") == "8":
            t.nonstrict("accepted server_max_window_bits=8 (RFC-valid, but zlib cannot deflate "
                        "with a 256-byte window: such a server relies on zlib's 250-byte "
                        "match distance at 9 bits)")
    case("14.1.1", "offer with server_max_window_bits=8 alone: declined (101, no extension)",
         pmd_negotiation, ["permessage-deflate; server_max_window_bits=8"], "either", not_eight)
    case("14.1.2", "offers 'server_max_window_bits=8' then plain: accepted with the second",
         pmd_negotiation, ["permessage-deflate; server_max_window_bits=8, permessage-deflate"],
         "accept", not_eight)
    case("14.1.3", "the same two offers on two header lines: accepted with the second",
         pmd_negotiation, ["permessage-deflate; server_max_window_bits=8",
                           "permessage-deflate; client_max_window_bits"], "accept", not_eight)
    invalid = ["x_unknown", "x_unknown=1", "server_no_context_takeover; server_no_context_takeover",
               "client_max_window_bits=10; client_max_window_bits=11",
               "server_max_window_bits", "server_max_window_bits=7",
               "server_max_window_bits=16", "server_max_window_bits=09",
               "server_max_window_bits=abc", "client_max_window_bits=16",
               "client_max_window_bits=7", "server_no_context_takeover=1",
               "client_no_context_takeover=true"]
    for i, params in enumerate(invalid, 1):
        case("14.1.4.%d" % i, "invalid offer 'permessage-deflate; %s': declined" % params,
             pmd_negotiation, ["permessage-deflate; " + params], "decline")
    case("14.1.5", "an invalid offer, then a valid one: accepted with the second",
         pmd_negotiation, ["permessage-deflate; x_unknown, "
                           "permessage-deflate; client_no_context_takeover"], "may")
    case("14.1.6", "an unknown extension, then permessage-deflate: only the latter accepted",
         pmd_negotiation, ["x-spry-unknown; a=1, permessage-deflate"], "accept")
    case("14.1.7", "offer with spaces around ';' (RFC 6455 9.1 implied *LWS)",
         pmd_negotiation, ["permessage-deflate ; client_no_context_takeover ;"
                           "server_max_window_bits=10"], "may")
    case("14.1.8", "offer with a quoted value server_max_window_bits=\"10\" (RFC 6455 9.1)",
         pmd_negotiation, ['permessage-deflate; server_max_window_bits="10"'], "may")

    # 14.2 messages
    def mixed_plain(t):
        c = pmd_conn(t)
        msgs = []
        for i in range(12):
            kind = ("json", OP_TEXT) if i % 3 else ("bitmap", OP_BINARY)
            msgs.append((kind[1], corpus_message(kind[0], kind[1] == OP_TEXT, 300 + 700 * i, i),
                         0, i % 2 == 0))
        pmd_exchange(t, c, msgs)
        t.close_handshake(c)
    case("14.2.1", "compressed and uncompressed messages alternating are all echoed",
         mixed_plain)

    def rfc_examples(t):
        c = pmd_conn(t)
        # 7.2.3.1 "Hello" compressed; 7.2.3.3 in a stored block; 7.2.3.4
        # in two blocks, the first sync-flushed; 7.2.3.6 an empty message.
        sends = [(bytes.fromhex("f248cdc9c90700"), b"Hello"),
                 (bytes.fromhex("000500faff48656c6c6f00"), b"Hello"),
                 (bytes.fromhex("f24805000000ffffcac9c90700"), b"Hello"),
                 (b"\x00", b"")]
        for payload, want in sends:
            c.pmd.comp = None  # our next message must not refer to these
            c.send(t.f(OP_TEXT, payload, rsv=RSV1))
            t.expect_message(c, "text", want, " (RFC 7692 example %s)" % payload.hex())
        if not c.pmd.client_nct:
            # 7.2.3.2: the second "Hello" refers to the first (context takeover).
            c.send(t.f(OP_TEXT, bytes.fromhex("f248cdc9c90700"), rsv=RSV1) +
                   t.f(OP_TEXT, bytes.fromhex("f200110000"), rsv=RSV1))
            t.expect_message(c, "text", b"Hello", " (first of RFC 7692 7.2.3.2)")
            t.expect_message(c, "text", b"Hello", " (second of RFC 7692 7.2.3.2)")
        c.send(t.f(OP_BINARY, b"\x00", rsv=RSV1))
        t.expect_message(c, "binary", b"", " (empty compressed binary)")
        t.close_handshake(c)
    case("14.2.2", "RFC 7692 7.2.3 examples: compressed, context takeover, stored block, "
         "two blocks, empty", rfc_examples)

    def bfinal(t):
        # A sender may end a message with BFINAL set (7.2.3.5); the receiver
        # must go on inflating the messages after it.
        c = pmd_conn(t)
        c.send(t.f(OP_TEXT, bytes.fromhex("f348cdc9c9070000"), rsv=RSV1))
        t.expect_message(c, "text", b"Hello", " (RFC 7692 7.2.3.5)")
        msgs = [corpus_message("json", True, 5000, i) for i in range(4)]
        c.send(pmd_frames(t, c, OP_TEXT, msgs[0]) +
               pmd_frames(t, c, OP_TEXT, msgs[1], final=True) +
               pmd_frames(t, c, OP_TEXT, msgs[2], 700) +
               pmd_frames(t, c, OP_TEXT, msgs[3], final=True))
        for m in msgs:
            t.expect_message(c, "text", m)
        t.close_handshake(c)
    case("14.2.3", "messages ending with a BFINAL block (RFC 7692 7.2.3.5), then more",
         bfinal)

    def tiny_frames(t):
        c = pmd_conn(t)
        pmd_exchange(t, c, [(OP_TEXT, corpus_message("verse", True, 3000, 0), 1, True),
                            (OP_BINARY, corpus_message("pdf", False, 2000, 0), 3, True)])
        t.close_handshake(c)
    case("14.2.4", "compressed messages in 1- and 3-byte frames", tiny_frames)

    def pings_between(t):
        c = pmd_conn(t)
        payload = corpus_message("json", True, 8000, 3)
        data = c.pmd.compress(payload)
        parts = [data[i:i + 500] for i in range(0, len(data), 500)]
        out = []
        for i, p in enumerate(parts):
            out.append(t.f(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(parts) - 1,
                           rsv=RSV1 if i == 0 else 0))
            if i < len(parts) - 1:
                out.append(t.f(OP_PING, b"p%d" % i))
        c.send(b"".join(out))
        # The pongs and the echo in any order (the pongs in theirs).
        want = [b"p%d" % i for i in range(len(parts) - 1)]
        pongs, echoed, d = [], False, t.deadline()
        while not echoed or len(pongs) < len(want):
            ev = c.next_event(d)
            if ev.kind == "pong":
                pongs.append(ev.data)
                continue
            check(ev.kind == "text" and not echoed, "expected the echo and %d pongs, got %s"
                  % (len(want), ev.describe()))
            check(ev.data == payload, "echo differs: %d bytes, sent %d"
                  % (len(ev.data), len(payload)))
            echoed = True
        check(pongs == want, "pongs %r, expected %r" % (pongs, want))
        t.close_handshake(c)
    case("14.2.5", "pings between the fragments of a compressed message", pings_between)

    def random_chunks(t):
        c = pmd_conn(t)
        r = random.Random(7692)
        msgs = []
        for i in range(30):
            size = r.choice([0, 1, 100, 1000, 5000, 20000])
            kind, op = r.choice([("json", OP_TEXT), ("html", OP_TEXT), ("bitmap", OP_BINARY)])
            msgs.append((op, corpus_message(kind, op == OP_TEXT, size, i) if size else b"",
                         r.choice([0, 0, 100, 1000]), r.random() < 0.7))
        pmd_exchange(t, c, msgs, chop="random")
        t.close_handshake(c)
    case("14.2.6", "30 messages, most compressed, in random write chunks (seeded)",
         random_chunks)

    def at_limit(t):
        c = pmd_conn(t)
        base = corpus("json")
        payload = (base * (limit // len(base) + 1))[:limit]
        payload = payload.decode("utf-8", "ignore").encode()
        payload += b" " * (limit - len(payload))
        pmd_exchange(t, c, [(OP_TEXT, payload, 65536, True)])
        t.close_handshake(c)
    case("14.2.7", "a compressed message inflating to exactly the limit (%d) is echoed" % limit,
         at_limit)

    if idle > 0:
        def after_idle(t):
            # A server that frees an idle connection's compression context
            # (spry's dedicated mode) must go on correctly: a fresh deflater
            # that refers to nothing before, never a half-restored window.
            c = pmd_conn(t)
            msgs = [(OP_TEXT, corpus_message("json", True, 3000, i), 0, True) for i in range(4)]
            pmd_exchange(t, c, msgs)
            time.sleep(idle)
            pmd_exchange(t, c, msgs + [(OP_TEXT, window_probe(), 0, True),
                                       (OP_BINARY, corpus_message("bitmap", False, 50000, 1),
                                        999, True)])
            t.close_handshake(c)
        case("14.2.8", "compressed messages, %gs idle, then more" % idle, after_idle)

    # 14.3 violations
    hello = raw_deflate(b"Hello")

    def rsv1_cont(t, first_rsv):
        def build(c):
            data = c.pmd.compress(b"Hello, compressed world! " * 10) if first_rsv else \
                b"uncompressed first fragment"
            return (t.f(OP_TEXT, data[:10], fin=False, rsv=first_rsv) +
                    t.f(OP_CONT, data[10:], rsv=RSV1))
        return build
    case("14.3.1", "RSV1 on the continuation of a compressed message -> 1002",
         lambda t: pmd_fail(t, rsv1_cont(t, RSV1), 1002))
    case("14.3.2", "RSV1 on the continuation of an uncompressed message -> 1002",
         lambda t: pmd_fail(t, rsv1_cont(t, 0), 1002))
    for i, (name, op, payload) in enumerate([("ping", OP_PING, hello),
                                             ("pong", OP_PONG, hello),
                                             ("close", OP_CLOSE, close_payload(1000))], 3):
        case("14.3.%d" % i, "RSV1 on a %s -> 1002" % name,
             lambda t, op=op, payload=payload: pmd_fail(
                 t, lambda c: t.f(op, payload, rsv=RSV1), 1002, probe=op != OP_CLOSE))
    case("14.3.6", "RSV2 on a compressed text -> 1002", lambda t: pmd_fail(
        t, lambda c: t.f(OP_TEXT, c.pmd.compress(b"Hello"), rsv=RSV1 | RSV2), 1002))
    case("14.3.7", "RSV3 on a compressed binary -> 1002", lambda t: pmd_fail(
        t, lambda c: t.f(OP_BINARY, c.pmd.compress(b"Hello"), rsv=RSV1 | RSV3), 1002))
    case("14.3.8", "RSV1 on a connection that offered no extension -> 1002",
         lambda t: fail_case(t, [t.f(OP_TEXT, hello, rsv=RSV1)], 1002))

    def rsv1_declined(t):
        try:
            c = t.conn(offers=["permessage-deflate; x_unknown"])
        except HandshakeRefused:
            c = t.conn()
        check(c.pmd is None, "the server accepted an invalid offer")
        c.send(t.f(OP_TEXT, hello, rsv=RSV1) + t.f(OP_PING, PROBE))
        t.expect_fail(c, 1002)
    case("14.3.9", "RSV1 after the server declined the offer -> 1002", rsv1_declined)
    case("14.3.10", "corrupt deflate data (reserved block type 11) -> 1007", lambda t: pmd_fail(
        t, lambda c: t.f(OP_TEXT, b"\xff\xff\xff\xff", rsv=RSV1), (1007, 1002)))
    case("14.3.11", "corrupt deflate data (reference before the start of the data) -> 1007",
         lambda t: pmd_fail(t, lambda c: t.f(OP_BINARY, raw_deflate(
             b"reference, reference", zdict=b"reference, reference"), rsv=RSV1),
             (1007, 1002)))

    def corrupt_second(t):
        def build(c):
            z = zlib.compressobj(6, zlib.DEFLATED, -15)
            first = z.compress(b"a valid start " * 20) + z.flush(zlib.Z_SYNC_FLUSH)
            return (t.f(OP_TEXT, first, fin=False, rsv=RSV1) +
                    t.f(OP_CONT, b"\xff\xff\xff", fin=False) + t.f(OP_CONT, b"end"))
        pmd_fail(t, build, (1007, 1002))
    case("14.3.12", "corrupt deflate data in the second fragment -> 1007", corrupt_second)
    bad = "κόσμε".encode() + b"\xed\xa0\x80edited"
    case("14.3.13", "compressed text inflating to invalid UTF-8 -> 1007", lambda t: pmd_fail(
        t, lambda c: t.f(OP_TEXT, c.pmd.compress(bad * 20), rsv=RSV1), (1007, 1002)))
    case("14.3.14", "compressed text, invalid UTF-8, in 3-byte frames -> 1007",
         lambda t: pmd_fail(t, lambda c: pmd_frames(t, c, OP_TEXT, b"valid " * 50 + bad, 3),
                            (1007, 1002)))
    case("14.3.15", "compressed text inflating to a truncated code point -> 1007",
         lambda t: pmd_fail(t, lambda c: t.f(OP_TEXT, c.pmd.compress(
             "κόσμε ".encode() * 30 + b"\xe2\x82"), rsv=RSV1), (1007, 1002)))

    def bomb_case(t, inflated, frag):
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = bytearray()
        chunk = b"\x00" * (1 << 20)
        left = inflated
        while left:
            n = min(left, len(chunk))
            data += z.compress(chunk[:n])
            left -= n
        data += z.flush(zlib.Z_SYNC_FLUSH)
        pmd_fail(t, lambda c: pmd_frames(t, c, OP_BINARY, b"", frag, compressed=bytes(data[:-4])),
                 1009)
    big = min(8 * limit, 256 * MiB)
    case("14.3.16", "compressed message inflating to limit+1 bytes -> 1009", bomb_case,
         limit + 1, 0)
    case("14.3.17", "inflate bomb: %d KiB inflating to %d MiB -> 1009"
         % (max(big // 1030 >> 10, 1), big >> 20), bomb_case, big, 0)
    case("14.3.18", "inflate bomb of limit+1 bytes in 64 fragments -> 1009", bomb_case,
         limit + 1, max(((limit + 1) // 1030) // 64, 1))


# -- running -----------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(
        description="RFC 6455 conformance suite for WebSocket echo servers",
        epilog="--server-cmd must be the last option; everything after it is the command.")
    ap.add_argument("--url", help="ws:// or wss://host:port/path of a running echo endpoint")
    ap.add_argument("--tls-ca", metavar="FILE",
                    help="wss: verify the server against this CA (PEM); with --server-cmd, "
                    "connect over TLS")
    ap.add_argument("--tls-make-cert", action="store_true",
                    help="wss with --server-cmd: make a CA and a server certificate with the "
                    "openssl command; {tls_cert} and {tls_key} in the command become their paths")
    ap.add_argument("--path", default="/echo", help="path with --server-cmd (default /echo)")
    ap.add_argument("--max-message-bytes", type=int, default=16 * MiB,
                    help="the server's message size limit (default 16 MiB)")
    ap.add_argument("--deflate", action="store_true",
                    help="add the permessage-deflate cases (12.x, 13.x, 14.x); the server "
                    "must have permessage-deflate on")
    ap.add_argument("--deflate-idle", type=float, default=0.0, metavar="S",
                    help="with --deflate: add case 14.2.8, compressed messages before and "
                    "after an S-second pause (past the server's idle release of compression "
                    "state)")
    ap.add_argument("--strict", action="store_true",
                    help="count NON-STRICT verdicts as failures")
    ap.add_argument("--cases", default="*",
                    help="comma-separated glob patterns of case ids (e.g. '6.*,7.1.1')")
    ap.add_argument("--exclude", default="", help="comma-separated glob patterns to skip")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="seconds any single expectation may wait (default 5)")
    ap.add_argument("--close-wait", type=float, default=2.0,
                    help="seconds to wait for fail-fast closes and TCP close (default 2)")
    ap.add_argument("--seed", default="6455", help="seed for chunking and masking keys")
    ap.add_argument("--check-exit", action="store_true",
                    help="with --server-cmd: stop it with SIGINT and require exit status 0")
    ap.add_argument("--startup-timeout", type=float, default=15.0)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--server-cmd", nargs=argparse.REMAINDER,
                    help="server command and its arguments (last option)")
    args = ap.parse_args()

    build_cases(args.max_message_bytes)
    if args.deflate:
        build_deflate_cases(args.max_message_bytes, args.deflate_idle)
    pats = [p for p in args.cases.split(",") if p]
    excl = [p for p in args.exclude.split(",") if p]
    selected = [c for c in CASES
                if any(fnmatch.fnmatchcase(c[0], p) for p in pats)
                and not any(fnmatch.fnmatchcase(c[0], p) for p in excl)]
    if args.list:
        for cid, desc, _ in selected:
            print("%-8s %s" % (cid, desc))
        print("%d cases" % len(selected))
        return 0

    tmp = None
    try:
        if args.tls_make_cert:
            if not args.server_cmd:
                ap.error("--tls-make-cert needs --server-cmd")
            tmp = tempfile.mkdtemp(prefix="spry-conformance-")
            try:
                ca = TestCa(tmp)
                leaf = ca.issue("server")
            except OpenSSLMissing as e:
                print("SKIP: %s" % e)
                return 77
            args.server_cmd = [a.replace("{tls_cert}", leaf.cert).replace("{tls_key}", leaf.key)
                               for a in args.server_cmd]
            args.tls_ca = ca.cert
        return run(args, ap, selected)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, ap, selected):
    tls = None
    if args.tls_ca or (args.url or "").startswith("wss://"):
        if args.url and not args.url.startswith("wss://"):
            ap.error("--tls-ca goes with a wss:// --url")
        tls = ssl.create_default_context(cafile=args.tls_ca)
    scheme = "ws" if tls is None else "wss"
    server = None
    if args.server_cmd:
        argv = args.server_cmd
        if len(argv) == 1 and " " in argv[0]:
            argv = shlex.split(argv[0])
        try:
            server = ServerProcess(argv, args.startup_timeout)
        except RuntimeError as e:
            print("conformance: %s" % e, file=sys.stderr)
            status = 2
            if "exited with status 77" in str(e):
                status = 77
                print("SKIP: the server command asked to skip (exit 77)")
            return status
        except OSError as e:
            print("conformance: cannot start %r: %s" % (argv, e), file=sys.stderr)
            return 2
        host, port, path = server.host, server.port, args.path
        print("server: %s (pid %d) on %s:%d" % (" ".join(argv), server.proc.pid, host, port))
    elif args.url:
        m = re.match(r"wss?://(\[[^\]]+\]|[^:/]+)(?::(\d+))?(/.*)?$", args.url)
        if not m:
            ap.error("--url must look like ws://host:port/path or wss://host:port/path")
        host, path = m.group(1).strip("[]"), m.group(3) or "/"
        port = int(m.group(2) or (80 if tls is None else 443))
    else:
        ap.error("give --url or --server-cmd")

    ctx = Ctx(args, host, port, path, tls)
    print("target: %s://%s:%d%s  limit %d bytes  %s mode"
          % (scheme, host, port, path, args.max_message_bytes,
             "strict" if args.strict else "lenient"))
    passed = failed = nonstrict = 0
    started = time.monotonic()
    try:
        for cid, desc, fn in selected:
            t = T(ctx, cid)
            t0 = time.monotonic()
            err = None
            try:
                fn(t)
            except CaseFailed as e:
                err = str(e)
            except Exception as e:  # a bug in a case is a failure, not a crash
                err = "internal error: %s: %s" % (type(e).__name__, e)
            finally:
                t.cleanup()
            dt = time.monotonic() - t0
            if err is None and server is not None and server.proc.poll() is not None:
                err = "server exited with status %s" % server.proc.returncode
            if err is not None:
                verdict = "FAIL"
                detail = err
            elif t.notes:
                nonstrict += 1
                verdict = "FAIL" if args.strict else "NON-STRICT"
                detail = "; ".join(t.notes)
            else:
                verdict = "PASS"
                detail = ""
            if verdict == "FAIL":
                failed += 1
            else:
                passed += 1
            line = "%-10s %-7s %s" % (verdict, cid, desc)
            if detail:
                line += "\n           -> " + detail
            if args.verbose:
                line += "  (%.2fs)" % dt
            print(line, flush=True)
            if server is not None and server.proc.poll() is not None:
                # everything after a crash would fail the same way
                print("server died (status %s); stopping" % server.proc.returncode)
                failed += len(selected) - passed - failed
                break
    finally:
        if server is not None:
            status = server.stop()
            if args.check_exit:
                if status == 0:
                    passed += 1
                    print("%-10s %-7s %s" % ("PASS", "11.1", "server exits 0 on SIGINT"))
                else:
                    failed += 1
                    print("%-10s %-7s %s\n           -> exit status %s" % (
                        "FAIL", "11.1", "server exits 0 on SIGINT",
                        "none (killed after 10s)" if status is None else status))
    print("%d NON-STRICT verdict(s) (%s), %.1fs" % (
        nonstrict, "counted as failures: --strict" if args.strict else "counted as passed",
        time.monotonic() - started))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
