// Reference echo server on Node's `ws` package (an independent RFC 6455
// implementation), used to calibrate tests/conformance.
//
// Same contract as spry's examples/echo: prints "listening on
// http://HOST:PORT/" first, echoes text as text and binary as binary, the
// text message "close" makes it close with 1000 "bye", exits 0 on SIGINT or
// SIGTERM. Exits 77 (Meson's skip) when node_modules is missing.
//
// --deflate turns on permessage-deflate with ws's defaults (context takeover
// both ways unless the client asks otherwise, any window the client offers,
// messages of 1 KiB and more compressed); maxPayload then limits the
// inflated size.
//
//   node ws_echo_server.mjs [--host 127.0.0.1] [--port 0] [--max-message-bytes N] [--deflate]

let WebSocketServer;
try {
  ({ WebSocketServer } = await import('ws'));
} catch (e) {
  console.error(`the ws package is missing: run \`npm ci\` in tests/interop (${e.message})`);
  process.exit(77);
}

const opts = { host: '127.0.0.1', port: 0, maxMessageBytes: 16 * 1024 * 1024, deflate: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const [flag, value] = [argv[i], argv[i + 1]];
  if (flag === '--deflate') {
    opts.deflate = true;
    i -= 1;
  } else if (flag === '--host') opts.host = value;
  else if (flag === '--port') opts.port = Number(value);
  else if (flag === '--max-message-bytes') opts.maxMessageBytes = Number(value);
  else {
    console.error(`unknown flag ${flag}`);
    process.exit(2);
  }
}

const wss = new WebSocketServer({
  host: opts.host,
  port: opts.port,
  maxPayload: opts.maxMessageBytes,
  perMessageDeflate: opts.deflate,
});

wss.on('listening', () => {
  process.stdout.write(`listening on http://${opts.host}:${wss.address().port}/\n`);
});

wss.on('connection', (ws) => {
  ws.on('error', () => {}); // protocol errors close the socket; nothing to report
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === 'close') {
      ws.close(1000, 'bye');
      return;
    }
    ws.send(data, { binary: isBinary });
  });
});

function shutdown() {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
