// bench.mjs - bench/e2e: the whole stack, measured the way a user sees it
// (issue 22, item 1). See run.sh for how to start it and docs/benchmarks.md
// ("Whole stack") for what the figures mean.
//
// The stack comes from tests/lib/stack.mjs (nats-server with a user per
// service, Postgres as the `postgres` user, streams and migrations applied
// with runctl), so it is the stack the integration tests run: every
// process is started here and stopped by pid at exit. Then:
//   - one Node device (device.mjs, its own process) offering `inc`;
//   - agent e2e-inc3: three `tool` steps calling `inc` by capability, each
//     on the previous output; output {"n": "{{steps.s3.output.n}}"};
//   - closed-loop clients (Node http, keep-alive): POST /v1/runs with
//     `Prefer: wait=30`, check the answer is 200, completed, n + 3, start
//     the next. Phases C=1 and C=64 after a warm-up;
//   - CPU per run of every process tree from /proc (utime + stime, with
//     reaped children: Postgres's backends), host busy % from /proc/stat;
//   - the raw floor of the same path on the same server (bench-e2e-floor,
//     and a WebSocket echo for the device hops);
//   - cold start: one run after COLD_S seconds without traffic.
// --cluster (CLUSTER=1): the same on a 3-node JetStream cluster
// (tests/lib/stack.mjs startClusterStack: three nats-server processes on
// loopback, every stream and bucket R3, the services given all three
// URLs); the floor is measured on the cluster too, into an R3 stream.
// Prints a Markdown table and writes the same figures as JSON (OUT).
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import {
  startStack, startClusterStack, startService, startProcess, stopAll, runctl, freePort, bin, logTail, BUILD, SRC,
} from '../../tests/lib/stack.mjs';

const require = createRequire(path.join(SRC, 'tests', 'package.json'));
const WebSocket = require('ws');
const { connect } = require('nats');

// ---- settings: flags (--name=value) override the environment ----------
const flags = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
  if (!m) { console.error(`bench/e2e: unknown argument ${a} (flags are --name=value)`); process.exit(2); }
  return [m[1].toUpperCase().replace(/-/g, '_'), m[2] ?? '1'];
}));
const setting = (name, full, quick) => flags[name] ?? process.env[name] ?? (QUICK ? quick : full);
const QUICK = (flags.QUICK ?? process.env.QUICK) === '1';
const CLUSTER = (flags.CLUSTER ?? process.env.CLUSTER) === '1';   // 3 nodes, R3
const TOPOLOGY = CLUSTER ? 'cluster' : 'single';
function intSetting(name, full, quick, min, max) {
  const v = Number(setting(name, full, quick));
  if (!Number.isInteger(v) || v < min || v > max) {
    console.error(`bench/e2e: ${name} must be an integer in ${min}..${max}, got ${setting(name, full, quick)}`);
    process.exit(2);
  }
  return v;
}
const WARMUP = intSetting('WARMUP', '200', '20', 0, 1e6);       // runs, at C=8, not measured
const N1 = intSetting('N1', '300', '30', 1, 1e6);               // runs at C=1
const N64 = intSetting('N64', '3000', '300', 1, 1e7);           // runs at C=64
const C_HIGH = intSetting('C_HIGH', '64', '64', 2, 4096);       // the second concurrency
const COLD_S = intSetting('COLD_S', '60', '2', 0, 3600);        // idle seconds before the cold run
const FLOOR_RUNS = intSetting('FLOOR_RUNS', '10000', '1000', 10, 1e6);
const PG_SAMPLE_MS = intSetting('PG_SAMPLE_MS', '20', '20', 0, 10000);  // Postgres sampler period
const WAIT_S = 30;                                              // Prefer: wait=30
const OUT_DEFAULT = path.join(SRC, CLUSTER ? 'bench/e2e/last-cluster.json' : 'bench/e2e/last.json');
const OUT = setting('OUT', OUT_DEFAULT, OUT_DEFAULT);
const TENANT = 'bench';
const DEVICE = 'e2e-dev';

const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN);
const r1 = (x) => Math.round(x * 10) / 10;
const r2 = (x) => Math.round(x * 100) / 100;

