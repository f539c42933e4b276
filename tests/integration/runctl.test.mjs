// runctl.test.mjs - runctl against a real nats-server: replay, export,
// --check and --at from JetStream of a run whose recorded events
// (tests/fixtures) the test appends directly into RUNS exactly as the
// orchestrator would; agents push idempotency; dlq ls/retry; tail of a
// live event; the error paths that need a server (unknown run, missing
// agent).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { connect, headers, StringCodec } from 'nats';
import { startStack, startNats, runctl, stopAll, tmpDir, bin, SRC } from '../lib/stack.mjs';

const sc = StringCodec();
const FX = path.join(SRC, 'tests', 'fixtures');
const GOLDEN = path.join(SRC, 'tests', 'unit', 'runctl', 'golden');
let stack, nc, js, env, dir;

function fixture(name) {
  const lines = fs.readFileSync(path.join(FX, name), 'utf8').split('\n').filter(Boolean);
  return { header: JSON.parse(lines[0]), events: lines.slice(1) };
}

// Append a recorded history to RUNS the way the orchestrator does.
async function appendRun(name, into = js) {
  const { header, events } = fixture(name);
  for (const line of events) {
    const ev = JSON.parse(line);
    const h = headers();
    h.set('Content-Type', 'application/cloudevents+json');
    h.set('Runstream-Type', ev.type.replace(/^runstream\./, ''));
    await into.publish(`runs.${ev.tenant}.${ev.subject}`, sc.encode(line), { msgID: ev.id, headers: h });
  }
  return header;
}

before(async () => {
  stack = await startStack({ pg: false });
  env = { ...stack.env, NO_COLOR: '1', RS_LOG_LEVEL: 'error' };
  nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  js = nc.jetstream();
  dir = tmpDir('runctl');
});

after(async () => {
  if (nc) await nc.close();
  await stopAll();
});

test('agents push twice: same version, created false the second time', () => {
  const { header } = fixture('completed.ndjson');
  const file = path.join(dir, 'order-check.json');
  fs.writeFileSync(file, JSON.stringify(header.agent, null, 2));
  const a = runctl(['agents', 'push', file, '--tenant', 'acme', '--json'], env);
  assert.equal(a.code, 0, a.stderr);
  const b = runctl(['agents', 'push', file, '--tenant', 'acme', '--json'], env);
  assert.equal(b.code, 0, b.stderr);
  const ja = JSON.parse(a.stdout), jb = JSON.parse(b.stdout);
  assert.equal(ja.created, true);
  assert.equal(jb.created, false);
  assert.equal(ja.version, jb.version);
  assert.equal(ja.version, '19c9bc8449635ee4');
  const ls = runctl(['agents', 'ls', '--tenant', 'acme', '--json'], env);
  assert.equal(ls.code, 0, ls.stderr);
  assert.deepEqual(JSON.parse(ls.stdout), [{ name: 'order-check', version: ja.version }]);
  const show = runctl(['agents', 'show', 'order-check', '--tenant', 'acme', '--json'], env);
  assert.equal(show.code, 0, show.stderr);
  assert.deepEqual(JSON.parse(show.stdout), header.agent);
  const missing = runctl(['agents', 'show', 'nope', '--tenant', 'acme'], env);
  assert.equal(missing.code, 3);
  assert.match(missing.stderr, /agent nope not found/);
});

test('replay, --at, --check and export from JetStream match the recorded history', async () => {
  const header = await appendRun('completed.ndjson');
  const id = header.run_id;
  for (const extra of [[], ['--tenant', 'acme']]) {
    const r = runctl(['replay', id, ...extra], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, fs.readFileSync(path.join(GOLDEN, 'timeline-completed.out'), 'utf8'));
  }
  const at = runctl(['replay', id, '--at', '6'], env);
  assert.equal(at.code, 0, at.stderr);
  assert.equal(at.stdout, fs.readFileSync(path.join(GOLDEN, 'at-completed-6.out'), 'utf8'));
  const check = runctl(['replay', id, '--check'], env);   // agent from KV agents
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /check ok: 17 events in 4 decisions/);
  // export embeds the agent from KV: byte-identical to the recorded file
  const ex = runctl(['export', id], env);
  assert.equal(ex.code, 0, ex.stderr);
  assert.equal(ex.stdout, fs.readFileSync(path.join(FX, 'completed.ndjson'), 'utf8'));
  const file = path.join(dir, 'run.ndjson');
  fs.writeFileSync(file, ex.stdout);
  const offline = runctl(['replay', '--file', file, '--check'], { ...env, RS_NATS_URL: 'nats://127.0.0.1:1' });
  assert.equal(offline.code, 0, offline.stderr);
});

