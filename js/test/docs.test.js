// docs/javascript.md shows only code that runs: each ```js example must
// appear, line for line, in a test, and each ```html example in the demo page.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const doc = fs.readFileSync(path.resolve(here, '../../docs/javascript.md'), 'utf8');

function blocks(lang) {
  const re = new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g');
  return [...doc.matchAll(re)].map((m) => m[1]);
}

/** Lines without indentation and blank lines. */
function lines(text) {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

function contains(haystack, needle) {
  for (let i = 0; i + needle.length <= haystack.length; i++) {
    if (needle.every((l, j) => haystack[i + j] === l)) return true;
  }
  return false;
}

function check(lang, sources) {
  const found = blocks(lang);
  assert.ok(found.length > 0, `the tutorial has ${lang} examples`);
  const texts = sources.map((f) => lines(fs.readFileSync(f, 'utf8')));
  for (const b of found) {
    const want = lines(b);
    assert.ok(
      texts.some((t) => contains(t, want)),
      `this example of docs/javascript.md is in no ${lang === 'js' ? 'test' : 'demo page'}:\n${b}`,
    );
  }
}

test('every JavaScript example of the tutorial is code from a test', () => {
  const tests = fs.readdirSync(here).filter((f) => f.endsWith('.test.js')).map((f) => path.join(here, f));
  check('js', tests);
});

test('every HTML example of the tutorial is from the demo page', () => {
  check('html', [path.resolve(here, '../demo.html')]);
});
