// The TypeScript declarations compile against the documented uses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const js = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

test('wspr.d.ts type-checks a program that uses the library', async () => {
  const tsc = path.join(js, 'node_modules', 'typescript', 'bin', 'tsc');
  const { code, out } = await new Promise((resolve) => {
    execFile(process.execPath, [tsc, '-p', path.join(js, 'test', 'types')], { timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code ?? 1) : 0, out: stdout + stderr }),
    );
  });
  assert.equal(out, '');
  assert.equal(code, 0);
});
