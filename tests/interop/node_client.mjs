// Interop: Node's `ws` client (an independent RFC 6455 implementation)
// against spry's examples/echo.
//
// Starts the echo server on port 0, exchanges text and binary messages of
// several sizes, pings, closes from both sides asserting close code 1000,
// then stops the server with SIGINT and requires exit status 0. Exits 77
// (Meson's skip) when node_modules is missing: run `npm ci` in tests/interop.
//
//   node node_client.mjs --echo-exe build/examples/echo

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';

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

// A client whose incoming messages can be awaited one at a time.
async function connect(url) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20 });
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

const argv = process.argv.slice(2);
const exeAt = argv.indexOf('--echo-exe');
if (exeAt < 0 || !argv[exeAt + 1]) {
  console.error('usage: node node_client.mjs --echo-exe PATH');
  process.exit(2);
}

let server;
try {
  server = await ServerProcess.start(argv[exeAt + 1], ['--host', '127.0.0.1', '--port', '0']);
} catch (e) {
  console.log(`could not start the echo server: ${e.message}`);
  process.exit(1);
}
const url = `ws://${server.host}:${server.port}/echo`;
console.log(`ws client -> ${url}`);
for (const step of [exchange, serverClose, concurrent]) {
  try {
    await withTimeout(step(url), step.name, 30000);
  } catch (e) {
    report(false, step.name, e.message);
  }
}
const exit = await server.interrupt(STEP_TIMEOUT_MS);
const status = exit ? exit.code : 'none (killed)';
report(status === 0, 'echo server exits 0 on SIGINT', `status ${status}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
