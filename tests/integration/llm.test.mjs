// llm.test.mjs - llm and http steps end to end: rs-orchestrator + rs-executor
// (+ rs-tool-router and a WebSocket device for model tool calls) against a
// real nats-server, a scripted OpenAI-compatible model server and a local
// webhook receiver, both written here with node:http.
//
// The model server picks a script by the request's "model" name; each
// script answers the n-th call of its conversation (streamed SSE chunks,
// tool calls, a 429, a cut stream). Agents go straight into KV `agents`,
// run.start straight into CMDS; events are observed live (an ordered
// consumer on RUNS, deliver new) and checked on RUNS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { connect, headers, StringCodec } from 'nats';
import { startStack, startService, startProcess, freePort, stopAll, logTail, waitFor, runctl, BUILD, roleEnv }
  from '../lib/stack.mjs';
import { device, followRuns } from '../lib/clients.mjs';

const sc = StringCodec();
const TENANT = 'acme';
const MODEL_KEY = 'sk-test-not-a-real-key-7f3a';
const HOOK_SECRET = 'whsec-test-91b2';
const SECRETS_KEY = crypto.randomBytes(32).toString('hex');   // RS_SECRETS_KEY of this stack
const TERMINAL = new Set(['run.completed', 'run.failed', 'run.cancelled', 'run.timed_out']);
const short = (t) => t.replace(/^runstream\./, '');

let env; let nc; let js; let jsm; let kv; let live;
const procs = {};
const runs = new Map();     // run_id -> [event]
let waiters = [];

// ---- the scripted model server --------------------------------------------

const scripts = {};          // model name -> async (call, req, res, body)
const modelCalls = [];       // { model, n, body, auth, at }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function chunk(delta, finish = null) {
  return { id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] };
}
async function streamChunks(res, chunks, delayMs = 0, { done = true, usage = true } = {}) {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  for (const c of chunks) {
    res.write(`data: ${JSON.stringify(c)}\n\n`);
    if (delayMs) await sleep(delayMs);
  }
  if (usage) res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 4, total_tokens: 15 } })}\n\n`);
  if (done) res.write('data: [DONE]\n\n');
  res.end();
}
function textChunks(parts) {
  return [chunk({ role: 'assistant', content: '' }), ...parts.map((p) => chunk({ content: p })), chunk({}, 'stop')];
}
function toolCallChunks(id, name, args) {
  const a = JSON.stringify(args);
  return [
    chunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id, type: 'function', function: { name, arguments: '' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: a.slice(0, 5) } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: a.slice(5) } }] }),
    chunk({}, 'tool_calls'),
  ];
}

const modelServer = http.createServer(async (req, res) => {
  let raw = '';
  for await (const d of req) raw += d;
  const body = JSON.parse(raw);
  const n = modelCalls.filter((c) => c.model === body.model && c.conv === conversation(body)).length + 1;
  const call = { model: body.model, conv: conversation(body), n, body, auth: req.headers.authorization, at: Date.now(), path: req.url };
  modelCalls.push(call);
  const s = scripts[body.model];
  if (!s) { res.writeHead(404).end('{"error":{"message":"no such model"}}'); return; }
  try { await s(call, req, res, body); } catch { res.destroy(); }
});
// One conversation per run: the user prompt carries the run's nonce.
function conversation(body) {
  return body.messages.find((m) => m.role === 'user')?.content;
}

// ---- the webhook receiver -------------------------------------------------

const hooks = [];            // { headers, body, at }
let hookPlan = [];           // statuses to answer, in order (then 200)
const hookServer = http.createServer(async (req, res) => {
  let raw = '';
  for await (const d of req) raw += d;
  hooks.push({ headers: req.headers, body: raw, at: Date.now(), url: req.url, method: req.method });
  const status = hookPlan.length ? hookPlan.shift() : 200;
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ received: true, status }));
});

// ---- stack ------------------------------------------------------------------

function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

async function push(def) {
  const text = canonical(def);
  const version = crypto.createHash('sha256').update(text).digest('hex').slice(0, 16);
  await kv.put(`${TENANT}.${def.name}.${version}`, text);
  await kv.put(`${TENANT}.${def.name}.latest`, JSON.stringify({ version }));
  return version;
}

async function start(agent, version, input) {
  const run = crypto.randomUUID();
  const h = headers();
  h.set('Runstream-Type', 'run.start');
  await js.publish(`cmd.${TENANT}.${run}`, sc.encode(JSON.stringify({ type: 'run.start', agent, version, input, tenant: TENANT, run_id: run })),
    { msgID: `start-${run}`, headers: h });
  return run;
}

function onEvent(ev) {
  ev.observed = Date.now();
  const list = runs.get(ev.subject) || [];
  list.push(ev);
  runs.set(ev.subject, list);
  waiters = waiters.filter((w) => {
    if (w.run !== ev.subject || !w.pred(ev)) return true;
    w.resolve(ev);
    return false;
  });
}

function logs() {
  return Object.entries(procs).map(([n, p]) => `--- ${n} ---\n${logTail(p, 20)}`).join('\n');
}

function waitEvent(run, pred, what, timeoutMs = 30000) {
  const seen = (runs.get(run) || []).find(pred);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what} of ${run}: saw ` +
      `${(runs.get(run) || []).map((e) => short(e.type)).join(', ')}\n${logs()}`)), timeoutMs);
    waiters.push({ run, pred, resolve: (ev) => { clearTimeout(t); resolve(ev); } });
  });
}
const waitType = (run, type, ms) => waitEvent(run, (e) => short(e.type) === type, type, ms);
const waitTerminal = (run, ms) => waitEvent(run, (e) => TERMINAL.has(short(e.type)), 'a terminal event', ms);

