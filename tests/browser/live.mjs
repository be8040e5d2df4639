#!/usr/bin/env node
// The live page (/live) in a real browser: Debian's headless Chromium driven by
// playwright-core, against a running pipeline (pipelines/local.ron) whose replay
// is still ticking.
//
//   node tests/browser/live.mjs --base http://127.0.0.1:8000 --key KEY [--out DIR]
//
// Options: --chromium PATH (default /usr/bin/chromium), --burst-seconds N (how
// long to watch frames under the stream, default 3). Timings (first paint,
// frame gaps) are reported for BENCHMARKS.md, never asserted.
//
// Checks, in order: the page paints with no console error and
// no request leaving 127.0.0.1; the board fills with every pair; a tick changes
// a cell; a burst of updates keeps frames; the chart draws history and appends
// ticks; a wrong key shows the API's error; a bad threshold shows the API's
// field details; a rule created through the form appears in the list and its
// firing in the feed and the history; deleting it removes it; the key can be
// forgotten; everything is reachable by keyboard; the page fits a phone.
// Screenshots and the measured numbers go to --out (default
// target/browser-artifacts/). Exits 0 when every check passed.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// ------------------------------------------------------------------ options

const here = path.dirname(fileURLToPath(import.meta.url));
const opts = {
  base: process.env.FXFLOW_LIVE_BASE || '',
  key: process.env.FXFLOW_LIVE_KEY || '',
  out: path.resolve(here, '../../target/browser-artifacts'),
  chromium: '/usr/bin/chromium',
  burstSeconds: 3,
};
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i];
  const value = () => {
    const v = process.argv[++i];
    if (v === undefined) usage(`${arg} needs a value`);
    return v;
  };
  switch (arg) {
    case '--base': opts.base = value().replace(/\/+$/, ''); break;
    case '--key': opts.key = value(); break;
    case '--out': opts.out = path.resolve(value()); break;
    case '--chromium': opts.chromium = value(); break;
    case '--burst-seconds': opts.burstSeconds = Number(value()); break;
    case '-h': case '--help': usage(); break;
    default: usage(`unknown argument ${arg}`);
  }
}
if (!opts.base || !opts.key) usage('--base and --key are required');

function usage(problem) {
  if (problem) console.error(`live.mjs: ${problem}`);
  console.error('usage: node tests/browser/live.mjs --base http://127.0.0.1:PORT --key API_KEY [--out DIR] [--chromium PATH]');
  process.exit(2);
}

const baseUrl = new URL(opts.base);
if (baseUrl.hostname !== '127.0.0.1') usage('--base must be on 127.0.0.1 (the test allows no other host)');
fs.mkdirSync(opts.out, { recursive: true });

// ------------------------------------------------------------------ harness

const results = [];
const numbers = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function api(pathname, init) {
  const res = await fetch(opts.base + pathname, init);
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { body = text; }
  return { status: res.status, body };
}

// ------------------------------------------------------------------ browser

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'fxflow-live-'));
const offHost = []; // requests for anything but 127.0.0.1
const consoleErrors = [];
const pageErrors = [];
const failedRequests = [];
const httpErrors = []; // unexpected 4xx/5xx
const allowedStatus = new Set(); // "METHOD /path STATUS" a step expects
const requests = [];

let context;
let page;

