#!/usr/bin/python3
"""Interop: Debian's python3-websockets (an independent RFC 6455 client)
against spry's examples/echo.

Starts the echo server on port 0, exchanges text and binary messages of
several sizes (single-frame and fragmented), pings, closes from both sides
asserting close code 1000, then stops the server with SIGINT and requires
exit status 0. Exits 77 (skip) without python3-websockets.

  python_client.py --echo-exe build/examples/echo
"""

import argparse
import asyncio
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from checks import report, summary  # noqa: E402
from server_process import ServerProcess  # noqa: E402

try:
    import websockets
except ImportError:
    print("SKIP: python3-websockets is not installed (apt-get install python3-websockets)")
    sys.exit(77)

SIZES = [0, 1, 125, 126, 65536, 1 << 20]
STEP_TIMEOUT = 10.0



async def recv(ws):
    return await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)


async def exchange(url):
    async with websockets.connect(url, max_size=None, compression=None, ping_interval=None,
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
    async with websockets.connect(url, compression=None, ping_interval=None,
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
        async with websockets.connect(url, compression=None, ping_interval=None,
                                      open_timeout=STEP_TIMEOUT) as ws:
            msgs = ["conn %d msg %d" % (i, k) for k in range(20)]
            for m in msgs:
                await ws.send(m)
            got = [await recv(ws) for _ in msgs]
            await ws.close(1000)
            return got == msgs and ws.close_code == 1000
    oks = await asyncio.gather(*(one(i) for i in range(n)))
    report(all(oks), "%d concurrent connections, 20 messages each, in order, Close 1000" % n)


async def run(url):
    for step in (exchange, server_close, concurrent):
        try:
            await asyncio.wait_for(step(url), 30)
        except Exception as e:  # any error is a failed check, not a crash
            report(False, step.__name__, "%s: %s" % (type(e).__name__, e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--echo-exe", required=True)
    args = ap.parse_args()
    try:
        server = ServerProcess([args.echo_exe, "--host", "127.0.0.1", "--port", "0"])
    except (RuntimeError, OSError) as e:
        print("could not start %s: %s" % (args.echo_exe, e))
        return 1
    url = "ws://%s:%d/echo" % (server.host, server.port)
    print("websockets %s -> %s" % (websockets.__version__, url))
    try:
        asyncio.run(run(url))
    finally:
        status = server.stop(signal.SIGINT, wait=10)
    report(status == 0, "echo server exits 0 on SIGINT", "status %s" % status)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
