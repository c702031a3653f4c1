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
// With --deflate, permessage-deflate (RFC 7692) in both directions instead:
// against the server started with --compression shared, then dedicated,
// the client offers perMessageDeflate, checks the negotiated
// Sec-WebSocket-Extensions (the upgrade response's header) against what
// each mode answers, sends compressed messages (threshold 0) and checks on
// the socket's byte counters that compressible messages go out and come
// back compressed; also fragmented, small uncompressed messages on the same
// connection, an offer limiting the server's window to 10 bits (ws then
// inflates with that window), concurrent connections. Against the server
// started without --compression the offer must be declined.
//
//   node node_client.mjs [--tls] [--deflate] --echo-exe build/examples/echo

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
async function connect(url, options = {}) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20, ...tlsOptions,
    ...options });
  ws.once('upgrade', (res) => { ws.extensionsHeader = res.headers['sec-websocket-extensions']; });
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

// -- permessage-deflate (--deflate) ------------------------------------------

let mode = 'off';  // the server's --compression mode

function jsonText(n, seed) {
  const out = [];
  let size = 0;
  for (let i = 0; size < n; i++) {
    const line = `${JSON.stringify({ id: i, seed, user: ['zoë', 'bob', '李雷'][i % 3],
      text: `message ${i} in room ${i % 7}: κόσμε` })}\n`;
    out.push(line);
    size += Buffer.byteLength(line);
  }
  return out.join('');
}

// The parameters of a Sec-WebSocket-Extensions answer: [name, [params]].
function parseExtensions(header) {
  if (!header) return null;
  const parts = header.split(';').map((p) => p.trim());
  return [parts[0], parts.slice(1)];
}

// Sends `data`, awaits the echo; returns it with the wire bytes each way.
async function measuredEcho(ws, data, options = {}) {
  const sock = ws._socket;
  const [w0, r0] = [sock.bytesWritten, sock.bytesRead];
  ws.send(data, options);
  const got = await ws.next();
  return { got, written: sock.bytesWritten - w0, read: sock.bytesRead - r0 };
}

async function deflateNegotiated(url) {
  const ws = await connect(url, { perMessageDeflate: { threshold: 0 } });
  const ext = parseExtensions(ws.extensionsHeader);
  report(ext && ext[0] === 'permessage-deflate' && ws.extensions === 'permessage-deflate',
    `${mode}: permessage-deflate negotiated`, `header ${ws.extensionsHeader}`);
  const params = ext ? ext[1] : [];
  if (mode === 'shared') {
    report(params.includes('server_no_context_takeover') && params.includes('client_no_context_takeover'),
      'shared: the answer has server_ and client_no_context_takeover', params.join('; '));
  } else {
    report(params.includes('client_no_context_takeover') && !params.includes('server_no_context_takeover'),
      'dedicated: client_no_context_takeover only (the server keeps its context)', params.join('; '));
  }
  // Compressible text both ways: the wire carries far fewer bytes than the message.
  for (const n of [1024, 65536, 1 << 20]) {
    const text = jsonText(n, n);
    const { got, written, read } = await measuredEcho(ws, text);
    const len = Buffer.byteLength(text);
    report(!got.isBinary && got.data.toString() === text, `${mode}: ${len}-byte JSON text echoed`);
    report(written < len / 2, `${mode}: the client sent it compressed`, `${written} wire bytes for ${len}`);
    report(read < len / 2, `${mode}: the server echoed it compressed`, `${read} wire bytes for ${len}`);
  }
  for (const n of [0, 1, 125, 126, 65536, 1 << 20]) {
    const blob = randomBytes(n);
    ws.send(blob);
    const got = await ws.next();
    report(got.isBinary && Buffer.compare(got.data, blob) === 0, `${mode}: random binary of ${n} bytes echoed`);
    const text = textOf(n);
    ws.send(text);
    const got2 = await ws.next();
    report(!got2.isBinary && got2.data.toString() === text, `${mode}: text of ${n} bytes echoed`);
  }
  // Fragmented compressed messages: ws compresses each fragment into the same stream.
  ws.send('frag', { fin: false });
  ws.send('mented ', { fin: false });
  ws.send('κόσμε', { fin: true });
  let got = await ws.next();
  report(!got.isBinary && got.data.toString() === 'fragmented κόσμε', `${mode}: fragmented compressed text echoed`,
    JSON.stringify(got.data.toString()));
  const parts = [Buffer.from(jsonText(70000, 2)), Buffer.alloc(0), randomBytes(3)];
  parts.forEach((p, i) => ws.send(p, { binary: true, fin: i === parts.length - 1 }));
  got = await ws.next();
  report(got.isBinary && Buffer.compare(got.data, Buffer.concat(parts)) === 0,
    `${mode}: fragmented compressed binary echoed`);
  // Uncompressed messages on the same connection (compress: false).
  const plain = jsonText(5000, 9);
  const m = await measuredEcho(ws, plain, { compress: false });
  report(m.got.data.toString() === plain && m.written > Buffer.byteLength(plain),
    `${mode}: an uncompressed message on a compressing connection echoed`, `${m.written} bytes written`);
  const pong = once(ws, 'pong');
  ws.ping(Buffer.from('deflate'));
  const [data] = await withTimeout(pong, 'pong');
  report(data.toString() === 'deflate', `${mode}: ping answered`);
  ws.close(1000, 'done');
  const { code } = await withTimeout(ws.closed, 'closing handshake');
  report(code === 1000, `${mode}: Close 1000 answered`, `got ${code}`);
}