// Every stored event of a run, from RUNS.
async function history(run) {
  const subj = `runs.${TENANT}.${run}`;
  const out = [];
  let seq = 0;
  for (;;) {
    let m;
    try {
      m = await jsm.direct.getMessage('RUNS', { seq: seq + 1, next_by_subj: subj });
    } catch (e) {
      if (e.code === '404' || /not found/i.test(e.message)) break;
      throw e;
    }
    seq = m.seq;
    out.push(JSON.parse(sc.decode(m.data)));
  }
  return out;
}

function assertHistory(h, run) {
  h.forEach((ev, i) => assert.equal(ev.runseq, i + 1, `run ${run}: event ${i} has runseq ${ev.runseq}`));
  const terminals = h.filter((e) => TERMINAL.has(short(e.type)));
  assert.equal(terminals.length, 1, `run ${run}: ${terminals.length} terminal events`);
  assert.equal(terminals[0], h[h.length - 1]);
}

const types = (h) => h.map((e) => short(e.type));

async function startOrchestrator(name) {
  const port = await freePort();
  procs[name] = await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(port), RS_INSTANCE_ID: name }, port);
  return procs[name];
}

async function startExecutor() {
  const port = await freePort();
  const p = startProcess(`executor-${port}`, `${BUILD}/services/executor/rs-executor`, [], {
    ...roleEnv(env, 'executor'), RS_EXECUTOR_OPS_PORT: String(port), RS_EXECUTOR_WORKERS: '8',
    // The scripted model and webhook servers listen on loopback, which the
    // egress policy denies by default: open exactly that address.
    RS_EXECUTOR_EGRESS_ALLOW: '127.0.0.1/32',
  });
  await waitFor('rs-executor /readyz', async () => {
    if (p.proc.exitCode !== null) throw new Error(`executor exited: ${logTail(p)}`);
    return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
  }, 20000);
  p.port = port;
  procs.executor = p;
  return p;
}

let modelUrl; let hookUrl; let token;

before(async () => {
  const stack = await startStack({ pg: false });
  env = { ...stack.env, RS_SECRETS_KEY: SECRETS_KEY };
  // The keys are tenant secrets (sealed in KV secrets), not executor variables.
  for (const [name, value] of [['MODEL_KEY', MODEL_KEY], ['HOOK_SECRET', HOOK_SECRET]]) {
    const rs = runctl(['secrets', 'set', '--tenant', TENANT, name, '--value', value], env);
    assert.equal(rs.code, 0, rs.stderr);
  }
  nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  js = nc.jetstream();
  jsm = await nc.jetstreamManager();
  kv = await js.views.kv('agents');
  live = await followRuns(js, 'runs.>', (m) => onEvent(JSON.parse(sc.decode(m.data))));
  await new Promise((r) => modelServer.listen(0, '127.0.0.1', r));
  await new Promise((r) => hookServer.listen(0, '127.0.0.1', r));
  modelUrl = `http://127.0.0.1:${modelServer.address().port}/v1`;
  hookUrl = `http://127.0.0.1:${hookServer.address().port}`;
  const r = runctl(['devices', 'token', '--tenant', TENANT, '--device', 'dev-1'], env);
  assert.equal(r.code, 0, r.stderr);
  token = r.stdout.trim();
  await startOrchestrator('orch-1');
  await startExecutor();
});

