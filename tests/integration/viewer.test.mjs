// viewer.test.mjs - the run viewer (services/api/ui, docs/viewer.md) in a
// real browser, against a real stack: nats-server, Postgres, orchestrator,
// projector, tool-router, the C example device, rs-executor and rs-api.
//
// First the API support the viewer needs, over plain HTTP: /ui/ static
// files (content types, ETag / 304, no way out of the directory), CORS
// (RS_API_CORS_ORIGINS), run-scoped stream tokens, the state at an event
// (compared with `runctl replay --at`, the effects of an http step too),
// the re-check, the devices list.
// Then Debian's chromium through puppeteer-core: sign in, a run appears in
// the list, its page follows it live, the network to the API is cut (a TCP
// proxy between browser and API drops every connection and refuses new
// ones) while the run goes on, and the stream resumes with Last-Event-ID
// without a gap; a step opened, the slider moved, the re-check, a waiting
// run cancelled, a finished run forked (the new run opens), the list
// filtered by tag, agents and devices pages. Every wait awaits a page
// condition or an event, with bounds; nothing sleeps to synchronise.
//
// Measured and printed, not asserted: first paint of the runs list, and a
// synthetic 10,000-event run drawn and scrolled in the run page.
// RS_VIEWER_SCREENSHOTS=1 writes docs/viewer-*.png (else into a tmp dir).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import {
  startStack, startService, startProcess, stopAll, runctl, freePort, waitFor, bin, SRC, tmpDir,
} from '../lib/stack.mjs';

const CHROMIUM = process.env.RS_CHROMIUM || '/usr/bin/chromium';
const T = 'view';
let env; let key; let otherKey; let apiUrl; let proxy; let browser; let page;
const shots = process.env.RS_VIEWER_SCREENSHOTS === '1' ? path.join(SRC, 'docs') : tmpDir('viewer-shots');
const measured = {};

