// End-to-end test of examples/chat over https and wss in a real browser:
// Debian's chromium, driven by playwright-core. The test makes its own CA and
// server certificate with the `openssl` command in a temporary directory, and
// chromium trusts exactly that server key: --ignore-certificate-errors-spki-list
// pinned to the key's SubjectPublicKeyInfo hash (never a blanket
// --ignore-certificate-errors). Then the certificate is reissued for the same
// key and the server gets SIGHUP: new connections get the new certificate, the
// open sockets carry on.
//   node chat_https_e2e.mjs --chat-exe PATH [--screenshot PATH.png]
// Prints one line per check and a last line "N passed, M failed"; exits 1 on
// a failure, 77 (skipped) when playwright-core, chromium or openssl is missing.

import {execFileSync} from 'node:child_process';
import {createHash, X509Certificate} from 'node:crypto';
import {mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync} from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import {parseArgs} from 'node:util';

import {ServerProcess} from '../jslib/server_process.mjs';
import {assert, Checks, joinAs, kStepMs, launch, person, requireChromium, say, skip, waitFor,
        waitMembers, waitMessage, waitNotice, waitStatus} from './chat_harness.mjs';

const kBudgetMs = 60_000;  // the whole run
const kSubject = 'spry e2e server';
const kReissuedSubject = 'spry e2e server, reissued';

const {values: args} = parseArgs({
  options: {
    'chat-exe': {type: 'string'},
    'screenshot': {type: 'string'},
  },
});
if (!args['chat-exe']) {
  console.error('usage: node chat_https_e2e.mjs --chat-exe PATH [--screenshot PATH.png]');
  process.exit(2);
}

const chromium = requireChromium();
try {
  execFileSync('openssl', ['version'], {stdio: 'ignore'});
} catch {
  skip('the openssl command is missing');
}

// ---------------------------------------------------------------- certificates

// A throwaway CA and a server certificate for 127.0.0.1 and localhost, made
// with the openssl command in `dir`. EC P-256 keys: quick to make.
class TestPki {
  constructor(dir) {
    this.dir = dir;
    this.caCert = path.join(dir, 'ca.pem');
    this.caKey = path.join(dir, 'ca.key');
    this.cert = path.join(dir, 'server.pem');
    this.key = path.join(dir, 'server.key');
    this.serial = 1000;
    const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    this.openssl(['req', '-x509', ...ecKey, '-keyout', this.caKey, '-out', this.caCert,
                  '-days', '2', '-subj', '/CN=spry e2e test CA',
                  '-addext', 'basicConstraints=critical,CA:TRUE',
                  '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    this.openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256',
                  '-out', this.key]);
    writeFileSync(path.join(dir, 'server.ext'),
                  'subjectAltName = IP:127.0.0.1, DNS:localhost\n' +
                  'basicConstraints = critical, CA:FALSE\n' +
                  'keyUsage = critical, digitalSignature\n' +
                  'extendedKeyUsage = serverAuth\n');
  }

  openssl(argv, input) {
    return execFileSync('openssl', argv, {cwd: this.dir, input, stdio: ['pipe', 'pipe', 'pipe']});
  }

  // Signs a new certificate with subject CN `cn` for the server key and puts
  // it in place of `this.cert` (a rename: the server never reads half a file).
  issue(cn) {
    const csr = path.join(this.dir, 'server.csr');
    const next = path.join(this.dir, 'server.pem.new');
    this.openssl(['req', '-new', '-key', this.key, '-subj', `/CN=${cn}`, '-out', csr]);
    this.serial += 1;
    this.openssl(['x509', '-req', '-in', csr, '-CA', this.caCert, '-CAkey', this.caKey,
                  '-set_serial', String(this.serial), '-days', '2',
                  '-extfile', path.join(this.dir, 'server.ext'), '-out', next]);
    renameSync(next, this.cert);
    return new X509Certificate(readFileSync(this.cert));
  }

  // base64(sha256(SubjectPublicKeyInfo)) of the key in `certFile`: what
  // --ignore-certificate-errors-spki-list takes. The openssl pipeline
  //   openssl x509 -pubkey -noout -in CERT | openssl pkey -pubin -outform der |
  //   openssl dgst -sha256 -binary | base64
  // one step at a time.
  spkiHash(certFile) {
    const pem = this.openssl(['x509', '-pubkey', '-noout', '-in', certFile]);
    const der = this.openssl(['pkey', '-pubin', '-outform', 'der'], pem);
    const digest = this.openssl(['dgst', '-sha256', '-binary'], der);
    return digest.toString('base64');
  }
}

// ---------------------------------------------------------------- the server

