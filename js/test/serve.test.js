// Serving objects that live in JavaScript: leaf objects, dispatchers,
// authorizers, streaming, signatures, names; called from another pipe and
// from the native `wsprd call`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  connect,
  signatureOf,
  BadArgError,
  ExistsError,
  NoAccessError,
  NoExistError,
  UnknownError,
  WsprError,
  errorIds,
} from '../wspr.js';
import { startDaemon, wsprdCall, wsprdGlob, waitFor } from './daemon.js';

let daemon;
let url;
before(async () => {
  daemon = await startDaemon();
  url = daemon.url;
});
after(() => daemon.stop());

/** Two pipes: one serves, one calls. Both close when the test ends. */
async function twoPipes(t) {
  const lookups = [];
  const server = await connect(url, {
    trace: (dir, m) => dir === 'recv' && m.type === 5 && lookups.push(m.message),
  });
  const client = await connect(url);
  t.after(() => {
    server.close();
    client.close();
  });
  return { server, client, lookups };
}

test('a plain object is served as a leaf whose lookups are cacheable', async (t) => {
  const { server, client, lookups } = await twoPipes(t);
  const counter = {
    count: 0,
    increment(ctx, by) {
      this.count += by;
      return this.count;
    },
  };
  const s = await server.serve('leaf/counter', counter);
  assert.match(s.endpoint, /^@w1@127\.0\.0\.1:\d+@[0-9a-f]+@s@@$/);
  const stub = await client.bindTo('leaf/counter');
  assert.equal(await stub.increment(1), 1);
  assert.equal(await stub.increment(2), 3);
  assert.equal(await stub.increment(3), 6);
  assert.equal(counter.count, 6, 'the methods ran on the object itself');
  // Three calls, one lookup: the reply was cacheable.
  assert.equal(lookups.filter((l) => l.method === 'increment').length, 1);
  // A leaf has nothing below it.
  await assert.rejects(client.call('leaf/counter/below', 'increment', [1]), (err) => {
    assert.ok(err instanceof NoExistError);
    assert.match(err.message, /leaf/);
    return true;
  });
});

test('wsprd call calls an object that JavaScript serves', async (t) => {
  const { server } = await twoPipes(t);
  await server.serve('js/greeter', {
    greet(ctx, who) {
      return `hello, ${who}`;
    },
  });
  const out = await wsprdCall(daemon.root, 'js/greeter', 'greet', ['world']);
  assert.equal(out.stderr, '');
  assert.equal(out.code, 0);
  assert.equal(out.stdout, '["hello, world"]\n');
  // The native tool takes UpperCamelCase too.
  const upper = await wsprdCall(daemon.root, 'js/greeter', 'Greet', ['Veyron']);
  assert.equal(upper.stdout, '["hello, Veyron"]\n');
});

test('errors thrown by a served method keep their id, for JavaScript and native callers', async (t) => {
  const { server, client } = await twoPipes(t);
  await server.serve('js/failing', {
    divide(ctx, a, b) {
      if (b === 0) throw new WsprError('app.DivideByZero', 'cannot divide by zero');
      return a / b;
    },
    explode(ctx) {
      throw new Error('something broke');
    },
    refuse(ctx) {
      throw new NoAccessError('members only');
    },
  });
  const stub = await client.bindTo('js/failing');
  assert.equal(await stub.divide(9, 3), 3);
  await assert.rejects(stub.divide(1, 0), (err) => {
    assert.ok(err instanceof WsprError);
    assert.equal(err.id, 'app.DivideByZero');
    assert.equal(err.message, 'cannot divide by zero');
    return true;
  });
  await assert.rejects(stub.explode(), (err) => err instanceof UnknownError && err.message === 'something broke');
  await assert.rejects(stub.refuse(), (err) => err instanceof NoAccessError && err.id === errorIds.noAccess);

  const out = await wsprdCall(daemon.root, 'js/failing', 'divide', [1, 0]);
  assert.equal(out.code, 1);
  assert.equal(out.stdout, '');
  // The tool prints the id's last element and the message.
  assert.match(out.stderr, /DivideByZero: cannot divide by zero/);
});

