// openapi.test.mjs - docs/openapi.yaml held to the code.
//
// 1. The document is valid OpenAPI 3.1 (@seriousme/openapi-schema-validator).
// 2. The routes are the router's: every route services/api/http.c serves
//    (route_of: its `*allow = "..."; return R_X;` table) and every ops path
//    of common/rs_ops.c is a path of the document with exactly the methods
//    the router allows, and nothing else is; the running server agrees
//    (a method it does not allow gets 405 with the document's methods in
//    `Allow`).
// 3. Against a real stack (nats-server with users, Postgres, orchestrator,
//    projector, api), every route is called, success and the main errors,
//    and each real response is checked against the document: the status is
//    declared, the content type is the declared one, declared required
//    headers are present and match their schema, the body validates against
//    the response schema (ajv, JSON Schema 2020-12, the OpenAPI 3.1
//    dialect). The SSE route: content type and the id/event/data framing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import YAML from 'yaml';
import { Validator } from '@seriousme/openapi-schema-validator';
import { startStack, startService, runctl, stopAll, freePort, SRC } from '../lib/stack.mjs';

const require = createRequire(import.meta.url);
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats');

const DOC_FILE = path.join(SRC, 'docs', 'openapi.yaml');
const doc = YAML.parse(fs.readFileSync(DOC_FILE, 'utf8'));
const DOC_ID = pathToFileURL(DOC_FILE).href;
const METHODS = ['get', 'post', 'put', 'delete', 'patch', 'head', 'options', 'trace'];
const MAX_BODY = 65536;

// ---- the document as a validator ----

// Every external $ref of the document (relative file paths), resolved.
function externalRefs(node, out = new Set()) {
  if (Array.isArray(node)) node.forEach((n) => externalRefs(n, out));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string' && !v.startsWith('#')) out.add(v);
      else externalRefs(v, out);
    }
  }
  return out;
}

const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
addFormats(ajv);
ajv.addSchema(doc, DOC_ID);
for (const ref of externalRefs(doc)) {
  const file = new URL(ref, DOC_ID);
  const schema = JSON.parse(fs.readFileSync(file, 'utf8'));
  delete schema.$id; // known by its location, as the document refers to it
  ajv.addSchema(schema, file.href);
}