async function main() {
  // Who the API says is monitored: the board must show exactly these pairs.
  const health = await api('/health').catch((e) => ({ status: 0, body: String(e) }));
  assert(health.status === 200, `the API at ${opts.base} does not answer /health: ${health.status} ${JSON.stringify(health.body)}`);
  const currencies = (await api('/currencies')).body.currencies.map((c) => c.code);
  const expectedPairs = [];
  for (let i = 0; i < currencies.length; i++) for (let j = i + 1; j < currencies.length; j++) expectedPairs.push(`${currencies[i]}/${currencies[j]}`);

  context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync', '--disable-quic'],
    viewport: { width: 1400, height: 1000 },
    colorScheme: 'light',
    serviceWorkers: 'block',
  });

  // Nothing may leave 127.0.0.1: such requests are refused and fail the test.
  await context.route((url) => {
    if (!/^https?:|^wss?:/.test(url.protocol)) return false;
    return url.hostname !== '127.0.0.1';
  }, (route) => {
    offHost.push(route.request().url());
    return route.abort('blockedbyclient');
  });
  context.on('request', (r) => {
    requests.push(`${r.method()} ${r.url()}`);
    const u = new URL(r.url());
    if (/^https?:|^wss?:/.test(u.protocol) && u.hostname !== '127.0.0.1' && !offHost.includes(r.url())) offHost.push(r.url());
  });
  context.on('requestfailed', (r) => {
    const error = (r.failure() && r.failure().errorText) || '';
    // A fetch the page aborted itself (switching the chart's pair) or a stream
    // torn down with the page is not a failure.
    if (error.includes('ERR_ABORTED')) return;
    failedRequests.push(`${r.method()} ${r.url()}: ${error}`);
  });
  context.on('response', (r) => {
    if (r.status() < 400) return;
    const key = `${r.request().method()} ${new URL(r.url()).pathname} ${r.status()}`;
    if (!allowedStatus.has(key)) httpErrors.push(key);
  });

  page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'assert') return;
    // Chromium reports a 4xx answer as "Failed to load resource"; the API's
    // expected refusals (a wrong key, a bad threshold) are checked below.
    const loc = m.location();
    if (/^Failed to load resource: the server responded with a status of (\d+)/.test(m.text()) && loc && loc.url) {
      const status = m.text().match(/status of (\d+)/)[1];
      const pathname = new URL(loc.url).pathname;
      if ([...allowedStatus].some((k) => k.endsWith(` ${pathname} ${status}`))) return;
    }
    consoleErrors.push(`${m.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
  });
  page.on('pageerror', (e) => pageErrors.push(String(e && e.stack ? e.stack : e)));

  const probe = (expr) => page.evaluate((e) => window.fxflowLive && window.fxflowLive[e], expr);

  // -------------------------------------------------------------- checks

  await step('the page loads and paints', async () => {
    const response = await page.goto(`${opts.base}/live`, { waitUntil: 'load' });
    assert(response && response.status() === 200, `GET /live answered ${response && response.status()}`);
    const csp = response.headers()['content-security-policy'] || '';
    assert(csp.includes("default-src 'self'"), `no Content-Security-Policy on /live: ${csp}`);
    await page.waitForFunction(() => performance.getEntriesByType('paint').some((e) => e.name === 'first-contentful-paint'), null, { timeout: 10000 });
    const timing = await page.evaluate(() => {
      const paint = performance.getEntriesByType('paint');
      const nav = performance.getEntriesByType('navigation')[0];
      return {
        fcp: paint.find((e) => e.name === 'first-contentful-paint').startTime,
        domContentLoaded: nav ? nav.domContentLoadedEventEnd : null,
        load: nav ? nav.loadEventEnd : null,
        transferred: performance.getEntriesByType('resource').reduce((n, r) => n + (r.transferSize || 0), nav ? nav.transferSize || 0 : 0),
      };
    });
    numbers.firstContentfulPaintMs = round(timing.fcp);
    numbers.domContentLoadedMs = round(timing.domContentLoaded);
    numbers.loadMs = round(timing.load);
    numbers.pageBytes = timing.transferred;
    // Speed is reported (BENCHMARKS.md), not asserted: a loaded CI box must not fail the test.
    assert((await page.title()) === 'fxflow live', `title: ${await page.title()}`);
    return `first contentful paint ${round(timing.fcp)} ms, load ${round(timing.load)} ms, ${Math.round(timing.transferred / 1024)} KiB`;
  });

  await step(`the board fills with all ${expectedPairs.length} pairs`, async () => {
    await page.waitForFunction((n) => document.querySelectorAll('#board tr[data-pair] td[data-field="mid"]:not(:empty)').length >= n,
      expectedPairs.length, { timeout: 20000 });
    const rows = await page.$$eval('#board tr[data-pair]', (trs) => trs.map((tr) => ({
      pair: tr.dataset.pair,
      kind: tr.dataset.kind,
      mid: tr.querySelector('[data-field="mid"]').textContent,
      bid: tr.querySelector('[data-field="bid"]').textContent,
      ask: tr.querySelector('[data-field="ask"]').textContent,
      time: tr.querySelector('[data-field="time"]').textContent,
    })));
    const shown = rows.map((r) => r.pair).sort();
    assert(JSON.stringify(shown) === JSON.stringify([...expectedPairs].sort()), `board pairs ${shown.join(',')} != ${expectedPairs.join(',')}`);
    const rates = new Map((await api('/rates')).body.rates.map((r) => [r.pair, r]));
    for (const r of rows) {
      const want = rates.get(r.pair);
      assert(want, `the API has no rate for ${r.pair}`);
      assert(r.kind === want.kind, `${r.pair}: kind ${r.kind}, the API says ${want.kind}`);
      for (const f of ['bid', 'ask', 'mid']) {
        const m = /^\d+\.(\d+)$/.exec(r[f]);
        assert(m && m[1].length === want.decimals, `${r.pair} ${f} "${r[f]}" is not shown with ${want.decimals} decimals`);
      }
      assert(/^\d{4}-\d{2}-\d{2}/.test(r.time), `${r.pair}: time "${r.time}"`);
    }
    const kinds = new Set(rows.map((r) => r.kind));
    assert(kinds.has('quote') && kinds.has('cross'), `quotes and crosses told apart: kinds ${[...kinds]}`);
    const n = currencies.length;
    const matrix = await page.evaluate(() => ({
      cells: document.querySelectorAll('#matrix td[data-pair]').length,
      filled: [...document.querySelectorAll('#matrix td[data-pair]')].filter((td) => /\d/.test(td.textContent)).length,
      diagonal: [...document.querySelectorAll('#matrix td.diag')].map((td) => td.textContent),
    }));
    assert(matrix.cells === n * (n - 1) && matrix.filled === n * (n - 1), `matrix: ${matrix.filled}/${matrix.cells} cells filled, expected ${n * (n - 1)}`);
    assert(matrix.diagonal.length === n && matrix.diagonal.every((t) => t === ''), 'the matrix diagonal is empty');
    numbers.boardFilledMs = round(await probe('boardFilledMs'));
    await page.locator('#board-section').screenshot({ path: path.join(opts.out, 'board.png') });
    return `${rows.length} rows (${rows.filter((r) => r.kind === 'quote').length} quotes), matrix ${n}×${n}, filled at ${numbers.boardFilledMs} ms`;
  });

  await step('a tick changes a cell', async () => {
    const read = () => page.$$eval('#board tr[data-pair]', (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.pair,
      tr.querySelector('[data-field="time"]').textContent + ' ' + tr.querySelector('[data-field="mid"]').textContent])));
    const before = await read();
    const deadline = Date.now() + 15000;
    let changed = [];
    while (Date.now() < deadline) {
      const now = await read();
      changed = Object.keys(now).filter((p) => now[p] !== before[p]);
      if (changed.length) break;
      await sleep(50);
    }
    assert(changed.length, 'no board cell changed within 15 s: is the replay still running? (FXFLOW_FROM, FXFLOW_DAY)');
    const flashed = await page.$$eval('#board td[class*="flash-"]', (tds) => tds.length);
    assert(flashed > 0, 'an updated cell flashes');
    const last = await page.textContent('#last-tick');
    const conn = await page.getAttribute('#conn', 'data-state');
    assert(conn === 'live', `the stream status says ${conn}`);
    return `${changed.length} rows changed (e.g. ${changed[0]}: ${before[changed[0]]} → ${(await read())[changed[0]]}); last tick ${last}`;
  });

  await step(`a burst of updates keeps frames (${opts.burstSeconds} s)`, async () => {
    // The main thread's own accounting (Chromium's Performance domain): how
    // busy the page kept it, whatever else the machine was doing.
    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const metrics = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((x) => [x.name, x.value]));
    const before = await metrics();
    const m = await page.evaluate(async (ms) => {
      const probe = window.fxflowLive;
      const events0 = probe.rateEvents;
      const renders0 = probe.frames;
      const longTasks = [];
      let observer = null;
      try {
        observer = new PerformanceObserver((list) => { for (const e of list.getEntries()) longTasks.push(e.duration); });
        observer.observe({ type: 'longtask', buffered: false });
      } catch (_) { observer = null; }
      const gaps = [];
      const start = performance.now();
      await new Promise((resolve) => {
        let last = start;
        const tick = (t) => {
          gaps.push(t - last);
          last = t;
          if (t - start < ms) requestAnimationFrame(tick);
          else resolve();
        };
        requestAnimationFrame(tick);
      });
      if (observer) observer.disconnect();
      const elapsed = performance.now() - start;
      const sorted = [...gaps].sort((a, b) => a - b);
      return {
        elapsedMs: elapsed,
        frames: gaps.length,
        worstGapMs: sorted[sorted.length - 1],
        p99GapMs: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))],
        medianGapMs: sorted[Math.floor(sorted.length / 2)],
        events: probe.rateEvents - events0,
        renders: probe.frames - renders0,
        longTasks: longTasks.length,
        longestTaskMs: longTasks.length ? Math.max(...longTasks) : 0,
        maxBatch: probe.maxBatch,
      };
    }, opts.burstSeconds * 1000);
    const after = await metrics();
    await cdp.detach().catch(() => {});
    const wall = after.Timestamp - before.Timestamp;
    const share = (name) => round((100 * (after[name] - before[name])) / wall, 1);
    numbers.burst = {
      mainThreadBusyPercent: share('TaskDuration'),
      scriptPercent: share('ScriptDuration'),
      stylePlusLayoutPercent: round(share('RecalcStyleDuration') + share('LayoutDuration'), 1),
      seconds: round(m.elapsedMs / 1000, 2),
      rateEventsPerSecond: Math.round(m.events / (m.elapsedMs / 1000)),
      frames: m.frames,
      fps: round(m.frames / (m.elapsedMs / 1000), 1),
      worstFrameGapMs: round(m.worstGapMs),
      p99FrameGapMs: round(m.p99GapMs),
      medianFrameGapMs: round(m.medianGapMs),
      longTasks: m.longTasks,
      longestTaskMs: round(m.longestTaskMs),
      largestBatchPairs: m.maxBatch,
    };
    assert(m.events > 0, 'no rate event arrived during the burst: is the replay still running?');
    // Not freezing is structural, not a time limit: the page draws only inside animation frames
    // (its render passes are at most the frames the browser ran), several ticks per pass.
    assert(m.frames > 1, `the tab ran ${m.frames} animation frame(s) in ${opts.burstSeconds} s`);
    assert(m.renders <= m.frames + 1, `${m.renders} render passes in ${m.frames} animation frames: rendering outside frames`);
    assert(m.events > m.renders, `${m.events} rate events in ${m.renders} render passes: updates are not batched per frame`);
    const b = numbers.burst;
    return `${b.rateEventsPerSecond} rate events/s: ${b.fps} fps, worst frame gap ${b.worstFrameGapMs} ms (p99 ${b.p99FrameGapMs} ms), `
      + `${b.longTasks} long tasks (longest ${b.longestTaskMs} ms); main thread busy ${b.mainThreadBusyPercent}% `
      + `(script ${b.scriptPercent}%, style+layout ${b.stylePlusLayoutPercent}%)`;
  });

  await step('the chart draws history and appends live ticks', async () => {
    await page.waitForSelector('#chart[data-state="ready"][data-pair="EUR/USD"]', { timeout: 20000 });
    const pair = 'USD/JPY';
    await page.selectOption('#chart-pair', pair);
    await page.waitForSelector(`#chart[data-state="ready"][data-pair="${pair}"]`, { timeout: 20000 });
    const points = Number(await page.getAttribute('#chart', 'data-points'));
    assert(points > 1, `${pair} chart has ${points} points`);
    const canvas = await page.$('#chart canvas');
    assert(canvas, 'the chart has a canvas');
    const box = await canvas.boundingBox();
    assert(box && box.width > 200 && box.height > 150, `chart canvas is ${box && box.width}×${box && box.height}`);
    const pressed = await page.getAttribute(`#board .pair-btn[data-pair="${pair}"]`, 'aria-pressed');
    assert(pressed === 'true', 'the charted pair is marked on the board');
    // Live ticks are appended.
    await page.waitForFunction((n) => Number(document.querySelector('#chart').dataset.points) > n, points, { timeout: 15000 })
      .catch(() => { throw new Error(`no live tick was appended to the chart within 15 s (still ${points} points)`); });
    const after = Number(await page.getAttribute('#chart', 'data-points'));
    // A range button zooms in and is marked pressed; dragging zooms too.
    await page.click('.ranges button[data-range="365"]');
    assert((await page.getAttribute('.ranges button[data-range="365"]', 'aria-pressed')) === 'true', '1Y is pressed');
    const over = await page.$('#chart .u-over');
    const ob = await over.boundingBox();
    await page.mouse.move(ob.x + ob.width * 0.3, ob.y + ob.height / 2);
    await page.mouse.down();
    await page.mouse.move(ob.x + ob.width * 0.6, ob.y + ob.height / 2, { steps: 5 });
    await page.mouse.up();
    await page.waitForFunction(() => [...document.querySelectorAll('.ranges button')].every((b) => b.getAttribute('aria-pressed') === 'false'), null, { timeout: 5000 })
      .catch(() => { throw new Error('dragging across the chart did not zoom (range buttons still pressed)'); });
    await sleep(300); // a tick or two drawn into the zoomed window
    await page.locator('#chart-section').screenshot({ path: path.join(opts.out, 'chart.png') });
    await page.click('.ranges button[data-range="all"]');
    const info = await page.textContent('#chart-info');
    return `${pair}: ${points} points, ${after} after live ticks; zoomed by range and by drag (${info.trim()})`;
  });

  const eurusd = (await api('/rates/EURUSD')).body;
  const low = (Math.floor(parseFloat(eurusd.mid) * 50) / 100).toFixed(2); // about half the current mid: holds at once

  async function fillForm({ pair, type, threshold }) {
    await page.selectOption('#f-pair', pair);
    await page.selectOption('#f-condition', type);
    await page.fill('#f-threshold', threshold);
    await page.selectOption('#f-trigger', 'once');
  }

  await step("a wrong key shows the API's error", async () => {
    allowedStatus.add('POST /alerts 403');
    await fillForm({ pair: 'EUR/USD', type: 'above', threshold: low });
    await page.click('#f-create');
    await page.waitForSelector('#key-dialog[open]', { timeout: 5000 });
    await page.fill('#key-input', `wrong-key-${Date.now()}-0000`);
    const answered = page.waitForResponse((r) => r.url().endsWith('/alerts') && r.request().method() === 'POST');
    await page.click('#key-save');
    const res = await answered;
    assert(res.status() === 403, `a wrong key got ${res.status()}`);
    const apiMessage = (await res.json()).error.message;
    await page.waitForFunction((msg) => document.querySelector('#alert-error').textContent.includes(msg), apiMessage, { timeout: 5000 });
    const text = (await page.textContent('#alert-error')).trim();
    assert(text.includes('403'), `the error names the status: ${text}`);
    const kept = await page.evaluate(() => sessionStorage.getItem('fxflow.apiKey'));
    assert(kept === null, 'a refused key is not kept');
    assert(await page.isHidden('#forget-key'), 'no "forget key" without a key');
    return `shown: "${text}"`;
  });

  await step("a bad threshold shows the API's field details", async () => {
    allowedStatus.add('POST /alerts 422');
    await fillForm({ pair: 'EUR/USD', type: 'above', threshold: '-1' });
    await page.click('#f-create');
    await page.waitForSelector('#key-dialog[open]', { timeout: 5000 }); // asked again: the wrong key was dropped
    await page.fill('#key-input', opts.key);
    const answered = page.waitForResponse((r) => r.url().endsWith('/alerts') && r.request().method() === 'POST');
    await page.click('#key-save');
    const res = await answered;
    assert(res.status() === 422, `a negative threshold got ${res.status()}`);
    await page.waitForSelector('#alert-error li[data-field="condition.threshold"]', { timeout: 5000 });
    const detail = (await page.textContent('#alert-error li[data-field="condition.threshold"]')).trim();
    assert((await page.getAttribute('#f-threshold', 'aria-invalid')) === 'true', 'the threshold input is marked invalid');
    const kept = await page.evaluate(() => sessionStorage.getItem('fxflow.apiKey'));
    assert(kept === opts.key, 'the accepted key is kept in session storage');
    const html = await page.content();
    assert(!html.includes(opts.key), 'the key is not in the page source');
    assert(await page.isVisible('#forget-key'), '"forget key" is offered');
    return `detail shown: "${detail}"`;
  });

  await step('the form sends a notification target, and shows what the API says of it', async () => {
    await fillForm({ pair: 'EUR/USD', type: 'above', threshold: low });
    await page.selectOption('#f-notify', 'email');
    assert(await page.isVisible('#f-email'), 'the address field shows for email');
    assert(await page.isHidden('#f-webhook'), 'the URL field hides for email');
    await page.fill('#f-email', 'desk@example.com, not-an-address');
    const answered = page.waitForResponse((r) => r.url().endsWith('/alerts') && r.request().method() === 'POST');
    await page.click('#f-create');
    const res = await answered;
    assert(res.status() === 422, `a bad address got ${res.status()}`);
    const sent = JSON.parse(res.request().postData());
    assert(JSON.stringify(sent.email) === JSON.stringify({ to: ['desk@example.com', 'not-an-address'] }), `sent: ${JSON.stringify(sent)}`);
    await page.waitForSelector('#alert-error li[data-field="email.to[1]"]', { timeout: 5000 });
    assert((await page.getAttribute('#f-email', 'aria-invalid')) === 'true', 'the address input is marked invalid');
    await page.selectOption('#f-notify', 'slack');
    assert(await page.isVisible('#f-webhook') && await page.isHidden('#f-email'), 'the URL field shows for a chat webhook');
    await page.selectOption('#f-notify', 'none');
    return 'email.to[1] shown at the address field';
  });

  let ruleId = null;
  await step('a rule created through the form appears in the list, and its firing in the feed and history', async () => {
    await fillForm({ pair: 'EUR/USD', type: 'above', threshold: low });
    const answered = page.waitForResponse((r) => r.url().endsWith('/alerts') && r.request().method() === 'POST');
    await page.click('#f-create');
    const res = await answered;
    assert(res.status() === 201, `creating got ${res.status()}`);
    assert(!(await page.isVisible('#key-dialog')), 'no second key prompt');
    ruleId = (await res.json()).id;
    await page.waitForSelector(`#rules-body tr[data-rule-id="${ruleId}"]`, { timeout: 5000 });
    await page.waitForSelector(`#feed li[data-rule-id="${ruleId}"]`, { timeout: 10000 });
    const feed = (await page.textContent(`#feed li[data-rule-id="${ruleId}"]`)).replace(/\s+/g, ' ').trim();
    assert(feed.includes('EUR/USD') && feed.includes(`above ${low}`), `feed item: ${feed}`);
    assert((await page.getAttribute('#feed', 'aria-live')) === 'polite', 'the feed is an aria-live region');
    await page.waitForSelector(`#firings-body tr[data-rule-id="${ruleId}"]`, { timeout: 10000 });
    await page.waitForFunction((id) => {
      const tr = document.querySelector(`#rules-body tr[data-rule-id="${id}"]`);
      return tr && tr.dataset.status === 'triggered' && tr.querySelector('[data-field="fired"]').textContent === '1';
    }, ruleId, { timeout: 10000 });
    const ok = await page.textContent('#alert-ok');
    assert(ok.includes(ruleId), `confirmation: ${ok}`);
    return `rule ${ruleId} listed (triggered, fired 1), feed: "${feed}"`;
  });

  await step('deleting the rule removes it', async () => {
    assert(ruleId, 'no rule to delete');
    const answered = page.waitForResponse((r) => r.url().endsWith(`/alerts/${ruleId}`) && r.request().method() === 'DELETE');
    await page.click(`#rules-body tr[data-rule-id="${ruleId}"] button[data-action="delete"]`);
    const res = await answered;
    assert(res.status() === 204, `deleting got ${res.status()}`);
    await page.waitForSelector(`#rules-body tr[data-rule-id="${ruleId}"]`, { state: 'detached', timeout: 5000 });
    await sleep(1700); // past the page's debounced refresh: it must not come back
    assert((await page.$(`#rules-body tr[data-rule-id="${ruleId}"]`)) === null, 'the deleted rule came back');
    const gone = await api(`/alerts/${ruleId}`, { headers: { Authorization: `Bearer ${opts.key}` } });
    assert(gone.status === 404, `GET /alerts/${ruleId} after delete: ${gone.status}`);
    return `rule ${ruleId} gone from the list and the API`;
  });

  await step('the form creates every kind of condition and trigger', async () => {
    const mid = parseFloat(eurusd.mid);
    const at = (f) => (mid * f).toFixed(4);
    const kinds = [
      ['crossing', { '#f-threshold': at(1.5) }, 'once', `crossing ${at(1.5)}`],
      ['entering_channel', { '#f-low': at(1.2), '#f-high': at(1.3) }, 'every', `entering [${at(1.2)}, ${at(1.3)}]`],
      ['exiting_channel', { '#f-low': at(0.5), '#f-high': at(1.5) }, 'once', `exiting [${at(0.5)}, ${at(1.5)}]`],
      ['inside_channel', { '#f-low': at(1.2), '#f-high': at(1.3) }, 'once_per_bar', `inside [${at(1.2)}, ${at(1.3)}]`],
      ['outside_channel', { '#f-low': at(0.5), '#f-high': at(1.5) }, 'on_bar_close', `outside [${at(0.5)}, ${at(1.5)}]`],
      ['moving_up', { '#f-amount': '0.5', '#f-over': '5' }, 'once', 'up 0.5 within 5 bars'],
      ['moving_down', { '#f-amount': '0.5', '#f-over': '1h' }, 'every', 'down 0.5 within 1h'],
      ['moving_up_percent', { '#f-amount': '40', '#f-over': '3' }, 'on_bar_close', 'up 40% within 3 bars'],
      ['moving_down_percent', { '#f-amount': '40', '#f-over': '7d' }, 'once_per_bar', 'down 40% within 7d'],
      ['stale', { '#f-max-age': '26h' }, 'every', 'no tick within 26h'],
      ['divergence', { '#f-bps': '25', '#f-sources': 'ecb, oanda' }, 'once_per_bar', 'ecb and oanda more than 25 bps apart'],
    ];
    const created = [];
    for (const [type, fields, trigger, text] of kinds) {
      await page.selectOption('#f-pair', 'EUR/USD');
      await page.selectOption('#f-condition', type);
      for (const [selector, value] of Object.entries(fields)) {
        assert(await page.isVisible(selector), `${selector} shows for ${type}`);
        await page.fill(selector, value);
      }
      assert(await page.isHidden(type.endsWith('_channel') ? '#f-amount' : '#f-low'), `only ${type}'s fields show`);
      await page.selectOption('#f-trigger', trigger);
      if (trigger === 'once_per_bar' || trigger === 'on_bar_close') {
        assert(await page.isVisible('#f-interval'), `the bar shows for ${trigger}`);
        await page.fill('#f-interval', '1d');
      }
      const answered = page.waitForResponse((r) => r.url().endsWith('/alerts') && r.request().method() === 'POST');
      await page.click('#f-create');
      const res = await answered;
      const body = await res.json();
      assert(res.status() === 201, `${type} with ${trigger} got ${res.status()}: ${JSON.stringify(body)}`);
      assert(body.condition_text === text, `${type}: "${body.condition_text}", expected "${text}"`);
      assert(body.trigger.type === trigger, `${type}: trigger ${JSON.stringify(body.trigger)}`);
      await page.waitForSelector(`#rules-body tr[data-rule-id="${body.id}"]`, { timeout: 5000 });
      created.push(body.id);
    }
    for (const id of created) {
      const gone = await api(`/alerts/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${opts.key}` } });
      assert(gone.status === 204, `DELETE /alerts/${id}: ${gone.status}`);
    }
    await page.selectOption('#f-condition', 'above');
    await page.selectOption('#f-trigger', 'once');
    return `${kinds.length} kinds created and listed (${kinds.map((k) => k[0]).join(', ')}); triggers once, every, once_per_bar, on_bar_close`;
  });

  await step('a rule tried on history shows its firings on the chart', async () => {
    // Within 20% of the price now, once per 30-day bar: it held through most of the last year.
    const now = parseFloat((await api('/rates/EURUSD')).body.mid);
    const [low, high] = [(now * 0.8).toFixed(4), (now * 1.2).toFixed(4)];
    await page.selectOption('#f-pair', 'EUR/USD');
    await page.selectOption('#f-condition', 'inside_channel');
    await page.fill('#f-low', low);
    await page.fill('#f-high', high);
    await page.selectOption('#f-trigger', 'once_per_bar');
    await page.fill('#f-interval', '30d');
    const answered = page.waitForResponse((r) => r.url().endsWith('/alerts/backtest') && r.request().method() === 'POST');
    await page.click('#f-try');
    const res = await answered;
    const body = await res.json();
    assert(res.status() === 200, `trying got ${res.status()}: ${JSON.stringify(body)}`);
    assert(body.total > 0, `inside [${low}, ${high}] fired on history: ${JSON.stringify(body).slice(0, 300)}`);
    await page.waitForFunction((n) => Number(document.querySelector('#chart').dataset.markers || 0) === n,
      Math.min(body.total, 1000), { timeout: 10000 });
    const text = (await page.textContent('#try-result')).trim();
    assert(text.includes(`fired ${body.total} time`), `result: ${text}`);
    assert((await page.getAttribute('#chart', 'data-pair')) === 'EUR/USD', 'the chart shows the rule\'s pair');
    await page.locator('#chart-section').screenshot({ path: path.join(opts.out, 'try.png') });
    await page.selectOption('#f-condition', 'above');
    await page.selectOption('#f-trigger', 'once');
    return `${body.total} firings over ${body.samples} prices, ringed on the chart: "${text}"`;
  });

  await step('the key can be forgotten', async () => {
    await page.click('#forget-key');
    const kept = await page.evaluate(() => sessionStorage.getItem('fxflow.apiKey'));
    assert(kept === null, 'the key is still in session storage');
    assert(await page.isHidden('#forget-key'), '"forget key" hides');
    await page.waitForFunction(() => document.querySelectorAll('#rules-body tr, #firings-body tr, #feed li').length === 0, null, { timeout: 5000 });
    return 'session storage cleared; the tenant\'s rules and firings are off the page';
  });

  await step('everything is reachable by keyboard', async () => {
    const unlabelled = await page.$$eval('input, select, textarea', (els) => els
      .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
      .map((e) => e.id || e.name || e.outerHTML.slice(0, 60)));
    assert(unlabelled.length === 0, `controls without a label: ${unlabelled.join(', ')}`);
    await page.evaluate(() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); });
    const want = ['#chart-pair', '.pair-btn', '.ranges button', '#f-pair', '#f-condition', '#f-threshold', '#f-create'];
    const reached = new Set();
    let noOutline = [];
    for (let i = 0; i < 150 && reached.size < want.length; i++) {
      await page.keyboard.press('Tab');
      const f = await page.evaluate((sels) => {
        const a = document.activeElement;
        if (!a || a === document.body) return null;
        const style = getComputedStyle(a);
        return { hits: sels.filter((s) => a.matches(s)), outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0, what: a.id || a.className || a.tagName };
      }, want);
      if (!f) continue;
      f.hits.forEach((h) => reached.add(h));
      if (!f.outline) noOutline.push(f.what);
    }
    const missing = want.filter((s) => !reached.has(s));
    assert(missing.length === 0, `not reached with Tab: ${missing.join(', ')}`);
    noOutline = [...new Set(noOutline)];
    assert(noOutline.length === 0, `no visible focus on: ${noOutline.join(', ')}`);
    // A board pair, chosen with the keyboard, is charted.
    await page.focus('#board .pair-btn[data-pair="GBP/JPY"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#chart[data-state="ready"][data-pair="GBP/JPY"]', { timeout: 15000 });
    return `reached ${want.join(', ')} with a visible focus ring; Enter on GBP/JPY charts it`;
  });

  await step('the page fits a phone-width screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(400);
    const fit = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
    assert(fit.scroll <= fit.inner, `the page is ${fit.scroll}px wide on a ${fit.inner}px screen`);
    const midVisible = await page.isVisible('#board tr[data-pair="EUR/USD"] [data-field="mid"]');
    assert(midVisible, 'the mid column shows on a phone');
    const canvas = await (await page.$('#chart canvas')).boundingBox();
    assert(canvas.width <= fit.inner, `the chart is ${canvas.width}px wide`);
    await page.screenshot({ path: path.join(opts.out, 'phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1400, height: 1000 });
    await sleep(300);
    await page.screenshot({ path: path.join(opts.out, 'live.png'), fullPage: true });
    return `no horizontal scroll at ${fit.inner}px`;
  });

  await step('no console error, no page error, no request leaving 127.0.0.1', async () => {
    const problems = [
      ...consoleErrors.map((e) => `console: ${e}`),
      ...pageErrors.map((e) => `page error: ${e}`),
      ...offHost.map((u) => `left 127.0.0.1: ${u}`),
      ...failedRequests.map((r) => `request failed: ${r}`),
      ...httpErrors.map((r) => `unexpected HTTP error: ${r}`),
    ];
    assert(problems.length === 0, problems.join('\n  '));
    const hosts = new Set(requests.map((r) => new URL(r.split(' ')[1]).host));
    return `${requests.length} requests, all to ${[...hosts].join(', ')}`;
  });
}

async function step(name, fn) {
  const started = Date.now();
  try {
    const detail = await fn();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - started} ms)${detail ? `: ${detail}` : ''}`);
  } catch (e) {
    results.push({ name, ok: false, error: e.message });
    console.log(`FAIL ${name} (${Date.now() - started} ms): ${e.message}`);
    throw e;
  }
}

function round(x, places = 0) {
  if (x == null || !isFinite(x)) return x;
  const f = 10 ** places;
  return Math.round(x * f) / f;
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  if (!results.some((r) => !r.ok)) console.log(`FAIL setup: ${e.stack || e.message}`);
  if (page) {
    await page.screenshot({ path: path.join(opts.out, 'failure.png'), fullPage: true }).catch(() => {});
    console.log(`  screenshot of the failure: ${path.join(opts.out, 'failure.png')}`);
  }
  for (const e of consoleErrors) console.log(`  console error: ${e}`);
  for (const e of pageErrors) console.log(`  page error: ${e}`);
  for (const u of offHost) console.log(`  left 127.0.0.1: ${u}`);
} finally {
  if (context) await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}

fs.writeFileSync(path.join(opts.out, 'live-results.json'), JSON.stringify({ base: opts.base, numbers, results }, null, 2) + '\n');
console.log(`numbers: ${JSON.stringify(numbers)}`);
console.log(`artifacts: ${opts.out} (board.png, chart.png, live.png, phone.png, live-results.json)`);
const passed = results.filter((r) => r.ok).length;
console.log(`live: ${passed} passed, ${results.length - passed} failed`);
process.exit(failed || results.some((r) => !r.ok) ? 1 : 0);
