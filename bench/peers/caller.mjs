// The calling side of `make bench-peers`, one process per system, driven by
// run.mjs over the IPC channel:
//
//   caller.mjs wspr URL    calls bench/adder's add through wsprd (js/wspr.js)
//   caller.mjs wamp URL    calls bench.add through a WAMP router (autobahn)
//   caller.mjs echo URL    sends wspr's call request to an echo server and reads it back
//
// All three use the same websocket client, Node's global WebSocket (what
// js/wspr.js and autobahn 26 both use). It connects, says {ready}, then
// answers each {op: 'round', n, inFlight} with {lat, ns}: the latency of
// each of n calls in microseconds (Float64Array) and the round's wall time,
// with `inFlight` calls outstanding at any time (1: sequential). Every
// result is checked. It exits when the channel closes.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [system, url] = process.argv.slice(2);

function fail(msg) {
  process.send?.({ error: `caller ${system}: ${msg}` });
  console.error(`caller ${system}: ${msg}`);
  process.exit(1);
}

process.on('disconnect', () => process.exit(0));
process.on('unhandledRejection', (e) => fail(e?.stack ?? String(e)));

/** add(a, b) as a function returning a Promise of the sum. */
async function connectSystem() {
  if (system === 'wspr') {
    const { connect } = await import('../../js/wspr.js');
    // PEERS_WS=ws: the `ws` package's client instead of Node's global
    // WebSocket (undici), to tell the library's costs from the client's.
    const rt = await connect(url, process.env.PEERS_WS === 'ws' ? { WebSocket: require('ws') } : undefined);
    rt.closed.then((reason) => fail(`the pipe closed: ${reason.message}`));
    const adder = await rt.bindTo('bench/adder');
    return (a, b) => adder.add(a, b);
  }
  if (system === 'wamp') {
    const autobahn = require('autobahn');
    const session = await new Promise((resolve, reject) => {
      const connection = new autobahn.Connection({
        url,
        realm: 'realm1',
        serializers: [new autobahn.serializer.JSONSerializer()],
        max_retries: 0,
        retry_if_unreachable: false,
      });
      connection.onopen = resolve;
      connection.onclose = (reason, details) => {
        reject(new Error(`the WAMP connection closed: ${reason} ${JSON.stringify(details)}`));
        fail(`the WAMP connection closed: ${reason} ${JSON.stringify(details)}`);
      };
      connection.open();
    });
    return (a, b) => session.call('bench.add', [a, b]);
  }
  if (system === 'echo') {
    // The text of wspr's request for add(a, b) (js/wspr.js sends 124 bytes
    // for add(2, 3)); the answer is the same text back. Echoes keep their
    // order, so a queue matches them to their senders.
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`cannot open ${url}`));
    });
    ws.onclose = (e) => fail(`the echo connection closed (${e.code})`);
    const waiting = [];
    ws.onmessage = (e) => waiting.shift()(e.data);
    let id = 1;
    return (a, b) =>
      new Promise((resolve) => {
        waiting.push((text) => {
          const [x, y] = JSON.parse(text).data.inArgs;
          resolve(x + y);
        });
        id += 2;
        ws.send(
          `{"id":${id},"type":0,"data":{"name":"bench/adder","method":"add","inArgs":[${a},${b}],"numOutArgs":2,"isStreaming":false,"timeout":0}}`,
        );
      });
  }
  throw new Error('usage: caller.mjs wspr|wamp|echo URL');
}

const add = await connectSystem().catch((e) => fail(e.message));

// PEERS_TRACE=1 (bench/peers/tail.mjs): each round's answer also carries
// the calls' start times and the garbage collections since the last round,
// both as milliseconds of the system's monotonic clock (process.hrtime),
// so that slow calls can be matched with this process's collections.
const tracing = process.env.PEERS_TRACE === '1';
let gcs = [];
if (tracing) {
  const { PerformanceObserver } = await import('node:perf_hooks');
  const originMono = Number(process.hrtime.bigint()) / 1e6 - performance.now();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push([originMono + e.startTime, e.duration, e.detail?.kind ?? 0]);
  }).observe({ entryTypes: ['gc'] });
}

let next = 1;

/** One call, checked; its latency in microseconds. */
async function one(starts, k) {
  const a = next++;
  const t0 = process.hrtime.bigint();
  if (starts) starts[k] = Number(t0) / 1e6;
  const sum = await add(a, 1);
  const t1 = process.hrtime.bigint();
  if (sum !== a + 1) fail(`add(${a}, 1) returned ${JSON.stringify(sum)}`);
  return Number(t1 - t0) / 1000;
}

async function round(n, inFlight) {
  const lat = new Float64Array(n);
  const starts = tracing ? new Float64Array(n) : null;
  let i = 0;
  const t0 = process.hrtime.bigint();
  const lane = async () => {
    while (i < n) {
      const k = i++;
      lat[k] = await one(starts, k);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, n) }, lane));
  const ns = Number(process.hrtime.bigint() - t0);
  if (!tracing) return { lat, ns };
  // (The observer is told of collections asynchronously: let it catch up.)
  await new Promise((resolve) => setImmediate(resolve));
  const out = { lat, ns, starts, gcs };
  gcs = [];
  return out;
}

process.on('message', async (m) => {
  if (m?.op === 'round') {
    const r = await round(m.n, m.inFlight);
    process.send({ round: true, ...r });
  }
});
process.send({ ready: true });
