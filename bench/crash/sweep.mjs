// bench/crash/sweep.mjs - what one reconciliation pass costs (reconcile.c).
//
// Fills RUNS with RUNS_N runs of EVENTS_PER_RUN events each (the headers the
// pass reads: Runstream-Type and Nats-Msg-Id, plus a 300-byte body it does
// not read), every run at rest except CUT of them (their last event is a
// step.completed: a decision cut short), then starts one orchestrator and
// reads its first pass from its log and /metrics: events read, runs sent
// run.continue, seconds. Prints the rate beside the raw rate of reading the
// same stream's headers with an ordered consumer from Node.
//
//   node bench/crash/sweep.mjs [BUILD_DIR]     RUNS_N=100000 EVENTS_PER_RUN=3 CUT=50
import path from 'node:path';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
process.env.RS_BUILD_DIR = path.resolve(process.argv[2] || path.join(ROOT, 'build'));
process.env.RS_SRC_DIR = ROOT;
const { startStack, startService, freePort, stopAll, waitFor } = await import(path.join(ROOT, 'tests/lib/stack.mjs'));
// The test clients live in tests/node_modules.
const { connect, headers, consumerOpts } = createRequire(path.join(ROOT, 'tests/package.json'))('nats');

const RUNS_N = parseInt(process.env.RUNS_N || '100000', 10);
const PER = parseInt(process.env.EVENTS_PER_RUN || '3', 10);
const CUT = parseInt(process.env.CUT || '50', 10);

try {
  const stack = await startStack({ pg: false });
  const nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  const js = nc.jetstream();
  const body = new TextEncoder().encode('x'.repeat(300));
  const t0 = Date.now();
  let pending = [];
  for (let i = 0; i < RUNS_N; i++) {
    const run = crypto.randomUUID();
    for (let k = 1; k <= PER; k++) {
      const h = headers();
      const rest = k === PER && i >= CUT ? 'timer.scheduled' : k === PER ? 'step.completed' : 'step.started';
      h.set('Runstream-Type', rest);
      pending.push(js.publish(`runs.bench.${run}`, body, { headers: h, msgID: `${run}-${k}`, timeout: 60000 }));
    }
    if (pending.length >= 1024) { await Promise.all(pending); pending = []; }
  }
  await Promise.all(pending);
  const fillS = (Date.now() - t0) / 1000;
  const total = RUNS_N * PER;
  console.log(`filled RUNS: ${RUNS_N} runs, ${total} events in ${fillS.toFixed(1)} s`);

  // Raw: an ordered consumer reading every header from Node.
  const r0 = Date.now();
  const opts = consumerOpts();
  opts.orderedConsumer();
  opts.deliverAll();
  opts.headersOnly();
  const sub = await js.subscribe('runs.>', opts);
  let seen = 0;
  for await (const m of sub) { seen++; if (m.info.pending === 0) break; }
  sub.unsubscribe();
  const rawS = (Date.now() - r0) / 1000;
  console.log(`raw: ${seen} headers read by an ordered consumer in ${rawS.toFixed(2)} s (${Math.round(seen / rawS)}/s)`);

  // One orchestrator: its first pass looks back an hour, i.e. over all of it.
  // Quiet 0: every run counts as settled in time.
  const port = await freePort();
  const o = await startService('orchestrator', { ...stack.env, RS_ORCHESTRATOR_OPS_PORT: String(port),
    RS_ORCH_SWEEP_QUIET_MS: '0', RS_ORCH_SWEEP_INTERVAL_MS: '3600000' }, port);
  let line;
  await waitFor('the first reconciliation pass', async () => {
    line = fs.readFileSync(o.log, 'utf8').split('\n').find((l) => l.includes('event(s) read'));
    return !!line;
  }, 600000, 200);
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const sum = metrics.match(/rs_orch_sweep_duration_seconds_sum (\S+)/);
  const msg = JSON.parse(line).msg;
  const passS = sum ? parseFloat(sum[1]) : NaN;
  const read = parseInt(msg.match(/(\d+) event/)[1], 10);
  const sent = parseInt(msg.match(/(\d+) run\(s\)/)[1], 10);
  console.log(`pass: ${msg}; ${passS.toFixed(2)} s (${Math.round(read / passS)} events/s); ` +
    `expected ${CUT} runs sent run.continue: ${sent === CUT ? 'yes' : 'NO'}`);
  await nc.close();
  if (sent !== CUT || read !== total) process.exitCode = 1;
} finally {
  await stopAll();
}