// ---- /proc: CPU of process trees, host busy ----------------------------
// ticks of every process: own utime+stime and its reaped children's
// (cutime+cstime), by pid, with the parent pid to build trees.
function procTable() {
  const t = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let s;
    try { s = fs.readFileSync(`/proc/${d}/stat`, 'utf8'); } catch { continue; }   // gone meanwhile
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');   // f[0] = state (field 3)
    t.set(Number(d), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
  }
  return t;
}
// Sum of ticks over the tree rooted at each root pid (or at each pid of an
// array: the three nodes of a cluster count as one "nats-server"). A child
// that exits between two snapshots moves from its own entry to its
// parent's reaped counters, so deltas stay right (Postgres backends come
// and go).
function treeTicks(roots) {
  const t = procTable();
  const kids = new Map();
  for (const [pid, p] of t) { if (!kids.has(p.ppid)) kids.set(p.ppid, []); kids.get(p.ppid).push(pid); }
  const out = {};
  for (const [name, root] of Object.entries(roots)) {
    let sum = 0;
    const todo = [].concat(root);
    while (todo.length) {
      const pid = todo.pop();
      const p = t.get(pid);
      if (!p) continue;
      sum += p.ticks;
      todo.push(...(kids.get(pid) || []));
    }
    out[name] = sum;
  }
  return out;
}
function hostTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { total, busy: total - f[3] - f[4] };   // minus idle, iowait
}
function clientTicks() {
  const u = process.cpuUsage();
  return ((u.user + u.system) / 1e6) * HZ;
}

// What Postgres's backends are doing, sampled: every PG_SAMPLE_MS (20 ms;
// 0 = off; its cost shows in the client's CPU) each backend's
// process title (`postgres: user db host(port) TRUNCATE TABLE`: the command
// it runs now). The share of samples per command, counting only backends
// that were not idle, is a wall-time profile of the server's work (not
// CPU: `idle in transaction` is a backend waiting for its client with a
// transaction open). Cheap: ~15 processes read via the postmaster's
// children list, no extension in the server.
function pgSampler(postmaster) {
  const seen = {};
  const tick = () => {
    let kids;
    try { kids = fs.readFileSync(`/proc/${postmaster}/task/${postmaster}/children`, 'utf8').trim().split(' ').filter(Boolean); } catch { return; }
    for (const pid of kids) {
      let title;
      try { title = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim(); } catch { continue; }   // gone
      const m = /^postgres: \S+ \S+ \S+\(\d+\) (.*)$/.exec(title);
      if (!m) continue;   // a background process (walwriter, checkpointer...)
      const cmd = m[1].replace(/ waiting$/, '');
      if (cmd !== 'idle') seen[cmd] = (seen[cmd] || 0) + 1;
    }
  };
  const iv = PG_SAMPLE_MS ? setInterval(tick, PG_SAMPLE_MS) : null;
  return {
    stop() {
      if (iv) clearInterval(iv);
      const total = Object.values(seen).reduce((x, y) => x + y, 0) || 1;
      return Object.fromEntries(Object.entries(seen).sort((x, y) => y[1] - x[1])
        .map(([k, v]) => [k, Math.round((100 * v) / total)]));
    },
  };
}

// ---- the closed-loop client -------------------------------------------
let apiPort;
let apiKey;
function postRun(agentReq, n, wait) {
  const body = JSON.stringify({ agent: 'e2e-inc3', input: { n } });
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.request({
      host: '127.0.0.1', port: apiPort, path: '/v1/runs', method: 'POST', agent: agentReq,
      headers: {
        Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(body), ...(wait ? { Prefer: `wait=${WAIT_S}` } : {}),
      },
      timeout: (WAIT_S + 5) * 1000,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const ms = performance.now() - t0;
        let j = null;
        try { j = JSON.parse(Buffer.concat(chunks).toString()); } catch { /* not JSON */ }
        let error = null;
        if (res.statusCode === 202) error = 'timeout (202 after the wait)';
        else if (res.statusCode !== 200) error = `http ${res.statusCode}${j?.detail ? ': ' + String(j.detail).slice(0, 120) : ''}`;
        else if (j?.status !== 'completed') error = `status ${j?.status}`;
        else if (j?.output?.n !== n + 3) error = 'wrong output';
        resolve({ ms, error, run: j });
      });
      res.on('error', (e) => resolve({ ms: performance.now() - t0, error: `response: ${e.message}` }));
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', (e) => resolve({ ms: performance.now() - t0, error: e.message === 'client timeout' ? 'timeout (client)' : `request: ${e.message}` }));
    req.end(body);
  });
}

