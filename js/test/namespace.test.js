// The name space helpers: glob, resolve, mount, unmount.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { connect, BadArgError, NoExistError } from '../wspr.js';
import { startDaemon, wsprdGlob } from './daemon.js';

let daemon;
let url;
before(async () => {
  daemon = await startDaemon();
  url = daemon.url;
});
after(() => daemon.stop());

test('glob lists names with their servers', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const server = await rt.serve('ns/glob/me', { ping: (ctx) => 'pong' });
  const entries = await rt.glob('...');
  const names = entries.map((e) => e.name);
  assert.ok(names.includes('demo/adder'), names.join(' '));
  assert.ok(names.includes('ns/glob/me'), names.join(' '));
  const me = entries.find((e) => e.name === 'ns/glob/me');
  assert.deepEqual(me.servers.map((s) => s.server), [`/${server.endpoint}`]);
  assert.ok(me.servers[0].ttl > 0 && me.servers[0].ttl <= 60);
  assert.deepEqual((await rt.glob('ns/*/*')).map((e) => e.name), ['ns/glob/me']);
  assert.deepEqual(await rt.glob('nothing/here/*'), []);
});

test('resolve, mount and unmount', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const [adder] = await rt.resolve('demo/adder');
  assert.match(adder, /^\/@w1@127\.0\.0\.1:\d+@[0-9a-f]+@s@@$/);

  await rt.mount('ns/alias', adder, 30);
  assert.deepEqual(await rt.resolve('ns/alias'), [adder]);
  assert.deepEqual(await rt.call('ns/alias', 'add', [40, 2]), [42]);
  const [entry] = await rt.glob('ns/alias');
  assert.ok(entry.servers[0].ttl <= 30, `ttl ${entry.servers[0].ttl}`);
  assert.ok((await wsprdGlob(daemon.root, 'ns/*')).includes('ns/alias'));

  await rt.unmount('ns/alias', adder);
  await assert.rejects(rt.resolve('ns/alias'), NoExistError);
  await assert.rejects(rt.call('ns/alias', 'add', [1, 1]), NoExistError);
});

test('the helpers check their arguments', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  await assert.rejects(rt.glob(7), BadArgError);
  await assert.rejects(rt.resolve(''), /the name must be a non-empty string/);
  await assert.rejects(rt.mount('a', '/x', -1), /ttl must be a number of seconds > 0/);
  await assert.rejects(rt.mount('a', 5), BadArgError);
  await assert.rejects(rt.unmount('a', 5), /the server must be a string/);
});
