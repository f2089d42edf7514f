// Users from tokens, from the library's side: connect({token}) makes the
// pipe its user's (rt.identity), a refused token rejects connect, a token
// function's token is renewed before it expires and fetched again for a
// reconnect, refreshToken takes the same user's token only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { connect, BadArgError, NoAccessError } from '../wspr.js';
import { startDaemon, waitFor } from './daemon.js';

const AUDIENCE = 'https://wspr.test';
let dir;
let issuer;
let daemonArgs;

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function token(sub, secs = 600, iss = 'acme') {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'EdDSA', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({ iss, sub, aud: AUDIENCE, iat: now, exp: now + secs }));
  const sig = crypto.sign(null, Buffer.from(`${header}.${claims}`), issuer.privateKey);
  return `${header}.${claims}.${b64url(sig)}`;
}

/** Settles to the error a promise rejects with (or fails if it resolves). */
async function failure(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspr-tokens-'));
  issuer = crypto.generateKeyPairSync('ed25519');
  const key = path.join(dir, 'acme.pem');
  fs.writeFileSync(key, issuer.publicKey.export({ type: 'spki', format: 'pem' }));
  daemonArgs = ['--token-issuer', `acme=${key}`, '--token-audience', AUDIENCE];
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('a pipe with a token is its user; a refused token rejects connect', async (t) => {
  const d = await startDaemon(daemonArgs);
  t.after(() => d.stop());
  const url = d.url;
  const rt = await connect(url, { token: token('alice') });
  t.after(() => rt.close());
  assert.equal(rt.identity.names.length, 1);
  assert.match(rt.identity.names[0], /\/acme:alice$/);
  assert.deepEqual(await rt.call('demo/adder', 'add', [2, 3]), [5]);

  const err = await failure(connect(d.url, { token: token('mallory', -60) }));
  assert.ok(err instanceof NoAccessError, String(err));
  assert.match(err.message, /expired/);
  const unknown = await failure(connect(d.url, { token: token('mallory', 600, 'other') }));
  assert.ok(unknown instanceof NoAccessError, String(unknown));
  assert.ok((await failure(connect(d.url, { token: '' }))) instanceof BadArgError);

  // Renewal: the same user only.
  const bob = await failure(rt.refreshToken(token('bob')));
  assert.ok(bob instanceof NoAccessError, String(bob));
  const before = rt.identity.expiresAt;
  const renewed = await rt.refreshToken(token('alice', 1200));
  assert.ok(renewed.expiresAt > before);
  assert.deepEqual(await rt.call('demo/adder', 'add', [1, 1]), [2]);

  // A runtime without a token has nothing to renew.
  const plain = await connect(d.url);
  t.after(() => plain.close());
  assert.equal(plain.identity, null);
  assert.ok((await failure(plain.refreshToken(token('alice')))) instanceof BadArgError);
});

test('a token function is renewed before it expires, and asked again on a reconnect', async (t) => {
  let d = await startDaemon([...daemonArgs, '--require-token']);
  t.after(() => d.stop());
  let asked = 0;
  const url = d.url;
  const fetchToken = async () => {
    asked++;
    // Short-lived: renewed at 3/4 of its life.
    return token('carol', 3);
  };
  const rt = await connect(url, { token: fetchToken, reconnect: { initialDelay: 50, maxDelay: 400 } });
  t.after(() => rt.close());
  const first = rt.identity.expiresAt;
  assert.equal(asked, 1);
  await rt.serve('carol/echo', { echo: (ctx, x) => x });
  await waitFor(() => rt.identity.expiresAt > first, 'the token renewed', 10_000);
  assert.ok(asked >= 2);
  // Past the first token's expiry, the pipe still serves and calls.
  await waitFor(() => Date.now() > first + 200, 'the first token to expire', 10_000);
  assert.deepEqual(await rt.call('carol/echo', 'echo', ['hi']), ['hi']);

  // The daemon restarts: the runtime asks for a token again, first.
  const was = asked;
  await d.kill();
  d = await startDaemon([...daemonArgs, '--require-token'], { listen: d.address });
  await waitFor(() => rt.state === 'open', 'the runtime back', 10_000);
  assert.ok(asked > was);
  assert.deepEqual(await rt.call('carol/echo', 'echo', ['again']), ['again']);
});
