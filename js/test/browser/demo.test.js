// End to end in headless Chromium: the demo page, loaded from a real wsprd,
// calls the native demo object and serves an object of its own that the
// native `wsprd call` calls; it fits a phone and a desktop, light and dark
// (screenshots in target/artifacts/demo-<width>-<scheme>.png, and
// target/artifacts/demo.png), follows other tabs by itself and comes back
// when the daemon restarts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { startDaemon, waitFor, wsprdCall } from '../daemon.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const artifacts = path.join(repo, 'target', 'artifacts');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

let daemon;
let browser;
let context;

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: make test-browser installs it (apt-get install chromium)`);
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

/**
 * Opens the demo page (of `on`, in `ctx`) and waits until it is ready:
 * connected, its object served, its command and other tabs shown.
 */
async function openDemo(ctx = context, on = daemon) {
  const page = await ctx.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  await page.goto(`${on.http}/`);
  await page.locator('body[data-ready="true"]').waitFor({ timeout: 15_000 });
  return { page, problems };
}

/**
 * What sticks out: the page wider than the viewport, an element off its
 * edges, or one cut off by an ancestor that clips without scrolling.
 */
function overflows() {
  const vw = document.documentElement.clientWidth;
  const name = (el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className && typeof el.className === 'string' ? `.${el.className.trim().split(/\s+/).join('.')}` : ''}`;
  const bad = [];
  if (document.documentElement.scrollWidth > vw) bad.push(`the page is ${document.documentElement.scrollWidth} px wide, the viewport ${vw}`);
  for (const el of document.body.querySelectorAll('*')) {
    if (['SCRIPT', 'STYLE'].includes(el.tagName)) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    let clip = null;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible') {
        clip = p;
        break;
      }
    }
    if (clip && ['auto', 'scroll'].includes(getComputedStyle(clip).overflowX)) continue;
    const box = clip ? clip.getBoundingClientRect() : { left: 0, right: vw };
    if (r.left < box.left - 1 || r.right > box.right + 1) {
      bad.push(`${name(el)} (${Math.round(r.left)}..${Math.round(r.right)}) ${clip ? `is cut off by ${name(clip)}` : 'runs off the page'} (${Math.round(box.left)}..${Math.round(box.right)})`);
    }
  }
  return bad;
}

/** The relative luminance of the page's background (0 black, 1 white). */
function backgroundLuminance() {
  const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\d+/g).map(Number);
  return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
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

for (const width of [375, 1280]) {
  for (const scheme of ['light', 'dark']) {
    test(`the page fits ${width} px, ${scheme}`, async () => {
      const ctx = await browser.newContext({ viewport: { width, height: 900 }, colorScheme: scheme });
      try {
        const { page, problems } = await openDemo(ctx);
        // Everything filled in: a result, the chart, a call received.
        await page.click('#add');
        await page.locator('#result.ok').waitFor();
        await page.fill('#numbers', '3 1 4 1 5 9 2 6 5 3');
        await page.click('#stream');
        await page.locator('#stream-total').waitFor({ timeout: 10_000 });
        const name = await page.locator('#served-name').textContent();
        const banner = await wsprdCall(daemon.root, name, 'setBanner', [`hello at ${width} px`]);
        assert.equal(banner.stdout, '[true]\n', banner.stderr);
        await page.locator('#banner', { hasText: `hello at ${width} px` }).waitFor();

        const file = path.join(artifacts, `demo-${width}-${scheme}.png`);
        fs.mkdirSync(artifacts, { recursive: true });
        await page.screenshot({ path: file, fullPage: true });
        assert.ok(fs.statSync(file).size > 10_000);

        assert.deepEqual(await page.evaluate(overflows), [], `nothing sticks out at ${width} px (${scheme})`);
        const lum = await page.evaluate(backgroundLuminance);
        if (scheme === 'dark') assert.ok(lum < 0.2, `a dark background: ${lum}`);
        else assert.ok(lum > 0.8, `a light background: ${lum}`);
        // The header stays in a line or two, not a column of words.
        const header = await page.locator('header').boundingBox();
        assert.ok(header.height < 110, `header ${header.height} px high`);
        assert.equal(await page.locator('header a#docs').getAttribute('href'), '/docs/javascript.md');
        if (width >= 1280) {
          // A desktop has room for the inputs and both buttons on one line.
          const [add, divide, b] = await Promise.all(['#add', '#divide', '#b'].map((sel) => page.locator(sel).boundingBox()));
          assert.equal(divide.y, add.y, 'divide beside add');
          assert.ok(add.x > b.x, 'the buttons after the inputs');
        }
        assert.deepEqual(problems, []);
      } finally {
        await ctx.close();
      }
    });
  }
}