// C workers, each starting its next run when the previous one answered.
async function closedLoop(c, n) {
  const agentReq = new http.Agent({ keepAlive: true, maxSockets: c, maxFreeSockets: c });
  const lat = [];
  const inLog = [];
  const errors = {};
  const answered = [];   // { run, sent, answered } wall-clock ms, for the timeline
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async () => {
    while (next < n) {
      next++;
      const input = crypto.randomInt(0, 1e9);
      const sent = performance.timeOrigin + performance.now();
      const r = await postRun(agentReq, input, true);
      if (r.error) { errors[r.error] = (errors[r.error] || 0) + 1; continue; }
      lat.push(r.ms);
      answered.push({ run: r.run.run_id, sent, answered: sent + r.ms });
      const c0 = Date.parse(r.run.created_at);
      const f0 = Date.parse(r.run.finished_at);
      if (Number.isFinite(c0) && Number.isFinite(f0)) inLog.push(f0 - c0);
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  agentReq.destroy();
  lat.sort((a, b) => a - b);
  inLog.sort((a, b) => a - b);
  return { runs: n, ok: lat.length, secs, lat, inLog, errors, answered };
}

// ---- helpers on the stack ---------------------------------------------
async function metricsOf(port) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = {};
  for (const line of text.split('\n')) {
    const x = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (x) m[x[1] + (x[2] || '')] = Number(x[3]);
  }
  return m;
}
const sumOf = (m, name) => Object.entries(m).filter(([k]) => k === name || k.startsWith(`${name}{`)).reduce((a, [, v]) => a + v, 0);

// Every consumer of the streams a run moves through has nothing left to
// do: the work the runs caused (projector, executor, late acks) is inside
// the CPU figures. TIMERS is left out: each tool step leaves a timeout
// timer due 30 s later (counted separately).
async function settle(jsm, timeoutMs = 120000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let busy = 0;
    for (const stream of ['CMDS', 'TOOLCALLS', 'RUNS']) {
      for await (const ci of jsm.consumers.list(stream)) {
        // Ordered consumers (the api's) are ephemeral and never far behind;
        // an entry can be null when its consumer went away while listing.
        if (!ci?.config?.durable_name) continue;
        busy += ci.num_pending + ci.num_ack_pending;
      }
    }
    if (busy === 0) return;
    if (Date.now() > deadline) throw new Error(`consumers still have ${busy} messages after ${timeoutMs} ms`);
    await sleep(50);
  }
}

// ---- the raw floor ------------------------------------------------------
// Sequential hops of one run of S tool steps (docs/architecture.md, "The
// flow of one run", docs/devices.md "Router architecture"):
//   round trips awaited (a JetStream publish or KV write and its ack):
//     api: agent `latest` KV get, registry + run.start publish (in parallel)   2
//     orchestrator, first decision: append events, publish effects            2
//     per step: router intake KV create, claim CAS, result CAS,
//               tool.result publish to CMDS                                    4
//     per step: orchestrator append, then effects (not after the last step)   2 (1)
//   one-way deliveries (a message reaching a waiting consumer):
//     run.start to the orchestrator                                            1
//     per step: tool call to the router, KV watch update to the router,
//               tool.result to the orchestrator                                3
//     the terminal event to the api                                            1
//   WebSocket round trips router -> device -> router: one per step.
function hops(steps) {
  return { round_trips: 2 + 2 + steps * 6 - 1, one_way: 2 + steps * 3, websocket: steps };
}

