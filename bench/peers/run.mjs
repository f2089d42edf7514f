// `make bench-peers`: JavaScript calling JavaScript through wsprd and
// through Crossbar.io (autobahn), in one run, alternating; and two floors:
// a websocket echo round trip, and the same echo through a relay that only
// copies bytes (relay.rs), which is what relaying itself costs on this
// machine. The method is in docs/performance.md.
//
//   node --experimental-websocket bench/peers/run.mjs
//
// Needs target/release/wsprd, target/peers/venv/bin/crossbar and
// bench/peers/node_modules (the make target provides them). Prints a table,
// writes target/bench/peers.json and target/bench/peers.svg. Every process
// it starts is stopped when it ends, fails, or gets SIGINT/SIGTERM.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  CLK_TCK,
  cmdline,
  concat,
  contextSwitches,
  cpuTicks,
  deadline,
  freePort,
  machineTicks,
  memory,
  processTree,
  quantile,
  sortedCopy,
  start,
  stopAll,
} from './lib.mjs';
import { fmtUs, latencySvg } from './svg.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const work = path.join(repo, 'target/peers');
const outDir = path.join(repo, 'target/bench');

const int = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${v}: expected a positive integer`);
  return n;
};

const config = {
  warmupCalls: int('PEERS_WARMUP', 2000),
  seqCalls: int('PEERS_SEQ_CALLS', 20000),
  seqRounds: int('PEERS_SEQ_ROUNDS', 10),
  inFlight: int('PEERS_IN_FLIGHT', 64),
  parCalls: int('PEERS_PAR_CALLS', 40000),
  parRounds: int('PEERS_PAR_ROUNDS', 8),
};
const WSPRD = process.env.WSPRD ?? path.join(repo, 'target/release/wsprd');
const RELAY = process.env.PEERS_RELAY ?? path.join(repo, 'target/release/examples/peers_relay');
const CROSSBAR = process.env.CROSSBAR ?? path.join(work, 'venv/bin/crossbar');
const NODE = process.execPath;
const NODE_FLAGS = ['--experimental-websocket', '--disable-warning=ExperimentalWarning'];

const SYSTEMS = ['wspr', 'crossbar', 'echo', 'relay'];
const LABEL = { wspr: 'wspr (wsprd)', crossbar: 'Crossbar.io', echo: 'echo floor', relay: 'relay floor' };
const COLOR = { wspr: '#1f6fb4', crossbar: '#d2402a', echo: '#7a7a7a', relay: '#2a9d4a' };

function log(msg) {
  console.log(`bench-peers: ${msg}`);
}

// ------------------------------------------------------------- the systems

async function startDaemon() {
  if (!fs.existsSync(WSPRD)) throw new Error(`${WSPRD} is missing: run cargo build --release (make bench-peers does)`);
  const credentials = path.join(work, 'credentials');
  fs.mkdirSync(credentials, { recursive: true });
  const d = start('wsprd', WSPRD, ['serve', '--listen', '127.0.0.1:0', '--mounttable-listen', '127.0.0.1:0', '--log-level', 'warn'], {
    env: { ...process.env, WSPR_CREDENTIALS: credentials },
    log: path.join(work, 'wsprd.log'),
    stdin: 'ignore',
  });
  const [, http] = await d.waitFor(/^wsprd listening on (http:\/\/\S+)$/, 'its "listening" line', 20_000);
  await d.waitFor(/^name space root \S+/, 'its "name space root" line', 20_000);
  return { proc: d, url: `${http.replace(/^http/, 'ws')}/ws` };
}

async function startCrossbar() {
  if (!fs.existsSync(CROSSBAR)) {
    throw new Error(`${CROSSBAR} is missing: pip install -r bench/peers/requirements.txt into target/peers/venv (make bench-peers does)`);
  }
  const cbdir = path.join(work, 'crossbar');
  fs.mkdirSync(cbdir, { recursive: true });
  const port = await freePort();
  // One router worker, one realm, anonymous access to everything, a plain
  // websocket transport on loopback with the JSON serializer (as wspr).
  const nodeConfig = {
    version: 2,
    controller: {},
    workers: [
      {
        type: 'router',
        realms: [
          {
            name: 'realm1',
            roles: [
              {
                name: 'anonymous',
                permissions: [
                  {
                    uri: '',
                    match: 'prefix',
                    allow: { call: true, register: true, publish: true, subscribe: true },
                    disclose: { caller: false, publisher: false },
                    cache: true,
                  },
                ],
              },
            ],
          },
        ],
        transports: [
          {
            type: 'websocket',
            endpoint: { type: 'tcp', interface: '127.0.0.1', port },
            serializers: ['json'],
          },
        ],
      },
    ],
  };
  fs.writeFileSync(path.join(cbdir, 'config.json'), `${JSON.stringify(nodeConfig, null, 2)}\n`);
  const cb = start('crossbar', CROSSBAR, ['start', '--cbdir', cbdir, '--loglevel', 'info'], {
    cwd: work,
    log: path.join(work, 'crossbar.log'),
    group: true,
    stdin: 'ignore',
  });
  // "Router TCP/PORT transport started ... listening on TCP port PORT", then
  // "Ok, local node configuration ran successfully." Its first boot on a
  // fresh machine compiles its Python modules: allow two minutes.
  const [, listening] = await cb.waitFor(/listening on TCP port (\d+)/, 'router transport listening', 120_000);
  if (Number(listening) !== port) throw new Error(`crossbar listens on ${listening}, expected ${port}`);
  await cb.waitFor(/local node configuration ran successfully|NODE_BOOT_COMPLETE/, 'node boot complete', 60_000);
  const tree = processTree(cb.pid);
  const worker = tree.find((p) => /crossbar-worker|RouterController/.test(cmdline(p)));
  if (!worker) throw new Error(`no crossbar router worker under pid ${cb.pid}: ${tree.map((p) => `${p} ${cmdline(p)}`).join('; ')}`);
  return { proc: cb, url: `ws://127.0.0.1:${port}/ws`, worker };
}

