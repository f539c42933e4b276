// api_limits.test.mjs - rs-api against hostile clients (issue 15, findings
// 7 and 11): no body read before the key is good, per-key and per-tenant
// limits on SSE watchers and parked waits (429 + Retry-After, released on
// close), paged history replay with the replay->live seam intact, and the
// live hub keyed by (tenant, run): events forged on another tenant's
// subject or with malformed framing never reach a watcher. Real
// nats-server, real clients (raw TCP, fetch, nats); no orchestrator: the
// test appends run events itself, as the orchestrator would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connect, headers as natsHeaders } from 'nats';
import { startStack, startService, runctl, stopAll, freePort, waitFor } from '../lib/stack.mjs';
import { readSse } from '../lib/clients.mjs';

let stack, base, port, nc, js;
let k1, k2, kB;   // k1, k2: tenant acme; kB: tenant globex
const PAGE = 16;

const auth = (k) => ({ Authorization: `Bearer ${k}` });

async function call(method, path, { key = k1, body, headers = {}, signal } = {}) {
  const h = { ...(key ? auth(key) : {}), ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(base + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

async function metric(name, labels = '') {
  const text = await (await fetch(`${base}/metrics`)).text();
  const esc = labels.replace(/[{}"]/g, (c) => `\\${c}`);
  const m = text.match(new RegExp(`^${name}${esc} ([0-9.e+-]+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

// An SSE stream: status, events as they come, close().
function stream(runId, { key = k1, headers = {} } = {}) {
  const ac = new AbortController();
  const events = [];
  let waiters = [];
  const s = { events, status: null, headers: null, ended: false, close: () => ac.abort() };
  const wake = () => { for (const w of waiters.splice(0)) w(); };
  s.opened = new Promise((opened) => {
    readSse(`${base}/v1/runs/${runId}/stream`, {
      headers: { ...auth(key), ...headers },
      signal: ac.signal,
      onOpen: (res) => { s.status = res.status; s.headers = res.headers; opened(s); },
      onEvent: (ev) => { if (ev) { events.push(ev); wake(); } return false; },
    }).then((r) => {
      if (r.status !== 200) {
        s.status = r.status;
        s.headers = r.headers;
        s.text = r.text;
        s.json = JSON.parse(r.text || 'null');
        opened(s);
      }
    }, () => { /* aborted */ }).finally(() => { s.ended = true; opened(s); wake(); });
  });
  s.until = (pred, ms = 15000) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`SSE: timed out; have ids ${events.map((e) => e.id).join(',')}`)), ms);
    const check = () => {
      if (pred(events, s)) { clearTimeout(t); resolve(events); } else waiters.push(check);
    };
    check();
  });
  return s;
}

// Append one CloudEvent to RUNS the way the orchestrator does, or a forged
// one (any subject, type header, body).
async function publishEvent(subject, { runId, tenant, runseq, type, data = {}, header = type, ceType = `runstream.${type}` }) {
  const ev = {
    data, datacontenttype: 'application/json', id: `${runId}-${runseq}-${Math.random()}`, runseq,
    source: 'runstream/orchestrator', specversion: '1.0', subject: runId, tenant,
    time: new Date().toISOString(), type: ceType,
  };
  const h = natsHeaders();
  h.set('Content-Type', 'application/cloudevents+json');
  if (header !== null) h.set('Runstream-Type', header);
  await js.publish(subject, JSON.stringify(ev), { headers: h });
}

function appender(runId, tenant = 'acme') {
  let runseq = 0;
  return {
    get seq() { return runseq; },
    append: (type, data = {}) => { runseq++; return publishEvent(`runs.${tenant}.${runId}`, { runId, tenant, runseq, type, data }); },
  };
}

async function createRun(key = k1) {
  const r = await call('POST', '/v1/runs', { key, body: { agent: 'manual', input: {} } });
  assert.equal(r.status, 202, r.text);
  return r.json.run_id;
}

function key(tenant) {
  const r = runctl(['keys', 'create', '--tenant', tenant], stack.env);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').pop().trim();
}

before(async () => {
  stack = await startStack({ pg: false });
  k1 = key('acme'); k2 = key('acme'); kB = key('globex');
  port = await freePort();
  await startService('api', {
    ...stack.env, RS_PG_URL: 'postgresql://127.0.0.1:1/none', RS_API_PORT: String(port), RS_LOG_LEVEL: 'warn',
    RS_API_MAX_BODY: '65536', RS_API_SSE_REPLAY_PAGE: String(PAGE), RS_API_SSE_HEARTBEAT_S: '1',
    RS_API_MAX_WATCHERS_PER_KEY: '3', RS_API_MAX_WATCHERS_PER_TENANT: '5',
    RS_API_MAX_WAITS_PER_KEY: '2', RS_API_MAX_WAITS_PER_TENANT: '3', RS_API_LIMIT_RETRY_AFTER_S: '7',
  }, port);
  base = `http://127.0.0.1:${port}`;
  nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  js = nc.jetstream();
  for (const k of [k1, kB]) {
    const r = await call('POST', '/v1/agents', { key: k, body: { name: 'manual', steps: [{ id: 's1', kind: 'transform', value: {} }] } });
    assert.equal(r.status, 201, r.text);
  }
});

after(async () => { await nc?.close(); await stopAll(); });

// Raw HTTP/1.1: send exactly these bytes, collect the answer until close.
function raw(bytes) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(bytes));
    let got = '';
    s.on('data', (d) => { got += d.toString(); });
    s.on('end', () => resolve({ text: got, closed: true }));
    s.on('error', reject);
    s.setTimeout(10000, () => { s.destroy(); resolve({ text: got, closed: false }); });
  });
}

test('no body before auth: 401 on the headers alone, then close; a good key still gets 413 / its answer', async () => {
  const post = (hdr) => `POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n${hdr}\r\n`;
  // Headers only: the body is never sent. The answer must come anyway.
  for (const hdr of ['', 'Authorization: Bearer rk_not_a_key\r\n', 'Authorization: Basic Zm9vOmJhcg==\r\n']) {
    const r = await raw(post(hdr));
    assert.match(r.text, /^HTTP\/1\.1 401 /, r.text);
    assert.match(r.text, /application\/problem\+json/);
    assert.match(r.text, /www-authenticate: Bearer/i);
    assert.ok(r.closed, 'closed after the 401: the unread body cannot be the next request');
  }
  // A good key that is not cached yet (a new one): the body is read after
  // the KV check; 1 MB over the 64 KiB cap is a 413 (and is a body we send).
  const fresh = key('acme');
  const big = JSON.stringify({ agent: 'manual', input: { blob: 'x'.repeat(70000) } });
  const r413 = await call('POST', '/v1/runs', { key: fresh, body: JSON.parse(big) });
  assert.equal(r413.status, 413, r413.text);
  // Not cached, body split across writes: answered normally.
  const fresh2 = key('acme');
  const body = JSON.stringify({ agent: 'manual', input: { pad: 'y'.repeat(20000) } });
  const ok = await raw(`POST /v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${fresh2}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  assert.match(ok.text, /^HTTP\/1\.1 202 /, ok.text.slice(0, 300));
});

test('watchers per key and per tenant: 429 with Retry-After; closing them frees the slots', async () => {
  const run = await createRun();
  const open = async (k) => { const s = stream(run, { key: k }); await s.opened; return s; };
  const a = [await open(k1), await open(k1), await open(k1)];
  for (const s of a) assert.equal(s.status, 200);
  const over = await open(k1);
  assert.equal(over.status, 429, over.text);
  assert.equal(over.headers.get('retry-after'), '7');
  assert.equal(over.headers.get('content-type'), 'application/problem+json');
  assert.match(over.json.detail, /RS_API_MAX_WATCHERS_PER_KEY/);
  // Same tenant, other key: 2 more reach the tenant's 5.
  const b = [await open(k2), await open(k2)];
  for (const s of b) assert.equal(s.status, 200);
  const overT = await open(k2);
  assert.equal(overT.status, 429);
  assert.match(overT.json.detail, /RS_API_MAX_WATCHERS_PER_TENANT/);
  // Another tenant is not affected (its own run).
  const runB = await createRun(kB);
  const other = await open(kB);
  assert.equal(other.status, 404, 'acme\'s run is not globex\'s');
  const otherOwn = stream(runB, { key: kB });
  await otherOwn.opened;
  assert.equal(otherOwn.status, 200);
  assert.ok(await metric('rs_api_limited_total', '{kind="watch"}') >= 2);
  // Close all of acme's: the counters go back, N can be opened again.
  for (const s of [...a, ...b]) s.close();
  await waitFor('watchers closed', async () => (await metric('rs_api_sse_watchers')) === 1);
  const again = [await open(k1), await open(k1), await open(k1), await open(k2), await open(k2)];
  assert.deepEqual(again.map((s) => s.status), [200, 200, 200, 200, 200]);
  for (const s of [...again, otherOwn]) s.close();
  await waitFor('watchers closed', async () => (await metric('rs_api_sse_watchers')) === 0);
});

test('parked waits per key and per tenant: 429 before any work; released when the waits are answered', async () => {
  const run = await createRun();
  // Parked for 3 s (the run never ends): each is answered 202 then, which
  // gives its slot back. (A client that hangs up while parked is noticed
  // by lws 4.1.6 only when the wait ends: see docs/api.md.)
  const answers = [];
  const park = (k) => answers.push(call('GET', `/v1/runs/${run}?wait=3`, { key: k }));
  park(k1); park(k1);
  await waitFor('2 waiters parked', async () => (await metric('rs_api_waiters')) === 2);
  const over = await call('GET', `/v1/runs/${run}?wait=30`);
  assert.equal(over.status, 429, over.text);
  assert.equal(over.headers.get('retry-after'), '7');
  assert.match(over.json.detail, /RS_API_MAX_WAITS_PER_KEY/);
  // POST with Prefer: wait is refused too, before the run is created.
  const overPost = await call('POST', '/v1/runs', { body: { agent: 'manual', input: {} }, headers: { Prefer: 'wait=10' } });
  assert.equal(overPost.status, 429, overPost.text);
  // Tenant: one more from k2, then its limit (3).
  park(k2);
  await waitFor('3 waiters parked', async () => (await metric('rs_api_waiters')) === 3);
  const overT = await call('GET', `/v1/runs/${run}?wait=30`, { key: k2 });
  assert.equal(overT.status, 429);
  assert.match(overT.json.detail, /RS_API_MAX_WAITS_PER_TENANT/);
  // A read without a wait is not limited.
  assert.notEqual((await call('GET', `/v1/runs/${run}`)).status, 429);
  // The waits end (202): the slots come back; the same 3 can park again.
  assert.deepEqual((await Promise.all(answers.splice(0))).map((r) => r.status), [202, 202, 202]);
  assert.equal(await metric('rs_api_waiters'), 0);
  park(k1); park(k1); park(k2);
  await waitFor('3 waiters parked again', async () => (await metric('rs_api_waiters')) === 3);
  assert.equal((await call('GET', `/v1/runs/${run}?wait=3`, { key: k2 })).status, 429);
  assert.deepEqual((await Promise.all(answers.splice(0))).map((r) => r.status), [202, 202, 202]);
});

test('history longer than a page: replayed in pages, live events during the replay, no gap, no duplicate', async () => {
  const run = await createRun();
  const ap = appender(run);
  await ap.append('run.created', { agent: 'manual', input: {} });
  await ap.append('run.started', { instance: 'test' });
  for (let i = 0; i < 7 * PAGE; i++) await ap.append('step.started', { step_id: `s${i}`, kind: 'transform', attempt: 1, input: {} });
  const total0 = ap.seq;
  const s = stream(run);
  await s.opened;
  assert.equal(s.status, 200);
  // Live events while the pages are being read.
  for (let i = 0; i < 40; i++) await ap.append('step.completed', { step_id: `s${i}`, attempt: 1, output: {}, duration_ms: 1 });
  await ap.append('run.completed', { output: {} });
  await s.until((ev, st) => st.ended);
  const ids = s.events.map((e) => e.id);
  assert.equal(ids.length, ap.seq, `got ${ids.length} of ${ap.seq}`);
  assert.deepEqual(ids, Array.from({ length: ap.seq }, (_, i) => i + 1));
  assert.equal(s.events.at(-1).event, 'run.completed');
  assert.ok(total0 > 6 * PAGE);
  // Resuming deep into the history (Last-Event-ID) reads from there, in pages.
  const r = stream(run, { headers: { 'Last-Event-ID': String(total0 - 3) } });
  await r.opened;
  await r.until((ev, st) => st.ended);
  assert.deepEqual(r.events.map((e) => e.id), Array.from({ length: ap.seq - total0 + 3 }, (_, i) => total0 - 2 + i));
});

test('live hub keyed by tenant and run: a forged event on runs.<other tenant>.<run> or with bad framing never reaches the watcher', async () => {
  const run = await createRun();
  const ap = appender(run);
  await ap.append('run.created', { agent: 'manual', input: {} });
  await ap.append('run.started', { instance: 'test' });
  const s = stream(run);
  await s.opened;
  await s.until((ev) => ev.length === 2);
  const droppedEvent = await metric('rs_api_live_dropped_total', '{reason="event"}');
  const droppedSubject = await metric('rs_api_live_dropped_total', '{reason="subject"}');
  // Tenant globex publishes "acme's" next event, a terminal one, on its own subject.
  await publishEvent(`runs.globex.${run}`, { runId: run, tenant: 'acme', runseq: 3, type: 'run.completed', data: { forged: 'other-tenant' } });
  // Malformed framing on acme's own subject: CR/LF in the CloudEvent type
  // (no header: NATS headers cannot carry them), an unknown type, header and
  // CloudEvent type disagreeing, a raw CR between JSON tokens.
  await publishEvent(`runs.acme.${run}`, { runId: run, tenant: 'acme', runseq: 3, type: 'run.completed', header: null, ceType: 'runstream.step.started\r\nevent: run.completed', data: { forged: 'crlf' } });
  await publishEvent(`runs.acme.${run}`, { runId: run, tenant: 'acme', runseq: 3, type: 'x'.repeat(200), data: { forged: 'unknown' } });
  await publishEvent(`runs.acme.${run}`, { runId: run, tenant: 'acme', runseq: 3, type: 'step.started', ceType: 'runstream.run.completed', data: { forged: 'mismatch' } });
  await js.publish(`runs.acme.${run}`, `{"runseq":3,\r"type":"runstream.run.completed","data":{"forged":"cr"}}`);
  // Subjects that are not runs.<tenant>.<uuid>.
  await publishEvent(`runs.acme.not-a-uuid`, { runId: run, tenant: 'acme', runseq: 3, type: 'run.completed' });
  await publishEvent(`runs.ACME!.${run}`, { runId: run, tenant: 'acme', runseq: 3, type: 'run.completed' });
  // Then the real event 3: in stream order after every forgery above.
  await ap.append('step.started', { step_id: 's1', kind: 'transform', attempt: 1, input: {} });
  await s.until((ev) => ev.length >= 3);
  assert.equal(s.events[2].event, 'step.started');
  assert.equal(s.events[2].data.data.step_id, 's1');
  assert.equal(s.ended, false, 'no forged terminal event ended the stream');
  await ap.append('run.completed', { output: {} });
  await s.until((ev, st) => st.ended);
  assert.deepEqual(s.events.map((e) => [e.id, e.event]), [[1, 'run.created'], [2, 'run.started'], [3, 'step.started'], [4, 'run.completed']]);
  assert.ok(!s.events.some((e) => e.data.data?.forged));
  assert.equal(await metric('rs_api_live_dropped_total', '{reason="event"}'), droppedEvent + 4);
  assert.equal(await metric('rs_api_live_dropped_total', '{reason="subject"}'), droppedSubject + 2);
});
