// burst.mjs - a burst of runs under one concurrency key (issue 17): N runs
// (1000) of an agent with `concurrency: {key: "{{input.customer}}", limit: L}`
// (10), all for the same customer, started as fast as the api takes them;
// each run is one tool call to a Node device in this process that answers
// at once. Measures the wall time from the first POST to the last terminal
// event, the CPU per run of rs-orchestrator, rs-api, rs-tool-router and
// nats-server (/proc, utime + stime), and checks from the log that never
// more than L runs of the key were running at once (run.started ..
// terminal) and that every run completed.
//
// Usage (from the repository root):
//   RS_BUILD_DIR=$PWD/build RS_SRC_DIR=$PWD NODE_PATH=$PWD/tests/node_modules \
//     node bench/e2e/burst.mjs [--runs=1000] [--limit=10]
// Not a test. Everything it starts is stopped by pid (tests/lib/stack.mjs).
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { startStack, startService, stopAll, runctl, freePort, SRC } from '../../tests/lib/stack.mjs';
import { apiClient, device, closeAllClients, followRuns } from '../../tests/lib/clients.mjs';

const require = createRequire(path.join(SRC, 'tests', 'package.json'));
const { connect } = require('nats');
const flags = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const N = Number(flags.runs || 1000);
const LIMIT = Number(flags.limit || 10);
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

function ticks(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);   // utime + stime
}

async function main() {
  const stack = await startStack({ pg: true });
  const env = stack.env;
  const key = runctl(['keys', 'create', '--tenant', 'bench'], env).stdout.trim();
  const token = runctl(['devices', 'token', '--tenant', 'bench', '--device', 'd1'], env).stdout.trim();
  const procs = {};
  let port = await freePort();
  procs.orchestrator = await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(port), RS_LOG_LEVEL: 'warn' }, port);
  port = await freePort();
  procs.api = await startService('api', { ...env, RS_API_PORT: String(port), RS_LOG_LEVEL: 'warn' }, port);
  const api = apiClient(`http://127.0.0.1:${port}`, key);
  port = await freePort();
  procs.router = await startService('router', { ...env, RS_ROUTER_PORT: String(port), RS_LOG_LEVEL: 'warn' }, port);
  const dev = device(`ws://127.0.0.1:${port}/v1/devices/connect`, { deviceId: 'd1', token, tools: ['echo'] });
  await dev.welcomed;
  const r = await api('POST', '/v1/agents', {
    name: 'burst', concurrency: { key: '{{input.customer}}', limit: LIMIT },
    steps: [{ id: 'work', kind: 'tool', tool: 'echo', args: { i: '{{input.i}}' }, timeout_s: 600 }],
  });
  if (r.status !== 201) throw new Error(r.text);

  const nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  const js = nc.jetstream();
  let running = 0; let maxRunning = 0; let done = 0; let completed = 0;
  let resolveAll;
  const all = new Promise((res) => { resolveAll = res; });
  const follower = await followRuns(js, 'runs.bench.>', (m) => {
    const t = m.headers?.get('Runstream-Type');
    if (t === 'run.started') { running++; maxRunning = Math.max(maxRunning, running); }
    if (t === 'run.completed' || t === 'run.failed' || t === 'run.cancelled' || t === 'run.timed_out') {
      if (t === 'run.completed') completed++;
      running--;
      if (++done === N) resolveAll();
    }
  });

  const pids = Object.fromEntries(Object.entries(procs).map(([k, p]) => [k, p.proc.pid]));
  pids['nats-server'] = stack.nats.proc?.pid ?? stack.nats.pid;
  const before = Object.fromEntries(Object.entries(pids).filter(([, p]) => p).map(([k, p]) => [k, ticks(p)]));
  const load0 = fs.readFileSync('/proc/loadavg', 'utf8').trim();
  const t0 = performance.now();
  let next = 0;
  async function client() {
    while (next < N) {
      const i = next++;
      const x = await api('POST', '/v1/runs', { agent: 'burst', input: { customer: 'acme-1', i } });
      if (x.status !== 202) throw new Error(`start ${i}: ${x.status} ${x.text}`);
    }
  }
  await Promise.all(Array.from({ length: 32 }, client));
  const tPosted = performance.now();
  await all;
  const t1 = performance.now();
  const after = Object.fromEntries(Object.keys(before).map((k) => [k, ticks(pids[k])]));
  const load1 = fs.readFileSync('/proc/loadavg', 'utf8').trim();
  follower.stop();
  await nc.close();

  const cpu = Object.fromEntries(Object.keys(before).map((k) => [k, ((after[k] - before[k]) / HZ) * 1000 / N]));
  const total = Object.values(cpu).reduce((a, b) => a + b, 0);
  console.log(`burst: ${N} runs, one key, limit ${LIMIT}`);
  console.log(`  all accepted after ${(tPosted - t0).toFixed(0)} ms; all finished after ${(t1 - t0).toFixed(0)} ms` +
              ` (${(N / ((t1 - t0) / 1000)).toFixed(1)} runs/s)`);
  console.log(`  completed ${completed}/${N}; most running at once ${maxRunning} (limit ${LIMIT}); device calls ${dev.calls.length}`);
  console.log(`  CPU ms per run: ${Object.entries(cpu).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}; total ${total.toFixed(2)}`);
  console.log(`  loadavg before: ${load0}; after: ${load1}`);
  closeAllClients();
  await stopAll();
  if (completed !== N || maxRunning > LIMIT) process.exit(1);
}

main().catch(async (e) => { console.error(e); closeAllClients(); await stopAll(); process.exit(1); });