test('an empty input is refused with a message, and nothing is sent', async () => {
  const { page, problems } = await openDemo();
  const calls = () => page.locator('#log tbody tr.send td.type', { hasText: '0 call' }).count();
  const before = await calls();
  await page.fill('#a', '');
  await page.click('#add');
  await page.locator('#result.err').waitFor();
  assert.equal(await page.locator('#result').textContent(), 'type a number in a: it is empty');
  await page.fill('#a', '2');
  await page.fill('#b', '');
  await page.click('#divide');
  await page.locator('#result.err', { hasText: 'in b' }).waitFor();
  assert.equal(await calls(), before, 'no call was sent');
  await page.fill('#b', '4');
  await page.click('#divide');
  await page.locator('#result.ok').waitFor();
  assert.equal(await page.locator('#result').textContent(), 'divide(2, 4) = 0.5');
  assert.deepEqual(problems, []);
  await page.close();
});

test('the other-tabs list follows tabs as they open and close, by itself', async () => {
  const watcher = await openDemo();
  const other = await openDemo();
  const otherName = await other.page.locator('#served-name').textContent();
  const entry = watcher.page.locator(`#peers li[data-name="${otherName}"]`);
  // Opened after the watcher: it shows up without a refresh.
  await entry.waitFor({ timeout: 10_000 });
  await other.page.close({ runBeforeUnload: true });
  // Closed: it leaves the list without a refresh.
  await entry.waitFor({ state: 'detached', timeout: 10_000 });
  assert.deepEqual([...watcher.problems, ...other.problems], []);
  await watcher.page.close();
});

test('the page shows the pipe reconnecting, and comes back when the daemon restarts', async () => {
  let own = await startDaemon();
  try {
    const { page, problems } = await openDemo(context, own);
    const name = await page.locator('#served-name').textContent();
    await own.kill();
    await page.locator('#status[data-state="reconnecting"], #status[data-state="connecting"]').waitFor({ timeout: 10_000 });
    assert.match(await page.locator('#status').textContent(), /^reconnecting/);
    fs.mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, 'demo-reconnecting.png') });
    own = await startDaemon([], { listen: own.address });
    await page.locator('#status[data-state="open"]').waitFor({ timeout: 20_000 });
    assert.match(await page.locator('#status').textContent(), /^connected · ws:\/\/127\.0\.0\.1:\d+\/ws$/);
    // The tab's object is served again, and the command names the new root.
    await waitFor(
      async () => (await page.locator('#served-command').textContent()).includes(own.root),
      'the command to name the new root',
    );
    const product = await wsprdCall(own.root, name, 'multiply', [6, 7]);
    assert.equal(product.stdout, '[42]\n', product.stderr);
    // The page called the native object again too.
    await page.click('#add');
    await page.locator('#result.ok').waitFor();
    // The browser reports each refused connection attempt; nothing else.
    assert.deepEqual(problems.filter((p) => !/WebSocket connection to .* failed/.test(p)), []);
    await page.close();
  } finally {
    await own.stop();
  }
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
