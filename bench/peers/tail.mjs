// Where the slowest sequential calls of `make bench-peers` come from: the
// same JS→JS calls through wsprd and through the relay floor (rounds
// alternating), with each Node process's garbage collections recorded
// (PEERS_TRACE in caller.mjs and callee.mjs) and the daemon's threads'
// wake-ups counted per thread. For each system: the latency quantiles,
// how many of the calls slower than its p99 overlap a collection in the
// caller or the callee, and the quantiles of the calls that overlap none
// (the tail that is not the JavaScript's collector).
//
//   node --experimental-websocket bench/peers/tail.mjs
//
// Knobs: TAIL_CALLS (default 20000 per system), TAIL_ROUNDS (10), WSPRD,
// PEERS_RELAY (as run.mjs). Needs bench/peers/node_modules (`make
// bench-peers` installs it; Crossbar is not used here).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuTicks, CLK_TCK, quantile, sortedCopy, start, stopAll, deadline } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const work = path.join(repo, 'target/peers');
const WSPRD = process.env.WSPRD ?? path.join(repo, 'target/release/wsprd');
const RELAY = process.env.PEERS_RELAY ?? path.join(repo, 'target/release/examples/peers_relay');
const CALLS = Number(process.env.TAIL_CALLS ?? 20000);
const ROUNDS = Number(process.env.TAIL_ROUNDS ?? 10);
const NODE_FLAGS = ['--experimental-websocket', '--disable-warning=ExperimentalWarning', ...(process.env.TAIL_NODE_FLAGS ?? '').split(' ').filter(Boolean)];

/** Voluntary context switches of each thread of `pid`, by thread name. */
function threadSwitches(pid) {
  const out = {};
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const comm = /^Name:\s*(.*)$/m.exec(status)[1].replace(/-\d+$/, '-N');
      // (Node names all its threads "node": its main thread is the one whose id is the pid.)
      const name = comm === 'node' ? (String(pid) === tid ? 'node (main)' : 'node (others)') : comm;
      const v = Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(status)[1]);
      const nv = Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(status)[1]);
      out[name] ??= { threads: 0, voluntary: 0, involuntary: 0 };
      out[name].threads++;
      out[name].voluntary += v;
      out[name].involuntary += nv;
    } catch {
      // (A thread that ended meanwhile.)
    }
  }
  return out;
}

async function callee(system, url, traceFile) {
  const args = [...NODE_FLAGS, path.join(here, 'callee.mjs'), system];
  if (url) args.push(url);
  const p = start(`${system} callee`, process.execPath, args, {
    cwd: here,
    env: { ...process.env, PEERS_TRACE: traceFile },
    log: path.join(work, `tail-callee-${system}.log`),
  });
  const [, detail] = await p.waitFor(/^ready (.*)$/, 'ready line', 30_000);
  return { proc: p, detail };
}

async function caller(system, url) {
  const mode = system === 'relay' ? 'echo' : system;
  const p = start(`${system} caller`, process.execPath, [...NODE_FLAGS, path.join(here, 'caller.mjs'), mode, url], {
    cwd: here,
    env: { ...process.env, PEERS_TRACE: '1' },
    log: path.join(work, `tail-caller-${system}.log`),
    ipc: true,
  });
  let pending = null;
  await deadline(
    new Promise((resolve, reject) => {
      p.child.on('message', (m) => {
        if (m?.error) (pending?.reject ?? reject)(new Error(m.error));
        else if (m?.ready) resolve();
        else if (m?.round && pending) {
          const { resolve: res } = pending;
          pending = null;
          res(m);
        }
      });
    }),
    30_000,
    `${system} caller: connecting`,
  );
  return {
    proc: p,
    round(n) {
      const answer = new Promise((resolve, reject) => {
        pending = { resolve, reject };
      });
      p.child.send({ op: 'round', n, inFlight: 1 });
      return deadline(answer, 120_000 + n * 5, `${system}: a round of ${n} calls`);
    },
  };
}

function readGcs(file) {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Whether [s, e] (ms) overlaps one of `gcs` ([start ms, duration ms]), sorted by start. */
function overlaps(gcs, s, e) {
  let lo = 0;
  let hi = gcs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (gcs[mid][0] + gcs[mid][1] < s) lo = mid + 1;
    else hi = mid;
  }
  return lo < gcs.length && gcs[lo][0] <= e;
}