after(async () => {
  modelServer.close();
  hookServer.close();
  await live?.stop();
  if (nc) await nc.close();
  await stopAll();
});

function llmAgent(name, model, extra = {}) {
  return {
    name,
    steps: [{
      id: 'ask', kind: 'llm',
      model: { base_url: modelUrl, model, api_key_secret: 'MODEL_KEY' },
      system: 'You are terse.', prompt: 'nonce {{input.nonce}}: {{input.q}}',
      retry: { max_attempts: 3, initial_backoff_ms: 100, max_backoff_ms: 500 },
      timeout_s: 20,
      ...extra,
    }],
    output: { answer: '{{steps.ask.output.text}}', turns: '{{steps.ask.output.turns}}' },
  };
}
const nonce = () => crypto.randomBytes(6).toString('hex');

test('a model turn streams text: llm.delta events before llm.message, key never recorded', async () => {
  scripts['m-text'] = async (call, req, res) => streamChunks(res, textChunks(['Hel', 'lo ', 'wor', 'ld']), 120);
  const v = await push(llmAgent('stream-text', 'm-text'));
  const run = await start('stream-text', v, { nonce: nonce(), q: 'greet' });
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.completed', JSON.stringify(end.data));
  assert.deepEqual(end.data.output, { answer: 'Hello world', turns: 1 });
  const h = await history(run);
  assertHistory(h, run);
  const t = types(h);
  const deltas = h.filter((e) => short(e.type) === 'llm.delta');
  assert.ok(deltas.length >= 2, `expected several deltas, got ${t.join(' ')}`);
  assert.ok(t.lastIndexOf('llm.delta') < t.indexOf('llm.message'), t.join(' '));
  assert.equal(deltas.map((d) => d.data.text).join(''), 'Hello world');
  deltas.forEach((d, i) => i && assert.ok(d.data.index > deltas[i - 1].data.index));
  // watchers saw the deltas live, before the message
  const live = runs.get(run).map((e) => short(e.type));
  assert.ok(live.indexOf('llm.delta') < live.indexOf('llm.message'));
  const msg = h.find((e) => short(e.type) === 'llm.message');
  assert.deepEqual(msg.data.usage, { prompt_tokens: 11, completion_tokens: 4 });
  // the request: streaming, the key only in the Authorization header
  const call = modelCalls.find((c) => c.model === 'm-text');
  assert.equal(call.path, '/v1/chat/completions');
  assert.equal(call.body.stream, true);
  assert.equal(call.auth, `Bearer ${MODEL_KEY}`);
  assert.equal(call.body.messages[0].role, 'system');
  const req = h.find((e) => short(e.type) === 'llm.requested');
  assert.equal(req.data.model.api_key_secret, 'MODEL_KEY');
  assert.ok(!JSON.stringify(h).includes(MODEL_KEY), 'the API key is in an event');
  assert.ok(!fs.readFileSync(procs.executor.log, 'utf8').includes(MODEL_KEY), 'the API key is in the log');
});

