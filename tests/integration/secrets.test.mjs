// secrets.test.mjs - tenant secrets end to end: the /v1/secrets API, agents
// that name secrets (never environment variables), the executor using them
// for one tenant only, and a planted value that must appear nowhere but in
// the receiving server: not in any stream (raw messages and headers), any
// KV bucket but `secrets` (where it is sealed), any service log, the SSE
// stream, or a pg_dump of the read models.
//
// Whole stack: nats-server, Postgres, orchestrator, projector, executor,
// api; one node:http server plays both the webhook receiver and the model.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { connect } from 'nats';
import { startStack, startService, runctl, stopAll, freePort, waitFor, bin } from '../lib/stack.mjs';

const SECRETS_KEY = crypto.randomBytes(32).toString('hex');
// The planted value: unique, and its base64/hex forms are checked too.
const PLANTED = `plant-${crypto.randomBytes(12).toString('hex')}`;
const forms = [PLANTED, Buffer.from(PLANTED).toString('base64'), Buffer.from(PLANTED).toString('hex')];

let stack; let env; let apiUrl; let keyA; let keyB; let nc;
const procs = {};
const wire = [];   // every NATS message seen by a `>` subscription

// ---- the receiving server: webhook + OpenAI-compatible model ----------------
const received = [];
const server = http.createServer(async (req, res) => {
  let raw = '';
  for await (const d of req) raw += d;
  received.push({ url: req.url, headers: req.headers, body: raw });
  if (req.url.endsWith('/chat/completions')) {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    const c = (delta, finish = null) => `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    res.end(c({ role: 'assistant', content: 'ok' }) + c({}, 'stop') + 'data: [DONE]\n\n');
    return;
  }
  // Never echo what came in: the test is about what Runstream records.
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end('{"received":true}');
});

async function api(method, path, { key = keyA, body, headers = {} } = {}) {
  const res = await fetch(`${apiUrl}${path}`, {
    method, headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, json, text, headers: res.headers };
}

// Read an SSE stream until a terminal event; resolves with the raw text.
async function sseUntilTerminal(runId, key = keyA) {
  const res = await fetch(`${apiUrl}/v1/runs/${runId}/stream`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  const dec = new TextDecoder();
  let text = '';
  for await (const chunk of res.body) {
    text += dec.decode(chunk, { stream: true });
    if (/event: runstream\.run\.(completed|failed|cancelled|timed_out)\n/.test(text) ||
        /event: run\.(completed|failed|cancelled|timed_out)\n/.test(text)) break;
  }
  return text;
}

before(async () => {
  stack = await startStack({ pg: true });
  env = { ...stack.env, RS_SECRETS_KEY: SECRETS_KEY };
  let r = runctl(['keys', 'create', '--tenant', 'acme'], env);
  assert.equal(r.code, 0, r.stderr);
  keyA = r.stdout.trim();
  r = runctl(['keys', 'create', '--tenant', 'globex'], env);
  assert.equal(r.code, 0, r.stderr);
  keyB = r.stdout.trim();
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const oport = await freePort();
  procs.orchestrator = await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(oport), RS_INSTANCE_ID: 'orch-s' }, oport);
  const pport = await freePort();
  procs.projector = await startService('projector', { ...env, RS_PROJECTOR_OPS_PORT: String(pport) }, pport);
  const eport = await freePort();
  // The receiving mock servers listen on loopback, which the egress policy
  // denies by default: open exactly that address.
  procs.executor = await startService('executor', { ...env, RS_EXECUTOR_OPS_PORT: String(eport), RS_EXECUTOR_EGRESS_ALLOW: '127.0.0.1/32' }, eport);
  const aport = await freePort();
  procs.api = await startService('api', { ...env, RS_API_PORT: String(aport) }, aport);
  apiUrl = `http://127.0.0.1:${aport}`;
  nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  // Everything published on NATS from here on (commands of the work queue
  // are deleted once acked: this sees them anyway).
  const sub = nc.subscribe('>');
  (async () => {
    for await (const m of sub) {
      const hdrs = m.headers ? [...m.headers.keys()].map((k) => `${k}: ${m.headers.values(k).join(',')}`).join('\n') : '';
      wire.push({ subject: m.subject, bytes: Buffer.concat([Buffer.from(m.data), Buffer.from(hdrs)]) });
    }
  })();
});

after(async () => {
  server.close();
  if (nc) await nc.close();
  await stopAll();
});

test('PUT/GET/DELETE /v1/secrets: created, replaced, listed without values, per tenant', async () => {
  let r = await api('PUT', '/v1/secrets/TOKEN', { body: { value: 'first-value' } });
  assert.equal(r.status, 201, r.text);
  r = await api('PUT', '/v1/secrets/TOKEN', { body: { value: PLANTED } });
  assert.equal(r.status, 200, r.text);
  r = await api('GET', '/v1/secrets');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.secrets.map((s) => s.name), ['TOKEN']);
  assert.match(r.json.secrets[0].updated_at, /^\d{4}-\d\d-\d\dT/);
  assert.ok(!r.text.includes(PLANTED) && !r.text.includes('first-value'));
  // another tenant sees nothing of it
  r = await api('GET', '/v1/secrets', { key: keyB });
  assert.deepEqual(r.json.secrets, []);
  r = await api('DELETE', '/v1/secrets/TOKEN', { key: keyB });
  assert.equal(r.status, 404);
  // validation
  r = await api('PUT', '/v1/secrets/a.b', { body: { value: 'x' } });
  assert.equal(r.status, 400);
  assert.match(r.headers.get('content-type'), /problem\+json/);
  r = await api('PUT', '/v1/secrets/X', { body: { value: 'a\r\nInjected: 1' } });
  assert.equal(r.status, 422);
  assert.match(r.json.detail, /CR or LF/);
  r = await api('PUT', '/v1/secrets/X', { body: { value: 'x'.repeat(8193) } });
  assert.equal(r.status, 422);
  r = await api('PUT', '/v1/secrets/X', { body: `{"value": "${PLANTED}` });   // broken JSON
  assert.equal(r.status, 400);
  assert.ok(!r.text.includes(PLANTED), 'the parse error quotes the value');
  r = await api('PUT', '/v1/secrets/X', { body: { value: 'x', extra: 1 } });
  assert.equal(r.status, 422);
  r = await api('GET', '/v1/secrets/TOKEN');
  assert.equal(r.status, 405);
  // delete: 204, then 404
  r = await api('PUT', '/v1/secrets/GONE', { body: { value: 'bye' } });
  assert.equal(r.status, 201);
  r = await api('DELETE', '/v1/secrets/GONE');
  assert.equal(r.status, 204);
  r = await api('DELETE', '/v1/secrets/GONE');
  assert.equal(r.status, 404);
  // runctl: set from stdin (one trailing newline dropped), ls, rm
  const out = execFileSync(bin('runctl'), ['secrets', 'set', '--tenant', 'acme', 'CLI_ONE'],
    { env: { ...process.env, ...env }, input: 'from-stdin\n', encoding: 'utf8' });
  assert.match(out, /created secret CLI_ONE of tenant acme/);
  let ls = runctl(['secrets', 'ls', '--tenant', 'acme', '--json'], env);
  assert.equal(ls.code, 0, ls.stderr);
  assert.deepEqual(JSON.parse(ls.stdout).map((s) => s.name), ['CLI_ONE', 'TOKEN']);
  assert.ok(!ls.stdout.includes('from-stdin'));
  let rm = runctl(['secrets', 'rm', '--tenant', 'acme', 'CLI_ONE'], env);
  assert.equal(rm.code, 0, rm.stderr);
  rm = runctl(['secrets', 'rm', '--tenant', 'acme', 'CLI_ONE'], env);
  assert.equal(rm.code, 3, 'rm of a missing secret: exit 3 (not found)');
  const nokey = runctl(['secrets', 'set', '--tenant', 'acme', 'X', '--value', 'v'], { ...env, RS_SECRETS_KEY: '' });
  assert.equal(nokey.code, 2);
  assert.match(nokey.stderr, /RS_SECRETS_KEY is not set/);
  ls = runctl(['secrets', 'ls', '--tenant', 'acme', '--json'], env);
  assert.deepEqual(JSON.parse(ls.stdout).map((s) => s.name), ['TOKEN']);
});