async function startCallee(system, url) {
  const args = [...NODE_FLAGS, path.join(here, 'callee.mjs'), system === 'crossbar' ? 'wamp' : system];
  if (url) args.push(url);
  const p = start(`${system} callee`, NODE, args, { cwd: here, log: path.join(work, `callee-${system}.log`) });
  const [, detail] = await p.waitFor(/^ready (.*)$/, 'ready line', 30_000);
  return { proc: p, detail };
}

/**
 * The relay floor: relay.rs in front of the echo server. A call through it
 * wakes the same chain as a call through wsprd (caller, relay, callee,
 * relay, caller) and does no work at the relay.
 */
async function startRelay(echoUrl) {
  if (!fs.existsSync(RELAY)) throw new Error(`${RELAY} is missing: cargo build --release --example peers_relay (make bench-peers does)`);
  const upstream = /^ws:\/\/([^/]+)\//.exec(echoUrl)?.[1];
  if (!upstream) throw new Error(`the echo server's address ${echoUrl} is not ws://HOST:PORT/`);
  const p = start('relay', RELAY, [upstream], { log: path.join(work, 'relay.log') });
  const [, url] = await p.waitFor(/^ready (\S+)$/, 'ready line', 20_000);
  return { proc: p, url };
}

/** A caller process; `round(n, inFlight)` runs one round in it. */
async function startCaller(system, url) {
  const mode = { crossbar: 'wamp', relay: 'echo' }[system] ?? system;
  const args = [...NODE_FLAGS, path.join(here, 'caller.mjs'), mode, url];
  const p = start(`${system} caller`, NODE, args, { cwd: here, log: path.join(work, `caller-${system}.log`), ipc: true });
  let pending = null;
  let failure = null;
  const ready = new Promise((resolve, reject) => {
    p.child.on('message', (m) => {
      if (m?.error) {
        failure = new Error(m.error);
        if (pending) pending.reject(failure);
        else reject(failure);
      } else if (m?.ready) resolve();
      else if (m?.round && pending) {
        const { resolve: res } = pending;
        pending = null;
        res(m);
      }
    });
    p.exited.then(({ code, signal }) => {
      const err = failure ?? new Error(`${system} caller exited (${code ?? signal}); its output ends:\n${p.output()}`);
      if (pending) pending.reject(err);
      reject(err);
    });
  });
  await deadline(ready, 30_000, `${system} caller: connecting`);
  return {
    proc: p,
    round(n, inFlight) {
      if (failure) return Promise.reject(failure);
      const answer = new Promise((resolve, reject) => {
        pending = { resolve, reject };
      });
      p.child.send({ op: 'round', n, inFlight });
      // Generous: a round of the slowest system takes seconds.
      return deadline(answer, 120_000 + n * 5, `${system}: a round of ${n} calls`);
    },
  };
}

