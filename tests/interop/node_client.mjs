// Interop: Node's `ws` client (an independent RFC 6455 implementation)
// against spry's examples/echo.
//
// Starts the echo server on port 0, exchanges text and binary messages of
// several sizes, pings, closes from both sides asserting close code 1000,
// then stops the server with SIGINT and requires exit status 0. Exits 77
// (Meson's skip) when node_modules is missing: run `npm ci` in tests/interop.
//
// With --tls, the same over wss: a CA and a server certificate for 127.0.0.1
// are made with the openssl command in a temporary directory, the server gets
// --cert/--key, and the client trusts only that CA (the `ca` option). Exits
// 77 without the openssl command.
//
//   node node_client.mjs [--tls] --echo-exe build/examples/echo

import { execFileSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ServerProcess } from '../jslib/server_process.mjs';

let WebSocket;
try {
  ({ WebSocket } = await import('ws'));
} catch (e) {
  console.log(`SKIP: the ws package is missing: run \`npm ci\` in tests/interop (${e.message})`);
  process.exit(77);
}

const SIZES = [0, 1, 125, 126, 65536, 1 << 20];
const STEP_TIMEOUT_MS = 10000;
let passed = 0;
let failed = 0;

function report(ok, what, detail = '') {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok' : 'not ok'} - ${what}${!ok && detail ? `: ${detail}` : ''}`);
}

function withTimeout(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// With --tls: the client options that trust the test CA only.
let tlsOptions = {};

// A CA and a server certificate (CN 127.0.0.1; SAN 127.0.0.1, ::1,
// localhost), ECDSA P-256, made in `dir` with the openssl command.
function makeCertificates(dir) {
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=spry test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'server.ext'), 'basicConstraints=critical,CA:FALSE\n'
    + 'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n'
    + 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
    '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-extfile', 'server.ext',
    '-out', 'server.pem');
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

// A client whose incoming messages can be awaited one at a time.
async function connect(url) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20, ...tlsOptions });
  const queue = [];
  const waiters = [];
  let closedWith = null;
  ws.on('message', (data, isBinary) => {
    const item = { data, isBinary };
    if (waiters.length) waiters.shift().resolve(item);
    else queue.push(item);
  });
  ws.next = () =>
    withTimeout(
      new Promise((resolve, reject) => {
        if (queue.length) resolve(queue.shift());
        else if (closedWith) reject(new Error(`connection closed (${closedWith}) while waiting for a message`));
        else waiters.push({ resolve, reject });
      }),
      'waiting for a message',
    );
  ws.closed = new Promise((resolve) =>
    ws.on('close', (code, reason) => {
      closedWith = `${code} ${JSON.stringify(reason.toString())}`;
      for (const w of waiters.splice(0)) {
        w.reject(new Error(`connection closed (${closedWith}) while waiting for a message`));
      }
      resolve({ code, reason: reason.toString() });
    }),
  );
  ws.on('error', (e) => console.log(`# ws error: ${e.message}`));
  await withTimeout(once(ws, 'open'), 'opening handshake');
  return ws;
}

function textOf(n) {
  const unit = Buffer.from('κόσμε-');
  const out = Buffer.alloc(n, 'x');
  // multi-byte characters inside, cut at a character boundary, padded with x
  let i = 0;
  while (i + unit.length <= n) {
    unit.copy(out, i);
    i += unit.length;
  }
  return out.toString();
}

async function exchange(url) {
  const ws = await connect(url);
  for (const n of SIZES) {
    const text = textOf(n);
    ws.send(text);
    let got = await ws.next();
    report(!got.isBinary && got.data.toString() === text, `text message of ${n} bytes echoed`,
      `got ${got.isBinary ? 'binary' : 'text'} of ${got.data.length} bytes`);
    const blob = randomBytes(n);
    ws.send(blob);
    got = await ws.next();
    report(got.isBinary && Buffer.compare(got.data, blob) === 0, `binary message of ${n} bytes echoed`,
      `got ${got.isBinary ? 'binary' : 'text'} of ${got.data.length} bytes`);
  }
  // Fragmented: fin: false sends a first fragment, the next send continues.
  ws.send('frag', { fin: false });
  ws.send('mented ', { fin: false });
  ws.send('κόσμε', { fin: true });
  let got = await ws.next();
  report(!got.isBinary && got.data.toString() === 'fragmented κόσμε', 'fragmented text echoed',
    JSON.stringify(got.data.toString()));
  const parts = [randomBytes(70000), Buffer.alloc(0), randomBytes(3)];
  parts.forEach((p, i) => ws.send(p, { binary: true, fin: i === parts.length - 1 }));
  got = await ws.next();
  report(got.isBinary && Buffer.compare(got.data, Buffer.concat(parts)) === 0, 'fragmented binary echoed');

  for (const payload of [Buffer.from('interop'), Buffer.alloc(0), Buffer.from(Array.from({ length: 125 }, (_, i) => i))]) {
    const pong = once(ws, 'pong');
    ws.ping(payload);
    try {
      const [data] = await withTimeout(pong, 'pong');
      report(Buffer.compare(data, payload) === 0, `ping with ${payload.length}-byte payload answered`,
        `pong carried ${data.length} bytes`);
    } catch (e) {
      report(false, `ping with ${payload.length}-byte payload answered`, e.message);
    }
  }
  ws.close(1000, 'done');
  const { code } = await withTimeout(ws.closed, 'closing handshake');
  report(code === 1000, 'client sent Close 1000, server answered Close 1000', `got ${code}`);
}

