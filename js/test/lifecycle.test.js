// Deadlines, cancel through AbortSignal, close(), a daemon that dies, and
// connecting: every promise settles, with a clear error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import {
  connect,
  AbortedError,
  BadArgError,
  ConnectionError,
  TimeoutError,
  errorIds,
} from '../wspr.js';
import { startDaemon, waitFor } from './daemon.js';

let daemon;
let url;
before(async () => {
  daemon = await startDaemon(['--lookup-timeout-ms', '2000']);
  url = daemon.url;
});
after(() => daemon.stop());

/** Settles to the error a promise rejects with (or fails if it resolves). */
async function failure(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/**
 * Serves, on `rt`, an object whose methods never answer until they are
 * cancelled; `requests` holds the context of each call that reached it.
 */
async function serveHanging(rt, name) {
  const requests = [];
  const hang = (ctx) =>
    new Promise((resolve, reject) => {
      requests.push(ctx);
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
    });
  const server = await rt.serve(
    name,
    { wait: (ctx) => hang(ctx), waitStream: (ctx) => hang(ctx) },
    { signature: { waitStream: { isStreaming: true } } },
  );
  return { server, requests };
}

test('a call with a timeout fails with Timeout, and the server is told', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const { requests } = await serveHanging(rt, 'slow/timeout');
  const slow = await rt.bindTo('slow/timeout');
  const started = Date.now();
  const err = await failure(slow.wait({ timeout: 300 }));
  assert.ok(err instanceof TimeoutError, `${err}`);
  assert.equal(err.id, errorIds.timeout);
  assert.ok(Date.now() - started >= 250, 'not before its deadline');
  assert.equal(requests.length, 1);
  assert.ok(requests[0].timeout <= 300);
  await waitFor(() => requests[0].signal.aborted, "the server's signal to abort");
});

test('an AbortSignal cancels a call, and the server is told', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const { requests } = await serveHanging(rt, 'slow/cancel');
  const slow = await rt.bindTo('slow/cancel');
  const controller = new AbortController();
  const outcome = failure(slow.wait({ signal: controller.signal }));
  await waitFor(() => requests.length === 1, 'the call to reach the server');
  controller.abort(new Error('user pressed stop'));
  const err = await outcome;
  assert.ok(err instanceof AbortedError);
  assert.equal(err.id, errorIds.aborted);
  assert.equal(err.cause.message, 'user pressed stop');
  await waitFor(() => requests[0].signal.aborted, "the server's signal to abort");
});

test('an AbortSignal cancels a streaming call and its stream', async (t) => {
  const rt = await connect(url);
  t.after(() => rt.close());
  const { requests } = await serveHanging(rt, 'slow/stream');
  const slow = await rt.bindTo('slow/stream');
  const controller = new AbortController();
  const call = slow.waitStream({ signal: controller.signal });
  call.stream.write('first');
  await waitFor(() => requests.length === 1, 'the call to reach the server');
  const reading = failure((async () => {
    for await (const item of call.stream) assert.fail(`no item expected, got ${item}`);
  })());
  controller.abort();
  assert.ok((await reading) instanceof AbortedError);
  assert.ok((await failure(call)) instanceof AbortedError);
  assert.throws(() => call.stream.write('late'), /cannot write/);
  await waitFor(() => requests[0].signal.aborted, "the server's signal to abort");
});

test('a signal that has already aborted sends nothing', async (t) => {
  const sent = [];
  const rt = await connect(url, { trace: (dir, m) => dir === 'send' && sent.push(m) });
  t.after(() => rt.close());
  const adder = await rt.bindTo('demo/adder');
  const before = sent.length;
  const err = await failure(adder.add(1, 2, { signal: AbortSignal.abort() }));
  assert.ok(err instanceof AbortedError);
  assert.equal(sent.length, before);
});

test('close() rejects everything pending with a clear error', async (t) => {
  const serving = await connect(url);
  t.after(() => serving.close());
  const { requests } = await serveHanging(serving, 'slow/close');
  // A dispatcher that never answers keeps bindTo pending.
  await serving.serve('never', () => new Promise(() => {}));

  const rt = await connect(url);
  const slow = await rt.bindTo('slow/close');
  const call = failure(slow.wait());
  const streaming = slow.waitStream();
  streaming.stream.write(1);
  const streamRead = failure(streaming.stream.next());
  const binding = failure(rt.bindTo('never'));
  // A server on the closing runtime, with a call in flight to it.
  const mine = await serveHanging(rt, 'mine');
  const theirCall = failure(serving.call('mine', 'wait', []));
  await waitFor(() => requests.length === 2 && mine.requests.length === 1, 'the calls to reach their servers');

  rt.close();
  for (const p of [call, failure(streaming), streamRead, binding]) {
    const err = await p;
    assert.ok(err instanceof ConnectionError, `${err}`);
    assert.ok(err instanceof AbortedError);
    assert.equal(err.id, errorIds.aborted);
    assert.match(err.message, /closed by close\(\)/);
  }
  assert.equal(mine.requests[0].signal.aborted, true);
  assert.equal(mine.server.stopped, true);
  assert.ok((await rt.closed) instanceof ConnectionError);
  assert.equal(rt.isClosed, true);
  // Whoever called this runtime's server hears that its pipe closed.
  assert.equal((await theirCall).id, errorIds.aborted);
  // The other side's requests were cancelled by the daemon.
  await waitFor(() => requests.every((r) => r.signal.aborted), 'the server to see the calls cancelled');
  // Anything after close fails at once.
  assert.match((await failure(slow.wait())).message, /the runtime is closed/);
  assert.ok((await failure(rt.glob('...'))) instanceof ConnectionError);
  await mine.server.stop(); // already stopped: nothing to do
  rt.close(); // twice is fine
});

