// End-to-end test of examples/chat in a real browser: Debian's chromium,
// driven by playwright-core. The server runs with --threads 2.
//   node chat_e2e.mjs --chat-exe PATH [--screenshot PATH.png]
// Prints one line per check and a last line "N passed, M failed"; exits 1 on
// a failure, 77 (skipped) when playwright-core or chromium is missing.

import {mkdirSync} from 'node:fs';
import path from 'node:path';
import {parseArgs} from 'node:util';

import {ServerProcess} from '../jslib/server_process.mjs';
import {assert, Checks, joinAs, launch, person, requireChromium, say, texts, waitFor, waitMembers,
        waitMessage, waitNotice, waitStatus} from './chat_harness.mjs';

const kBudgetMs = 55_000;   // the whole run

const {values: args} = parseArgs({
  options: {
    'chat-exe': {type: 'string'},
    'screenshot': {type: 'string'},
  },
});
if (!args['chat-exe']) {
  console.error('usage: node chat_e2e.mjs --chat-exe PATH [--screenshot PATH.png]');
  process.exit(2);
}

const chromium = requireChromium();

// ---------------------------------------------------------------- the server

// examples/chat with --threads 2, restartable on the same port.
class Server {
  constructor(exe) {
    this.exe = exe;
    this.process = null;  // a ServerProcess while running
    this.port = 0;
  }

  // Starts the server (on `port`, 0: any) and waits for its "listening on" line.
  async start(port = 0) {
    const started = await ServerProcess.start(this.exe, ['--port', String(port), '--threads', '2'],
                                              {timeoutMs: 5000, stderr: 'pipe'});
    this.process = started;
    if (started.host !== '127.0.0.1') {
      throw new Error(`listening on ${started.host}, not on 127.0.0.1 by default`);
    }
    this.port = started.port;
    return this.port;
  }

  // Ctrl-C, then the exit status ({code, signal}; null: killed after 7 s).
  async interrupt() {
    const result = await this.process.interrupt(7000);
    this.process = null;
    return result;
  }

  kill() {
    if (this.process) this.process.kill();
  }
}

// Records the page's WebSocket handshakes through the DevTools protocol (the
// 101's headers, as the browser received them) and keeps every WebSocket the
// page makes in window.__sockets (for ws.extensions).
async function watchWebSockets(page) {
  const responses = [];
  const cdp = await page.context().newCDPSession(page);
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => responses.push(e.response));
  await cdp.send('Network.enable');
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
      }
    };
  });
  return responses;
}

// The value of header `name` (any case) in a CDP headers object.
function headerOf(headers, name) {
  const key = Object.keys(headers || {}).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : headers[key];
}

const checks = new Checks();
const check = (name, fn) => checks.check(name, fn);

// ---------------------------------------------------------------- the run

const server = new Server(path.resolve(args['chat-exe']));
let browser = null;
const watchdog = setTimeout(() => {
  checks.fail(`the run took longer than ${kBudgetMs / 1000} s`);
  server.kill();
  checks.finish();
}, kBudgetMs);

