"""A server process under test (stdlib only).

Every server the tests start -- spry's examples, the calibration servers --
keeps one contract: its first stdout line is "listening on http://HOST:PORT/"
(IPv6 hosts in brackets), and SIGINT stops it with exit status 0.

The scripts beside tests/ import this module after putting this folder on
sys.path, relative to their own __file__.
"""

import os
import re
import select
import signal
import subprocess
import threading
import time

# The whole first line; HOST may be an IPv6 address in brackets.
LISTENING = re.compile(r"listening on (?:https?|wss?)://(\[[^\]]+\]|[^:/\s]+):(\d+)/$")


class ServerProcess:
    """Starts `argv` and waits up to `startup_timeout` s for its listening line.

    Raises RuntimeError when the line does not come (the process is killed)
    or the process exits first (its status is then in `exit_code` and the
    message reads "server exited with status N before listening"). `stderr`
    is passed to subprocess.Popen (None: inherited). Afterwards `proc`,
    `host` (without brackets) and `port` describe the running server; its
    further stdout is read and dropped, so a chatty server never blocks.
    """

    def __init__(self, argv, startup_timeout=15.0, stderr=None):
        self.argv = argv
        self.exit_code = None
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + startup_timeout
        line = b""
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            r, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not r:
                self.kill()
                raise RuntimeError("server printed no listening line within %gs"
                                   % startup_timeout)
            b = os.read(fd, 1)
            if not b:
                try:
                    self.exit_code = self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.kill()
                    raise RuntimeError("server closed its stdout before listening")
                raise RuntimeError("server exited with status %s before listening"
                                   % self.exit_code)
            line += b
        m = LISTENING.match(line.decode("utf-8", "replace"))
        if not m:
            self.kill()
            raise RuntimeError("first stdout line is not 'listening on ...': %r" % line)
        self.host = m.group(1).strip("[]")
        self.port = int(m.group(2))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        try:
            while self.proc.stdout.read(65536):
                pass
        except (OSError, ValueError):
            pass

    def stop(self, sig=signal.SIGINT, wait=10.0):
        """Sends `sig` and returns the exit status; None when it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def kill(self):
        """Kills the process if it still runs, and reaps it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