// ------------------------------------------------------------- measuring

function ticksOf(pids) {
  let sum = 0;
  for (const p of pids) {
    const t = cpuTicks(p);
    if (t === null) throw new Error(`process ${p} is gone`);
    sum += t;
  }
  return sum;
}

/** Voluntary context switches (a thread blocked, to be woken later) of processes, summed. */
function switchesOf(pids) {
  return pids.reduce((sum, p) => sum + (contextSwitches(p)?.voluntary ?? 0), 0);
}

/** Runs the rounds of one mode, systems interleaved (the order rotates each round). */
async function measure(mode, sys, calls, rounds, inFlight) {
  const per = Math.ceil(calls / rounds);
  // What else the machine did meanwhile: its busy time less our processes'.
  const ours = () =>
    ticksOf([...new Set([process.pid, ...SYSTEMS.flatMap((s) => [...sys[s].serverPids(), sys[s].callee.proc.pid, sys[s].caller.proc.pid])])]);
  const m0 = machineTicks();
  const o0 = ours();
  const w0 = process.hrtime.bigint();
  const acc = Object.fromEntries(
    SYSTEMS.map((s) => [s, { lat: [], ns: 0, calls: 0, server: 0, callee: 0, caller: 0, switches: 0, rounds: 0 }]),
  );
  for (let r = 0; r < rounds; r++) {
    const order = SYSTEMS.map((_, i) => SYSTEMS[(i + r) % SYSTEMS.length]);
    for (const s of order) {
      const x = sys[s];
      const n = Math.min(per, calls - acc[s].calls);
      if (n <= 0) continue;
      const serverPids = x.serverPids();
      const before = [ticksOf(serverPids), ticksOf([x.callee.proc.pid]), ticksOf([x.caller.proc.pid]), switchesOf(serverPids)];
      const res = await x.caller.round(n, inFlight);
      const after = [ticksOf(serverPids), ticksOf([x.callee.proc.pid]), ticksOf([x.caller.proc.pid]), switchesOf(serverPids)];
      const a = acc[s];
      a.lat.push(res.lat);
      a.ns += res.ns;
      a.calls += n;
      a.rounds++;
      a.server += after[0] - before[0];
      a.callee += after[1] - before[1];
      a.caller += after[2] - before[2];
      a.switches += after[3] - before[3];
    }
    if (process.stdout.isTTY) process.stdout.write(`\r  ${mode}: round ${r + 1}/${rounds}`);
  }
  if (process.stdout.isTTY) process.stdout.write('\n');
  const wall = Number(process.hrtime.bigint() - w0) / 1e9;
  const m1 = machineTicks();
  const o1 = ours();
  const cores = (ticks) => ticks / CLK_TCK / wall;
  const load = {
    wallSeconds: wall,
    machineBusyCores: cores(m1.busy - m0.busy),
    benchCores: cores(o1 - o0),
    otherCores: Math.max(0, cores(m1.busy - m0.busy - (o1 - o0))),
    stealCores: cores(m1.steal - m0.steal),
  };
  log(
    `${mode}: ${wall.toFixed(1)} s; the machine was busy ${load.machineBusyCores.toFixed(2)} cores on average, ` +
      `this bench ${load.benchCores.toFixed(2)}, other work ${load.otherCores.toFixed(2)}, steal ${load.stealCores.toFixed(2)}`,
  );
  const out = { load };
  for (const s of SYSTEMS) {
    const a = acc[s];
    const lat = concat(a.lat);
    const sorted = sortedCopy(lat);
    const mean = lat.reduce((x, y) => x + y, 0) / lat.length;
    const us = (ticks) => ((ticks / CLK_TCK) * 1e6) / a.calls;
    out[s] = {
      calls: a.calls,
      rounds: a.rounds,
      seconds: a.ns / 1e9,
      callsPerSecond: a.calls / (a.ns / 1e9),
      latencyUs: {
        mean,
        min: sorted[0],
        p50: quantile(sorted, 0.5),
        p90: quantile(sorted, 0.9),
        p99: quantile(sorted, 0.99),
        p999: quantile(sorted, 0.999),
        max: sorted[sorted.length - 1],
      },
      cpuUsPerCall: { server: us(a.server), callee: us(a.callee), caller: us(a.caller) },
      cpuTicks: { server: a.server, callee: a.callee, caller: a.caller },
      serverVoluntarySwitchesPerCall: a.switches / a.calls,
      sorted,
    };
  }
  return out;
}

