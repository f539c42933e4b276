// projector.test.mjs - rs-projector against a real nats-server and Postgres
// (issue 6): events -> rows for every type, kill -9 mid-batch, Postgres
// restarted mid-stream, duplicates and malformed events, rebuild while
// live. Events are CloudEvents built per common/rs_event.h
// (bench/projector/events.mjs) and published straight into RUNS. Every wait
// polls Postgres (the observable) with a bound.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect, headers, StringCodec } from 'nats';
import {
  startStack, startService, startProcess, stopAll, waitFor, freePort, bin, logTail, runctl, roleEnv,
} from '../lib/stack.mjs';
import { runMessages, publishAll, interleave, cloudEvent, uuid, eventHeaders, SHAPES } from '../../bench/projector/events.mjs';

after(stopAll);
const sc = StringCodec();

// One world per test: nats + streams, Postgres + migrations, a projector.
async function world(extraEnv = {}) {
  const stack = await startStack({ pg: true });
  const port = await freePort();
  const env = { ...stack.env, RS_PROJECTOR_OPS_PORT: String(port), RS_PROJECTOR_BATCH: '500', ...extraEnv };
  const nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  const js = nc.jetstream();
  const w = {
    ...stack, nc, js, env, port, proj: null,
    async startProjector() { w.proj = await startService('projector', env, port); return w.proj; },
    q: (sql) => stack.pg.psql(sql),
    checkpoint: () => parseInt(stack.pg.psql("SELECT coalesce(max(last_seq), 0) FROM projection_checkpoints WHERE projection = 'runs'"), 10),
    async streamLast() { return (await (await nc.jetstreamManager()).streams.info('RUNS')).state.last_seq; },
    async caughtUp(timeoutMs = 60000) {
      const last = await w.streamLast();
      await waitFor(`projector checkpoint reaching RUNS seq ${last}`, () => w.checkpoint() >= last, timeoutMs, 50);
    },
  };
  return w;
}

// md5 of every run table, rows in key order: equal checksums = equal tables.
function checksum(w) {
  return w.q(`SELECT concat_ws(' ',
    (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY run_id), '')) FROM runs t),
    (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY run_id, seq), '')) FROM run_events t),
    (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY run_id, step_id, attempt), '')) FROM steps t),
    (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY call_id), '')) FROM tool_calls t))`);
}

function rebuild(env) {
  return new Promise((resolve) => {
    execFile(bin('projector'), ['--rebuild'], { env: { ...process.env, ...roleEnv(env, 'projector') }, timeout: 120000 },
      (e, stdout, stderr) => resolve({ code: e ? (e.code ?? 1) : 0, stdout, stderr }));
  });
}

function manyRuns(n, tenant = 'acme') {
  const runs = [];
  for (let i = 0; i < n; i++) runs.push(runMessages(tenant, SHAPES[i % SHAPES.length], Date.now() - 60000 + i));
  return { runs, msgs: interleave(runs) };
}

// Invariants that hold for any correctly projected set of complete runs.
function assertConsistent(w, nRuns, nEvents) {
  assert.equal(parseInt(w.q('SELECT count(*) FROM runs'), 10), nRuns);
  assert.equal(parseInt(w.q('SELECT count(*) FROM run_events'), 10), nEvents);
  assert.equal(w.q('SELECT count(*) FROM runs r WHERE last_seq <> (SELECT count(*) FROM run_events e WHERE e.run_id = r.run_id)'), '0');
  assert.equal(w.q('SELECT count(*) FROM (SELECT run_id, step_id FROM steps GROUP BY 1, 2 HAVING count(*) FILTER (WHERE latest) <> 1) x'), '0');
}

