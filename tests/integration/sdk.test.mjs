// sdk.test.mjs - one conformance test for the three device SDKs: C
// (device/, run as rs-device-example), JavaScript (sdk/js, run as
// examples/node-device.mjs and inside headless Chromium) and Python
// (sdk/python, run as examples/python-device.py with Debian's python3).
// Against a real nats-server, orchestrator and tool-router: runs whose tool
// steps each SDK serves; a connection cut mid-call whose redelivery is
// answered from the SDK's cache without running the handler again;
// tool.cancel reaching the handler; a clean shutdown that finishes the
// running call; close 4409 and 4401 ending the device instead of a
// reconnect loop; and the examples in docs/devices.md, run as written.
//
// The three example devices offer the same tools (echo, sleep_ms, fail) and
// print "start|end|cancelled <tool> <call_id>" per handler run, so the test
// counts executions from outside. Nothing waits on a sleep: every step
// awaits an event, an output line, an exit or a page promise, with bounds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';
import { World } from '../lib/orchworld.mjs';
import { startService, runctl, stopAll, freePort, bin, SRC, tmpDir } from '../lib/stack.mjs';

const T = 'sdk';
const PYTHON = process.env.RS_PYTHON || '/usr/bin/python3';
const CHROMIUM = process.env.RS_CHROMIUM || '/usr/bin/chromium';
const SDKS = ['c', 'node', 'python'];
let world, router, proxy;

// ---- processes we start (killed by pid in after(), or on exit) ------------

const procs = new Set();
process.on('exit', () => { for (const p of procs) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } });

