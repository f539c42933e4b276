// consume.test.mjs - common/rs_consume.c (the one JetStream consumer loop)
// against a real nats-server, through tests/consume/probe.c: a message
// stored after several idle request lifetimes reaches the callback at once,
// an idle consumer sends one pull request per lifetime (no fetch spinning),
// every disposition does what it says, SIGTERM stops a loop that is inside
// a long pull request at once; the same in the overlapping mode.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import readline from 'node:readline';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { connect, AckPolicy } from 'nats';
import { startNats, BUILD, stopAll } from '../lib/stack.mjs';

const probes = [];
after(() => { for (const p of probes) if (p.exitCode === null) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } } });
after(stopAll);

let nats, nc, js;
const natsOpts = { auth: false };
before(async () => {
  nats = await startNats(natsOpts);
  nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: 'PROBE', subjects: ['probe.>'], storage: 'file' });
  // A short AckWait: 2.9 re-checks nak delays on the AckWait timer.
  await jsm.consumers.add('PROBE', {
    durable_name: 'probe', ack_policy: AckPolicy.Explicit, ack_wait: 1e9, max_deliver: 4,
  });
  js = nc.jetstream();
});
after(async () => { if (nc) await nc.close(); });

// Start the probe; lines are JSON events, awaited by predicate.
function startProbe(env = {}) {
  const proc = spawn(path.join(BUILD, 'tests/consume/rs-consume-probe'), ['PROBE', 'probe', 'probe.>'], {
    env: { ...process.env, RS_NATS_URL: nats.url, RS_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  probes.push(proc);
  const p = { proc };
  const events = [];
  const waiters = [];
  readline.createInterface({ input: p.proc.stdout }).on('line', (line) => {
    let ev;
    try { ev = JSON.parse(line); } catch { return; }
    ev.at = Date.now();
    events.push(ev);
    for (const w of [...waiters]) if (w.pred(ev)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(ev); }
  });
  const next = (what, pred, ms = 10000) => new Promise((resolve, reject) => {
    const hit = events.find((e) => pred(e) && !e.seen);
    if (hit) { hit.seen = true; resolve(hit); return; }
    const w = { pred: (e) => { if (pred(e)) { e.seen = true; return true; } return false; }, resolve };
    waiters.push(w);
    setTimeout(() => reject(new Error(`probe: no ${what} within ${ms} ms; saw ${JSON.stringify(events.slice(-5))}`)), ms);
  });
  return { p, events, next };
}

// The loop's two modes: one fetch at a time, and the overlapping requests
// of the tool-router's intake (rs_consume.h).
const MODES = [['one fetch', {}], ['overlapping', { RS_PROBE_OVERLAP: '3' }]];

const pub = async (body) => (await js.publish(`probe.t.${body.replace(/[^a-z0-9]/g, '_')}`, new TextEncoder().encode(body))).seq;

for (const [mode, modeEnv] of MODES) {
test(`${mode}: after several idle request lifetimes a message reaches the callback at once; idle costs one request per lifetime`, async () => {
  // Request lifetime 2 s (30 s in production): 6 s idle is 3 lifetimes.
  const probe = startProbe({ RS_CONSUME_EXPIRES_MS: '2000', RS_CONSUME_HEARTBEAT_MS: '500', ...modeEnv });
  await probe.next('ready', (e) => e.ready);
  const first = await probe.next('status', (e) => e.requests !== undefined);
  await new Promise((r) => setTimeout(r, 6000));
  const idle = await probe.next('status', (e) => e.requests !== undefined && e.at > first.at + 5900);
  // ~1 request per lifetime (0.5/s); a Fetch loop of 500 ms sends 2/s.
  const perSecond = (idle.requests - first.requests) / ((idle.at - first.at) / 1000);
  console.log(`idle pull requests per second: ${perSecond.toFixed(2)}`);
  assert.ok(perSecond <= 1.0, `idle pull requests per second: ${perSecond}`);
  const lat = [];
  for (let i = 0; i < 5; i++) {
    // Each after an idle lifetime and a half: never inside a fresh request.
    await new Promise((r) => setTimeout(r, 3000));
    const seq = await pub(`ack-${i}`);
    const ev = await probe.next(`message ${seq}`, (e) => e.seq === seq, 5000);
    lat.push(ev.lat_ms);
  }
  // Stored -> callback, by the server's store time (same host clock).
  console.log(`stored -> callback after idleness, ms: ${lat}`);
  // A lapsed request or a fetch wait costs hundreds of ms (or the 2 s
  // lifetime); scheduling on a loaded 2-core host costs tens at worst.
  const sorted = [...lat].sort((x, y) => x - y);
  assert.ok(sorted[2] < 25 && sorted[4] < 250, `latencies after idleness: ${lat}`);
  probe.p.proc.kill('SIGTERM');
  await probe.next('stopped', (e) => e.stopped);
});

test(`${mode}: dispositions: ack, nak, nak with delay, term, taken, drop`, async () => {
  const probe = startProbe(modeEnv);
  await probe.next('ready', (e) => e.ready);
  const ack = await pub('ack');
  const nak = await pub('nak');
  const delay = await pub('delay:1500');
  const term = await pub('term');
  const taken = await pub('taken');
  const drop = await pub('drop');
  for (const s of [ack, nak, delay, term, taken, drop]) await probe.next(`first delivery of ${s}`, (e) => e.seq === s && e.dc === 1);
  const t0 = Date.now();
  // nak: back at once; it is nak'd again each time until max_deliver (4).
  await probe.next('nak redelivered', (e) => e.seq === nak && e.dc === 2, 3000);
  // drop: unsettled, back after AckWait (1 s).
  await probe.next('drop redelivered', (e) => e.seq === drop && e.dc === 2, 5000);
  // delay: not before its delay.
  const d = await probe.next('delayed redelivery', (e) => e.seq === delay && e.dc === 2, 8000);
  assert.ok(d.at - t0 >= 1400, `nak delay 1500 ms came back after ${d.at - t0} ms`);
  await new Promise((r) => setTimeout(r, 2500));
  // ack, term, taken (acked later by another thread): never again.
  for (const s of [ack, term, taken]) {
    assert.equal(probe.events.filter((e) => e.seq === s).length, 1, `seq ${s} delivered again`);
  }
  const jsm = await nc.jetstreamManager();
  const ci = await jsm.consumers.info('PROBE', 'probe');
  assert.ok(ci.ack_floor.stream_seq >= ack, 'acked');
  probe.p.proc.kill('SIGTERM');
  await probe.next('stopped', (e) => e.stopped);
});
}

test('SIGTERM inside a 30 s pull request stops the loop at once', async () => {
  const probe = startProbe();   // production lifetime: 30 s
  await probe.next('ready', (e) => e.ready);
  await new Promise((r) => setTimeout(r, 1000));
  probe.p.proc.kill('SIGTERM');
  const st = await probe.next('stopped', (e) => e.stopped, 5000);
  assert.ok(st.stop_ms < 1000, `stop took ${st.stop_ms} ms`);
  const code = await new Promise((r) => (probe.p.proc.exitCode !== null ? r(probe.p.proc.exitCode) : probe.p.proc.on('exit', r)));
  assert.equal(code, 0);
  // A message stored after the stop waits for the next consumer, not lost.
  const seq = await pub('after-stop');
  const again = startProbe();
  await again.next('after-stop delivered to the next consumer', (e) => e.seq === seq, 5000);
  again.p.proc.kill('SIGTERM');
  await again.next('stopped', (e) => e.stopped);
});

test('a malformed RS_CONSUME_EXPIRES_MS stops start-up, naming the variable', async () => {
  const proc = spawn(path.join(BUILD, 'tests/consume/rs-consume-probe'), ['PROBE', 'probe', 'probe.>'], {
    env: { ...process.env, RS_NATS_URL: nats.url, RS_CONSUME_EXPIRES_MS: '30s' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  probes.push(proc);
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((r) => proc.on('exit', r));
  assert.equal(code, 1);
  assert.match(err, /RS_CONSUME_EXPIRES_MS=30s/);
});

for (const [mode, modeEnv] of MODES) {
test(`${mode}: a pull request lost to a nats-server restart is replaced after two missed heartbeats, not after its 30 s`, async () => {
  const probe = startProbe(modeEnv);   // production settings: 30 s request, 2 s heartbeat
  await probe.next('ready', (e) => e.ready);
  await new Promise((r) => setTimeout(r, 500));
  nats = await nats.restart();   // SIGKILL, same port and store: the request is gone
  const t0 = Date.now();
  let seq;
  for (;;) {
    try { seq = await pub('after-restart'); break; } catch { await new Promise((r) => setTimeout(r, 100)); }
    assert.ok(Date.now() - t0 < 15000, 'JetStream back within 15 s');
  }
  const stored = Date.now();
  const ev = await probe.next('delivery after the restart', (e) => e.seq === seq, 15000);
  console.log(`stored -> callback after a server restart: ${ev.at - stored} ms`);
  // 2 missed heartbeats (4 s) plus the client's reconnect; a lost 30 s
  // request would take up to 30 s.
  assert.ok(ev.at - stored < 9000, `${ev.at - stored} ms`);
  probe.p.proc.kill('SIGTERM');
  await probe.next('stopped', (e) => e.stopped);
});
}