// The certificate a fresh TLS connection to 127.0.0.1:`port` gets, verified
// against the test CA (and so for IP 127.0.0.1).
function servedCertificate(port, ca) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({host: '127.0.0.1', port, ca, ALPNProtocols: ['http/1.1'],
                              timeout: kStepMs});
    sock.once('secureConnect', () => {
      const cert = sock.getPeerX509Certificate();
      const alpn = sock.alpnProtocol;
      sock.end();
      resolve({cert, alpn});
    });
    sock.once('timeout', () => sock.destroy(new Error('TLS handshake timed out')));
    sock.once('error', reject);
  });
}

// GET /chat/ROOM?nick=NICK over https with `origin` in Origin: the status code.
function askToJoin(port, ca, room, nick, origin) {
  return new Promise((resolve, reject) => {
    const req = https.get({host: '127.0.0.1', port, ca, agent: false, timeout: kStepMs,
                           path: `/chat/${room}?nick=${encodeURIComponent(nick)}`,
                           headers: {Origin: origin}}, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode));
    });
    req.once('timeout', () => req.destroy(new Error('no answer')));
    req.once('error', reject);
  });
}

// ---------------------------------------------------------------- the run

const checks = new Checks();
const check = (name, fn) => checks.check(name, fn);

const dir = mkdtempSync(path.join(os.tmpdir(), 'spry-chat-https-'));
let server = null;  // a ServerProcess
let browser = null;
const cleanUp = () => {
  if (server) server.kill();
  rmSync(dir, {recursive: true, force: true});
};
const watchdog = setTimeout(() => {
  checks.fail(`the run took longer than ${kBudgetMs / 1000} s`);
  cleanUp();
  checks.finish();
}, kBudgetMs);

