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

With --deflate, permessage-deflate (RFC 7692) instead: websockets offers
it by default, so against a server started with --compression shared, then
--compression dedicated, the client asserts that it was negotiated (with
the parameters each mode answers), that messages of every size round trip
-- sent compressed by the client, compressible ones echoed compressed --
also fragmented, on concurrent connections, and with an offer that limits
the server's window to 10 bits and turns context takeover off (websockets
then inflates with that window). Against a server started without
--compression nothing may be negotiated.

  python_client.py [--tls] [--deflate] --echo-exe build/examples/echo
"""

import argparse
import asyncio
import json
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


# -- permessage-deflate (--deflate) -------------------------------------------

try:
    from websockets.extensions.permessage_deflate import (ClientPerMessageDeflateFactory,
                                                         PerMessageDeflate)
except ImportError:  # too old a websockets: caught when --deflate is used
    PerMessageDeflate = ClientPerMessageDeflateFactory = None

MODE = None  # with --deflate: the server's --compression mode, or "off"


def json_text(n, seed):
    """About n bytes of JSON chat records (compressible, non-ASCII inside)."""
    out, i = [], 0
    size = 0
    while size < n:
        line = json.dumps({"id": i, "seed": seed, "user": ["zoë", "bob", "李雷"][i % 3],
                           "text": "message %d in room %d: κόσμε" % (i, i % 7)},
                          ensure_ascii=False) + "\n"
        out.append(line)
        size += len(line.encode())
        i += 1
    return "".join(out)


def counting(ws):
    """Counts the compressed messages the server sends (RSV1 on their first
    frame) and those the client sends, by wrapping the negotiated
    extension's decode and encode."""
    counts = {"received": 0, "sent": 0}
    ext = next((e for e in ws.extensions if isinstance(e, PerMessageDeflate)), None)
    if ext is None:
        return counts
    decode, encode = ext.decode, ext.encode

    def counting_decode(frame, *, max_size=None):
        if frame.rsv1 and frame.opcode in (websockets.frames.Opcode.TEXT,
                                           websockets.frames.Opcode.BINARY):
            counts["received"] += 1
        return decode(frame, max_size=max_size)

    def counting_encode(frame):
        frame = encode(frame)
        if frame.rsv1:
            counts["sent"] += 1
        return frame
    ext.decode, ext.encode = counting_decode, counting_encode
    return counts


def response_params(ws):
    """The parameters of the server's Sec-WebSocket-Extensions answer."""
    value = ws.response_headers.get("Sec-WebSocket-Extensions")
    if value is None:
        return None
    parts = [p.strip() for p in value.split(";")]
    return parts[0], parts[1:]


async def deflate_negotiated(url):
    """The default offer (permessage-deflate; client_max_window_bits) is
    accepted with the parameters of the mode; messages round trip."""
    async with connect(url, max_size=None, ping_interval=None, open_timeout=STEP_TIMEOUT,
                       close_timeout=STEP_TIMEOUT) as ws:
        resp = response_params(ws)
        report(resp is not None and resp[0] == "permessage-deflate",
               "%s: permessage-deflate negotiated" % MODE, "response %r" % (resp,))
        exts = [e for e in ws.extensions if isinstance(e, PerMessageDeflate)]
        report(len(exts) == 1, "%s: websockets enabled PerMessageDeflate" % MODE,
               repr(ws.extensions))
        params = resp[1] if resp else []
        if MODE == "shared":
            want = ["server_no_context_takeover", "client_no_context_takeover"]
            report(all(p in params for p in want),
                   "shared: the answer has server_ and client_no_context_takeover", repr(params))
        else:
            report("client_no_context_takeover" in params and
                   "server_no_context_takeover" not in params,
                   "dedicated: client_no_context_takeover only (server keeps its context)",
                   repr(params))
        counts = counting(ws)
        sizes = [0, 1, 125, 126, 4096, 65536, 1 << 20]
        should_compress = 0
        for n in sizes:
            text = json_text(n, n)
            await ws.send(text)
            got = await recv(ws)
            report(got == text, "%s: compressible text of %d bytes echoed" % (MODE, len(text)),
                   "got %s of %d" % (type(got).__name__, len(got)))
            should_compress += len(text.encode()) >= 1024
            blob = os.urandom(n)
            await ws.send(blob)
            got = await recv(ws)
            report(got == blob, "%s: random binary of %d bytes echoed" % (MODE, n),
                   "got %s of %d" % (type(got).__name__, len(got)))
        report(counts["sent"] == 2 * len(sizes), "%s: the client sent every message compressed"
               % MODE, "%d of %d" % (counts["sent"], 2 * len(sizes)))
        report(counts["received"] >= should_compress,
               "%s: the server compressed its echoes of compressible text >= 1 KiB" % MODE,
               "%d compressed echoes, %d expected at least" % (counts["received"],
                                                              should_compress))
        await ws.send(["frag", "mented ", "κόσμε"])
        got = await recv(ws)
        report(got == "fragmented κόσμε", "%s: fragmented compressed text echoed" % MODE,
               repr(got)[:60])
        parts = [json_text(30000, 1).encode(), b"", os.urandom(3)]
        await ws.send(parts)
        got = await recv(ws)
        report(got == b"".join(parts), "%s: fragmented compressed binary echoed" % MODE)
        await ws.close(1000, "done")
        report(ws.close_rcvd is not None and ws.close_rcvd.code == 1000,
               "%s: server answered Close 1000" % MODE, "got %r" % (ws.close_rcvd,))


