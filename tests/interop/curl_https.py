#!/usr/bin/python3
"""Interop: curl (libcurl on OpenSSL) over https against spry's examples/hello.

Makes a CA and a server certificate (CN 127.0.0.1; SAN 127.0.0.1, ::1,
localhost) with the openssl command in a temporary directory, then:

  - hello --cert/--key --port 0: curl verifies the certificate against the
    test CA (--cacert, never -k), speaks HTTP/1.1 (ALPN), and two URLs in one
    curl run share one connection (keep-alive); the host name localhost
    verifies too; curl with only the system CAs refuses; plain HTTP sent to
    the TLS port fails without disturbing the server;
  - SIGHUP rereads the files: a new certificate reaches new connections
    while an open keep-alive connection keeps its own; a bad file leaves the
    old certificate in service;
  - hello --port 0 --tls-port 0: http on the first listener, https on the
    second (the second "listening on" line);
  - every server stops with exit status 0 on SIGINT.

Exits 77 (skip) when curl or openssl is missing.

  curl_https.py --hello-exe build/examples/hello
"""

import argparse
import http.client
import os
import re
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from checks import report, summary  # noqa: E402
from server_process import LISTENING  # noqa: E402
from tls_certs import OpenSSLMissing, TestCa  # noqa: E402

CURL = shutil.which("curl")
WRITE_OUT = r"%{http_code} %{http_version} %{ssl_verify_result} %{num_connects}\n"


