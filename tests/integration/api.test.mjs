// api.test.mjs - rs-api from outside: real nats-server, Postgres and
// orchestrator, real clients (fetch, EventSource, nats). Agents named
// `auto-*` finish at once (one transform step); `manual-*` runs wait at two
// signal steps (`go`), so a test moves them on by signalling through the
// API. What the API serves is compared with the run's log, followed live
// on RUNS (tests/lib/clients.mjs followRuns). No sleeps as
// synchronisation: every wait awaits an event/response.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { connect, StringCodec } from 'nats';
import { startStack, startNats, startService, runctl, stopAll, freePort, logTail, waitFor } from '../lib/stack.mjs';
import { apiClient, followRuns, parseSse, readSse } from '../lib/clients.mjs';

const require = createRequire(import.meta.url);
const EventSource = require('eventsource');

let stack, api, apiEnv, base, nc, js, orch, orchEnv;
let keyA, keyB;
const MAX_BODY = 65536;
const sc = StringCodec();
const auth = (k) => ({ Authorization: `Bearer ${k}` });

async function call(method, path, { key = keyA, body, headers = {} } = {}) {
  const h = { ...(key ? auth(key) : {}), ...headers };
  let b = body;
  if (body !== undefined && typeof body !== 'string') b = JSON.stringify(body);
  if (b !== undefined && !h['Content-Type']) h['Content-Type'] = 'application/json';
  const res = await fetch(base + path, { method, headers: h, body: b });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

function assertProblem(r, status, detailRe) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
  assert.equal(r.json.status, status);
  assert.ok(r.json.title && r.json.type && r.json.detail, r.text);
  if (detailRe) assert.match(r.json.detail, detailRe);
}

// ---- the run log, followed live ----
const logs = new Map();        // run_id -> [CloudEvent], in runseq order
let logWaiters = [];           // () => true once satisfied
const TERMINAL = new Set(['run.completed', 'run.failed', 'run.cancelled', 'run.timed_out']);
const typeOf = (ce) => ce.type.replace(/^runstream\./, '');

function onRunEvent(m) {
  const ce = JSON.parse(sc.decode(m.data));
  if (!logs.has(ce.subject)) logs.set(ce.subject, []);
  logs.get(ce.subject).push(ce);
  logWaiters = logWaiters.filter((w) => !w());
}

// Resolves with the run's events once pred(events) holds.
function untilLog(runId, pred, what, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const evs = logs.get(runId) || [];
      if (!pred(evs)) return false;
      clearTimeout(t);
      resolve(evs);
      return true;
    };
    const t = setTimeout(() => reject(new Error(`run ${runId}: timed out waiting for ${what}; ` +
      `log has ${(logs.get(runId) || []).map(typeOf).join(',')}\n${logTail(orch)}`)), timeoutMs);
    if (!check()) logWaiters.push(check);
  });
}
const count = (evs, type) => evs.filter((e) => typeOf(e) === type).length;
const ids = (n, from = 1) => Array.from({ length: n - from + 1 }, (_, i) => from + i);
// The run's start decision is on the log (a manual run waits at step s1).
const started = (runId) => untilLog(runId, (evs) => count(evs, 'step.started') >= 1, 'its start');
const finished = (runId) => untilLog(runId, (evs) => evs.some((e) => TERMINAL.has(typeOf(e))), 'its end');

async function signal(runId, payload) {
  const r = await call('POST', `/v1/runs/${runId}/signals/go`, { body: payload });
  assert.equal(r.status, 202, r.text);
}
// A manual run: from waiting at s1 to waiting at s2.
async function advance(runId, payload = { step: 1 }) {
  await signal(runId, payload);
  return untilLog(runId, (evs) => count(evs, 'step.started') >= 2, 's2 to start');
}
// A manual run waiting at s2: to its end; its output is payload.
async function complete(runId, payload = { step: 2 }) {
  await signal(runId, payload);
  return finished(runId);
}

async function startOrchestrator() {
  const port = Number(orchEnv.RS_ORCHESTRATOR_OPS_PORT);
  orch = await startService('orchestrator', orchEnv, port);
  return orch;
}

// SSE over fetch (clients.mjs readSse), as tenant acme unless key says.
const sse = (path, { key = keyA, headers = {}, origin = base, ...opts } = {}) =>
  readSse(origin + path, { headers: { ...auth(key), ...headers }, ...opts });

