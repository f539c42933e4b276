// lag.mjs - projector lag under the orchestrator benchmark's load (issue 6:
// goal < 1 s). One nats-server, one Postgres, one rs-orchestrator and one
// rs-projector (tests/lib/stack.mjs); `bench-orchestrator runs N` injects
// run.start commands for a 3-step agent, the orchestrator appends ~9 events
// per run to RUNS, and rs_projector_lag_seconds{projection="runs"} is
// sampled from the projector's /metrics every 200 ms until the projector
// has applied everything. Prints one JSON line (p50/p99/max of the samples
// taken while the orchestrator was appending). Env: RUNS_N (20000).
import { execFile } from 'node:child_process';
import {
  startStack, startService, stopAll, freePort, bin,
} from '../../tests/lib/stack.mjs';

const N = parseInt(process.env.RUNS_N || '20000', 10);

async function metric(port, re) {
  const m = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return parseFloat((m.match(re) || [])[1] || 'NaN');
}

function pct(a, p) {
  const s = [...a].sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
}

async function main() {
  const stack = await startStack({ pg: true });
  const env = { ...stack.env, RS_LOG_LEVEL: 'warn' };
  const orchPort = await freePort();
  const projPort = await freePort();
  await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(orchPort) }, orchPort);
  await startService('projector', { ...env, RS_PROJECTOR_OPS_PORT: String(projPort) }, projPort);
  const lagRe = /rs_projector_lag_seconds\{projection="runs"\} (\S+)/;
  const msgRe = /rs_projector_lag_messages\{projection="runs"\} (\S+)/;
  const samples = [];
  let injecting = true;
  const t0 = Date.now();
  const driver = new Promise((resolve, reject) => {
    execFile(bin('bench/orchestrator/bench-orchestrator'), ['runs', String(N)],
      { env: { ...process.env, ...env }, timeout: 900000, maxBuffer: 1 << 24 },
      (e, stdout) => (e ? reject(e) : resolve(stdout)));
  }).finally(() => { injecting = false; });
  while (injecting) {
    samples.push({ t: Date.now() - t0, lag: await metric(projPort, lagRe), msgs: await metric(projPort, msgRe) });
    await new Promise((r) => setTimeout(r, 200));
  }
  const out = await driver;
  const evs = (out.match(/^events_per_s\s+(\S+)/m) || [])[1];
  // Drain: how long after the last append the projector caught up.
  const tEnd = Date.now();
  while ((await metric(projPort, msgRe)) > 0 && Date.now() - tEnd < 300000) {
    await new Promise((r) => setTimeout(r, 200));
  }
  const lags = samples.map((s) => s.lag).filter((x) => !Number.isNaN(x));
  console.log(JSON.stringify({
    runs: N, orchestrator_events_per_s: evs ? parseFloat(evs) : null, samples: lags.length,
    lag_s_p50: pct(lags, 0.5), lag_s_p99: pct(lags, 0.99), lag_s_max: Math.max(...lags),
    lag_msgs_max: Math.max(...samples.map((s) => s.msgs)), drain_after_last_append_s: (Date.now() - tEnd) / 1000,
  }));
  await stopAll();
}

main().catch(async (e) => { console.error(e); await stopAll(); process.exit(1); });
