// What the browser tests of examples/chat share: the skip rule, the chromium
// launch, the check list and its summary line, and the waits on the chat page.
// Imported by chat_e2e.mjs (http) and chat_https_e2e.mjs (https).

import {existsSync} from 'node:fs';
import {createRequire} from 'node:module';

export const kChromium = '/usr/bin/chromium';
export const kStepMs = 8_000;  // one wait in the browser

// Prints why, and exits 77: meson counts the test as skipped.
export function skip(why) {
  console.log(`SKIP: ${why}; scripts/npm-install (npm packages) and scripts/setup --all ` +
              '(chromium) install what the browser tests need');
  process.exit(77);
}

// playwright-core's chromium; skips the test when it or Debian's chromium is missing.
export function requireChromium() {
  if (!existsSync(kChromium)) skip(`${kChromium} not found`);
  try {
    const require = createRequire(import.meta.url);
    return require('playwright-core').chromium;
  } catch {
    skip('playwright-core is not installed in tests/e2e/node_modules');
  }
}

// Headless Debian chromium; `args` come after the common switches.
export function launch(chromium, args = []) {
  return chromium.launch({
    executablePath: kChromium,
    headless: true,
    timeout: 20_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run', ...args],
  });
}

// One context per person: separate connections, as separate browsers would
// have. The page collects its script errors in `page.errors`; its actions
// (fill, click...) give up after kStepMs.
export async function person(browser) {
  const context = await browser.newContext({viewport: {width: 1040, height: 640}});
  const page = await context.newPage();
  page.setDefaultTimeout(kStepMs);
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  return page;
}

// ---------------------------------------------------------------- checks

// Named checks, one line each ("ok   NAME" or "FAIL NAME" and why), and a last
// line "N passed, M failed".
export class Checks {
  constructor() {
    this.passed = 0;
    this.failed = 0;
  }

  async check(name, fn) {
    try {
      await fn();
      this.passed += 1;
      console.log(`ok   ${name}`);
    } catch (e) {
      this.fail(`${name}\n     ${String(e && e.message || e).split('\n').join('\n     ')}`);
    }
  }

  fail(what) {
    this.failed += 1;
    console.log(`FAIL ${what}`);
  }

  // Prints the summary line and exits: 1 after a failure, else 0.
  finish() {
    console.log(`${this.passed} passed, ${this.failed} failed`);
    process.exit(this.failed ? 1 : 0);
  }
}

export function assert(cond, what) {
  if (!cond) throw new Error(what);
}

// ---------------------------------------------------------------- the chat page

export const texts = (page, selector) =>
  page.locator(selector).evaluateAll((els) => els.map((e) => e.textContent.trim()));

export const waitFor = (page, fn, arg) => page.waitForFunction(fn, arg, {timeout: kStepMs});

// Waits until the member list is exactly `names` (in any order).
export function waitMembers(page, names) {
  return waitFor(page, (want) => {
    const got = [...document.querySelectorAll('#members li')].map((li) => li.firstChild.textContent);
    return got.length === want.length && want.every((n) => got.includes(n));
  }, names);
}

// Waits for a message `text` from `nick` in the list.
export function waitMessage(page, nick, text) {
  return waitFor(page, ([n, t]) => [...document.querySelectorAll('#messages .msg')].some(
    (m) => m.querySelector('.nick').textContent === n && m.querySelector('.text').textContent === t),
  [nick, text]);
}

export function waitNotice(page, text) {
  return waitFor(page, (t) => [...document.querySelectorAll('#messages .notice .what')].some(
    (w) => w.textContent === t), text);
}

export function waitStatus(page, state) {
  return waitFor(page, (s) => document.getElementById('status').dataset.state === s, state);
}

export async function joinAs(page, base, nick, room) {
  await page.goto(base, {timeout: kStepMs});
  await page.fill('#nick', nick);
  await page.fill('#room', room);
  await page.click('#join-button');
}

export async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}
