// bench.mjs - projector throughput beside raw COPY, on the same Postgres in
// the same run (issue 6). Steps:
//   1. start nats-server + Postgres (tests/lib/stack.mjs), streams, migrations;
//   2. pre-load RUNS with RUNS_N realistic runs (bench/projector/events.mjs,
//      ~10.5 events per run, interleaved as concurrent runs append them);
//   3. start rs-projector and time it from start to checkpoint == last seq;
//   4. export the projected rows, create an empty copy of the run tables
//      (same DDL, indexes, FKs: rs_proj_create_run_tables) and time COPY of
//      exactly those rows into it in one transaction.
// Prints one JSON line. Env: RUNS_N (20000), RUNS_WINDOW (1000 runs in flight
// while appending), RS_PROJECTOR_BATCH (projector default, 20000).
import { createRequire } from 'node:module';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  startStack, startProcess, stopAll, waitFor, freePort, bin, tmpDir, SRC,
} from '../../tests/lib/stack.mjs';
import { runMessages, publishAll, interleaveWindow } from './events.mjs';

const require = createRequire(path.join(SRC, 'tests', 'package.json'));
const { connect, headers } = require('nats');

const N = parseInt(process.env.RUNS_N || '20000', 10);
// Runs in flight at once while the stream was appended (RUNS_WINDOW, default 1000).
const W = parseInt(process.env.RUNS_WINDOW || '1000', 10);
const shapes = ['tool_ok', 'retry_fail', 'signal_ok', 'timed_out'];

async function main() {
  const stack = await startStack({ pg: true });
  const q = (sql) => stack.pg.psql(sql);
  const nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  const js = nc.jetstream();
  const runs = [];
  for (let i = 0; i < N; i++) runs.push(runMessages('bench', shapes[i % shapes.length], Date.now() - 3600000 + i));
  const msgs = interleaveWindow(runs, W);
  let t = Date.now();
  await publishAll(js, headers, msgs, 2048);
  const publishS = (Date.now() - t) / 1000;

  if (process.env.BENCH_PGLOG) {
    q(`ALTER SYSTEM SET log_min_duration_statement = ${Number.isNaN(parseInt(process.env.BENCH_PGLOG, 10)) ? 20 : parseInt(process.env.BENCH_PGLOG, 10)}`);
    q("SELECT pg_reload_conf()");
    console.error(`pg log: ${path.join(stack.pg.dir, 'pg.log')}`);
  }
  const port = await freePort();
  const env = { ...stack.env, RS_PROJECTOR_OPS_PORT: String(port), RS_LOG_LEVEL: 'warn' };
  if (process.env.RS_PROJECTOR_BATCH) env.RS_PROJECTOR_BATCH = process.env.RS_PROJECTOR_BATCH;
  const last = msgs.length;
  t = Date.now();
  const p = startProcess('projector-bench', bin('projector'), [], env);
  // Poll the checkpoint every 20 ms on ONE psql session: a new psql (and a
  // new backend) per poll cost ~10 ms CPU each, half a core taken from
  // the projector on these 2 cores.
  const poll = persistentPsql(stack.pg.url);
  await waitFor('projection of the whole stream', async () =>
    parseInt(await poll("SELECT coalesce(max(last_seq), 0) FROM projection_checkpoints WHERE projection = 'runs'"), 10) >= last,
  600000, 20);
  const projS = (Date.now() - t) / 1000;
  poll.close();
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const metric = (re) => parseFloat((metrics.match(re) || [])[1] || 'NaN');
  const batches = metric(/rs_projector_batch_seconds_count\{projection="runs"\} (\S+)/);
  const batchS = metric(/rs_projector_batch_seconds_sum\{projection="runs"\} (\S+)/);
  // CPU the projector used (user + system, clock ticks of 10 ms): tells a
  // client-bound projector from one waiting on Postgres or NATS.
  const stat = fs.readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const projCpuS = (parseInt(stat[11], 10) + parseInt(stat[12], 10)) / 100;
  await p.kill('SIGTERM');

  // The same rows, COPYed raw into fresh tables of the same shape.
  const dir = tmpDir('projbench');
  const tables = ['runs', 'run_events', 'steps', 'tool_calls'];
  const rows = {};
  for (const tb of tables) {
    const f = path.join(dir, `${tb}.tsv`);
    execFileSync('psql', [stack.pg.url, '-XAtq', '-c', `\\copy ${tb} TO '${f}'`]);
    rows[tb] = parseInt(q(`SELECT count(*) FROM ${tb}`), 10);
  }
  q("CREATE SCHEMA rawcopy; SELECT rs_proj_create_run_tables('rawcopy')");
  const script = path.join(dir, 'copy.sql');
  fs.writeFileSync(script, ['BEGIN;', ...tables.map((tb) => `\\copy rawcopy.${tb} FROM '${path.join(dir, tb + '.tsv')}'`), 'COMMIT;'].join('\n') + '\n');
  t = Date.now();
  execFileSync('psql', [stack.pg.url, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-f', script]);
  const copyS = (Date.now() - t) / 1000;

  const out = {
    runs: N, window: W, events: last, batch: parseInt(env.RS_PROJECTOR_BATCH || '20000', 10), rows, publish_events_per_s: Math.round(last / publishS),
    projector_s: projS, batches, batch_commit_s: +batchS.toFixed(3), projector_events_per_s: Math.round(last / projS), projector_cpu_s: projCpuS,
    copy_s: copyS, copy_events_per_s: Math.round(last / copyS),
    ratio: +(copyS / projS).toFixed(3),
  };
  console.log(JSON.stringify(out));
  await nc.close();
  await stopAll(); // the Postgres log (BENCH_PGLOG) stays in its directory
}

// One long-lived `psql` reading queries from stdin; poll(sql) -> first line.
function persistentPsql(url) {
  const ps = spawn('psql', [url, '-XAtq'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let buf = '';
  const waiters = [];
  ps.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
    }
  });
  const fn = (sql) => new Promise((resolve) => { waiters.push(resolve); ps.stdin.write(sql + ';\n'); });
  fn.close = () => { ps.stdin.end(); };
  return fn;
}

main().catch(async (e) => { console.error(e); await stopAll(); process.exit(1); });
