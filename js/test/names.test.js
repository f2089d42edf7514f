// Names no one else can take, servers that must prove who they are, and
// authorizers that fail closed: pages of two origins against one daemon.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { connect, NoAccessError, UnknownError, WsprError, errorIds } from '../wspr.js';
import { startDaemon, wsprdCall } from './daemon.js';

let daemon;
let url;
before(async () => {
  daemon = await startDaemon();
  url = daemon.url;
});
after(() => daemon.stop());

/** A pipe as a page of `origin` would open it (the daemon names it after the origin). */
async function page(t, origin) {
  const WS = class extends WebSocket {
    constructor(u) {
      super(u, { headers: { Origin: origin } });
    }
  };
  const rt = await connect(url, { WebSocket: WS });
  t.after(() => rt.close());
  return rt;
}

const adder = { add: (ctx, a, b) => a + b };

test('a page of another origin can neither take, free, re-permission nor delete a name; its owner goes on answering', async (t) => {
  const owner = await page(t, 'http://127.0.0.1:1111');
  const ownersTab = await page(t, 'http://127.0.0.1:1111');
  const hostile = await page(t, 'http://127.0.0.1:6666');
  const served = await owner.serve('victim/svc', adder);
  const target = `/${served.endpoint}`;
  const seen = [];
  const trap = await hostile.serve('hostile/trap', { add: (ctx) => seen.push(ctx.remoteId.names) && 666 });
  const trapAt = `/${trap.endpoint}`;
  const stillServed = async () => {
    assert.deepEqual(await ownersTab.call('victim/svc', 'add', [2, 3]), [5]);
    assert.deepEqual(await hostile.resolve('victim/svc'), [target]);
  };
  const attempts = [
    ['unmount every server', () => hostile.unmount('victim/svc')],
    ['unmount the server', () => hostile.unmount('victim/svc', target)],
    ['mount over', () => hostile.mount('victim/svc', trapAt)],
    ['serve over', () => hostile.serve('victim/svc', adder)],
    ['add a name below', () => hostile.mount('victim/svc/x', trapAt)],
    ['re-permission', () => hostile.setPermissions('victim/svc', { Mount: ['...'], Admin: ['...'] })],
    ['delete', () => hostile.delete('victim/svc')],
    ['delete the subtree', () => hostile.delete('victim', { subtree: true })],
  ];
  for (const [what, attempt] of attempts) {
    await assert.rejects(attempt(), NoAccessError, what);
    await stillServed();
  }
  // The same, from the command line of a process with other credentials,
  // is the Rust tests' (tests/names.rs). The daemon's own tools reach it.
  const out = await wsprdCall(daemon.root, 'victim/svc', 'add', [40, 2]);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout.trim(), '[42]');
  assert.deepEqual(seen, [], "no caller's call reached the hostile page");
});

test('the demo object cannot be taken over by a page', async (t) => {
  const hostile = await page(t, 'http://127.0.0.1:6666');
  await assert.rejects(hostile.unmount('demo/adder', ''), NoAccessError);
  await assert.rejects(hostile.serve('demo/adder', { add: () => 666 }), NoAccessError);
  const out = await wsprdCall(daemon.root, 'demo/adder', 'Add', [2, 3]);
  assert.equal(out.stdout.trim(), '[5]', out.stderr);
});

test('an owner shares a name by its permissions', async (t) => {
  const owner = await page(t, 'http://127.0.0.1:1111');
  const friend = await page(t, 'http://127.0.0.1:2222');
  await owner.serve('shared/room', adder);
  const { permissions, version } = await friend.getPermissions('shared/room');
  const daemonNames = (await owner.getPermissions('')).permissions.Admin;
  const ownerName = `${daemonNames[0]}/http:127.0.0.1:1111`;
  const friendName = `${daemonNames[0]}/http:127.0.0.1:2222`;
  assert.deepEqual(permissions.Admin, [ownerName]);
  assert.deepEqual(permissions.Mount, [ownerName]);
  assert.deepEqual(permissions.Resolve, ['...'], 'inherited from the root');
  await assert.rejects(friend.serve('shared/room', adder), NoAccessError);
  await owner.setPermissions('shared/room', { Mount: [ownerName, friendName] }, { version });
  // A stale version is refused.
  await assert.rejects(owner.setPermissions('shared/room', { Mount: [ownerName] }, { version }), (e) => e.id === errorIds.badArg);
  await friend.serve('shared/room', adder);
  assert.equal((await friend.resolve('shared/room')).length, 2);
  // The owner stays Admin; the friend is not.
  await assert.rejects(friend.delete('shared/room'), NoAccessError);
  assert.deepEqual((await owner.getPermissions('shared/room')).permissions.Admin, [ownerName]);
});

