// run.mjs - bench/append: bench-appendk on one nats-server, then on a
// 3-node cluster with an R3 stream (see appendk.c for the modes and
// run.sh for how to start it). The servers come from tests/lib/stack.mjs
// (a user per service, the admin user here) and are stopped by pid at exit.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { startNats, startCluster, stopAll, BUILD, SRC } from '../../tests/lib/stack.mjs';

const flags = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
  if (!m) { console.error(`bench/append: unknown argument ${a} (flags are --name=value)`); process.exit(2); }
  return [m[1].toUpperCase().replace(/-/g, '_'), m[2] ?? '1'];
}));
const QUICK = (flags.QUICK ?? process.env.QUICK) === '1';
const ROUNDS = Number(flags.ROUNDS ?? process.env.ROUNDS ?? (QUICK ? 100 : 300));
const FIXTURE = path.resolve(SRC, flags.FIXTURE ?? process.env.FIXTURE ?? 'tests/fixtures/completed.ndjson');
const ONLY = flags.ONLY ?? process.env.ONLY ?? 'both';
if (!Number.isInteger(ROUNDS) || ROUNDS < 10 || ROUNDS > 100000) { console.error('bench/append: ROUNDS must be 10..100000'); process.exit(2); }
if (!['both', 'single', 'cluster'].includes(ONLY)) { console.error('bench/append: ONLY is single, cluster or both'); process.exit(2); }
const MODES = ['seq', 'pipe1', 'pipechain', 'batch'];
// Throughput side: the raw async publish of one run's appends, as today
// (21 messages of the measured 404-byte mean, bench/e2e) and batched (the
// 7 decisions of a 3-step run, K = 5,1,1,1,5,5,3: 7 messages carrying the
// same bytes), with bench-e2e-floor on the same server.
const FLOOR_RUNS = Number(flags.FLOOR_RUNS ?? process.env.FLOOR_RUNS ?? (QUICK ? 1000 : 5000));
const SHAPES = [{ label: '21 events, one message each', msgs: 21, bytes: 404 }, { label: '7 batch messages (same events)', msgs: 7, bytes: 1213 }];
const la = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

function appendk(env) {
  const out = execFileSync(path.join(BUILD, 'bench/append/bench-appendk'), [FIXTURE, String(ROUNDS)],
    { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 900000 });
  const f = {};
  for (const line of out.trim().split('\n')) {
    const i = line.indexOf(' ');
    const v = line.slice(i + 1);
    f[line.slice(0, i)] = /^-?[0-9.]+$/.test(v) ? Number(v) : v;
  }
  return f;
}

function floorRuns(env, replicas) {
  return SHAPES.map((sh) => {
    const out = execFileSync(path.join(BUILD, 'bench/e2e/bench-e2e-floor'), [String(sh.msgs), String(sh.bytes), String(FLOOR_RUNS), '200'],
      { env: { ...process.env, ...env, E2EFLOOR_REPLICAS: String(replicas) }, encoding: 'utf8', timeout: 600000 });
    const f = Object.fromEntries(out.trim().split('\n').map((l) => l.split(' ')).map(([k, v]) => [k, Number(v)]));
    return `${sh.label} (${sh.msgs} x ${sh.bytes} bytes): ${f.async_msgs_per_s} msg/s = **${f.async_runs_per_s} runs/s**`;
  }).join('; ');
}

function table(label, f, load0, load1, thr) {
  const L = [];
  const ks = Object.keys(f).map((k) => /^seq_k(\d+)_p50_us$/.exec(k)?.[1]).filter(Boolean).map(Number);
  const sizes = Object.keys(f).filter((k) => k.startsWith('event_bytes_')).map((k) => f[k]);
  L.push(`### ${label} (replicas ${f.replicas}; connected to ${f.connected}, stream leader ${f.leader}; load average before ${load0}, after ${load1})`);
  L.push('');
  L.push(`${ROUNDS} decisions per cell, interleaved; event sizes (bytes, in order) ${sizes.join(', ')}; ms p50 / p99.`);
  L.push('');
  L.push(`| K events | ${MODES.join(' | ')} | pipechain refused | batch vs seq (p50) |`);
  L.push(`| --- | ${MODES.map(() => '---').join(' | ')} | --- | --- |`);
  const ms = (us) => (us / 1000).toFixed(2);
  for (const k of ks) {
    const cell = (m) => `${ms(f[`${m}_k${k}_p50_us`])} / ${ms(f[`${m}_k${k}_p99_us`])}`;
    L.push(`| ${k} | ${MODES.map(cell).join(' | ')} | ${f[`pipechain_k${k}_refused`]} of ${f[`pipechain_k${k}_events`]} | ${(f[`seq_k${k}_p50_us`] / f[`batch_k${k}_p50_us`]).toFixed(1)}x |`);
  }
  L.push('');
  L.push(`Two writers (two events sent back to back with the same expected last subject sequence, ${f.twowriters_rounds} times): with distinct \`Nats-Msg-Id\`s both stored **${f.twowriters_both_stored}** times; with the same id (as two orchestrators would send, \`<run_id>-<runseq>\`) both stored ${f.twowriters_sameid_both_stored} times, the second answered as a duplicate ${f.twowriters_sameid_duplicate} times.`);
  L.push('');
  L.push(`Raw async publish of a 3-step run's appends (${FLOOR_RUNS} runs, window 16,384): ${thr}.`);
  return L.join('\n');
}

let code = 0;
try {
  const out = [];
  if (ONLY !== 'cluster') {
    const nats = await startNats();
    const l0 = la();
    const f = appendk({ ...nats.env, APPENDK_REPLICAS: '1' });
    const thr = floorRuns(nats.env, 1);
    out.push(table('single nats-server', f, l0, la(), thr));
    await nats.kill('SIGKILL');
  }
  if (ONLY !== 'single') {
    const cluster = await startCluster();
    const l0 = la();
    const f = appendk({ ...cluster.env, APPENDK_REPLICAS: '3' });
    const thr = floorRuns(cluster.env, 3);
    out.push(table('3-node cluster, R3', f, l0, la(), thr));
  }
  console.log(out.join('\n\n'));
} catch (e) {
  console.error(`bench/append failed: ${e.stack || e}`);
  code = 1;
} finally {
  await stopAll();
}
process.exit(code);
