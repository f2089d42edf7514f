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

test('GET /wspr.js is the library, as JavaScript', async () => {
  const r = await fetch(`${daemon.http}/wspr.js`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/javascript');
  assert.equal(await r.text(), fs.readFileSync(path.join(js, 'wspr.js'), 'utf8'), 'the binary embeds this wspr.js (rebuild it?)');
});

test('GET / is the demo page, as HTML', async () => {
  const r = await fetch(`${daemon.http}/`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
  const page = await r.text();
  assert.equal(page, fs.readFileSync(path.join(js, 'demo.html'), 'utf8'));
  assert.match(page, /import \{ connect, typeNames \} from '\/wspr\.js'/);
});
