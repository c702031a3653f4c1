#!/usr/bin/python3
"""Interop: Debian's python3-websockets (an independent RFC 6455 client)
against spry's examples/echo.

Starts the echo server on port 0, exchanges text and binary messages of
several sizes (single-frame and fragmented), pings, closes from both sides
asserting close code 1000, then stops the server with SIGINT and requires
exit status 0. Exits 77 (skip) without python3-websockets.

With --tls, the same over wss: a CA and a server certificate for 127.0.0.1
are made with the openssl command in a temporary directory, the server gets
--cert/--key, and the client verifies it against that CA (exits 77 without
the openssl command).

  python_client.py [--tls] --echo-exe build/examples/echo
"""

import argparse
import asyncio
import os
import signal
import ssl
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from checks import report, summary  # noqa: E402
from server_process import ServerProcess  # noqa: E402
from tls_certs import OpenSSLMissing, TestCa  # noqa: E402

try:
    import websockets
except ImportError:
    print("SKIP: python3-websockets is not installed (apt-get install python3-websockets)")
    sys.exit(77)

SIZES = [0, 1, 125, 126, 65536, 1 << 20]
STEP_TIMEOUT = 10.0
SSL = None  # with --tls: the client context that trusts the test CA


def connect(url, **kw):
    if SSL is not None:
        kw["ssl"] = SSL
    return websockets.connect(url, **kw)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)


async def exchange(url):
    async with connect(url, max_size=None, compression=None, ping_interval=None,
                                  open_timeout=STEP_TIMEOUT,
                                  close_timeout=STEP_TIMEOUT) as ws:
        for n in SIZES:
            text = ("κόσμε-" * (n // 11 + 1)).encode()[:n].decode("utf-8", "ignore")
            text += "x" * (n - len(text.encode()))  # exactly n bytes, multi-byte inside
            await ws.send(text)
            got = await recv(ws)
            report(isinstance(got, str) and got == text, "text message of %d bytes echoed" % n,
                   "" if got == text else "got %s of %d" % (type(got).__name__, len(got)))
            blob = os.urandom(n)
            await ws.send(blob)
            got = await recv(ws)
            report(isinstance(got, bytes) and got == blob,
                   "binary message of %d bytes echoed" % n,
                   "" if got == blob else "got %s of %d" % (type(got).__name__, len(got)))
        # Fragmented messages: websockets sends an iterable as fragments.
        await ws.send(["frag", "mented ", "κόσμε"])
        got = await recv(ws)
        report(got == "fragmented κόσμε", "fragmented text echoed", repr(got)[:60])
        parts = [os.urandom(70000), b"", os.urandom(3)]
        await ws.send(parts)
        got = await recv(ws)
        report(got == b"".join(parts), "fragmented binary echoed")
        for payload in (b"interop", b"", bytes(range(125))):
            waiter = await ws.ping(payload)
            try:
                await asyncio.wait_for(waiter, STEP_TIMEOUT)
                report(True, "ping with %d-byte payload answered" % len(payload))
            except asyncio.TimeoutError:
                report(False, "ping with %d-byte payload answered" % len(payload), "no pong")
        await ws.close(1000, "done")
        report(ws.close_sent is not None and ws.close_sent.code == 1000,
               "client sent Close 1000")
        rcvd = ws.close_rcvd
        report(rcvd is not None and rcvd.code == 1000, "server answered Close 1000",
               "got %r" % (rcvd,))


async def server_close(url):
    async with connect(url, compression=None, ping_interval=None,
                                  open_timeout=STEP_TIMEOUT,
                                  close_timeout=STEP_TIMEOUT) as ws:
        await ws.send("hello")
        report(await recv(ws) == "hello", "echo before the server-initiated close")
        await ws.send("close")
        try:
            got = await recv(ws)
            report(False, "server-initiated close", "got a message %r" % got)
        except websockets.ConnectionClosedOK as e:
            report(e.rcvd is not None and e.rcvd.code == 1000 and e.rcvd.reason == "bye",
                   "server sent Close 1000 'bye'", "got %r" % (e.rcvd,))
            report(e.sent is not None and e.sent.code == 1000, "client answered Close 1000",
                   "sent %r" % (e.sent,))
        except websockets.ConnectionClosed as e:
            report(False, "server-initiated close", "closed abnormally: %s" % e)


async def concurrent(url, n=8):
    async def one(i):
        async with connect(url, compression=None, ping_interval=None,
                                      open_timeout=STEP_TIMEOUT) as ws:
            msgs = ["conn %d msg %d" % (i, k) for k in range(20)]
            for m in msgs:
                await ws.send(m)
            got = [await recv(ws) for _ in msgs]
            await ws.close(1000)
            return got == msgs and ws.close_code == 1000
    oks = await asyncio.gather(*(one(i) for i in range(n)))
    report(all(oks), "%d concurrent connections, 20 messages each, in order, Close 1000" % n)


async def run(url, steps):
    for step in steps:
        try:
            await asyncio.wait_for(step(url), 30)
        except Exception as e:  # any error is a failed check, not a crash
            report(False, step.__name__, "%s: %s" % (type(e).__name__, e))


async def tls_details(url):
    """What the wss connection negotiated: TLS 1.2 or newer, the test CA's chain."""
    async with connect(url, compression=None, ping_interval=None,
                       open_timeout=STEP_TIMEOUT) as ws:
        tls = ws.transport.get_extra_info("ssl_object")
        report(tls is not None and tls.version() in ("TLSv1.2", "TLSv1.3"),
               "wss over TLS 1.2+", "version %s" % (tls and tls.version()))
        peer = tls.getpeercert() if tls else {}
        report(("commonName", "127.0.0.1") in [n for rdn in peer.get("subject", ()) for n in rdn],
               "the server presents the test certificate (CN 127.0.0.1)", repr(peer)[:200])
        await ws.close(1000)


async def untrusted(url):
    """Without the test CA the client must refuse the server: verification is on."""
    try:
        async with websockets.connect(url, ssl=ssl.create_default_context(),
                                      open_timeout=STEP_TIMEOUT):
            report(False, "a client without the test CA refuses the certificate",
                   "the connection opened")
    except ssl.SSLCertVerificationError:
        report(True, "a client without the test CA refuses the certificate")


def main():
    global SSL
    ap = argparse.ArgumentParser()
    ap.add_argument("--echo-exe", required=True)
    ap.add_argument("--tls", action="store_true", help="wss with a certificate made here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="spry-wss-") as tmp:
        argv = [args.echo_exe, "--host", "127.0.0.1", "--port", "0"]
        if args.tls:
            try:
                ca = TestCa(tmp)
                leaf = ca.issue("server")
            except OpenSSLMissing as e:
                print("SKIP: %s" % e)
                return 77
            argv += ["--cert", leaf.cert, "--key", leaf.key]
            SSL = ssl.create_default_context(cafile=ca.cert)
        try:
            server = ServerProcess(argv)
        except (RuntimeError, OSError) as e:
            print("could not start %s: %s" % (args.echo_exe, e))
            return 1
        scheme = "wss" if args.tls else "ws"
        url = "%s://%s:%d/echo" % (scheme, server.host, server.port)
        print("websockets %s -> %s" % (websockets.__version__, url))
        steps = (exchange, server_close, concurrent)
        if args.tls:
            steps += (tls_details, untrusted)
        try:
            asyncio.run(run(url, steps))
        finally:
            status = server.stop(signal.SIGINT, wait=10)
        report(status == 0, "echo server exits 0 on SIGINT", "status %s" % status)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