const ptr = (...parts) => parts.map((p) => String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
function deref(node) {
  while (node && node.$ref) {
    assert.ok(node.$ref.startsWith('#/'), `only local refs outside schemas: ${node.$ref}`);
    node = node.$ref.slice(2).split('/').reduce((n, k) => n[k.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
  }
  return node;
}

const validators = new Map();
function schemaValidator(pointer) {
  if (!validators.has(pointer)) validators.set(pointer, ajv.getSchema(`${DOC_ID}#/${pointer}`));
  const v = validators.get(pointer);
  assert.ok(v, `no schema at ${pointer}`);
  return v;
}

const covered = new Set(); // "METHOD path status" seen in a real response

// Check one real response r ({ status, headers, text }) of `method path`
// (the document's path template) against the document.
function check(method, tpl, r) {
  const m = method.toLowerCase();
  const op = doc.paths[tpl]?.[m];
  assert.ok(op, `${method} ${tpl} is not in docs/openapi.yaml`);
  const code = String(r.status);
  const resp = deref(op.responses[code] ?? op.responses.default);
  assert.ok(resp, `${method} ${tpl}: status ${code} is not declared (${r.text.slice(0, 300)})`);
  covered.add(`${method.toUpperCase()} ${tpl} ${code}`);
  for (const [name, h0] of Object.entries(resp.headers || {})) {
    const h = deref(h0);
    const v = r.headers.get(name);
    if (h.required) assert.ok(v !== null, `${method} ${tpl} ${code}: header ${name} is required`);
    if (v !== null && h.schema) {
      const hv = ajv.compile({ ...h.schema });
      assert.ok(hv(v), `${method} ${tpl} ${code}: header ${name}: ${v}: ${ajv.errorsText(hv.errors)}`);
    }
  }
  const ctype = r.headers.get('content-type');
  if (!resp.content) {
    assert.equal(r.text, '', `${method} ${tpl} ${code}: no body declared`);
    return null;
  }
  const types = Object.keys(resp.content);
  assert.ok(types.includes(ctype), `${method} ${tpl} ${code}: content type ${ctype}, declared ${types}`);
  if (!/json/.test(ctype)) return r.text;
  let body;
  assert.doesNotThrow(() => { body = JSON.parse(r.text); }, `${method} ${tpl} ${code}: not JSON: ${r.text}`);
  const key = op.responses[code] ? code : 'default';
  const where = op.responses[key].$ref ? op.responses[key].$ref.slice(2) : ptr('paths', tpl, m, 'responses', key);
  const v = schemaValidator(`${where}/${ptr('content', ctype, 'schema')}`);
  assert.ok(v(body), `${method} ${tpl} ${code}: body does not match: ${ajv.errorsText(v.errors)}\n${r.text.slice(0, 800)}`);
  return body;
}

// ---- the stack ----
let stack; let base; let keyA; let keyB; let env;

async function call(method, url, { key = keyA, body, headers = {} } = {}) {
  const h = { ...(key ? { Authorization: `Bearer ${key}` } : {}), ...headers };
  let b = body;
  if (body !== undefined && typeof body !== 'string') b = JSON.stringify(body);
  if (b !== undefined && !h['Content-Type']) h['Content-Type'] = 'application/json';
  const res = await fetch(base + url, { method, headers: h, body: b });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

// call + check; returns the parsed body.
async function expect(method, tpl, url, status, opts) {
  const r = await call(method, url, opts);
  assert.equal(r.status, status, `${method} ${url}: ${r.text}`);
  return check(method, tpl, r);
}

const transformAgent = {
  name: 'spec-auto',
  steps: [{ id: 'calc', kind: 'transform', value: { greeting: 'hi {{input.name}}' } }],
};
const signalAgent = {
  name: 'spec-wait',
  steps: [
    { id: 'ask', kind: 'signal', signal: 'approve', timeout_s: 120 },
    { id: 'done', kind: 'transform', value: { ok: true } },
  ],
};

before(async () => {
  stack = await startStack({ pg: true });
  env = { ...stack.env, RS_SECRETS_KEY: crypto.randomBytes(32).toString('hex') };
  keyA = runctl(['keys', 'create', '--tenant', 'acme'], env).stdout.trim();
  keyB = runctl(['keys', 'create', '--tenant', 'globex'], env).stdout.trim();
  assert.ok(keyA && keyB);
  const oport = await freePort();
  await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(oport) }, oport);
  const pport = await freePort();
  await startService('projector', { ...env, RS_PROJECTOR_OPS_PORT: String(pport) }, pport);
  const aport = await freePort();
  await startService('api', {
    ...env, RS_API_PORT: String(aport), RS_API_MAX_BODY: String(MAX_BODY),
    RS_API_MAX_WATCHERS_PER_KEY: '1', RS_API_MAX_WAITS_PER_KEY: '1', RS_API_LIMIT_RETRY_AFTER_S: '3',
  }, aport);
  base = `http://127.0.0.1:${aport}`;
});

after(async () => { await stopAll(); });

// ---- 1, 2: the document, and the router's list ----

test('docs/openapi.yaml is valid OpenAPI 3.1', async () => {
  const v = new Validator();
  for (const ref of externalRefs(doc)) {
    await v.addSpecRef(JSON.parse(fs.readFileSync(new URL(ref, DOC_ID), 'utf8')), ref);
  }
  const res = await v.validate(doc);
  assert.equal(v.version, '3.1');
  assert.ok(res.valid, JSON.stringify(res.errors, null, 1));
  // Every operation declares its errors as problem+json.
  for (const [p, item] of Object.entries(doc.paths)) {
    for (const m of METHODS.filter((x) => item[x])) {
      for (const [code, r0] of Object.entries(item[m].responses)) {
        const r = deref(r0);
        if (Number(code) >= 400 && p.startsWith('/v1/')) {
          assert.deepEqual(Object.keys(r.content || {}), ['application/problem+json'], `${m} ${p} ${code}`);
        }
      }
    }
  }
});

// Template of the document per router enum (the only hand-kept list: a new
// R_ value in services/api/request.h without an entry here fails below).
const ROUTE_PATHS = {
  R_AGENTS: '/v1/agents',
  R_AGENT: '/v1/agents/{name}',
  R_AGENT_VERSION: '/v1/agents/{name}/versions/{version}',
  R_RUNS: '/v1/runs',
  R_RUN: '/v1/runs/{run_id}',
  R_RUN_EVENTS: '/v1/runs/{run_id}/events',
  R_RUN_STREAM: '/v1/runs/{run_id}/stream',
  R_RUN_CANCEL: '/v1/runs/{run_id}/cancel',
  R_RUN_FORK: '/v1/runs/{run_id}/fork',
  R_RUN_RETRY: '/v1/runs/{run_id}/retry',
  R_SCHEDULES: '/v1/schedules',
  R_SCHEDULE: '/v1/schedules/{id}',
  R_SCHEDULE_PAUSE: '/v1/schedules/{id}/pause',
  R_SCHEDULE_RESUME: '/v1/schedules/{id}/resume',
  R_RUN_SIGNAL: '/v1/runs/{run_id}/signals/{name}',
  R_SECRETS: '/v1/secrets',
  R_SECRET: '/v1/secrets/{name}',
  R_RUN_STATE: '/v1/runs/{run_id}/state',
  R_RUN_CHECK: '/v1/runs/{run_id}/check',
  R_RUN_STREAM_TOKEN: '/v1/runs/{run_id}/stream-token',
  R_DEVICES: '/v1/devices',
};

function routerTable() {
  // The routing is services/api/request.c (pure, fuzzed), its enum request.h.
  const hdr = fs.readFileSync(path.join(SRC, 'services', 'api', 'request.h'), 'utf8');
  const src = fs.readFileSync(path.join(SRC, 'services', 'api', 'request.c'), 'utf8');
  const enumBody = /enum\s*\{([^}]*R_NONE[^}]*)\}/.exec(hdr)[1];
  const names = enumBody.split(',').map((s) => s.replace(/=.*$/, '').trim()).filter((s) => s && s !== 'R_NONE');
  const fn = /\nrs_api_route_of\([\s\S]*?\n\}/.exec(src)[0];
  const allow = {};
  for (const m of fn.matchAll(/\*allow = "([A-Z, ]+)";\s*(?:\n\s*)?return (R_[A-Z_]+);/g)) allow[m[2]] = m[1];
  const ops = fs.readFileSync(path.join(SRC, 'common', 'rs_ops.c'), 'utf8');
  const opsPaths = [...new Set([...ops.matchAll(/strcmp\(path, "(\/[a-z]+)"\)/g)].map((m) => m[1]))];
  return { names, allow, opsPaths };
}

