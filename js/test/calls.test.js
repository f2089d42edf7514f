// Calls from JavaScript to the native demo object: stubs, results, errors,
// streaming both ways, and bad input that never reaches the daemon.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { connect, BadArgError, NoExistError, WsprError, errorIds } from '../wspr.js';
import { startDaemon } from './daemon.js';

let daemon;
let url;
before(async () => {
  daemon = await startDaemon();
  url = daemon.url;
});
after(() => daemon.stop());

/** A runtime that records every frame it sends, closed when the test ends. */
async function tracedRuntime(t) {
  const sent = [];
  const rt = await connect(url, { trace: (dir, m) => dir === 'send' && sent.push(m) });
  t.after(() => rt.close());
  return { rt, sent };
}

test('bindTo gives a stub with the service methods, which return promises', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const adder = await rt.bindTo('demo/adder');
  assert.deepEqual(Object.keys(adder).sort(), ['add', 'divide', 'streamingAdd']);
  const sum = adder.add(2, 3);
  assert.ok(sum instanceof Promise);
  assert.equal(await sum, 5);
  assert.equal(await adder.add(0.5, -2), -1.5);
  assert.equal(await adder.divide(7, 2), 3.5);
});

test('call gives the Final array', async (t) => {
  const { rt } = await tracedRuntime(t);
  assert.deepEqual(await rt.call('demo/adder', 'add', [20, 22]), [42]);
});

test('an error from the server is an Error subclass that keeps its id', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const adder = await rt.bindTo('demo/adder');
  await assert.rejects(adder.divide(1, 0), (err) => {
    assert.ok(err instanceof BadArgError);
    assert.ok(err instanceof WsprError);
    assert.ok(err instanceof Error);
    assert.equal(err.id, errorIds.badArg);
    assert.equal(err.id, 'veyron2/verror.BadArg');
    assert.match(err.message, /division by zero/);
    return true;
  });
});

test('unknown names and methods are NoExist', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  await assert.rejects(rt.bindTo('no/such/object'), NoExistError);
  await assert.rejects(rt.call('demo/adder', 'multiply', [1, 2]), (err) => {
    assert.ok(err instanceof NoExistError);
    assert.equal(err.id, errorIds.noExist);
    return true;
  });
});

test('a wrong argument count throws before anything is sent', async (t) => {
  const { rt, sent } = await tracedRuntime(t);
  const adder = await rt.bindTo('demo/adder');
  const before = sent.length;
  assert.throws(() => adder.add(1), (err) => {
    assert.ok(err instanceof BadArgError);
    assert.equal(err.id, errorIds.badArg);
    assert.match(err.message, /demo\/adder\.add takes 2 arguments \(a, b\), got 1/);
    return true;
  });
  assert.throws(() => adder.add(1, 2, 3), /takes 2 arguments \(a, b\), got 3/);
  assert.throws(() => adder.add(1, 2, { retries: 3 }), /unknown option "retries"/);
  assert.throws(() => adder.add(1, 2, { timeout: -5 }), /timeout must be a number of milliseconds >= 0/);
  assert.throws(() => adder.add(1, 2, { signal: 'stop' }), /signal must be an AbortSignal/);
  assert.throws(() => adder.add(1n, 2), /cannot be sent as JSON/);
  assert.throws(() => adder.streamingAdd(1), /takes 0 arguments, got 1/);
  assert.equal(sent.length, before, 'nothing was sent');
  // The runtime is still fine.
  assert.equal(await adder.add(1, 2), 3);
});

test('a message larger than the daemon takes throws before it is sent', async (t) => {
  const sent = [];
  const rt = await connect(url, { maxMessageBytes: 4096, trace: (dir, m) => dir === 'send' && sent.push(m) });
  t.after(() => rt.close());
  const adder = await rt.bindTo('demo/adder');
  const before = sent.length;
  assert.throws(() => adder.add('é'.repeat(2100), 1), (err) => {
    assert.ok(err instanceof BadArgError);
    assert.match(err.message, /bytes as JSON; the daemon takes at most 4096/);
    return true;
  });
  assert.equal(sent.length, before);
  assert.equal(await adder.add(1, 2), 3);
});

test('streaming to a native server and back, item by item', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const adder = await rt.bindTo('demo/adder');
  const call = adder.streamingAdd();
  const totals = call.stream[Symbol.asyncIterator]();
  // Each item goes out and its running total comes back before the next.
  call.stream.write(5);
  assert.deepEqual(await totals.next(), { value: 5, done: false });
  call.stream.write(7);
  assert.deepEqual(await totals.next(), { value: 12, done: false });
  call.stream.write(-2);
  assert.deepEqual(await totals.next(), { value: 10, done: false });
  call.stream.end();
  assert.deepEqual(await totals.next(), { value: undefined, done: true });
  assert.equal(await call, 10);
});

test('a streaming call is awaitable and its stream reads with for await', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const adder = await rt.bindTo('demo/adder');
  const call = adder.streamingAdd();
  for (const n of [1, 2, 3, 4]) call.stream.write(n);
  call.stream.end();
  const totals = [];
  for await (const total of call.stream) totals.push(total);
  assert.deepEqual(totals, [1, 3, 6, 10]);
  assert.equal(await call, 10);
});

test('a stream refuses writes after end and after the call', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const adder = await rt.bindTo('demo/adder');
  const call = adder.streamingAdd();
  call.stream.write(1);
  call.stream.end();
  assert.throws(() => call.stream.write(2), (err) => err instanceof BadArgError && /after end\(\)/.test(err.message));
  assert.equal(await call, 1);
  assert.throws(() => call.stream.write(3), /the call has finished/);
  call.stream.end(); // ending again is harmless
});
