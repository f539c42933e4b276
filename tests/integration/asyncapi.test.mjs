// asyncapi.test.mjs - docs/asyncapi.yaml held to the schemas and to real
// events, and the Go consumer example (examples/go, docs/quickstart.md) run
// against a real stack.
//
// 1. @asyncapi/parser parses the document without errors or warnings;
//    every event type of schemas/events/ has exactly one message (and no
//    message names a type without a schema); every message's payload
//    resolves to the envelope plus that type's data schema.
// 2. A real run on a real stack (nats-server with users, Postgres,
//    orchestrator, projector, api): every event it appended validates
//    against its message (headers and payload, ajv 2020-12).
// 3. The Go example is built offline (Debian's golang-go and
//    golang-github-nats-io-go-nats-dev, GOPATH mode), run with the team
//    credentials of `runctl consumers grant`, and prints the run's events in
//    runseq order, exactly as the API lists them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { Parser, fromFile } from '@asyncapi/parser';
import { connect } from 'nats';
import { startStack, startService, runctl, stopAll, freePort, SRC, BUILD } from '../lib/stack.mjs';

const require = createRequire(import.meta.url);
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats');

const DOC_FILE = path.join(SRC, 'docs', 'asyncapi.yaml');
const SCHEMA_DIR = path.join(SRC, 'schemas', 'events');
const TYPES = fs.readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.json') && f !== 'envelope.json')
  .map((f) => f.slice(0, -5)).sort();

let document;

// A copy of a resolved schema without $id/$schema (the same envelope is
// inlined in every message; ajv refuses one $id compiled twice).
function bare(node) {
  if (Array.isArray(node)) return node.map(bare);
  if (!node || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) if (k !== '$id' && k !== '$schema') out[k] = bare(v);
  return out;
}

function validatorOf(schemaJson) {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  return ajv.compile(bare(schemaJson));
}

test('docs/asyncapi.yaml parses without errors or warnings (@asyncapi/parser)', async () => {
  const parser = new Parser();
  const { document: d, diagnostics } = await fromFile(parser, DOC_FILE).parse();
  const bad = diagnostics.filter((x) => x.severity <= 1); // 0 error, 1 warning
  assert.deepEqual(bad.map((x) => `${x.code}: ${x.message} at ${x.path.join('.')}`), []);
  assert.ok(d, 'no document');
  assert.equal(d.version(), '3.0.0');
  document = d;
});

test('every event type in schemas/events/ has its message, each payload resolves', () => {
  assert.ok(TYPES.length >= 24, `${TYPES}`);
  const messages = document.allMessages().all();
  assert.deepEqual(messages.map((m) => m.id()).sort(), TYPES);
  const channel = document.channels().get('runEvents');
  assert.equal(channel.address(), 'runs.{tenant}.{run_id}');
  assert.deepEqual(channel.parameters().all().map((p) => p.id()).sort(), ['run_id', 'tenant']);
  assert.deepEqual(channel.messages().all().map((m) => m.id()).sort(), TYPES);
  const op = document.operations().get('consumeRunEvents');
  assert.equal(op.action(), 'receive');
  assert.equal(op.messages().all().length, TYPES.length);

  for (const m of messages) {
    const t = m.id();
    const payload = m.payload().json();
    const text = JSON.stringify(payload);
    assert.doesNotMatch(text, /"\$ref"/, `${t}: unresolved $ref in payload`);
    // The envelope, and this type's data schema, both resolved.
    const envelope = JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, 'envelope.json'), 'utf8'));
    const data = JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, `${t}.json`), 'utf8'));
    assert.deepEqual(payload.allOf[0].required, envelope.required, t);
    assert.deepEqual(payload.allOf[1].properties.type.const, `runstream.${t}`);
    assert.deepEqual(Object.keys(payload.allOf[1].properties.data.properties || {}).sort(),
      Object.keys(data.properties || {}).sort(), `${t}: data schema`);
    assert.equal(m.headers().json().properties['Runstream-Type'].const, t);
    // It rejects what it must: another type, a missing data member.
    const v = validatorOf(payload);
    const sample = {
      specversion: '1.0', id: '0190f5e4-7a3b-7c1d-8e2f-0123456789ab-1', source: 'runstream/orchestrator',
      type: 'runstream.nope.nope', subject: '0190f5e4-7a3b-7c1d-8e2f-0123456789ab',
      time: '2026-01-02T03:04:05.678Z', datacontenttype: 'application/json', runseq: 1, tenant: 'acme', data: {},
    };
    assert.equal(v(sample), false, `${t}: accepts another type`);
    if ((data.required || []).length) {
      assert.equal(v({ ...sample, type: `runstream.${t}` }), false, `${t}: accepts data without its required members`);
    }
  }
});

// ---- a real stack ----
let stack; let base; let key; let nc; let goProc;

async function api(method, url, body, headers = {}) {
  const res = await fetch(base + url, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null, text };
}

before(async () => {
  stack = await startStack({ pg: true });
  const env = stack.env;
  key = runctl(['keys', 'create', '--tenant', 'acme'], env).stdout.trim();
  const oport = await freePort();
  await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(oport) }, oport);
  const pport = await freePort();
  await startService('projector', { ...env, RS_PROJECTOR_OPS_PORT: String(pport) }, pport);
  const aport = await freePort();
  await startService('api', { ...env, RS_API_PORT: String(aport) }, aport);
  base = `http://127.0.0.1:${aport}`;
  nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
});

