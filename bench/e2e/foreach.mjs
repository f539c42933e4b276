// foreach.mjs - bench/e2e for child runs (issue 17): a `foreach` over N tool
// calls with max_concurrency C (default 100 and 16), the way a user starts
// it: POST /v1/runs with `Prefer: wait=120`, one run at a time. The stack
// is the one bench.mjs and the integration tests use (tests/lib/stack.mjs:
// nats-server with a user per service, Postgres, the five services) and the
// same Node device process (device.mjs, `inc`). Reports, per run: wall time
// from POST to the finished answer, and per tool call: wall time and CPU
// (utime + stime of every process tree of the stack, from /proc, measured
// until the projector has caught up), which includes each element's child
// run (run.created, run.started, step, tool call, run.completed) and the
// parent's child.started / child.finished.
//
// Usage: node bench/e2e/foreach.mjs [--quick] [--runs=R] [--items=N] [--c=C]
// (RS_BUILD_DIR / RS_SRC_DIR as for the tests). QUICK: 3 runs (default 5).
// Every process it starts is stopped by pid at exit.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import {
  startStack, startService, startProcess, stopAll, runctl, freePort, logTail, SRC,
} from '../../tests/lib/stack.mjs';

const require = createRequire(path.join(SRC, 'tests', 'package.json'));
const { connect } = require('nats');

const flags = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
  if (!m) { console.error(`foreach: unknown argument ${a}`); process.exit(2); }
  return [m[1], m[2] ?? '1'];
}));
const QUICK = flags.quick === '1' || process.env.QUICK === '1';
const RUNS = Number(flags.runs ?? (QUICK ? 3 : 5));
const ITEMS = Number(flags.items ?? 100);
const CONC = Number(flags.c ?? 16);
for (const [k, v, max] of [['runs', RUNS, 1000], ['items', ITEMS, 1000], ['c', CONC, 100]]) {
  if (!Number.isInteger(v) || v < 1 || v > max) { console.error(`foreach: --${k} must be 1..${max}`); process.exit(2); }
}
const TENANT = 'bench';
const DEVICE = 'bench-dev';
const HZ = 100; // USER_HZ: /proc ticks per second on Linux
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// CPU ticks of each process tree (own + reaped children), as bench.mjs.
function treeTicks(roots) {
  const t = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let s;
    try { s = fs.readFileSync(`/proc/${d}/stat`, 'utf8'); } catch { continue; }
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    t.set(Number(d), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
  }
  const kids = new Map();
  for (const [pid, p] of t) { if (!kids.has(p.ppid)) kids.set(p.ppid, []); kids.get(p.ppid).push(pid); }
  const out = {};
  for (const [name, root] of Object.entries(roots)) {
    let sum = 0;
    const todo = [root];
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

async function main() {
  const roots = {};
  const stack = await startStack({ pg: true });
  roots['nats-server'] = stack.nats.pid;
  roots.postgres = stack.pg.pid;
  const env = { ...stack.env, RS_LOG_LEVEL: 'warn', RS_SECRETS_KEY: crypto.randomBytes(32).toString('hex') };
  const apiKey = runctl(['keys', 'create', '--tenant', TENANT], env).stdout.trim();
  const token = runctl(['devices', 'token', '--tenant', TENANT, '--device', DEVICE], env).stdout.trim();
  const ports = {};
  for (const [name, envName] of [['orchestrator', 'RS_ORCHESTRATOR_OPS_PORT'], ['projector', 'RS_PROJECTOR_OPS_PORT'],
    ['executor', 'RS_EXECUTOR_OPS_PORT'], ['api', 'RS_API_PORT'], ['router', 'RS_ROUTER_PORT']]) {
    ports[name] = await freePort();
    const p = await startService(name, { ...env, [envName]: String(ports[name]) }, ports[name]);
    roots[name] = p.pid;
  }
  const nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  const kvp = await nc.jetstream().views.kv('presence');
  const presence = await kvp.watch({ key: `${TENANT}.${DEVICE}` });
  const dev = startProcess('device', process.execPath, [path.join(SRC, 'bench/e2e/device.mjs')], {
    RS_ROUTER_URL: `ws://127.0.0.1:${ports.router}/v1/devices/connect`, RS_DEVICE_ID: DEVICE, RS_DEVICE_TOKEN: token,
  });
  roots.device = dev.pid;
  const online = (async () => { for await (const e of presence) if (e.operation === 'PUT') return; })();
  await Promise.race([online, sleep(20000).then(() => { throw new Error(`device not online: ${logTail(dev)}`); })]);
  presence.stop();

  const api = async (method, p, body, headers = {}) => {
    const r = await fetch(`http://127.0.0.1:${ports.api}${p}`, {
      method, headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : null, text };
  };
  const def = {
    name: 'e2e-foreach',
    steps: [{ id: 'each', kind: 'foreach', items: '{{input.xs}}', max_concurrency: CONC,
      steps: [{ id: 'inc', kind: 'tool', tool: 'inc', capability: true, args: { n: '{{input.item}}' } }] }],
    output: '{{steps.each.output}}',
  };
  const pushed = await api('POST', '/v1/agents', def);
  if (pushed.status !== 201 && pushed.status !== 200) throw new Error(`push: ${pushed.text}`);

  // The projector has applied everything: its rows count all runs' events.
  const settle = async () => {
    for (let i = 0; i < 600; i++) {
      const out = stack.pg.psql("SELECT count(*) FROM runs WHERE status NOT IN ('completed','failed','cancelled','timed_out')");
      if (out === '0') return;
      await sleep(50);
    }
  };
  const xs = [...Array(ITEMS).keys()];
  const one = async () => {
    const t0 = performance.now();
    const r = await api('POST', '/v1/runs', { agent: 'e2e-foreach', input: { xs } }, { 'Prefer': 'wait=120' });
    const ms = performance.now() - t0;
    if (r.status !== 200 || r.json.status !== 'completed') throw new Error(`run: ${r.status} ${r.text.slice(0, 300)}`);
    const out = r.json.output;
    if (!Array.isArray(out) || out.length !== ITEMS || out.some((o, i) => o.n !== i + 1)) throw new Error('wrong output');
    return ms;
  };
  await one(); // warm-up (and a check), not measured
  await settle();
  const walls = [];
  const load0 = os.loadavg()[0];
  const c0 = treeTicks(roots);
  for (let i = 0; i < RUNS; i++) walls.push(await one());
  await settle();
  const c1 = treeTicks(roots);
  const load1 = os.loadavg()[0];
  const calls = RUNS * ITEMS;
  const per = {};
  let total = 0;
  for (const k of Object.keys(roots)) {
    const ms = ((c1[k] - c0[k]) * 1000) / HZ;
    per[k] = Math.round((ms * 1000) / calls) / 1000;
    total += ms;
  }
  walls.sort((a, b) => a - b);
  const res = {
    runs: RUNS, items: ITEMS, max_concurrency: CONC,
    wall_ms: { p50: Math.round(walls[Math.floor(walls.length / 2)]), min: Math.round(walls[0]), max: Math.round(walls.at(-1)) },
    wall_ms_per_tool_call: Math.round((walls.reduce((a, b) => a + b, 0) / calls) * 100) / 100,
    cpu_ms_per_tool_call: Math.round((total / calls) * 100) / 100,
    cpu_ms_per_tool_call_by_process: per,
    loadavg_1m: { before: load0, after: load1 },
  };
  console.log(JSON.stringify(res, null, 2));
  await nc.close();
}

main().then(() => stopAll(), async (e) => { console.error(`foreach: ${e.stack || e}`); await stopAll(); process.exit(1); });
