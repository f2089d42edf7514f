// Test helpers: a real wsprd started by the test, and the wsprd command line.
import { spawn, execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import readline from 'node:readline';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The daemon binary: $WSPRD, else the debug build of this checkout. */
export const WSPRD = process.env.WSPRD ?? path.resolve(here, '../../target/debug/wsprd');

/**
 * Credentials shared by every wsprd the tests start (one principal family,
 * so the daemon's default policy admits `wsprd call`), kept out of the
 * user's home: $WSPR_CREDENTIALS, else target/tmp/js-credentials.
 */
export const CREDENTIALS =
  process.env.WSPR_CREDENTIALS ?? path.resolve(here, '../../target/tmp/js-credentials');
const env = { ...process.env, WSPR_CREDENTIALS: CREDENTIALS };

/**
 * Starts `wsprd serve --listen 127.0.0.1:0 --mounttable-listen 127.0.0.1:0
 * --demo` (plus `extra` flags; `listen` instead of the free port: to start
 * a daemon again where one was) and waits, up to 20 s, for the two lines
 * that say where it listens and its name space root.
 */
export async function startDaemon(extra = [], { listen = '127.0.0.1:0' } = {}) {
  if (!fs.existsSync(WSPRD)) {
    throw new Error(`${WSPRD} is missing: run cargo build first (or set WSPRD)`);
  }
  const child = spawn(
    WSPRD,
    ['serve', '--listen', listen, '--mounttable-listen', '127.0.0.1:0', '--demo', '--log-level', 'warn', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'], env },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s) => {
    stderr += s;
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const lines = readline.createInterface({ input: child.stdout });
  const it = lines[Symbol.asyncIterator]();
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`wsprd did not start within 20 s; stderr: ${stderr}`)), 20_000);
  });
  const died = exited.then(({ code, signal }) => {
    throw new Error(`wsprd exited (${code ?? signal}) before it started; stderr: ${stderr}`);
  });
  try {
    const first = await Promise.race([it.next(), timeout, died]);
    const second = await Promise.race([it.next(), timeout, died]);
    const http = /^wsprd listening on (https?:\/\/\S+)$/.exec(first.value ?? '');
    const root = /^name space root (\S+)/.exec(second.value ?? '');
    if (!http || !root) throw new Error(`unexpected wsprd output: ${first.value} / ${second.value}`);
    const httpUrl = http[1];
    return {
      /** host:port of the HTTP listener. */
      address: httpUrl.replace(/^https?:\/\//, ''),
      child,
      /** http://host:port, or https:// with --tls-cert. */
      http: httpUrl,
      url: `${httpUrl.replace(/^http/, 'ws')}/ws`,
      root: root[1],
      exited,
      stderr: () => stderr,
      /** Stops the daemon (SIGTERM) and waits for it to exit. */
      async stop() {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        lines.close();
        return exited;
      },
      /** Kills the daemon at once (SIGKILL), as a crash would. */
      async kill() {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        lines.close();
        return exited;
      },
    };
  } catch (e) {
    child.kill('SIGKILL');
    lines.close();
    throw e;
  } finally {
    clearTimeout(timer);
    died.catch(() => {});
  }
}

/**
 * Runs `wsprd call --namespace-root ROOT NAME METHOD ARGS...` (args as
 * JSON); resolves with {code, stdout, stderr}. `input` goes to its stdin
 * (with --stdin).
 */
export function wsprdCall(root, name, method, args = [], { input, timeoutMs = 20_000 } = {}) {
  const argv = ['call', '--namespace-root', root];
  if (input !== undefined) argv.push('--stdin');
  argv.push(name, method, ...args.map((a) => JSON.stringify(a)));
  return new Promise((resolve) => {
    const child = execFile(WSPRD, argv, { timeout: timeoutMs, env }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr });
    });
    if (input !== undefined) child.stdin.end(input);
  });
}

/** `wsprd glob`: the names (first column) it prints. */
export function wsprdGlob(root, pattern) {
  return new Promise((resolve, reject) => {
    execFile(WSPRD, ['glob', '--namespace-root', root, pattern], { timeout: 20_000, env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`wsprd glob failed: ${stderr}`));
      else resolve(stdout.split('\n').filter(Boolean).map((l) => l.split('\t')[0]));
    });
  });
}

/** Waits until `cond()` is truthy (it may be async), checking every 10 ms, for at most `ms`. */
export async function waitFor(cond, what, ms = 5_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