def curl(*args, timeout=20):
    """Runs curl; returns (exit status, stdout, stderr)."""
    r = subprocess.run([CURL, "--silent", "--show-error", "--max-time", "10", *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def der_of(pem_file):
    with open(pem_file) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def served_cert(port, ca):
    """The DER certificate a new TLS connection to 127.0.0.1:port gets."""
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.connect()
        return conn.sock.getpeercert(binary_form=True)
    finally:
        conn.close()


def wait_for_line(path, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            if text in f.read():
                return True
        time.sleep(0.05)
    return False


def basics(port, ca):
    base = "https://127.0.0.1:%d" % port
    with tempfile.TemporaryDirectory() as out:
        one, two = os.path.join(out, "one"), os.path.join(out, "two")
        status, stdout, stderr = curl("--cacert", ca, "-w", WRITE_OUT,
                                      "-o", one, base + "/hello/one", "-o", two, base + "/hello/two")
        report(status == 0, "curl https with --cacert of the test CA", "exit %d: %s" % (status, stderr))
        lines = stdout.split("\n")
        report(len(lines) >= 2 and lines[0].split()[:3] == ["200", "1.1", "0"]
               and lines[1].split()[:3] == ["200", "1.1", "0"],
               "both: 200, HTTP/1.1 (ALPN), certificate verified (ssl_verify_result 0)",
               repr(stdout))
        report(len(lines) >= 2 and lines[0].split()[3:] == ["1"] and lines[1].split()[3:] == ["0"],
               "keep-alive: the second URL reuses the first connection (num_connects 1, 0)",
               repr(stdout))
        bodies = [open(p).read() if os.path.exists(p) else None for p in (one, two)]
        report(bodies == ["Hello, one", "Hello, two"], "both bodies", repr(bodies))

    status, stdout, stderr = curl("--cacert", ca, "-H", "X-Api-Key: letmein",
                                  "-D", "-", base + "/api/users/1")
    report(status == 0 and re.search(r"^HTTP/1\.1 200", stdout) is not None
           and re.search(r"^server: spry\r?$", stdout, re.M | re.I) is not None
           and '"name":"Ada"' in stdout,
           "JSON through the middleware over https", "exit %d: %r %s" % (status, stdout, stderr))

    status, stdout, stderr = curl("--cacert", ca, "--resolve", "localhost:%d:127.0.0.1" % port,
                                  "https://localhost:%d/hello/localhost" % port)
    report(status == 0 and stdout == "Hello, localhost", "the name localhost verifies (SAN)",
           "exit %d: %r %s" % (status, stdout, stderr))

    # The system CAs do not know the test CA: curl must refuse (60: peer
    # certificate cannot be authenticated).
    status, stdout, stderr = curl(base + "/hello/stranger")
    report(status == 60, "curl without the test CA refuses the certificate (exit 60)",
           "exit %d: %s" % (status, stderr))

    status, stdout, stderr = curl("http://127.0.0.1:%d/hello/plain" % port)
    report(status != 0 and "Hello" not in stdout, "plain HTTP to the TLS port gets no answer",
           "exit %d: %r" % (status, stdout))
    status, stdout, stderr = curl("--cacert", ca, base + "/hello/after")
    report(status == 0 and stdout == "Hello, after", "https still served after that",
           "exit %d: %r %s" % (status, stdout, stderr))


def reload(server, port, ca, served, fresh, stderr_path):
    """served: the files the server reads; fresh: another certificate of the CA."""
    ctx = ssl.create_default_context(cafile=ca.cert)
    old = der_of(served.cert)
    kept = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        kept.request("GET", "/hello/before")
        r = kept.getresponse()
        report(r.status == 200 and r.read() == b"Hello, before",
               "a keep-alive connection before the reload")

        shutil.copyfile(fresh.cert, served.cert)
        shutil.copyfile(fresh.key, served.key)
        server.proc.send_signal(signal.SIGHUP)
        report(wait_for_line(stderr_path, "reloaded TLS certificates"),
               "SIGHUP logs 'reloaded TLS certificates'")
        got = served_cert(port, ca.cert)
        report(got == der_of(fresh.cert) and got != old,
               "a new connection after SIGHUP gets the new certificate")

        kept.request("GET", "/hello/after")
        r = kept.getresponse()
        report(r.status == 200 and r.read() == b"Hello, after"
               and kept.sock.getpeercert(binary_form=True) == old,
               "the open connection keeps serving, on its old certificate")
    finally:
        kept.close()

    # A bad file: the reload fails, is logged, and the current pair stays.
    with open(served.cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    server.proc.send_signal(signal.SIGHUP)
    report(wait_for_line(stderr_path, "TLS reload failed"), "SIGHUP with a bad file logs the failure")
    report(server.proc.poll() is None, "the server survives the failed reload")
    status, stdout, stderr = curl("--cacert", ca.cert, "https://127.0.0.1:%d/hello/still" % port)
    report(status == 0 and stdout == "Hello, still", "https still served after the failed reload",
           "exit %d: %r %s" % (status, stdout, stderr))
    report(served_cert(port, ca.cert) == der_of(fresh.cert),
           "the certificate loaded before stays in service")


class Server:
    """argv started, its first `lines` stdout lines read: `listeners` holds
    (scheme, host, port) of each. Raises RuntimeError when they do not come."""

    def __init__(self, argv, lines=1, stderr=None, timeout=15.0):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr,
                                     stdin=subprocess.DEVNULL)
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while buf.count(b"\n") < lines:
            r, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(fd, 4096) if r else b""
            if not chunk:
                self.kill()
                raise RuntimeError("no %d 'listening on' line(s): %r" % (lines, buf))
            buf += chunk
        self.listeners = []
        for line in buf.decode().split("\n")[:lines]:
            m = LISTENING.match(line)
            if not m:
                self.kill()
                raise RuntimeError("not a 'listening on' line: %r" % line)
            self.listeners.append((line.split("://")[0].rsplit(" ", 1)[1], m.group(1),
                                   int(m.group(2))))
        self.port = self.listeners[0][2]

    def stop(self):
        """SIGINT; the exit status, or None when it had to be killed after 10 s."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def beside(hello, leaf, ca):
    argv = [hello, "--host", "127.0.0.1", "--port", "0", "--tls-port", "0", "--threads", "2",
            "--cert", leaf.cert, "--key", leaf.key]
    try:
        server = Server(argv, lines=2)
    except (RuntimeError, OSError) as e:
        report(False, "hello --tls-port starts", str(e))
        return
    try:
        lines = server.listeners
        (scheme1, _, plain), (scheme2, _, secure) = lines
        report(scheme1 == "http" and scheme2 == "https" and plain != secure and secure != 0,
               "--tls-port: first line http://, second https:// with the bound port", repr(lines))
        status, stdout, _ = curl("http://127.0.0.1:%d/hello/plain" % plain)
        report(status == 0 and stdout == "Hello, plain", "http on --port",
               "exit %d: %r" % (status, stdout))
        status, stdout, stderr = curl("--cacert", ca.cert, "-w", "\n" + WRITE_OUT,
                                      "https://127.0.0.1:%d/hello/secure" % secure)
        report(status == 0 and stdout.split("\n")[0] == "Hello, secure"
               and stdout.split("\n")[1].split()[:3] == ["200", "1.1", "0"],
               "https on --tls-port, verified", "exit %d: %r %s" % (status, stdout, stderr))
        status, _, _ = curl("--cacert", ca.cert, "https://127.0.0.1:%d/hello/x" % plain)
        report(status != 0, "no TLS on the plain port", "exit %d" % status)
    finally:
        status = server.stop()
        report(status == 0, "hello --tls-port exits 0 on SIGINT", "status %s" % status)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hello-exe", required=True)
    args = ap.parse_args()
    if CURL is None:
        print("SKIP: curl is not installed (apt-get install curl)")
        return 77
    print(subprocess.run([CURL, "--version"], stdout=subprocess.PIPE).stdout.decode()
          .split("\n")[0])
    with tempfile.TemporaryDirectory(prefix="spry-https-") as tmp:
        try:
            ca = TestCa(tmp)
            leaf = ca.issue("server")
            fresh = ca.issue("fresh")
        except OpenSSLMissing as e:
            print("SKIP: %s" % e)
            return 77
        # The server reads copies, which the reload test overwrites.
        served = type(leaf)(os.path.join(tmp, "served.pem"), os.path.join(tmp, "served.key"))
        shutil.copyfile(leaf.cert, served.cert)
        shutil.copyfile(leaf.key, served.key)
        stderr_path = os.path.join(tmp, "stderr.txt")
        with open(stderr_path, "w") as err:
            try:
                server = Server([args.hello_exe, "--host", "127.0.0.1", "--port", "0",
                                 "--threads", "2", "--cert", served.cert, "--key", served.key],
                                stderr=err)
            except (RuntimeError, OSError) as e:
                print("could not start %s: %s" % (args.hello_exe, e))
                return 1
            try:
                report(server.listeners == [("https", "127.0.0.1", server.port)],
                       "hello --cert: the first line reads listening on https://127.0.0.1:PORT/",
                       repr(server.listeners))
                for step in (lambda: basics(server.port, ca.cert),
                             lambda: reload(server, server.port, ca, served, fresh, stderr_path)):
                    try:
                        step()
                    except Exception as e:  # a failed check, not a crash
                        report(False, "step", "%s: %s" % (type(e).__name__, e))
            finally:
                status = server.stop()
            report(status == 0, "hello exits 0 on SIGINT", "status %s" % status)
        with open(stderr_path, errors="replace") as f:
            log = f.read()
        if log:
            print("# hello's stderr:\n# " + log.strip().replace("\n", "\n# "))
        beside(args.hello_exe, leaf, ca)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