const AGENT = (name, extra = {}) => ({
  name, steps: [{ id: 's1', kind: 'transform', value: { x: 1 } }], ...extra,
});
const AUTO = (name) => AGENT(name, { output: '{{steps.s1.output}}' });
const MANUAL = (name) => ({
  name, output: '{{steps.s2.output}}',
  steps: [{ id: 's1', kind: 'signal', signal: 'go' }, { id: 's2', kind: 'signal', signal: 'go' }],
});

async function startApi(extraEnv = {}) {
  const port = apiEnv.RS_API_PORT;
  const p = await startService('api', { ...apiEnv, ...extraEnv }, port);
  return p;
}

before(async () => {
  stack = await startStack({ pg: true });
  let r = runctl(['keys', 'create', '--tenant', 'acme'], stack.env);
  assert.equal(r.code, 0, r.stderr);
  keyA = r.stdout.trim().split('\n').pop().trim();
  r = runctl(['keys', 'create', '--tenant', 'globex'], stack.env);
  assert.equal(r.code, 0, r.stderr);
  keyB = r.stdout.trim().split('\n').pop().trim();
  const port = await freePort();
  apiEnv = {
    ...stack.env, RS_API_PORT: String(port), RS_API_MAX_BODY: String(MAX_BODY),
    RS_API_SSE_HEARTBEAT_S: '1', RS_API_RYW_MS: '300', RS_LOG_LEVEL: 'warn',
  };
  base = `http://127.0.0.1:${port}`;
  api = await startApi();
  nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  js = nc.jetstream();
  await followRuns(js, 'runs.>', onRunEvent);
  orchEnv = { ...stack.env, RS_ORCHESTRATOR_OPS_PORT: String(await freePort()), RS_LOG_LEVEL: 'warn' };
  await startOrchestrator();
  for (const def of [AUTO('auto-a'), MANUAL('manual-a')]) {
    const res = await call('POST', '/v1/agents', { body: def });
    assert.ok(res.status === 201 || res.status === 200, res.text);
  }
});

after(async () => {
  if (nc) await nc.close();
  await stopAll();
});

async function createRun(agent = 'manual-a', opts = {}) {
  const r = await call('POST', '/v1/runs', { body: { agent, input: { n: 1 } }, ...opts });
  assert.equal(r.status, 202, r.text);
  return r.json.run_id;
}

test('agents: 201 then 200 created:false, reads, 422 with the field path', async () => {
  const a = await call('POST', '/v1/agents', { body: AGENT('greeter') });
  assert.equal(a.status, 201, a.text);
  assert.equal(a.json.created, true);
  assert.match(a.json.version, /^[0-9a-f]{16}$/);
  // Same definition, different key order/whitespace: same version, not created.
  const b = await call('POST', '/v1/agents', { body: `{ "steps": [{"kind":"transform","id":"s1","value":{"x":1}}], "name":"greeter" }` });
  assert.equal(b.status, 200, b.text);
  assert.deepEqual(b.json, { name: 'greeter', version: a.json.version, created: false });
  const list = await call('GET', '/v1/agents');
  assert.equal(list.status, 200);
  assert.ok(list.json.agents.includes('greeter'));
  const one = await call('GET', '/v1/agents/greeter');
  assert.equal(one.json.latest, a.json.version);
  assert.deepEqual(one.json.versions, [a.json.version]);
  const v = await call('GET', `/v1/agents/greeter/versions/${a.json.version}`);
  assert.equal(v.status, 200);
  assert.equal(v.json.definition.name, 'greeter');
  assertProblem(await call('GET', '/v1/agents/greeter/versions/0000000000000000'), 404);
  assertProblem(await call('GET', '/v1/agents/nobody'), 404);
  // Invalid: the detail names the field.
  const bad = await call('POST', '/v1/agents', { body: { name: 'bad', steps: [{ id: 's1', kind: 'nope' }] } });
  assertProblem(bad, 422, /steps\[0\]\.kind/);
  // Another tenant does not see it.
  assertProblem(await call('GET', '/v1/agents/greeter', { key: keyB }), 404);
});