try {
  const port = await server.start(0);
  const base = `http://127.0.0.1:${port}/`;
  browser = await launch(chromium);
  const alice = await person(browser);
  const bob = await person(browser);
  const carol = await person(browser);
  const dave = await person(browser);
  const aliceHandshakes = await watchWebSockets(alice);
  const bobHandshakes = await watchWebSockets(bob);

  await check('alice joins #lobby', async () => {
    await joinAs(alice, base, 'alice', 'lobby');
    await waitStatus(alice, 'online');
    await waitNotice(alice, 'You joined #lobby as alice.');
    await waitMembers(alice, ['alice']);
  });

  await check('bob joins #lobby: both see the join and the member list', async () => {
    await joinAs(bob, base, 'bob', 'lobby');
    await waitStatus(bob, 'online');
    await waitMembers(bob, ['alice', 'bob']);
    await waitNotice(alice, 'bob joined.');
    await waitMembers(alice, ['alice', 'bob']);
  });

  await check('carol joins #other', async () => {
    await joinAs(carol, base, 'carol', 'other');
    await waitStatus(carol, 'online');
    await waitMembers(carol, ['carol']);
  });

  await check('alice and bob see each other\'s messages, with timestamps', async () => {
    await say(alice, 'Hi bob, spry here.');
    await waitMessage(bob, 'alice', 'Hi bob, spry here.');
    await waitMessage(alice, 'alice', 'Hi bob, spry here.');
    await say(bob, 'Hello alice! Rooms work across loops.');
    await waitMessage(alice, 'bob', 'Hello alice! Rooms work across loops.');
    const times = await alice.locator('#messages .msg time').evaluateAll(
      (els) => els.map((t) => ({text: t.textContent, iso: t.dateTime})));
    assert(times.length >= 2 && times.every((t) => /\d/.test(t.text) && !isNaN(Date.parse(t.iso))),
           `timestamps: ${JSON.stringify(times)}`);
    const own = await alice.locator('#messages .msg.own .text').allTextContents();
    assert(own.includes('Hi bob, spry here.') && !own.includes('Hello alice! Rooms work across loops.'),
           `own messages marked: ${JSON.stringify(own)}`);
  });

  await check('the 101 negotiated permessage-deflate (the chat turns compression on)', async () => {
    for (const [page, responses] of [[alice, aliceHandshakes], [bob, bobHandshakes]]) {
      const upgrades = responses.filter((r) => r.status === 101);
      assert(upgrades.length === 1, `101 responses: ${JSON.stringify(responses)}`);
      const answer = headerOf(upgrades[0].headers, 'Sec-WebSocket-Extensions');
      assert(typeof answer === 'string' && /^permessage-deflate(;|$)/.test(answer.trim()),
             `Sec-WebSocket-Extensions: ${answer}`);
      // Shared mode: no zlib context kept either way between messages.
      assert(/server_no_context_takeover/.test(answer) && /client_no_context_takeover/.test(answer),
             `Sec-WebSocket-Extensions: ${answer}`);
      const extensions = await page.evaluate(
        () => window.__sockets.filter((s) => s.readyState === WebSocket.OPEN).map((s) => s.extensions));
      assert(extensions.length === 1 && extensions[0].startsWith('permessage-deflate'),
             `ws.extensions: ${JSON.stringify(extensions)}`);
    }
  });

  // Long enough to be sent compressed both ways (over the 64-byte threshold),
  // with multibyte text, and JSON that repeats (what deflate shrinks).
  const long = 'Ünïcödé 🙂 {"quoted": "json\\n"} <&> '.repeat(40).trim();
  await check('long compressed messages arrive intact', async () => {
    await say(alice, long);
    await waitMessage(bob, 'alice', long);
    await waitMessage(alice, 'alice', long);
    const reply = `${Array.from(long).slice(0, 300).join('')} — bob`;  // whole code points
    await say(bob, reply);
    await waitMessage(alice, 'bob', reply);
  });

  const evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b>';
  await check('a message with <script> shows as text', async () => {
    await say(alice, evil);
    await waitMessage(bob, 'alice', evil);
    const injected = await bob.evaluate(() => ({
      pwned: window.__pwned,
      elements: document.querySelectorAll('#messages script, #messages img, #messages b').length,
    }));
    assert(injected.pwned === undefined && injected.elements === 0,
           `markup was injected: ${JSON.stringify(injected)}`);
  });

  await check('#other sees none of #lobby', async () => {
    await say(carol, 'anyone in other?');
    await waitMessage(carol, 'carol', 'anyone in other?');
    await bob.waitForTimeout(300);  // time for a stray delivery to show up
    const msgs = await texts(carol, '#messages .msg .text');
    const notices = await texts(carol, '#messages .notice .what');
    const members = await texts(carol, '#members li');
    assert(JSON.stringify(msgs) === JSON.stringify(['anyone in other?']), `messages: ${msgs}`);
    assert(notices.every((n) => !n.includes('alice') && !n.includes('bob')), `notices: ${notices}`);
    assert(members.length === 1, `members: ${members}`);
    const lobby = await texts(alice, '#messages .msg .text');
    assert(!lobby.includes('anyone in other?'), 'lobby got a message of #other');
  });

  await check('a missing nickname shows the refusal', async () => {
    await joinAs(dave, base, '', 'lobby');
    await waitFor(dave, () => !document.getElementById('join-error').hidden);
    const error = await dave.textContent('#join-error');
    assert(/choose a nickname/i.test(error), `error shown: ${error}`);
    assert(await dave.isHidden('#chat'), 'the chat opened anyway');
  });

  await check('a taken nickname shows the refusal', async () => {
    await joinAs(dave, base, 'Alice', 'lobby');
    await waitFor(dave, () => /already taken/.test(document.getElementById('join-error').textContent));
  });

  if (args.screenshot) {
    await check('screenshot of the chat', async () => {
      mkdirSync(path.dirname(args.screenshot), {recursive: true});
      await alice.screenshot({path: args.screenshot});
      console.log(`     saved ${args.screenshot}`);
    });
  }

  await check('bob leaves: alice sees the notice and the member list', async () => {
    await bob.click('#leave');
    await waitNotice(alice, 'bob left.');
    await waitMembers(alice, ['alice']);
  });

  await check('a late joiner gets the room history', async () => {
    await joinAs(dave, base, 'dave', 'lobby');
    await waitStatus(dave, 'online');
    await waitMessage(dave, 'alice', 'Hi bob, spry here.');
    await waitMessage(dave, 'bob', 'Hello alice! Rooms work across loops.');
    await waitMessage(dave, 'alice', evil);
    await waitMembers(dave, ['alice', 'dave']);
  });

  await check('Ctrl-C: the page says the server went away; exit status 0', async () => {
    const result = await server.interrupt();
    assert(result && result.code === 0, `exit: ${JSON.stringify(result)}`);
    await waitNotice(alice, 'The server went away.');
    await waitFor(alice, () => ['reconnecting', 'connecting'].includes(
      document.getElementById('status').dataset.state));
    assert(await alice.isDisabled('#text'), 'the composer is still enabled');
  });

  await check('the server returns: the page reconnects by itself', async () => {
    await alice.waitForTimeout(1000);  // a failed attempt or two first
    await server.start(port);
    await waitStatus(alice, 'online');
    await waitNotice(alice, 'Reconnected to #lobby.');
    await waitStatus(dave, 'online');
    await waitMembers(alice, ['alice', 'dave']);
    await say(dave, 'back again');
    await waitMessage(alice, 'dave', 'back again');
    if (args.screenshot) {
      const after = args.screenshot.replace(/\.png$/, '') + '-reconnected.png';
      await alice.screenshot({path: after});
      console.log(`     saved ${after}`);
    }
  });

  await check('no script errors on the pages', async () => {
    const errors = [alice, bob, carol, dave].flatMap((p) => p.errors);
    assert(errors.length === 0, errors.join('\n'));
  });
} catch (e) {
  checks.fail(e && e.stack || e);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server.process) await server.interrupt();
  clearTimeout(watchdog);
}

checks.finish();
