// router.test.mjs - the tool-router against a real nats-server: the public
// device protocol (docs/devices.md) from a raw `ws` client and from the C
// example device, and the commands it sends to the orchestrator (read from
// CMDS through the orchestrator's durable consumer, as the orchestrator
// would). Nothing waits on a sleep: every step awaits a frame, a close, a
// command or a metric, each with a bounded timeout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { connect } from 'nats';
import { startStack, startProcess, stopAll, bin, waitFor, logTail } from '../lib/stack.mjs';
import { withTimeout, startRouter as startRouterOn, deviceToken, routerMetric as metric, cmdReader } from '../lib/router.mjs';

const T = 'acme';
const SUB = 'runstream.device.v1';
let stack, nc, js, cmds, routerA;

after(async () => {
  cmds?.stop();
  await nc?.close();
  await stopAll();
});

// ---- helpers ------------------------------------------------------------

const startRouter = (extra = {}) => startRouterOn(stack.env, { RS_ROUTER_HEARTBEAT_S: '1', ...extra });
const token = (device, tenant = T) => deviceToken(stack.env, device, tenant);

// A device speaking the protocol by hand: every frame is kept, expect()
// awaits the first not-yet-consumed frame matching a predicate.
class Dev {
  constructor(url, opts = {}) {
    this.frames = [];
    this.waiters = [];
    this.ws = new WebSocket(url, opts.protocol ?? SUB, { autoPong: opts.autoPong ?? true, maxPayload: 8 << 20 });
    this.opened = new Promise((res, rej) => {
      this.ws.once('open', res);
      this.ws.once('error', rej);
      this.ws.once('unexpected-response', (_req, resp) => rej(new Error(`HTTP ${resp.statusCode}`)));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((res) => this.ws.once('close', (code, reason) => res({ code, reason: reason.toString() })));
    this.ws.on('error', () => {});
    this.ws.on('message', (data, isBinary) => {
      const f = JSON.parse(data.toString());
      this.frames.push(f);
      for (const w of [...this.waiters]) w();
    });
  }
  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }
  expect(pred, ms = 5000, what = 'frame') {
    return withTimeout(new Promise((resolve) => {
      const check = () => {
        const i = this.frames.findIndex(pred);
        if (i < 0) return false;
        const [f] = this.frames.splice(i, 1);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(f);
        return true;
      };
      if (!check()) this.waiters.push(check);
    }), ms, `${what}; frames so far: ${JSON.stringify(this.frames)}`);
  }
  async hello(device, tok, tools = [{ name: 'echo' }, { name: 'sleep_ms' }]) {
    await this.opened;
    this.send({ type: 'hello', device_id: device, token: tok, tools });
    return this.expect((f) => f.type === 'welcome' || f.type === 'error', 5000, 'welcome');
  }
  close() { this.ws.terminate(); return this.closed; }
}

let seq = 0;
function newCall(fields) {
  seq += 1;
  return {
    type: 'tool.call', call_id: `call-${process.pid}-${seq}-${crypto.randomBytes(3).toString('hex')}`,
    run_id: crypto.randomUUID(), tenant: T, step_id: `s${seq}`, tool: 'echo', args: { n: seq },
    attempt: 1, deadline: new Date(Date.now() + 60000).toISOString(), ...fields,
  };
}

async function publishCall(call) {
  await js.publish(`toolcalls.${call.tenant}.${call.call_id}`, JSON.stringify(call));
  return call;
}

async function publishCancel(call) {
  await js.publish(`toolcalls.${call.tenant}.${call.call_id}`,
    JSON.stringify({ type: 'tool.cancel', call_id: call.call_id, run_id: call.run_id, tenant: call.tenant }));
}

const isCall = (call) => (f) => f.type === 'tool.call' && f.call_id === call.call_id;
const resultOf = (call) => (b) => b.type === 'tool.result' && b.call_id === call.call_id;
const deliveredOf = (call) => (b) => b.type === 'tool.delivered' && b.call_id === call.call_id;

before(async () => {
  stack = await startStack({ pg: false });
  nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  js = nc.jetstream();
  cmds = await cmdReader(js);
  routerA = await startRouter();
});

// ---- handshake ----------------------------------------------------------

test('hello with a valid token gets welcome and presence', async () => {
  const d = new Dev(routerA.url);
  const w = await d.hello('hs-ok', token('hs-ok'));
  assert.deepEqual(w, { type: 'welcome', device_id: 'hs-ok', tenant: T, heartbeat_s: 1 });
  const kv = await js.views.kv('presence');
  await waitFor('presence entry', async () => (await kv.get(`${T}.hs-ok`))?.value?.length > 0, 5000);
  const p = (await kv.get(`${T}.hs-ok`)).json();
  assert.equal(p.router, routerA.instance);
  assert.deepEqual(p.tools.map((t) => t.name), ['echo', 'sleep_ms']);
  await d.close();
  // Gone from presence once the connection closes.
  await waitFor('presence removed', async () => {
    const e = await kv.get(`${T}.hs-ok`);
    return e === null || e.operation !== 'PUT';
  }, 5000);
});

test('unknown token, token of another device, wrong subprotocol: refused', async () => {
  const bad = new Dev(routerA.url);
  const e = await bad.hello('hs-bad', 'dt_not_a_token');
  assert.equal(e.type, 'error');
  assert.equal(e.code, 'unauthorized');
  assert.equal((await withTimeout(bad.closed, 5000, 'close')).code, 4401);

  const other = new Dev(routerA.url);
  const e2 = await other.hello('hs-mallory', token('hs-alice'));
  assert.equal(e2.code, 'unauthorized');
  assert.equal((await withTimeout(other.closed, 5000, 'close')).code, 4401);

  const wrong = new Dev(routerA.url, { protocol: 'chat.v1' });
  await assert.rejects(withTimeout(wrong.opened, 5000, 'refusal'));
  const none = new Dev(routerA.url, { protocol: [] });
  await assert.rejects(withTimeout(none.opened, 5000, 'refusal'));
  const path = new Dev(routerA.url.replace('/v1/devices/connect', '/elsewhere'));
  await assert.rejects(withTimeout(path.opened, 5000, 'refusal'));
});

// ---- routing ------------------------------------------------------------

test('call by device id: tool.call to the device, delivered and result commands', async () => {
  const d = new Dev(routerA.url);
  assert.equal((await d.hello('by-id', token('by-id'))).type, 'welcome');
  const call = await publishCall(newCall({ device: 'by-id', args: { hello: 'world' } }));
  const f = await d.expect(isCall(call));
  assert.deepEqual(f, {
    type: 'tool.call', call_id: call.call_id, run_id: call.run_id, step_id: call.step_id,
    tool: 'echo', args: { hello: 'world' }, attempt: 1, deadline: f.deadline,
  });
  assert.equal(Date.parse(f.deadline), Date.parse(call.deadline));
  const del = await cmds.expect(deliveredOf(call));
  assert.equal(del.type, 'tool.delivered');
  assert.equal(del.body.device_id, 'by-id');
  assert.equal(del.body.router, routerA.instance);
  assert.equal(del.body.run_id, call.run_id);
  d.send({ type: 'tool.result', call_id: call.call_id, output: { got: 'world' } });
  const res = await cmds.expect(resultOf(call));
  assert.equal(res.type, 'tool.result');
  assert.deepEqual(res.body.output, { got: 'world' });
  assert.equal(res.body.device_id, 'by-id');
  assert.equal(res.body.tenant, T);
  // A second result for an answered call changes nothing.
  const before = await metric(routerA, 'rs_router_results_ignored_total');
  d.send({ type: 'tool.result', call_id: call.call_id, output: { again: true } });
  await waitFor('ignored result counted', async () => (await metric(routerA, 'rs_router_results_ignored_total')) > before, 5000);
  assert.equal(cmds.seen.filter((x) => resultOf(call)(x.body)).length, 1);
  await d.close();
});

// nats-server 2.9.10 can lose a command CMDS acknowledged (docs/architecture.md,
// "Streams"). The device's answer is kept in the call's KV record; the
// orchestrator, still waiting for it, publishes the call again
// (rs_run_late_effects), and the router sends the answer again, under a new
// message id, instead of running the call a second time.
test('a call published again after its answer: the answer again from KV calls, never a second run', async () => {
  const d = new Dev(routerA.url);
  assert.equal((await d.hello('again', token('again'))).type, 'welcome');
  const kv = await js.views.kv('calls');
  const answers = [
    { output: { n: 1, text: 'ok' } },
    { error: { code: 'broken', message: 'no luck', retryable: true } },
  ];
  for (const [i, answer] of answers.entries()) {
    const call = await publishCall(newCall({ device: 'again', args: { i } }));
    await d.expect(isCall(call));
    d.send({ type: 'tool.result', call_id: call.call_id, ...answer });
    const first = await cmds.expect(resultOf(call));
    assert.equal(first.id, `result-${call.call_id}`);
    const rec = (await kv.get(`${T}.${call.call_id}`)).json();
    assert.equal(rec.state, 'done');
    assert.equal(rec.device, 'again');
    assert.deepEqual(rec.result, answer);
    const before = await metric(routerA, 'rs_router_results_again_total');
    const pa = await js.publish(`toolcalls.${T}.${call.call_id}`, JSON.stringify(call), { msgID: `call-${call.call_id}-late-1` });
    await waitFor('the result sent again', () => cmds.seen.filter((x) => resultOf(call)(x.body)).length === 2, 8000);
    const again = cmds.seen.filter((x) => resultOf(call)(x.body))[1];
    assert.equal(again.id, `result-${call.call_id}-again-${pa.seq}`);
    assert.deepEqual(again.body, first.body);
    assert.equal(await metric(routerA, 'rs_router_results_again_total'), before + 1);
    // The device was not asked again.
    assert.equal(d.frames.filter(isCall(call)).length, 0);
  }
  await d.close();
});

test('call for a device that connects later waits for it', async () => {
  const call = await publishCall(newCall({ device: 'late' }));
  const d = new Dev(routerA.url);
  assert.equal((await d.hello('late', token('late'))).type, 'welcome');
  await d.expect(isCall(call));
  d.send({ type: 'tool.result', call_id: call.call_id, error: { code: 'nope', message: 'refused', retryable: true } });
  const res = await cmds.expect(resultOf(call));
  assert.equal(res.body.error.code, 'nope');
  assert.equal(res.body.error.retryable, true);
  await d.close();
});

test('call by capability spreads over the devices offering it', async () => {
  const tools = [{ name: 'cap_x' }];
  const a = new Dev(routerA.url);
  const b = new Dev(routerA.url);
  const c = new Dev(routerA.url);
  assert.equal((await a.hello('cap-a', token('cap-a'), tools)).type, 'welcome');
  assert.equal((await b.hello('cap-b', token('cap-b'), tools)).type, 'welcome');
  assert.equal((await c.hello('cap-c', token('cap-c'), [{ name: 'other' }])).type, 'welcome');
  const calls = [];
  for (let i = 0; i < 4; i++) calls.push(await publishCall(newCall({ tool: 'cap_x', capability: 'cap_x' })));
  const got = { a: 0, b: 0 };
  await Promise.all(calls.map(async (call) => {
    const f = await Promise.race([a.expect(isCall(call), 8000).then((x) => ['a', x]),
      b.expect(isCall(call), 8000).then((x) => ['b', x])]);
    got[f[0]] += 1;
  }));
  assert.ok(got.a >= 1 && got.b >= 1, `spread: ${JSON.stringify(got)}`);
  assert.equal(c.frames.filter((f) => f.type === 'tool.call').length, 0);
  for (const call of calls) {
    const dev = (await cmds.expect(deliveredOf(call))).body.device_id === 'cap-a' ? a : b;
    dev.send({ type: 'tool.result', call_id: call.call_id, output: { ok: 1 } });
    await cmds.expect(resultOf(call));
  }
  await Promise.all([a.close(), b.close(), c.close()]);
});

// ---- redelivery ---------------------------------------------------------

test('device disconnects mid-call: redelivered with the same call_id on reconnect', async () => {
  const tok = token('flaky');
  const d1 = new Dev(routerA.url);
  assert.equal((await d1.hello('flaky', tok)).type, 'welcome');
  const call = await publishCall(newCall({ device: 'flaky', tool: 'sleep_ms', args: { ms: 10 } }));
  await d1.expect(isCall(call));
  await d1.close();
  const d2 = new Dev(routerA.url);
  assert.equal((await d2.hello('flaky', tok)).type, 'welcome');
  const again = await d2.expect(isCall(call));
  assert.equal(again.attempt, 1);
  d2.send({ type: 'tool.result', call_id: call.call_id, output: { slept_ms: 10 } });
  await cmds.expect(resultOf(call));
  await d2.close();
});

test('router killed with -9: the device reconnects to another router and gets the call again', async () => {
  const r1 = await startRouter();
  const r2 = await startRouter();
  const tok = token('survivor');
  const d1 = new Dev(r1.url);
  assert.equal((await d1.hello('survivor', tok)).type, 'welcome');
  const call = await publishCall(newCall({ device: 'survivor' }));
  await d1.expect(isCall(call));
  const del = await cmds.expect(deliveredOf(call));
  assert.equal(del.body.router, r1.instance);
  await r1.kill('SIGKILL');
  await withTimeout(d1.closed, 5000, 'connection to the killed router closes');
  const d2 = new Dev(r2.url);
  assert.equal((await d2.hello('survivor', tok)).type, 'welcome');
  const again = await d2.expect(isCall(call), 8000, 'redelivery via the second router');
  assert.equal(again.call_id, call.call_id);
  d2.send({ type: 'tool.result', call_id: call.call_id, output: { via: 'r2' } });
  const res = await cmds.expect(resultOf(call));
  assert.deepEqual(res.body.output, { via: 'r2' });
  await d2.close();
  const exit = await r2.kill('SIGTERM');
  assert.equal(exit.code, 0, `router exit ${JSON.stringify(exit)}:\n${logTail(r2)}`);
});

// ---- cancel -------------------------------------------------------------

test('cancel reaches the device; its late result is ignored', async () => {
  const d = new Dev(routerA.url);
  assert.equal((await d.hello('cancel-me', token('cancel-me'))).type, 'welcome');
  const call = await publishCall(newCall({ device: 'cancel-me', tool: 'sleep_ms', args: { ms: 60000 } }));
  await d.expect(isCall(call));
  await cmds.expect(deliveredOf(call));
  await publishCancel(call);
  assert.deepEqual(await d.expect((f) => f.type === 'tool.cancel'), { type: 'tool.cancel', call_id: call.call_id });
  const before = await metric(routerA, 'rs_router_results_ignored_total');
  d.send({ type: 'tool.result', call_id: call.call_id, output: { too: 'late' } });
  await waitFor('late result ignored', async () => (await metric(routerA, 'rs_router_results_ignored_total')) > before, 5000);
  assert.equal(cmds.seen.filter((x) => resultOf(call)(x.body)).length, 0);
  await d.close();
});

// ---- protocol abuse -----------------------------------------------------

test('garbage frames get error frames naming the problem, then 1008', async () => {
  const d = new Dev(routerA.url);
  await d.opened;
  d.send('this is not json');
  let e = await d.expect((f) => f.type === 'error');
  assert.equal(e.code, 'malformed_json');
  d.send({ type: 'bogus' });
  e = await d.expect((f) => f.type === 'error');
  assert.equal(e.code, 'unknown_type');
  assert.match(e.message, /"bogus"/);
  d.send({ type: 'tool.result', call_id: 'x', output: 1 });
  e = await d.expect((f) => f.type === 'error');
  assert.match(e.message, /before welcome/);
  d.send({ type: 'hello', token: 't' });
  e = await d.expect((f) => f.type === 'error');
  assert.match(e.message, /device_id: missing/);
  d.send('[]');
  assert.equal((await withTimeout(d.closed, 5000, 'close 1008')).code, 1008);
});

test('error frames quoting half a character are still sent (found by tests/fuzz)', async () => {
  // The message went into a JSON error frame, which cannot hold invalid
  // UTF-8: the frame was dropped and the device heard nothing.
  const d = new Dev(routerA.url);
  await d.opened;
  // a type cut at 64 bytes inside a character
  d.send({ type: 'a'.repeat(63) + '\u00e9' });
  let e = await d.expect((f) => f.type === 'error');
  assert.equal(e.code, 'unknown_type');
  // malformed JSON whose parser message quotes half a character
  d.send('{"type":"\\\u00e9"}');
  e = await d.expect((f) => f.type === 'error');
  assert.equal(e.code, 'malformed_json');
  d.send('[]');
  d.send('[]');
  d.send('[]');
  assert.equal((await withTimeout(d.closed, 5000, 'close 1008')).code, 1008);
});

test('a frame over the cap closes with 1009', async () => {
  const d = new Dev(routerA.url);
  assert.equal((await d.hello('big', token('big'))).type, 'welcome');
  d.send(JSON.stringify({ type: 'tool.result', call_id: 'c', output: 'x'.repeat(1024 * 1024) }));
  assert.equal((await withTimeout(d.closed, 5000, 'close 1009')).code, 1009);
});

test('a device that does not answer pings is dropped', async () => {
  const d = new Dev(routerA.url, { autoPong: false });
  assert.equal((await d.hello('deaf', token('deaf'))).type, 'welcome');
  const t0 = Date.now();
  const { code } = await withTimeout(d.closed, 10000, 'drop after 2 missed pongs');
  assert.equal(code, 4408);
  assert.ok(Date.now() - t0 >= 1000, 'not before the first missed ping');
  // A device that does answer stays.
  const ok = new Dev(routerA.url);
  let pings = 0;
  const thirdPing = new Promise((res) => ok.ws.on('ping', () => { pings += 1; if (pings === 3) res(); }));
  assert.equal((await ok.hello('hears', token('hears'))).type, 'welcome');
  await withTimeout(thirdPing, 10000, '3 pings');
  assert.equal(ok.ws.readyState, WebSocket.OPEN);
  assert.ok((await metric(routerA, 'rs_router_heartbeat_drops_total')) >= 1);
  const call = await publishCall(newCall({ device: 'hears' }));
  await ok.expect(isCall(call), 8000);
  await ok.close();
});

// ---- the C example device ----------------------------------------------

test('the example device (C SDK) answers echo and fail', async () => {
  const dev = startProcess('device-ex', bin('device'), [], {
    RS_ROUTER_URL: routerA.url, RS_DEVICE_ID: 'example', RS_DEVICE_TOKEN: token('example'), RS_LOG_LEVEL: 'debug',
  });
  try {
    const kv = await js.views.kv('presence');
    await waitFor('example device online', async () => (await kv.get(`${T}.example`))?.operation === 'PUT', 10000);
    const echo = await publishCall(newCall({ device: 'example', args: { a: [1, 2], s: 'x' } }));
    assert.deepEqual((await cmds.expect(resultOf(echo))).body.output, { a: [1, 2], s: 'x' });
    const fail = await publishCall(newCall({ device: 'example', tool: 'fail', args: { code: 'boom', message: 'as asked', retryable: true } }));
    const r = (await cmds.expect(resultOf(fail))).body;
    assert.equal(r.error.code, 'boom');
    assert.equal(r.error.message, 'as asked');
    assert.equal(r.error.retryable, true);
    const unknown = await publishCall(newCall({ device: 'example', tool: 'nope' }));
    assert.equal((await cmds.expect(resultOf(unknown))).body.error.code, 'unknown_tool');
    // Capability call to the only device with sleep_ms.
    const cap = await publishCall(newCall({ tool: 'sleep_ms', capability: 'sleep_ms', args: { ms: 20 } }));
    assert.deepEqual((await cmds.expect(resultOf(cap))).body.output, { slept_ms: 20 });
  } catch (e) {
    throw new Error(`${e.message}\n--- device log ---\n${logTail(dev)}\n--- router log ---\n${logTail(routerA)}`);
  } finally {
    await dev.kill('SIGTERM');
  }
  const exit = await dev.exited;
  assert.equal(exit.code, 0);
});

// Last: SIGTERM is an orderly stop (exit 0; under ASan also no leaks).
test('router shuts down cleanly on SIGTERM with devices connected', async () => {
  const d = new Dev(routerA.url);
  assert.equal((await d.hello('bye', token('bye'))).type, 'welcome');
  const call = await publishCall(newCall({ device: 'bye' }));
  await d.expect(isCall(call));
  const exit = await routerA.kill('SIGTERM');
  assert.equal(exit.code, 0, `router exit ${JSON.stringify(exit)}:\n${logTail(routerA)}`);
  await withTimeout(d.closed, 5000, 'device connection closed');
});