test("a client's bytes never turn a refusal into a 500 (found by tests/fuzz)", async () => {
  // Malformed JSON (valid UTF-8) where jansson's message quotes half a
  // character ("invalid escape near '"\<0xc3>'"): the problem detail must
  // still be JSON, the status still 400 (was a bare 500).
  assertProblem(await call('POST', '/v1/runs', { body: '{"agent":"\\\u00e9"}' }), 400,
    /invalid escape/);
  // Idempotency-Key: a byte run.start cannot carry, or longer than the
  // buffer (which used to read as "no key"): 400, and no run starts.
  assertProblem(await call('POST', '/v1/runs', { body: { agent: 'auto-a' },
    headers: { 'Idempotency-Key': 'key-\u00e9' } }), 400, /^Idempotency-Key: /);
  assertProblem(await call('POST', '/v1/runs', { body: { agent: 'auto-a' },
    headers: { 'Idempotency-Key': 'k'.repeat(300) } }), 400, /^Idempotency-Key: /);
  const ok = await call('POST', '/v1/runs', { body: { agent: 'auto-a' },
    headers: { 'Idempotency-Key': 'k'.repeat(255) } });
  assert.equal(ok.status, 202, ok.text);
  // ?after= at the top of its range: no signed overflow in after+limit
  // (UBSan aborted the API here), just an empty page.
  const top = await call('GET', `/v1/runs/${ok.json.run_id}/events?after=9223372036854775807`);
  assert.equal(top.status, 200, top.text);
  assert.deepEqual(top.json.events, []);
  // A list cursor whose time part is not digits is refused by the API,
  // not handed to Postgres as a bigint.
  const badCursor = Buffer.from(`abc.${ok.json.run_id}`).toString('base64url');
  assertProblem(await call('GET', `/v1/runs?after=${badCursor}`), 400, /^after: /);
  // A path that is not UTF-8 once decoded: a 404 problem, not a 500.
  assertProblem(await call('GET', '/v1/%ff%fe'), 404);
});

test('error paths: 400 position, 401, 404, 405, 409, 413, 422', async () => {
  // 401 without / with a wrong key, on every kind of /v1 route
  assertProblem(await call('GET', '/v1/runs', { key: null }), 401);
  assertProblem(await call('POST', '/v1/runs', { key: 'rk_nope', body: { agent: 'auto-a' } }), 401, /unknown API key/);
  const noauth = await fetch(`${base}/v1/runs/00000000-0000-7000-8000-000000000000/stream`);
  assert.equal(noauth.status, 401);
  // 400 naming the position
  assertProblem(await call('POST', '/v1/runs', { body: '{"agent": "auto-a",' }), 400, /position \d+/);
  assertProblem(await call('POST', '/v1/agents', { body: '{"name": x}' }), 400, /line 1, column \d+/);
  // 422: unknown agent / version / bad input
  assertProblem(await call('POST', '/v1/runs', { body: { agent: 'nobody' } }), 422, /^agent: /);
  assertProblem(await call('POST', '/v1/runs', { body: { agent: 'auto-a', version: '0123456789abcdef' } }), 422, /^version: /);
  assertProblem(await call('POST', '/v1/runs', { body: { agent: 'auto-a', input: [1] } }), 422, /^input: /);
  assertProblem(await call('POST', '/v1/runs', { body: { agent: 'auto-a', extra: 1 } }), 422, /^extra: unknown field/);
  // 413 over the cap (and the connection still answers properly)
  const big = JSON.stringify({ agent: 'auto-a', input: { blob: 'x'.repeat(MAX_BODY) } });
  assertProblem(await call('POST', '/v1/runs', { body: big }), 413, /larger than 65536/);
  // 404: unknown path, malformed and unknown run ids, on every run route
  assertProblem(await call('GET', '/v1/nothing'), 404);
  const unknown = '01a20000-0000-7000-8000-000000000000';
  for (const [m, p] of [['GET', `/v1/runs/${unknown}`], ['GET', `/v1/runs/${unknown}/events`],
    ['GET', `/v1/runs/${unknown}/stream`], ['POST', `/v1/runs/${unknown}/cancel`],
    ['POST', `/v1/runs/${unknown}/signals/go`], ['GET', '/v1/runs/not-a-uuid']]) {
    assertProblem(await call(m, p, m === 'POST' ? { body: {} } : {}), 404);
  }
  // 405 with Allow
  const r405 = await call('DELETE', '/v1/runs');
  assertProblem(r405, 405);
  assert.equal(r405.headers.get('allow'), 'GET, POST');
  assertProblem(await call('POST', `/v1/runs/${unknown}/stream`, { body: {} }), 405);
  // depth cap
  const deep = '{"agent":"auto-a","input":' + '{"a":'.repeat(70) + '1' + '}'.repeat(71);
  assertProblem(await call('POST', '/v1/runs', { body: deep }), 400, /deeper than 64/);
});