async function wsEchoRtt(samples) {
  const wss = new WebSocket.Server({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise((r) => wss.on('listening', r));
  wss.on('connection', (s) => s.on('message', (d) => s.send(d)));
  const ws = new WebSocket(`ws://127.0.0.1:${wss.address().port}`, { perMessageDeflate: false });
  await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
  const lat = [];
  let pending;
  ws.on('message', () => pending());
  for (let i = -200; i < samples; i++) {
    const t0 = performance.now();
    await new Promise((r) => { pending = r; ws.send('{"type":"tool.result","call_id":"x","output":{"n":1}}'); });
    if (i >= 0) lat.push(performance.now() - t0);
  }
  ws.close();
  wss.close();
  lat.sort((a, b) => a - b);
  return { p50_ms: pct(lat, 0.5), p99_ms: pct(lat, 0.99) };
}

function runFloor(env, events, bytes) {
  const out = execFileSync(path.join(BUILD, 'bench/e2e/bench-e2e-floor'),
    [String(events), String(bytes), String(FLOOR_RUNS)], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 300000 });
  const f = {};
  for (const line of out.trim().split('\n')) { const [k, v] = line.split(' '); f[k] = Number(v); }
  return f;
}

// The events of one run as stored in RUNS: count, types, mean payload size.
async function runEvents(js, runId) {
  const oc = await js.consumers.get('RUNS', { filterSubjects: `runs.${TENANT}.${runId}` });
  const evs = [];
  const it = await oc.fetch({ max_messages: 1000, expires: 5000 });
  for await (const m of it) {
    const ce = JSON.parse(m.string());
    evs.push({ type: ce.type.replace(/^runstream\./, ''), time: Date.parse(ce.time), bytes: m.data.length });
    if (m.info.pending === 0) break;
  }
  return evs;
}

// Where the time of a run goes, from the client's clock and the events'
// `time` (the orchestrator's, millisecond resolution, same host clock):
// mean ms per segment over the last `k` runs of a phase. The segments add
// up to the client's latency.
async function timeline(js, answered, k) {
  const seg = {};
  const add = (name, ms) => { seg[name] = (seg[name] || 0) + ms; };
  const sample = answered.slice(-k);
  for (const a of sample) {
    const evs = await runEvents(js, a.run);
    const at = (type, from = 0) => evs.findIndex((e, i) => i >= from && e.type === type);
    const created = at('run.created');
    const done = at('run.completed');
    if (created < 0 || done < 0) continue;
    add('POST -> run.created (api, CMDS, orchestrator intake)', evs[created].time - a.sent);
    let i = created;
    let prev = 'run.created';
    for (;;) {
      const req = at('tool.requested', i);
      if (req < 0) break;
      add(`${prev} -> tool.requested (orchestrator decision${prev === 'tool.completed' ? ', steps 2 and 3 together' : ''})`, evs[req].time - evs[i].time);
      const dis = at('tool.dispatched', req);
      const com = at('tool.completed', req);
      if (dis < 0 || com < 0) break;
      add('tool.requested -> tool.dispatched (TOOLCALLS, router intake and claim, tool.delivered via CMDS; 3 steps together)', evs[dis].time - evs[req].time);
      add('tool.dispatched -> tool.completed (device, result CAS, tool.result via CMDS; 3 steps together)', evs[com].time - evs[dis].time);
      i = com;
      prev = 'tool.completed';
    }
    add('tool.completed -> run.completed (last decision)', evs[done].time - evs[i].time);
    add('run.completed -> answer at the client (the wait path)', a.answered - evs[done].time);
  }
  return Object.fromEntries(Object.entries(seg).map(([kk, v]) => [kk, r2(v / sample.length)]));
}

// ---- main ---------------------------------------------------------------
const roots = {};
const load0 = os.loadavg();
const result = {
  started: new Date().toISOString(), quick: QUICK, host: { cpus: os.cpus().length, model: os.cpus()[0]?.model.trim(), hz: HZ },
  topology: TOPOLOGY,
  settings: { warmup: WARMUP, n1: N1, n_high: N64, c_high: C_HIGH, cold_s: COLD_S, floor_runs: FLOOR_RUNS, pg_sample_ms: PG_SAMPLE_MS, build: BUILD },
  load_before: load0.map(r2),
};

async function main() {
  const stack = CLUSTER ? await startClusterStack({ pg: true, replicas: 3 }) : await startStack({ pg: true });
  roots['nats-server'] = CLUSTER ? stack.nats.nodes.map((n) => n.pid) : stack.nats.pid;
  roots.postgres = stack.pg.pid;
  // Logs at warn: a log line per command would be part of what we measure.
  const env = { ...stack.env, RS_LOG_LEVEL: 'warn', RS_SECRETS_KEY: crypto.randomBytes(32).toString('hex') };
  apiKey = runctl(['keys', 'create', '--tenant', TENANT], env).stdout.trim();
  const token = runctl(['devices', 'token', '--tenant', TENANT, '--device', DEVICE], env).stdout.trim();
  if (!apiKey || !token) throw new Error('runctl keys/devices failed');

  const ports = {};
  for (const [name, envName] of [['orchestrator', 'RS_ORCHESTRATOR_OPS_PORT'], ['projector', 'RS_PROJECTOR_OPS_PORT'],
    ['executor', 'RS_EXECUTOR_OPS_PORT'], ['api', 'RS_API_PORT'], ['router', 'RS_ROUTER_PORT']]) {
    ports[name] = await freePort();
    // Defaults as a user has them, except the api's cap on parked waits
    // per key (100), raised only when C_HIGH needs more.
    const extra = name === 'api' && C_HIGH + 16 > 100 ? { RS_API_MAX_WAITS_PER_KEY: String(C_HIGH + 16) } : {};
    const p = await startService(name, { ...env, ...extra, [envName]: String(ports[name]) }, ports[name]);
    roots[name === 'router' ? 'tool-router' : name] = p.pid;
  }
  apiPort = ports.api;

  const nc = await connect({ servers: stack.nats.servers ?? stack.nats.url, ...stack.nats.creds });
  const js = nc.jetstream();
  const jsm = await nc.jetstreamManager();

  // The device, and wait for its presence (written once the router
  // accepted its hello): a watch, not a poll.
  const kvp = await js.views.kv('presence');
  const presence = await kvp.watch({ key: `${TENANT}.${DEVICE}` });
  const dev = startProcess('device', process.execPath, [path.join(SRC, 'bench/e2e/device.mjs')], {
    RS_ROUTER_URL: `ws://127.0.0.1:${ports.router}/v1/devices/connect`, RS_DEVICE_ID: DEVICE, RS_DEVICE_TOKEN: token,
  });
  roots.device = dev.pid;
  const online = (async () => { for await (const e of presence) if (e.operation === 'PUT') return; })();
  await Promise.race([online, dev.exited.then(() => { throw new Error(`device exited: ${logTail(dev)}`); }),
    sleep(20000).then(() => { throw new Error('device not online after 20 s'); })]);
  presence.stop();

  const def = {
    name: 'e2e-inc3',
    steps: [
      { id: 's1', kind: 'tool', tool: 'inc', capability: true, args: { n: '{{input.n}}' } },
      { id: 's2', kind: 'tool', tool: 'inc', capability: true, args: { n: '{{steps.s1.output.n}}' } },
      { id: 's3', kind: 'tool', tool: 'inc', capability: true, args: { n: '{{steps.s2.output.n}}' } },
    ],
    output: { n: '{{steps.s3.output.n}}' },
  };
  const pushed = await fetch(`http://127.0.0.1:${apiPort}/v1/agents`, {
    method: 'POST', headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' }, body: JSON.stringify(def),
  });
  if (pushed.status !== 201 && pushed.status !== 200) throw new Error(`agent push: ${pushed.status} ${await pushed.text()}`);

  // One run checked by hand first: if this fails nothing else means anything.
  const first = await postRun(new http.Agent({ keepAlive: false }), 41, true);
  if (first.error) throw new Error(`first run: ${first.error}: ${JSON.stringify(first.run)}`);
  const evs = await runEvents(js, first.run.run_id);
  const evBytes = Math.round(evs.reduce((a, e) => a + e.bytes, 0) / evs.length);
  result.run_shape = { events: evs.length, mean_event_bytes: evBytes, types: evs.map((e) => e.type) };

  if (WARMUP > 0) {
    const w = await closedLoop(8, WARMUP);
    result.warmup = { runs: WARMUP, errors: w.errors, secs: r2(w.secs) };
  }
  await settle(jsm);

  const phases = [];
  for (const c of [1, C_HIGH]) {
    const n = c === 1 ? N1 : N64;
    const m0 = await metricsOf(ports.orchestrator);
    const cpu0 = treeTicks(roots);
    const h0 = hostTicks();
    const cl0 = clientTicks();
    const pgs = pgSampler(roots.postgres);
    const r = await closedLoop(c, n);
    const h1 = hostTicks();
    // A process that died explains errors better than their count.
    const died = Object.entries(roots).filter(([, pids]) => [].concat(pids).some((pid) => { try { process.kill(pid, 0); return false; } catch { return true; } })).map(([k]) => k);
    const cl1 = clientTicks();
    const cpuW = treeTicks(roots);
    await settle(jsm);
    const cpu1 = treeTicks(roots);
    const pgCmds = pgs.stop();
    const m1 = await metricsOf(ports.orchestrator);
    const perRun = {};
    let total = 0;
    for (const k of Object.keys(roots)) {
      perRun[k] = r2(((cpu1[k] - cpu0[k]) / HZ) * 1000 / n);
      total += cpu1[k] - cpu0[k];
    }
    const stackW = Object.keys(roots).reduce((a, k) => a + (cpuW[k] - cpu0[k]), 0);
    const errors = Object.values(r.errors).reduce((a, b) => a + b, 0);
    phases.push({
      timeline_ms: await timeline(js, r.answered, 20),
      // The tail: the same split for the 10 slowest runs of the phase.
      timeline_slowest_ms: await timeline(js, [...r.answered].sort((a, b) => (a.answered - a.sent) - (b.answered - b.sent)), 10),
      postgres_busy_pct_by_command: pgCmds,
      concurrency: c, runs: n, died, ok: r.ok, errors, error_kinds: r.errors, secs: r2(r.secs),
      runs_per_s: r1(r.ok / r.secs),
      p50_ms: r2(pct(r.lat, 0.5)), p95_ms: r2(pct(r.lat, 0.95)), p99_ms: r2(pct(r.lat, 0.99)), max_ms: r2(r.lat[r.lat.length - 1]),
      in_log_p50_ms: r2(pct(r.inLog, 0.5)), in_log_p99_ms: r2(pct(r.inLog, 0.99)),
      cpu_ms_per_run: perRun, cpu_ms_per_run_total: r2(((total / HZ) * 1000) / n),
      client_cpu_ms_per_run: r2((((cl1 - cl0) / HZ) * 1000) / n),
      host_busy_pct: r1((100 * (h1.busy - h0.busy)) / (h1.total - h0.total)),
      // Host CPU in the window spent neither by the stack nor by the
      // client: what else ran on this shared machine meanwhile.
      other_busy_pct: r1((100 * (h1.busy - h0.busy - stackW - (cl1 - cl0))) / (h1.total - h0.total)),
      events_appended_per_run: r1((sumOf(m1, 'rs_orch_events_appended_total') - sumOf(m0, 'rs_orch_events_appended_total')) / n),
      timers_fired: sumOf(m1, 'rs_orch_timers_fired_total') - sumOf(m0, 'rs_orch_timers_fired_total'),
      redeliveries: sumOf(m1, 'rs_orch_redeliveries_total') - sumOf(m0, 'rs_orch_redeliveries_total'),
    });
    if (died.length) process.stderr.write(`phase C=${c}: processes gone: ${died.join(', ')}\n`);
    process.stderr.write(`phase C=${c}: ${phases.at(-1).runs_per_s} runs/s, p50 ${phases.at(-1).p50_ms} ms, p99 ${phases.at(-1).p99_ms} ms, errors ${errors}\n`);
  }
  result.phases = phases;

  // The raw floor, same server, while the stack idles.
  const f = runFloor({ ...stack.nats.env, E2EFLOOR_REPLICAS: CLUSTER ? '3' : '1' }, evs.length, evBytes);
  const ws = await wsEchoRtt(2000);
  const h = hops(3);
  result.floor = {
    hops: h,
    natsgc_ours: f.natsgc_ours === 1,
    core_rtt_p50_ms: f.core_rtt_asap_p50_us / 1000, core_rtt_p99_ms: f.core_rtt_asap_p99_us / 1000,
    oneway_p50_ms: f.oneway_asap_p50_us / 1000,
    // The same with nats.c's default buffering, as every service connects:
    // its flusher waits 1 ms before writing a lone publish (floor.c).
    core_rtt_buffered_p50_ms: f.core_rtt_buffered_p50_us / 1000, oneway_buffered_p50_ms: f.oneway_buffered_p50_us / 1000,
    js_sync_p50_ms: f.js_sync_p50_us / 1000, js_sync_p99_ms: f.js_sync_p99_us / 1000,
    ws_rtt_p50_ms: r2(ws.p50_ms), ws_rtt_p99_ms: r2(ws.p99_ms),
    // The brief's figure: every sequential hop priced at one core NATS
    // request-reply; then the same hops priced as what they are.
    latency_core_rtt_x_hops_ms: r2((f.core_rtt_asap_p50_us / 1000) * (h.round_trips + h.one_way + h.websocket)),
    latency_priced_ms: r2((h.round_trips * f.js_sync_p50_us + h.one_way * f.oneway_asap_p50_us) / 1000 + h.websocket * ws.p50_ms),
    async_events: f.async_msgs, async_failed: f.async_failed, async_msgs_per_s: f.async_msgs_per_s,
    events_per_run: evs.length, event_bytes: evBytes, runs_per_s: f.async_runs_per_s,
  };


  // Cold start: nothing for COLD_S seconds, then one run.
  await settle(jsm);
  const coldCpu0 = treeTicks(roots);
  await sleep(COLD_S * 1000);
  const coldCpu1 = treeTicks(roots);
  const coldSent = performance.timeOrigin + performance.now();
  const cold = await postRun(new http.Agent({ keepAlive: true }), 7, true);
  const warmSent = performance.timeOrigin + performance.now();
  const warmAfter = await postRun(new http.Agent({ keepAlive: true }), 8, true);
  // Where the cold run's time went, beside the warm run right after it.
  const segs = async (r, sent) => (r.error || !r.run ? null
    : timeline(js, [{ run: r.run.run_id, sent, answered: sent + r.ms }], 1));
  result.cold = {
    idle_s: COLD_S, ms: r2(cold.ms), error: cold.error, next_run_ms: r2(warmAfter.ms),
    timeline: await segs(cold, coldSent), next_run_timeline: await segs(warmAfter, warmSent),
    // What the stack burns doing nothing (fetch loops, heartbeats), per second.
    idle_cpu_ms_per_s: Object.fromEntries(Object.keys(roots).map((k) => [k, COLD_S ? r2(((coldCpu1[k] - coldCpu0[k]) / HZ) * 1000 / COLD_S) : null])),
  };
  result.load_after = os.loadavg().map(r2);
  result.finished = new Date().toISOString();
  await nc.close();
}

function table(res) {
  const L = [];
  const p = res.phases;
  const where = res.topology === 'cluster' ? 'cluster: 3 nats-server nodes, every stream R3' : 'single nats-server';
  L.push(`## Whole stack: a 3-step run, start -> result (${where}; ${res.started.slice(0, 10)}, ${res.host.cpus} cores, ${res.host.model})`);
  L.push('');
  L.push(`load average before ${res.load_before.join(' ')}, after ${res.load_after.join(' ')}; run shape: ${res.run_shape.events} events, ${res.run_shape.mean_event_bytes} bytes mean payload`);
  L.push('');
  L.push('| phase | topology | runs | runs/s | p50 ms | p95 ms | p99 ms | max ms | in log p50 ms | errors | CPU ms/run (stack) | host busy % | other processes % |');
  L.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const x of p) {
    L.push(`| C=${x.concurrency} | ${res.topology} | ${x.runs} | ${x.runs_per_s} | ${x.p50_ms} | ${x.p95_ms} | ${x.p99_ms} | ${x.max_ms} | ${x.in_log_p50_ms} | ${x.errors}${x.errors ? ' ' + JSON.stringify(x.error_kinds) : ''} | ${x.cpu_ms_per_run_total} | ${x.host_busy_pct} | ${x.other_busy_pct} |`);
  }
  L.push(`| cold start (after ${res.cold.idle_s} s idle) | ${res.topology} | 1 | | ${res.cold.ms} | | | | | ${res.cold.error ? 1 : 0} | | | |`);
  L.push('');
  if (res.cold.timeline) {
    L.push(`Where the cold run's time went (ms; the warm run right after it in brackets): ${Object.entries(res.cold.timeline).map(([k, v]) => `${k.replace(/ \(.*/, '')} ${v} [${res.cold.next_run_timeline?.[k] ?? '?'}]`).join('; ')}.`);
    L.push('');
  }
  L.push(`The run right after the cold one: ${res.cold.next_run_ms} ms. Tool-timeout timers fired (30 s after each step, of earlier runs) during the phases: ${p.map((x) => `C=${x.concurrency} ${x.timers_fired}`).join(', ')}; events appended per run: ${p.map((x) => x.events_appended_per_run).join(', ')}; redelivered commands: ${p.map((x) => x.redeliveries).join(', ')}.`);
  L.push('');
  if (res.cold.idle_s) {
    L.push(`CPU while idle (the ${res.cold.idle_s} s before the cold run), ms per second: ${Object.entries(res.cold.idle_cpu_ms_per_s).map(([k, v]) => `${k} ${v}`).join(', ')}.`);
    L.push('');
  }
  for (const x of p) {
    L.push(`Where the time goes at C=${x.concurrency} (mean ms over the phase's last 20 runs; event times have 1 ms resolution):`);
    L.push('');
    for (const [k, v] of Object.entries(x.timeline_ms)) L.push(`- ${k}: ${v} (10 slowest runs: ${x.timeline_slowest_ms[k] ?? '-'})`);
    L.push('');
  }
  for (const x of p) {
    if (!res.settings.pg_sample_ms) break;
    L.push(`Postgres backends seen busy at C=${x.concurrency}, by command (% of busy samples every ${res.settings.pg_sample_ms} ms): ${Object.entries(x.postgres_busy_pct_by_command).slice(0, 8).map(([k, v]) => `${k} ${v}`).join(', ')}.`);
  }
  L.push('');
  L.push(`CPU ms per run by process tree (window + until every durable consumer is drained):`);
  L.push('');
  const names = Object.keys(p[0].cpu_ms_per_run);
  L.push(`| concurrency | ${names.join(' | ')} | total | client (not in total) |`);
  L.push(`| --- | ${names.map(() => '---').join(' | ')} | --- | --- |`);
  for (const x of p) L.push(`| C=${x.concurrency} | ${names.map((n) => x.cpu_ms_per_run[n]).join(' | ')} | ${x.cpu_ms_per_run_total} | ${x.client_cpu_ms_per_run} |`);
  L.push('');
  const f = res.floor;
  L.push(`Raw floor, same ${res.topology === 'cluster' ? 'cluster (R3 stream)' : 'server'} (C, send-asap): core request-reply p50 ${f.core_rtt_p50_ms} ms, one-way ${f.oneway_p50_ms} ms; JetStream publish+ack p50 ${f.js_sync_p50_ms} ms; WebSocket echo (Node) p50 ${f.ws_rtt_p50_ms} ms.`);
  L.push(`With nats.c's default buffering (how the services connect): request-reply p50 ${f.core_rtt_buffered_p50_ms} ms, one-way ${f.oneway_buffered_p50_ms} ms.`);
  L.push(`Hops of one run: ${f.hops.round_trips} awaited round trips + ${f.hops.one_way} one-way deliveries + ${f.hops.websocket} WebSocket round trips:`);
  L.push(`floor latency = core RTT x ${f.hops.round_trips + f.hops.one_way + f.hops.websocket} hops = **${f.latency_core_rtt_x_hops_ms} ms**; priced per kind of hop = **${f.latency_priced_ms} ms**.`);
  L.push(`Async JetStream publish of ${f.events_per_run} events x ${f.event_bytes} bytes per run: ${f.async_msgs_per_s} msg/s = **${f.runs_per_s} runs/s** floor.`);
  L.push('');
  const c1 = p[0];
  const ch = p[1];
  const goals = [
    ['C=1 p50 <= 4 ms', c1.p50_ms, c1.p50_ms <= 4],
    ['C=1 p99 <= 10 ms', c1.p99_ms, c1.p99_ms <= 10],
    [`C=${ch.concurrency} >= 1,000 runs/s`, ch.runs_per_s, ch.runs_per_s >= 1000],
    [`C=${ch.concurrency} p99 <= 150 ms`, ch.p99_ms, ch.p99_ms <= 150],
    [`CPU <= 1.5 ms per run (C=${ch.concurrency})`, ch.cpu_ms_per_run_total, ch.cpu_ms_per_run_total <= 1.5],
    ['cold start <= 20 ms', res.cold.ms, res.cold.ms <= 20],
    ['zero errors', p.reduce((a, x) => a + x.errors, 0) + (res.cold.error ? 1 : 0), p.every((x) => !x.errors) && !res.cold.error],
  ];
  L.push('| goal | measured | |');
  L.push('| --- | --- | --- |');
  for (const [g, v, ok] of goals) L.push(`| ${g} | ${v} | ${ok ? 'met' : '**missed**'} |`);
  return L.join('\n');
}

let code = 0;
try {
  await main();
  fs.writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
  console.log(table(result));
  console.log(`\n(JSON: ${OUT})`);
} catch (e) {
  console.error(`bench/e2e failed: ${e.stack || e}`);
  code = 1;
} finally {
  await stopAll();
}
process.exit(code);
