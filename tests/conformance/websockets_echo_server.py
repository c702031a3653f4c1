#!/usr/bin/python3
"""Reference echo server for calibrating the conformance suite, built on
Debian's python3-websockets (an independent RFC 6455 implementation).

Same contract as spry's examples/echo: prints "listening on
http://HOST:PORT/" first, echoes text as text and binary as binary, the text
message "close" makes it close with 1000 "bye", exits 0 on SIGINT/SIGTERM.
Exits 77 (skip) when python3-websockets is not installed. --deflate turns on
permessage-deflate with websockets' server defaults (server_max_window_bits
and client_max_window_bits 12, every message compressed).
"""

import argparse
import asyncio
import signal
import sys

try:
    import websockets
except ImportError:
    print("python3-websockets is not installed (apt-get install python3-websockets)",
          file=sys.stderr)
    sys.exit(77)


async def echo(ws, path=None):
    try:
        async for message in ws:
            if message == "close":
                await ws.close(1000, "bye")
                return
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main(args):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with websockets.serve(echo, args.host, args.port,
                                max_size=args.max_message_bytes,
                                compression="deflate" if args.deflate else None,
                                ping_interval=None,
                                close_timeout=1) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening on http://%s:%d/" % (args.host, port), flush=True)
        await stop


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-message-bytes", type=int, default=16 << 20)
    ap.add_argument("--deflate", action="store_true")
    asyncio.run(main(ap.parse_args()))
    sys.exit(0)
