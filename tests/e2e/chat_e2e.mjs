// End-to-end test of examples/chat in a real browser: Debian's chromium,
// driven by playwright-core. The server runs with --threads 2.
//   node chat_e2e.mjs --chat-exe PATH [--screenshot PATH.png]
// Prints one line per check and a last line "N passed, M failed"; exits 1 on
// a failure, 77 (skipped) when playwright-core or chromium is missing.

import {existsSync, mkdirSync} from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import {parseArgs} from 'node:util';

import {ServerProcess} from '../jslib/server_process.mjs';

const kChromium = '/usr/bin/chromium';
const kBudgetMs = 55_000;   // the whole run
const kStepMs = 8_000;      // one wait in the browser

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

function skip(why) {
  console.log(`SKIP: ${why}; scripts/npm-install (npm packages) and scripts/setup --all ` +
              '(chromium) install what the browser tests need');
  process.exit(77);
}

if (!existsSync(kChromium)) skip(`${kChromium} not found`);
let chromium;
try {
  const require = createRequire(import.meta.url);
  ({chromium} = require('playwright-core'));
} catch {
  skip('playwright-core is not installed in tests/e2e/node_modules');
}

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

// ---------------------------------------------------------------- checks

let passed = 0;
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}\n     ${String(e && e.message || e).split('\n').join('\n     ')}`);
  }
}

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

const texts = (page, selector) =>
  page.locator(selector).evaluateAll((els) => els.map((e) => e.textContent.trim()));

const waitFor = (page, fn, arg) => page.waitForFunction(fn, arg, {timeout: kStepMs});

// Waits until the member list is exactly `names` (in any order).
function waitMembers(page, names) {
  return waitFor(page, (want) => {
    const got = [...document.querySelectorAll('#members li')].map((li) => li.firstChild.textContent);
    return got.length === want.length && want.every((n) => got.includes(n));
  }, names);
}

// Waits for a message `text` from `nick` in the list.
function waitMessage(page, nick, text) {
  return waitFor(page, ([n, t]) => [...document.querySelectorAll('#messages .msg')].some(
    (m) => m.querySelector('.nick').textContent === n && m.querySelector('.text').textContent === t),
  [nick, text]);
}

function waitNotice(page, text) {
  return waitFor(page, (t) => [...document.querySelectorAll('#messages .notice .what')].some(
    (w) => w.textContent === t), text);
}

function waitStatus(page, state) {
  return waitFor(page, (s) => document.getElementById('status').dataset.state === s, state);
}

async function joinAs(page, base, nick, room) {
  await page.goto(base, {timeout: kStepMs});
  await page.fill('#nick', nick);
  await page.fill('#room', room);
  await page.click('#join-button');
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

// ---------------------------------------------------------------- the run

const server = new Server(path.resolve(args['chat-exe']));
let browser = null;
const watchdog = setTimeout(() => {
  console.log(`FAIL the run took longer than ${kBudgetMs / 1000} s`);
  server.kill();
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, kBudgetMs);

try {
  const port = await server.start(0);
  const base = `http://127.0.0.1:${port}/`;
  browser = await chromium.launch({
    executablePath: kChromium,
    headless: true,
    timeout: 20_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  // One context per person: separate connections, as separate browsers would have.
  const person = async () => {
    const context = await browser.newContext({viewport: {width: 1040, height: 640}});
    const page = await context.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(String(e)));
    return page;
  };
  const alice = await person();
  const bob = await person();
  const carol = await person();
  const dave = await person();

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
  failed += 1;
  console.log(`FAIL ${e && e.stack || e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server.process) await server.interrupt();
  clearTimeout(watchdog);
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
