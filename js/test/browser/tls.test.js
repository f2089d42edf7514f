// End to end in headless Chromium over TLS, with users from tokens: a
// daemon with a self-signed certificate made by the test (trusted on
// Chromium's command line by its public key's hash), an Ed25519 token
// issuer made by the test, and --require-token. A page of
// https://localhost:<port> connects with no URL (so over wss://, as its
// page is https://) and alice's token, and serves an object; another page
// of alice's calls it and sees her name; a second browser context, bob's,
// is refused by the default rule; alice renews her token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { startDaemon } from '../daemon.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** The example that makes certificates (built by make test-browser). */
const TEST_CERT = process.env.WSPR_TEST_CERT ?? path.join(repo, 'target', 'debug', 'examples', 'test_cert');
const AUDIENCE = 'https://wspr.test';

let dir;
let daemon;
let browser;
let issuer;

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** A token of the test's issuer for `sub`, valid for `secs` seconds. */
function token(sub, secs = 600) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'EdDSA', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({ iss: 'acme', sub, aud: AUDIENCE, iat: now, exp: now + secs }));
  const sig = crypto.sign(null, Buffer.from(`${header}.${claims}`), issuer.privateKey);
  return `${header}.${claims}.${b64url(sig)}`;
}

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: make test-browser installs it (apt-get install chromium)`);
  assert.ok(fs.existsSync(TEST_CERT), `${TEST_CERT} is missing: cargo build --example test_cert (make test-browser does)`);
  dir = fs.mkdtempSync(path.join(repo, 'target', 'tmp-tls-'));
  // (Also if the run is cut short.)
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  execFileSync(TEST_CERT, [dir, 'localhost', '127.0.0.1']);
  issuer = crypto.generateKeyPairSync('ed25519');
  fs.writeFileSync(path.join(dir, 'acme.pem'), issuer.publicKey.export({ type: 'spki', format: 'pem' }));
  daemon = await startDaemon([
    '--tls-cert', path.join(dir, 'cert.pem'),
    '--tls-key', path.join(dir, 'key.pem'),
    '--token-issuer', `acme=${path.join(dir, 'acme.pem')}`,
    '--token-audience', AUDIENCE,
    '--require-token',
  ]);
  // Chromium trusts the certificate by the hash of its public key.
  const cert = new crypto.X509Certificate(fs.readFileSync(path.join(dir, 'cert.pem')));
  const spki = crypto.createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
  });
});

after(async () => {
  await browser?.close();
  await daemon?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A page of the daemon's https origin, in `ctx`, with wspr.js loaded as `window.wspr`. */
async function openPage(ctx) {
  const page = await ctx.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const res = await page.goto(`https://localhost:${daemon.address.split(':').pop()}/health`);
  assert.equal(res.status(), 200);
  await page.evaluate(async () => {
    window.wspr = await import('/wspr.js');
  });
  return { page, problems };
}

test('a page over https serves as its user; her other page calls it; another user is refused', async () => {
  assert.match(daemon.http, /^https:\/\//);
  const alice = await browser.newContext();
  const bob = await browser.newContext();
  try {
    const { page: server, problems } = await openPage(alice);
    const got = await server.evaluate(async (t) => {
      const rt = await window.wspr.connect(undefined, { token: t });
      window.rt = rt;
      await rt.serve('alice/who', {
        who(ctx) {
          return ctx.remoteId.names;
        },
      });
      return { url: rt.url, identity: rt.identity };
    }, token('alice'));
    assert.match(got.url, /^wss:\/\/localhost:\d+\/ws$/);
    assert.equal(got.identity.names.length, 1);
    assert.match(got.identity.names[0], /\/https:localhost:\d+\/acme:alice$/);
    assert.ok(got.identity.expiresAt > Date.now() + 500_000);
    const aliceName = got.identity.names[0];

    // Alice's other page calls it, and is seen as alice.
    const { page: caller } = await openPage(alice);
    const seen = await caller.evaluate(async (t) => {
      const rt = await window.wspr.connect(undefined, { token: t });
      const who = await rt.bindTo('alice/who');
      const names = await who.who();
      rt.close();
      return names;
    }, token('alice'));
    assert.deepEqual(seen, [aliceName]);

    // Bob, in another browser context, is refused by the default rule.
    const { page: stranger } = await openPage(bob);
    const refused = await stranger.evaluate(async (t) => {
      const rt = await window.wspr.connect(undefined, { token: t });
      try {
        await rt.call('alice/who', 'who', []);
        return 'allowed';
      } catch (e) {
        return { name: e.name, id: e.id, bob: rt.identity.names[0] };
      } finally {
        rt.close();
      }
    }, token('bob'));
    assert.equal(refused.name, 'NoAccessError', JSON.stringify(refused));
    assert.match(refused.bob, /\/acme:bob$/);

    // A page without a token is refused its first request, and its pipe
    // closed (--require-token).
    const anonymous = await stranger.evaluate(async () => {
      const rt = await window.wspr.connect(undefined, { reconnect: false });
      try {
        await rt.call('alice/who', 'who', []);
        return 'allowed';
      } catch (e) {
        const closed = await rt.closed;
        return { name: e.name, closed: closed.message };
      }
    });
    assert.equal(anonymous.name, 'NoAccessError', JSON.stringify(anonymous));
    assert.match(anonymous.closed, /1008/);

    // Alice renews her token; her server goes on.
    const renewed = await server.evaluate(async (t) => (await window.rt.refreshToken(t)).expiresAt, token('alice', 1200));
    assert.ok(renewed > got.identity.expiresAt);
    const again = await caller.evaluate(async (t) => {
      const rt = await window.wspr.connect(undefined, { token: t });
      const names = await rt.call('alice/who', 'who', []);
      rt.close();
      return names;
    }, token('alice'));
    assert.deepEqual(again, [[aliceName]]);
    // A renewal for bob on alice's pipe is refused.
    const wrong = await server.evaluate(async (t) => {
      try {
        await window.rt.refreshToken(t);
        return 'taken';
      } catch (e) {
        return e.name;
      }
    }, token('bob'));
    assert.equal(wrong, 'NoAccessError');
    assert.deepEqual(problems, []);
  } finally {
    await alice.close();
    await bob.close();
  }
});
