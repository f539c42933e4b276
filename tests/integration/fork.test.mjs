// fork.test.mjs - POST /v1/runs/{id}/fork and /retry through HTTP, with a
// real nats-server, orchestrator, router and a WebSocket device: a failed
// run is retried under a fixed version; the steps before the failure are
// reused (the device is not called again, the sleep does not sleep), the
// failed step runs again; forks are tenant-scoped; runctl drives the same
// endpoints and `runctl replay --check` passes on source and forks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, startService, stopAll, runctl, freePort } from '../lib/stack.mjs';
import { apiClient, watch, device, closeAllClients } from '../lib/clients.mjs';

let env; let api; let other; let apiUrl; let apiKey; let token; let routerUrl;
const runs = [];

const v1 = {
  name: 'forky',
  steps: [
    { id: 'a', kind: 'tool', tool: 'echo', args: { x: '{{input.x}}' }, timeout_s: 20 },
    { id: 'nap', kind: 'sleep', duration_ms: 200 },
    { id: 't', kind: 'transform', value: '{{steps.a.output.x}}' },
    { id: 'b', kind: 'tool', tool: 'broken', args: { v: '{{steps.t.output}}' }, timeout_s: 20 },
  ],
};
// The fix: b calls a tool that works.
const v2 = { ...v1, steps: [...v1.steps.slice(0, 3), { ...v1.steps[3], tool: 'echo' }] };

function secret(args) {
  const r = runctl(args, env);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

async function push(def) {
  const r = await api('POST', '/v1/agents', def);
  assert.ok(r.status === 201 || r.status === 200, r.text);
  return r.json.version;
}

before(async () => {
  const stack = await startStack({ pg: true });
  env = stack.env;
  apiKey = secret(['keys', 'create', '--tenant', 'acme']);
  const otherKey = secret(['keys', 'create', '--tenant', 'globex']);
  token = secret(['devices', 'token', '--tenant', 'acme', '--device', 'dev-1']);
  let port = await freePort();
  await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(port), RS_INSTANCE_ID: 'o1' }, port);
  port = await freePort();
  await startService('api', { ...env, RS_API_PORT: String(port) }, port);
  apiUrl = `http://127.0.0.1:${port}`;
  api = apiClient(apiUrl, apiKey);
  other = apiClient(apiUrl, otherKey);
  port = await freePort();
  await startService('router', { ...env, RS_ROUTER_PORT: String(port), RS_INSTANCE_ID: 'r1' }, port);
  routerUrl = `ws://127.0.0.1:${port}/v1/devices/connect`;
});

after(async () => { closeAllClients(); await stopAll(); });

const count = (evs, type, pred = () => true) => evs.filter((e) => e.type === type && pred(e)).length;

