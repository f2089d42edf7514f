// The examples of docs/javascript.md, run against a real wsprd. The docs
// test checks that every example in the tutorial appears here verbatim.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  connect,
  AbortedError,
  BadArgError,
  ConnectionError,
  NoAccessError,
  NoExistError,
  TimeoutError,
  WsprError,
} from '../wspr.js';
import { startDaemon, waitFor, wsprdCall } from './daemon.js';

let daemon;
let url;
before(async () => {
  daemon = await startDaemon();
  url = daemon.url;
});
after(() => daemon.stop());

test('tutorial: connect and call', async () => {
  const rt = await connect(url);
  const adder = await rt.bindTo('demo/adder');
  assert.equal(await adder.add(2, 3), 5);

  try {
    await adder.divide(1, 0);
    assert.fail('dividing by zero must fail');
  } catch (err) {
    assert.ok(err instanceof BadArgError);
    assert.equal(err.id, 'veyron2/verror.BadArg');
    assert.match(err.message, /division by zero/);
  }

  assert.throws(() => adder.add(1), /takes 2 arguments \(a, b\), got 1/);

  const call = adder.streamingAdd();
  for (const n of [1, 2, 3, 4]) call.stream.write(n);
  call.stream.end();
  const totals = [];
  for await (const total of call.stream) totals.push(total);
  assert.deepEqual(totals, [1, 3, 6, 10]);
  assert.equal(await call, 10);

  rt.close();
});

test('tutorial: serve an object', async () => {
  const rt = await connect(url);
  const greeter = {
    greet(ctx, who) {
      return `Hello, ${who}!`;
    },
  };
  const server = await rt.serve('tutorial/greeter', greeter);

  const other = await connect(url);
  const remote = await other.bindTo('tutorial/greeter');
  assert.equal(await remote.greet('Ada'), 'Hello, Ada!');

  const out = await wsprdCall(daemon.root, 'tutorial/greeter', 'greet', ['Ada']);
  assert.equal(out.stdout, '["Hello, Ada!"]\n');

  const summer = {
    async sum(ctx) {
      let total = 0;
      for await (const n of ctx.stream) {
        total += n;
        ctx.stream.write(total);
      }
      return total;
    },
  };
  await rt.serve('tutorial/summer', summer, { signature: { sum: { isStreaming: true } } });

  const sum = (await other.bindTo('tutorial/summer')).sum();
  sum.stream.write(20);
  sum.stream.write(22);
  sum.stream.end();
  assert.equal(await sum, 42);

  const piped = await wsprdCall(daemon.root, 'tutorial/summer', 'sum', [], { input: '1\n2\n3\n' });
  assert.equal(piped.stdout, '1\n3\n6\n[6]\n');

  const shop = {
    price(ctx, item) {
      if (item !== 'tea') throw new WsprError('shop.OutOfStock', `no ${item} today`);
      return 3;
    },
  };
  await rt.serve('tutorial/shop', shop);
  const store = await other.bindTo('tutorial/shop');
  await assert.rejects(store.price('coffee'), (err) => err.id === 'shop.OutOfStock' && err.message === 'no coffee today');

  await server.stop();
  await assert.rejects(remote.greet('Ada'), NoExistError);
  other.close();
  rt.close();
});

test('tutorial: deadlines and cancel', async () => {
  const rt = await connect(url);
  const cancelled = [];
  const slowpoke = {
    wait(ctx) {
      return new Promise((resolve, reject) => {
        ctx.signal.addEventListener('abort', () => {
          cancelled.push(ctx.signal.reason);
          reject(ctx.signal.reason);
        });
      });
    },
  };
  await rt.serve('tutorial/slowpoke', slowpoke);
  const slow = await rt.bindTo('tutorial/slowpoke');

  await assert.rejects(slow.wait({ timeout: 100 }), TimeoutError);

  const controller = new AbortController();
  const pending = slow.wait({ signal: controller.signal });
  controller.abort();
  await assert.rejects(pending, AbortedError);
  // The server's ctx.signal aborted for both: the deadline and the abort.
  await waitFor(() => cancelled.length === 2, 'both cancels to reach the server');

  const last = slow.wait();
  rt.close();
  await assert.rejects(last, ConnectionError);
});

test('tutorial: a dispatcher', async () => {
  const rt = await connect(url);
  class Note {
    constructor(text) {
      this.text = text;
    }
    read(ctx) {
      return this.text;
    }
    write(ctx, text) {
      this.text = text;
    }
  }
  const notes = new Map([
    ['shopping', new Note('milk, eggs')],
    ['diary', new Note('dear diary')],
  ]);
  const dispatcher = (suffix, method) => {
    const note = notes.get(suffix);
    if (!note) return null;
    return {
      service: note,
      authorizer: () => !(suffix === 'diary' && method === 'write'),
    };
  };
  await rt.serve('tutorial/notes', dispatcher);

  const shopping = await rt.bindTo('tutorial/notes/shopping');
  await shopping.write('milk, eggs, tea');
  assert.equal(await shopping.read(), 'milk, eggs, tea');
  const diary = await rt.bindTo('tutorial/notes/diary');
  assert.equal(await diary.read(), 'dear diary');
  await assert.rejects(diary.write('secrets'), NoAccessError);
  await assert.rejects(rt.bindTo('tutorial/notes/nothing'), NoExistError);
  rt.close();
});

test('tutorial: the name space', async () => {
  const rt = await connect(url);
  await rt.serve('tutorial/echo', { echo: (ctx, x) => x });

  const entries = await rt.glob('tutorial/*');
  assert.ok(entries.some((e) => e.name === 'tutorial/echo'));
  const [address] = await rt.resolve('tutorial/echo');
  await rt.mount('elsewhere/echo', address, 60);
  assert.deepEqual(await rt.call('elsewhere/echo', 'echo', ['hi']), ['hi']);
  await rt.unmount('elsewhere/echo', address);
  rt.close();
});