test('the document has exactly the routes services/api/request.c routes', () => {
  const { names, allow, opsPaths } = routerTable();
  assert.ok(names.length >= 11, `router enum: ${names}`);
  const served = new Map();
  for (const n of names) {
    assert.ok(ROUTE_PATHS[n], `route ${n} of request.h has no path in this test's table (and so maybe none in docs/openapi.yaml)`);
    assert.ok(allow[n], `route ${n}: no *allow in rs_api_route_of`);
    served.set(ROUTE_PATHS[n], allow[n].split(',').map((s) => s.trim().toLowerCase()).sort());
  }
  assert.deepEqual(opsPaths.sort(), ['/healthz', '/metrics', '/readyz']);
  for (const p of opsPaths) served.set(p, ['get']);
  for (const [p, methods] of served) {
    assert.ok(doc.paths[p], `served route ${p} is missing from docs/openapi.yaml`);
    assert.deepEqual(METHODS.filter((m) => doc.paths[p][m]).sort(), methods, `methods of ${p}`);
  }
  for (const p of Object.keys(doc.paths)) assert.ok(served.has(p), `docs/openapi.yaml has ${p}, which the router does not serve`);
});

test('the server agrees: a method a path does not serve is 405 with the documented Allow', async () => {
  const runId = '0190f5e4-7a3b-7c1d-8e2f-0123456789ab';
  const concrete = (p) => p.replace('{run_id}', runId).replace('{name}', 'x').replace('{version}', 'v').replace('{id}', 'x');
  for (const p of Object.keys(doc.paths).filter((x) => x.startsWith('/v1/'))) {
    const r = await call('PATCH', concrete(p));
    assert.equal(r.status, 405, `${p}: ${r.text}`);
    assert.equal(r.headers.get('content-type'), 'application/problem+json');
    const documented = METHODS.filter((m) => doc.paths[p][m]).map((m) => m.toUpperCase()).sort();
    assert.deepEqual(r.headers.get('allow').split(',').map((s) => s.trim()).sort(), documented, p);
  }
});

// ---- 3: every route, against the document ----

let autoRun; let waitRun; let version;

test('agents: push, list, get, versions, and their errors', async () => {
  let b = await expect('POST', '/v1/agents', '/v1/agents', 201, { body: transformAgent });
  version = b.version;
  b = await expect('POST', '/v1/agents', '/v1/agents', 200, { body: transformAgent });
  assert.equal(b.created, false);
  await expect('POST', '/v1/agents', '/v1/agents', 201, { body: signalAgent });
  b = await expect('GET', '/v1/agents', '/v1/agents', 200);
  assert.deepEqual(b.agents.sort(), ['spec-auto', 'spec-wait']);
  b = await expect('GET', '/v1/agents/{name}', '/v1/agents/spec-auto', 200);
  assert.equal(b.latest, version);
  b = await expect('GET', '/v1/agents/{name}/versions/{version}', `/v1/agents/spec-auto/versions/${version}`, 200);
  assert.equal(b.definition.name, 'spec-auto');

  await expect('POST', '/v1/agents', '/v1/agents', 400, { body: '{"name": ' });
  await expect('POST', '/v1/agents', '/v1/agents', 422, { body: { name: 'x', steps: [{ id: 'a', kind: 'nope' }] } });
  await expect('POST', '/v1/agents', '/v1/agents', 413, { body: { name: 'big', pad: 'x'.repeat(MAX_BODY) } });
  await expect('POST', '/v1/agents', '/v1/agents', 401, { key: null, body: transformAgent });
  await expect('GET', '/v1/agents', '/v1/agents', 401, { key: 'not-a-key' });
  await expect('GET', '/v1/agents/{name}', '/v1/agents/nobody', 404);
  await expect('GET', '/v1/agents/{name}', '/v1/agents/spec-auto', 404, { key: keyB });
  await expect('GET', '/v1/agents/{name}/versions/{version}', '/v1/agents/spec-auto/versions/nope', 404);
});

