// What js/wspr.js itself costs per call, with no socket, daemon or other
// process: each runtime is given a WebSocket stand-in (connect's
// `WebSocket` option) through which this script plays the daemon, sending
// the very messages wsprd sends (their text as a trace of a real run shows
// it) and taking the library's answers.
//
//   node bench/peers/jsloop.mjs [CALLS]
//
// Two loops, each CALLS sequential calls (default 200000) after a warm-up,
// five times; the best time of the five:
// - serving: a ServerRequest in, the library calls add(ctx, a, b) and its
//   ServerResponse comes out (what the callee process does per call);
// - calling: stub.add(a, 1) of a bindTo stub, its Call out, the Final in,
//   the promise resolved (what the caller process does per call).
// Also the young-generation collections per 10,000 calls: how much
// garbage each call leaves.
import { PerformanceObserver } from 'node:perf_hooks';
import { connect } from '../../js/wspr.js';

const CALLS = Number(process.argv[2] ?? 200000);

/** A WebSocket stand-in: `onSend(text)` gets what the library sends; `deliver(text)` hands it a message. */
class Loop extends EventTarget {
  constructor() {
    super();
    this.readyState = 0;
    this.onSend = () => {};
    setImmediate(() => {
      this.readyState = 1;
      this.dispatchEvent(new Event('open'));
    });
  }

  send(text) {
    this.onSend(text);
  }

  deliver(text) {
    const ev = new Event('message');
    ev.data = text;
    this.dispatchEvent(ev);
  }

  close() {}
}

async function runtime() {
  let ws;
  const rt = await connect('ws://127.0.0.1:1/ws', {
    WebSocket: class extends Loop {
      constructor() {
        super();
        ws = this;
      }
    },
  });
  return { rt, ws };
}

let scavenges = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if ((e.detail?.kind ?? 1) === 1) scavenges++;
}).observe({ entryTypes: ['gc'] });

/** Runs `loop(n)` (a Promise) five times after a warm-up: best ns per call, scavenges per 10,000 calls. */
async function measure(loop) {
  await loop(20000);
  let best = Infinity;
  let gcs = 0;
  for (let r = 0; r < 5; r++) {
    const s0 = scavenges;
    const t0 = process.hrtime.bigint();
    await loop(CALLS);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / CALLS);
    // (The observer hears of collections a turn later.)
    await new Promise((resolve) => setImmediate(resolve));
    gcs += scavenges - s0;
  }
  return { ns: best, gcPer10k: (gcs / (5 * CALLS)) * 10000 };
}

// ---- serving: the callee's side
const callee = await runtime();
callee.ws.onSend = (text) => {
  const m = JSON.parse(text);
  if (m.type === 1) callee.ws.deliver(`{"id":${m.id},"type":0,"message":"@w1@127.0.0.1:1@0e13e7bc370b4fd9@s@@"}`);
};
await callee.rt.serve('bench/adder', {
  add(ctx, a, b) {
    return a + b;
  },
});
let answered = null;
callee.ws.onSend = (text) => answered(text);
let flow = 4;
const serving = async (n) => {
  for (let i = 0; i < n; i++) {
    const id = flow;
    flow += 2;
    const text = await new Promise((resolve) => {
      answered = resolve;
      callee.ws.deliver(
        `{"id":${id},"type":3,"message":{"args":[${i},1],"context":{"method":"add","name":"bench/adder","remoteId":{"handle":${id},"names":["wspr/local"]},"suffix":""},"handle":1,"method":"add","serverId":0}}`,
      );
    });
    if (!text.startsWith(`{"id":${id},"type":2,"data":{"results":[${i + 1}]`)) throw new Error(`unexpected answer ${text}`);
  }
};
// The lookup the daemon makes before the first request.
await new Promise((resolve) => {
  answered = resolve;
  callee.ws.deliver('{"id":2,"type":5,"message":{"method":"add","serverId":0,"suffix":""}}');
});

// ---- calling: the caller's side
const caller = await runtime();
caller.ws.onSend = (text) => {
  const m = JSON.parse(text);
  if (m.type === 5) caller.ws.deliver(`{"id":${m.id},"type":0,"message":{"add":{"inArgs":["a","b"],"isStreaming":false,"numOutArgs":2}}}`);
};
const adder = await caller.rt.bindTo('bench/adder');
// The daemon's Final, as wsprd sends it: the id and the sum are all that
// change. (Parsing the call's text is this script's work, not the
// library's: the id and the first argument are read from fixed places.)
caller.ws.onSend = (text) => {
  const id = text.slice(6, text.indexOf(',', 6));
  const a = Number(text.slice(text.indexOf('"inArgs":[') + 10, text.indexOf(',', text.indexOf('"inArgs":['))));
  setImmediate(() => caller.ws.deliver(`{"id":${id},"type":0,"message":[${a + 1}]}`));
};
const calling = async (n) => {
  for (let i = 0; i < n; i++) {
    const sum = await adder.add(i, 1);
    if (sum !== i + 1) throw new Error(`add(${i}, 1) gave ${sum}`);
  }
};

const s = await measure(serving);
const c = await measure(calling);
console.log(`js/wspr.js per call, in process (${CALLS} calls, best of 5), node ${process.version}:`);
console.log(`  serving: ${(s.ns / 1000).toFixed(2)} µs, ${s.gcPer10k.toFixed(1)} scavenges per 10,000 calls`);
console.log(`  calling: ${(c.ns / 1000).toFixed(2)} µs, ${c.gcPer10k.toFixed(1)} scavenges per 10,000 calls (with a setImmediate per call, as a socket's read would be)`);
process.exit(0);
