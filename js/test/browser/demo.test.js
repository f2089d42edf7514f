// End to end in headless Chromium: the demo page, loaded from a real wsprd,
// calls the native demo object and serves an object of its own that the
// native `wsprd call` calls. Leaves a screenshot in target/artifacts/demo.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { startDaemon, wsprdCall } from '../daemon.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const artifacts = path.join(repo, 'target', 'artifacts');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

let daemon;
let browser;
let context;

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  daemon = await startDaemon();
  // launch() runs Chromium on a fresh, temporary user-data dir of its own,
  // removed on close. Nothing is downloaded: the browser is the system's.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
});

after(async () => {
  await context?.close();
  await browser?.close();
  await daemon?.stop();
});

/** Opens the demo page and waits until it has connected and served its object. */
async function openDemo() {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  await page.goto(`${daemon.http}/`);
  await page.locator('body[data-ready="true"]').waitFor({ timeout: 15_000 });
  return { page, problems };
}

test('the demo page calls the native object and shows the results', async () => {
  const { page, problems } = await openDemo();
  assert.match(await page.locator('#status').textContent(), /^connected · ws:\/\/127\.0\.0\.1:\d+\/ws$/);

  await page.fill('#a', '19');
  await page.fill('#b', '23');
  await page.click('#add');
  await page.locator('#result.ok').waitFor();
  assert.equal(await page.locator('#result').textContent(), 'add(19, 23) = 42');

  await page.fill('#b', '0');
  await page.click('#divide');
  await page.locator('#result.err').waitFor();
  const err = await page.locator('#result').textContent();
  assert.match(err, /veyron2\/verror\.BadArg/);
  assert.match(err, /division by zero/);

  // The streaming sum: one bar per running total, then the result.
  await page.fill('#numbers', '1 2 3 4 5');
  await page.click('#stream');
  await page.locator('#stream-total').waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#stream-total').textContent(), '15');
  assert.deepEqual(await page.locator('#chart text').allTextContents(), ['1', '3', '6', '10', '15']);
  assert.equal(await page.locator('#chart rect').count(), 5);

  // The pipe's log shows the messages of those calls.
  const log = await page.locator('#log tbody').textContent();
  assert.match(log, /0 call\{"name":"demo\/adder","method":"add","inArgs":\[19,23\]/);
  assert.match(log, /0 final\[42\]/);
  assert.match(log, /3 streamValue5/);
  assert.match(log, /2 error\{"id":"veyron2\/verror\.BadArg"/);
  assert.deepEqual(problems, []);
  await page.close();
});

test('wsprd call calls the object the page serves', async () => {
  const { page, problems } = await openDemo();
  const name = await page.locator('#served-name').textContent();
  assert.match(name, /^tabs\/[0-9a-f]{1,4}$/);
  assert.match(await page.locator('#served-command').textContent(), new RegExp(`--namespace-root ${daemon.root.replace(/[@/.]/g, '\\$&')}`));

  const product = await wsprdCall(daemon.root, name, 'multiply', [6, 7]);
  assert.equal(product.stderr, '');
  assert.equal(product.stdout, '[42]\n');

  const banner = await wsprdCall(daemon.root, name, 'setBanner', ['hello from a shell']);
  assert.equal(banner.stdout, '[true]\n');
  await page.locator('#banner', { hasText: 'hello from a shell' }).waitFor();
  assert.equal(await page.locator('#calls-received').textContent(), '2');
  assert.match(await page.locator('#received').textContent(), /multiply\(6, 7\)/);
  // The pipe's log shows the daemon asking the page: a lookup, then the request.
  const log = await page.locator('#log tbody').textContent();
  assert.match(log, /5 dispatcherLookup\{"method":"multiply"/);
  assert.match(log, /3 serverRequest\{"args":\[6,7\]/);

  // Use the rest of the page too, for a screenshot that shows it all.
  await page.click('#add');
  await page.locator('#result.ok').waitFor();
  assert.equal(await page.locator('#result').textContent(), 'add(6, 7) = 13');
  await page.click('#stream');
  await page.locator('#stream-total').waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#stream-total').textContent(), '31');

  fs.mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, 'demo.png'), fullPage: true });
  assert.ok(fs.statSync(path.join(artifacts, 'demo.png')).size > 10_000);
  assert.deepEqual(problems, []);
  await page.close();
});

test('one tab calls the object another tab serves', async () => {
  const first = await openDemo();
  const second = await openDemo();
  const firstName = await first.page.locator('#served-name').textContent();
  await second.page.fill('#greet-as', 'the second tab');
  await second.page.click('#refresh');
  const peer = second.page.locator('#peers li', { hasText: firstName });
  await peer.locator('button').click();
  await peer.locator('span', { hasText: 'Hello' }).waitFor();
  assert.equal(await peer.locator('span').textContent(), `Hello, the second tab! This is ${firstName}, a browser tab.`);
  assert.equal(await first.page.locator('#calls-received').textContent(), '1');
  assert.deepEqual([...first.problems, ...second.problems], []);
  await first.page.close();
  await second.page.close();
});