test('definitions naming environment variables are refused with a clear message', async () => {
  const r = await api('POST', '/v1/agents', { body: {
    name: 'exfil', steps: [{ id: 'a', kind: 'llm', prompt: 'x',
      model: { base_url: `http://127.0.0.1:${server.address().port}/v1`, model: 'm', api_key_env: 'RS_PG_URL' } }],
  } });
  assert.equal(r.status, 422, r.text);
  assert.match(r.json.detail, /steps\[0\]\.model\.api_key_env: environment variables are no longer accepted.*model\.api_key_secret/);
  const h = await api('POST', '/v1/agents', { body: {
    name: 'exfil2', steps: [{ id: 'a', kind: 'http', url: 'http://127.0.0.1:1/', hmac: { secret_env: 'RS_PG_URL' } }],
  } });
  assert.equal(h.status, 422, h.text);
  assert.match(h.json.detail, /hmac\.secret_env: environment variables are no longer accepted.*hmac\.secret/);
});

let runId;

test('a secret is used in a header, an HMAC and as the model key, and is stored nowhere', async () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const def = {
    name: 'secret-user',
    steps: [
      { id: 'hook', kind: 'http', url: `${base}/hook`, body: { n: 1 },
        headers: { Authorization: 'Bearer {{secrets.TOKEN}}', 'X-Plain': 'v-{{input.n}}' },
        hmac: { secret: 'TOKEN' }, timeout_s: 10 },
      { id: 'ask', kind: 'llm', prompt: 'say ok', timeout_s: 20,
        model: { base_url: `${base}/v1`, model: 'm', api_key_secret: 'TOKEN' } },
    ],
  };
  let r = await api('POST', '/v1/agents', { body: def });
  assert.ok(r.status === 201 || r.status === 200, r.text);
  r = await api('POST', '/v1/runs', { body: { agent: 'secret-user', input: { n: 7 } } });
  assert.equal(r.status, 202, r.text);
  runId = r.json.run_id;
  const sse = await sseUntilTerminal(runId);
  assert.match(sse, /run\.completed/, sse.slice(-2000));

  // It was used: the header, the signature and the model key carried it.
  const hook = received.find((x) => x.url === '/hook');
  assert.ok(hook, 'the webhook was not called');
  assert.equal(hook.headers.authorization, `Bearer ${PLANTED}`);
  assert.equal(hook.headers['x-plain'], 'v-7');
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(hook.headers['runstream-signature']);
  assert.ok(m, hook.headers['runstream-signature']);
  assert.equal(m[2], crypto.createHmac('sha256', PLANTED).update(`${m[1]}.${hook.body}`).digest('hex'));
  const model = received.find((x) => x.url === '/v1/chat/completions');
  assert.ok(model, 'the model was not called');
  assert.equal(model.headers.authorization, `Bearer ${PLANTED}`);

  // Wait for the projector to have the whole run before reading Postgres.
  await waitFor('run completed in Postgres', async () =>
    stack.pg.psql(`SELECT status FROM runs WHERE run_id = '${runId}'`) === 'completed', 20000);
  // The event records the reference and the secret's name, not the value.
  const ev = await api('GET', `/v1/runs/${runId}/events?limit=1000`);
  assert.equal(ev.status, 200, ev.text);
  const text = ev.text;
  assert.ok(text.includes('Bearer {{secrets.TOKEN}}'), 'the reference is not recorded');
  assert.ok(text.includes('"api_key_secret":"TOKEN"'), text.slice(0, 2000));

  const where = [];
  const check = (what, buf) => {
    const s = Buffer.isBuffer(buf) ? buf.toString('latin1') : String(buf);
    for (const f of forms) if (s.includes(f)) where.push(what);
  };
  // The checker finds what it looks for (each encoded form).
  for (const f of forms) check('self-test', `x${f}x`);
  assert.equal(where.length, forms.length);
  where.length = 0;
  check('SSE stream', sse);
  check('GET events', text);
  // every message of every stream, data and headers, as raw bytes
  const jsm = await nc.jetstreamManager();
  let sealed = 0; let scanned = 0; const streams = new Set();
  for await (const si of jsm.streams.list()) {
    const name = si.config.name;
    const info = await jsm.streams.info(name);
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      let msg;
      try { msg = await jsm.streams.getMessage(name, { seq }); } catch { continue; }
      const hdrs = msg.header ? [...msg.header.keys()].map((k) => `${k}: ${msg.header.values(k).join(',')}`).join('\n') : '';
      if (name === 'KV_secrets') {
        sealed++;
        assert.ok(!Buffer.from(msg.data).includes(Buffer.from(PLANTED)), 'a secret is stored in clear');
        continue;
      }
      scanned++;
      streams.add(name);
      check(`stream ${name} #${seq} (${msg.subject})`, Buffer.concat([Buffer.from(msg.data), Buffer.from(hdrs)]));
    }
  }
  assert.ok(sealed >= 1, 'KV secrets holds no sealed value');
  // every message that crossed NATS (KV secrets traffic is sealed)
  let cmds = 0;
  for (const w of wire) {
    if (w.subject.startsWith('cmd.')) cmds++;
    check(`NATS message on ${w.subject}`, w.bytes);
  }
  assert.ok(cmds >= 3, `only ${cmds} commands seen on the wire`);
  for (const n of ['RUNS', 'KV_agents']) assert.ok(streams.has(n), `stream ${n} was not scanned`);
  assert.ok(scanned > 20, `only ${scanned} messages scanned`);
  // every service log, nats and postgres too
  for (const [n, p] of Object.entries(procs)) check(`log of ${n}`, fs.readFileSync(p.log));
  check('nats log', fs.readFileSync(stack.nats.log));
  const pgLog = `${stack.pg.dir}/pg.log`;
  if (fs.existsSync(pgLog)) check('postgres log', fs.readFileSync(pgLog));
  // the read models
  const dump = execFileSync('pg_dump', [stack.pg.url], { encoding: 'latin1', maxBuffer: 256 << 20 });
  assert.ok(dump.includes(runId), 'pg_dump does not hold the run: wrong database?');
  check('pg_dump', dump);
  assert.deepEqual(where, [], `the planted secret value was found in: ${where.join('; ')}`);
});

