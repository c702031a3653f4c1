#!/usr/bin/python3
"""A deliberately broken WebSocket echo server: proof that the conformance
suite can fail.

It speaks enough RFC 6455 to pass the happy paths -- handshake, masked
frames, fragmented messages, ping/pong, the closing handshake, the "close"
command -- but validates nothing: RSV bits and the mask bit are ignored,
reserved opcodes are skipped, UTF-8 is never checked (text or close reason),
close codes and control frame sizes are echoed back unchecked, and there is
no message size limit. Stdlib only. Same command-line contract as spry's
examples/echo.

With --deflate it also "supports" permessage-deflate the broken way: it
answers any offer that names permessage-deflate with a bare
`permessage-deflate` (whatever the parameters, valid or not) and echoes
compressed messages verbatim, RSV1 and all, never inflating them. With
context takeover on both sides a verbatim echo inflates fine at the
client, so the happy paths of the deflate cases pass; negotiation and
every validation must fail.
"""

import argparse
import base64
import hashlib
import signal
import socket
import struct
import sys
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def send_frame(sock, opcode, payload, rsv1=False):
    n = len(payload)
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = bytes([b0, n])
    elif n < 65536:
        head = bytes([b0, 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, 127]) + struct.pack("!Q", n)
    sock.sendall(head + payload)


def unmask(key, data):
    if not data:
        return b""
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(
        len(data), "little")


def serve(sock, deflate):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return
            head += chunk
        key = b""
        extension = b""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"sec-websocket-key:"):
                key = line.split(b":", 1)[1].strip()
            if deflate and line.lower().startswith(b"sec-websocket-extensions:") and \
                    b"permessage-deflate" in line:
                extension = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n" +
                     extension + b"\r\n")
        message_op, message, message_rsv1 = None, b"", False
        closing = False
        while True:
            b0, b1 = recv_exact(sock, 2)
            opcode, fin = b0 & 0x0F, bool(b0 & 0x80)  # RSV bits: ignored
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", recv_exact(sock, 2))[0]
            elif n == 127:
                n = struct.unpack("!Q", recv_exact(sock, 8))[0]
            key = recv_exact(sock, 4) if b1 & 0x80 else b"\0\0\0\0"  # unmasked: fine
            payload = unmask(key, recv_exact(sock, n))  # no size limit
            if opcode == 0x8:
                if not closing:
                    send_frame(sock, 0x8, payload)  # echo whatever came, unchecked
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
                return
            if opcode == 0x9:
                send_frame(sock, 0xA, payload[:125])
            elif opcode in (0x1, 0x2):
                message_op, message, message_rsv1 = opcode, payload, bool(b0 & 0x40)
            elif opcode == 0x0:
                message += payload
                if message_op is None:
                    message_op = 0x2
            else:
                continue  # pong and reserved opcodes: skipped
            if fin and opcode in (0x0, 0x1, 0x2):
                if message_op == 0x1 and message == b"close":
                    send_frame(sock, 0x8, struct.pack("!H", 1000) + b"bye")
                    closing = True
                else:
                    send_frame(sock, message_op, message, extension and message_rsv1)
                message_op, message, message_rsv1 = None, b"", False
    except (EOFError, OSError):
        pass
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--deflate", action="store_true")
    args = ap.parse_args()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(128)
    print("listening on http://%s:%d/" % (args.host, listener.getsockname()[1]), flush=True)

    def stop(*_):
        sys.exit(0)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, args.deflate), daemon=True).start()


if __name__ == "__main__":
    main()