try {
  const pki = new TestPki(dir);
  const first = pki.issue(kSubject);
  const ca = readFileSync(pki.caCert);
  const pin = pki.spkiHash(pki.cert);
  const nodePin = createHash('sha256')
                      .update(first.publicKey.export({type: 'spki', format: 'der'}))
                      .digest('base64');
  assert(pin === nodePin, `SPKI hash: openssl says ${pin}, node says ${nodePin}`);

  server = await ServerProcess.start(
      path.resolve(args['chat-exe']),
      ['--cert', pki.cert, '--key', pki.key, '--port', '0', '--threads', '2'],
      {timeoutMs: 5000, stderr: 'pipe'});
  const port = server.port;
  const base = `https://127.0.0.1:${port}/`;
  const origin = `https://127.0.0.1:${port}`;

  await check('the server speaks TLS with the test certificate (SAN IP:127.0.0.1), ALPN http/1.1',
              async () => {
    const {cert, alpn} = await servedCertificate(port, ca);
    assert(cert.fingerprint256 === first.fingerprint256, `served: ${cert.subject}`);
    assert(alpn === 'http/1.1', `ALPN: ${alpn}`);
  });

  await check('chromium pinned to another key refuses the certificate', async () => {
    const other = path.join(dir, 'other.pem');
    pki.openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
                 '-keyout', path.join(dir, 'other.key'), '-out', other, '-days', '2',
                 '-subj', '/CN=someone else']);
    const otherPin = pki.spkiHash(other);
    const wrong = await launch(chromium, [`--ignore-certificate-errors-spki-list=${otherPin}`]);
    try {
      const page = await person(wrong);
      const error = await page.goto(base, {timeout: kStepMs}).then(() => null, (e) => e);
      assert(error && /ERR_CERT_/.test(error.message),
             `the page loaded, or failed otherwise: ${error && error.message}`);
    } finally {
      await wrong.close();
    }
  });

  browser = await launch(chromium, [`--ignore-certificate-errors-spki-list=${pin}`]);
  const sockets = new Map();  // page -> URLs of the WebSockets it opened
  const visitor = async () => {
    const page = await person(browser);
    sockets.set(page, []);
    page.on('websocket', (ws) => sockets.get(page).push(ws.url()));
    return page;
  };
  const alice = await visitor();
  const bob = await visitor();

  await check('the pinned key is trusted: the page loads over https', async () => {
    const response = await alice.goto(base, {timeout: kStepMs});
    assert(response.ok(), `status ${response.status()}`);
    const details = await response.securityDetails();
    assert(details && details.subjectName === kSubject, `certificate: ${JSON.stringify(details)}`);
    assert(/^TLS 1\.[23]$/.test(details.protocol), `protocol: ${details.protocol}`);
    const protocol = await alice.evaluate(() => location.protocol);
    assert(protocol === 'https:', `location.protocol: ${protocol}`);
  });

  await check('its own https origin may join; http:// and foreign origins may not', async () => {
    const own = await askToJoin(port, ca, 'probe', 'zed', origin);
    const plain = await askToJoin(port, ca, 'probe', 'zed', `http://127.0.0.1:${port}`);
    const foreign = await askToJoin(port, ca, 'probe', 'zed', 'https://evil.example');
    assert(own === 200 && plain === 403 && foreign === 403,
           `${origin}: ${own}; http://127.0.0.1:${port}: ${plain}; https://evil.example: ${foreign}`);
  });

  await check('alice and bob join #secure over wss', async () => {
    await joinAs(alice, base, 'alice', 'secure');
    await waitStatus(alice, 'online');
    await waitNotice(alice, 'You joined #secure as alice.');
    await joinAs(bob, base, 'bob', 'secure');
    await waitStatus(bob, 'online');
    await waitMembers(bob, ['alice', 'bob']);
    await waitNotice(alice, 'bob joined.');
    await waitMembers(alice, ['alice', 'bob']);
    for (const page of [alice, bob]) {
      const urls = sockets.get(page);
      assert(urls.length === 1 && urls[0].startsWith(`wss://127.0.0.1:${port}/chat/secure?`),
             `WebSockets opened: ${JSON.stringify(urls)}`);
    }
  });

  await check('messages go both ways', async () => {
    await say(alice, 'Hi bob, over TLS.');
    await waitMessage(bob, 'alice', 'Hi bob, over TLS.');
    await say(bob, 'Hello alice, wss here.');
    await waitMessage(alice, 'bob', 'Hello alice, wss here.');
  });

  let reissued = null;
  await check('SIGHUP after reissuing the certificate: new connections get the new one', async () => {
    reissued = pki.issue(kReissuedSubject);
    assert(pki.spkiHash(pki.cert) === pin, 'the reissued certificate has another key');
    server.proc.kill('SIGHUP');
    const deadline = Date.now() + 5000;
    let served = null;
    for (;;) {
      const error = await servedCertificate(port, ca).then((s) => { served = s.cert; }, (e) => e);
      const exit = await Promise.race([server.exited, new Promise((r) => setTimeout(r, 50))]);
      assert(!exit, `the server exited on SIGHUP: ${JSON.stringify(exit)}; stderr: ${server.stderr}`);
      if (error) throw error;
      if (served.fingerprint256 === reissued.fingerprint256) break;
      assert(Date.now() < deadline, `still served after 5 s: ${served.subject}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });

  await check('after the reload: the open sockets carry on', async () => {
    await say(alice, 'still here after the reload?');
    await waitMessage(bob, 'alice', 'still here after the reload?');
    await say(bob, 'yes, same socket.');
    await waitMessage(alice, 'bob', 'yes, same socket.');
    for (const page of [alice, bob]) {
      assert(await page.evaluate(() => document.getElementById('status').dataset.state) === 'online',
             'a page is no longer online');
      assert(sockets.get(page).length === 1, `reconnected: ${JSON.stringify(sockets.get(page))}`);
      const notices = await page.locator('#messages .notice .what').allTextContents();
      assert(!notices.some((n) => /lost|went away|Reconnected/.test(n)), `notices: ${notices}`);
    }
  });

  await check('after the reload: a new visitor loads the page with the new certificate and joins',
              async () => {
    const carol = await visitor();  // a fresh context: no TLS session to resume
    const response = await carol.goto(base, {timeout: kStepMs});
    const details = await response.securityDetails();
    assert(details && details.subjectName === kReissuedSubject,
           `certificate: ${JSON.stringify(details)}`);
    await joinAs(carol, base, 'carol', 'secure');
    await waitStatus(carol, 'online');
    await waitMembers(carol, ['alice', 'bob', 'carol']);
    await waitNotice(alice, 'carol joined.');
    await say(carol, 'hello from a new connection');
    await waitMessage(alice, 'carol', 'hello from a new connection');
    await waitMessage(bob, 'carol', 'hello from a new connection');
    const urls = sockets.get(carol);
    assert(urls.length === 1 && urls[0].startsWith('wss://'), `WebSockets: ${JSON.stringify(urls)}`);
  });

  if (args.screenshot) {
    await check('screenshot of the chat over https', async () => {
      mkdirSync(path.dirname(args.screenshot), {recursive: true});
      await alice.screenshot({path: args.screenshot});
      console.log(`     saved ${args.screenshot}`);
    });
  }

  await check('Ctrl-C: the page says the server went away; exit status 0', async () => {
    const result = await server.interrupt(7000);
    server = null;
    assert(result && result.code === 0, `exit: ${JSON.stringify(result)}`);
    await waitNotice(alice, 'The server went away.');
  });

  await check('no script errors on the pages', async () => {
    const errors = [...sockets.keys()].flatMap((p) => p.errors);
    assert(errors.length === 0, errors.join('\n'));
  });
} catch (e) {
  checks.fail(e && e.stack || e);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server) await server.interrupt(7000);
  clearTimeout(watchdog);
  cleanUp();
}

checks.finish();
