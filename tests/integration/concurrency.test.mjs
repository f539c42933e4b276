// concurrency.test.mjs - concurrency keys and the tenant limit through HTTP,
// with real nats-server, Postgres, orchestrators, router and a WebSocket
// device that answers only when told: at most `limit` runs of one key run
// at once, the rest stay queued (FIFO per key, position in GET /v1/runs/{id}),
// a freed slot starts the next; the tenant limit caps running runs across
// keys; a queued run can be cancelled; the gate survives kill -9 of an
// orchestrator (state in KV), and two orchestrators share it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, startService, stopAll, runctl, freePort } from '../lib/stack.mjs';
import { apiClient, watch, device, closeAllClients } from '../lib/clients.mjs';

let env; let api; let apiUrl; let apiKey; let token; let routerUrl;
const orchs = [];
const runs = [];

const agent = {
  name: 'per-customer',
  concurrency: { key: '{{input.customer}}', limit: 2 },
  steps: [{ id: 'work', kind: 'tool', tool: 'echo', args: { n: '{{input.n}}' }, timeout_s: 60 }],
};

function secret(args) {
  const r = runctl(args, env);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

async function startOrch(name) {
  const port = await freePort();
  const p = await startService('orchestrator', {
    ...env, RS_ORCHESTRATOR_OPS_PORT: String(port), RS_INSTANCE_ID: name,
    RS_ORCH_TENANT_MAX_RUNNING: '3',
  }, port);
  orchs.push(p);
  return p;
}

before(async () => {
  const stack = await startStack({ pg: true });
  env = stack.env;
  apiKey = secret(['keys', 'create', '--tenant', 'acme']);
  token = secret(['devices', 'token', '--tenant', 'acme', '--device', 'dev-1']);
  await startOrch('o1');
  await startOrch('o2');
  let port = await freePort();
  await startService('projector', { ...env, RS_PROJECTOR_OPS_PORT: String(port) }, port);
  port = await freePort();
  await startService('api', { ...env, RS_API_PORT: String(port) }, port);
  apiUrl = `http://127.0.0.1:${port}`;
  api = apiClient(apiUrl, apiKey);
  port = await freePort();
  await startService('router', { ...env, RS_ROUTER_PORT: String(port), RS_INSTANCE_ID: 'r1' }, port);
  routerUrl = `ws://127.0.0.1:${port}/v1/devices/connect`;
});

after(async () => { closeAllClients(); await stopAll(); });

async function start(customer, n) {
  const r = await api('POST', '/v1/runs', { agent: 'per-customer', input: { customer, n } });
  assert.equal(r.status, 202, r.text);
  runs.push(r.json.run_id);
  return r.json.run_id;
}

// GET until pred(view) holds (the read model and the gate move on their own).
async function viewUntil(id, pred, what) {
  for (let i = 0; i < 400; i++) {
    const r = await api('GET', `/v1/runs/${id}`);
    if (r.status === 200 && pred(r.json)) return r.json;
    await new Promise((res) => setTimeout(res, 25));   // polling a read model, not synchronising
  }
  throw new Error(`run ${id}: never ${what}`);
}

test('a key runs at most its limit, FIFO; the tenant limit caps across keys; cancel while queued; kill -9', async () => {
  const dev = device(routerUrl, { deviceId: 'dev-1', token, tools: ['echo'], autoAnswer: false });
  await dev.welcomed;
  const p = await api('POST', '/v1/agents', agent);
  assert.ok(p.status === 201 || p.status === 200, p.text);

  // a1, a2 take key a's two slots; b1 the tenant's third; a3, a4 wait for key
  // a; b2 holds a key-b slot but waits for the tenant.
  const a1 = await start('a', 1);
  const a2 = await start('a', 2);
  await dev.until((f) => f.type === 'tool.call' && f.run_id === a2);
  const b1 = await start('b', 1);
  await dev.until((f) => f.type === 'tool.call' && f.run_id === b1);
  const a3 = await start('a', 3);
  const a4 = await start('a', 4);
  const b2 = await start('b', 2);

  let v = await viewUntil(a4, (x) => x.queue && x.queue.position === 2, 'second in key a');
  assert.deepEqual(v.queue, { gate: 'concurrency', key: 'a', limit: 2, running: 2, position: 2, ahead: 1 });
  v = await viewUntil(a3, (x) => x.queue && x.queue.position === 1, 'first in key a');
  assert.equal(v.status, 'queued');
  v = await viewUntil(b2, (x) => x.queue && x.queue.gate === 'tenant', 'waiting in the tenant gate');
  assert.deepEqual(v.queue, { gate: 'tenant', limit: 3, running: 3, position: 1, ahead: 0 });
  assert.deepEqual(dev.calls.map((c) => c.run_id).sort(), [a1, a2, b1].sort());

  // a4 is cancelled while queued: it never starts.
  let r = await api('POST', `/v1/runs/${a4}/cancel`, { reason: 'not needed' });
  assert.equal(r.status, 202, r.text);
  const a4ev = await watch(apiUrl, apiKey, a4).done;
  assert.deepEqual(a4ev.map((e) => e.type), ['run.created', 'run.cancel_requested', 'run.cancelled']);

  // kill -9 one orchestrator: the gate is in KV, the other carries on.
  orchs[0].proc.kill('SIGKILL');

  // a1 finishes: its key-a slot goes to a3 (FIFO), but the tenant slot it
  // freed goes to b2, first in the tenant's queue; a3 then waits there.
  const call1 = dev.calls.find((c) => c.run_id === a1);
  dev.answer(call1.call_id, { done: 1 });
  assert.equal((await watch(apiUrl, apiKey, a1).done).at(-1).type, 'run.completed');
  await dev.until((f) => f.type === 'tool.call' && f.run_id === b2);
  v = await viewUntil(a3, (x) => x.queue && x.queue.gate === 'tenant', 'a3 holds key a, waits for the tenant');
  assert.equal(v.queue.position, 1);
  assert.ok(!dev.calls.some((c) => c.run_id === a3));

  // a2 finishes: a3 gets the tenant slot and starts.
  await startOrch('o3');   // a restarted instance joins in
  dev.answer(dev.calls.find((c) => c.run_id === a2).call_id, { done: 2 });
  const call3 = await dev.until((f) => f.type === 'tool.call' && f.run_id === a3);
  for (const c of [call3, ...dev.calls.filter((x) => x.run_id === b1 || x.run_id === b2)]) dev.answer(c.call_id, { ok: true });
  for (const id of [a2, a3, b1, b2]) {
    const evs = await watch(apiUrl, apiKey, id).done;
    assert.equal(evs.at(-1).type, 'run.completed', `${id}: ${evs.map((e) => e.type)}`);
    // every gated run started by an admission
    const started = evs.find((e) => e.type === 'run.started');
    assert.equal(started.data.admission, 'granted');
  }
  const created = (await watch(apiUrl, apiKey, a3).done)[0];
  assert.equal(created.data.concurrency_key, 'a');
  assert.equal(created.data.concurrency_limit, 2);
  assert.equal(created.data.tenant_limit, 3);

  // every run, gated ones included, is what today's state machine decides
  for (const id of runs) {
    const c = runctl(['replay', id, '--check'], env, { timeout: 30000 });
    assert.equal(c.code, 0, `replay --check ${id}: ${c.stdout}\n${c.stderr}`);
  }
});
