// router_intake.test.mjs - the tool-router's intake (docs/devices.md,
// "Router architecture"): a pull request on TOOLCALLS kept outstanding, so a
// call reaches a device at once even after the router has idled past the
// life of its pull requests; a call claimed and delivered in the one KV
// write that creates its record; and exactly one delivery and one result
// per call when two routers take calls from the shared consumer at once.
// Real nats-server, real routers, raw `ws` devices; every wait is on a
// frame, a command or a metric.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { connect } from 'nats';
import { startStack, stopAll, waitFor } from '../lib/stack.mjs';
import { withTimeout, startRouter as startRouterOn, deviceToken, routerMetric as metric, cmdReader } from '../lib/router.mjs';

const T = 'intake';
const SUB = 'runstream.device.v1';
let stack, nc, js, cmds;

const startRouter = (extra = {}) => startRouterOn(stack.env, extra);
const token = (device) => deviceToken(stack.env, device, T);

after(async () => {
  cmds?.stop();
  await nc?.close();
  await stopAll();
});

// A device by hand: connects, says hello, records every tool.call frame
// and (when answer is set) answers each at once with its call_id.
class Dev {
  constructor(url, id, tools, { answer = true } = {}) {
    this.id = id;
    this.calls = [];
    this.waiters = [];
    this.ws = new WebSocket(url, SUB);
    this.ws.on('error', () => {});
    this.welcome = new Promise((resolve, reject) => {
      this.ws.once('open', () => this.ws.send(JSON.stringify({ type: 'hello', device_id: id, token: token(id), tools })));
      this.ws.on('message', (data) => {
        const f = JSON.parse(data.toString());
        if (f.type === 'welcome') resolve(f);
        else if (f.type === 'error') reject(new Error(JSON.stringify(f)));
        else if (f.type === 'tool.call') {
          this.calls.push({ frame: f, at: performance.now() });
          if (answer) this.ws.send(JSON.stringify({ type: 'tool.result', call_id: f.call_id, output: { by: id } }));
          for (const w of [...this.waiters]) w();
        }
      });
    });
  }
  got(callId, ms = 5000) {
    return withTimeout(new Promise((resolve) => {
      const check = () => {
        const c = this.calls.find((x) => x.frame.call_id === callId);
        if (!c) return false;
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(c);
        return true;
      };
      if (!check()) this.waiters.push(check);
    }), ms, `tool.call ${callId} at ${this.id}`);
  }
  close() { this.ws.terminate(); }
}

let seq = 0;
function newCall(fields) {
  seq += 1;
  return {
    type: 'tool.call', call_id: `ic-${process.pid}-${seq}-${crypto.randomBytes(3).toString('hex')}`,
    run_id: crypto.randomUUID(), tenant: T, step_id: `s${seq}`, tool: 'echo', args: { n: seq },
    attempt: 1, deadline: new Date(Date.now() + 60000).toISOString(), ...fields,
  };
}

const publishCall = (call) => js.publish(`toolcalls.${T}.${call.call_id}`, JSON.stringify(call));

before(async () => {
  stack = await startStack({ pg: false });
  nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  js = nc.jetstream();
  cmds = await cmdReader(js);
});