async def deflate_limited_window(url):
    """An offer limiting the server's window to 10 bits, no context takeover
    either way: the answer must honor it and websockets inflates with it."""
    factory = ClientPerMessageDeflateFactory(server_no_context_takeover=True,
                                             client_no_context_takeover=True,
                                             server_max_window_bits=10,
                                             client_max_window_bits=True)
    async with connect(url, max_size=None, ping_interval=None, extensions=[factory],
                       compression=None, open_timeout=STEP_TIMEOUT,
                       close_timeout=STEP_TIMEOUT) as ws:
        resp = response_params(ws)
        params = resp[1] if resp else []
        bits = [int(p.split("=", 1)[1]) for p in params if p.startswith("server_max_window_bits=")]
        report(bits and 9 <= bits[0] <= 10 and "server_no_context_takeover" in params,
               "%s: server_max_window_bits=10 and server_no_context_takeover honored" % MODE,
               "response %r" % (resp,))
        counts = counting(ws)
        text = json_text(256 << 10, 7) + os.urandom(300).hex() * 8
        for _ in range(3):
            await ws.send(text)
            got = await recv(ws)
            report(got == text, "%s: %d-byte text round trip inflated with a 10-bit window"
                   % (MODE, len(text)))
        report(counts["received"] == 3, "%s: the echoes came compressed" % MODE,
               "%d of 3" % counts["received"])
        await ws.close(1000)


async def deflate_concurrent(url, n=8):
    async def one(i):
        async with connect(url, ping_interval=None, open_timeout=STEP_TIMEOUT) as ws:
            counts = counting(ws)
            msgs = [json_text(2000 + 100 * k, i * 100 + k) for k in range(20)]
            for m in msgs:
                await ws.send(m)
            got = [await recv(ws) for _ in msgs]
            await ws.close(1000)
            return got == msgs and ws.close_code == 1000 and counts["received"] == len(msgs)
    oks = await asyncio.gather(*(one(i) for i in range(n)))
    report(all(oks), "%s: %d concurrent compressed connections, 20 messages each, echoed "
           "compressed, in order" % (MODE, n), "%r" % oks)


async def deflate_not_offered(url):
    """compression=None: the server must not answer with an extension."""
    async with connect(url, compression=None, ping_interval=None,
                       open_timeout=STEP_TIMEOUT) as ws:
        report(response_params(ws) is None and not ws.extensions,
               "%s: no offer, no extension" % MODE, repr(ws.response_headers))
        text = json_text(5000, 3)
        await ws.send(text)
        report(await recv(ws) == text, "%s: uncompressed echo without the extension" % MODE)
        await ws.close(1000)


async def deflate_off(url):
    """A server without --compression declines the default offer."""
    async with connect(url, max_size=None, ping_interval=None,
                       open_timeout=STEP_TIMEOUT) as ws:
        report(response_params(ws) is None and not ws.extensions,
               "off: the offer is declined, nothing negotiated",
               "response %r, extensions %r" % (response_params(ws), ws.extensions))
        for n in (0, 126, 65536):
            text = json_text(n, n)
            await ws.send(text)
            report(await recv(ws) == text, "off: text of %d bytes echoed" % len(text))
        await ws.close(1000)
        report(ws.close_code == 1000, "off: Close 1000")


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
    global SSL, MODE
    ap = argparse.ArgumentParser()
    ap.add_argument("--echo-exe", required=True)
    ap.add_argument("--tls", action="store_true", help="wss with a certificate made here")
    ap.add_argument("--deflate", action="store_true",
                    help="permessage-deflate against --compression shared, dedicated and off")
    args = ap.parse_args()
    if args.deflate and PerMessageDeflate is None:
        print("SKIP: this websockets has no permessage-deflate extension module")
        return 77
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
        if not args.deflate:
            runs = [(argv, (exchange, server_close, concurrent) +
                     ((tls_details, untrusted) if args.tls else ()))]
        else:
            deflate_steps = (deflate_negotiated, deflate_limited_window, deflate_concurrent,
                             deflate_not_offered)
            runs = [(argv + ["--compression", "shared"], deflate_steps),
                    (argv + ["--compression", "dedicated"], deflate_steps),
                    (argv, (deflate_off,))]
        for server_argv, steps in runs:
            MODE = server_argv[-1] if "--compression" in server_argv else "off"
            try:
                server = ServerProcess(server_argv)
            except (RuntimeError, OSError) as e:
                report(False, "start %s" % " ".join(server_argv), str(e))
                continue
            scheme = "wss" if args.tls else "ws"
            url = "%s://%s:%d/echo" % (scheme, server.host, server.port)
            print("websockets %s -> %s (%s)" % (websockets.__version__, url,
                                                " ".join(server_argv[1:])))
            try:
                asyncio.run(run(url, steps))
            finally:
                status = server.stop(signal.SIGINT, wait=10)
            report(status == 0, "echo server%s exits 0 on SIGINT"
                   % (" (%s)" % MODE if args.deflate else ""), "status %s" % status)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