test('every event type becomes rows: runs, run_events, steps, tool_calls, agents, devices', async () => {
  const w = await world();
  await w.startProjector();
  const byShape = {};
  for (const s of SHAPES) byShape[s] = runMessages('acme', s);
  await publishAll(w.js, headers, interleave(Object.values(byShape)));
  // KV projections: an agent version + latest pointer, a device's presence.
  const agents = await w.js.views.kv('agents');
  await agents.put('acme.greeter.0123456789abcdef', sc.encode(JSON.stringify({ name: 'greeter', steps: [] })));
  await agents.put('acme.greeter.latest', sc.encode(JSON.stringify({ version: '0123456789abcdef' })));
  const presence = await w.js.views.kv('presence');
  await presence.put('acme.dev-1', sc.encode(JSON.stringify({ router: 'router-a', tools: [{ name: 'http.get', description: 'GET', input_schema: {} }], connected_at: new Date().toISOString() })));
  await presence.put('acme.dev-2', sc.encode(JSON.stringify({ router: 'router-a', tools: [] })));
  await w.caughtUp();
  await waitFor('agents and devices projected', () =>
    w.q("SELECT count(*) FROM agent_versions") === '1' && w.q("SELECT count(*) FROM devices WHERE online") === '2', 15000, 50);
  await presence.delete('acme.dev-2');
  await waitFor('deleted presence -> offline', () => w.q("SELECT online FROM devices WHERE device_id = 'dev-2'") === 'f', 15000, 50);

  const id = (s) => byShape[s][0].runId;
  const status = (s) => w.q(`SELECT status FROM runs WHERE run_id = '${id(s)}'`);
  assert.equal(status('tool_ok'), 'completed');
  assert.equal(status('retry_fail'), 'failed');
  assert.equal(status('signal_ok'), 'completed');
  assert.equal(status('cancelled'), 'cancelled');
  assert.equal(status('timed_out'), 'timed_out');
  assert.equal(status('waiting'), 'waiting');
  assert.equal(status('queued'), 'queued');
  assertConsistent(w, SHAPES.length, Object.values(byShape).reduce((a, m) => a + m.length, 0));
  // runs columns
  assert.equal(w.q(`SELECT concat_ws('|', output->>'greeting', output->>'quote', agent, version, started_at IS NOT NULL, finished_at IS NOT NULL, current_step) FROM runs WHERE run_id = '${id('tool_ok')}'`),
    "hello Ada|it's \\ fine|greeter|0123456789abcdef|t|t|pause");
  assert.equal(w.q(`SELECT concat_ws('|', error->>'code', error->>'step_id') FROM runs WHERE run_id = '${id('retry_fail')}'`), 'step_failed|charge');
  assert.equal(w.q(`SELECT cancel_reason FROM runs WHERE run_id = '${id('cancelled')}'`), 'user asked');
  assert.equal(w.q(`SELECT last_seq FROM runs WHERE run_id = '${id('retry_fail')}'`), '15');
  // steps: one row per attempt, latest flag on the last attempt
  assert.equal(w.q(`SELECT string_agg(concat_ws(':', attempt, status, latest, error->>'code'), ',' ORDER BY attempt) FROM steps WHERE run_id = '${id('retry_fail')}'`),
    '1:failed:f:tool_error,2:failed:t:timeout');
  assert.equal(w.q(`SELECT string_agg(concat_ws(':', step_id, status, coalesce(next_step, '-')), ',' ORDER BY started_at) FROM steps WHERE run_id = '${id('tool_ok')}'`),
    'fetch:completed:pause,pause:completed:-');
  assert.equal(w.q(`SELECT status FROM steps WHERE run_id = '${id('cancelled')}'`), 'cancelled');
  assert.equal(w.q(`SELECT status FROM steps WHERE run_id = '${id('timed_out')}'`), 'timed_out');
  // tool calls: every status, attempts = dispatches
  const calls = (s) => w.q(`SELECT string_agg(concat_ws(':', status, attempts, coalesce(device_id, '-')), ',' ORDER BY requested_at, call_id) FROM tool_calls WHERE run_id = '${id(s)}'`);
  assert.equal(calls('tool_ok'), 'completed:1:dev-1');
  assert.equal(calls('retry_fail'), 'failed:1:dev-2,timed_out:0:-');
  assert.equal(calls('timed_out'), 'timed_out:1:dev-3');
  assert.equal(calls('waiting'), 'requested:0:-');
  assert.equal(w.q(`SELECT output->>'body' FROM tool_calls WHERE run_id = '${id('tool_ok')}'`), 'sunny\twarm\n'.trimEnd());
  // run_events: the CloudEvent parts
  assert.equal(w.q(`SELECT string_agg(type, ',' ORDER BY seq) FROM run_events WHERE run_id = '${id('signal_ok')}'`),
    'run.created,run.started,step.started,timer.scheduled,signal.received,step.completed,run.completed');
  assert.equal(w.q(`SELECT event_id = run_id || '-' || seq AND traceparent LIKE '00-%' AND source = 'runstream/orchestrator' FROM run_events WHERE run_id = '${id('queued')}'`), 't');
  assert.equal(w.q("SELECT latest_version FROM agents WHERE tenant = 'acme' AND name = 'greeter'"), '0123456789abcdef');
  assert.equal(w.q("SELECT concat_ws(':', router, jsonb_array_length(tools)) FROM devices WHERE device_id = 'dev-1'"), 'router-a:1');
  assert.equal(w.q('SELECT count(*) FROM dead_letters'), '0');
  // lag metrics exported
  const metrics = await (await fetch(`http://127.0.0.1:${w.port}/metrics`)).text();
  assert.match(metrics, /rs_projector_lag_messages\{projection="runs"\} 0/);
  assert.match(metrics, /rs_projector_events_applied_total\{projection="runs"\}/);
  // graceful stop
  const exit = await w.proj.kill('SIGTERM');
  assert.equal(exit.code, 0, logTail(w.proj));
  await w.nc.close();
});