test('a daemon that dies rejects everything pending', async (t) => {
  const own = await startDaemon();
  t.after(() => own.kill());
  const rt = await connect(own.url);
  const { requests } = await serveHanging(rt, 'slow/die');
  const slow = await rt.bindTo('slow/die');
  const call = failure(slow.wait());
  const streaming = slow.waitStream();
  const streamRead = failure(streaming.stream.next());
  await waitFor(() => requests.length === 2, 'the calls to reach the server');

  await own.kill();
  for (const p of [call, failure(streaming), streamRead]) {
    const err = await p;
    assert.ok(err instanceof ConnectionError, `${err}`);
    assert.match(err.message, /the connection to wsprd closed: code 1006/);
  }
  for (const r of requests) assert.equal(r.signal.aborted, true);
  assert.match((await rt.closed).message, /code 1006/);
  assert.ok((await failure(rt.bindTo('demo/adder'))) instanceof ConnectionError);
});

test('a daemon that stops closes its pipes with 1001', async (t) => {
  const own = await startDaemon();
  t.after(() => own.kill());
  const rt = await connect(own.url);
  const adder = await rt.bindTo('demo/adder');
  assert.equal(await adder.add(1, 1), 2);
  const { requests } = await serveHanging(rt, 'slow/term');
  const pending = failure(rt.call('slow/term', 'wait', []));
  await waitFor(() => requests.length === 1, 'the call to reach the server');
  await own.stop();
  const err = await pending;
  assert.ok(err instanceof ConnectionError, `${err}`);
  assert.match(err.message, /code 1001, the daemon is going away/);
  assert.match((await rt.closed).message, /code 1001, the daemon is going away/);
});

test('connect fails clearly', async () => {
  // A port with nothing behind it.
  const probe = net.createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));
  const refused = await failure(connect(`ws://127.0.0.1:${port}/ws`));
  assert.ok(refused instanceof ConnectionError);
  assert.match(refused.message, new RegExp(`cannot connect to ws://127\\.0\\.0\\.1:${port}/ws`));

  assert.ok((await failure(connect('not a url'))) instanceof BadArgError);
  assert.match((await failure(connect('ftp://127.0.0.1/'))).message, /is not a ws:\/\/, wss:\/\/, http:\/\/ or https:\/\/ URL/);
  assert.match((await failure(connect(url, { retries: 2 }))).message, /unknown option "retries"/);
  assert.match((await failure(connect(url, { WebSocket: 42 }))).message, /there is no WebSocket here/);
  assert.match((await failure(connect(url, { trace: 'yes' }))).message, /trace must be a function/);
  assert.match((await failure(connect(undefined))).message, /give the daemon's URL/);
});

test('connect takes the daemon\'s http URL, and a WebSocket passed in', async () => {
  const made = [];
  class CountingWebSocket extends WebSocket {
    constructor(u) {
      super(u);
      made.push(u);
    }
  }
  const rt = await connect(daemon.http, { WebSocket: CountingWebSocket });
  try {
    assert.deepEqual(made, [url]);
    assert.equal(rt.url, url);
    assert.deepEqual(await rt.call('demo/adder', 'add', [2, 2]), [4]);
  } finally {
    rt.close();
  }
});

/** How many timers the process has running. */
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

test('nothing of a finished call outlives it: no timer, no signal listener', async (t) => {
  const sent = [];
  const rt = await connect(url, { trace: (dir, m) => dir === 'send' && sent.push(m) });
  t.after(() => rt.close());
  const before = timers();
  const adder = await rt.bindTo('demo/adder', { timeout: 60_000 });
  const names = (await rt.glob('demo/*', { timeout: 60_000 })).map((e) => e.name);
  assert.deepEqual(names, ['demo/adder']);
  assert.equal(timers(), before, 'the timers of bindTo and glob were cleared');

  const controller = new AbortController();
  assert.equal(await adder.add(1, 2, { signal: controller.signal, timeout: 60_000 }), 3);
  const call = adder.streamingAdd({ signal: controller.signal });
  call.stream.write(4);
  call.stream.end();
  assert.equal(await call, 4);
  const sentBefore = sent.length;
  // The calls are over: aborting their signal now sends no cancel.
  controller.abort();
  await rt.call('demo/adder', 'add', [0, 0]); // a round trip, for anything stray to show
  assert.deepEqual(sent.slice(sentBefore).map((m) => m.type), [0]);
});

test('a request with a local deadline fails with Timeout and its late answer is dropped', async (t) => {
  const serving = await connect(url);
  t.after(() => serving.close());
  let release;
  const gate = new Promise((r) => {
    release = r;
  });
  // The signature lookup waits for the gate.
  await serving.serve('gated', async () => {
    await gate;
    return { service: { ping: (ctx) => 'pong' } };
  });
  const seen = [];
  const rt = await connect(url, { trace: (dir, m) => seen.push({ dir, ...m }) });
  t.after(() => rt.close());
  const err = await failure(rt.bindTo('gated', { timeout: 100 }));
  assert.ok(err instanceof TimeoutError);
  assert.match(err.message, /no answer within 100 ms/);
  const asked = seen.find((m) => m.dir === 'send');
  release();
  // The late answer arrives, and goes nowhere: the pipe goes on.
  await waitFor(() => seen.some((m) => m.dir === 'recv' && m.id === asked.id), 'the late answer');
  const stub = await rt.bindTo('gated');
  assert.equal(await stub.ping(), 'pong');
});