test('a model calls a device tool twice, then answers', async () => {
  const router = await freePort();
  procs.router = await startService('router', { ...env, RS_ROUTER_PORT: String(router), RS_INSTANCE_ID: 'router-1' }, router);
  let temps = 0;
  const dev = device(`ws://127.0.0.1:${router}/v1/devices/connect`, {
    deviceId: 'dev-1', token, tools: ['get_weather'],
    handlers: { get_weather: (args) => ({ city: args.city, temp: ++temps }) },
  });
  await dev.welcomed;
  // the tool's schema comes from the device's hello (KV presence)
  await waitFor('presence of dev-1', async () => {
    const p = await js.views.kv('presence');
    return (await p.get(`${TENANT}.dev-1`))?.value?.length > 0;
  });
  scripts['m-tools'] = async (call, req, res, body) => {
    if (call.n === 1) return streamChunks(res, toolCallChunks('call_a', 'get_weather', { city: 'Oslo' }));
    if (call.n === 2) return streamChunks(res, toolCallChunks('call_b', 'get_weather', { city: 'Bergen' }));
    const tools = body.messages.filter((m) => m.role === 'tool').map((m) => JSON.parse(m.content).temp);
    return streamChunks(res, textChunks([`temps ${tools.join(',')}`]));
  };
  const v = await push(llmAgent('tool-user', 'm-tools', { tools: ['get_weather'] }));
  const run = await start('tool-user', v, { nonce: nonce(), q: 'weather?' });
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.completed', JSON.stringify(end.data));
  assert.deepEqual(end.data.output, { answer: 'temps 1,2', turns: 3 });
  const h = await history(run);
  assertHistory(h, run);
  const t = types(h);
  assert.equal(t.filter((x) => x === 'tool.requested').length, 2, t.join(' '));
  assert.equal(t.filter((x) => x === 'tool.completed').length, 2, t.join(' '));
  assert.equal(t.filter((x) => x === 'llm.message').length, 3, t.join(' '));
  assert.equal(dev.calls.length, 2);
  assert.deepEqual(dev.calls.map((c) => c.args.city), ['Oslo', 'Bergen']);
  const calls = modelCalls.filter((c) => c.model === 'm-tools' && c.conv.includes(h[0].data.input.nonce));
  assert.equal(calls.length, 3);
  const fn = calls[0].body.tools[0].function;
  assert.equal(fn.name, 'get_weather');
  assert.equal(fn.description, 'get_weather tool');
  assert.deepEqual(fn.parameters, { type: 'object' });
  // turn 3 carries the whole conversation: both tool results, by call id
  const third = calls[2].body.messages;
  assert.deepEqual(third.filter((m) => m.role === 'tool').map((m) => m.tool_call_id), ['call_a', 'call_b']);
  assert.equal(third.filter((m) => m.role === 'assistant').length, 2);
  dev.close();
  await procs.router.kill('SIGTERM');
  delete procs.router;
});

test('429 then success: Retry-After is honoured', async () => {
  scripts['m-429'] = async (call, req, res) => {
    if (call.n === 1) {
      res.writeHead(429, { 'Retry-After': '1', 'Content-Type': 'application/json' });
      res.end('{"error":{"message":"slow down"}}');
      return;
    }
    return streamChunks(res, textChunks(['ok']));
  };
  const v = await push(llmAgent('limited', 'm-429'));
  const run = await start('limited', v, { nonce: nonce(), q: 'x' });
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.completed', JSON.stringify(end.data));
  const h = await history(run);
  assertHistory(h, run);
  const failed = h.find((e) => short(e.type) === 'step.failed');
  assert.equal(failed.data.error.code, 'http_429');
  assert.equal(failed.data.error.class, 'transient');
  assert.equal(failed.data.retry_after_ms, 1000);
  assert.ok(failed.data.effect_id.endsWith('-llm1'));
  const retry = h.find((e) => short(e.type) === 'step.retry_scheduled');
  assert.equal(retry.data.backoff_ms, 1000);
  const calls = modelCalls.filter((c) => c.model === 'm-429' && c.conv.includes(h[0].data.input.nonce));
  assert.equal(calls.length, 2);
  assert.ok(calls[1].at - calls[0].at >= 950, `retried after ${calls[1].at - calls[0].at} ms`);
});