test('runs: create (Idempotency-Key, Prefer: wait), get, list, events, and their errors', async () => {
  const tpl = '/v1/runs';
  const body = { agent: 'spec-auto', input: { name: 'Ada' } };
  let b = await expect('POST', tpl, tpl, 202, { body, headers: { 'Idempotency-Key': 'spec-1' } });
  autoRun = b.run_id;
  b = await expect('POST', tpl, tpl, 202, { body, headers: { 'Idempotency-Key': 'spec-1' } });
  assert.equal(b.run_id, autoRun);
  await expect('POST', tpl, tpl, 409, { body: { ...body, input: { name: 'Bob' } }, headers: { 'Idempotency-Key': 'spec-1' } });
  // A key too long to keep is refused, never ignored (it would not guard the retry).
  await expect('POST', tpl, tpl, 400, { body, headers: { 'Idempotency-Key': 'k'.repeat(300) } });
  b = await expect('POST', tpl, tpl, 200, { body, headers: { Prefer: 'wait=30' } });
  assert.equal(b.status, 'completed');
  assert.deepEqual(b.output, { greeting: 'hi Ada' });

  await expect('POST', tpl, tpl, 400, { body: '{"agent": "spec-auto",' });
  await expect('POST', tpl, tpl, 422, { body: { agent: 'spec-auto', extra: 1 } });
  await expect('POST', tpl, tpl, 422, { body: { agent: 'nobody' } });
  await expect('POST', tpl, tpl, 422, { body: { agent: 'spec-auto', input: [] } });
  await expect('POST', tpl, tpl, 413, { body: { agent: 'spec-auto', input: { pad: 'x'.repeat(MAX_BODY) } } });
  await expect('POST', tpl, tpl, 401, { key: null, body });

  // GET one: read-your-writes after the wait above; ?wait on a finished run.
  b = await expect('GET', '/v1/runs/{run_id}', `/v1/runs/${autoRun}?wait=10`, 200);
  assert.equal(b.status, 'completed');
  assert.ok(b.steps.length >= 1);
  await expect('GET', '/v1/runs/{run_id}', `/v1/runs/${autoRun}`, 404, { key: keyB });
  await expect('GET', '/v1/runs/{run_id}', '/v1/runs/0190f5e4-7a3b-7c1d-8e2f-0123456789ab', 404);
  await expect('GET', '/v1/runs/{run_id}', '/v1/runs/not-a-uuid', 404);

  // List: paging and filters.
  b = await expect('GET', tpl, '/v1/runs?limit=1', 200);
  assert.equal(b.runs.length, 1);
  assert.ok(b.next_after);
  const page2 = await expect('GET', tpl, `/v1/runs?limit=1&after=${b.next_after}`, 200);
  assert.notEqual(page2.runs[0].run_id, b.runs[0].run_id);
  b = await expect('GET', tpl, '/v1/runs?status=completed&agent=spec-auto&limit=100', 200);
  assert.equal(b.runs.length, 2);
  assert.equal(b.next_after, null);
  await expect('GET', tpl, '/v1/runs?limit=0', 400);
  await expect('GET', tpl, '/v1/runs?status=nope', 400);
  await expect('GET', tpl, '/v1/runs?after=!!', 400);

  // Events.
  const etpl = '/v1/runs/{run_id}/events';
  b = await expect('GET', etpl, `/v1/runs/${autoRun}/events?after=1&limit=2`, 200);
  assert.deepEqual(b.events.map((e) => e.runseq), [2, 3]);
  assert.equal(b.next_after, 3);
  b = await expect('GET', etpl, `/v1/runs/${autoRun}/events`, 200);
  assert.equal(b.events.at(-1).type, 'runstream.run.completed');
  await expect('GET', etpl, `/v1/runs/${autoRun}/events?after=-1`, 400);
  await expect('GET', etpl, `/v1/runs/${autoRun}/events?limit=1001`, 400);
  await expect('GET', etpl, `/v1/runs/${autoRun}/events`, 404, { key: keyB });
});

