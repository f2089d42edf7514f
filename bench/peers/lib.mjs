// Helpers of `make bench-peers`: statistics, /proc readings, child processes
// with deadlines. See docs/performance.md.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux). */
export const CLK_TCK = 100;

// ------------------------------------------------------------- statistics

/** The q-quantile (0..1) of sorted samples, nearest rank. */
export function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

/** Sorted copy of a Float64Array (or array) of samples. */
export function sortedCopy(samples) {
  return Float64Array.from(samples).sort();
}

/** Concatenates Float64Arrays. */
export function concat(arrays) {
  const n = arrays.reduce((s, a) => s + a.length, 0);
  const out = new Float64Array(n);
  let o = 0;
  for (const a of arrays) {
    out.set(a, o);
    o += a.length;
  }
  return out;
}

// ------------------------------------------------------------------ /proc

/**
 * A process's CPU time in clock ticks (fractional); null if it is gone.
 * The scheduler's run time of each live thread (/proc/PID/task/TID/schedstat,
 * nanoseconds), summed: utime + stime of /proc/PID/stat are
 * charged a whole tick at a time on this kernel (tick accounting, 250 Hz),
 * so a second of CPU read that way moves by several per cent from run to
 * run. (A thread that ends between two readings takes its time with it;
 * the bench's processes keep theirs.) Falls back to utime + stime where
 * schedstat is missing.
 */
export function cpuTicks(pid) {
  let tasks;
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let ns = 0;
  let read = 0;
  for (const tid of tasks) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      read++;
    } catch {
      // (A thread that ended meanwhile.)
    }
  }
  if (read > 0) return (ns / 1e9) * CLK_TCK;
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  return Number(rest[11]) + Number(rest[12]);
}

/** Machine-wide CPU time from /proc/stat, in clock ticks: {busy, steal, idle}. */
export function machineTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
  return { busy: user + nice + system + irq + softirq, steal: steal ?? 0, idle: idle + iowait };
}

/**
 * Context switches of a process, summed over its live threads
 * (/proc/<pid>/task/<tid>/status): {voluntary, involuntary}. Threads that
 * have exited are not counted.
 */
export function contextSwitches(pid) {
  let voluntary = 0;
  let involuntary = 0;
  let tasks = [];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  for (const t of tasks) {
    try {
      const text = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      voluntary += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(text)?.[1] ?? 0);
      involuntary += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(text)?.[1] ?? 0);
    } catch {
      // The thread has just exited.
    }
  }
  return { voluntary, involuntary };
}

/** The parent pid of a process, or null. */
function parentOf(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** A process and all its descendants, found through /proc (parent pids). */
export function processTree(root) {
  const children = new Map();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    const ppid = parentOf(pid);
    if (ppid === null) continue;
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(pid);
  }
  const out = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.pop();
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** The command line of a process, as one string ('' if it is gone). */
export function cmdline(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** Fields of /proc/<pid>/status in KiB: {VmHWM, VmRSS}; null if the process is gone. */
export function memory(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const field = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { VmHWM: field('VmHWM'), VmRSS: field('VmRSS'), threads: Number(/^Threads:\s+(\d+)/m.exec(text)?.[1] ?? NaN) };
}

// --------------------------------------------------------------- processes

/** A free TCP port on 127.0.0.1 (bound, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const children = new Set();

/**
 * Spawns a process that is stopped by stopAll(). Its output is kept
 * (`output()`, the last 64 KiB) and, with `log`, appended to that file.
 * `group: true` starts it in a process group of its own, and stopping it
 * signals the whole group (crossbar's workers).
 */
export function start(name, command, args, { env, cwd, log, group = false, ipc = false, stdin = 'pipe' } = {}) {
  const stdio = [stdin, 'pipe', 'pipe'];
  if (ipc) stdio.push('ipc');
  const child = spawn(command, args, { env, cwd, stdio, detached: group, serialization: ipc ? 'advanced' : undefined });
  const logStream = log ? fs.createWriteStream(log, { flags: 'w' }) : null;
  let tail = '';
  const keep = (chunk) => {
    tail = (tail + chunk).slice(-65536);
    logStream?.write(chunk);
  };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => resolve({ code: null, signal: null, err }));
  });
  const proc = {
    name,
    child,
    pid: child.pid,
    group,
    exited,
    output: () => tail,
    isRunning: () => child.exitCode === null && child.signalCode === null,
    /**
     * Waits, up to `ms`, for a line of stdout that matches `re`; resolves
     * with the match. Fails if the process exits first.
     */
    waitFor(re, what, ms) {
      return new Promise((resolve, reject) => {
        const done = (fn, v) => {
          clearTimeout(timer);
          lineWaiters.delete(check);
          fn(v);
        };
        // Lines already read count too; a match consumes the lines up to it.
        const check = () => {
          while (cursor < lines.length) {
            const m = re.exec(lines[cursor++]);
            if (m) {
              done(resolve, m);
              return;
            }
          }
        };
        const timer = setTimeout(
          () => done(reject, new Error(`${name}: no ${what} within ${ms / 1000} s; its output ends:\n${indent(tail)}`)),
          ms,
        );
        lineWaiters.add(check);
        exited.then(({ code, signal, err }) =>
          done(reject, new Error(`${name} exited (${err?.message ?? code ?? signal}) before ${what}; its output ends:\n${indent(tail)}`)),
        );
        check();
      });
    },
  };
  // Lines of stdout, kept until some waitFor has looked at them.
  const lines = [];
  let cursor = 0;
  let partial = '';
  const lineWaiters = new Set();
  child.stdout.on('data', (chunk) => {
    keep(chunk);
    partial += chunk;
    let nl;
    while ((nl = partial.indexOf('\n')) >= 0) {
      lines.push(partial.slice(0, nl));
      partial = partial.slice(nl + 1);
    }
    if (lines.length > 4096) {
      // Nobody waits for this much: keep the newest lines.
      const drop = lines.length - 1024;
      lines.splice(0, drop);
      cursor = Math.max(0, cursor - drop);
    }
    for (const w of [...lineWaiters]) w();
  });
  children.add(proc);
  exited.then(() => logStream?.end());
  return proc;
}

function indent(text) {
  const lines = text.trimEnd().split('\n').slice(-30);
  return lines.map((l) => `    ${l}`).join('\n');
}

function signal(proc, sig) {
  try {
    if (proc.group) process.kill(-proc.pid, sig);
    else proc.child.kill(sig);
  } catch {
    // Already gone.
  }
}

/**
 * Stops every process start() started: SIGTERM, then SIGKILL for those
 * still running after `ms`. Resolves when all have exited.
 */
export async function stopAll(ms = 10_000) {
  const procs = [...children];
  children.clear();
  for (const p of procs) if (p.isRunning()) signal(p, 'SIGTERM');
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  await Promise.race([Promise.all(procs.map((p) => p.exited)), late]);
  clearTimeout(timer);
  for (const p of procs) {
    if (p.isRunning()) {
      console.error(`${p.name} (pid ${p.pid}) did not stop within ${ms / 1000} s of SIGTERM: killing it`);
      signal(p, 'SIGKILL');
    } else if (p.group) {
      // The group leader is gone; make sure none of its workers outlive it.
      signal(p, 'SIGKILL');
    }
  }
  await Promise.all(procs.map((p) => p.exited));
}

/** Rejects after `ms` with `what` in the message, unless `promise` settles first. */
export function deadline(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