after(async () => {
  if (goProc && goProc.exitCode === null) { try { process.kill(goProc.pid, 'SIGKILL'); } catch { /* gone */ } }
  await nc?.close();
  await stopAll();
});

// Start a run and wait for its end; returns its events as the API lists them.
async function runToEnd(name) {
  const r = await api('POST', '/v1/runs', { agent: 'async-demo', input: { name } }, { Prefer: 'wait=30' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'completed');
  const ev = await api('GET', `/v1/runs/${r.json.run_id}/events?limit=1000`);
  assert.equal(ev.status, 200, ev.text);
  return { runId: r.json.run_id, events: ev.json.events };
}

test('real events validate against their messages (headers and payload)', async () => {
  // Pushed here, not in before(): the parser blocks Node's event loop for
  // a while, and a keep-alive connection the API closed meanwhile would
  // only be noticed by the client once it was reused.
  const r = await api('POST', '/v1/agents', {
    name: 'async-demo',
    steps: [
      { id: 'pause', kind: 'sleep', duration_ms: 50 },
      { id: 'calc', kind: 'transform', value: { greeting: 'hi {{input.name}}' } },
    ],
  });
  assert.equal(r.status, 201, r.text);
  const { runId, events } = await runToEnd('Ada');
  const messages = new Map(document.allMessages().all().map((m) => [m.id(), m]));
  // Read the run back from its literal subject, as stored (direct get,
  // next by subject), headers included.
  const jsm = await nc.jetstreamManager();
  const subj = `runs.acme.${runId}`;
  const seen = [];
  for (let seq = 1; seen.length < events.length;) {
    const m = await jsm.direct.getMessage('RUNS', { seq, next_by_subj: subj });
    seq = m.seq + 1;
    const type = m.header.get('Runstream-Type');
    const msg = messages.get(type);
    assert.ok(msg, `no message for ${type}`);
    const headers = {};
    for (const [k] of m.header) headers[k] = m.header.get(k);
    const hv = validatorOf(msg.headers().json());
    assert.ok(hv(headers), `${type} headers ${JSON.stringify(headers)}: ${JSON.stringify(hv.errors)}`);
    const pv = validatorOf(msg.payload().json());
    const ce = m.json();
    assert.ok(pv(ce), `${type} payload ${JSON.stringify(ce)}: ${JSON.stringify(pv.errors)}`);
    seen.push(type);
  }
  assert.deepEqual(seen, events.map((e) => e.type.replace(/^runstream\./, '')));
  assert.ok(seen.includes('timer.scheduled') && seen.includes('timer.fired'), `${seen}`);
});

test('the Go consumer example prints a run\'s events in order, with team credentials', async () => {
  // Build offline against Debian's nats.go (GOPATH mode, no module download).
  const out = path.join(BUILD, 'examples', 'rs-example-consumer-go');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  // Asynchronously: a cold build takes a while, and a blocked event loop
  // would not notice keep-alive connections the API closes meanwhile.
  const b = await new Promise((resolve) => {
    const p = spawn('go', ['build', '-o', out, './examples/go'], {
      cwd: SRC, stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOFLAGS: '', GOCACHE: path.join(BUILD, 'go-cache') },
    });
    let err = '';
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', (e) => resolve({ code: -1, err: String(e) }));
    p.on('exit', (code) => resolve({ code, err }));
  });
  assert.equal(b.code, 0, `go build failed (golang-go and golang-github-nats-io-go-nats-dev installed? ./run deps): ${b.err}`);

  const g = runctl(['consumers', 'grant', '--tenant', 'acme', '--name', 'gotest', '--dir', stack.nats.authDir, '--json'], stack.env);
  assert.equal(g.code, 0, g.stderr);
  const creds = JSON.parse(g.stdout);

  // Running before the run starts: it gets the tenant's whole history (the
  // grant's durable delivers all), then the new run live.
  goProc = spawn(out, [creds.url, 'acme', creds.consumer], {
    env: { ...process.env, RS_NATS_USER: creds.user, RS_NATS_PASSWORD: creds.password },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = ''; let stderr = '';
  goProc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => goProc.on('exit', (code, sig) => resolve({ code, sig })));
  const lines = [];
  const waiters = [];
  goProc.stdout.on('data', (d) => {
    stdout += d;
    let i;
    while ((i = stdout.indexOf('\n')) >= 0) { lines.push(stdout.slice(0, i)); stdout = stdout.slice(i + 1); }
    for (const w of waiters.splice(0)) w();
  });
  const until = (pred, what) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`Go example: timed out waiting for ${what}; stdout:\n${lines.join('\n')}\nstderr:\n${stderr}`)), 30000);
    const check = () => {
      if (pred()) { clearTimeout(t); resolve(); return; }
      waiters.push(check);
    };
    check();
    exited.then(({ code }) => { clearTimeout(t); if (!pred()) reject(new Error(`Go example exited ${code}: ${stderr}`)); });
  });

  const { runId, events } = await runToEnd('Grace');
  await until(() => lines.some((l) => l === `${events.length} run.completed ${runId}`), `run.completed of ${runId}`);
  const mine = lines.filter((l) => l.endsWith(` ${runId}`));
  assert.deepEqual(mine, events.map((e) => `${e.runseq} ${e.type.replace(/^runstream\./, '')} ${runId}`));
  // Only tenant acme's runs (the earlier run of the test above comes first).
  for (const l of lines) assert.match(l, /^[1-9][0-9]* [a-z_]+\.[a-z_]+ [0-9a-f-]{36}$/);

  process.kill(goProc.pid, 'SIGTERM');
  const { code } = await exited;
  assert.equal(code, 0, stderr);
});
