// router_limits.test.mjs - the tool-router's limits on connections that
// have not said hello yet, and per tenant (docs/operations.md, "Limits"),
// from a raw `ws` client against a real nats-server. Every wait awaits a
// close, a frame or a metric, each bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startStack, startService, stopAll, freePort } from '../lib/stack.mjs';
import { withTimeout, deviceToken, routerMetric } from '../lib/router.mjs';

const SUB = 'runstream.device.v1';
let stack, router;

const token = (device, tenant) => deviceToken(stack.env, device, tenant);
const metric = (name) => routerMetric(router, name);

// A raw connection: frames kept, close code awaited.
function open() {
  const ws = new WebSocket(router.url, SUB, { maxPayload: 8 << 20 });
  const frames = [];
  ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
  ws.on('error', () => {});
  const opened = new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
  const closed = new Promise((res) => ws.once('close', (code) => res(code)));
  const next = (pred) => new Promise((resolve) => {
    const check = () => { const f = frames.find(pred); if (f) { resolve(f); return true; } return false; };
    if (!check()) ws.on('message', () => check());
  });
  return { ws, frames, opened, closed, next };
}

before(async () => {
  stack = await startStack({ pg: false });
  const port = await freePort();
  router = await startService('router', {
    ...stack.env, RS_ROUTER_PORT: String(port), RS_INSTANCE_ID: `router-${port}`, RS_LOG_LEVEL: 'warn',
    RS_ROUTER_MAX_PREHELLO_BYTES: '16384', RS_ROUTER_HELLO_TIMEOUT_S: '2',
    RS_ROUTER_MAX_DEVICES_PER_TENANT: '2', RS_ROUTER_HEARTBEAT_S: '1',
  }, port);
  router.url = `ws://127.0.0.1:${port}/v1/devices/connect`;
});

after(async () => { await stopAll(); });

test('one frame before hello larger than the pre-hello budget: closed 1009', async () => {
  const c = open();
  await c.opened;
  const before = await metric('rs_router_prehello_refused_total');
  // Under RS_ROUTER_MAX_FRAME (1 MiB) but over the 16 KiB a stranger may send.
  c.ws.send(JSON.stringify({ type: 'hello', device_id: 'x', token: 'y', pad: 'x'.repeat(20000) }));
  assert.equal(await withTimeout(c.closed, 5000, 'close'), 1009);
  assert.equal(await metric('rs_router_prehello_refused_total'), before + 1);
});

test('small frames before hello add up to the same budget', async () => {
  const c = open();
  await c.opened;
  // Each is a bad frame answered with an error; RS_ROUTER_MAX_BAD_FRAMES (5)
  // would close at the 5th, so stay at 4 frames of 5000 bytes = 20000 > 16384.
  for (let i = 0; i < 4; i++) c.ws.send(JSON.stringify({ type: 'bogus', pad: 'x'.repeat(5000) }));
  assert.equal(await withTimeout(c.closed, 5000, 'close'), 1009);
  // At most 3 error frames came back: the 4th frame crossed the budget.
  assert.ok(c.frames.length <= 3, JSON.stringify(c.frames));
});

test('no hello within RS_ROUTER_HELLO_TIMEOUT_S: the connection is closed', async () => {
  const c = open();
  await c.opened;
  const t0 = Date.now();
  const code = await withTimeout(c.closed, 8000, 'close by the hello deadline');
  const took = Date.now() - t0;
  assert.ok(took >= 1500 && took < 7000, `closed after ${took} ms`);
  assert.ok(code === 1006 || code === 1000 || code === 1001, `close code ${code}`);
  // A hello within the deadline is welcomed and then kept past it.
  const d = open();
  await d.opened;
  d.ws.send(JSON.stringify({ type: 'hello', device_id: 'late-ok', token: token('late-ok', 'acme'), tools: [] }));
  assert.equal((await withTimeout(d.next((f) => f.type === 'welcome' || f.type === 'error'), 5000, 'welcome')).type, 'welcome');
  // Past the deadline, awaited as events: three heartbeat pings (1 s apart).
  const welcomedAt = Date.now();
  let pings = 0;
  const threePings = new Promise((r) => d.ws.on('ping', () => { if (++pings === 3) r(); }));
  const first = await withTimeout(Promise.race([threePings.then(() => 'pings'), d.closed.then((c) => `closed ${c}`)]),
    8000, 'three pings');
  assert.equal(first, 'pings', 'a welcomed device is not dropped by the hello deadline');
  assert.ok(Date.now() - welcomedAt >= 2000);
  d.ws.close();
  await d.closed;
});

test('per tenant: the third device is refused 4429, a reconnect is not, a slot frees on close', async () => {
  const hello = async (dev, tenant) => {
    const c = open();
    await c.opened;
    c.ws.send(JSON.stringify({ type: 'hello', device_id: dev, token: token(dev, tenant), tools: [] }));
    const f = await withTimeout(c.next((x) => x.type === 'welcome' || x.type === 'error'), 5000, `answer to ${dev}`);
    return { c, f };
  };
  const a = await hello('lim-a', 'lim');
  const b = await hello('lim-b', 'lim');
  assert.equal(a.f.type, 'welcome');
  assert.equal(b.f.type, 'welcome');
  const third = await hello('lim-c', 'lim');
  assert.equal(third.f.type, 'error');
  assert.equal(third.f.code, 'too_many_devices');
  assert.match(third.f.message, /RS_ROUTER_MAX_DEVICES_PER_TENANT/);
  assert.equal(await withTimeout(third.c.closed, 5000, 'close 4429'), 4429);
  // Another tenant is not affected.
  const other = await hello('lim-a', 'other');
  assert.equal(other.f.type, 'welcome');
  // The same device reconnecting replaces itself (not a third connection).
  const again = await hello('lim-a', 'lim');
  assert.equal(again.f.type, 'welcome');
  assert.equal(await withTimeout(a.c.closed, 5000, 'replaced'), 4409);
  // Closing one gives its slot back.
  b.c.ws.close();
  await b.c.closed;
  const now = await hello('lim-c', 'lim');
  assert.equal(now.f.type, 'welcome', JSON.stringify(now.f));
  for (const x of [again, now, other]) { x.c.ws.close(); await x.c.closed; }
});
