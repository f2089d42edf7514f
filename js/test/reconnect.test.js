// A runtime that reconnects: the daemon restarts (killed, then started
// again on the same port) and the runtime comes back by itself, serves its
// objects again under all their names, fails what was in flight at once
// and lets new calls wait for the pipe.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { connect, BadArgError, ConnectionError, StateEvent, TimeoutError } from '../wspr.js';
import { startDaemon, waitFor, wsprdCall, wsprdGlob } from './daemon.js';

/** Settles to the error a promise rejects with (or fails if it resolves). */
async function failure(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/** A daemon that the test kills and starts again; stopped at the end. */
async function restartable(t, extra = []) {
  const d = { current: await startDaemon(extra) };
  t.after(() => d.current.stop());
  d.restart = async (again = extra) => {
    await d.current.kill();
    d.current = await startDaemon(again, { listen: d.current.address });
    return d.current;
  };
  return d;
}

test('after the daemon restarts, a runtime comes back and serves its objects again', async (t) => {
  const daemon = await restartable(t);
  const url = daemon.current.url;
  const rt = await connect(url, { reconnect: { initialDelay: 50, maxDelay: 400 } });
  t.after(() => rt.close());
  const states = [];
  rt.addEventListener('state', (ev) => states.push(ev.state));
  rt.addEventListener('state', (ev) => assert.ok(ev instanceof StateEvent));
  assert.equal(rt.state, 'open');

  const adder = await rt.bindTo('demo/adder');
  const greeter = {
    greet(ctx, who) {
      return `Hello, ${who}!`;
    },
  };
  const server = await rt.serve('again/greeter', greeter);
  await server.addName('again/hello');
  await rt.serve('again/notes', (suffix) => ({ service: { read: (ctx) => `note ${suffix}` } }));
  const reached = [];
  await rt.serve('again/hang', { wait: (ctx) => new Promise(() => reached.push(ctx)) });
  const inFlight = failure(rt.call('again/hang', 'wait', []));
  await waitFor(() => reached.length === 1, 'the call to reach its server');
  const endpointBefore = server.endpoint;

  await daemon.current.kill();
  // What was in flight fails at once, while the daemon is still down.
  const err = await inFlight;
  assert.ok(err instanceof ConnectionError, `${err}`);
  await waitFor(() => states.includes('reconnecting'), 'the runtime to say it is reconnecting');
  assert.ok(!rt.isClosed);

  // New calls wait for the pipe, within their own timeout.
  const waiting = adder.add(2, 3);
  const late = await failure(adder.add(1, 1, { timeout: 100 }));
  assert.ok(late instanceof TimeoutError, `${late}`);
  assert.match(late.message, /not back/);

  const again = await daemon.restart();
  assert.equal(await waiting, 5);
  assert.equal(rt.state, 'open');
  assert.equal(states[0], 'reconnecting');
  assert.equal(states.at(-1), 'open');
  assert.ok(states.includes('connecting'));

  // Served again under every name, the dispatcher too, at a new endpoint.
  for (const name of ['again/greeter', 'again/hello']) {
    const out = await wsprdCall(again.root, name, 'greet', ['Ada']);
    assert.equal(out.stdout, '["Hello, Ada!"]\n', `${name}: ${out.stderr}`);
  }
  const note = await wsprdCall(again.root, 'again/notes/shopping', 'read');
  assert.equal(note.stdout, '["note shopping"]\n', note.stderr);
  assert.notEqual(server.endpoint, endpointBefore);
  assert.deepEqual(server.names, ['again/greeter', 'again/hello']);
});

test('what was stopped or removed is not served again; what cannot be is reported', async (t) => {
  const daemon = await restartable(t);
  const rt = await connect(daemon.current.url, { reconnect: { initialDelay: 50, maxDelay: 400 } });
  t.after(() => rt.close());
  const serveErrors = [];
  rt.addEventListener('serveerror', (ev) => serveErrors.push(ev));
  const obj = { ping: (ctx) => 'pong' };
  const kept = await rt.serve('kept/x', obj);
  await kept.addName('kept/y');
  await kept.addName('kept/z');
  await kept.removeName('kept/y');
  assert.deepEqual(kept.names, ['kept/x', 'kept/z']);
  assert.deepEqual(await wsprdGlob(daemon.current.root, 'kept/*'), ['kept/x', 'kept/z']);
  await assert.rejects(kept.removeName('kept/y'), /not served as kept\/y/);
  const stoppedBefore = await rt.serve('gone/a', obj);
  await stoppedBefore.stop();
  const stoppedWhileDown = await rt.serve('gone/b', obj);

  await daemon.current.kill();
  await waitFor(() => rt.state !== 'open', 'the pipe to be lost');
  await stoppedWhileDown.stop();
  assert.ok(stoppedWhileDown.stopped);

  // The daemon comes back taking one name per server: kept/z cannot be
  // served again, and the runtime says so.
  const again = await daemon.restart(['--max-names-per-server', '1']);
  await waitFor(() => rt.state === 'open', 'the runtime to come back', 15_000);
  assert.deepEqual(await wsprdGlob(again.root, '...'), ['demo', 'demo/adder', 'kept', 'kept/x']);
  assert.equal(serveErrors.length, 1);
  assert.equal(serveErrors[0].server, kept);
  assert.equal(serveErrors[0].name, 'kept/z');
  assert.match(serveErrors[0].error.message, /limit reached/);
  assert.deepEqual(kept.names, ['kept/x', 'kept/z'], 'still its names: tried again at the next reconnect');
});

test('close() while reconnecting ends it for good, and what waits fails', async (t) => {
  const daemon = await restartable(t);
  const rt = await connect(daemon.current.url, { reconnect: { initialDelay: 50, maxDelay: 100 } });
  const states = [];
  rt.addEventListener('state', (ev) => states.push(ev.state));
  const adder = await rt.bindTo('demo/adder');
  await daemon.current.kill();
  await waitFor(() => states.includes('reconnecting'), 'the runtime to say it is reconnecting');
  const waiting = failure(adder.add(1, 2));
  const waitingRequest = failure(rt.glob('...'));
  rt.close();
  assert.ok((await waiting) instanceof ConnectionError);
  assert.ok((await waitingRequest) instanceof ConnectionError);
  assert.equal(rt.state, 'closed');
  assert.equal(states.at(-1), 'closed');
  assert.ok(rt.isClosed);
  assert.match((await rt.closed).message, /closed by close\(\)/);
  // Nothing tries again once closed: a daemon that comes back sees no pipe.
  const again = await daemon.restart();
  const count = states.length;
  const health = await (await fetch(`${again.http}/health`)).json();
  assert.equal(health.pipes, 0);
  assert.equal(states.length, count);
});

test('a runtime without reconnect closes when its pipe is lost', async (t) => {
  const daemon = await restartable(t);
  const rt = await connect(daemon.current.url);
  const states = [];
  rt.addEventListener('state', (ev) => states.push(ev.state));
  await daemon.current.kill();
  const reason = await rt.closed;
  assert.ok(reason instanceof ConnectionError);
  assert.deepEqual(states, ['closed']);
  assert.equal(rt.state, 'closed');
});

/** A WebSocket whose first instance opens and every later one fails to. */
class FlakySocket extends EventTarget {
  static made = [];
  constructor(url) {
    super();
    this.url = url;
    FlakySocket.made.push(this);
    const first = FlakySocket.made.length === 1;
    setImmediate(() => {
      if (first) {
        this.dispatchEvent(new Event('open'));
      } else {
        this.dispatchEvent(new Event('error'));
        this.dispatchEvent(Object.assign(new Event('close'), { code: 1006, reason: '' }));
      }
    });
  }

  send() {}

  close() {}
}

test('reconnecting backs off exponentially, with jitter, up to a cap', async (t) => {
  const rt = await connect('ws://127.0.0.1:1/ws', {
    WebSocket: FlakySocket,
    timeout: 0,
    reconnect: { initialDelay: 2, maxDelay: 16 },
  });
  t.after(() => rt.close());
  // The waits the runtime asks for, as it asks for them.
  const waits = [];
  const realSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = (fn, ms, ...args) => {
    waits.push(ms);
    return realSetTimeout(fn, ms, ...args);
  };
  t.after(() => {
    globalThis.setTimeout = realSetTimeout;
  });
  const states = [];
  const eight = new Promise((resolve) => {
    rt.addEventListener('state', (ev) => {
      states.push(ev.state);
      if (states.filter((s) => s === 'connecting').length === 8) resolve();
    });
  });
  FlakySocket.made[0].dispatchEvent(Object.assign(new Event('close'), { code: 1006, reason: '' }));
  await eight;
  globalThis.setTimeout = realSetTimeout;
  assert.ok(waits.length >= 8, `${waits}`);
  waits.slice(0, 8).forEach((w, n) => {
    const base = Math.min(16, 2 * 2 ** n);
    assert.ok(w >= base / 2 && w <= base, `wait ${n} is ${w}, expected ${base / 2} to ${base}`);
  });
  const capped = waits.slice(3, 8);
  assert.ok(new Set(capped).size > 1, `jitter: ${capped}`);
  // reconnecting, then connecting and reconnecting (with the failure) in turn.
  assert.deepEqual(states.slice(0, 4), ['reconnecting', 'connecting', 'reconnecting', 'connecting']);
  assert.ok(FlakySocket.made.length >= 9, `${FlakySocket.made.length} sockets`);
});

test('bad reconnect settings are refused', async () => {
  for (const reconnect of ['yes', { initialDelay: -1 }, { initialDelay: 100, maxDelay: 10 }, { tries: 3 }]) {
    await assert.rejects(connect('ws://127.0.0.1:1/ws', { reconnect }), BadArgError, JSON.stringify(reconnect));
  }
});