test('a stream cut mid-turn retries the turn', async () => {
  scripts['m-cut'] = async (call, req, res) => {
    if (call.n === 1) {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify(chunk({ role: 'assistant', content: 'par' }))}\n\n`);
      await sleep(100);
      res.write(`data: ${JSON.stringify(chunk({ content: 'tial' }))}\n\n`);
      await sleep(100);
      res.socket.destroy();
      return;
    }
    return streamChunks(res, textChunks(['whole ', 'answer']), 20);
  };
  const v = await push(llmAgent('cut', 'm-cut'));
  const run = await start('cut', v, { nonce: nonce(), q: 'x' });
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.completed', JSON.stringify(end.data));
  assert.equal(end.data.output.answer, 'whole answer');
  const h = await history(run);
  assertHistory(h, run);
  const failed = h.find((e) => short(e.type) === 'step.failed');
  assert.equal(failed.data.error.code, 'stream_cut');
  assert.equal(failed.data.final, false);
  const reqs = h.filter((e) => short(e.type) === 'llm.requested');
  assert.equal(reqs.length, 2);
  assert.equal(reqs[1].data.turn, 1);
  assert.equal(reqs[1].data.attempt, 2);
  assert.deepEqual(reqs[1].data.messages, reqs[0].data.messages);
});

test('max_turns exceeded fails the run with a clear error', async () => {
  scripts['m-loop'] = async (call, req, res) => streamChunks(res, toolCallChunks(`c${call.n}`, 'nope', {}));
  const v = await push(llmAgent('loop', 'm-loop', { max_turns: 2, tools: ['get_weather'] }));
  const run = await start('loop', v, { nonce: nonce(), q: 'x' });
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.failed');
  assert.equal(end.data.error.code, 'max_turns_exceeded');
  assert.match(end.data.error.message, /after 2 turn\(s\) \(max_turns 2\)/);
  const h = await history(run);
  assertHistory(h, run);
  assert.equal(types(h).filter((x) => x === 'llm.message').length, 2);
});

test('an http step retries a 500, then succeeds with a verified HMAC signature and Idempotency-Key', async () => {
  hookPlan = [500];
  hooks.length = 0;
  const def = {
    name: 'hook',
    steps: [{
      id: 'notify', kind: 'http', method: 'POST', url: `${hookUrl}/in/{{input.id}}`,
      headers: { 'X-Order': '{{input.id}}' }, body: { order: '{{input.id}}', n: 2 },
      hmac: { secret: 'HOOK_SECRET' },
      retry: { max_attempts: 3, initial_backoff_ms: 200 }, timeout_s: 5,
    }],
  };
  const v = await push(def);
  const run = await start('hook', v, { id: 'o-17' });
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.completed', JSON.stringify(end.data));
  assert.equal(end.data.output.status, 200);
  assert.deepEqual(end.data.output.body, { received: true, status: 200 });
  const h = await history(run);
  assertHistory(h, run);
  const t = types(h);
  assert.deepEqual(t.filter((x) => x.startsWith('http.')), ['http.requested', 'http.completed', 'http.requested', 'http.completed']);
  assert.equal(h.find((e) => short(e.type) === 'step.failed').data.error.code, 'http_500');
  assert.equal(hooks.length, 2);
  hooks.forEach((hk, i) => {
    assert.equal(hk.url, '/in/o-17');
    assert.equal(hk.headers['x-order'], 'o-17');
    assert.equal(hk.headers['content-type'], 'application/json');
    assert.equal(hk.headers['idempotency-key'], `${run}-notify-${i + 1}`);
    assert.deepEqual(JSON.parse(hk.body), { n: 2, order: 'o-17' });
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(hk.headers['runstream-signature']);
    assert.ok(m, hk.headers['runstream-signature']);
    const want = crypto.createHmac('sha256', HOOK_SECRET).update(`${m[1]}.${hk.body}`).digest('hex');
    assert.equal(m[2], want, 'HMAC signature does not verify');
    assert.ok(Math.abs(Number(m[1]) - hk.at / 1000) < 60);
  });
  assert.ok(!JSON.stringify(h).includes(HOOK_SECRET));
});

test('kill -9 of the orchestrator mid-turn: the run completes once', async () => {
  const parts = Array.from({ length: 12 }, (_, i) => `w${i} `);
  scripts['m-slow'] = async (call, req, res) => streamChunks(res, textChunks(parts), 150);
  const v = await push(llmAgent('slow', 'm-slow'));
  const run = await start('slow', v, { nonce: nonce(), q: 'x' });
  await waitType(run, 'llm.delta');
  await procs['orch-1'].kill('SIGKILL');
  delete procs['orch-1'];
  await sleep(300);
  await startOrchestrator('orch-2');
  const end = await waitTerminal(run, 60000);
  assert.equal(short(end.type), 'run.completed', JSON.stringify(end.data));
  assert.equal(end.data.output.answer, parts.join(''));
  const h = await history(run);
  assertHistory(h, run);
  const t = types(h);
  assert.equal(t.filter((x) => x === 'llm.message').length, 1, t.join(' '));
  assert.equal(t.filter((x) => x === 'run.completed').length, 1);
  const ids = new Set(h.map((e) => e.id));
  assert.equal(ids.size, h.length);
});

test('graceful SIGTERM: the executor exits cleanly (and sanitizer-clean in the ASan build)', async () => {
  const { code, sig } = await procs.executor.kill('SIGTERM');
  const log = fs.readFileSync(procs.executor.log, 'utf8');
  delete procs.executor;
  assert.equal(code, 0, `executor exit ${code} ${sig}\n${log.slice(-3000)}`);
  assert.ok(!/AddressSanitizer|LeakSanitizer|runtime error:/.test(log), log.slice(-3000));
});