// Read an SSE response until `until(frames)` holds or the stream ends.
async function readSse(url, { headers = {}, until = () => false } = {}) {
  const ac = new AbortController();
  const res = await fetch(base + url, { headers: { Authorization: `Bearer ${keyA}`, ...headers }, signal: ac.signal });
  let text = '';
  const frames = [];
  if (res.status === 200) {
    const dec = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        text += dec.decode(chunk, { stream: true });
        let i;
        while ((i = text.indexOf('\n\n')) >= 0) {
          frames.push(text.slice(0, i));
          text = text.slice(i + 2);
        }
        if (until(frames)) { ac.abort(); break; }
      }
    } catch (e) { if (e.name !== 'AbortError') throw e; }
  } else {
    text = await res.text();
  }
  return { status: res.status, headers: res.headers, text, frames };
}

// id/event/data framing of one SSE event block; returns { id, event, data }.
function parseFrame(block) {
  const lines = block.split('\n');
  assert.equal(lines.length, 3, `one frame is id, event, data: ${JSON.stringify(block)}`);
  const [id, ev, data] = lines;
  assert.match(id, /^id: [1-9][0-9]*$/);
  assert.match(ev, /^event: [a-z_]+\.[a-z_]+$/);
  assert.match(data, /^data: \{.*\}$/);
  const ce = JSON.parse(data.slice(6));
  const out = { id: Number(id.slice(4)), event: ev.slice(7), data: ce };
  assert.equal(ce.runseq, out.id);
  assert.equal(ce.type, `runstream.${out.event}`);
  const v = schemaValidator(ptr('components', 'schemas', 'CloudEvent'));
  assert.ok(v(ce), ajv.errorsText(v.errors));
  return out;
}

test('stream: SSE framing, Last-Event-ID / after, 204 at the end, and its errors', async () => {
  const tpl = '/v1/runs/{run_id}/stream';
  const all = await readSse(`/v1/runs/${autoRun}/stream`);
  assert.equal(all.status, 200);
  check('GET', tpl, all);
  assert.equal(all.headers.get('content-type'), 'text/event-stream');
  assert.equal(all.text, '', 'the stream ends right after a complete frame');
  const evs = all.frames.filter((f) => !f.startsWith(':')).map(parseFrame);
  assert.deepEqual(evs.map((e) => e.id), evs.map((_, i) => i + 1));
  assert.equal(evs.at(-1).event, 'run.completed');
  const last = evs.at(-1).id;

  const resumed = await readSse(`/v1/runs/${autoRun}/stream`, { headers: { 'Last-Event-ID': String(last - 2) } });
  assert.deepEqual(resumed.frames.map(parseFrame).map((e) => e.id), [last - 1, last]);
  const after = await readSse(`/v1/runs/${autoRun}/stream?after=${last - 1}`);
  check('GET', tpl, after);
  assert.deepEqual(after.frames.map(parseFrame).map((e) => e.id), [last]);
  const done = await readSse(`/v1/runs/${autoRun}/stream`, { headers: { 'Last-Event-ID': String(last) } });
  assert.equal(done.status, 204);
  check('GET', tpl, done);

  check('GET', tpl, await readSse(`/v1/runs/${autoRun}/stream`, { headers: { 'Last-Event-ID': 'x' } }));
  await expect('GET', tpl, `/v1/runs/${autoRun}/stream`, 400, { headers: { 'Last-Event-ID': '-3' } });
  await expect('GET', tpl, `/v1/runs/${autoRun}/stream`, 404, { key: keyB });
  await expect('GET', tpl, `/v1/runs/${autoRun}/stream`, 401, { key: null });
});