test('another tenant cannot use the secret: secret_missing names only the secret', async () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const def = { name: 'borrow', steps: [{ id: 'hook', kind: 'http', url: `${base}/borrow`,
    headers: { Authorization: 'Bearer {{secrets.TOKEN}}' }, timeout_s: 5 }] };
  let r = await api('POST', '/v1/agents', { key: keyB, body: def });
  assert.ok(r.status === 201 || r.status === 200, r.text);
  r = await api('POST', '/v1/runs', { key: keyB, body: { agent: 'borrow', input: {} } });
  assert.equal(r.status, 202, r.text);
  const sse = await sseUntilTerminal(r.json.run_id, keyB);
  assert.match(sse, /run\.failed/);
  const other = r.json.run_id;
  await waitFor('run failed in Postgres', async () =>
    stack.pg.psql(`SELECT status FROM runs WHERE run_id = '${other}'`) === 'failed', 20000);
  const ev = await api('GET', `/v1/runs/${other}/events?limit=1000`, { key: keyB });
  const failed = ev.json.events ? ev.json.events : ev.json;
  const s = JSON.stringify(failed);
  assert.match(s, /secret_missing/);
  assert.match(s, /secret TOKEN \(header Authorization\) does not exist/);
  assert.ok(!s.includes(PLANTED));
  assert.equal(received.filter((x) => x.url === '/borrow').length, 0, 'the request went out');
});

test('graceful SIGTERM: api and executor exit cleanly (and sanitizer-clean in the ASan build)', async () => {
  for (const name of ['api', 'executor']) {
    const { code, sig } = await procs[name].kill('SIGTERM');
    const log = fs.readFileSync(procs[name].log, 'utf8');
    assert.equal(code, 0, `${name} exit ${code} ${sig}\n${log.slice(-3000)}`);
    assert.ok(!/AddressSanitizer|LeakSanitizer|runtime error:/.test(log), log.slice(-3000));
  }
});
