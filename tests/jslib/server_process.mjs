// A server process under test, for the Node scripts beside tests/ (imported
// by relative path; no npm packages). The contract is the one of
// tests/pylib/server_process.py: the first stdout line is exactly
// "listening on http://HOST:PORT/" (an IPv6 HOST in brackets), and SIGINT
// stops the server with exit status 0.

import {spawn} from 'node:child_process';

const kListening = /^listening on (?:https?|wss?):\/\/(\[[^\]]+\]|[^:/\s]+):(\d+)\/$/;

export class ServerProcess {
  // Starts `exe` with `args` and resolves once the listening line came; then
  // `host` (without brackets) and `port` describe the server, and later
  // stdout is drained. Rejects when the line does not come within `timeoutMs`
  // (the process is killed) or the process exits first. `stderr`: 'inherit',
  // or 'pipe' to collect it in `stderr` (and quote it in those errors).
  static start(exe, args, {timeoutMs = 15000, stderr = 'inherit'} = {}) {
    const server = new ServerProcess(spawn(exe, args, {stdio: ['ignore', 'pipe', stderr]}));
    const proc = server.proc;
    if (proc.stderr) proc.stderr.on('data', (d) => { server.stderr += d; });
    return new Promise((resolve, reject) => {
      let settled = false;
      let out = '';
      const fail = (message) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        server.kill();
        reject(new Error(proc.stderr ? `${message}; stderr: ${server.stderr}` : message));
      };
      const timer = setTimeout(
          () => fail(`server printed no listening line within ${timeoutMs / 1000} s`), timeoutMs);
      proc.once('error', (e) => fail(e.message));
      proc.once('exit', (code) => fail(`server exited with ${code} before listening`));
      const onData = (chunk) => {
        out += chunk;
        const nl = out.indexOf('\n');
        if (nl < 0 || settled) return;
        proc.stdout.off('data', onData);
        proc.stdout.resume();  // keep draining
        const m = kListening.exec(out.slice(0, nl));
        if (!m) {
          fail(`first stdout line is not 'listening on ...': ${JSON.stringify(out.slice(0, nl))}`);
          return;
        }
        settled = true;
        clearTimeout(timer);
        server.host = m[1].replace(/^\[|\]$/g, '');
        server.port = Number(m[2]);
        resolve(server);
      };
      proc.stdout.on('data', onData);
    });
  }

  constructor(proc) {
    this.proc = proc;
    this.host = '';
    this.port = 0;
    this.stderr = '';
    // Resolves with {code, signal} when the process exits.
    this.exited = new Promise((done) => proc.once('exit', (code, signal) => done({code, signal})));
  }

  // SIGINT, then {code, signal} of the exit; null when it took longer than
  // `waitMs` (the process is then killed).
  async interrupt(waitMs = 10000) {
    this.proc.kill('SIGINT');
    let timer;
    const result = await Promise.race([
      this.exited,
      new Promise((resolve) => { timer = setTimeout(() => resolve(null), waitMs); }),
    ]);
    clearTimeout(timer);
    if (!result) this.kill();
    return result;
  }

  // SIGKILL, unless it has exited already.
  kill() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}
