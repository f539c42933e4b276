// bench/idle/idle.mjs - CPU of each service with no traffic at all (not a
// test): nats-server (streams applied), Postgres, rs-orchestrator,
// rs-projector, rs-executor started as in the integration tests, left alone
// for SETTLE_S seconds, then the CPU each process tree uses over IDLE_S
// seconds, in ms per second (from /proc). A consumer loop that polls shows
// here; one that waits on the server does not.
// Usage (from tests/, as bench/e2e/run.sh does):
//   RS_BUILD_DIR=$PWD/../build RS_SRC_DIR=$PWD/.. NODE_PATH=$PWD/node_modules \
//     node ../bench/idle/idle.mjs [IDLE_S=60] [SETTLE_S=5]
import fs from 'node:fs';
import { startStack, startService, freePort, stopAll } from '../../tests/lib/stack.mjs';

const IDLE_S = Number(process.argv[2] || process.env.IDLE_S || 60);
const SETTLE_S = Number(process.argv[3] || process.env.SETTLE_S || 5);
const HZ = 100;

function ticks(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return Number(rest[11]) + Number(rest[12]);   // utime + stime
  } catch { return 0; }
}

// Postgres: the postmaster and its children.
function tree(pid) {
  const out = [pid];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(f.slice(f.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(...tree(Number(d)));
    } catch { /* gone */ }
  }
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

try {
  const { nats, pg, env } = await startStack();
  const procs = { 'nats-server': nats.pid, postgres: pg.pid };
  for (const [name, var_] of [['orchestrator', 'RS_ORCHESTRATOR_OPS_PORT'], ['projector', 'RS_PROJECTOR_OPS_PORT'], ['executor', 'RS_EXECUTOR_OPS_PORT']]) {
    const port = await freePort();
    procs[name] = (await startService(name, { ...env, [var_]: String(port) }, port)).pid;
  }
  await sleep(SETTLE_S * 1000);
  const pids = Object.fromEntries(Object.entries(procs).map(([k, p]) => [k, tree(p)]));
  const t0 = Object.fromEntries(Object.entries(pids).map(([k, ps]) => [k, ps.reduce((a, p) => a + ticks(p), 0)]));
  await sleep(IDLE_S * 1000);
  const load = fs.readFileSync('/proc/loadavg', 'utf8').trim();
  const res = {};
  for (const [k, ps] of Object.entries(pids)) {
    res[k] = Math.round((ps.reduce((a, p) => a + ticks(p), 0) - t0[k]) / HZ * 1000 / IDLE_S * 100) / 100;
  }
  console.log(`idle ${IDLE_S} s, CPU ms per second: ${Object.entries(res).map(([k, v]) => `${k} ${v}`).join(', ')} (load average ${load})`);
} finally {
  await stopAll();
}
