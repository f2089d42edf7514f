// The daemon serves the demo page at / and the library at /wspr.js, built
// into its binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startDaemon } from './daemon.js';

const js = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let daemon;
before(async () => {
  daemon = await startDaemon();
});
after(() => daemon.stop());

test('GET /wspr.js is the library, as JavaScript any page may load', async () => {
  const r = await fetch(`${daemon.http}/wspr.js`, { headers: { Origin: 'http://localhost:5173' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/javascript');
  assert.equal(r.headers.get('access-control-allow-origin'), '*');
  assert.equal(await r.text(), fs.readFileSync(path.join(js, 'wspr.js'), 'utf8'), 'the binary embeds this wspr.js (rebuild it?)');
});

test('GET /wspr.d.ts is its types', async () => {
  const r = await fetch(`${daemon.http}/wspr.d.ts`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/typescript; charset=utf-8');
  assert.equal(r.headers.get('access-control-allow-origin'), '*');
  assert.equal(await r.text(), fs.readFileSync(path.join(js, 'wspr.d.ts'), 'utf8'), 'the binary embeds this wspr.d.ts (rebuild it?)');
  const head = await fetch(`${daemon.http}/wspr.d.ts`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(Number(head.headers.get('content-length')), fs.statSync(path.join(js, 'wspr.d.ts')).size);
});

test('GET / is the demo page, as HTML', async () => {
  const r = await fetch(`${daemon.http}/`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
  const page = await r.text();
  assert.equal(page, fs.readFileSync(path.join(js, 'demo.html'), 'utf8'));
  assert.match(page, /import \{ connect, typeNames \} from '\/wspr\.js'/);
});