async function serverClose(url) {
  const ws = await connect(url);
  ws.send('hello');
  const got = await ws.next();
  report(got.data.toString() === 'hello', 'echo before the server-initiated close');
  ws.send('close');
  const { code, reason } = await withTimeout(ws.closed, 'server-initiated close');
  // ws answers a Close with the code it received: 1000 back to the server.
  report(code === 1000 && reason === 'bye', "server sent Close 1000 'bye', client answered",
    `got ${code} ${JSON.stringify(reason)}`);
}

async function concurrent(url, n = 8) {
  const one = async (i) => {
    const ws = await connect(url);
    const msgs = Array.from({ length: 20 }, (_, k) => `conn ${i} msg ${k}`);
    msgs.forEach((m) => ws.send(m));
    const got = [];
    for (let k = 0; k < msgs.length; k++) got.push((await ws.next()).data.toString());
    ws.close(1000);
    const { code } = await withTimeout(ws.closed, 'close');
    return code === 1000 && got.join('|') === msgs.join('|');
  };
  const oks = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
  report(oks.every(Boolean), `${n} concurrent connections, 20 messages each, in order, Close 1000`);
}

// What the wss connection negotiated, and a client without the CA refused.
async function tlsDetails(url) {
  const ws = await connect(url);
  const socket = ws._socket;
  const version = socket.getProtocol();
  report(version === 'TLSv1.2' || version === 'TLSv1.3', 'wss over TLS 1.2+', `version ${version}`);
  const peer = socket.getPeerX509Certificate();
  const want = new X509Certificate(readFileSync(certs.cert));
  report(peer && peer.fingerprint256 === want.fingerprint256,
    'the server presents the test certificate', peer ? peer.subject : 'no certificate');
  ws.close(1000);
  await withTimeout(ws.closed, 'close');

  const stranger = new WebSocket(url);  // Node's default CAs: not ours
  const [err] = await withTimeout(once(stranger, 'error'), 'the refused handshake');
  report(err.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || err.code === 'SELF_SIGNED_CERT_IN_CHAIN'
    || err.code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    'a client without the test CA refuses the certificate', `${err.code}: ${err.message}`);
}

const argv = process.argv.slice(2);
const exeAt = argv.indexOf('--echo-exe');
if (exeAt < 0 || !argv[exeAt + 1]) {
  console.error('usage: node node_client.mjs [--tls] --echo-exe PATH');
  process.exit(2);
}
const tls = argv.includes('--tls');
const serverArgs = ['--host', '127.0.0.1', '--port', '0'];
let certs;
let tmp;
if (tls) {
  tmp = mkdtempSync(join(tmpdir(), 'spry-wss-'));
  try {
    certs = makeCertificates(tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (e.code === 'ENOENT') {
      console.log('SKIP: the openssl command is not installed');
      process.exit(77);
    }
    console.log(`could not make the test certificates: ${e.message}; ${e.stderr || ''}`);
    process.exit(1);
  }
  serverArgs.push('--cert', certs.cert, '--key', certs.key);
  tlsOptions = { ca: readFileSync(certs.ca) };
}

let server;
try {
  server = await ServerProcess.start(argv[exeAt + 1], serverArgs);
} catch (e) {
  console.log(`could not start the echo server: ${e.message}`);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  process.exit(1);
}
const url = `${tls ? 'wss' : 'ws'}://${server.host}:${server.port}/echo`;
console.log(`ws client -> ${url}`);
const steps = [exchange, serverClose, concurrent];
if (tls) steps.push(tlsDetails);
for (const step of steps) {
  try {
    await withTimeout(step(url), step.name, 30000);
  } catch (e) {
    report(false, step.name, e.message);
  }
}
const exit = await server.interrupt(STEP_TIMEOUT_MS);
if (tmp) rmSync(tmp, { recursive: true, force: true });
const status = exit ? exit.code : 'none (killed)';
report(status === 0, 'echo server exits 0 on SIGINT', `status ${status}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