test('create -> watch (EventSource) -> completion; reconnect after the end gets 204', async () => {
  const runId = await createRun('manual-a');
  const history = (await started(runId)).length;
  const es = new EventSource(`${base}/v1/runs/${runId}/stream`, { headers: auth(keyA) });
  const got = [];
  const done = new Promise((resolve, reject) => {
    for (const t of ['run.created', 'run.started', 'step.started', 'step.completed',
      'signal.received', 'run.completed']) {
      es.addEventListener(t, (e) => {
        got.push({ id: Number(e.lastEventId), type: e.type, data: JSON.parse(e.data) });
        if (got.length === history) {
          // History delivered: now the run continues live.
          (async () => {
            await advance(runId);
            await complete(runId, { y: 2 });
          })().catch(reject);
        }
      });
    }
    // After the terminal event the server closes; EventSource reconnects
    // with Last-Event-ID 5 and must get 204, which stops it for good.
    es.onerror = (e) => { if (e.status === 204) resolve(e.status); else if (e.status) reject(new Error(`status ${e.status}`)); };
  });
  assert.equal(await done, 204);
  assert.equal(es.readyState, EventSource.CLOSED);
  es.close();
  // Every event of the log, in order, each the log's CloudEvent.
  const log = logs.get(runId);
  const n = log.length;
  assert.ok(n > history, 'events arrived live after the history');
  assert.deepEqual(got.map((e) => e.id), ids(n));
  assert.deepEqual(got.map((e) => e.type), log.map(typeOf));
  assert.deepEqual(got.map((e) => e.data), log);
  assert.equal(got[n - 1].data.type, 'runstream.run.completed');
  assert.equal(got[n - 1].data.id, `${runId}-${n}`);
  // Read-your-writes: right after the terminal event the run reads as completed.
  const r = await call('GET', `/v1/runs/${runId}`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'completed');
  assert.equal(r.json.last_seq, n);
  assert.deepEqual(r.json.output, { y: 2 });
  // A new watcher of the finished run gets the whole history, then the end.
  const again = await sse(`/v1/runs/${runId}/stream`);
  assert.equal(again.status, 200);
  assert.equal(again.headers.get('content-type'), 'text/event-stream');
  assert.deepEqual(again.events.map((e) => e.id), ids(n));
  assert.ok(again.closedByServer);
  // Exact wire format of one event.
  assert.match(again.raw, new RegExp(`^id: 1\nevent: run.created\ndata: \\{[^\n]*"id":"${runId}-1"[^\n]*\\}\n\n`));
  // 204 for Last-Event-ID = last, via header and via ?after=
  assert.equal((await sse(`/v1/runs/${runId}/stream`, { headers: { 'Last-Event-ID': String(n) } })).status, 204);
  assert.equal((await sse(`/v1/runs/${runId}/stream?after=${n}`)).status, 204);
  // Events endpoint (from the read model when projected, log otherwise)
  const evs = await call('GET', `/v1/runs/${runId}/events?after=0&limit=100`);
  assert.ok(evs.status === 200 || evs.status === 503, evs.text);
});

test('reconnect with Last-Event-ID mid-run gets exactly the missing events; two watchers agree', async () => {
  const runId = await createRun('manual-a');
  assert.ok((await started(runId)).length >= 3);
  // Watcher 1 reads up to event 3 and disconnects.
  const first = await sse(`/v1/runs/${runId}/stream`, { onEvent: (ev) => ev.id === 3 });
  assert.deepEqual(first.events.map((e) => e.id), [1, 2, 3]);
  // Meanwhile the run moves on.
  const mid = (await advance(runId)).length;
  assert.ok(mid > 3);
  // Resume from 3 (history 4..mid, then live), with a second independent watcher.
  let opened = 0;
  let releaseLive;
  const bothOpen = new Promise((r) => { releaseLive = r; });
  const onOpen = () => { if (++opened === 2) releaseLive(); };
  const resumed = sse(`/v1/runs/${runId}/stream`, { headers: { 'Last-Event-ID': '3' }, onOpen });
  const other = sse(`/v1/runs/${runId}/stream`, { onOpen });
  await bothOpen;
  const n = (await complete(runId, { ok: true })).length;
  assert.ok(n > mid);
  const [a, b] = await Promise.all([resumed, other]);
  assert.deepEqual(a.events.map((e) => e.id), ids(n, 4));
  assert.ok(a.closedByServer && b.closedByServer);
  assert.deepEqual(b.events.map((e) => e.id), ids(n));
  assert.deepEqual(a.events, b.events.slice(3));
  assert.deepEqual(b.events.map((e) => e.data), logs.get(runId));
});

