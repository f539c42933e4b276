// crash.test.mjs - runs survive kill -9 of the orchestrator under load.
//
// Issue 14: a decision appends its events one at a time, and a crash
// between two appends used to leave runs failed by a stale tool timeout or
// stuck forever. Here many runs of a multi-step agent (tool steps on a real
// device through a real tool-router, a durable sleep, a tool that fails its
// first attempt and is retried, a signal sent before or while the run
// waits for it) are in flight while the orchestrator is killed with SIGKILL
// again and again, at moments chosen by how far the log has got (never by
// sleeping), once with two instances running. Then, from the log: every
// run ended exactly once, completed, with the right output; runseq is
// 1..N; no step failed on a stale timer; every tool call ran once on the
// device; `runctl replay --check` accepts the histories.
//
// RS_CRASH_RUNS / RS_CRASH_KILLS / RS_CRASH_SEED change the size
// (bench/crash runs it longer).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { stopAll, startService, freePort, runctl } from '../lib/stack.mjs';
import { device, closeAllClients } from '../lib/clients.mjs';
import { World, assertHistory } from '../lib/orchworld.mjs';

const RUNS = parseInt(process.env.RS_CRASH_RUNS || '100', 10);
const KILLS = parseInt(process.env.RS_CRASH_KILLS || '6', 10);
let seed = parseInt(process.env.RS_CRASH_SEED || String(Date.now() % 100000), 10);
const SEED0 = seed;
function rand() {   // mulberry32: the seed in the log reproduces the kill points
  seed = (seed + 0x6D2B79F5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

let world; let dev;
const latency = () => new Promise((resolve) => { setTimeout(resolve, Math.floor(Math.random() * 30)); });
const executions = new Map();   // call_id -> times the device ran it
const flakyFailed = new Set();  // runs whose first flaky attempt failed

const agent = {
  name: 'crashy',
  timeout_s: 600,
  steps: [
    { id: 's1', kind: 'tool', tool: 'inc', args: { n: '{{input.n}}' }, timeout_s: 60 },
    { id: 'nap', kind: 'sleep', duration_ms: 150 },
    { id: 's2', kind: 'tool', tool: 'flaky', args: { n: '{{steps.s1.output.n}}' }, timeout_s: 60,
      retry: { max_attempts: 3, initial_backoff_ms: 100 } },
    { id: 'wait', kind: 'signal', signal: 'go', timeout_s: 600 },
    { id: 's3', kind: 'tool', tool: 'inc', args: { n: '{{steps.s2.output.n}}' }, timeout_s: 60 },
  ],
  output: { n: '{{steps.s3.output.n}}', go: '{{steps.wait.output.k}}' },
};

before(async () => {
  world = new World();
  await world.init();
  const rport = await freePort();
  await startService('router', { ...world.env, RS_ROUTER_PORT: String(rport), RS_INSTANCE_ID: 'router-1' }, rport);
  const token = runctl(['devices', 'token', '--tenant', 'acme', '--device', 'dev-1'], world.env).stdout.trim();
  const count = (f) => executions.set(f.call_id, (executions.get(f.call_id) || 0) + 1);
  dev = device(`ws://127.0.0.1:${rport}/v1/devices/connect`, {
    deviceId: 'dev-1', token, tools: ['inc', 'flaky'],
    handlers: {
      // The device answers after 0-30 ms, as a real one would.
      inc: async (args, f) => { count(f); await latency(); return { n: args.n + 1 }; },
      flaky: async (args, f) => {
        count(f);
        await latency();
        if (!flakyFailed.has(f.run_id)) {
          flakyFailed.add(f.run_id);
          const e = new Error('first attempt fails'); e.code = 'flaky'; e.retryable = true;
          throw e;
        }
        return { n: args.n };
      },
    },
  });
  await dev.welcomed;
});

after(async () => {
  closeAllClients();
  if (world) { await world.live?.stop(); await world.nc.close(); }
  await stopAll();
});

// Start an orchestrator. Twice in about twenty runs of this test a fresh
// instance, started right after a kill, logged that it was up but did not
// answer /readyz within 20 s; the cause is not known yet (see the closing
// note of session 4). What this test checks is the runs, so such a start is
// reported loudly (the reason and the log go to the output) and one more
// instance is started on another port; a second failure fails the test.
async function orchestrator(name) {
  try {
    return await world.orchestrator(name);
  } catch (e) {
    console.log(`# WARNING: orchestrator ${name} did not become ready: ${e.message.split('\n').slice(0, 8).join(' | ')}`);
    // (the unready one keeps running as one more instance; stopAll ends it)
    return world.orchestrator(`${name}-again`);
  }
}

test(`${RUNS} runs in flight, the orchestrator killed ${KILLS} times: every run completes exactly once`, { timeout: 600000 }, async () => {
  console.log(`# seed ${SEED0} (RS_CRASH_SEED reproduces the kill points)`);
  const version = await world.push('acme', agent);
  let events = 0;
  const signalled = new Set();
  const runs = [];
  // Half the runs get their signal early (buffered), half when they wait.
  const signal = (run) => {
    if (signalled.has(run)) return;
    signalled.add(run);
    world.command('acme', run, { type: 'signal', signal_id: `go-${run}`, name: 'go', payload: { k: 'yes' } }, `signal-go-${run}`)
      .catch((e) => console.log(`# signal ${run}: ${e.message}`));
  };
  const onEvent = world.onEvent.bind(world);
  world.onEvent = (ev) => {
    events++;
    onEvent(ev);
    const run = ev.subject;
    if (ev.type === 'runstream.step.started' && ev.data.step_id === 'wait') signal(run);
  };

  let live = [await orchestrator('o-0')];
  // All runs at once: they are in flight together when the kills come.
  const started = await Promise.all(Array.from({ length: RUNS }, (_, i) =>
    world.start('acme', 'crashy', version, { n: i }).then((run) => ({ run, n: i }))));
  for (const r of started) {
    runs.push(r);
    if (r.n % 2 === 0) signal(r.run);
  }
  // ~23 events a run: kill points spread over the first 80 % of the log.
  const total = RUNS * 23;
  const points = Array.from({ length: KILLS }, () => Math.floor(total * (0.05 + 0.75 * rand()))).sort((a, b) => a - b);
  const twoAt = Math.floor(KILLS / 2);
  for (let k = 0; k < KILLS; k++) {
    await world.waitCount(() => events >= points[k], `event ${points[k]} (kill ${k + 1})`, 120000);
    const victim = live[Math.floor(rand() * live.length)];
    await victim.kill('SIGKILL');
    live = live.filter((p) => p !== victim);
    console.log(`# kill ${k + 1}: ${victim.name} at event ${events} (${live.length} left running)`);
    if (k === twoAt) live.push(await orchestrator(`o-${k + 1}a`), await orchestrator(`o-${k + 1}b`));
    else if (live.length === 0) live.push(await orchestrator(`o-${k + 1}`));
  }
  for (const { run } of runs) await world.waitTerminal(run, 180000);

  let maxExec = 0;
  for (const { run, n } of runs) {
    const h = await world.history('acme', run);
    assertHistory(h, run);
    const last = h[h.length - 1];
    assert.equal(last.type, 'runstream.run.completed', `run ${run}: ${last.type} ${JSON.stringify(last.data)}\n` +
      h.map((e) => `  ${e.runseq} ${e.time} ${e.type} ${JSON.stringify(e.data).slice(0, 160)}`).join('\n') +
      `\nexecutions: ${JSON.stringify([...executions].filter(([c]) => c.startsWith(run)))}`);
    assert.deepEqual(last.data.output, { n: n + 2, go: 'yes' }, `run ${run}`);
    const failed = h.filter((e) => e.type === 'runstream.step.failed');
    assert.equal(failed.length, 1, `run ${run}: step.failed ${JSON.stringify(failed.map((e) => e.data))}`);
    assert.equal(failed[0].data.error.code, 'flaky', `run ${run}: a step failed on ${failed[0].data.error.code}`);
    for (const e of h.filter((x) => x.type === 'runstream.tool.completed' || x.type === 'runstream.tool.failed')) {
      const times = executions.get(e.data.call_id) || 0;
      maxExec = Math.max(maxExec, times);
      assert.equal(times, 1, `call ${e.data.call_id} ran ${times} times on the device`);
    }
  }
  // Nothing was dead-lettered: deliveries to killed instances are not poison.
  assert.deepEqual(world.dead, [], 'dead letters');
  // Today's decide agrees with every history (continuations included).
  const sample = runs.slice(0, 25);
  for (const { run } of sample) {
    const r = runctl(['replay', run, '--tenant', 'acme', '--check'], world.env);
    assert.equal(r.code, 0, `replay --check ${run}: ${r.stdout}\n${r.stderr}`);
  }
  const continued = await Promise.all(live.map((p) => world.metrics(p)));
  console.log(`# ${RUNS} runs, ${KILLS} kills, ${events} events; max executions per call ${maxExec}; ` +
    `${continued.join('').split('\n').filter((l) => l.startsWith('rs_orch_redeliveries_total')).join(' ')}`);
  for (const p of live) await p.kill('SIGKILL');
});
