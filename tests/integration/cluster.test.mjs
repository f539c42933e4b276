// cluster.test.mjs - Runstream on a 3-node JetStream cluster (issue 21).
//
// Three nats-server processes on loopback form one cluster; every stream
// and KV bucket has 3 replicas; every service gets all three URLs in
// RS_NATS_URL (nats.c's server list) and its own NATS user. A tool run goes
// end to end through the API, the orchestrator, the tool-router and a
// device. Then the node leading RUNS is killed with SIGKILL (by pid): the
// remaining two elect a new leader, and a second run completes, with a
// history (read from RUNS on the survivors) that is 1..N with one terminal
// event. The killed node is restarted and catches up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { startClusterStack, startService, stopAll, runctl, freePort, waitFor } from '../lib/stack.mjs';
import { runHistory } from '../lib/cluster.mjs';
import { apiClient, watch, device, closeAllClients } from '../lib/clients.mjs';

let stack; let env; let api; let apiUrl; let apiKey; let nc; let jsm;
const history = (runId) => runHistory(jsm, runId);
const executions = new Map();   // call_id -> times the device ran it

const agent = {
  name: 'clustered',
  timeout_s: 120,
  steps: [
    { id: 'greet', kind: 'tool', tool: 'echo', args: { message: 'hi {{input.n}}' }, timeout_s: 60 },
    { id: 'nap', kind: 'sleep', duration_ms: 100 },
    { id: 'out', kind: 'transform', value: { said: '{{steps.greet.output.message}}' } },
  ],
};

async function svc(name, portVar, extra = {}) {
  const port = await freePort();
  const p = await startService(name, { ...env, [portVar]: String(port), RS_INSTANCE_ID: `${name}-c`, ...extra }, port);
  return { p, port };
}

before(async () => {
  stack = await startClusterStack({ pg: true });
  env = stack.env;
  apiKey = runctl(['keys', 'create', '--tenant', 'acme'], env).stdout.trim();
  const token = runctl(['devices', 'token', '--tenant', 'acme', '--device', 'dev-1'], env).stdout.trim();
  assert.ok(apiKey && token, 'runctl keys/devices on the cluster');
  await svc('orchestrator', 'RS_ORCHESTRATOR_OPS_PORT');
  await svc('projector', 'RS_PROJECTOR_OPS_PORT');
  const a = await svc('api', 'RS_API_PORT');
  apiUrl = `http://127.0.0.1:${a.port}`;
  api = apiClient(apiUrl, apiKey);
  const r = await svc('router', 'RS_ROUTER_PORT', { RS_ROUTER_HEARTBEAT_S: '1' });
  const dev = device(`ws://127.0.0.1:${r.port}/v1/devices/connect`, {
    deviceId: 'dev-1', token, tools: ['echo'],
    handlers: { echo: async (args, f) => { executions.set(f.call_id, (executions.get(f.call_id) || 0) + 1); return { message: args.message }; } },
  });
  await dev.welcomed;
  nc = await connect({ servers: stack.cluster.servers, ...stack.cluster.creds });
  jsm = await nc.jetstreamManager();
});

after(async () => { closeAllClients(); if (nc) await nc.close(); await stopAll(); });

// Start a run as a client should: a 503 (the API could not store it, e.g.
// while a stream elects a leader) is retried with the same Idempotency-Key.
async function runToEnd(n) {
  const key = `cluster-${n}-${Date.now()}`;
  let r;
  await waitFor(`run ${n} accepted`, async () => {
    r = await api('POST', '/v1/runs', { agent: 'clustered', input: { n } }, { 'Idempotency-Key': key });
    if (r.status === 503) return false;
    return true;
  }, 30000, 250);
  assert.equal(r.status, 202, r.text);
  const w = watch(apiUrl, apiKey, r.json.run_id);
  const events = await w.done;
  return { runId: r.json.run_id, events };
}

function assertHistory(h, runId) {
  assert.ok(h.length > 0, `run ${runId}: no events`);
  h.forEach((ev, i) => assert.equal(ev.runseq, i + 1, `run ${runId}: event ${i} has runseq ${ev.runseq}`));
  const term = h.filter((e) => /run\.(completed|failed|cancelled|timed_out)$/.test(e.type));
  assert.equal(term.length, 1, `run ${runId}: ${term.length} terminal events`);
  assert.equal(term[0].type, 'runstream.run.completed');
}

test('every stream and bucket has 3 replicas', async () => {
  for await (const si of jsm.streams.list()) {
    assert.equal(si.config.num_replicas, 3, `${si.config.name} has ${si.config.num_replicas} replicas`);
    assert.equal(si.cluster?.replicas?.length, 2, `${si.config.name}: two followers`);
  }
});

test('a tool run completes; kill -9 of the RUNS leader; the next run completes', async () => {
  const pushed = await api('POST', '/v1/agents', agent);
  assert.ok([200, 201].includes(pushed.status), pushed.text);
  const first = await runToEnd(1);
  assert.equal(first.events.at(-1).type, 'run.completed');
  assert.deepEqual(first.events.at(-1).data.output, { said: 'hi 1' });
  assertHistory(await history(first.runId), first.runId);

  const leader = await stack.cluster.leaderOf('RUNS');
  assert.ok(leader, 'RUNS has a leader');
  await leader.kill('SIGKILL');
  leader.stopped = true;
  await waitFor('a new RUNS leader', async () => {
    const l = await stack.cluster.leaderOf('RUNS');
    return l && l.name !== leader.name;
  }, 30000, 100);

  const second = await runToEnd(2);
  assert.equal(second.events.at(-1).type, 'run.completed', JSON.stringify(second.events.map((e) => e.type)));
  assert.deepEqual(second.events.at(-1).data.output, { said: 'hi 2' });
  assertHistory(await history(second.runId), second.runId);
  for (const [call, n] of executions) assert.equal(n, 1, `call ${call} ran ${n} times`);

  // The killed node comes back with its store and catches up.
  await leader.restart();
  leader.stopped = false;
  await waitFor(`${leader.name} current on RUNS`, () => stack.cluster.isCurrent('RUNS', leader), 30000, 200);
});

// `runctl projector rebuild` on a cluster reads RUNS from the stream
// leader (an ordered consumer reads one replica, which nats-server 2.9.10
// can leave numbering the stream differently: bench/chaos, session 8).
// The rebuilt read model equals the live one.
test('the read model rebuilt from the leader equals the live one', async () => {
  const rows = () => stack.pg.psql("SELECT coalesce(string_agg(x, '|' ORDER BY x), '') FROM (" +
    "SELECT r.run_id || r.status || r.last_seq || coalesce(r.output::text, '') AS x FROM runs r UNION ALL " +
    "SELECT s.run_id || s.step_id || s.attempt || s.status FROM steps s) q");
  await waitFor('both runs completed in Postgres', () =>
    stack.pg.psql("SELECT count(*) FROM runs WHERE status = 'completed'") === '2', 30000, 200);
  const live = rows();
  const r = runctl(['projector', 'rebuild'], { ...env, RS_LOG_LEVEL: 'info' }, { timeout: 120000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr + r.stdout, /from the stream leader/);
  assert.equal(rows(), live);
});

