#!/usr/bin/python3
"""The examples' TLS flags (hello, echo, chat), and chat over https.

Certificates are made with the openssl command in a temporary directory.

  - --help lists --cert, --key, --key-passphrase and --tls-port;
  - flag errors exit 2: --cert without --key, --key without --cert,
    --tls-port without them;
  - TLS setup errors exit 1 with listen()'s message, naming the file, on
    stderr: a missing file, a key that does not match the certificate, an
    encrypted key with a wrong passphrase or none;
  - an encrypted key with its passphrase (--key-passphrase or
    SPRY_KEY_PASSPHRASE) serves https, and SIGINT exits 0;
  - chat over https: the page loads (verified against the test CA) and a
    wss join from the page's own https origin is accepted, one from the
    http origin of the same host and port or from another site is refused.

Exits 77 (skip) without the openssl command.

  examples_tls.py --hello-exe H --echo-exe E --chat-exe C
"""

import argparse
import asyncio
import http.client
import importlib.util
import os
import signal
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from checks import report, summary  # noqa: E402
from server_process import ServerProcess  # noqa: E402
from tls_certs import OpenSSLMissing, TestCa  # noqa: E402


def run(argv, timeout=15):
    """Runs argv to its end: (status, stdout, stderr)."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", "still running after %ds (killed)" % timeout
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def start(argv, env=None):
    """An example started with `argv` (and `env` added to the environment):
    (its ServerProcess, None), or (None, why)."""
    saved = os.environ.copy()
    os.environ.update(env or {})
    try:
        return ServerProcess(argv, stderr=subprocess.DEVNULL), None
    except (RuntimeError, OSError) as e:
        return None, str(e)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def flags(name, exe, leaf, other, locked, tmp):
    base = [exe, "--host", "127.0.0.1", "--port", "0", "--threads", "1"]
    status, out, _ = run([exe, "--help"])
    report(status == 0 and all(f in out for f in ("--cert", "--key", "--key-passphrase",
                                                   "--tls-port")),
           "%s --help lists --cert, --key, --key-passphrase, --tls-port" % name,
           "exit %s" % status)

    for extra in (["--cert", leaf.cert], ["--key", leaf.key], ["--tls-port", "0"],
                  ["--tls-port", "0", "--key", leaf.key]):
        status, _, err = run(base + extra)
        report(status == 2, "%s %s: a flag error, exit 2" % (name, " ".join(
            os.path.basename(a) for a in extra)), "exit %s: %s" % (status, err.strip()))

    missing = os.path.join(tmp, "missing.pem")
    for what, extra, names in (
            ("a missing certificate file", ["--cert", missing, "--key", leaf.key], missing),
            ("a key that does not match the certificate", ["--cert", leaf.cert,
                                                           "--key", other.key], None),
            ("an encrypted key with a wrong passphrase", ["--cert", locked.cert,
                                                          "--key", locked.key,
                                                          "--key-passphrase", "wrong"],
             locked.key),
            ("an encrypted key without a passphrase", ["--cert", locked.cert,
                                                       "--key", locked.key], locked.key)):
        status, out, err = run(base + extra)
        named = (names in err) if names else (leaf.cert in err or other.key in err)
        report(status == 1 and named and "listening" not in out,
               "%s %s: exit 1, the file named on stderr" % (name, what),
               "exit %s, stderr %r" % (status, err.strip()))

    for how, extra, env in (("--key-passphrase", ["--key-passphrase", "secret"], None),
                            ("SPRY_KEY_PASSPHRASE", [], {"SPRY_KEY_PASSPHRASE": "secret"})):
        server, why = start(base + ["--cert", locked.cert, "--key", locked.key] + extra, env)
        if server is None:
            report(False, "%s with an encrypted key and %s serves" % (name, how), why)
            continue
        try:
            ctx = ssl.create_default_context(cafile=CA.cert)
            conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
            try:
                conn.request("GET", "/")
                ok = conn.getresponse().status == 200
            except (OSError, http.client.HTTPException) as e:
                ok, why = False, str(e)
            finally:
                conn.close()
            report(ok, "%s with an encrypted key and %s serves https" % (name, how), why or "")
        finally:
            status = server.stop(signal.SIGINT, wait=10)
        report(status == 0, "%s exits 0 on SIGINT" % name, "status %s" % status)


async def chat_join(url, origin, ctx):
    import websockets
    try:
        async with websockets.connect(url, ssl=ctx, origin=origin, open_timeout=10) as ws:
            await ws.close(1000)
            return 101
    except websockets.InvalidStatusCode as e:
        return e.status_code


def chat(exe, leaf):
    if importlib.util.find_spec("websockets") is None:
        print("# python3-websockets missing: chat over wss not checked")
        return
    server, why = start([exe, "--host", "127.0.0.1", "--port", "0", "--threads", "2",
                         "--cert", leaf.cert, "--key", leaf.key])
    if server is None:
        report(False, "chat --cert starts", why)
        return
    try:
        port = server.port
        ctx = ssl.create_default_context(cafile=CA.cert)
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        try:
            conn.request("GET", "/")
            r = conn.getresponse()
            body = r.read()
            report(r.status == 200 and b"<html" in body.lower(), "chat: the page over https",
                   "status %d" % r.status)
        finally:
            conn.close()
        url = "wss://127.0.0.1:%d/chat/lobby?nick=ada" % port
        for origin, want in (("https://127.0.0.1:%d" % port, 101),
                             ("https://localhost:%d" % port, 101),
                             ("http://127.0.0.1:%d" % port, 403),
                             ("https://evil.example", 403)):
            got = asyncio.run(chat_join(url, origin, ctx))
            report(got == want, "chat over wss, Origin %s: %s" % (
                origin, "accepted" if want == 101 else "refused (403)"), "got %s" % got)
    finally:
        status = server.stop(signal.SIGINT, wait=10)
    report(status == 0, "chat exits 0 on SIGINT", "status %s" % status)


CA = None


def main():
    global CA
    ap = argparse.ArgumentParser()
    ap.add_argument("--hello-exe", required=True)
    ap.add_argument("--echo-exe", required=True)
    ap.add_argument("--chat-exe", required=True)
    args = ap.parse_args()
    os.environ.pop("SPRY_KEY_PASSPHRASE", None)  # the cases set it themselves
    with tempfile.TemporaryDirectory(prefix="spry-examples-tls-") as tmp:
        try:
            CA = TestCa(tmp)
            leaf = CA.issue("server")
            other = CA.issue("other")
            locked = CA.issue("locked", passphrase="secret")
        except OpenSSLMissing as e:
            print("SKIP: %s" % e)
            return 77
        for name, exe in (("hello", args.hello_exe), ("echo", args.echo_exe),
                          ("chat", args.chat_exe)):
            flags(name, exe, leaf, other, locked, tmp)
        chat(args.chat_exe, leaf)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