test('retry reuses the steps before the failure and runs the failed step under the fix', async () => {
  const dev = device(routerUrl, {
    deviceId: 'dev-1', token, tools: ['echo', 'broken'],
    handlers: { broken: () => { throw { code: 'broken', message: 'always', retryable: false }; } },
  });
  await dev.welcomed;
  const ver1 = await push(v1);

  const s = await api('POST', '/v1/runs', { agent: 'forky', input: { x: 41 } });
  assert.equal(s.status, 202, s.text);
  const src = s.json.run_id;
  runs.push(src);
  const srcEvents = await watch(apiUrl, apiKey, src).done;
  assert.equal(srcEvents.at(-1).type, 'run.failed');
  assert.deepEqual(dev.calls.map((c) => c.tool), ['echo', 'broken']);

  // Nothing to retry yet under a tenant that does not own the run.
  let r = await other('POST', `/v1/runs/${src}/retry`);
  assert.equal(r.status, 404, r.text);
  r = await other('POST', `/v1/runs/${src}/fork`, { from_seq: 1 });
  assert.equal(r.status, 404, r.text);

  const ver2 = await push(v2);
  assert.notEqual(ver1, ver2);
  r = await api('POST', `/v1/runs/${src}/retry`);
  assert.equal(r.status, 202, r.text);
  assert.equal(r.json.forked_from, src);
  assert.equal(r.json.version, ver2);
  assert.equal(r.json.reused_steps, 2);
  const bStart = srcEvents.find((e) => e.type === 'step.started' && e.data.step_id === 'b');
  assert.equal(r.json.from_seq, bStart.id - 1);
  const fork = r.json.run_id;
  runs.push(fork);
  const fe = await watch(apiUrl, apiKey, fork).done;
  assert.equal(fe.at(-1).type, 'run.completed', JSON.stringify(fe.at(-1)));
  assert.deepEqual(fe.at(-1).data.output, { v: 41 });   // echo of b's args
  const created = fe[0];
  assert.equal(created.type, 'run.created');
  assert.equal(created.data.forked_from, src);
  assert.equal(created.data.from_seq, bStart.id - 1);
  assert.deepEqual(created.data.input, { x: 41 });
  assert.equal(created.data.version, ver2);
  // a and nap reused: no call, no sleep timer; b called once, with echo
  assert.deepEqual(fe.filter((e) => e.data.reused_seq).map((e) => e.data.step_id), ['a', 'nap']);
  const aDone = srcEvents.find((e) => e.type === 'step.completed' && e.data.step_id === 'a');
  assert.equal(fe.find((e) => e.data.reused_seq && e.data.step_id === 'a').data.reused_seq, aDone.id);
  assert.equal(count(fe, 'tool.requested'), 1);
  assert.equal(count(fe, 'timer.scheduled', (e) => e.data.purpose === 'sleep'), 0);
  assert.deepEqual(dev.calls.map((c) => c.tool), ['echo', 'broken', 'echo']);
  assert.deepEqual(dev.calls[2].args, { v: 41 });

  // The completed fork has no failed step.
  r = await api('POST', `/v1/runs/${fork}/retry`);
  assert.equal(r.status, 409, r.text);

  // fork from event 1 under the old version with another input: nothing reused
  r = await api('POST', `/v1/runs/${src}/fork`, { from_seq: 1, version: ver1, input: { x: 7 } });
  assert.equal(r.status, 202, r.text);
  assert.equal(r.json.reused_steps, 0);
  runs.push(r.json.run_id);
  const f2 = await watch(apiUrl, apiKey, r.json.run_id).done;
  assert.equal(f2.at(-1).type, 'run.failed');
  assert.deepEqual(f2[0].data.input, { x: 7 });
  assert.deepEqual(dev.calls.slice(3).map((c) => c.tool), ['echo', 'broken']);

  // validation
  for (const [body, status, re] of [
    [{}, 422, /from_seq/],
    [{ from_seq: 0 }, 422, /from_seq/],
    [{ from_seq: 100000 }, 422, /between 1 and/],
    [{ from_seq: 2, version: 'nope' }, 422, /no version nope/],
    [{ from_seq: 2, input: [1] }, 422, /input/],
    [{ from_seq: 2, extra: 1 }, 422, /unknown member/],
    ['{', 400, /./],
  ]) {
    r = await api('POST', `/v1/runs/${src}/fork`, body);
    assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.json.detail, re);
  }
  r = await api('POST', '/v1/runs/0190f5d2-0000-7a3b-8c1d-2e3f4a5b6c7d/fork', { from_seq: 1 });
  assert.equal(r.status, 404, r.text);
  r = await api('GET', `/v1/runs/${src}/fork`);
  assert.equal(r.status, 405, r.text);

  // runctl: the same endpoints
  const cenv = { ...env, RS_API_URL: apiUrl, RS_API_KEY: apiKey };
  let c = runctl(['runs', 'retry', src, '--json'], cenv);
  assert.equal(c.code, 0, c.stderr);
  const viaCtl = JSON.parse(c.stdout);
  assert.equal(viaCtl.forked_from, src);
  assert.equal(viaCtl.reused_steps, 2);
  runs.push(viaCtl.run_id);
  assert.equal((await watch(apiUrl, apiKey, viaCtl.run_id).done).at(-1).type, 'run.completed');
  c = runctl(['runs', 'fork', src], cenv);
  assert.equal(c.code, 2, c.stdout + c.stderr);   // --from-seq is required

  // replay --check holds source and forks to today's state machine
  for (const id of runs) {
    c = runctl(['replay', id, '--check'], env, { timeout: 30000 });
    assert.equal(c.code, 0, `replay --check ${id}: ${c.stdout}\n${c.stderr}`);
  }
});