test('a waiting run: live stream, 429 over the limits, ?wait 202, signal and cancel, 409 once finished', async () => {
  let b = await expect('POST', '/v1/runs', '/v1/runs', 202, { body: { agent: 'spec-wait' } });
  waitRun = b.run_id;

  // One stream per key (RS_API_MAX_WATCHERS_PER_KEY=1): the second is 429.
  const ac = new AbortController();
  const res = await fetch(`${base}/v1/runs/${waitRun}/stream`, { headers: { Authorization: `Bearer ${keyA}` }, signal: ac.signal });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  let text = '';
  const dec = new TextDecoder();
  while (!/event: step\.started/.test(text)) {
    const { value, done } = await reader.read();
    assert.ok(!done, `the stream ended early: ${text}`);
    text += dec.decode(value, { stream: true });
  }
  const blocks = text.split('\n\n').slice(0, -1).filter((x) => !x.startsWith(':'));
  assert.deepEqual(blocks.map(parseFrame).map((e) => e.event).slice(0, 3), ['run.created', 'run.started', 'step.started']);
  const over = await expect('GET', '/v1/runs/{run_id}/stream', `/v1/runs/${waitRun}/stream`, 429);
  assert.match(over.detail, /RS_API_MAX_WATCHERS_PER_KEY/);
  ac.abort();

  // One parked wait per key (RS_API_MAX_WAITS_PER_KEY=1): of two at once,
  // one is refused, the other times out with 202.
  const two = await Promise.all([call('GET', `/v1/runs/${waitRun}?wait=2`), call('GET', `/v1/runs/${waitRun}?wait=2`)]);
  assert.deepEqual(two.map((r) => r.status).sort(), [202, 429], two.map((r) => r.text).join('\n'));
  for (const r of two) b = check('GET', '/v1/runs/{run_id}', r);
  const refused = JSON.parse(two.find((r) => r.status === 429).text);
  assert.match(refused.detail, /RS_API_MAX_WAITS_PER_KEY/);
  const pending = JSON.parse(two.find((r) => r.status === 202).text);
  assert.equal(pending.status, 'running');
  // A creation that would wait counts too: one of the two is refused.
  const mixed = await Promise.all([call('GET', `/v1/runs/${waitRun}?wait=2`),
    call('POST', '/v1/runs', { body: { agent: 'spec-auto', input: {} }, headers: { Prefer: 'wait=5' } })]);
  check('GET', '/v1/runs/{run_id}', mixed[0]);
  check('POST', '/v1/runs', mixed[1]);
  assert.ok(mixed.some((r) => r.status === 429), mixed.map((r) => r.text).join('\n'));

  // Signals and cancel.
  const stpl = '/v1/runs/{run_id}/signals/{name}';
  await expect('POST', stpl, `/v1/runs/${waitRun}/signals/BAD`, 422, { body: {} });
  await expect('POST', stpl, `/v1/runs/${waitRun}/signals/approve`, 400, { body: '{' });
  await expect('POST', stpl, `/v1/runs/${waitRun}/signals/approve`, 404, { key: keyB, body: {} });
  const ctpl = '/v1/runs/{run_id}/cancel';
  await expect('POST', ctpl, `/v1/runs/${waitRun}/cancel`, 422, { body: { reason: 5 } });
  await expect('POST', ctpl, `/v1/runs/${waitRun}/cancel`, 400, { body: '{"reason":' });
  await expect('POST', ctpl, '/v1/runs/0190f5e4-7a3b-7c1d-8e2f-0123456789ab/cancel', 404);
  b = await expect('POST', stpl, `/v1/runs/${waitRun}/signals/approve`, 202, { body: { yes: true } });
  assert.equal(b.name, 'approve');
  b = await expect('GET', '/v1/runs/{run_id}', `/v1/runs/${waitRun}?wait=30`, 200);
  assert.equal(b.status, 'completed');
  await expect('POST', stpl, `/v1/runs/${waitRun}/signals/approve`, 409, { body: {} });
  await expect('POST', ctpl, `/v1/runs/${waitRun}/cancel`, 409);

  // Cancel of a run in flight.
  b = await expect('POST', '/v1/runs', '/v1/runs', 202, { body: { agent: 'spec-wait' } });
  const c = await expect('POST', ctpl, `/v1/runs/${b.run_id}/cancel`, 202, { body: { reason: 'spec' } });
  assert.equal(c.status, 'cancel_requested');
  const ended = await expect('GET', '/v1/runs/{run_id}', `/v1/runs/${b.run_id}?wait=30`, 200);
  assert.equal(ended.status, 'cancelled');
  await expect('POST', ctpl, `/v1/runs/${b.run_id}/cancel`, 409);
});