test('a dispatcher serves a different object per suffix', async (t) => {
  const { server, client, lookups } = await twoPipes(t);
  class File {
    constructor(text) {
      this.text = text;
    }
    read(ctx) {
      return this.text;
    }
    size(ctx) {
      return this.text.length;
    }
  }
  const files = { 'a.txt': new File('alpha'), 'docs/b.txt': new File('bravo!') };
  const asked = [];
  await server.serve('files', async (suffix, method) => {
    asked.push([suffix, method]);
    if (suffix === 'locked') throw new WsprError('app.Locked', `${suffix} is locked`);
    const file = files[suffix];
    return file ? { service: file } : null;
  });
  const a = await client.bindTo('files/a.txt');
  const b = await client.bindTo('files/docs/b.txt');
  assert.equal(await a.read(), 'alpha');
  assert.equal(await b.read(), 'bravo!');
  assert.equal(await b.size(), 6);
  assert.equal(await a.read(), 'alpha');
  assert.deepEqual(asked, [
    ['a.txt', 'signature'],
    ['docs/b.txt', 'signature'],
    ['a.txt', 'read'],
    ['docs/b.txt', 'read'],
    ['docs/b.txt', 'size'],
    ['a.txt', 'read'],
  ]);
  // Not cacheable: every call was looked up.
  assert.equal(lookups.length, asked.length);
  // No object: NoExist. A dispatcher's error keeps its id.
  await assert.rejects(client.call('files/c.txt', 'read', []), NoExistError);
  await assert.rejects(client.call('files/locked', 'read', []), (err) => err.id === 'app.Locked');
  // The native tool reaches the same objects.
  const out = await wsprdCall(daemon.root, 'files/docs/b.txt', 'read');
  assert.equal(out.stdout, '["bravo!"]\n');
});

test('a dispatcher can mark its answers cacheable', async (t) => {
  const { server, client, lookups } = await twoPipes(t);
  const clock = { now: (ctx) => 42 };
  await server.serve('cached', () => ({ service: clock, cacheable: true }));
  for (let i = 0; i < 3; i++) assert.equal(await client.call('cached/x', 'now', []).then((r) => r[0]), 42);
  assert.equal(lookups.filter((l) => l.method === 'now').length, 1);
});

test('an authorizer decides who may call', async (t) => {
  const { server, client } = await twoPipes(t);
  const vault = { open: (ctx) => 'opened' };
  const seen = [];
  await server.serve('vault', (suffix) => ({
    service: vault,
    authorizer: (ctx) => {
      seen.push({ suffix: ctx.suffix, name: ctx.name });
      if (suffix === 'sealed') throw new NoAccessError('the vault is sealed');
      if (suffix === 'closed') return false;
    },
  }));
  assert.deepEqual(await client.call('vault/public', 'open', []), ['opened']);
  await assert.rejects(client.call('vault/sealed', 'open', []), (err) => {
    assert.ok(err instanceof NoAccessError);
    assert.equal(err.message, 'the vault is sealed');
    return true;
  });
  await assert.rejects(client.call('vault/closed', 'open', []), NoAccessError);
  assert.deepEqual(seen, [
    { suffix: 'public', name: 'vault/public' },
    { suffix: 'sealed', name: 'vault/sealed' },
    { suffix: 'closed', name: 'vault/closed' },
  ]);
  const out = await wsprdCall(daemon.root, 'vault/sealed', 'open');
  assert.equal(out.code, 1);
  assert.match(out.stderr, /the vault is sealed/);

  // An object served as a leaf takes its authorizer as an option.
  await server.serve('guarded', { hello: (ctx) => 'hi' }, { authorizer: () => false });
  await assert.rejects(client.call('guarded', 'hello', []), NoAccessError);
});

test('streaming both ways with a JavaScript server', async (t) => {
  const { server, client } = await twoPipes(t);
  const totals = {
    async runningSum(ctx, start) {
      let total = start;
      for await (const n of ctx.stream) {
        total += n;
        ctx.stream.write(total);
      }
      return total;
    },
  };
  await server.serve('js/totals', totals, { signature: { runningSum: { isStreaming: true } } });

  const stub = await client.bindTo('js/totals');
  const call = stub.runningSum(100);
  const it = call.stream[Symbol.asyncIterator]();
  call.stream.write(1);
  assert.deepEqual(await it.next(), { value: 101, done: false });
  call.stream.write(10);
  assert.deepEqual(await it.next(), { value: 111, done: false });
  call.stream.end();
  assert.deepEqual(await it.next(), { value: undefined, done: true });
  assert.equal(await call, 111);

  // The native caller streams from stdin and prints each item, then the result.
  const out = await wsprdCall(daemon.root, 'js/totals', 'runningSum', [0], { input: '1\n2\n3\n' });
  assert.equal(out.stderr, '');
  assert.equal(out.stdout, '1\n3\n6\n[6]\n');
});