test('a call can pin the blessings its server must prove', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const daemonNames = (await rt.getPermissions('demo/adder')).permissions.Admin;
  assert.deepEqual(await rt.call('demo/adder', 'add', [2, 3], { serverBlessings: daemonNames }), [5]);
  await assert.rejects(rt.call('demo/adder', 'add', [2, 3], { serverBlessings: ['nobody/...'] }), (e) => {
    assert.ok(e instanceof NoAccessError, String(e));
    assert.match(e.message, /nobody/);
    assert.match(e.message, /nothing was sent/);
    return true;
  });
  const stub = await rt.bindTo('demo/adder');
  await assert.rejects(stub.add(1, 2, { serverBlessings: ['nobody'] }), NoAccessError);
  assert.equal(await stub.add(1, 2, { serverBlessings: [`${daemonNames[0]}/...`] }), 3);
  assert.throws(() => rt.call('demo/adder', 'add', [1, 2], { serverBlessings: 'x' }), /serverBlessings/);
});

test("pages of one origin call each other; of two origins, only with the server's consent", async (t) => {
  const a = await page(t, 'http://127.0.0.1:1111');
  const a2 = await page(t, 'http://127.0.0.1:1111');
  const b = await page(t, 'http://127.0.0.1:2222');
  await a.serve('origin-a/adder', adder);
  assert.deepEqual(await a2.call('origin-a/adder', 'add', [1, 2]), [3]);
  await assert.rejects(b.call('origin-a/adder', 'add', [1, 2]), NoAccessError);
  // An authorizer of its own lets the other origin in.
  await a.serve('origin-a/open', adder, { authorizer: () => true });
  assert.deepEqual(await b.call('origin-a/open', 'add', [1, 2]), [3]);
});

test('an authorizer allows only with undefined or true', async (t) => {
  const server = await connect(url);
  const client = await connect(url);
  t.after(() => {
    server.close();
    client.close();
  });
  class Custom extends WsprError {
    constructor() {
      super('app/Closed', 'closed for the day');
    }
  }
  const answers = {
    undefined: () => undefined,
    true: () => true,
    trueLater: () => Promise.resolve(true),
    undefinedLater: async () => {},
    false: () => false,
    null: () => null,
    zero: () => 0,
    one: () => 1,
    string: () => 'yes',
    object: () => ({}),
    error: () => new Error('no'),
    customError: () => new Custom(),
    thrown: () => {
      throw new Error('thrown');
    },
    thrownCustom: () => {
      throw new Custom();
    },
    rejected: () => Promise.reject(new Error('rejected')),
    falseLater: () => Promise.resolve(false),
    errorLater: () => Promise.resolve(new Custom()),
  };
  let ran = 0;
  const service = {
    hello: () => {
      ran++;
      return 'hi';
    },
  };
  await server.serve('authz', (suffix) => ({ service, authorizer: answers[suffix] }));
  const allowed = ['undefined', 'true', 'trueLater', 'undefinedLater'];
  const idOf = { customError: 'app/Closed', thrownCustom: 'app/Closed', errorLater: 'app/Closed' };
  for (const kind of Object.keys(answers)) {
    const before = ran;
    const got = client.call(`authz/${kind}`, 'hello', []);
    if (allowed.includes(kind)) {
      assert.deepEqual(await got, ['hi'], kind);
      assert.equal(ran, before + 1, kind);
    } else {
      await assert.rejects(got, (e) => {
        assert.equal(e.id, idOf[kind] ?? errorIds.noAccess, `${kind}: ${e}`);
        return true;
      });
      assert.equal(ran, before, `${kind}: the method did not run`);
    }
  }
});

test('a served method that returns an Error fails its call with it', async (t) => {
  const server = await connect(url);
  const client = await connect(url);
  t.after(() => {
    server.close();
    client.close();
  });
  await server.serve('returns-errors', {
    plain: () => new Error('plain'),
    withId: () => new WsprError('app/Broken', 'broken'),
    later: async () => new NoAccessError('later'),
    fine: () => 'ok',
  });
  await assert.rejects(client.call('returns-errors', 'plain', []), (e) => e instanceof UnknownError && e.message === 'plain');
  await assert.rejects(client.call('returns-errors', 'withId', []), (e) => e.id === 'app/Broken' && e.message === 'broken');
  await assert.rejects(client.call('returns-errors', 'later', []), NoAccessError);
  assert.deepEqual(await client.call('returns-errors', 'fine', []), ['ok']);
});