// ------------------------------------------------------------- reporting

const fmtN = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const fmtX = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : 'n/a');
const fmtCpu = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} µs` : 'n/a');
const fmtMiB = (kib) => (Number.isFinite(kib) ? `${(kib / 1024).toFixed(1)} MiB` : 'n/a');

function table(rows, header) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join(' | ')} |`;
  return [line(header), `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');
}

function report(results, mem, meta) {
  const { seq, par } = results;
  const W = (m) => m.wspr;
  const C = (m) => m.crossbar;
  // Every "wspr advantage" is how many times better wspr does: calls per
  // second wspr/Crossbar; latency, CPU and memory Crossbar/wspr.
  const targets = [
    {
      id: 'sequentialThroughput',
      what: 'calls/s sequential, wspr ÷ Crossbar',
      value: W(seq).callsPerSecond / C(seq).callsPerSecond,
      target: '≥ 4×',
      met: (v) => v >= 4,
    },
    {
      id: 'inFlightThroughput',
      what: `calls/s ${config.inFlight} in flight, wspr ÷ Crossbar`,
      value: W(par).callsPerSecond / C(par).callsPerSecond,
      target: '≥ 3×',
      met: (v) => v >= 3,
    },
    {
      id: 'p99BelowCrossbarP50',
      what: 'Crossbar p50 ÷ wspr p99, sequential',
      value: C(seq).latencyUs.p50 / W(seq).latencyUs.p99,
      target: '> 1×',
      met: (v) => v > 1,
    },
    {
      id: 'p99OverRelayP99',
      what: 'wspr p99 ÷ relay floor p99, sequential (the tail beside relaying alone)',
      value: W(seq).latencyUs.p99 / seq.relay.latencyUs.p99,
      target: '≤ 1.5×',
      met: (v) => v <= 1.5,
    },
    {
      id: 'p99OverP50',
      what: 'wspr p99 ÷ wspr p50, sequential',
      value: W(seq).latencyUs.p99 / W(seq).latencyUs.p50,
      target: '≤ 4×',
      met: (v) => v <= 4,
    },
    {
      id: 'p50OverRelayP50',
      what: 'wspr p50 ÷ relay floor p50, sequential',
      value: W(seq).latencyUs.p50 / seq.relay.latencyUs.p50,
      target: '≤ 1.2×',
      met: (v) => v <= 1.2,
    },
    {
      id: 'p99BelowCrossbarP50InFlight',
      what: `Crossbar p50 ÷ wspr p99, ${config.inFlight} in flight`,
      value: C(par).latencyUs.p50 / W(par).latencyUs.p99,
      target: '> 1×',
      met: (v) => v > 1,
    },
    {
      id: 'cpuPerCallSequential',
      what: 'router ÷ daemon CPU per call, sequential',
      value: C(seq).cpuUsPerCall.server / W(seq).cpuUsPerCall.server,
      target: '≥ 5×',
      met: (v) => v >= 5,
    },
    {
      id: 'cpuPerCallInFlight',
      what: `router ÷ daemon CPU per call, ${config.inFlight} in flight`,
      value: C(par).cpuUsPerCall.server / W(par).cpuUsPerCall.server,
      target: '≥ 5×',
      met: (v) => v >= 5,
    },
    {
      id: 'peakRss',
      what: 'router worker ÷ daemon peak RSS',
      value: mem.crossbarWorker.VmHWM / mem.wsprd.VmHWM,
      target: '≥ 10×',
      met: (v) => v >= 10,
    },
    {
      id: 'p50OverEcho',
      what: 'wspr p50 ÷ echo p50, sequential (cacheable JS→JS call)',
      value: W(seq).latencyUs.p50 / seq.echo.latencyUs.p50,
      target: '≤ 2×',
      met: (v) => v <= 2,
    },
  ];
  for (const t of targets) t.met = t.met(t.value);
  // Where the floor target stands against relaying itself.
  const context = [
    {
      id: 'relayOverEcho',
      what: 'relay floor p50 ÷ echo p50, sequential (relaying alone)',
      value: seq.relay.latencyUs.p50 / seq.echo.latencyUs.p50,
    },
    {
      id: 'relayP99OverP50',
      what: 'relay floor p99 ÷ relay floor p50, sequential (the tail of relaying alone)',
      value: seq.relay.latencyUs.p99 / seq.relay.latencyUs.p50,
    },
    {
      id: 'p999OverRelayP999',
      what: 'wspr p99.9 ÷ relay floor p99.9, sequential',
      value: W(seq).latencyUs.p999 / seq.relay.latencyUs.p999,
    },
    {
      id: 'relayThroughputOverCrossbar',
      what: 'calls/s sequential, relay floor ÷ Crossbar (the most any relay gets here)',
      value: seq.relay.callsPerSecond / C(seq).callsPerSecond,
    },
  ];

  const rows = [];
  const row = (what, w, c, e, adv, r = '') => rows.push([what, w, c, adv, e, r]);
  for (const [mode, m] of [
    ['sequential', seq],
    [`${config.inFlight} in flight`, par],
  ]) {
    row(
      `${mode}: calls/s`,
      fmtN(W(m).callsPerSecond),
      fmtN(C(m).callsPerSecond),
      fmtN(m.echo.callsPerSecond),
      fmtX(W(m).callsPerSecond / C(m).callsPerSecond),
      fmtN(m.relay.callsPerSecond),
    );
    for (const q of ['p50', 'p99', 'p999']) {
      row(
        `${mode}: ${q === 'p999' ? 'p99.9' : q} latency`,
        fmtUs(W(m).latencyUs[q]),
        fmtUs(C(m).latencyUs[q]),
        fmtUs(m.echo.latencyUs[q]),
        fmtX(C(m).latencyUs[q] / W(m).latencyUs[q]),
        fmtUs(m.relay.latencyUs[q]),
      );
    }
    row(
      `${mode}: daemon / router CPU per call`,
      fmtCpu(W(m).cpuUsPerCall.server),
      fmtCpu(C(m).cpuUsPerCall.server),
      fmtCpu(m.echo.cpuUsPerCall.server),
      fmtX(C(m).cpuUsPerCall.server / W(m).cpuUsPerCall.server),
      fmtCpu(m.relay.cpuUsPerCall.server),
    );
    row(
      `${mode}: daemon / router thread wake-ups per call`,
      W(m).serverVoluntarySwitchesPerCall.toFixed(2),
      C(m).serverVoluntarySwitchesPerCall.toFixed(2),
      m.echo.serverVoluntarySwitchesPerCall.toFixed(2),
      '',
      m.relay.serverVoluntarySwitchesPerCall.toFixed(2),
    );
    row(
      `${mode}: callee process CPU per call`,
      fmtCpu(W(m).cpuUsPerCall.callee),
      fmtCpu(C(m).cpuUsPerCall.callee),
      '',
      fmtX(C(m).cpuUsPerCall.callee / W(m).cpuUsPerCall.callee),
      fmtCpu(m.relay.cpuUsPerCall.callee),
    );
    row(
      `${mode}: caller process CPU per call`,
      fmtCpu(W(m).cpuUsPerCall.caller),
      fmtCpu(C(m).cpuUsPerCall.caller),
      fmtCpu(m.echo.cpuUsPerCall.caller),
      fmtX(C(m).cpuUsPerCall.caller / W(m).cpuUsPerCall.caller),
      fmtCpu(m.relay.cpuUsPerCall.caller),
    );
  }
  row(
    'daemon / router peak RSS (VmHWM)',
    fmtMiB(mem.wsprd.VmHWM),
    fmtMiB(mem.crossbarWorker.VmHWM),
    fmtMiB(mem.echo.VmHWM),
    fmtX(mem.crossbarWorker.VmHWM / mem.wsprd.VmHWM),
    fmtMiB(mem.relay.VmHWM),
  );
  row('  + crossbar controller', '', fmtMiB(mem.crossbarController.VmHWM), '', '');

  const lines = [];
  lines.push('');
  lines.push(
    `JS→JS add(a, b): ${fmtN(config.seqCalls)} sequential calls and ${fmtN(config.parCalls)} with ${config.inFlight} in flight per system, ` +
      `after ${fmtN(config.warmupCalls)} + ${fmtN(config.warmupCalls)} warm-up; rounds alternate (${config.seqRounds} and ${config.parRounds}).`,
  );
  lines.push(
    `${meta.cpus} × ${meta.cpuModel} (this run on CPUs ${meta.cpusAllowed}); node ${process.version}; crossbar ${meta.crossbarVersion}; autobahn-js ${meta.autobahnVersion}; wspr ${meta.wsprCommit}.`,
  );
  lines.push(
    'CPU per call: the scheduler\'s run time of the process(es)\' threads (schedstat) during that system\'s rounds ÷ calls (daemon: wsprd; router: crossbar\'s controller + router worker; ' +
      'echo: the echo server; relay: the relay, whose callee is the echo server).',
  );
  lines.push('The relay floor is the echo through a relay that copies bytes and parses nothing (bench/peers/relay.rs): what relaying alone costs here.');
  lines.push('Thread wake-ups per call: voluntary context switches of those processes\' threads ÷ calls.');
  const other = Math.max(seq.load.otherCores, par.load.otherCores);
  lines.push(
    `Other work on the machine meanwhile: ${seq.load.otherCores.toFixed(2)} cores (sequential), ${par.load.otherCores.toFixed(2)} (in flight) of ${meta.cpus}; ` +
      `steal ${seq.load.stealCores.toFixed(2)} / ${par.load.stealCores.toFixed(2)}.` +
      (other > 0.15 ? ' WARNING: the machine was not quiet; expect noisy numbers (the tails most).' : ''),
  );
  lines.push('');
  lines.push(table(rows, ['', 'wspr', 'Crossbar.io', 'wspr advantage', 'echo floor', 'relay floor']));
  lines.push('');
  lines.push(
    table(
      targets.map((t) => [t.what, fmtX(t.value), t.target, t.met ? 'met' : 'NOT met']),
      ['target', 'now', 'needed', ''],
    ),
  );
  lines.push('');
  lines.push(
    table(
      context.map((c) => [c.what, fmtX(c.value)]),
      ['for comparison (not targets)', 'now'],
    ),
  );
  lines.push('');
  return { text: lines.join('\n'), targets, context };
}

// ------------------------------------------------------------------ main

async function main() {
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(outDir, { recursive: true });
  if (typeof WebSocket === 'undefined') {
    throw new Error('no global WebSocket: run node with --experimental-websocket (Node 20) or use Node 22+');
  }
  const t0 = Date.now();
  const meta = {
    date: new Date().toISOString(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    kernel: os.release(),
    // CPUs this run may use (taskset narrows them for every process it starts).
    cpusAllowed: readVersion(() => /^Cpus_allowed_list:\s*(\S+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]),
    node: process.version,
    crossbarVersion: readVersion(() => execFileSync(path.join(path.dirname(CROSSBAR), 'python'), ['-c', 'import crossbar; print(crossbar.__version__)'], { encoding: 'utf8' }).trim()),
    autobahnVersion: readVersion(() => JSON.parse(fs.readFileSync(path.join(here, 'node_modules/autobahn/package.json'), 'utf8')).version),
    wsprCommit: readVersion(() => execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim()),
  };

  log('starting wsprd, crossbar, the echo server and the relay');
  const [daemon, crossbar, echoServer] = await Promise.all([startDaemon(), startCrossbar(), startCallee('echo')]);
  const relay = await startRelay(echoServer.detail);
  log(
    `wsprd ${daemon.url} (pid ${daemon.proc.pid}); crossbar ${crossbar.url} (controller ${crossbar.proc.pid}, router worker ${crossbar.worker}); ` +
      `echo ${echoServer.detail}; relay ${relay.url} (pid ${relay.proc.pid})`,
  );

  const [wsprCallee, crossbarCallee] = await Promise.all([startCallee('wspr', daemon.url), startCallee('crossbar', crossbar.url)]);
  const [wsprCaller, crossbarCaller, echoCaller, relayCaller] = await Promise.all([
    startCaller('wspr', daemon.url),
    startCaller('crossbar', crossbar.url),
    startCaller('echo', echoServer.detail),
    startCaller('relay', relay.url),
  ]);
  const memStart = { wsprd: memory(daemon.proc.pid), crossbarWorker: memory(crossbar.worker) };

  const sys = {
    wspr: { serverPids: () => [daemon.proc.pid], callee: wsprCallee, caller: wsprCaller },
    // The whole crossbar tree: controller and router worker (and any other worker).
    crossbar: { serverPids: () => processTree(crossbar.proc.pid), callee: crossbarCallee, caller: crossbarCaller },
    echo: { serverPids: () => [echoServer.proc.pid], callee: echoServer, caller: echoCaller },
    // The relay in the daemon's place, the echo server in the callee's.
    relay: { serverPids: () => [relay.proc.pid], callee: echoServer, caller: relayCaller },
  };

  log(`warming up: ${config.warmupCalls} sequential and ${config.warmupCalls} with ${config.inFlight} in flight per system`);
  for (const s of SYSTEMS) {
    await sys[s].caller.round(config.warmupCalls, 1);
    await sys[s].caller.round(config.warmupCalls, config.inFlight);
  }

  log('measuring');
  const seq = await measure('sequential', sys, config.seqCalls, config.seqRounds, 1);
  const par = await measure(`${config.inFlight} in flight`, sys, config.parCalls, config.parRounds, config.inFlight);

  for (const [name, p] of [
    ['wsprd', daemon.proc],
    ['crossbar', crossbar.proc],
    ['the relay', relay.proc],
  ]) {
    if (!p.isRunning()) throw new Error(`${name} died during the run; its output ends:\n${p.output()}`);
  }
  const mem = {
    wsprd: memory(daemon.proc.pid),
    crossbarWorker: memory(crossbar.worker),
    crossbarController: memory(crossbar.proc.pid),
    echo: memory(echoServer.proc.pid),
    relay: memory(relay.proc.pid),
    wsprCallee: memory(wsprCallee.proc.pid),
    crossbarCallee: memory(crossbarCallee.proc.pid),
    atStart: memStart,
  };
  await stopAll();

  const { text, targets, context } = report({ seq, par }, mem, meta);
  console.log(text);

  const strip = (m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, (({ sorted, ...rest }) => rest)(v)]));
  const json = {
    meta: { ...meta, seconds: (Date.now() - t0) / 1000 },
    config,
    method: {
      latency: 'process.hrtime.bigint() around each await in the caller process, microseconds',
      callsPerSecond: 'calls ÷ the summed wall time of that system\'s rounds',
      cpuUsPerCall:
        'the scheduler\'s run time of every thread (/proc/PID/task/TID/schedstat) during that system\'s rounds ÷ calls; server = wsprd, crossbar controller + router worker, the echo server, or the relay',
      relayFloor: 'the echo caller through bench/peers/relay.rs (copies bytes both ways, a blocking thread per direction) to the echo server',
      rss: 'VmHWM of /proc/PID/status at the end of the run, KiB',
    },
    sequential: strip(seq),
    inFlight: strip(par),
    memoryKiB: mem,
    targets: targets.map(({ id, what, value, target, met }) => ({ id, what, value, target, met })),
    forComparison: context,
    table: text,
  };
  fs.writeFileSync(path.join(outDir, 'peers.json'), `${JSON.stringify(json, null, 2)}\n`);
  const columns = [
    ['sequential', seq],
    [`${config.inFlight} in flight`, par],
  ].map(([title, m]) => ({
    title,
    series: SYSTEMS.map((s) => ({ name: LABEL[s], color: COLOR[s], sorted: m[s].sorted })),
  }));
  fs.writeFileSync(
    path.join(outDir, 'peers.svg'),
    latencySvg({
      title: 'add(a, b), JavaScript → JavaScript: wspr vs Crossbar.io; a websocket echo, direct and through a relay',
      subtitle: `${meta.date.slice(0, 10)}, ${meta.cpus} × ${meta.cpuModel}, node ${process.version}, crossbar ${meta.crossbarVersion}, wspr ${meta.wsprCommit}: ` +
        `sequential p50 wspr ${fmtUs(seq.wspr.latencyUs.p50)}, Crossbar ${fmtUs(seq.crossbar.latencyUs.p50)}, echo ${fmtUs(seq.echo.latencyUs.p50)}, relay ${fmtUs(seq.relay.latencyUs.p50)}`,
      columns,
    }),
  );
  log(`wrote ${path.relative(repo, path.join(outDir, 'peers.json'))} and ${path.relative(repo, path.join(outDir, 'peers.svg'))} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
}

function readVersion(fn) {
  try {
    return fn();
  } catch {
    return 'unknown';
  }
}

let stopping = false;
async function bail(err, code = 1) {
  if (stopping) return;
  stopping = true;
  // Our own failures say what went wrong; a bug's stack says where.
  const plain = err instanceof Error && err.constructor === Error;
  console.error(`\nbench-peers failed: ${plain ? err.message : (err?.stack ?? err)}`);
  try {
    await stopAll();
  } finally {
    process.exit(code);
  }
}
process.on('SIGINT', () => bail(new Error('interrupted (SIGINT)'), 130));
process.on('SIGTERM', () => bail(new Error('terminated (SIGTERM)'), 143));
process.on('uncaughtException', (e) => bail(e));
process.on('unhandledRejection', (e) => bail(e));

main().catch((e) => bail(e));