test('signatures come from the methods or are given explicitly', async (t) => {
  const { server, client } = await twoPipes(t);
  class Greeter {
    greet(ctx, who, greeting = 'hello') {
      return `${greeting}, ${who}`;
    }
    split(ctx, text) {
      const i = text.indexOf(' ');
      return [text.slice(0, i), text.slice(i + 1)];
    }
    touch(ctx) {}
    _helper() {}
  }
  const greeter = new Greeter();
  const explicit = { split: { numOutArgs: 3 }, touch: { numOutArgs: 1 } };
  assert.deepEqual(signatureOf(greeter, explicit), {
    greet: { inArgs: ['who', 'greeting'], numOutArgs: 2, isStreaming: false },
    split: { inArgs: ['text'], numOutArgs: 3, isStreaming: false },
    touch: { inArgs: [], numOutArgs: 1, isStreaming: false },
  });
  await server.serve('js/greeter2', greeter, { signature: explicit });
  assert.deepEqual(await client.signature('js/greeter2'), signatureOf(greeter, explicit));
  const stub = await client.bindTo('js/greeter2');
  assert.deepEqual(Object.keys(stub).sort(), ['greet', 'split', 'touch']);
  assert.equal(await stub.greet('Ada', 'hi'), 'hi, Ada');
  // Two results come back as an array, none as undefined.
  assert.deepEqual(await stub.split('hello world'), ['hello', 'world']);
  assert.equal(await stub.touch(), undefined);
  const out = await wsprdCall(daemon.root, 'js/greeter2', 'split', ['a b']);
  assert.equal(out.stdout, '["a","b"]\n');
  // Arguments are checked by the daemon against the signature too.
  await assert.rejects(client.call('js/greeter2', 'greet', ['Ada']), BadArgError);
});

test('bad signatures and targets are refused before anything is served', async (t) => {
  const { server } = await twoPipes(t);
  await assert.rejects(server.serve('', { a: (ctx) => 1 }), /the name must be a non-empty string/);
  await assert.rejects(server.serve('x', 42), /serve a dispatcher function or an object, not number 42/);
  await assert.rejects(server.serve('x', { a: (ctx) => 1 }, { signature: { b: {} } }), /names method b, but the service has no such function/);
  await assert.rejects(server.serve('x', { a: (ctx) => 1 }, { signature: { a: { isStreaming: 'yes' } } }), /isStreaming must be a boolean/);
  await assert.rejects(server.serve('x', { a: (ctx, ...rest) => rest }), /cannot tell the arguments of method a/);
  await assert.rejects(server.serve('x', { a: (ctx) => 1 }, { cache: true }), /unknown option "cache"/);
  // A rest parameter is fine once its arguments are given.
  const s = await server.serve('rest', { a: (ctx, ...rest) => rest.length }, { signature: { a: { inArgs: ['x', 'y'] } } });
  assert.deepEqual(await server.call('rest', 'a', [1, 2]), [2]);
  await s.stop();
});

test('a served method sees its context', async (t) => {
  const { server, client } = await twoPipes(t);
  let seen;
  await server.serve('ctx', (suffix) => ({
    service: {
      look(ctx) {
        seen = ctx;
        return ctx.suffix;
      },
    },
  }));
  assert.deepEqual(await client.call('ctx/a/b', 'look', [], { timeout: 15_000 }), ['a/b']);
  assert.equal(seen.name, 'ctx/a/b');
  assert.equal(seen.suffix, 'a/b');
  assert.ok(Array.isArray(seen.remoteId.names));
  assert.ok(seen.signal instanceof AbortSignal);
  assert.equal(seen.signal.aborted, false);
  assert.equal(seen.stream, undefined, 'no stream for a method that does not stream');
  assert.ok(seen.timeout > 10_000 && seen.timeout <= 15_000, `timeout ${seen.timeout}`);
});