test('a call after the router idled past several pull-request lifetimes reaches the device at once', async (t) => {
  // Pull requests that live 1.5 s: the router must renew them while idle.
  const r = await startRouter({ RS_ROUTER_PULL_EXPIRES_MS: '1500' });
  const d = new Dev(r.url, 'idle-dev', [{ name: 'echo' }]);
  await d.welcome;
  // Idle until the router has sent 4 pull requests (3 renewed on time,
  // the first ones expired on the server meanwhile): ~3-4 s.
  await waitFor('pull requests renewed while idle', async () => (await metric(r, 'rs_consume_pull_requests_total')) >= 4, 15000, 100);
  const intake0 = await metric(r, 'rs_router_intake_seconds_count');
  const conflicts0 = await metric(r, 'rs_router_claim_conflicts_total');
  const call = newCall({ device: 'idle-dev' });
  const t0 = performance.now();
  await publishCall(call);
  const got = await d.got(call.call_id, 5000);
  const ms = got.at - t0;
  t.diagnostic(`delivered ${ms.toFixed(1)} ms after its publish started`);
  // Before this intake a fetch loop re-armed only every 500 ms, and an
  // expired request on nats-server 2.9.10 cost a second or more.
  assert.ok(ms < 400, `delivered ${ms.toFixed(1)} ms after its publish started`);
  // Claimed and delivered by the intake's own KV create: no claim CAS.
  await waitFor('intake latency observed', async () => (await metric(r, 'rs_router_intake_seconds_count')) === intake0 + 1, 5000);
  assert.equal(await metric(r, 'rs_router_claim_conflicts_total'), conflicts0);
  const kv = await js.views.kv('calls');
  const rec = JSON.parse((await kv.get(`${T}.${call.call_id}`)).string());
  assert.equal(rec.device, 'idle-dev');
  assert.equal(rec.router, r.instance);
  await waitFor('tool.delivered and tool.result commands', async () =>
    cmds.seen.some((x) => x.type === 'tool.delivered' && x.body.call_id === call.call_id) &&
    cmds.seen.some((x) => x.type === 'tool.result' && x.body.call_id === call.call_id), 8000);
  d.close();
  await r.kill();
});

test('two routers taking calls at once: each call delivered once, one tool.delivered and one tool.result each', async () => {
  const r1 = await startRouter();
  const r2 = await startRouter();
  const tools = [{ name: 'echo' }, { name: 'cap_y' }];
  const devs = [new Dev(r1.url, 'y-1a', tools), new Dev(r1.url, 'y-1b', tools),
    new Dev(r2.url, 'y-2a', tools), new Dev(r2.url, 'y-2b', tools),
    new Dev(r2.url, 'only-2', [{ name: 'echo' }])];
  await Promise.all(devs.map((d) => d.welcome));
  // Capability calls (any of four devices on two routers) and calls for a
  // device only router 2 holds: those router 1 takes from TOOLCALLS are
  // created pending and claimed by router 2 through the watch.
  const calls = [];
  for (let i = 0; i < 150; i++) calls.push(newCall({ tool: 'cap_y', capability: 'cap_y' }));
  for (let i = 0; i < 50; i++) calls.push(newCall({ device: 'only-2' }));
  await Promise.all(calls.map(publishCall));
  const ids = new Set(calls.map((c) => c.call_id));
  const count = (type) => {
    const m = new Map();
    for (const x of cmds.seen) if (x.type === type && ids.has(x.body.call_id)) m.set(x.body.call_id, (m.get(x.body.call_id) || 0) + 1);
    return m;
  };
  await waitFor('a tool.result for every call', async () => count('tool.result').size === calls.length, 30000, 50);
  await waitFor('a tool.delivered for every call', async () => count('tool.delivered').size === calls.length, 10000, 50);
  // Exactly once: no call reached two devices or one device twice (no
  // connection was cut, so nothing is redelivered), one command of each.
  const frames = new Map();
  for (const d of devs) for (const c of d.calls) if (ids.has(c.frame.call_id)) frames.set(c.frame.call_id, [...(frames.get(c.frame.call_id) || []), d.id]);
  assert.equal(frames.size, calls.length);
  for (const [id, by] of frames) assert.equal(by.length, 1, `${id} delivered to ${by.join(', ')}`);
  for (const [id, n] of count('tool.result')) assert.equal(n, 1, `${id}: ${n} tool.result`);
  for (const [id, n] of count('tool.delivered')) assert.equal(n, 1, `${id}: ${n} tool.delivered`);
  for (const x of cmds.seen) {
    if (x.type !== 'tool.delivered' || !ids.has(x.body.call_id)) continue;
    assert.deepEqual(frames.get(x.body.call_id), [x.body.device_id]);
  }
  for (const c of calls.slice(150)) assert.deepEqual(frames.get(c.call_id), ['only-2']);
  for (const d of devs) d.close();
});
