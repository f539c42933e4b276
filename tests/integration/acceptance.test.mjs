// acceptance.test.mjs - the whole platform end to end (issue 8), with real
// servers (nats-server, Postgres), the four services, and real clients:
// fetch for HTTP, EventSource for SSE, ws for the device, runctl.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startStack, startService, startProcess, stopAll, runctl, freePort, waitFor, bin, logTail,
} from '../lib/stack.mjs';
import { apiClient, watch, device, closeAllClients } from '../lib/clients.mjs';

let stack; let env; let api; let apiKey; let otherApi; let apiUrl;
let token1; let token2;
const procs = {};
const runs = []; // every run id, for replay --check at the end
const TERMINAL = ['run.completed', 'run.failed', 'run.cancelled', 'run.timed_out'];

async function startOrchestrator(name = 'orch') {
  const port = await freePort();
  procs[name] = await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(port), RS_INSTANCE_ID: name }, port);
  return procs[name];
}
async function startProjector() {
  const port = await freePort();
  procs.projector = await startService('projector', { ...env, RS_PROJECTOR_OPS_PORT: String(port) }, port);
  return procs.projector;
}
async function startRouter(name) {
  const port = await freePort();
  procs[name] = await startService('router', { ...env, RS_ROUTER_PORT: String(port), RS_INSTANCE_ID: name, RS_ROUTER_HEARTBEAT_S: '1' }, port);
  procs[name].url = `ws://127.0.0.1:${port}/v1/devices/connect`;
  return procs[name];
}