test('fork and retry: the new run names its origin, and their errors', async () => {
  const failing = {
    name: 'spec-fail',
    steps: [{ id: 'ask', kind: 'signal', signal: 'never', timeout_s: 1, retry: { max_attempts: 1 } }],
  };
  await expect('POST', '/v1/agents', '/v1/agents', 201, { body: failing });
  const failed = await expect('POST', '/v1/runs', '/v1/runs', 200,
    { body: { agent: 'spec-fail', input: {} }, headers: { Prefer: 'wait=30' } });
  assert.equal(failed.status, 'failed');
  const ftpl = '/v1/runs/{run_id}/fork';
  const rtpl = '/v1/runs/{run_id}/retry';
  let b = await expect('POST', ftpl, `/v1/runs/${autoRun}/fork`, 202, { body: { from_seq: 1, input: { name: 'Eve' } } });
  assert.equal(b.forked_from, autoRun);
  b = await expect('POST', ftpl, `/v1/runs/${autoRun}/fork`, 200,
    { body: { from_seq: 2 }, headers: { Prefer: 'wait=30' } });
  assert.equal(b.status, 'completed');
  await expect('POST', ftpl, `/v1/runs/${autoRun}/fork`, 422, { body: { from_seq: 1000 } });
  await expect('POST', ftpl, `/v1/runs/${autoRun}/fork`, 422, { body: {} });
  await expect('POST', ftpl, `/v1/runs/${autoRun}/fork`, 400, { body: '{"from_seq":' });
  await expect('POST', ftpl, '/v1/runs/0190f5e4-7a3b-7c1d-8e2f-0123456789ab/fork', 404, { body: { from_seq: 1 } });
  await expect('POST', ftpl, `/v1/runs/${autoRun}/fork`, 401, { key: null, body: { from_seq: 1 } });
  await expect('POST', ftpl, `/v1/runs/${autoRun}/fork`, 413, { body: { from_seq: 1, input: { pad: 'x'.repeat(MAX_BODY) } } });
  b = await expect('POST', rtpl, `/v1/runs/${failed.run_id}/retry`, 202);
  assert.equal(b.forked_from, failed.run_id);
  await expect('POST', rtpl, `/v1/runs/${autoRun}/retry`, 409);
  await expect('POST', rtpl, `/v1/runs/${failed.run_id}/retry`, 422, { body: { version: 'nope' } });
  await expect('POST', rtpl, `/v1/runs/${failed.run_id}/retry`, 400, { body: '[' });
  await expect('POST', rtpl, '/v1/runs/0190f5e4-7a3b-7c1d-8e2f-0123456789ab/retry', 404);
  await expect('POST', rtpl, `/v1/runs/${failed.run_id}/retry`, 401, { key: null });
  await expect('POST', rtpl, `/v1/runs/${failed.run_id}/retry`, 413, { body: { input: { pad: 'x'.repeat(MAX_BODY) } } });
});

test('schedules: create, list, get, pause, resume, delete, and their errors', async () => {
  const tpl = '/v1/schedules';
  let b = await expect('POST', tpl, tpl, 201, { body: { id: 'spec-nightly', agent: 'spec-auto', cron: '0 3 * * *', timezone: 'Europe/Paris', input: { name: 'Night' } } });
  assert.equal(b.id, 'spec-nightly');
  await expect('POST', tpl, tpl, 409, { body: { id: 'spec-nightly', agent: 'spec-auto', interval_s: 60 } });
  await expect('POST', tpl, tpl, 422, { body: { agent: 'spec-auto', cron: 'nope' } });
  await expect('POST', tpl, tpl, 400, { body: '{"agent":' });
  await expect('POST', tpl, tpl, 401, { key: null, body: { agent: 'spec-auto', interval_s: 60 } });
  await expect('POST', tpl, tpl, 413, { body: { agent: 'spec-auto', interval_s: 60, input: { pad: 'x'.repeat(MAX_BODY) } } });
  b = await expect('GET', tpl, tpl, 200);
  assert.ok(b.schedules.some((s) => s.id === 'spec-nightly'));
  const one = '/v1/schedules/{id}';
  b = await expect('GET', one, '/v1/schedules/spec-nightly', 200);
  assert.ok(b.next_fire_at);
  await expect('GET', one, '/v1/schedules/nope', 404);
  b = await expect('POST', '/v1/schedules/{id}/pause', '/v1/schedules/spec-nightly/pause', 200);
  assert.equal(b.paused, true);
  b = await expect('POST', '/v1/schedules/{id}/resume', '/v1/schedules/spec-nightly/resume', 200);
  assert.equal(b.paused, false);
  await expect('POST', '/v1/schedules/{id}/pause', '/v1/schedules/nope/pause', 404);
  await expect('POST', '/v1/schedules/{id}/resume', '/v1/schedules/nope/resume', 404);
  await expect('DELETE', one, '/v1/schedules/spec-nightly', 204);
  await expect('DELETE', one, '/v1/schedules/spec-nightly', 404);
});