test('a server has an endpoint, more names, and stops', async (t) => {
  const { server, client } = await twoPipes(t);
  const s = await server.serve('names/first', { id: (ctx) => 'me' });
  await s.addName('names/second');
  assert.deepEqual(s.names, ['names/first', 'names/second']);
  await assert.rejects(s.addName('names/second'), ExistsError);
  assert.deepEqual(await client.call('names/second', 'id', []), ['me']);
  // The endpoint reaches it directly, without the name space.
  assert.deepEqual(await client.call(`/${s.endpoint}`, 'id', []), ['me']);
  assert.deepEqual(await wsprdGlob(daemon.root, 'names/*'), ['names/first', 'names/second']);

  await s.stop();
  assert.equal(s.stopped, true);
  await s.stop(); // again: nothing to do
  assert.deepEqual(await wsprdGlob(daemon.root, 'names/*'), []);
  await assert.rejects(client.call(`/${s.endpoint}`, 'id', []), NoExistError);
  await assert.rejects(s.addName('names/third'), /was stopped/);
});

test('stopping a server cancels the calls it is serving', async (t) => {
  const { server, client } = await twoPipes(t);
  let ctxSeen;
  const s = await server.serve('stopping', {
    wait(ctx) {
      ctxSeen = ctx;
      return new Promise(() => {});
    },
  });
  const outcome = client.call('stopping', 'wait', []).then(
    () => null,
    (err) => err,
  );
  await waitFor(() => ctxSeen, 'the request to reach the server');
  await s.stop();
  const err = await outcome;
  assert.equal(err?.id, errorIds.aborted);
  assert.match(err.message, /stopped/);
  assert.equal(ctxSeen.signal.aborted, true);
});

test('stop() racing the runtime closing resolves, and the server is stopped', async () => {
  const rt = await connect(url);
  const s = await rt.serve('stop/race', { id: () => 'me' });
  const stopping = s.stop();
  rt.close();
  await stopping;
  assert.equal(s.stopped, true);
  await s.stop(); // and again
});

test('methods of Object.prototype are neither signed nor served', async (t) => {
  const { server, client } = await twoPipes(t);
  // A service that has its own toString, with an explicit signature for
  // its one real method.
  const service = {
    id: () => 'me',
    toString() {
      return 'a service';
    },
  };
  await server.serve('own/props', service, { signature: { id: { inArgs: [] } } });
  assert.deepEqual(await client.call('own/props', 'id', []), ['me']);
  // A signature naming an inherited property is refused.
  await assert.rejects(server.serve('own/props2', { id: () => 1 }, { signature: { constructor: {} } }), BadArgError);
  // A request for an inherited method finds nothing.
  await assert.rejects(client.call('own/props', 'constructor', []), NoExistError);
});

test('an object with no methods publishes its name', async (t) => {
  const { server, client } = await twoPipes(t);
  assert.deepEqual(signatureOf({}), {});
  const published = await server.serve('js/published', {});
  assert.deepEqual(await wsprdGlob(daemon.root, 'js/published'), ['js/published']);
  assert.deepEqual(await client.signature('js/published'), {});
  await assert.rejects(client.call('js/published', 'anything', []), NoExistError);
  await published.stop();
  assert.deepEqual(await wsprdGlob(daemon.root, 'js/published'), []);
});

test('removeName stops serving one name; the server goes on under the others', async (t) => {
  const { server, client } = await twoPipes(t);
  const greeter = { hi: (ctx) => `hi via ${ctx.name}` };
  const s = await server.serve('js/names/a', greeter);
  await s.addName('js/names/b');
  await assert.rejects(s.addName('js/names/b'), ExistsError);
  await s.removeName('js/names/a');
  assert.deepEqual(s.names, ['js/names/b']);
  assert.deepEqual(await wsprdGlob(daemon.root, 'js/names/*'), ['js/names/b']);
  assert.deepEqual(await client.call('js/names/b', 'hi', []), ['hi via js/names/b']);
  await assert.rejects(client.call('js/names/a', 'hi', []), NoExistError);
  await assert.rejects(s.removeName('js/names/a'), NoExistError);
  await assert.rejects(s.removeName(''), BadArgError);
  // The name can be served again.
  await s.addName('js/names/a');
  assert.deepEqual(await client.call('js/names/a', 'hi', []), ['hi via js/names/a']);
  await s.stop();
  await assert.rejects(s.removeName('js/names/a'), /was stopped/);
});