test('diff of two runs from JetStream', async () => {
  const a = fixture('completed.ndjson').header.run_id;
  const b = (await appendRun('completed-hold.ndjson')).run_id;
  const r = runctl(['diff', a, b], env);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /paths diverge at step outcome 1 \(after 0 in common\)/);
  assert.match(r.stdout, /a +fetch#1 ok \{"paid":true,"total":129.5\}/);
  assert.match(r.stdout, /b +fetch#1 ok \{"paid":false,"total":80\}/);
});

test('unknown run: exit 3 and a clear message', () => {
  const r = runctl(['replay', '0190f5e4-7a3b-7c1d-8e2f-0000000000ff'], env);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /run 0190f5e4-7a3b-7c1d-8e2f-0000000000ff not found in stream RUNS/);
  const e = runctl(['export', '0190f5e4-7a3b-7c1d-8e2f-0000000000ff', '--tenant', 'acme'], env);
  assert.equal(e.code, 3);
});

test('dlq ls, show and retry re-drive a dead letter to its subject', async () => {
  const h = headers();
  h.set('Runstream-Dlq-Reason', 'decode: missing call_id');
  h.set('Runstream-Dlq-Subject', 'cmd.acme.0190f5e4-7a3b-7c1d-8e2f-0000000000aa');
  h.set('Runstream-Dlq-Seq', '42');
  h.set('Runstream-Dlq-Source', 'orchestrator');
  const body = '{"type":"cancel","run_id":"0190f5e4-7a3b-7c1d-8e2f-0000000000aa","tenant":"acme"}';
  const pa = await js.publish('dlq.orchestrator', sc.encode(body), { headers: h });
  const ls = runctl(['dlq', 'ls', '--json'], env);
  assert.equal(ls.code, 0, ls.stderr);
  const list = JSON.parse(ls.stdout);
  assert.equal(list.length, 1);
  assert.equal(list[0].seq, pa.seq);
  assert.equal(list[0].reason, 'decode: missing call_id');
  const show = runctl(['dlq', 'show', String(pa.seq), '--json'], env);
  assert.equal(show.code, 0, show.stderr);
  assert.equal(JSON.parse(show.stdout).data.type, 'cancel');
  const retry = runctl(['dlq', 'retry', String(pa.seq)], env);
  assert.equal(retry.code, 0, retry.stderr);
  assert.match(retry.stdout, /retried \d+ -> cmd\.acme\./);
  const jsm = await nc.jetstreamManager();
  const m = await jsm.streams.getMessage('CMDS', { last_by_subj: 'cmd.acme.0190f5e4-7a3b-7c1d-8e2f-0000000000aa' });
  assert.equal(sc.decode(m.data), body);
  const again = runctl(['dlq', 'ls', '--json'], env);
  assert.deepEqual(JSON.parse(again.stdout), []);
  const gone = runctl(['dlq', 'retry', String(pa.seq)], env);
  assert.equal(gone.code, 3);
});

test('tail receives a live event', async () => {
  const p = spawn(bin('runctl'), ['tail', '--tenant', 'acme', '--count', '1', '--for', '30', '--json'],
    { env: { ...process.env, ...env } });
  let out = '', err = '';
  p.stdout.on('data', (d) => { out += d; });
  const ready = new Promise((resolve) => p.stderr.on('data', (d) => { err += d; if (/following/.test(err)) resolve(); }));
  const exited = new Promise((resolve) => p.on('exit', resolve));
  await Promise.race([ready, exited]);
  const id = (await appendRun('signal.ndjson')).run_id;
  const code = await exited;
  assert.equal(code, 0, err);
  const ev = JSON.parse(out.split('\n')[0]);
  assert.equal(ev.subject, id);
  assert.equal(ev.runseq, 1);
});

test('tail across a nats-server restart: only what was appended after it started, in order', async () => {
  // Its own server: the restart must not disturb the other tests.
  const world = await startStack({ pg: false });
  const wenv = { ...world.env, NO_COLOR: '1', RS_LOG_LEVEL: 'error' };
  const wnc = await connect({ servers: world.nats.url, ...world.nats.creds, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const wjs = wnc.jetstream();
  await appendRun('completed.ndjson', wjs);          // history: tail must not print it
  const p = spawn(bin('runctl'), ['tail', '--tenant', 'acme', '--count', '9', '--for', '60', '--json'],
    { env: { ...process.env, ...wenv } });
  let out = '', err = '';
  p.stdout.on('data', (d) => { out += d; });
  const ready = new Promise((resolve) => p.stderr.on('data', (d) => { err += d; if (/following/.test(err)) resolve(); }));
  const exited = new Promise((resolve) => p.on('exit', resolve));
  await Promise.race([ready, exited]);
  const reconnected = (async () => {
    for await (const st of wnc.status()) if (st.type === 'reconnect') return;
  })();
  await world.nats.kill('SIGTERM');
  world.nats = await startNats({ port: world.nats.port, dir: world.nats.dir });
  await reconnected;
  const id = (await appendRun('signal.ndjson', wjs)).run_id;   // 9 events
  const code = await exited;
  assert.equal(code, 0, err);
  const got = out.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(got.map((e) => [e.subject, e.runseq]), [1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => [id, n]));
  await wnc.close();
});