async function call(method, url, { body, headers = {}, k = key, base = apiUrl } = {}) {
  const h = { ...(k ? { Authorization: `Bearer ${k}` } : {}), ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(base + url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

// A TCP proxy in front of the API: cut() drops every connection and refuses
// new ones until restore() - the browser's network to the API goes away.
async function startProxy(target) {
  const socks = new Set();
  let down = false;
  const server = net.createServer((c) => {
    if (down) { c.destroy(); return; }
    const u = net.connect(target, '127.0.0.1');
    socks.add(c); socks.add(u);
    c.pipe(u); u.pipe(c);
    const end = () => { c.destroy(); u.destroy(); socks.delete(c); socks.delete(u); };
    c.on('error', end); u.on('error', end); c.on('close', end); u.on('close', end);
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${port}`,
    cut() { down = true; for (const s of socks) s.destroy(); socks.clear(); },
    restore() { down = false; },
    close() { down = true; for (const s of socks) s.destroy(); server.close(); },
  };
}

const waitAgent = {
  name: 'view-wait',
  description: 'a tool call on a device, then a signal, then a transform',
  timeout_s: 300,
  steps: [
    { id: 'greet', kind: 'tool', tool: 'echo', capability: true, args: { message: 'Hi {{input.name}}' }, timeout_s: 20 },
    { id: 'approve', kind: 'signal', signal: 'go', timeout_s: 240 },
    { id: 'done', kind: 'transform', value: { greeting: '{{steps.greet.output.message}}', ok: true } },
  ],
};
const holdAgent = { name: 'view-hold', steps: [{ id: 'hold', kind: 'signal', signal: 'never', timeout_s: 240 }] };
// An http step (carried out by rs-executor) against this loopback server:
// the run has an effect for /state to list.
const target = http.createServer((req, res) => { res.writeHead(200, { 'Content-Type': 'application/json' }); res.end('{"pong":true}'); });

async function startRun(agent, input = {}) {
  const r = await call('POST', '/v1/runs', { body: { agent, input } });
  assert.equal(r.status, 202, r.text);
  return r.json.run_id;
}

// Read a run's SSE stream to its end: [{id, event, data}].
async function readStream(url, headers = {}) {
  const res = await fetch(url, { headers });
  assert.equal(res.status, 200, await res.clone().text());
  const text = await res.text();
  return text.split('\n\n').filter((b) => b.startsWith('id:')).map((b) => {
    const o = {};
    for (const l of b.split('\n')) { const i = l.indexOf(': '); o[l.slice(0, i)] = l.slice(i + 2); }
    return { id: Number(o.id), event: o.event, data: JSON.parse(o.data) };
  });
}

before(async () => {
  const stack = await startStack({ pg: true });
  env = stack.env;
  key = runctl(['keys', 'create', '--tenant', T], env).stdout.trim();
  otherKey = runctl(['keys', 'create', '--tenant', 'other'], env).stdout.trim();
  const devToken = runctl(['devices', 'token', '--tenant', T, '--device', 'laptop-1'], env).stdout.trim();
  assert.ok(key && otherKey && devToken);
  let port = await freePort();
  await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(port) }, port);
  port = await freePort();
  await startService('projector', { ...env, RS_PROJECTOR_OPS_PORT: String(port) }, port);
  port = await freePort();
  await startService('router', { ...env, RS_ROUTER_PORT: String(port), RS_ROUTER_HEARTBEAT_S: '1' }, port);
  startProcess('device', bin('device'), [], {
    RS_ROUTER_URL: `ws://127.0.0.1:${port}/v1/devices/connect`, RS_DEVICE_ID: 'laptop-1', RS_DEVICE_TOKEN: devToken,
  });
  await new Promise((ok) => target.listen(0, '127.0.0.1', ok));
  port = await freePort();
  await startService('executor', { ...env, RS_EXECUTOR_OPS_PORT: String(port), RS_EXECUTOR_EGRESS_ALLOW: '127.0.0.1/32' }, port);
  port = await freePort();
  await startService('api', { ...env, RS_API_PORT: String(port), RS_API_CORS_ORIGINS: 'https://viewer.example', RS_API_STREAM_TOKEN_TTL_S: '30' }, port);
  apiUrl = `http://127.0.0.1:${port}`;
  proxy = await startProxy(port);
  const httpAgent = { name: 'view-http', steps: [{ id: 'ping', kind: 'http', method: 'GET', url: `http://127.0.0.1:${target.address().port}/ping`, timeout_s: 10 }] };
  for (const a of [waitAgent, holdAgent, httpAgent, { ...waitAgent, description: 'version two: another description', timeout_s: 301 }]) {
    const r = await call('POST', '/v1/agents', { body: a });
    assert.ok(r.status === 201 || r.status === 200, r.text);
  }
  // The device is online in the read model before anything depends on it.
  await waitFor('device laptop-1 online in GET /v1/devices', async () => {
    const r = await call('GET', '/v1/devices');
    return r.status === 200 && r.json.devices.some((d) => d.device_id === 'laptop-1' && d.online);
  }, 20000, 100);
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (proxy) proxy.close();
  target.close();
  await stopAll();
  if (Object.keys(measured).length) process.stdout.write(`# viewer measurements: ${JSON.stringify(measured)}\n`);
});

test('/ui/: static files with their types and ETags, and nothing outside the directory', async () => {
  let r = await call('GET', '/ui/', { k: null });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/html/);
  assert.match(r.text, /<script type="module" src="app.js">/);
  assert.equal(r.headers.get('cache-control'), 'no-cache');
  assert.match(r.headers.get('content-security-policy'), /default-src 'self'/);
  const etag = r.headers.get('etag');
  r = await call('GET', '/ui/index.html', { k: null, headers: { 'If-None-Match': etag } });
  assert.equal(r.status, 304);
  assert.equal(r.text, '');
  r = await call('GET', '/ui/app.js', { k: null });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/javascript/);
  r = await call('GET', '/ui/style.css', { k: null });
  assert.match(r.headers.get('content-type'), /^text\/css/);
  r = await call('GET', '/ui', { k: null, headers: {} });
  assert.equal(r.status, 200, 'fetch follows the 301 to /ui/');
  for (const p of ['/ui/../request.c', '/ui/..%2frequest.c', '/ui/%2e%2e/%2e%2e/meson.build', '/ui/.hidden', '/ui/x/../../api.h', '/ui/nope.js', '/ui//etc/passwd']) {
    r = await call('GET', p, { k: null });
    assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
    assert.doesNotMatch(r.text, /#include|project\(/, p);
  }
  r = await call('POST', '/ui/app.js', { k: null, body: {} });
  assert.equal(r.status, 405);
});

test('CORS: only the listed origin, preflight answered, off for others', async () => {
  let r = await call('OPTIONS', '/v1/runs', { k: null, headers: { Origin: 'https://viewer.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' } });
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), 'https://viewer.example');
  assert.match(r.headers.get('access-control-allow-headers'), /Authorization/);
  assert.match(r.headers.get('access-control-allow-methods'), /POST/);
  r = await call('GET', '/v1/agents', { headers: { Origin: 'https://viewer.example' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('access-control-allow-origin'), 'https://viewer.example');
  assert.equal(r.headers.get('vary'), 'Origin');
  r = await call('GET', '/v1/agents', { headers: { Origin: 'https://evil.example' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('access-control-allow-origin'), null);
  r = await call('OPTIONS', '/v1/runs', { k: null, headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('access-control-allow-origin'), null);
});

let doneRun;
test('stream token, state at an event (= runctl replay --at), re-check (= replay --check), devices', async () => {
  doneRun = await startRun('view-wait', { name: 'Ada' });
  let r = await call('POST', `/v1/runs/${doneRun}/signals/go`, { body: { by: 'test' } });
  assert.equal(r.status, 202, r.text);
  r = await call('GET', `/v1/runs/${doneRun}?wait=30`);
  assert.equal(r.json.status, 'completed', r.text);

  // Token: opens that run's stream only, never carries the key.
  r = await call('POST', `/v1/runs/${doneRun}/stream-token`);
  assert.equal(r.status, 200, r.text);
  const tok = r.json;
  assert.ok(!tok.token.includes(key) && !tok.stream_url.includes(key));
  assert.ok(tok.expires_at > Date.now() / 1000 && tok.ttl_s === 30);
  const viaToken = await readStream(apiUrl + tok.stream_url);
  const viaKey = await readStream(`${apiUrl}/v1/runs/${doneRun}/stream`, { Authorization: `Bearer ${key}` });
  assert.deepEqual(viaToken.map((e) => e.id), viaKey.map((e) => e.id));
  assert.equal(viaToken.at(-1).event, 'run.completed');
  const other = await startRun('view-hold');
  r = await call('GET', `/v1/runs/${other}/stream?token=${tok.token}`, { k: null });
  assert.equal(r.status, 401, 'a token is for its own run only');
  r = await call('GET', `/v1/runs/${doneRun}/stream?token=${tok.token.slice(0, -2)}00`, { k: null });
  assert.equal(r.status, 401);
  r = await call('POST', `/v1/runs/${doneRun}/stream-token`, { k: otherKey });
  assert.equal(r.status, 404, 'another tenant\'s run');
  await call('POST', `/v1/runs/${other}/cancel`, { body: {} });

  // State at every event: the API's fold is runctl's.
  const n = viaKey.length;
  for (const at of [1, 3, Math.ceil(n / 2), n]) {
    r = await call('GET', `/v1/runs/${doneRun}/state?at=${at}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.at, at);
    const cli = runctl(['replay', doneRun, '--at', String(at), '--tenant', T, '--json'], env);
    assert.equal(cli.code, 0, cli.stderr);
    const view = JSON.parse(cli.stdout);
    assert.deepEqual(r.json.state, view, `state at ${at}`);
  }
  r = await call('GET', `/v1/runs/${doneRun}/state?at=${n + 1}`);
  assert.equal(r.status, 422);
  r = await call('GET', `/v1/runs/${doneRun}/state?at=zero`);
  assert.equal(r.status, 400);

  r = await call('GET', `/v1/runs/${doneRun}/check`);
  assert.equal(r.status, 200, r.text);
  const cli = JSON.parse(runctl(['replay', doneRun, '--check', '--tenant', T, '--json'], env).stdout);
  assert.deepEqual({ ok: r.json.ok, events: r.json.events, groups: r.json.groups, status: r.json.status }, cli);
  assert.equal(r.json.ok, true);

  r = await call('GET', '/v1/devices');
  const dev = r.json.devices.find((d) => d.device_id === 'laptop-1');
  assert.ok(dev && dev.online, r.text);
  assert.ok(JSON.stringify(dev.tools).includes('echo'), r.text);
  r = await call('GET', '/v1/devices', { k: otherKey });
  assert.deepEqual(r.json.devices, []);
  r = await call('GET', '/v1/devices?include_offline=maybe');
  assert.equal(r.status, 400);
  r = await call('GET', '/v1/runs?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z');
  assert.deepEqual(r.json.runs, []);
  r = await call('GET', '/v1/runs?since=yesterday');
  assert.equal(r.status, 400);
});

test('state of a run with an http step lists its effects, as runctl replay --at does', async () => {
  const id = await startRun('view-http');
  let r = await call('GET', `/v1/runs/${id}?wait=30`);
  assert.equal(r.json.status, 'completed', r.text);
  r = await call('GET', `/v1/runs/${id}/state`);
  assert.equal(r.status, 200, r.text);
  const eff = r.json.state.effects;
  assert.equal(eff.length, 1, r.text);
  assert.equal(eff[0].kind, 'http');
  assert.equal(eff[0].step_id, 'ping');
  assert.equal(eff[0].status, 'done');
  assert.equal(eff[0].http_status, 200);
  const cli = runctl(['replay', id, '--at', String(r.json.at), '--tenant', T, '--json'], env);
  assert.equal(cli.code, 0, cli.stderr);
  assert.deepEqual(r.json.state, JSON.parse(cli.stdout));
  // Before the request: none yet.
  r = await call('GET', `/v1/runs/${id}/state?at=1`);
  assert.equal(r.json.state.effects, undefined);
});

// A click on an element of a live page: the page may redraw it between
// puppeteer finding it and clicking it ("detached"); find it again.
async function click(sel) {
  for (let i = 0; ; i++) {
    try {
      await page.waitForSelector(sel, { timeout: 10000 });
      await page.click(sel);
      return;
    } catch (e) {
      if (i >= 5 || !/detached|not clickable|no node/i.test(e.message)) throw e;
    }
  }
}

async function until(fn, what, ms = 20000, ...args) {
  try {
    return await page.waitForFunction(fn, { timeout: ms, polling: 50 }, ...args);
  } catch (e) {
    throw new Error(`browser: timed out waiting for ${what}: ${e.message}`);
  }
}

test('in a browser: sign in, a run appears, live to the end across a network drop, a step, the slider, the re-check', async () => {
  browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true, userDataDir: tmpDir('chromium'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  const errors = [];
  page.on('pageerror', (e) => { errors.push(e.message); process.stderr.write(`page error: ${e.message}\n`); });
  await page.goto(`${proxy.url}/ui/`);
  await page.waitForSelector('#apikey');
  await page.type('#apikey', key);
  await click('#signin button[type=submit]');
  await page.waitForSelector('#runs');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('runstream.apiKey')), key);
  assert.ok(!(await page.url()).includes(key), 'the key is never in the URL');

  // First paint of the list, on a fresh load (signed in).
  await page.reload();
  await until(() => window.__rsListPaint > 0, 'the list painted');
  const p = await page.evaluate(() => ({
    list: window.__rsListPaint,
    fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
  }));
  measured.first_paint_list_ms = Math.round(p.list);
  measured.loadavg_at_paint = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  measured.first_contentful_paint_ms = Math.round(p.fcp);

  // A run appears by itself.
  const runId = await startRun('view-wait', { name: 'Grace' });
  await until((id) => !!document.querySelector(`#runs tr[data-run="${id}"]`), 'the new run in the list', 20000, runId);
  if (shots) await page.screenshot({ path: path.join(shots, 'viewer-list.png') });
  await click(`#runs tr[data-run="${runId}"] a`);
  await until(() => window.__rsRun && document.querySelector('#conn'), 'the run page');
  await until(() => /waiting/.test(document.querySelector('#run-head .badge').textContent), 'the run waiting for its signal');
  assert.match(await page.$eval('#run-head', (e) => e.textContent), /view-wait/);

  // The network to the API goes away; the run goes on meanwhile.
  const before = await page.evaluate(() => window.__rsRun.last);
  proxy.cut();
  await until(() => /reconnecting|connecting/.test(document.querySelector('#conn').textContent), 'the page noticing the drop');
  const r = await call('POST', `/v1/runs/${runId}/signals/go`, { body: { ok: 1 } });
  assert.equal(r.status, 202);
  const done = await call('GET', `/v1/runs/${runId}?wait=30`);
  assert.equal(done.json.status, 'completed');
  proxy.restore();
  await until(() => document.querySelector('#run-head .badge').textContent === 'completed', 'the run completed in the page', 30000);
  const seen = await page.evaluate(() => ({ seqs: window.__rsRun.model.events.map((e) => e.runseq), stats: window.__rsRun.stats }));
  const all = await readStream(`${apiUrl}/v1/runs/${runId}/stream`, { Authorization: `Bearer ${key}` });
  assert.deepEqual(seen.seqs, all.map((e) => e.id), 'every event once, in order: no gap, no duplicate');
  assert.ok(seen.stats.connects >= 2 && seen.stats.resumes.includes(before), `resumed after event ${before}: ${JSON.stringify(seen.stats)}`);
  assert.ok(!seen.stats.gap, 'no gap seen by the page');
  assert.match(await page.$eval('#run-output', (e) => e.textContent), /Hi Grace/);

  // Open a step: its output and the device that ran its tool.
  await click('#timeline .bar[data-step="greet#1"]');
  await page.waitForSelector('dialog[open] #step-calls');
  const step = await page.$eval('dialog[open]', (e) => e.textContent);
  assert.match(step, /echo/);
  assert.match(step, /laptop-1/);
  await page.keyboard.press('Escape');
  await until(() => !document.querySelector('dialog[open]'), 'the dialog closed');

  // An event's CloudEvent, one click away.
  await click('#events .ev-row[data-seq="1"]');
  await page.waitForSelector('dialog[open] #cloudevent');
  const ce = JSON.parse(await page.$eval('#cloudevent', (e) => e.textContent));
  assert.equal(ce.type, 'runstream.run.created');
  assert.equal(ce.runseq, 1);
  await page.keyboard.press('Escape');

  // Time travel: the slider to event 3 shows the fold at 3 (as runctl has it).
  await page.$eval('#slider', (s) => { s.value = '3'; s.dispatchEvent(new Event('input', { bubbles: true })); });
  await until(() => document.querySelector('#state').dataset.at === '3', 'the state at event 3');
  const shown = JSON.parse(await page.$eval('#state', (e) => e.textContent));
  const cli = JSON.parse(runctl(['replay', runId, '--at', '3', '--tenant', T, '--json'], env).stdout);
  assert.deepEqual(shown, cli);
  assert.equal(await page.$eval('#events .ev-row.at', (e) => e.dataset.seq), '3');
  // Keyboard: the slider moves with the arrow keys.
  await page.focus('#slider');
  await page.keyboard.press('ArrowRight');
  await until(() => document.querySelector('#state').dataset.at === '4', 'the state at event 4 (keyboard)');

  // Re-check against today's code.
  await click('#recheck-btn');
  await until(() => /Check ok/.test(document.querySelector('#banner').textContent), 'the re-check result');
  if (shots) await page.screenshot({ path: path.join(shots, 'viewer-run.png'), fullPage: true });

  // Phone width: still one readable column.
  await page.setViewport({ width: 390, height: 844, isMobile: true });   // reloads the page
  await until(() => window.__rsRun && document.querySelector('#conn')?.textContent === 'finished' && window.__rsRun.model.events.length > 5, 'the run page again at phone width');
  await page.evaluate(() => window.scrollTo(0, 0));
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 400, `no horizontal scroll at 390 px (page is ${wide} px wide)`);
  if (shots) await page.screenshot({ path: path.join(shots, 'viewer-phone.png') });
  await page.setViewport({ width: 1280, height: 900 });
  assert.deepEqual(errors, []);
});

test('in a browser: signal and cancel waiting runs, with confirmation; agents diff; devices', async () => {
  const sigRun = await startRun('view-wait', { name: 'Signal' });
  await page.goto(`${proxy.url}/ui/#/runs/${sigRun}`);
  await until(() => /waiting/.test(document.querySelector('#run-head .badge')?.textContent || ''), 'the run waiting for its signal');
  await click('#signal-btn');
  await page.waitForSelector('dialog[open] #signal-name');
  await page.type('#signal-name', 'go');
  await page.$eval('#signal-payload', (t) => { t.value = '{"from": "the viewer"}'; });
  await click('#dlg-ok');
  await until(() => document.querySelector('#run-head .badge').textContent === 'completed', 'the signalled run completed', 30000);
  const got = await page.evaluate(() => window.__rsRun.model.events.find((e) => e.type === 'runstream.signal.received').data);
  assert.equal(got.name, 'go');
  assert.deepEqual(got.payload, { from: 'the viewer' });

  const runId = await startRun('view-hold');
  await page.goto(`${proxy.url}/ui/#/runs/${runId}`);
  await until(() => /waiting/.test(document.querySelector('#run-head .badge')?.textContent || ''), 'the run waiting');
  await click('#cancel-btn');
  await page.waitForSelector('dialog[open] #cancel-reason');
  await click('#dlg-ok');
  await until(() => document.querySelector('#run-head .badge').textContent === 'cancelled', 'the run cancelled', 30000);
  const ended = await call('GET', `/v1/runs/${runId}`);
  assert.equal(ended.json.status, 'cancelled');

  // Keyboard: the events list (j, Enter, Escape), then the runs list (j / k, Enter).
  await page.focus('#events');
  await page.keyboard.press('j');
  await page.keyboard.press('Enter');
  await page.waitForSelector('dialog[open] #cloudevent');
  assert.equal(JSON.parse(await page.$eval('#cloudevent', (e) => e.textContent)).runseq, 1);
  await page.keyboard.press('Escape');
  await until(() => !document.querySelector('dialog[open]'), 'the dialog closed');
  await page.goto(`${proxy.url}/ui/#/runs`);
  await page.waitForSelector('#runs tbody tr');
  await page.keyboard.press('j');
  await page.keyboard.press('k');
  const first = await page.$eval('#runs tbody tr', (tr) => tr.dataset.run);
  await page.keyboard.press('Enter');
  await until((id) => location.hash === `#/runs/${id}`, 'Enter opening the selected run', 10000, first);

  await page.goto(`${proxy.url}/ui/#/agents/view-wait`);
  await page.waitForSelector('#agent-def');
  await click('#diff-btn');
  await until(() => document.querySelectorAll('#agent-diff .add').length > 0, 'a diff of the two versions');
  const diff = await page.$eval('#agent-diff', (e) => e.textContent);
  assert.match(diff, /version two/);

  await page.goto(`${proxy.url}/ui/#/devices`);
  await page.waitForSelector('#devices tr[data-device="laptop-1"]');
  assert.match(await page.$eval('#devices tr[data-device="laptop-1"]', (e) => e.textContent), /echo/);
});

test('in a browser: fork a finished run from its page, the new run opens and finishes; filter the list by tag', async () => {
  const src = await startRun('view-wait', { name: 'Fork' });
  await page.goto(`${proxy.url}/ui/#/runs/${src}`);
  await until(() => /waiting/.test(document.querySelector('#run-head .badge')?.textContent || ''), 'the source waiting for its signal');
  assert.equal((await call('POST', `/v1/runs/${src}/signals/go`, { body: { n: 1 } })).status, 202);
  await until(() => document.querySelector('#run-head .badge').textContent === 'completed', 'the source completed', 30000);
  assert.ok(await page.$eval('#retry-btn', (b) => b.disabled), 'no retry for a run that did not fail');
  const last = await page.evaluate(() => window.__rsRun.model.events.at(-1).runseq);
  await click('#fork-btn');
  await page.waitForSelector('dialog[open] #fork-from');
  assert.equal(Number(await page.$eval('#fork-from', (e) => e.value)), last, 'the fork starts at the slider (the end)');
  await click('#dlg-ok');
  // The new run's page opens by itself; every effect step of the source
  // (the tool call, the signal) was within the fork point: reused, so the
  // fork completes without a device call or a signal.
  await until((id) => /^#\/runs\/[0-9a-f-]{36}$/.test(location.hash) && location.hash !== `#/runs/${id}` &&
    window.__rsRun && window.__rsRun.runId !== id, 'the fork\'s page', 20000, src);
  const forkId = await page.evaluate(() => window.__rsRun.runId);
  await until(() => document.querySelector('#run-head .badge')?.textContent === 'completed', 'the fork completed', 30000);
  assert.match(await page.$eval('#forked-from', (e) => e.textContent), new RegExp(`after event ${last}`));
  const created = await page.evaluate(() => window.__rsRun.model.events[0].data);
  assert.equal(created.forked_from, src);
  assert.equal(created.from_seq, last);
  const fv = await call('GET', `/v1/runs/${forkId}?wait=20`);
  assert.equal(fv.json.status, 'completed');
  assert.deepEqual(fv.json.output, (await call('GET', `/v1/runs/${src}`)).json.output);

  // Tags: two runs, one filter.
  const tagged = {};
  for (const team of ['blue', 'red']) {
    const r = await call('POST', '/v1/runs', { body: { agent: 'view-hold', tags: { team } } });
    assert.equal(r.status, 202, r.text);
    tagged[team] = r.json.run_id;
  }
  await page.goto(`${proxy.url}/ui/#/runs`);
  await page.waitForSelector('#filters input[name=tag]');
  await page.type('#filters input[name=tag]', 'team:blue');
  await click('#filters button[type=submit]');
  await until(() => location.hash.includes('tag=team%3Ablue'), 'the filter in the URL');
  // The projector may not have the runs yet: the list polls until it does.
  await until((id) => !!document.querySelector(`#runs tr[data-run="${id}"]`), 'the blue run in the filtered list', 20000, tagged.blue);
  const shown = await page.$$eval('#runs tbody tr', (trs) => trs.map((tr) => tr.dataset.run));
  assert.deepEqual(shown, [tagged.blue], 'only the run tagged team:blue');
  assert.match(await page.$eval(`#runs tr[data-run="${tagged.blue}"]`, (tr) => tr.textContent), /team:blue/);
  for (const id of Object.values(tagged)) await call('POST', `/v1/runs/${id}/cancel`, { body: {} });
});

test('a run page of 10,000 events stays responsive (virtualised list; measured, not asserted)', async () => {
  await page.goto(`${proxy.url}/ui/#/runs/${doneRun}`);
  await until(() => document.querySelector('#conn').textContent === 'finished', 'the run page');
  const m = await page.evaluate(async () => {
    const build = window.__rsRun.synthetic(10000);
    const list = document.querySelector('#events');
    const frames = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      list.scrollTop = (i / 20) * list.scrollHeight;
      list.dispatchEvent(new Event('scroll'));
      await new Promise((r) => requestAnimationFrame(() => r()));
      frames.push(performance.now() - t);
    }
    frames.sort((a, b) => a - b);
    return { build, rows: list.querySelectorAll('.ev-row').length, maxFrame: frames.at(-1), medianFrame: frames[10] };
  });
  measured.synthetic_10k_build_ms = Math.round(m.build);
  measured.synthetic_10k_max_scroll_frame_ms = Math.round(m.maxFrame);
  measured.synthetic_10k_median_scroll_frame_ms = Math.round(m.medianFrame);
  measured.loadavg_at_10k = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  measured.synthetic_10k_rows_in_dom = m.rows;
  assert.ok(m.rows < 100, `only the rows in view exist (${m.rows})`);
});

test('a real run of about 10,000 events: every one reaches the page, in order (times measured, not asserted)', async () => {
  const spin = { name: 'view-long', max_steps: 5000, steps: [{ id: 'spin', kind: 'transform', value: { n: 1 }, next: 'spin' }] };
  let r = await call('POST', '/v1/agents', { body: spin });
  assert.ok(r.status === 201 || r.status === 200, r.text);
  const id = await startRun('view-long');
  r = await call('GET', `/v1/runs/${id}?wait=60`);
  assert.equal(r.json.status, 'failed', r.text);
  const last = r.json.last_seq;
  assert.ok(last > 10000, `${last} events`);
  const t0 = Date.now();
  await page.goto(`${proxy.url}/ui/#/runs/${id}`);
  await until((n) => window.__rsRun && window.__rsRun.model.events.length === n, `all ${last} events in the page`, 120000, last);
  measured.real_10k_events = last;
  measured.real_10k_all_in_page_ms = Date.now() - t0;
  const seqs = await page.evaluate(() => window.__rsRun.model.events.every((e, i) => e.runseq === i + 1));
  assert.ok(seqs, 'in order, no gap, no duplicate');
  measured.real_10k_scroll_frame_ms = await page.evaluate(async () => {
    const list = document.querySelector('#events');
    const t = performance.now();
    list.scrollTop = list.scrollHeight / 2;
    await new Promise((res) => requestAnimationFrame(() => res()));
    return Math.round(performance.now() - t);
  });
  const t1 = Date.now();
  r = await call('GET', `/v1/runs/${id}/state?at=${last}`);
  assert.equal(r.status, 200);
  measured.real_10k_state_ms = Date.now() - t1;
  // The long path (an ordered consumer, not direct gets) folds and checks
  // the same as runctl.
  const mid = Math.floor(last / 2);
  r = await call('GET', `/v1/runs/${id}/state?at=${mid}`);
  assert.deepEqual(r.json.state, JSON.parse(runctl(['replay', id, '--at', String(mid), '--tenant', T, '--json'], env).stdout));
  const t2 = Date.now();
  r = await call('GET', `/v1/runs/${id}/check`);
  measured.real_10k_check_ms = Date.now() - t2;
  // Same verdict as runctl, whatever it is. (Today both report a divergence
  // at event 202 on this run: a decision begins at most 100 steps and the
  // orchestrator continues in a next decision that no recorded event
  // opens, so the check cannot rebuild its command. Reported, not ours.)
  const cli = JSON.parse(runctl(['replay', id, '--check', '--tenant', T, '--json'], env).stdout);
  assert.equal(r.json.ok, cli.ok);
  if (cli.ok) assert.deepEqual({ ok: r.json.ok, events: r.json.events, groups: r.json.groups, status: r.json.status }, cli);
  else assert.deepEqual([r.json.seq, r.json.group_seq, r.json.command, r.json.reason, r.json.recorded], [cli.seq, cli.group_seq, cli.command, cli.reason, cli.recorded]);
  measured.loadavg_at_real_10k = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
});