// A device process with its output kept: until(re) awaits a line matching
// re, count(re) counts them, exited resolves with the exit code.
function spawnProc(name, cmd, args, env) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  let waiters = [];
  let partial = '';
  const onData = (buf) => {
    partial += buf.toString();
    const parts = partial.split('\n');
    partial = parts.pop();
    lines.push(...parts);
    waiters = waiters.filter((w) => !w());
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const p = {
    name, pid: child.pid, lines,
    exited: new Promise((res) => child.on('exit', (code, sig) => { procs.delete(p); res(code ?? sig); })),
    until(re, ms = 20000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${name}: no line matching ${re} in ${ms} ms:\n${lines.slice(-30).join('\n')}`)), ms);
        const check = () => {
          const hit = lines.find((l) => re.test(l));
          if (!hit) return false;
          clearTimeout(t);
          resolve(hit);
          return true;
        };
        if (!check()) waiters.push(check);
      });
    },
    count(re) { return lines.filter((l) => re.test(l)).length; },
    kill(sig = 'SIGTERM') { try { process.kill(child.pid, sig); } catch { /* gone */ } return p.exited; },
    tail() { return lines.slice(-30).join('\n'); },
  };
  procs.add(p);
  return p;
}

function startDevice(kind, deviceId, token, url) {
  const env = { RS_ROUTER_URL: url, RS_DEVICE_ID: deviceId, RS_DEVICE_TOKEN: token, RS_LOG_LEVEL: 'info' };
  if (kind === 'c') return spawnProc(`${kind}:${deviceId}`, bin('device'), [], env);
  if (kind === 'node') return spawnProc(`${kind}:${deviceId}`, process.execPath, [path.join(SRC, 'examples/node-device.mjs')], env);
  return spawnProc(`${kind}:${deviceId}`, PYTHON, [path.join(SRC, 'examples/python-device.py')], env);
}

function token(deviceId) {
  const r = runctl(['devices', 'token', '--tenant', T, '--device', deviceId], world.env);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

// ---- a TCP proxy in front of the router, to cut connections ---------------

async function startProxy(targetPort) {
  const port = await freePort();
  const pairs = new Set();
  let paused = false;
  const server = net.createServer((down) => {
    if (paused) { down.destroy(); return; }
    const up = net.connect({ host: '127.0.0.1', port: targetPort });
    const pair = [down, up];
    pairs.add(pair);
    const end = () => { down.destroy(); up.destroy(); pairs.delete(pair); };
    down.on('error', end); up.on('error', end); down.on('close', end); up.on('close', end);
    down.pipe(up); up.pipe(down);
  });
  await new Promise((res) => server.listen(port, '127.0.0.1', res));
  return {
    url: `ws://127.0.0.1:${port}/v1/devices/connect`,
    // Refuse new connections and drop the live ones: the device sees its
    // connection die mid-call, the router releases the call.
    cut() { paused = true; for (const [d, u] of pairs) { d.destroy(); u.destroy(); } pairs.clear(); },
    resume() { paused = false; },
    close() { for (const [d, u] of pairs) { d.destroy(); u.destroy(); } return new Promise((res) => server.close(res)); },
  };
}

// ---- runs -----------------------------------------------------------------

const agents = new Map();
// An agent with one tool step pinned to a device; args come from the input.
async function agent(deviceId, tool, args, { timeout_s = 30 } = {}) {
  const name = `${deviceId}-${tool}-${timeout_s}`;
  if (!agents.has(name)) {
    await world.push(T, { name, steps: [{ id: 'call', kind: 'tool', tool, device: deviceId, args, timeout_s }] });
    agents.set(name, true);
  }
  return name;
}

const ev = (run, type) => (world.runs.get(run) || []).find((e) => e.type === `runstream.${type}`);

async function runTool(deviceId, tool, input, args, opts) {
  const name = await agent(deviceId, tool, args, opts);
  return world.start(T, name, null, input);
}

async function finish(run, ms = 30000) {
  const end = await world.waitTerminal(run, ms);
  return { end: end.type.replace(/^runstream\./, ''), completed: ev(run, 'tool.completed'), failed: ev(run, 'tool.failed') };
}

const ECHO_ARGS = { msg: '{{input.msg}}', n: '{{input.n}}' };
const SLEEP_ARGS = { ms: '{{input.ms}}' };
const FAIL_ARGS = { code: '{{input.code}}', message: '{{input.message}}' };

before(async () => {
  world = new World();
  await world.init();
  await world.orchestrator('orch-sdk');
  const port = await freePort();
  router = await startService('router', {
    ...world.env, RS_ROUTER_PORT: String(port), RS_INSTANCE_ID: `router-${port}`, RS_ROUTER_HEARTBEAT_S: '2',
  }, port);
  router.url = `ws://127.0.0.1:${port}/v1/devices/connect`;
  world.procs.push(router);
  proxy = await startProxy(port);
});

after(async () => {
  for (const p of [...procs]) await p.kill('SIGKILL');
  await proxy?.close();
  world?.live?.stop();
  await world?.nc?.close();
  await stopAll();
});

// ---- the conformance suite, once per SDK ------------------------------------

for (const kind of SDKS) {
  test(`${kind}: a run served by the SDK (output, tool errors, validation)`, async (t) => {
    const id = `${kind}-serve`;
    const dev = startDevice(kind, id, token(id), router.url);
    await dev.until(/welcome/);
    const r1 = await runTool(id, 'echo', { msg: 'hello', n: 7 }, ECHO_ARGS);
    const r2 = await runTool(id, 'fail', { code: 'no_such_thing', message: 'it is not there' }, FAIL_ARGS);
    const a = await finish(r1);
    assert.equal(a.end, 'run.completed', dev.tail());
    assert.deepEqual(a.completed.data.output, { msg: 'hello', n: 7 });
    assert.equal(a.completed.data.device_id, id);
    // Informational: tool.requested -> tool.completed as observed on RUNS.
    t.diagnostic(`echo round trip ${a.completed.observed - ev(r1, 'tool.requested').observed} ms`);
    const b = await finish(r2);
    assert.equal(b.end, 'run.failed');
    assert.equal(b.failed.data.error.code, 'no_such_thing');
    assert.equal(b.failed.data.error.message, 'it is not there');
    assert.equal(b.failed.data.error.retryable, false);
    if (kind !== 'c') {
      // The declared schema is checked before the handler runs (the C SDK
      // does not validate: docs/devices.md).
      const r3 = await runTool(id, 'sleep_ms', { ms: 'soon' }, SLEEP_ARGS);
      const c = await finish(r3);
      assert.equal(c.end, 'run.failed');
      assert.equal(c.failed.data.error.code, 'invalid_args');
      assert.match(c.failed.data.error.message, /ms/);
      assert.equal(dev.count(/start sleep_ms/), 0, 'the handler must not run on invalid args');
    }
    assert.equal(await dev.kill('SIGTERM'), 0, dev.tail());
  });

  test(`${kind}: a connection cut mid-call; the redelivery is answered from the cache`, async () => {
    const id = `${kind}-drop`;
    const dev = startDevice(kind, id, token(id), proxy.url);
    await dev.until(/welcome/);
    proxy.resume();
    const run = await runTool(id, 'sleep_ms', { ms: 1500 }, SLEEP_ARGS);
    const req = await world.waitType(run, 'tool.requested');
    const callId = req.data.call_id;
    await dev.until(new RegExp(`start sleep_ms ${callId}`));
    proxy.cut();
    // The handler finishes while the device is offline: its result can only
    // reach the run through the redelivery.
    await dev.until(new RegExp(`end sleep_ms ${callId}`));
    proxy.resume();
    const r = await finish(run);
    assert.equal(r.end, 'run.completed', dev.tail());
    assert.deepEqual(r.completed.data.output, { slept_ms: 1500 });
    assert.equal(dev.count(new RegExp(`start sleep_ms ${callId}`)), 1, 'the handler ran twice');
    await dev.until(new RegExp(`answered from cache: ${callId}`));
    assert.ok(dev.count(/welcome/) >= 2, 'the device did not reconnect');
    assert.equal(await dev.kill('SIGTERM'), 0, dev.tail());
  });

  test(`${kind}: cancelling the run cancels the handler`, async () => {
    const id = `${kind}-cancel`;
    const dev = startDevice(kind, id, token(id), router.url);
    await dev.until(/welcome/);
    const run = await runTool(id, 'sleep_ms', { ms: 60000 }, SLEEP_ARGS, { timeout_s: 120 });
    const callId = (await world.waitType(run, 'tool.requested')).data.call_id;
    await dev.until(new RegExp(`start sleep_ms ${callId}`));
    await world.command(T, run, { type: 'cancel', reason: 'test' }, `cancel-${run}`);
    await dev.until(new RegExp(`cancelled sleep_ms ${callId}`), 10000);
    assert.equal((await finish(run)).end, 'run.cancelled');
    assert.equal(dev.count(new RegExp(`end sleep_ms ${callId}`)), 0);
    // The call's deadline (the step's timeout_s) cancels the handler too.
    const late = await runTool(id, 'sleep_ms', { ms: 60000 }, SLEEP_ARGS, { timeout_s: 1 });
    const lateId = (await world.waitType(late, 'tool.requested')).data.call_id;
    await dev.until(new RegExp(`start sleep_ms ${lateId}`));
    await dev.until(new RegExp(`cancelled sleep_ms ${lateId}`), 5000);
    assert.equal((await finish(late)).end, 'run.failed');
    assert.equal(await dev.kill('SIGTERM'), 0, dev.tail());
  });

  test(`${kind}: SIGTERM lets the running call finish and answers it`, async () => {
    const id = `${kind}-drain`;
    const dev = startDevice(kind, id, token(id), router.url);
    await dev.until(/welcome/);
    const run = await runTool(id, 'sleep_ms', { ms: 1000 }, SLEEP_ARGS);
    const callId = (await world.waitType(run, 'tool.requested')).data.call_id;
    await dev.until(new RegExp(`start sleep_ms ${callId}`));
    const code = dev.kill('SIGTERM');
    const r = await finish(run);
    assert.equal(r.end, 'run.completed', dev.tail());
    assert.deepEqual(r.completed.data.output, { slept_ms: 1000 });
    assert.equal(await code, 0, dev.tail());
    assert.equal(dev.count(new RegExp(`cancelled sleep_ms ${callId}`)), 0);
  });

  test(`${kind}: close 4409 (replaced) and 4401 (bad token) stop the device`, async () => {
    const id = `${kind}-twice`;
    const tok = token(id);
    const first = startDevice(kind, id, tok, router.url);
    await first.until(/welcome/);
    const second = startDevice(kind, id, tok, router.url);
    await second.until(/welcome/);
    assert.equal(await first.exited, 4, first.tail());
    assert.match(first.tail(), /4409|replaced/);
    assert.equal(await second.kill('SIGTERM'), 0, second.tail());
    const bad = startDevice(kind, `${kind}-bad`, `dt_${'x'.repeat(40)}`, router.url);
    assert.equal(await bad.exited, 3, bad.tail());
    assert.match(bad.tail(), /4401|unauthorized/);
    assert.equal(bad.count(/reconnecting in/), 0, 'it must not retry a refused token');
  });
}

// ---- the JS SDK in a browser tab --------------------------------------------

test('js: the SDK serves a tool from headless Chromium', async () => {
  const id = 'browser-tab';
  const tok = token(id);
  const cfworker = path.join(SRC, 'sdk/js/node_modules/@cfworker/json-schema/dist/esm');
  const files = {
    '/': { type: 'text/html', body: `<!doctype html><meta charset="utf-8">
<script type="importmap">{"imports":{"@cfworker/json-schema":"/cfworker/index.js"}}</script>
<script type="module">
import { connect, ToolError } from '/sdk/index.js';
window.start = (url, deviceId, token) => {
  const device = connect({ url, deviceId, token });
  window.calls = 0;
  device.tool('shout', { description: 'upper-cases text', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } },
    async ({ text }, ctx) => { window.calls += 1; return { text: text.toUpperCase(), attempt: ctx.attempt, aborted: ctx.signal.aborted }; });
  window.device = device;
  return device.ready.then((w) => w.tenant);
};
</script>` },
  };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x').pathname;
    let file = null;
    if (files[u]) { res.writeHead(200, { 'Content-Type': files[u].type }); res.end(files[u].body); return; }
    if (u.startsWith('/sdk/')) file = path.join(SRC, 'sdk/js/src', path.basename(u));
    if (u.startsWith('/cfworker/')) file = path.join(cfworker, path.basename(u));
    if (!file || !fs.existsSync(file)) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': 'text/javascript' });
    res.end(fs.readFileSync(file));
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true, userDataDir: tmpDir('chromium'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction(() => typeof window.start === 'function', { timeout: 10000 });
    const tenant = await page.evaluate((u, d, t) => window.start(u, d, t), router.url, id, tok);
    assert.equal(tenant, T);
    const ok = await runTool(id, 'shout', { text: 'hello from a tab' }, { text: '{{input.text}}' });
    const bad = await runTool(id, 'shout', { text: 42 }, { text: '{{input.text}}' });
    const a = await finish(ok);
    assert.equal(a.end, 'run.completed');
    assert.deepEqual(a.completed.data.output, { text: 'HELLO FROM A TAB', attempt: 1, aborted: false });
    const b = await finish(bad);
    assert.equal(b.failed.data.error.code, 'invalid_args');
    assert.equal(await page.evaluate(() => window.calls), 1);
    await page.evaluate(() => window.device.close());
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await new Promise((r) => server.close(r));
  }
});

// ---- the examples in docs/devices.md, run as written ------------------------

function docBlock(marker, lang) {
  const doc = fs.readFileSync(path.join(SRC, 'docs/devices.md'), 'utf8');
  const at = doc.indexOf(`<!-- sdk-example: ${marker} -->`);
  assert.ok(at >= 0, `docs/devices.md has no <!-- sdk-example: ${marker} -->`);
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(doc.slice(at));
  assert.ok(m, `no ${lang} block after the ${marker} marker`);
  return m[1];
}

test('docs: the Node and Python examples in docs/devices.md serve a run', async () => {
  const dir = tmpDir('docs');
  const js = docBlock('node', 'js').replace(`'@runstream/device'`, `'${pathToFileURL(path.join(SRC, 'sdk/js/src/index.js'))}'`);
  assert.ok(js.split('\n').length <= 16, 'the Node example should stay short');
  fs.writeFileSync(path.join(dir, 'device.mjs'), js);
  const py = docBlock('python', 'python');
  fs.writeFileSync(path.join(dir, 'device.py'), py);
  const runs = [];
  for (const [kind, cmd, file] of [['node', process.execPath, 'device.mjs'], ['python', PYTHON, 'device.py']]) {
    const id = `docs-${kind}`;
    const p = spawnProc(id, cmd, [path.join(dir, file)], {
      RS_ROUTER_URL: router.url, RS_DEVICE_ID: id, RS_DEVICE_TOKEN: token(id), PYTHONPATH: path.join(SRC, 'sdk/python'),
    });
    runs.push([p, await runTool(id, 'add', { a: 2, b: 3 }, { a: '{{input.a}}', b: '{{input.b}}' })]);
  }
  for (const [p, run] of runs) {
    const r = await finish(run);
    assert.equal(r.end, 'run.completed', p.tail());
    assert.deepEqual(r.completed.data.output, { sum: 5 });
    await p.kill('SIGTERM');
  }
});
