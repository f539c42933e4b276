// view.test.mjs - single-run reads and waits answered from the log (issue 22):
// rs-api folds each run's events into its view (common/rs_view.c,
// services/api/views.c) and answers GET /v1/runs/{id}, ?wait= and
// Prefer: wait from it, never from Postgres.
//  1. Differential: many runs of an agent that branches, sleeps, waits for
//     signals (retried after a timeout: several attempts), fails and is
//     cancelled; each run's view (GET) equals what the projector wrote to
//     Postgres (runs and steps rows): status, output, error, times, steps
//     per attempt.
//  2. Postgres STOPPED: Prefer: wait and GET still answer correctly
//     (completed output; a waiting run shows what it waits on), also from a
//     freshly started API whose cache is empty (views rebuilt from the log).
// Real nats-server, Postgres, orchestrator, projector and api.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, startService, runctl, stopAll, freePort, logTail, waitFor } from '../lib/stack.mjs';
import { device, closeAllClients } from '../lib/clients.mjs';

let world, key, api, base, holder;
// Tool calls that fail once (by their args.v), then succeed: two attempts.
const failedOnce = new Set();
const h = () => ({ Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' });

async function call(method, path, { body, headers = {} } = {}) {
  const res = await fetch(`${base}${path}`, { method, headers: { ...h(), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

async function startApi() {
  const port = await freePort();
  api = await startService('api', { ...world.env, RS_API_PORT: String(port) }, port);
  base = `http://127.0.0.1:${port}`;
}

const agent = {
  name: 'mix',
  steps: [
    { id: 'route', kind: 'branch', else: 'calc', when: [
      { if: { path: 'input.kind', equals: 'sig' }, goto: 'ask' },
      { if: { path: 'input.kind', equals: 'nap' }, goto: 'nap' },
      { if: { path: 'input.kind', equals: 'long' }, goto: 'long' },
      { if: { path: 'input.kind', equals: 'fail' }, goto: 'strict' },
      { if: { path: 'input.kind', equals: 'tool' }, goto: 'call' },
      { if: { path: 'input.kind', equals: 'hold' }, goto: 'held' }] },
    { id: 'call', kind: 'tool', tool: 'echo', device: 'dev-v', args: { v: '{{input.v}}', flaky: '{{input.flaky}}' },
      retry: { max_attempts: 3, initial_backoff_ms: 50 }, next: 'shout' },
    { id: 'shout', kind: 'tool', tool: 'echo', capability: 'echo', args: { said: '{{steps.call.output.v}}' }, next: 'end' },
    { id: 'held', kind: 'tool', tool: 'hold', device: 'dev-hold', args: {}, next: 'end' },
    { id: 'calc', kind: 'transform', value: { n: '{{input.n}}', tag: 'calc' }, next: 'end' },
    { id: 'nap', kind: 'sleep', duration_ms: 200, next: 'after' },
    { id: 'after', kind: 'transform', value: { slept: true }, next: 'end' },
    { id: 'long', kind: 'sleep', duration_ms: 600000, next: 'end' },
    // The first attempt times out (1 s), the retry waits for the signal.
    { id: 'ask', kind: 'signal', signal: 'go', timeout_s: 1,
      retry: { max_attempts: 3, initial_backoff_ms: 50 }, next: 'done' },
    { id: 'done', kind: 'transform', value: { by: '{{steps.ask.output.user}}' }, next: 'end' },
    { id: 'strict', kind: 'signal', signal: 'never', timeout_s: 1, next: 'end' },
  ],
};

before(async () => {
  world = await startStack({ pg: true });
  const r = runctl(['keys', 'create', '--tenant', 'acme'], world.env);
  assert.equal(r.code, 0, r.stderr);
  key = r.stdout.trim().split('\n').pop().trim();
  const oport = await freePort();
  await startService('orchestrator', { ...world.env, RS_ORCHESTRATOR_OPS_PORT: String(oport), RS_INSTANCE_ID: 'orch-view' }, oport);
  const pport = await freePort();
  await startService('projector', { ...world.env, RS_PROJECTOR_OPS_PORT: String(pport) }, pport);
  const rport = await freePort();
  await startService('router', { ...world.env, RS_ROUTER_PORT: String(rport), RS_INSTANCE_ID: 'router-v' }, rport);
  const token = (d) => {
    const t = runctl(['devices', 'token', '--tenant', 'acme', '--device', d], world.env);
    assert.equal(t.code, 0, t.stderr);
    return t.stdout.trim();
  };
  const url = `ws://127.0.0.1:${rport}/v1/devices/connect`;
  const dev = device(url, { deviceId: 'dev-v', token: token('dev-v'), tools: ['echo'], handlers: {
    echo: (args) => {
      if (args.flaky === true && !failedOnce.has(args.v)) {
        failedOnce.add(args.v);
        throw Object.assign(new Error('flaky'), { code: 'flaky', retryable: true });
      }
      return args;
    } } });
  holder = device(url, { deviceId: 'dev-hold', token: token('dev-hold'), tools: ['hold'], autoAnswer: false });
  await dev.welcomed;
  await holder.welcomed;
  await startApi();
  const pa = await call('POST', '/v1/agents', { body: agent });
  assert.equal(pa.status, 201, pa.text);
});

after(async () => { closeAllClients(); await stopAll(); });

const wait = (input, s = 30) => call('POST', '/v1/runs', { body: { agent: 'mix', input }, headers: { Prefer: `wait=${s}` } });

// A signal run: wait (on the view itself) until attempt 2 of `ask` waits, then signal it.
async function signalRun(user) {
  const c = await call('POST', '/v1/runs', { body: { agent: 'mix', input: { kind: 'sig' } } });
  assert.equal(c.status, 202, c.text);
  const id = c.json.run_id;
  await waitFor(`run ${id} waiting in attempt 2`, async () => {
    const g = await call('GET', `/v1/runs/${id}`);
    return g.json.status === 'waiting' && g.json.waiting_on?.on === 'signal' &&
      g.json.steps.some((s) => s.step_id === 'ask' && s.attempt === 2 && s.status === 'running');
  }, 20000);
  const s = await call('POST', `/v1/runs/${id}/signals/go`, { body: { user } });
  assert.equal(s.status, 202, s.text);
  const done = await call('GET', `/v1/runs/${id}?wait=20`);
  assert.equal(done.status, 200, done.text);
  assert.equal(done.json.status, 'completed', done.text);
  assert.deepEqual(done.json.output, { by: user });
  return id;
}

const ms = (t) => (t == null ? null : Date.parse(t));

function pgRun(id) {
  const row = world.pg.psql(`SELECT json_build_object('status', status, 'agent', agent, 'version', version,
    'input', input, 'output', output, 'error', error, 'last_seq', last_seq, 'current_step', current_step,
    'cancel_reason', cancel_reason, 'idempotency_key', idempotency_key, 'timeout_s', timeout_s,
    'created_at', created_at, 'started_at', started_at, 'finished_at', finished_at, 'updated_at', updated_at,
    'steps', COALESCE((SELECT json_agg(json_build_object('step_id', s.step_id, 'attempt', s.attempt,
      'kind', s.kind, 'status', s.status, 'latest', s.latest, 'input', s.input, 'output', s.output,
      'error', s.error, 'next_step', s.next_step, 'started_at', s.started_at, 'finished_at', s.finished_at,
      'duration_ms', s.duration_ms)) FROM steps s WHERE s.run_id = r.run_id), '[]'),
    'tool_calls', COALESCE((SELECT json_agg(json_build_object('call_id', t.call_id, 'step_id', t.step_id,
      'attempt', t.attempt, 'tool', t.tool, 'device_id', t.device_id, 'capability', t.capability,
      'router', t.router, 'status', t.status, 'args', t.args, 'output', t.output, 'error', t.error,
      'requested_at', t.requested_at, 'dispatched_at', t.dispatched_at, 'finished_at', t.finished_at,
      'deadline_at', t.deadline_at, 'attempts', t.attempts)) FROM tool_calls t WHERE t.run_id = r.run_id), '[]'))
    FROM runs r WHERE r.run_id = '${id}'`);
  return row ? JSON.parse(row) : null;
}

// The fields both sides have, times as Unix ms, steps in one order.
function norm(r) {
  const steps = r.steps.map((s) => ({ step_id: s.step_id, attempt: s.attempt, kind: s.kind, status: s.status,
    latest: s.latest, input: s.input, output: s.output, error: s.error, next_step: s.next_step,
    started_at: ms(s.started_at), finished_at: ms(s.finished_at), duration_ms: s.duration_ms }));
  steps.sort((a, b) => (a.started_at - b.started_at) || a.step_id.localeCompare(b.step_id) || (a.attempt - b.attempt));
  const calls = r.tool_calls.map((c) => ({ ...c, requested_at: ms(c.requested_at), dispatched_at: ms(c.dispatched_at),
    finished_at: ms(c.finished_at), deadline_at: ms(c.deadline_at) }));
  calls.sort((a, b) => (a.requested_at - b.requested_at) || a.call_id.localeCompare(b.call_id));
  return { status: r.status, agent: r.agent, version: r.version, input: r.input, output: r.output,
    error: r.error, last_seq: r.last_seq, current_step: r.current_step, cancel_reason: r.cancel_reason,
    idempotency_key: r.idempotency_key, timeout_s: r.timeout_s, created_at: ms(r.created_at),
    started_at: ms(r.started_at), finished_at: ms(r.finished_at), updated_at: ms(r.updated_at), steps, tool_calls: calls };
}

const runs = [];

test('the view (GET, from the log) equals the projector rows (Postgres) for every run', async () => {
  for (let i = 0; i < 8; i++) {
    const r = await wait({ kind: 'calc', n: i });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'completed');
    assert.deepEqual(r.json.output, { n: i, tag: 'calc' });
    assert.equal(r.json.waiting_on, null);
    runs.push(r.json.run_id);
  }
  for (let i = 0; i < 3; i++) {
    const r = await wait({ kind: 'nap' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.output, { slept: true });
    assert.deepEqual(r.json.steps.map((s) => [s.step_id, s.kind, s.status]),
      [['route', 'branch', 'completed'], ['nap', 'sleep', 'completed'], ['after', 'transform', 'completed']]);
    runs.push(r.json.run_id);
  }
  for (let i = 0; i < 2; i++) {
    const r = await wait({ kind: 'fail' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'failed');
    assert.equal(r.json.error.code, 'timeout');
    runs.push(r.json.run_id);
  }
  for (let i = 0; i < 3; i++) runs.push(await signalRun(`u${i}`));
  for (let i = 0; i < 4; i++) {
    const r = await wait({ kind: 'tool', v: i, flaky: i % 2 === 0 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'completed', r.text);
    assert.deepEqual(r.json.output, { said: i });
    // A flaky first call: a failed call and attempt, then a second one.
    assert.deepEqual(r.json.tool_calls.map((c) => [c.step_id, c.attempt, c.status]), i % 2 === 0
      ? [['call', 1, 'failed'], ['call', 2, 'completed'], ['shout', 1, 'completed']]
      : [['call', 1, 'completed'], ['shout', 1, 'completed']]);
    assert.equal(r.json.tool_calls[0].device_id, 'dev-v');
    runs.push(r.json.run_id);
  }
  // Cancelled while it waits: the open attempt is closed as cancelled.
  const c = await call('POST', '/v1/runs', { body: { agent: 'mix', input: { kind: 'long' } } });
  const cid = c.json.run_id;
  await waitFor(`run ${cid} sleeping`, async () => (await call('GET', `/v1/runs/${cid}`)).json.waiting_on?.on === 'timer');
  const parked = call('GET', `/v1/runs/${cid}?wait=20`);
  assert.equal((await call('POST', `/v1/runs/${cid}/cancel`, { body: { reason: 'enough' } })).status, 202);
  const g = await parked;
  assert.equal(g.status, 200, g.text);
  assert.equal(g.json.status, 'cancelled');
  assert.equal(g.json.cancel_reason, 'enough');
  assert.equal(g.json.steps.find((s) => s.step_id === 'long').status, 'cancelled');
  runs.push(cid);

  // A finished run's view is held: reading it again costs no history read.
  const reads = async () => {
    const m = await (await fetch(`${base}/metrics`)).text();
    const n = (src) => Number(new RegExp(`rs_api_view_reads_total\\{source="${src}"\\} (\\d+)`).exec(m)?.[1]);
    return { cache: n('cache'), log: n('log') };
  };
  const r0 = await reads();
  for (const id of runs) assert.equal((await call('GET', `/v1/runs/${id}`)).status, 200);
  const r1 = await reads();
  assert.equal(r1.cache - r0.cache, runs.length, JSON.stringify([r0, r1]));
  assert.equal(r1.log, r0.log, JSON.stringify([r0, r1]));
  for (const id of runs) {
    const v = await call('GET', `/v1/runs/${id}`);
    assert.equal(v.status, 200, v.text);
    await waitFor(`projector at ${id} seq ${v.json.last_seq}`, () => pgRun(id)?.last_seq === v.json.last_seq, 20000);
    assert.deepEqual(norm(v.json), norm(pgRun(id)), `run ${id}`);
  }
  // The signal runs really had two attempts of `ask`, the first one failed.
  const sig = (await call('GET', `/v1/runs/${runs[13]}`)).json;
  assert.deepEqual(sig.steps.filter((s) => s.step_id === 'ask').map((s) => [s.attempt, s.status, s.latest]),
    [[1, 'failed', false], [2, 'completed', true]]);
});

test('Postgres stopped: Prefer: wait and GET answer from the log, also from a cold API', async () => {
  const before = {};
  for (const id of runs) before[id] = (await call('GET', `/v1/runs/${id}`)).json;
  await world.pg.stop();
  try {
    // The list is Postgres: unavailable.
    assert.equal((await call('GET', '/v1/runs')).status, 503);
    const r = await wait({ kind: 'calc', n: 41 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'completed');
    assert.deepEqual(r.json.output, { n: 41, tag: 'calc' });
    const again = await call('GET', `/v1/runs/${r.json.run_id}`);
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(again.json, r.json);
    // Waiting runs show what they wait on.
    const sleeper = (await call('POST', '/v1/runs', { body: { agent: 'mix', input: { kind: 'long' } } })).json.run_id;
    await waitFor('the sleeper waits on its timer', async () => (await call('GET', `/v1/runs/${sleeper}`)).json.waiting_on?.on === 'timer');
    const sl = (await call('GET', `/v1/runs/${sleeper}`)).json;
    assert.equal(sl.status, 'waiting');
    assert.equal(sl.waiting_on.purpose, 'sleep');
    assert.equal(sl.waiting_on.step_id, 'long');
    const t = await call('GET', `/v1/runs/${sleeper}?wait=1`);
    assert.equal(t.status, 202, t.text);
    const asker = (await call('POST', '/v1/runs', { body: { agent: 'mix', input: { kind: 'sig' } } })).json.run_id;
    await waitFor('the asker waits on its signal', async () => (await call('GET', `/v1/runs/${asker}`)).json.waiting_on?.on === 'signal');
    assert.equal((await call('GET', `/v1/runs/${asker}`)).json.waiting_on.signal, 'go');
    // A run waiting on a device's tool call shows the call it waits on.
    const held = (await call('POST', '/v1/runs', { body: { agent: 'mix', input: { kind: 'hold' } } })).json.run_id;
    await waitFor('the held call reaches its device', () => holder.calls.length === 1);
    const hv = (await call('GET', `/v1/runs/${held}`)).json;
    assert.equal(hv.status, 'waiting');
    assert.equal(hv.waiting_on.on, 'tool');
    assert.equal(hv.waiting_on.tool, 'hold');
    assert.equal(hv.waiting_on.call_id, holder.calls[0].call_id);
    assert.equal(hv.tool_calls[0].status, 'dispatched');
    const heldWait = call('GET', `/v1/runs/${held}?wait=20`);

    // A new API: nothing cached, every view is read from the log.
    assert.equal((await api.kill('SIGTERM')).code, 0, logTail(api));
    await startApi();
    for (const id of runs) {
      const v = await call('GET', `/v1/runs/${id}`);
      assert.equal(v.status, 200, v.text);
      assert.deepEqual(v.json, before[id], `run ${id} from a cold cache`);
    }
    // Those were read from the log (the new API had no view of them).
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const fromLog = Number(/rs_api_view_reads_total\{source="log"\} (\d+)/.exec(metrics)?.[1]);
    assert.ok(fromLog >= runs.length, `view reads from the log: ${fromLog}`);
    const sl2 = await call('GET', `/v1/runs/${sleeper}`);
    assert.equal(sl2.json.status, 'waiting');
    assert.equal(sl2.json.waiting_on.on, 'timer');
    // A waiter on a run the new API never saw start: answered on its end.
    const parked = call('GET', `/v1/runs/${asker}?wait=20`);
    await waitFor('attempt 2 of ask', async () => (await call('GET', `/v1/runs/${asker}`)).json.steps.some((s) => s.step_id === 'ask' && s.attempt === 2));
    assert.equal((await call('POST', `/v1/runs/${asker}/signals/go`, { body: { user: 'cold' } })).status, 202);
    const done = await parked;
    assert.equal(done.status, 200, done.text);
    assert.deepEqual(done.json.output, { by: 'cold' });
    // The held call (parked with the old API, which is gone: ask again) completes.
    await heldWait.catch(() => {});
    const heldAgain = call('GET', `/v1/runs/${held}?wait=20`);
    holder.answer(holder.calls[0].call_id, { released: true });
    const hd = await heldAgain;
    assert.equal(hd.status, 200, hd.text);
    assert.equal(hd.json.status, 'completed');
    assert.equal(hd.json.tool_calls[0].status, 'completed');
    assert.deepEqual(hd.json.tool_calls[0].output, { released: true });
  } finally {
    await world.pg.start();
  }
});
