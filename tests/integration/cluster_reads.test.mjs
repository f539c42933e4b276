// cluster_reads.test.mjs - the API's reads on a 3-node cluster while the
// RUNS leader is paused (SIGSTOP, by pid) and after it resumes behind.
//
// What bench/chaos saw: SSE watchers opened during a pause of the RUNS
// leader that stayed open and delivered nothing, and a `Prefer: wait`
// answered 200 with a non-terminal status. Here the other streams' leaders
// are moved off the RUNS leader's node first (so only RUNS loses its
// leader); six runs are started that sleep 4 s first; the node is stopped
// for 8 s (past the election timeout: the other two elect a new leader and
// go on appending). During the pause the six runs in flight are watched
// over SSE and waited for (`Prefer: wait` by their Idempotency-Key, and
// `GET ?wait=`), and four more runs are started and followed the same way;
// right after SIGCONT (the old leader answers direct gets from its older
// state until it has caught up) six more. Every watcher must get exactly
// runseq 1..N of the run's log (read from the leader), every wait must
// answer 200 with the terminal status and last_seq the log has, and a GET
// afterwards the same. The API runs the SSE recheck every second here, so
// the recheck racing live frames is covered too.
// RS_API_RUNS_READS=direct in the environment runs it without the leader
// reads (it then found the 200-while-running waits, before http.c/reads.c
// were fixed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { startClusterStack, startService, stopAll, runctl, freePort, waitFor } from '../lib/stack.mjs';
import { runHistory } from '../lib/cluster.mjs';
import { apiClient, watch, closeAllClients } from '../lib/clients.mjs';

let stack; let env; let api; let apiUrl; let apiKey; let nc; let jsm;
const history = (runId) => runHistory(jsm, runId);

const agent = {
  name: 'paused',
  timeout_s: 120,
  steps: [
    { id: 'a', kind: 'sleep', duration_ms: 300 },
    { id: 'b', kind: 'transform', value: { n: '{{input.n}}' } },
    { id: 'c', kind: 'sleep', duration_ms: 200 },
  ],
};
const slow = { ...agent, name: 'slow', steps: [{ id: 's', kind: 'sleep', duration_ms: 4000 }, ...agent.steps] };
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'timed_out']);

before(async () => {
  stack = await startClusterStack({ pg: true });
  env = stack.env;
  apiKey = runctl(['keys', 'create', '--tenant', 'acme'], env).stdout.trim();
  assert.ok(apiKey, 'runctl keys create');
  const op = await freePort();
  await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(op), RS_INSTANCE_ID: 'orch-cr' }, op);
  const port = await freePort();
  await startService('api', { ...env, RS_API_PORT: String(port), RS_INSTANCE_ID: 'api-cr',
    // 'direct' shows what this test catches without the leader reads
    RS_API_RUNS_READS: process.env.RS_API_RUNS_READS || 'auto',
    // the recheck (sse.c) every second: it races live frames here and must
    // cause no gap and no duplicate
    RS_API_SSE_RECHECK_S: '1' }, port);
  apiUrl = `http://127.0.0.1:${port}`;
  api = apiClient(apiUrl, apiKey);
  nc = await connect({ servers: stack.cluster.servers, ...stack.cluster.creds });
  jsm = await nc.jetstreamManager();
  for (const a of [agent, slow]) {
    const pushed = await api('POST', '/v1/agents', a);
    assert.ok([200, 201].includes(pushed.status), pushed.text);
  }
});

after(async () => {
  closeAllClients();
  if (nc) await nc.close();
  await stopAll();
});

