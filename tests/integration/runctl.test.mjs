// runctl.test.mjs - runctl against a real nats-server: replay, export,
// --check and --at from JetStream of a run whose recorded events
// (tests/fixtures) the test appends directly into RUNS exactly as the
// orchestrator would; agents push idempotency; dlq ls/retry; tail of a
// live event; the error paths that need a server (unknown run, missing
// agent).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { connect, headers, StringCodec } from 'nats';
import WebSocket from 'ws';
import { startStack, startNats, startService, runctl, stopAll, tmpDir, bin, freePort, SRC } from '../lib/stack.mjs';

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

test('agents push of an existing version moves latest back to it, as the API does', () => {
  const v1 = path.join(dir, 'mover-1.json'), v2 = path.join(dir, 'mover-2.json');
  fs.writeFileSync(v1, JSON.stringify({ name: 'mover', steps: [{ id: 'a', kind: 'sleep', duration_ms: 1 }] }));
  fs.writeFileSync(v2, JSON.stringify({ name: 'mover', steps: [{ id: 'a', kind: 'sleep', duration_ms: 2 }] }));
  const push = (f) => {
    const r = runctl(['agents', 'push', f, '--tenant', 'acme', '--json'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return JSON.parse(r.stdout);
  };
  const latest = () => JSON.parse(runctl(['agents', 'ls', '--tenant', 'acme', '--json'], env).stdout)
    .find((a) => a.name === 'mover').version;
  const a = push(v1), b = push(v2);
  assert.notEqual(a.version, b.version);
  assert.equal(latest(), b.version);
  const again = push(v1);                       // a rollback
  assert.equal(again.created, false);
  assert.equal(again.latest, a.version);
  assert.equal(latest(), a.version);
  // validate needs no server and agrees on the version.
  const v = runctl(['agents', 'validate', v1, '--json'], { RS_NATS_URL: 'nats://127.0.0.1:1' });
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.equal(JSON.parse(v.stdout).version, a.version);
});

test('errors in --json mode are JSON on stdout', () => {
  const r = runctl(['agents', 'show', 'nope', '--tenant', 'acme', '--json'], env);
  assert.equal(r.code, 3);
  assert.equal(r.stderr, '');
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.error.command, 'agents show');
  assert.equal(doc.error.exit, 3);
  assert.match(doc.error.message, /agent nope not found/);
  const down = runctl(['agents', 'ls', '--tenant', 'acme', '--json'], { ...env, RS_NATS_URL: 'nats://127.0.0.1:1' });
  assert.equal(down.code, 4);
  assert.match(JSON.parse(down.stdout).error.message, /cannot reach NATS/);
  const ver = runctl(['--version', '--json'], {});
  assert.equal(ver.code, 0);
  assert.match(JSON.parse(ver.stdout).version, /^\d+\.\d+\.\d+/);
});

test('keys ls and revoke: the api refuses a revoked key', async () => {
  const k = runctl(['keys', 'create', '--tenant', 'keyco', '--json'], env);
  assert.equal(k.code, 0, k.stderr);
  const { secret, id } = JSON.parse(k.stdout);
  const other = runctl(['keys', 'create', '--tenant', 'keyco'], env).stdout.trim();
  const ls = JSON.parse(runctl(['keys', 'ls', '--tenant', 'keyco', '--json'], env).stdout).keys;
  assert.deepEqual(ls.map((x) => x.id).sort(), [id, crypto.createHash('sha256').update(other).digest('hex').slice(0, 12)].sort());
  assert.ok(ls.every((x) => Number.isInteger(x.created_at)));
  const port = await freePort();
  await startService('api', { ...stack.env, RS_API_PORT: String(port), RS_API_AUTH_TTL_MS: '100', RS_LOG_LEVEL: 'warn' }, port);
  const get = (key) => fetch(`http://127.0.0.1:${port}/v1/agents`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal((await get(secret)).status, 200);
  // Another tenant cannot revoke it; an unknown id is exit 3.
  assert.equal(runctl(['keys', 'revoke', id, '--tenant', 'acme'], env).code, 3);
  const rv = runctl(['keys', 'revoke', id, '--tenant', 'keyco', '--json'], env);
  assert.equal(rv.code, 0, rv.stdout + rv.stderr);
  assert.equal(JSON.parse(rv.stdout).revoked, true);
  // Within the api's auth cache TTL (100 ms here) the key stops working.
  let status = 200;
  for (let i = 0; i < 100 && status === 200; i++) {
    status = (await get(secret)).status;
    if (status === 200) await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(status, 401);
  assert.equal((await get(other)).status, 200);
  assert.equal(runctl(['keys', 'revoke', other, '--tenant', 'keyco'], env).code, 0);   // by the key itself
  assert.deepEqual(JSON.parse(runctl(['keys', 'ls', '--tenant', 'keyco', '--json'], env).stdout).keys, []);
});

test('devices ls and revoke: the router closes the live connection at once', async () => {
  const tok = runctl(['devices', 'token', '--tenant', 'devco', '--device', 'lamp'], env).stdout.trim();
  const keep = runctl(['devices', 'token', '--tenant', 'devco', '--device', 'fan'], env).stdout.trim();
  const port = await freePort();
  await startService('router', { ...stack.env, RS_ROUTER_PORT: String(port), RS_INSTANCE_ID: `router-${port}`,
    RS_LOG_LEVEL: 'info' }, port);
  const connectDev = (device, token) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/devices/connect`, 'runstream.device.v1');
    const frames = [];
    const closed = new Promise((res) => ws.once('close', (code) => res(code)));
    ws.on('error', () => {});
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString());
      frames.push(f);
      if (f.type === 'welcome') resolve({ ws, frames, closed });
      if (f.type === 'error' && frames.length === 1) reject(new Error(JSON.stringify(f)));
    });
    ws.once('open', () => ws.send(JSON.stringify({ type: 'hello', device_id: device, token, tools: [{ name: 'echo' }] })));
  });
  const lamp = await connectDev('lamp', tok);
  const fan = await connectDev('fan', keep);
  const ls = JSON.parse(runctl(['devices', 'ls', '--tenant', 'devco', '--json'], env).stdout).devices;
  assert.deepEqual(ls.map((d) => d.device_id).sort(), ['fan', 'lamp']);
  assert.ok(ls.every((d) => d.online === true), JSON.stringify(ls));
  const rv = runctl(['devices', 'revoke', 'lamp', '--tenant', 'devco', '--json'], env);
  assert.equal(rv.code, 0, rv.stdout + rv.stderr);
  assert.equal(JSON.parse(rv.stdout).revoked, 1);
  // The live connection is closed by the router (not by the cache TTL).
  assert.equal(await lamp.closed, 4403);
  assert.ok(lamp.frames.some((f) => f.type === 'error' && f.code === 'revoked'), JSON.stringify(lamp.frames));
  // The token no longer authenticates; the other device is untouched.
  await assert.rejects(connectDev('lamp', tok), /unauthorized/);
  assert.equal(fan.ws.readyState, WebSocket.OPEN);
  assert.equal(runctl(['devices', 'revoke', 'lamp', '--tenant', 'devco'], env).code, 3);
  fan.ws.terminate();
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