test('secrets: put, list, delete, and their errors', async () => {
  const tpl = '/v1/secrets/{name}';
  let b = await expect('PUT', tpl, '/v1/secrets/API_KEY', 201, { body: { value: 's3cret' } });
  assert.equal(b.created, true);
  b = await expect('PUT', tpl, '/v1/secrets/API_KEY', 200, { body: { value: 'other' } });
  assert.equal(b.created, false);
  b = await expect('GET', '/v1/secrets', '/v1/secrets', 200);
  assert.deepEqual(b.secrets.map((s) => s.name), ['API_KEY']);
  assert.doesNotMatch(JSON.stringify(b), /other|s3cret/);
  await expect('GET', '/v1/secrets', '/v1/secrets', 200, { key: keyB });
  await expect('PUT', tpl, '/v1/secrets/bad.name', 400, { body: { value: 'v' } });
  await expect('PUT', tpl, '/v1/secrets/API_KEY', 400, { body: 'value=v' });
  await expect('PUT', tpl, '/v1/secrets/API_KEY', 422, { body: { value: 'a\nb' } });
  await expect('PUT', tpl, '/v1/secrets/API_KEY', 422, { body: { value: 'v', more: 1 } });
  await expect('PUT', tpl, '/v1/secrets/API_KEY', 413, { body: { value: 'x'.repeat(MAX_BODY) } });
  await expect('DELETE', tpl, '/v1/secrets/API_KEY', 404, { key: keyB });
  await expect('DELETE', tpl, '/v1/secrets/API_KEY', 204);
  await expect('DELETE', tpl, '/v1/secrets/API_KEY', 404);
  await expect('DELETE', tpl, '/v1/secrets/bad.name', 400);
  await expect('GET', '/v1/secrets', '/v1/secrets', 401, { key: null });
});

test('viewer routes: state at an event, check, stream token, devices, runs by time', async () => {
  const stpl = '/v1/runs/{run_id}/state';
  let b = await expect('GET', stpl, `/v1/runs/${autoRun}/state?at=1`, 200);
  assert.equal(b.at, 1);
  b = await expect('GET', stpl, `/v1/runs/${autoRun}/state`, 200);
  assert.equal(b.status, 'completed');
  await expect('GET', stpl, `/v1/runs/${autoRun}/state?at=0`, 400);
  await expect('GET', stpl, `/v1/runs/${autoRun}/state?at=100000`, 422);
  await expect('GET', stpl, `/v1/runs/${autoRun}/state`, 404, { key: keyB });
  await expect('GET', stpl, `/v1/runs/${autoRun}/state`, 401, { key: null });
  const ctpl = '/v1/runs/{run_id}/check';
  b = await expect('GET', ctpl, `/v1/runs/${autoRun}/check`, 200);
  assert.equal(b.ok, true);
  await expect('GET', ctpl, '/v1/runs/0190f5e4-7a3b-7c1d-8e2f-0123456789ab/check', 404);
  const ttpl = '/v1/runs/{run_id}/stream-token';
  b = await expect('POST', ttpl, `/v1/runs/${autoRun}/stream-token`, 200);
  const r = await call('GET', b.stream_url, { key: null });
  assert.equal(r.status, 200, r.text);
  check('GET', '/v1/runs/{run_id}/stream', r);
  await expect('GET', '/v1/runs/{run_id}/stream', `/v1/runs/${waitRun}/stream?token=${b.token}`, 401, { key: null });
  await expect('POST', ttpl, `/v1/runs/${autoRun}/stream-token`, 404, { key: keyB });
  b = await expect('GET', '/v1/devices', '/v1/devices', 200);
  assert.deepEqual(b.devices, []);
  await expect('GET', '/v1/devices', '/v1/devices?include_offline=yes', 400);
  b = await expect('GET', '/v1/runs', `/v1/runs?since=${encodeURIComponent(new Date(Date.now() - 3600e3).toISOString())}`, 200);
  assert.ok(b.runs.some((x) => x.run_id === autoRun));
  b = await expect('GET', '/v1/runs', '/v1/runs?until=2000-01-01T00:00:00Z', 200);
  assert.deepEqual(b.runs, []);
  await expect('GET', '/v1/runs', '/v1/runs?since=soon', 400);
});

test('ops: /healthz, /readyz, /metrics', async () => {
  let b = await expect('GET', '/healthz', '/healthz', 200, { key: null });
  assert.equal(b.service, 'api');
  b = await expect('GET', '/readyz', '/readyz', 200, { key: null });
  assert.equal(b.status, 'ready');
  const m = await expect('GET', '/metrics', '/metrics', 200, { key: null });
  assert.match(m, /rs_api_requests_total/);
});

test('Postgres down: reads are 503 with Retry-After, as documented', async () => {
  await stack.pg.stop('immediate');
  await expect('GET', '/v1/runs', '/v1/runs', 503);
  await expect('GET', '/v1/runs/{run_id}/events', `/v1/runs/${autoRun}/events`, 503);
  const r = await call('GET', '/v1/runs');
  assert.equal(r.headers.get('retry-after'), '2');
});

test('every route was exercised, each with a success', () => {
  for (const [p, item] of Object.entries(doc.paths)) {
    for (const m of METHODS.filter((x) => item[x])) {
      const ok = [...covered].some((c) => c.startsWith(`${m.toUpperCase()} ${p} 2`));
      assert.ok(ok, `${m.toUpperCase()} ${p}: no 2xx response was checked`);
    }
  }
});