const fmt = (us) => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(0)} µs`);

async function main() {
  fs.mkdirSync(work, { recursive: true });
  const traces = { wspr: path.join(work, 'tail-gc-wspr-callee.jsonl'), relay: path.join(work, 'tail-gc-echo.jsonl') };
  for (const f of Object.values(traces)) fs.rmSync(f, { force: true });
  const credentials = path.join(work, 'credentials');
  fs.mkdirSync(credentials, { recursive: true });
  const d = start('wsprd', WSPRD, ['serve', '--listen', '127.0.0.1:0', '--mounttable-listen', '127.0.0.1:0', '--log-level', 'warn'], {
    env: { ...process.env, WSPR_CREDENTIALS: credentials },
    log: path.join(work, 'tail-wsprd.log'),
    stdin: 'ignore',
  });
  const [, http] = await d.waitFor(/^wsprd listening on (http:\/\/\S+)$/, 'its "listening" line', 20_000);
  await d.waitFor(/^name space root \S+/, 'its "name space root" line', 20_000);
  const url = `${http.replace(/^http/, 'ws')}/ws`;
  const echo = await callee('echo', null, traces.relay);
  const upstream = /^ws:\/\/([^/]+)\//.exec(echo.detail)[1];
  const relay = start('relay', RELAY, [upstream], { log: path.join(work, 'tail-relay.log') });
  const [, relayUrl] = await relay.waitFor(/^ready (\S+)$/, 'ready line', 20_000);
  const calleeProc = (await callee('wspr', url, traces.wspr)).proc;
  const callers = { wspr: await caller('wspr', url), relay: await caller('relay', relayUrl) };
  const wsprCallee = calleeProc;
  console.log(
    `pids: wsprd ${d.pid}, wspr caller ${callers.wspr.proc.pid}, wspr callee ${wsprCallee.pid}, ` +
      `relay ${relay.pid}, echo caller ${callers.relay.proc.pid}, echo server ${echo.proc.pid}`,
  );
  for (const c of Object.values(callers)) await c.round(2000);

  const acc = { wspr: { lat: [], starts: [], gcs: [], cpu: [0, 0, 0] }, relay: { lat: [], starts: [], gcs: [], cpu: [0, 0, 0] } };
  // Whose CPU time counts for each system: the server, the callee, the caller.
  const cpuPids = {
    wspr: () => [d.pid, wsprCallee.pid, callers.wspr.proc.pid],
    relay: () => [relay.pid, echo.proc.pid, callers.relay.proc.pid],
  };
  const per = Math.ceil(CALLS / ROUNDS);
  let switches = null;
  let t0 = null;
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of r % 2 ? ['relay', 'wspr'] : ['wspr', 'relay']) {
      const watched =
        s === 'wspr'
          ? { wsprd: d.pid, 'wspr caller': callers.wspr.proc.pid, 'wspr callee': wsprCallee.pid }
          : { relay: relay.pid, 'echo caller': callers.relay.proc.pid, 'echo server': echo.proc.pid };
      const before = Object.fromEntries(Object.entries(watched).map(([k, pid]) => [k, threadSwitches(pid)]));
      const cpu0 = cpuPids[s]().map(cpuTicks);
      const res = await callers[s].round(per);
      cpuPids[s]().forEach((pid, i) => {
        acc[s].cpu[i] += cpuTicks(pid) - cpu0[i];
      });
      {
        switches ??= {};
        for (const [proc, pid] of Object.entries(watched)) {
          for (const [thread, a] of Object.entries(threadSwitches(pid))) {
            const name = `${proc}: ${thread}`;
            const b = before[proc][thread] ?? { voluntary: 0, involuntary: 0 };
            switches[name] ??= { threads: a.threads, voluntary: 0, involuntary: 0 };
            switches[name].voluntary += a.voluntary - b.voluntary;
            switches[name].involuntary += a.involuntary - b.involuntary;
          }
        }
      }
      t0 ??= res.starts[0];
      acc[s].lat.push(res.lat);
      acc[s].starts.push(res.starts);
      acc[s].gcs.push(...res.gcs);
    }
  }
  await stopAll();

  const lines = [];
  for (const s of ['wspr', 'relay']) {
    const lat = acc[s].lat.flatMap((a) => Array.from(a));
    const starts = acc[s].starts.flatMap((a) => Array.from(a));
    const callerGcs = acc[s].gcs.sort((a, b) => a[0] - b[0]);
    const first = Math.min(...starts);
    const last = Math.max(...starts.map((x, i) => x + lat[i] / 1000));
    const calleeGcs = readGcs(traces[s])
      .filter((g) => g[0] + g[1] >= first && g[0] <= last)
      .sort((a, b) => a[0] - b[0]);
    const sorted = sortedCopy(Float64Array.from(lat));
    const p50 = quantile(sorted, 0.5);
    const p99 = quantile(sorted, 0.99);
    const p999 = quantile(sorted, 0.999);
    let slow = 0;
    let slowCaller = 0;
    let slowCallee = 0;
    const clean = [];
    for (let i = 0; i < lat.length; i++) {
      const sEnd = starts[i] + lat[i] / 1000;
      const inCaller = overlaps(callerGcs, starts[i], sEnd);
      const inCallee = overlaps(calleeGcs, starts[i], sEnd);
      if (!inCaller && !inCallee) clean.push(lat[i]);
      if (lat[i] > p99) {
        slow++;
        if (inCaller) slowCaller++;
        if (inCallee) slowCallee++;
      }
    }
    const cleanSorted = sortedCopy(Float64Array.from(clean));
    // The slow calls' windows (monotonic ms), for a scheduler trace.
    fs.writeFileSync(
      path.join(work, `tail-slow-${s}.json`),
      JSON.stringify(lat.flatMap((l, i) => (l > p99 ? [[starts[i], starts[i] + l / 1000]] : []))),
    );
    const gcMs = (gs) => gs.reduce((x, g) => x + g[1], 0);
    const calleeName = s === 'wspr' ? 'callee' : 'echo server';
    lines.push(
      `${s}: ${lat.length} calls; p50 ${fmt(p50)}, p99 ${fmt(p99)} (${(p99 / p50).toFixed(1)}× p50), p99.9 ${fmt(p999)}, max ${fmt(sorted[sorted.length - 1])}`,
      `  collections: caller ${callerGcs.length} (${gcMs(callerGcs).toFixed(1)} ms, one per ${(lat.length / Math.max(1, callerGcs.length)).toFixed(0)} calls), ` +
        `${calleeName} ${calleeGcs.length} (${gcMs(calleeGcs).toFixed(1)} ms)`,
      `  of the ${slow} calls slower than p99: ${slowCaller} overlap a collection in the caller, ${slowCallee} in the ${calleeName}`,
      `  CPU per call (scheduler run time): ${s === 'wspr' ? 'wsprd' : 'relay'} ${((acc[s].cpu[0] / CLK_TCK / lat.length) * 1e6).toFixed(1)} µs, ` +
        `${calleeName} ${((acc[s].cpu[1] / CLK_TCK / lat.length) * 1e6).toFixed(1)} µs, caller ${((acc[s].cpu[2] / CLK_TCK / lat.length) * 1e6).toFixed(1)} µs`,
      `  the ${clean.length} calls overlapping no collection: p50 ${fmt(quantile(cleanSorted, 0.5))}, p99 ${fmt(quantile(cleanSorted, 0.99))}, p99.9 ${fmt(quantile(cleanSorted, 0.999))}`,
    );
  }
  // (Both systems' rounds are counted: n / 2 calls each.)
  const n = 2 * acc.wspr.lat.reduce((x, a) => x + a.length, 0);
  lines.push('thread wake-ups per call (voluntary; involuntary), by process and thread:');
  for (const [name, v] of Object.entries(switches).sort((a, b) => b[1].voluntary - a[1].voluntary)) {
    if (v.voluntary + v.involuntary === 0) continue;
    lines.push(`  ${name} (${v.threads}): ${(v.voluntary / (n / 2)).toFixed(3)}; ${(v.involuntary / (n / 2)).toFixed(3)}`);
  }
  console.log(lines.join('\n'));
}

main().catch(async (e) => {
  console.error(`tail: ${e?.stack ?? e}`);
  await stopAll();
  process.exit(1);
});