test('a watcher of a run with no events yet waits for them; heartbeats while idle', async () => {
  // The orchestrator stopped: the run exists (registry) but has no event yet.
  assert.equal((await orch.kill('SIGTERM')).code, 0, logTail(orch));
  const runId = await createRun('manual-a');
  let opened;
  const isOpen = new Promise((r) => { opened = r; });
  const stream = sse(`/v1/runs/${runId}/stream`, { onOpen: () => opened() });
  await isOpen;                      // 200 + headers: registered, nothing to replay
  assert.equal(logs.get(runId), undefined);
  await startOrchestrator();         // takes the run.start still in CMDS
  const history = (await started(runId)).length;
  // An idle stream gets ": hb" comments (RS_API_SSE_HEARTBEAT_S=1): awaited, not slept.
  const hb = await sse(`/v1/runs/${runId}/stream?after=${history}`, { onEvent: (ev, all, res) => res.comments > 0 });
  assert.ok(hb.comments > 0);
  assert.equal(hb.events.length, 0);
  await advance(runId);
  const n = (await complete(runId)).length;
  const res = await stream;
  assert.deepEqual(res.events.map((e) => e.id), ids(n));
  assert.ok(res.closedByServer);
});

test('Prefer: wait=N -> 200 with the finished run, or 202 on timeout; GET ?wait=N', async () => {
  const r = await call('POST', '/v1/runs', { body: { agent: 'auto-a', input: {} }, headers: { Prefer: 'wait=10' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'completed');
  assert.deepEqual(r.json.output, { x: 1 });
  const t = await call('POST', '/v1/runs', { body: { agent: 'manual-a', input: {} }, headers: { Prefer: 'wait=1' } });
  assert.equal(t.status, 202, t.text);
  const runId = t.json.run_id;
  await started(runId);
  // GET ?wait: parked, answered by the terminal event we append once it is parked.
  const pending = call('GET', `/v1/runs/${runId}?wait=10`);
  const cancel = await call('POST', `/v1/runs/${runId}/cancel`, { body: { reason: 'test' } });
  assert.equal(cancel.status, 202, cancel.text);
  const g = await pending;
  assert.equal(g.status, 200, g.text);
  assert.equal(g.json.status, 'cancelled');
  // finished run: cancel and signal are 409
  assertProblem(await call('POST', `/v1/runs/${runId}/cancel`), 409, /already finished/);
  assertProblem(await call('POST', `/v1/runs/${runId}/signals/go`, { body: { a: 1 } }), 409);
  // GET ?wait on a finished run answers at once
  const done = await call('GET', `/v1/runs/${runId}?wait=5`);
  assert.equal(done.status, 200);
  // GET ?wait on a run in flight that does not finish: 202 after N
  const open = await createRun('manual-a');
  await started(open);
  const slow = await call('GET', `/v1/runs/${open}?wait=1`);
  assert.equal(slow.status, 202, slow.text);
  assert.equal(slow.json.run_id, open);
  // signals reach the orchestrator, which records them on the run
  const s = await call('POST', `/v1/runs/${open}/signals/go`, { body: { ok: true } });
  assert.equal(s.status, 202, s.text);
  const evs = await untilLog(open, (e) => count(e, 'signal.received') === 1, 'signal.received');
  const got = evs.find((e) => typeOf(e) === 'signal.received').data;
  assert.equal(got.name, 'go');
  assert.deepEqual(got.payload, { ok: true });
  assert.equal(got.step_id, 's1');
});

test('cross-tenant access is 404 everywhere', async () => {
  const runId = await createRun('auto-a');
  await finished(runId);
  for (const [m, p] of [['GET', `/v1/runs/${runId}`], ['GET', `/v1/runs/${runId}/events`],
    ['GET', `/v1/runs/${runId}/stream`], ['POST', `/v1/runs/${runId}/cancel`],
    ['POST', `/v1/runs/${runId}/signals/go`]]) {
    assertProblem(await call(m, p, { key: keyB, ...(m === 'POST' ? { body: {} } : {}) }), 404);
  }
  assertProblem(await call('POST', '/v1/runs', { key: keyB, body: { agent: 'auto-a' } }), 422, /no agent named/);
});

test('idempotency: same key+body -> same run across an API restart; different body -> 409', async () => {
  const body = { agent: 'auto-a', input: { order: 42 } };
  const k = { 'Idempotency-Key': `order-42-${Date.now()}` };
  const a = await call('POST', '/v1/runs', { body, headers: k });
  assert.equal(a.status, 202, a.text);
  const b = await call('POST', '/v1/runs', { body: { input: { order: 42 }, agent: 'auto-a' }, headers: k });
  assert.equal(b.json.run_id, a.json.run_id);
  // Graceful restart: SIGTERM while a stream is open and a request is
  // parked: the stream ends cleanly, the waiter gets its 202, exit 0.
  const open = await createRun('manual-a');
  const history = (await started(open)).length;
  let streamOpen;
  const opened = new Promise((r) => { streamOpen = r; });
  const stream = sse(`/v1/runs/${open}/stream`, { onOpen: () => streamOpen() });
  await opened;
  const parked = call('GET', `/v1/runs/${open}?wait=30`);
  await waitFor('the waiter to be parked', async () =>
    /^rs_api_waiters 1$/m.test(await (await fetch(`${base}/metrics`)).text()));
  const exit = await api.kill('SIGTERM');
  assert.equal(exit.code, 0, logTail(api));
  const [st, pw] = await Promise.all([stream, parked]);
  assert.ok(st.closedByServer);
  assert.deepEqual(st.events.map((e) => e.id), ids(history));
  assert.equal(pw.status, 202, pw.text);
  assert.equal(pw.json.run_id, open);
  api = await startApi();
  const c = await call('POST', '/v1/runs', { body, headers: k });
  assert.equal(c.status, 202, c.text);
  assert.equal(c.json.run_id, a.json.run_id);
  const d = await call('POST', '/v1/runs', { body: { agent: 'auto-a', input: { order: 43 } }, headers: k });
  assertProblem(d, 409, /different request body/);
  // The run was started once: its history has exactly one run.created.
  const h = await sse(`/v1/runs/${a.json.run_id}/stream`);
  assert.equal(h.events.filter((e) => e.event === 'run.created').length, 1);
});

test('Postgres down: lists 503 with Retry-After; creation, SSE, one run and waits still work', async () => {
  await stack.pg.stop();
  try {
    const list = await call('GET', '/v1/runs');
    assertProblem(list, 503);
    assert.ok(Number(list.headers.get('retry-after')) > 0);
    const created = await call('POST', '/v1/runs', { body: { agent: 'auto-a', input: {} } });
    assert.equal(created.status, 202, created.text);
    const n = (await finished(created.json.run_id)).length;
    // One run is read from the log (its view), never from Postgres.
    const one = await call('GET', `/v1/runs/${created.json.run_id}`);
    assert.equal(one.status, 200, one.text);
    assert.equal(one.json.status, 'completed');
    assert.equal(one.json.last_seq, n);
    const s = await sse(`/v1/runs/${created.json.run_id}/stream`);
    assert.deepEqual(s.events.map((e) => e.id), ids(n));
    // Waiting still answers (from the log) while the read models are down.
    const w = await call('POST', '/v1/runs', { body: { agent: 'auto-a', input: {} }, headers: { Prefer: 'wait=10' } });
    assert.equal(w.status, 200, w.text);
    assert.equal(w.json.status, 'completed');
  } finally {
    await stack.pg.start();
  }
  const back = await call('GET', '/v1/runs?limit=5');
  assert.equal(back.status, 200, back.text);
  assert.ok(Array.isArray(back.json.runs));
});

test('with the real orchestrator and projector: wait=N, steps from the log, lists from Postgres, events = stream', async () => {
  // A separate world with a projector, so its lists hold only this test's runs.
  const world = await startStack({ pg: true });
  const r = runctl(['keys', 'create', '--tenant', 'acme'], world.env);
  assert.equal(r.code, 0, r.stderr);
  const key = r.stdout.trim().split('\n').pop().trim();
  const oport = await freePort();
  await startService('orchestrator', { ...world.env, RS_ORCHESTRATOR_OPS_PORT: String(oport), RS_INSTANCE_ID: 'orch-api' }, oport);
  const pport = await freePort();
  await startService('projector', { ...world.env, RS_PROJECTOR_OPS_PORT: String(pport) }, pport);
  const aport = await freePort();
  await startService('api', { ...world.env, RS_API_PORT: String(aport) }, aport);
  const u = `http://127.0.0.1:${aport}`;
  const h = { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };
  const def = { name: 'two', steps: [
    { id: 'a', kind: 'transform', value: { doubled: 2 }, next: 'b' },
    { id: 'b', kind: 'transform', value: { done: true } }] };
  const pa = await fetch(`${u}/v1/agents`, { method: 'POST', headers: h, body: JSON.stringify(def) });
  assert.equal(pa.status, 201, await pa.text());
  const res = await fetch(`${u}/v1/runs`, { method: 'POST', headers: { ...h, Prefer: 'wait=20' }, body: JSON.stringify({ agent: 'two', input: { n: 1 } }) });
  const run = await res.json();
  assert.equal(res.status, 200, JSON.stringify(run));
  assert.equal(run.status, 'completed');
  assert.equal(run.projection, undefined, 'a whole view, not the old summarised log fallback');
  assert.deepEqual(run.steps.map((s) => [s.step_id, s.status]), [['a', 'completed'], ['b', 'completed']]);
  assert.deepEqual(run.input, { n: 1 });
  // The events endpoint (Postgres) and the stream (log) carry the same CloudEvents.
  const ev = await (await fetch(`${u}/v1/runs/${run.run_id}/events?after=0&limit=100`, { headers: h })).json();
  const st = await fetch(`${u}/v1/runs/${run.run_id}/stream`, { headers: h });
  const parsed = parseSse(await st.text());
  assert.deepEqual(ev.events, parsed.events.map((e) => e.data));
  assert.equal(ev.next_after, run.last_seq);
  // List: newest first; the cursor continues without overlap; filters.
  for (let i = 0; i < 3; i++) {
    const c = await fetch(`${u}/v1/runs`, { method: 'POST', headers: { ...h, Prefer: 'wait=20' }, body: JSON.stringify({ agent: 'two', input: { i } }) });
    assert.equal(c.status, 200);
  }
  // The waits were answered from the log; the list is the read model, a
  // projector's lag behind it: await it.
  await waitFor('the projector has the 4 runs', async () =>
    (await (await fetch(`${u}/v1/runs?agent=two&status=completed&limit=100`, { headers: h })).json()).runs.length === 4);
  const p1 = await (await fetch(`${u}/v1/runs?limit=2`, { headers: h })).json();
  assert.equal(p1.runs.length, 2);
  const p2 = await (await fetch(`${u}/v1/runs?limit=2&after=${p1.next_after}`, { headers: h })).json();
  const ids = [...p1.runs, ...p2.runs].map((x) => x.run_id);
  assert.equal(new Set(ids).size, 4);
  assert.deepEqual(ids, [...ids].sort().reverse());
  const f = await (await fetch(`${u}/v1/runs?status=completed&agent=two&limit=100`, { headers: h })).json();
  assert.equal(f.runs.length, 4);
  assert.equal(f.next_after, null);
  const none = await (await fetch(`${u}/v1/runs?status=failed`, { headers: h })).json();
  assert.deepEqual(none.runs, []);
});

test('live delivery survives a nats-server restart: no gap, no duplicate, Last-Event-ID resumes', async () => {
  // A separate world, so the restart does not disturb the other tests: its
  // own nats-server, Postgres, API and orchestrator. A manual run waits at
  // its first signal step while nats-server restarts; the signals sent
  // after the restart move it to its end.
  const world = await startStack({ pg: true });
  const k = runctl(['keys', 'create', '--tenant', 'acme'], world.env);
  assert.equal(k.code, 0, k.stderr);
  const key = k.stdout.trim().split('\n').pop().trim();
  const aport = await freePort();
  const wapi = await startService('api', { ...world.env, RS_API_PORT: String(aport), RS_API_SSE_HEARTBEAT_S: '1', RS_LOG_LEVEL: 'warn' }, aport);
  const oport = await freePort();
  const worch = await startService('orchestrator', { ...world.env, RS_ORCHESTRATOR_OPS_PORT: String(oport), RS_LOG_LEVEL: 'warn' }, oport);
  const origin = `http://127.0.0.1:${aport}`;
  const wcall = apiClient(origin, key);
  assert.equal((await wcall('POST', '/v1/agents', MANUAL('manual-a'))).status, 201);
  const created = await wcall('POST', '/v1/runs', { agent: 'manual-a', input: {} });
  assert.equal(created.status, 202, created.text);
  const runId = created.json.run_id;
  const path = `/v1/runs/${runId}/stream`;
  // One stream for the whole run, never reconnected.
  const seen = [];
  let waiters = [];
  const until = (what, pred) => new Promise((resolve, reject) => {
    const check = () => { const hit = seen.find(pred); if (hit) { clearTimeout(t); resolve(hit); } return !!hit; };
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}; stream has ${seen.map((e) => e.event)}\n${logTail(worch)}`)), 30000);
    if (!check()) waiters.push(check);
  });
  const live = sse(path, {
    origin, key, onEvent: (ev) => { if (ev) { seen.push(ev); waiters = waiters.filter((w) => !w()); } return false; },
  });
  const waiting = await until('step s1 started', (e) => e.event === 'step.started' && e.data.data.step_id === 's1');
  const before = seen.length;
  assert.deepEqual(seen.map((e) => e.id), ids(before));
  // Restart nats-server (same port and store); the services reconnect.
  await world.nats.kill('SIGTERM');
  world.nats = await startNats({ port: world.nats.port, dir: world.nats.dir });
  // A second watcher resumes from before the restart (Last-Event-ID): the
  // history it missed, then live to the end, on a new connection.
  const resumed = sse(path, { origin, key, headers: { 'Last-Event-ID': String(waiting.id - 1) } });
  // Both signals through the API; a 503 (Retry-After) while the API is
  // still reconnecting is a refusal to retry, not a lost signal.
  const signal = async (step) => {
    let r;
    await waitFor(`signal ${step} accepted`, async () => {
      r = await wcall('POST', `/v1/runs/${runId}/signals/go`, { step });
      assert.ok(r.status === 202 || r.status === 503, `${r.status} ${r.text}`);
      return r.status === 202;
    }, 30000, 100);
  };
  await signal(1);
  await until('step s2 started', (e) => e.event === 'step.started' && e.data.data.step_id === 's2');
  await signal(2);
  const res = await live;
  assert.ok(res.closedByServer, logTail(wapi));
  // No gap, no duplicate: 1..n on the one connection, across the restart,
  // ending at the terminal event; and the same events as the run's log
  // (read whole by a new watcher).
  const n = res.events.length;
  assert.ok(n > before, 'events after the restart');
  assert.deepEqual(res.events.map((e) => e.id), ids(n));
  assert.equal(res.events[n - 1].event, 'run.completed');
  assert.deepEqual(res.events[n - 1].data.data.output, { step: 2 });
  const history = await sse(path, { origin, key });
  assert.deepEqual(history.events.map((e) => e.data), res.events.map((e) => e.data));
  const again = await resumed;
  assert.equal(again.status, 200, again.text);
  assert.ok(again.closedByServer);
  assert.deepEqual(again.events.map((e) => e.id), ids(n, waiting.id));
  assert.deepEqual(again.events.map((e) => e.data), res.events.slice(waiting.id - 1).map((e) => e.data));
  // And both services still stop cleanly.
  assert.equal((await worch.kill('SIGTERM')).code, 0, logTail(worch));
  assert.equal((await wapi.kill('SIGTERM')).code, 0, logTail(wapi));
});

// nats-server 2.9.10 can lose a command CMDS acknowledged (docs/architecture.md,
// "Streams"). A signal or cancel the API accepted has a copy in KV `runs`
// until the orchestrator applied it; the orchestrator's side (a copy with
// no command on CMDS is sent again) is in orchestrator.test.
test('a signal and a cancel keep a copy in KV runs until the orchestrator applied them', async () => {
  const kv = await js.views.kv('runs');
  const runId = await createRun();
  await started(runId);
  await orch.kill('SIGTERM');
  const r = await call('POST', `/v1/runs/${runId}/signals/go`, { body: { step: 1 } });
  assert.equal(r.status, 202, r.text);
  const sid = r.json.signal_id;
  const copy = await kv.get(`acme.${runId}.cmd.${sid}`);
  assert.equal(copy?.operation, 'PUT');
  assert.deepEqual(copy.json(), { type: 'signal', tenant: 'acme', run_id: runId, signal_id: sid, name: 'go', payload: { step: 1 } });
  const c = await call('POST', `/v1/runs/${runId}/cancel`, { body: { reason: 'enough' } });
  assert.equal(c.status, 202, c.text);
  assert.equal((await kv.get(`acme.${runId}.cmd.cancel`))?.json().type, 'cancel');
  await startOrchestrator();
  const evs = await finished(runId);
  assert.equal(typeOf(evs.at(-1)), 'run.cancelled');
  assert.equal(count(evs, 'signal.received'), 1);
  for (const k of [`acme.${runId}.cmd.${sid}`, `acme.${runId}.cmd.cancel`]) {
    await waitFor(`the copy ${k} deleted`, async () => (await kv.get(k))?.operation === 'DEL', 10000);
  }
  // The run's own entry is untouched.
  assert.equal((await kv.get(`acme.${runId}`))?.operation, 'PUT');
});

test('ops endpoints on the same port', async () => {
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
  assert.equal((await fetch(`${base}/readyz`)).status, 200);
  const m = await (await fetch(`${base}/metrics`)).text();
  assert.match(m, /rs_api_runs_created_total/);
});
