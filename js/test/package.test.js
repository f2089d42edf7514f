// The npm package: publishable, and holding exactly the library, its
// types, its README and its licence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The package by its name, as a program that installed it imports it
// (Node resolves a package's own name through its "exports").
import { connect } from 'wspr';
import * as byPath from '../wspr.js';

const js = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const repo = path.resolve(js, '..');
const read = (f) => fs.readFileSync(f, 'utf8');

test('npm pack lists exactly the library, its types, README and licence', async () => {
  const { code, stdout, stderr } = await new Promise((resolve) => {
    execFile('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: js, timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }),
    );
  });
  assert.equal(code, 0, stderr);
  const [pack] = JSON.parse(stdout);
  assert.deepEqual(
    pack.files.map((f) => f.path).sort(),
    ['LICENSE-APACHE', 'LICENSE-MIT', 'README.md', 'package.json', 'wspr.d.ts', 'wspr.js'],
  );
});

test("the package's name is the library", () => {
  assert.equal(connect, byPath.connect);
});

test('package.json can be published and says what the package is', () => {
  const pkg = JSON.parse(read(path.join(js, 'package.json')));
  assert.equal(pkg.private, undefined, 'not private');
  assert.equal(pkg.license, 'MIT OR Apache-2.0');
  assert.equal(pkg.type, 'module');
  assert.deepEqual(pkg.exports['.'], { types: './wspr.d.ts', default: './wspr.js' });
  assert.equal(pkg.dependencies, undefined, 'the library has no dependencies');
  assert.equal(JSON.parse(read(path.join(js, 'package-lock.json'))).packages[''].license, pkg.license, 'the lockfile agrees');
});

test('the README shows the import line for Node and for a page', () => {
  const readme = read(path.join(js, 'README.md'));
  assert.match(readme, /^import \{ connect \} from 'wspr';$/m);
  assert.match(readme, /^ {2}import \{ connect \} from 'http:\/\/127\.0\.0\.1:8124\/wspr\.js';$/m);
  assert.match(readme, /npm install wspr/);
});

test("the package's licence texts are the repository's", () => {
  for (const f of ['LICENSE-MIT', 'LICENSE-APACHE']) {
    assert.equal(read(path.join(js, f)), read(path.join(repo, f)), f);
  }
  assert.match(read(path.join(repo, 'LICENSE-MIT')), /^MIT License/);
  assert.match(read(path.join(repo, 'LICENSE-APACHE')), /Apache License\s+Version 2\.0/);
});