function secret(args) {
  const r = runctl(args, env);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

async function pushAgent(def) {
  const r = await api('POST', '/v1/agents', def);
  assert.ok(r.status === 201 || r.status === 200, `${r.status} ${r.text}`);
  return r.json.version;
}

async function startRun(agent, input, headers = {}) {
  const r = await api('POST', '/v1/runs', { agent, input }, headers);
  assert.equal(r.status, 202, r.text);
  runs.push(r.json.run_id);
  return r.json.run_id;
}

async function finish(runId) {
  const w = watch(apiUrl, apiKey, runId);
  return w.done;
}

function onlyOne(events, type) {
  return events.filter((e) => e.type === type).length;
}

function assertSeqs(events) {
  events.forEach((e, i) => assert.equal(e.id, i + 1, `runseq ${e.id} at position ${i + 1}`));
  assert.equal(events.filter((e) => TERMINAL.includes(e.type)).length, 1, 'exactly one terminal event');
}

const greeter = {
  name: 'greeter',
  timeout_s: 60,
  steps: [
    { id: 'greet', kind: 'tool', tool: 'echo', capability: true, args: { message: 'Hello, {{input.name}}!' }, timeout_s: 20 },
    { id: 'pause', kind: 'sleep', duration_ms: 300 },
    { id: 'route', kind: 'branch', when: [{ if: { path: 'input.vip', equals: true }, goto: 'vip' }], else: 'regular' },
    { id: 'vip', kind: 'transform', value: { greeting: '{{steps.greet.output.message}}', tier: 'vip' }, next: 'end' },
    { id: 'regular', kind: 'transform', value: { greeting: '{{steps.greet.output.message}}', tier: 'regular' } },
  ],
};

before(async () => {
  stack = await startStack({ pg: true });
  env = stack.env;
  apiKey = secret(['keys', 'create', '--tenant', 'acme']);
  const otherKey = secret(['keys', 'create', '--tenant', 'globex']);
  token1 = secret(['devices', 'token', '--tenant', 'acme', '--device', 'dev-1']);
  token2 = secret(['devices', 'token', '--tenant', 'acme', '--device', 'dev-2']);
  await startOrchestrator('orch');
  await startProjector();
  const apiPort = await freePort();
  procs.api = await startService('api', { ...env, RS_API_PORT: String(apiPort) }, apiPort);
  apiUrl = `http://127.0.0.1:${apiPort}`;
  api = apiClient(apiUrl, apiKey);
  otherApi = apiClient(apiUrl, otherKey);
  await startRouter('router-a');
  await startRouter('router-b');
});

after(async () => { closeAllClients(); await stopAll(); });

test('1-6: push, idempotent start, two watchers, device tool call, Last-Event-ID resume, read models', async () => {
  // 1. Push twice: same version.
  const r1 = await api('POST', '/v1/agents', greeter);
  assert.equal(r1.status, 201, r1.text);
  assert.equal(r1.json.created, true);
  const r2 = await api('POST', '/v1/agents', greeter);
  assert.equal(r2.status, 200, r2.text);
  assert.equal(r2.json.created, false);
  assert.equal(r2.json.version, r1.json.version);

  // The device holds the call until we say so, to control the timeline.
  const dev = device(procs['router-a'].url, { deviceId: 'dev-1', token: token1, tools: ['echo'], autoAnswer: false });
  await dev.welcomed;

  // 2. Start with an idempotency key; repeat: same run_id.
  const body = { agent: 'greeter', input: { name: 'Ada', vip: true } };
  const a = await api('POST', '/v1/runs', body, { 'Idempotency-Key': 'accept-1' });
  assert.equal(a.status, 202, a.text);
  assert.equal(a.json.status, 'queued');
  assert.equal(a.json.stream_url, `/v1/runs/${a.json.run_id}/stream`);
  const b = await api('POST', '/v1/runs', body, { 'Idempotency-Key': 'accept-1' });
  assert.equal(b.json.run_id, a.json.run_id);
  const runId = a.json.run_id;
  runs.push(runId);

  // 3. Two watchers from the start.
  const w1 = watch(apiUrl, apiKey, runId);
  const w2 = watch(apiUrl, apiKey, runId);

  // 4. The router delivers the call to the device.
  const call = await dev.until((f) => f.type === 'tool.call');
  assert.equal(call.run_id, runId);
  assert.equal(call.step_id, 'greet');
  assert.equal(call.tool, 'echo');
  assert.deepEqual(call.args, { message: 'Hello, Ada!' });
  assert.equal(call.attempt, 1);

  // 5. Watcher 2 drops mid-run, after it has seen the dispatch.
  const seen = await w2.until((e) => e.type === 'tool.dispatched');
  assert.ok(seen);
  w2.close();
  const lastId = w2.events[w2.events.length - 1].id;
  dev.answer(call.call_id, { message: 'Hello, Ada!' });
  await w1.until((e) => e.type === 'timer.fired');
  const w2b = watch(apiUrl, apiKey, runId, { lastEventId: lastId });
  const [all1, rest2] = await Promise.all([w1.done, w2b.done]);
  const all2 = [...w2.events, ...rest2];
  assertSeqs(all1);
  assert.deepEqual(all2.map((e) => [e.id, e.type]), all1.map((e) => [e.id, e.type]), 'identical sequences, no gap or duplicate at the seam');
  assert.equal(rest2[0].id, lastId + 1);
  assert.equal(all1[all1.length - 1].type, 'run.completed');
  assert.deepEqual(all1[all1.length - 1].data.output, { greeting: 'Hello, Ada!', tier: 'vip' });

  // A reconnect after the end gets 204 (EventSource stops reconnecting).
  const again = await fetch(`${apiUrl}/v1/runs/${runId}/stream`, {
    headers: { Authorization: `Bearer ${apiKey}`, 'Last-Event-ID': String(all1.length) },
  });
  assert.equal(again.status, 204);

  // Read-your-writes: the GET right after the terminal event is terminal.
  const got = await api('GET', `/v1/runs/${runId}`);
  assert.equal(got.status, 200, got.text);
  assert.equal(got.json.status, 'completed');
  assert.deepEqual(got.json.output, { greeting: 'Hello, Ada!', tier: 'vip' });
  assert.equal(got.json.last_seq, all1.length);
  // Another tenant cannot see it.
  assert.equal((await otherApi('GET', `/v1/runs/${runId}`)).status, 404);

  // 6. Postgres agrees with the events.
  const { pg } = stack;
  await waitFor('projector to apply the run', () => pg.psql(`SELECT status FROM runs WHERE run_id='${runId}'`) === 'completed');
  assert.equal(Number(pg.psql(`SELECT count(*) FROM run_events WHERE run_id='${runId}'`)), all1.length);
  assert.equal(Number(pg.psql(`SELECT last_seq FROM runs WHERE run_id='${runId}'`)), all1.length);
  assert.deepEqual(JSON.parse(pg.psql(`SELECT output FROM runs WHERE run_id='${runId}'`)), { greeting: 'Hello, Ada!', tier: 'vip' });
  const stepsDone = all1.filter((e) => e.type === 'step.completed').length;
  assert.equal(Number(pg.psql(`SELECT count(*) FROM steps WHERE run_id='${runId}' AND status='completed'`)), stepsDone);
  assert.equal(pg.psql(`SELECT status || ' ' || tool FROM tool_calls WHERE call_id='${call.call_id}'`), 'completed echo');
  await dev.close();
});

test('7a: kill -9 the orchestrator while the run waits on a device; restart; completes once', async () => {
  const dev = device(procs['router-a'].url, { deviceId: 'dev-1', token: token1, tools: ['echo'], autoAnswer: false });
  await dev.welcomed;
  const runId = await startRun('greeter', { name: 'Bob' });
  const call = await dev.until((f) => f.type === 'tool.call' && f.run_id === runId);
  await procs.orch.kill('SIGKILL');
  await startOrchestrator('orch');
  dev.answer(call.call_id, { message: 'Hello, Bob!' });
  const events = await finish(runId);
  assertSeqs(events);
  assert.equal(onlyOne(events, 'run.completed'), 1);
  assert.equal(onlyOne(events, 'tool.completed'), 1);
  await dev.close();
});

test('7b: kill -9 the router with a call in flight; device reconnects elsewhere, same call_id; completes once', async () => {
  const devA = device(procs['router-a'].url, { deviceId: 'dev-2', token: token2, tools: ['echo'], autoAnswer: false });
  await devA.welcomed;
  const runId = await startRun('greeter', { name: 'Cy' });
  const first = await devA.until((f) => f.type === 'tool.call' && f.run_id === runId);
  await procs['router-a'].kill('SIGKILL');
  await devA.closed;
  const devB = device(procs['router-b'].url, { deviceId: 'dev-2', token: token2, tools: ['echo'] });
  await devB.welcomed;
  const again = await devB.until((f) => f.type === 'tool.call' && f.run_id === runId);
  assert.equal(again.call_id, first.call_id, 'redelivered with the same call_id');
  const events = await finish(runId);
  assertSeqs(events);
  assert.equal(onlyOne(events, 'tool.completed'), 1);
  assert.equal(events[events.length - 1].type, 'run.completed');
  await devB.close();
  await startRouter('router-a');
});

function tableChecksum(pg) {
  return pg.psql(`SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
      SELECT run_id || status || coalesce(output::text,'') || last_seq AS t FROM runs
      UNION ALL SELECT run_id || ':' || seq || type || data::text FROM run_events
      UNION ALL SELECT run_id || step_id || attempt || status FROM steps
      UNION ALL SELECT call_id || status FROM tool_calls) x`);
}

test('7c: kill -9 the projector mid-stream; restart; read models equal a fresh rebuild', async () => {
  const def = { name: 'calc', steps: [
    { id: 'a', kind: 'transform', value: { v: '{{input.n}}' } },
    { id: 'b', kind: 'transform', value: { w: '{{steps.a.output.v}}' } },
  ] };
  await pushAgent(def);
  const ids = [];
  for (let i = 0; i < 40; i++) ids.push(await startRun('calc', { n: i }));
  await procs.projector.kill('SIGKILL');
  for (let i = 0; i < 40; i++) ids.push(await startRun('calc', { n: 100 + i }));
  for (const id of ids) await finish(id);
  await startProjector();
  const { pg } = stack;
  await waitFor('projector catch-up', () => Number(pg.psql(`SELECT count(*) FROM runs WHERE agent='calc' AND status='completed'`)) === ids.length, 30000);
  const live = tableChecksum(pg);
  const r = runctl(['projector', 'rebuild'], env, { timeout: 120000 });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.equal(tableChecksum(pg), live, 'rebuilt read models identical to the live ones');
});

test('7d: Postgres down: runs still complete and read from the log, lists 503; back up: lists catch up', async () => {
  const { pg } = stack;
  await pg.stop('fast');
  const def = { name: 'quick', steps: [{ id: 'only', kind: 'transform', value: { ok: true } }] };
  // Agents live in KV: pushing works without Postgres.
  await pushAgent(def);
  const runId = await startRun('quick', {});
  const events = await finish(runId);
  assert.equal(events[events.length - 1].type, 'run.completed');
  // One run is answered from the log (its view), Postgres or not.
  const read = await api('GET', `/v1/runs/${runId}`);
  assert.equal(read.status, 200, read.text);
  assert.equal(read.json.status, 'completed');
  assert.deepEqual(read.json.output, { ok: true });
  // Lists are the read model: unavailable.
  const list = await api('GET', '/v1/runs?agent=quick');
  assert.equal(list.status, 503, list.text);
  assert.ok(list.headers.get('retry-after'));
  await pg.start();
  await waitFor('lists to catch up', async () =>
    (await api('GET', '/v1/runs?agent=quick')).json?.runs?.some((r) => r.run_id === runId && r.status === 'completed'), 30000);
});

test('8: cancelled, failed after retries, timed out, finished by a signal', async () => {
  await pushAgent({ name: 'waiter', steps: [{ id: 'nap', kind: 'sleep', duration_ms: 60000 }] });
  await pushAgent({ name: 'flaky', steps: [{ id: 'boom', kind: 'tool', tool: 'fail', capability: true, timeout_s: 10,
    retry: { max_attempts: 3, initial_backoff_ms: 50, max_backoff_ms: 200, multiplier: 2 } }] });
  await pushAgent({ name: 'slow', timeout_s: 1, steps: [{ id: 'nap', kind: 'sleep', duration_ms: 60000 }] });
  await pushAgent({ name: 'approval', steps: [
    { id: 'ask', kind: 'signal', signal: 'approve', timeout_s: 30 },
    { id: 'done', kind: 'transform', value: { approved_by: '{{steps.ask.output.by}}' } },
  ] });
  const dev = device(procs['router-b'].url, { deviceId: 'dev-1', token: token1, tools: ['fail'],
    handlers: { fail: () => { throw Object.assign(new Error('always fails'), { code: 'boom', retryable: true }); } } });
  await dev.welcomed;

  const cancelled = await startRun('waiter', {});
  const wc = watch(apiUrl, apiKey, cancelled);
  await wc.until((e) => e.type === 'timer.scheduled');
  assert.equal((await api('POST', `/v1/runs/${cancelled}/cancel`, {})).status, 202);
  const ce = await wc.done;
  assert.equal(ce[ce.length - 1].type, 'run.cancelled');
  assert.ok(ce.some((e) => e.type === 'run.cancel_requested'));
  assert.equal((await api('POST', `/v1/runs/${cancelled}/cancel`, {})).status, 409);

  const failed = await startRun('flaky', {});
  const fe = await finish(failed);
  assert.equal(fe[fe.length - 1].type, 'run.failed');
  assert.equal(fe.filter((e) => e.type === 'step.failed').length, 3);
  assert.equal(fe.filter((e) => e.type === 'step.retry_scheduled').length, 2);
  let fr;
  await waitFor('failed run readable', async () => (fr = await api('GET', `/v1/runs/${failed}`)).json?.status === 'failed');
  assert.equal(fr.json.error?.code, 'boom', fr.text);

  const slow = await startRun('slow', {});
  const se = await finish(slow);
  assert.equal(se[se.length - 1].type, 'run.timed_out');

  const approval = await startRun('approval', {});
  const wa = watch(apiUrl, apiKey, approval);
  await wa.until((e) => e.type === 'step.started' && e.data.step_id === 'ask');
  assert.equal((await api('POST', `/v1/runs/${approval}/signals/approve`, { by: 'ops' })).status, 202);
  const ae = await wa.done;
  assert.equal(ae[ae.length - 1].type, 'run.completed');
  assert.deepEqual(ae[ae.length - 1].data.output, { approved_by: 'ops' });
  await dev.close();
});

test('9: runctl replay --check passes on every run above', async () => {
  assert.ok(runs.length >= 10);
  for (const id of runs) {
    const r = runctl(['replay', id, '--check'], env, { timeout: 30000 });
    assert.equal(r.code, 0, `replay --check ${id}: ${r.stdout}\n${r.stderr}`);
  }
});