test('kill -9 in the middle of a batch, restart: tables identical to a clean rebuild', async () => {
  const w = await world({ RS_PROJECTOR_BATCH: '200' });
  const { runs, msgs } = manyRuns(3500);
  await publishAll(w.js, headers, msgs);
  const total = msgs.length;
  const p = startProcess(`projector-${w.port}`, bin('projector'), [], roleEnv(w.env, 'projector'));
  await waitFor('first batches committed', () => w.checkpoint() > 0, 30000, 5);
  await p.kill('SIGKILL');
  const at = w.checkpoint();
  assert.ok(at < total, `killed at ${at} of ${total}: not mid-stream`);
  await w.startProjector();
  await w.caughtUp();
  assertConsistent(w, runs.length, total);
  const live = checksum(w);
  const r = await rebuild(w.env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`rebuilt ${total} events`));
  assert.equal(checksum(w), live);
  assert.equal(w.q('SELECT count(*) FROM dead_letters'), '0');
  await w.nc.close();
});

test('Postgres restarted mid-stream: projector waits, catches up, loses nothing', async () => {
  const w = await world();
  await w.startProjector();
  const a = manyRuns(300);
  await publishAll(w.js, headers, a.msgs);
  await w.caughtUp();
  await w.pg.stop();
  await waitFor('/readyz 503 while Postgres is down', async () =>
    (await fetch(`http://127.0.0.1:${w.port}/readyz`)).status === 503, 15000, 50);
  const b = manyRuns(300);
  await publishAll(w.js, headers, b.msgs);
  assert.equal(w.proj.proc.exitCode, null, 'projector must not exit while Postgres is down');
  await w.pg.start();
  await w.caughtUp();
  await waitFor('/readyz 200 again', async () =>
    (await fetch(`http://127.0.0.1:${w.port}/readyz`)).status === 200, 15000, 50);
  assertConsistent(w, 600, a.msgs.length + b.msgs.length);
  const live = checksum(w);
  const r = await rebuild(w.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(checksum(w), live);
  await w.nc.close();
});

// JetStream redelivers out of order: a message handed to a pull request
// that is then lost (a NATS node killed) comes back after AckWait (60 s),
// behind newer ones, and the checkpoint would have passed it. Here another
// client takes one message from the projector's durable and never acks it:
// the projector must notice the hole and start again from its checkpoint.
test('a message delivered elsewhere and never acked is still projected, in order', async () => {
  const w = await world();
  await w.startProjector();
  const a = manyRuns(20);
  await publishAll(w.js, headers, a.msgs);
  await w.caughtUp();
  // Stopped, the projector's outstanding pull request (a batch of
  // RS_PROJECTOR_BATCH, 500) takes the first 500 messages; the next one is
  // there for another puller, which takes it and never acks it.
  const b = manyRuns(300);
  assert.ok(b.msgs.length > 1500);
  process.kill(w.proj.pid, 'SIGSTOP');
  let stolen = null;
  try {
    await publishAll(w.js, headers, b.msgs);
    stolen = await w.nc.request('$JS.API.CONSUMER.MSG.NEXT.RUNS.projector-runs',
      // noMux: a muxed request's reply inbox does not get the message.
      JSON.stringify({ batch: 1, expires: 2000e6 }), { timeout: 5000, noMux: true }).catch(() => null);
  } finally {
    process.kill(w.proj.pid, 'SIGCONT');
  }
  assert.ok(stolen && stolen.data.length > 0, `a message was taken from the projector's durable (${stolen?.headers?.code})`);
  await w.caughtUp(30000);   // well before the stolen message's AckWait (60 s)
  assertConsistent(w, 320, a.msgs.length + b.msgs.length);
  assert.equal(w.q('SELECT count(*) FROM dead_letters'), '0');
  assert.match(logTail(w.proj, 400), /was passed over/);
  await w.nc.close();
});

// On a cluster, replicas of RUNS can disagree after repeated kill -9
// (nats-server 2.9.10), so the read model can miss events its checkpoint
// says it passed. The run's next event then shows the gap: the projector
// reads the run from the stream leader and applies what its row lacks.
// Here the rows of a run in flight are deleted to make the read model miss
// its first events.
test('a runseq gap the log can fill is filled from the log, not dead-lettered', async () => {
  const w = await world();
  await w.startProjector();
  const run = runMessages('acme', SHAPES[0]);
  assert.ok(run.length >= 6);
  const half = Math.floor(run.length / 2);
  await publishAll(w.js, headers, run.slice(0, half));
  await w.caughtUp();
  w.q(`DELETE FROM run_events WHERE run_id = '${run[0].runId}'`);
  w.q(`DELETE FROM runs WHERE run_id = '${run[0].runId}'`);   // cascades to its steps and calls
  await publishAll(w.js, headers, run.slice(half));
  await w.caughtUp();
  await waitFor('the run healed', () => w.q(`SELECT last_seq FROM runs WHERE run_id = '${run[0].runId}'`) === String(run.length), 10000, 50);
  assert.equal(w.q(`SELECT count(*) FROM run_events WHERE run_id = '${run[0].runId}'`), String(run.length));
  assert.equal(w.q('SELECT count(*) FROM dead_letters'), '0');
  assert.match(logTail(w.proj, 200), /had a runseq gap after 0: \d+ event\(s\) applied from the stream leader/);
  await w.nc.close();
});

test('duplicate runseq, gaps and malformed events go to dead_letters; the projector continues', async () => {
  const w = await world();
  await w.startProjector();
  const run = runMessages('acme', 'tool_ok');
  const runId = run[0].runId;
  await publishAll(w.js, headers, run.slice(0, 3));
  const enc = new TextEncoder();
  const subj = `runs.acme.${runId}`;
  const pub = (body, id, type = 'step.started') =>
    w.js.publish(subj, enc.encode(body), { msgID: id, headers: eventHeaders(headers, type) });
  // Same runseq 2 again under another msg id: a duplicate, not re-applied.
  const dup = cloudEvent('acme', runId, 2, 'run.started', { instance: 'other' }, Date.now());
  await pub(JSON.stringify(dup), `dup-${uuid()}`, 'run.started');
  await pub('{"not": json', `bad-${uuid()}`);
  const noStep = cloudEvent('acme', runId, 4, 'step.started', { kind: 'tool', attempt: 1 }, Date.now());
  await pub(JSON.stringify(noStep), `bad-${uuid()}`);
  const gap = cloudEvent('acme', runId, 9, 'run.started', {}, Date.now());
  await pub(JSON.stringify(gap), `gap-${uuid()}`, 'run.started');
  const other = cloudEvent('other', runId, 4, 'run.started', {}, Date.now());
  await pub(JSON.stringify(other), `wrong-${uuid()}`, 'run.started');
  // The rest of the run, after the bad ones.
  await publishAll(w.js, headers, run.slice(3));
  await w.caughtUp();
  assert.equal(w.q(`SELECT status || ':' || last_seq FROM runs WHERE run_id = '${runId}'`), `completed:${run.length}`);
  assert.equal(w.q(`SELECT count(*) FROM run_events WHERE run_id = '${runId}'`), String(run.length));
  const reasons = w.q("SELECT string_agg(reason, E'\\n' ORDER BY stream_seq) FROM dead_letters WHERE source = 'projector.runs'").split('\n');
  assert.equal(reasons.length, 5, reasons.join('\n'));
  assert.match(reasons[0], /duplicate runseq 2/);
  assert.match(reasons[1], /malformed event/);
  assert.match(reasons[2], /malformed event: data\.step_id/);
  assert.match(reasons[3], /runseq gap: expected 4, got 9/);
  assert.match(reasons[4], /does not match/);
  // Also on the DLQ stream.
  const jsm = await w.nc.jetstreamManager();
  await waitFor('dead letters on dlq.projector', async () =>
    (await jsm.streams.info('DLQ', { subjects_filter: 'dlq.projector' })).state.messages === 5, 10000, 50);
  // A rebuild replays the same stream: same rows, no second dead letter.
  const live = checksum(w);
  const r = await rebuild(w.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(checksum(w), live);
  assert.equal(w.q('SELECT count(*) FROM dead_letters'), '5');
  await w.nc.close();
});

test('rebuild while live: publishing continues, live projector continues into the new tables', async () => {
  const w = await world();
  await w.startProjector();
  const first = manyRuns(2000);
  await publishAll(w.js, headers, first.msgs);
  // Publishing continues during the rebuild (bounded, so a slow sanitizer
  // build does not make the rebuild chase an ever-growing stream).
  let stop = false, published = first.msgs.length, nRuns = first.runs.length;
  const feeder = (async () => {
    for (let i = 0; i < 60 && !stop; i++) {
      const more = manyRuns(50);
      await publishAll(w.js, headers, more.msgs);
      published += more.msgs.length;
      nRuns += more.runs.length;
    }
  })();
  const r = await rebuild(w.env);
  stop = true;
  await feeder;
  // After the swap the live projector must go on, into the new tables.
  const post = manyRuns(200);
  await publishAll(w.js, headers, post.msgs);
  published += post.msgs.length;
  nRuns += post.runs.length;
  assert.equal(r.code, 0, r.stderr);
  await w.caughtUp();
  assertConsistent(w, nRuns, published);
  const live = checksum(w);
  const r2 = await rebuild(w.env);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(checksum(w), live);
  assert.equal(w.q("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild_%' OR nspname LIKE 'retired_%'"), '0');
  assert.equal(w.proj.proc.exitCode, null);
  await w.nc.close();
});

// The leader lock (services/projector/leader.c): one instance applies, the
// other stands by, ready, with rs_projector_leader 0.
async function leaderOf(port) {
  const m = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return parseInt((m.match(/^rs_projector_leader (\S+)/m) || [])[1] ?? '-1', 10);
}

test('two projectors: one leads, the standby takes over after kill -9, tables equal a rebuild', async () => {
  const w = await world({ RS_PROJECTOR_BATCH: '200' });
  const a = await w.startProjector();
  assert.equal(await leaderOf(w.port), 1);
  const portB = await freePort();
  const b = await startService('projector', { ...w.env, RS_PROJECTOR_OPS_PORT: String(portB) }, portB);
  const ready = await fetch(`http://127.0.0.1:${portB}/readyz`);
  assert.equal(ready.status, 200, 'a hot standby is ready');
  assert.equal(await leaderOf(portB), 0);
  const { runs, msgs } = manyRuns(3500);
  const total = msgs.length;
  const feeding = publishAll(w.js, headers, msgs);
  await waitFor('leader applying', () => w.checkpoint() > 0, 30000, 5);
  await a.kill('SIGKILL');
  const at = w.checkpoint();
  const killedAt = Date.now();
  await waitFor('standby takes the lock', async () => (await leaderOf(portB)) === 1, 15000, 50);
  const takeoverMs = Date.now() - killedAt;
  assert.ok(takeoverMs < 10000, `takeover took ${takeoverMs} ms`);
  await feeding;
  assert.ok(at < total, `killed at ${at} of ${total}: not mid-stream`);
  await w.caughtUp(120000);
  assertConsistent(w, runs.length, total);
  assert.equal(w.q('SELECT count(*) FROM dead_letters'), '0');
  const live = checksum(w);
  const r = await rebuild(w.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(checksum(w), live);
  assert.equal(b.proc.exitCode, null, logTail(b));
  await w.nc.close();
});

test('runctl projector rebuild from the build tree finds rs-projector and swaps', async () => {
  const w = await world();
  await w.startProjector();
  const { runs, msgs } = manyRuns(200);
  await publishAll(w.js, headers, msgs);
  await w.caughtUp();
  const live = checksum(w);
  // RS_PROJECTOR_BIN empty = unset: runctl must find ../services/projector/rs-projector.
  const r = runctl(['projector', 'rebuild'], { ...w.env, RS_PROJECTOR_BIN: '' }, { timeout: 120000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`rebuilt ${msgs.length} events`));
  assert.equal(checksum(w), live);
  assertConsistent(w, runs.length, msgs.length);
  await w.nc.close();
});