async function deflateLimitedWindow(url) {
  const ws = await connect(url, { perMessageDeflate: { threshold: 0, serverMaxWindowBits: 10,
    serverNoContextTakeover: true, clientNoContextTakeover: true } });
  const ext = parseExtensions(ws.extensionsHeader);
  const params = ext ? ext[1] : [];
  const bits = params.find((p) => p.startsWith('server_max_window_bits='));
  report(bits && Number(bits.split('=')[1]) <= 10 && params.includes('server_no_context_takeover'),
    `${mode}: server_max_window_bits=10 and server_no_context_takeover honored`, ws.extensionsHeader);
  const text = jsonText(256 << 10, 5) + randomBytes(300).toString('hex').repeat(8);
  for (let i = 0; i < 3; i++) {
    const { got, read } = await measuredEcho(ws, text);
    report(got.data.toString() === text && read < text.length / 2,
      `${mode}: ${text.length}-byte text echoed compressed, inflated with a 10-bit window`, `${read} bytes read`);
  }
  ws.close(1000);
  await withTimeout(ws.closed, 'close');
}

async function deflateConcurrent(url, n = 8) {
  const one = async (i) => {
    const ws = await connect(url, { perMessageDeflate: true });
    const msgs = Array.from({ length: 20 }, (_, k) => jsonText(2000 + 100 * k, i * 100 + k));
    msgs.forEach((m) => ws.send(m));
    const got = [];
    for (let k = 0; k < msgs.length; k++) got.push((await ws.next()).data.toString());
    ws.close(1000);
    const { code } = await withTimeout(ws.closed, 'close');
    return code === 1000 && got.join('|') === msgs.join('|');
  };
  const oks = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
  report(oks.every(Boolean), `${mode}: ${n} concurrent compressing connections, 20 messages each, in order`);
}

async function deflateOff(url) {
  const ws = await connect(url, { perMessageDeflate: true });
  report(ws.extensionsHeader === undefined && ws.extensions === '',
    'off: the offer is declined, nothing negotiated', `header ${ws.extensionsHeader}`);
  const text = jsonText(5000, 4);
  ws.send(text);
  const got = await ws.next();
  report(got.data.toString() === text, 'off: text echoed without the extension');
  ws.close(1000);
  const { code } = await withTimeout(ws.closed, 'close');
  report(code === 1000, 'off: Close 1000');
}

const argv = process.argv.slice(2);
const exeAt = argv.indexOf('--echo-exe');
if (exeAt < 0 || !argv[exeAt + 1]) {
  console.error('usage: node node_client.mjs [--tls] [--deflate] --echo-exe PATH');
  process.exit(2);
}
const tls = argv.includes('--tls');
const deflate = argv.includes('--deflate');
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

const runs = [];
if (!deflate) {
  runs.push(['off', serverArgs, tls ? [exchange, serverClose, concurrent, tlsDetails]
    : [exchange, serverClose, concurrent]]);
} else {
  const steps = [deflateNegotiated, deflateLimitedWindow, deflateConcurrent];
  runs.push(['shared', [...serverArgs, '--compression', 'shared'], steps]);
  runs.push(['dedicated', [...serverArgs, '--compression', 'dedicated'], steps]);
  runs.push(['off', serverArgs, [deflateOff]]);
}
for (const [runMode, args, steps] of runs) {
  mode = runMode;
  let server;
  try {
    server = await ServerProcess.start(argv[exeAt + 1], args);
  } catch (e) {
    report(false, `start the echo server ${args.join(' ')}`, e.message);
    continue;
  }
  const url = `${tls ? 'wss' : 'ws'}://${server.host}:${server.port}/echo`;
  console.log(`ws client -> ${url} (${args.join(' ')})`);
  for (const step of steps) {
    try {
      await withTimeout(step(url), step.name, 30000);
    } catch (e) {
      report(false, `${deflate ? `${mode}: ` : ''}${step.name}`, e.message);
    }
  }
  const exit = await server.interrupt(STEP_TIMEOUT_MS);
  const status = exit ? exit.code : 'none (killed)';
  report(status === 0, `echo server${deflate ? ` (${mode})` : ''} exits 0 on SIGINT`, `status ${status}`);
}
if (tmp) rmSync(tmp, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