// Start a run (POST retried with its Idempotency-Key on a 503 or a dropped
// connection, as a client should) and, as soon as its id is known, watch
// it over SSE and wait for it twice: the same POST again with `Prefer:
// wait` (the key's replay parks it) and `GET ?wait=`. Resolves { runId,
// waits: [answers], watcher }.
async function retried(fn, what) {
  const deadline = Date.now() + 60000;
  for (;;) {
    let r;
    try { r = await fn(); } catch (e) { r = { status: 0, text: String(e) }; }
    if (r.status !== 503 && r.status !== 0) return r;
    if (Date.now() > deadline) throw new Error(`${what}: ${r.status} ${r.text}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

// Start a run (retried); its id and a function that POSTs it again.
async function startRun(n, tag, agentName = 'paused') {
  const key = `cr-${tag}-${n}-${Date.now()}`;
  const post = (headers = {}) => api('POST', '/v1/runs', { agent: agentName, input: { n } },
    { 'Idempotency-Key': key, ...headers });
  const first = await retried(() => post(), `run ${tag}-${n} start`);
  assert.ok([200, 202].includes(first.status), first.text);
  return { runId: first.json.run_id, post };
}

// Watch a run and wait for it twice: its POST again with `Prefer: wait`
// (the key's replay parks it) and `GET ?wait=`; a wait that times out
// (202) is asked again, as a client would.
async function follow({ runId, post }, what) {
  const watcher = watch(apiUrl, apiKey, runId);
  watcher.openedAt = Date.now();
  const until = async (fn) => {
    for (;;) {
      const r = await retried(fn, `${what} wait`);
      if (r.status !== 202) return r;
    }
  };
  const waits = await Promise.all([
    until(() => post({ Prefer: 'wait=30' })),
    until(() => api('GET', `/v1/runs/${runId}?wait=30`)),
  ]);
  return { runId, waits, watcher };
}

async function startWatched(n, tag) {
  return follow(await startRun(n, tag), `run ${tag}-${n}`);
}

function assertWatcher(w, h, what) {
  const ids = w.events.map((e) => e.id);
  const want = h.map((e) => e.runseq);
  assert.deepEqual(ids, want, `${what}: SSE ids ${ids.join(',')} vs the log's ${want.join(',')}`);
}

test('watchers and waits opened while the RUNS leader is stopped, and right after it resumes', async () => {
  // One run before, so the stream and consumers are warm.
  const warm = await startWatched(0, 'warm');
  assert.equal(warm.waits[0].json.status, 'completed');

  const leader = await stack.cluster.leaderOf('RUNS');
  assert.ok(leader, 'RUNS has a leader');
  // Only RUNS loses its leader: every other stream the node leads (the
  // run registry, CMDS, keys) steps down first, so runs are accepted
  // during the pause and their watchers open before their first event.
  for await (const si of jsm.streams.list()) {
    const name = si.config.name;
    if (name === 'RUNS' || si.cluster?.leader !== leader.name) continue;
    await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${name}`, new Uint8Array(0), { timeout: 5000 });
    await waitFor(`${name} led elsewhere`, async () => {
      const l = (await jsm.streams.info(name)).cluster?.leader;
      return l && l !== leader.name;
    }, 20000, 100);
  }
  // In flight across the pause (a 4 s sleep first): watched and waited
  // for only once the leader is stopped.
  const inflight = [];
  for (let i = 1; i <= 6; i++) inflight.push(await startRun(i, 'inflight', 'slow'));
  const t0 = Date.now();
  const tStop = t0;
  let tCont = 0;
  process.kill(leader.pid, 'SIGSTOP');
  leader.stopped = true;
  let resumed = false;
  const resume = () => {
    if (!resumed) { resumed = true; process.kill(leader.pid, 'SIGCONT'); leader.stopped = false; tCont = Date.now(); }
  };
  try {
    // Started during the pause (each retried until the API can store it).
    const during = [];
    for (const [i, r] of inflight.entries()) {
      during.push(follow(r, `in-flight run ${i}`));
      await new Promise((res) => setTimeout(res, 400));
    }
    for (let i = 1; i <= 4; i++) {
      during.push(startWatched(i, 'paused'));
      await new Promise((res) => setTimeout(res, 700));
    }
    // 8 s in all, past the election timeout, as in bench/chaos.
    await new Promise((res) => setTimeout(res, Math.max(0, t0 + 8000 - Date.now())));
    resume();
    // Right after: the old leader answers direct gets from its older state.
    const afterwards = [];
    for (let i = 1; i <= 6; i++) {
      afterwards.push(startWatched(i, 'resumed'));
      await new Promise((res) => setTimeout(res, 150));
    }
    const all = await Promise.all([...during, ...afterwards]);
    for (const [k, r] of all.entries()) {
      const what = `run ${k} (${r.runId})`;
      const h = await history(r.runId);
      const term = h.at(-1);
      for (const [i, w] of r.waits.entries()) {
        const how = i === 0 ? 'POST Prefer: wait' : 'GET ?wait=';
        assert.equal(w.status, 200, `${what}: ${how}: ${w.text}`);
        assert.ok(TERMINAL.has(w.json.status), `${what}: ${how} answered 200 with status ${w.json.status} (last_seq ${w.json.last_seq}; the log has ${term.runseq})`);
        assert.equal(`runstream.run.${w.json.status}`, term.type, `${what}: wait vs log`);
        assert.equal(w.json.last_seq, term.runseq, `${what}: the wait's last_seq`);
      }
      if (process.env.RS_TEST_VERBOSE) {
        console.log(`${what}: watcher opened ${r.watcher.openedAt - t0} ms, first event ${Date.parse(h[0].time) - t0} ms (pause ${tStop - t0}..${tCont - t0})`);
      }
      // Every watcher ends on its terminal event (or the test times out).
      await Promise.race([r.watcher.done, new Promise((_, rej) => setTimeout(
        () => rej(new Error(`${what}: the watcher got ${r.watcher.events.map((e) => e.id).join(',') || 'nothing'}`)), 30000))]);
      assertWatcher(r.watcher, h, what);
      // A GET never shows less than the log.
      const g = await api('GET', `/v1/runs/${r.runId}`);
      assert.equal(g.status, 200, g.text);
      assert.equal(g.json.last_seq, term.runseq, `${what}: GET last_seq`);
    }
  } finally {
    resume();
  }
});
