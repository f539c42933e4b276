// orchestration.test.mjs - parallel, foreach and run steps (issue 17) end to
// end: real nats-server and Postgres, the four services, a real device
// through a real router, HTTP and SSE clients, runctl replay --check on the
// parent and on every child run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, startService, stopAll, runctl, freePort, waitFor } from '../lib/stack.mjs';
import { apiClient, watch, device, closeAllClients } from '../lib/clients.mjs';

let stack; let env; let api; let apiKey; let apiUrl; let token; let router;
const procs = {};
const checked = []; // every run id (parents and children), for replay --check
const TERMINAL = ['run.completed', 'run.failed', 'run.cancelled', 'run.timed_out'];

function secret(args) {
  const r = runctl(args, env);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

async function push(def) {
  const r = await api('POST', '/v1/agents', def);
  assert.ok(r.status === 201 || r.status === 200, `${r.status} ${r.text}`);
  return r.json.version;
}

async function start(agent, input) {
  const r = await api('POST', '/v1/runs', { agent, input });
  assert.equal(r.status, 202, r.text);
  checked.push(r.json.run_id);
  return r.json.run_id;
}

const finish = (runId) => watch(apiUrl, apiKey, runId).done;

function assertSeqs(events) {
  events.forEach((e, i) => assert.equal(e.id, i + 1, `runseq ${e.id} at position ${i + 1}`));
  assert.equal(events.filter((e) => TERMINAL.includes(e.type)).length, 1, 'exactly one terminal event');
}

const childIds = (events) => events.filter((e) => e.type === 'child.started').map((e) => e.data.child_run_id);

// The device answers `inc` after `delayMs`, and keeps the highest number
// of calls it held at once: concurrent branches must reach it concurrently.
function incDevice(delayMs) {
  const stats = { inFlight: 0, max: 0, calls: 0 };
  const dev = device(router.url, {
    deviceId: 'dev-1', token, tools: ['inc', 'hold'],
    handlers: {
      inc: async (args) => {
        stats.calls++;
        stats.inFlight++;
        stats.max = Math.max(stats.max, stats.inFlight);
        await new Promise((r) => setTimeout(r, delayMs));
        stats.inFlight--;
        if (args.fail) throw Object.assign(new Error('told to fail'), { code: 'bad_input', retryable: false });
        return { n: Number(args.n) + 1 };
      },
      hold: () => new Promise(() => {}), // never answers: the run waits
    },
  });
  return { dev, stats };
}

before(async () => {
  stack = await startStack({ pg: true });
  env = stack.env;
  apiKey = secret(['keys', 'create', '--tenant', 'acme']);
  token = secret(['devices', 'token', '--tenant', 'acme', '--device', 'dev-1']);
  let port = await freePort();
  procs.orch = await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(port), RS_INSTANCE_ID: 'orch' }, port);
  port = await freePort();
  procs.projector = await startService('projector', { ...env, RS_PROJECTOR_OPS_PORT: String(port) }, port);
  port = await freePort();
  procs.api = await startService('api', { ...env, RS_API_PORT: String(port) }, port);
  apiUrl = `http://127.0.0.1:${port}`;
  api = apiClient(apiUrl, apiKey);
  port = await freePort();
  router = await startService('router', { ...env, RS_ROUTER_PORT: String(port), RS_INSTANCE_ID: 'router-a' }, port);
  router.url = `ws://127.0.0.1:${port}/v1/devices/connect`;
});

after(async () => { closeAllClients(); await stopAll(); });

test('parallel: branches run as child runs, their tool calls reach the device concurrently', async () => {
  const { dev, stats } = incDevice(400);
  await dev.welcomed;
  const version = await push({
    name: 'fan',
    steps: [
      { id: 'prep', kind: 'transform', value: { base: '{{input.n}}' } },
      {
        id: 'fan', kind: 'parallel', input: { n: '{{steps.prep.output.base}}' },
        branches: {
          left: [{ id: 'inc', kind: 'tool', tool: 'inc', capability: 'inc', args: { n: '{{input.n}}' } }],
          right: [
            { id: 'inc', kind: 'tool', tool: 'inc', capability: 'inc', args: { n: '{{input.n}}' } },
            { id: 'again', kind: 'tool', tool: 'inc', capability: 'inc', args: { n: '{{steps.inc.output.n}}' } },
          ],
        },
      },
    ],
    output: { left: '{{steps.fan.output.left.n}}', right: '{{steps.fan.output.right.n}}' },
  });
  const runId = await start('fan', { n: 10 });
  const events = await finish(runId);
  assertSeqs(events);
  assert.equal(events.at(-1).type, 'run.completed', JSON.stringify(events.at(-1)));
  assert.deepEqual(events.at(-1).data.output, { left: 11, right: 12 });
  assert.ok(stats.max >= 2, `two branches' calls were on the device at once (max ${stats.max})`);
  assert.equal(stats.calls, 3);

  const kids = childIds(events);
  assert.equal(kids.length, 2);
  for (const kid of kids) {
    checked.push(kid);
    const ce = await finish(kid);
    assertSeqs(ce);
    const created = ce[0];
    assert.equal(created.type, 'run.created');
    assert.equal(created.data.parent_run_id, runId);
    assert.equal(created.data.root_run_id, runId);
    assert.equal(created.data.version, version);
    assert.match(created.data.scope, /^fan\/(left|right)$/);
    assert.deepEqual(created.data.input, { n: 10 });
  }
  // GET lists the children of the parent and names the parent of a child.
  // (the children's rows are projected on their own: wait for both)
  let got;
  await waitFor('the children to be projected', async () => {
    got = await api('GET', `/v1/runs/${runId}`);
    return got.status === 200 && got.json.children?.filter((c) => c.status === 'completed').length === 2;
  });
  assert.deepEqual(got.json.children.map((c) => c.run_id).sort(), [...kids].sort());
  const kid = await api('GET', `/v1/runs/${kids[0]}`);
  assert.equal(kid.status, 200, kid.text);
  assert.equal(kid.json.parent_run_id, runId);
  assert.equal(kid.json.root_run_id, runId);
  await dev.close();
});

test('foreach: one child per element, at most max_concurrency at once, outputs in input order', async () => {
  const { dev, stats } = incDevice(200);
  await dev.welcomed;
  await push({
    name: 'each',
    steps: [{
      id: 'loop', kind: 'foreach', items: '{{input.xs}}', max_concurrency: 3,
      steps: [{ id: 'inc', kind: 'tool', tool: 'inc', capability: 'inc', args: { n: '{{input.item}}' } }],
    }],
    output: '{{steps.loop.output}}',
  });
  const xs = [5, 1, 9, 3, 7, 2, 8];
  const runId = await start('each', { xs });
  const events = await finish(runId);
  assertSeqs(events);
  assert.equal(events.at(-1).type, 'run.completed', JSON.stringify(events.at(-1)));
  assert.deepEqual(events.at(-1).data.output, xs.map((x) => ({ n: x + 1 })));
  assert.ok(stats.max >= 2 && stats.max <= 3, `1 < concurrency <= 3 (max ${stats.max})`);
  const kids = childIds(events);
  assert.equal(kids.length, xs.length);
  for (const kid of kids) checked.push(kid);
  await dev.close();
});

test('run: a child run of another agent; a failing branch fails the parent and cancels the rest', async () => {
  const { dev } = incDevice(50);
  await dev.welcomed;
  await push({ name: 'inner', steps: [{ id: 'inc', kind: 'tool', tool: 'inc', capability: 'inc', args: { n: '{{input.n}}', fail: '{{input.fail}}' } }], output: '{{steps.inc.output}}' });
  await push({ name: 'outer', steps: [{ id: 'call', kind: 'run', agent: 'inner', input: { n: '{{input.n}}', fail: '{{input.fail}}' } }], output: { got: '{{steps.call.output.n}}' } });
  let runId = await start('outer', { n: 41, fail: false });
  let events = await finish(runId);
  assertSeqs(events);
  assert.deepEqual(events.at(-1).data.output, { got: 42 });
  const [kid] = childIds(events);
  checked.push(kid);
  const ke = await finish(kid);
  assert.equal(ke[0].data.agent, 'inner');
  assert.equal(ke[0].data.parent_step_id, 'call');

  // the child fails: so does the step, with the child's error code
  runId = await start('outer', { n: 1, fail: true });
  events = await finish(runId);
  assert.equal(events.at(-1).type, 'run.failed');
  assert.equal(events.at(-1).data.error.code, 'bad_input');
  checked.push(...childIds(events));

  // a child whose agent does not exist: its run.start is dead-lettered and
  // the parent is told (it never waits for a run that cannot start)
  await push({ name: 'orphan', steps: [{ id: 'call', kind: 'run', agent: 'no-such-agent' }] });
  runId = await start('orphan', {});
  events = await finish(runId);
  assert.equal(events.at(-1).type, 'run.failed');
  assert.equal(events.at(-1).data.error.code, 'child_not_started');

  // parallel: one branch fails, the other (waiting on a device) is cancelled
  await push({
    name: 'half',
    steps: [{ id: 'fan', kind: 'parallel', branches: {
      bad: [{ id: 'x', kind: 'tool', tool: 'inc', capability: 'inc', args: { n: 1, fail: true } }],
      slow: [{ id: 'y', kind: 'tool', tool: 'hold', capability: 'hold' }],
    } }],
  });
  runId = await start('half', {});
  events = await finish(runId);
  assert.equal(events.at(-1).type, 'run.failed');
  assert.equal(events.at(-1).data.error.code, 'child_failed');
  const started = events.filter((e) => e.type === 'child.started');
  const slow = started.find((e) => e.data.key === 'slow').data.child_run_id;
  const se = await finish(slow);
  assert.equal(se.at(-1).type, 'run.cancelled', 'the branch still running was cancelled');
  checked.push(...childIds(events));
  await dev.close();
});

test('cancelling the parent cancels its children', async () => {
  const { dev } = incDevice(10);
  await dev.welcomed;
  await push({
    name: 'waits',
    steps: [{ id: 'fan', kind: 'parallel', branches: {
      a: [{ id: 'x', kind: 'tool', tool: 'hold', capability: 'hold' }],
      b: [{ id: 'y', kind: 'tool', tool: 'hold', capability: 'hold' }],
    } }],
  });
  const runId = await start('waits', {});
  const w = watch(apiUrl, apiKey, runId);
  await w.until((e) => e.type === 'child.started' && e.data.key === 'b');
  const kids = childIds(w.events);
  // the parent waits for its children (the read model says so too)
  await waitFor('the parent to read as waiting', async () => (await api('GET', `/v1/runs/${runId}`)).json?.status === 'waiting');
  // wait until both children hold a call on the device
  await waitFor('both children to call the device', () => dev.calls.filter((c) => c.tool === 'hold').length >= 2);
  const c = await api('POST', `/v1/runs/${runId}/cancel`, { reason: 'enough' });
  assert.ok(c.status === 202 || c.status === 200, c.text);
  const events = await w.done;
  assert.equal(events.at(-1).type, 'run.cancelled');
  for (const kid of kids) {
    const ke = await finish(kid);
    assert.equal(ke.at(-1).type, 'run.cancelled', `child ${kid} cancelled`);
    checked.push(kid);
  }
  await dev.close();
});

test('kill -9 the orchestrator while foreach runs fan out: every run ends once, no child started twice', async () => {
  const { dev } = incDevice(30);
  await dev.welcomed;
  await push({
    name: 'fanout-crash',
    steps: [
      { id: 'loop', kind: 'foreach', items: '{{input.xs}}', max_concurrency: 2,
        steps: [{ id: 'inc', kind: 'tool', tool: 'inc', capability: 'inc', args: { n: '{{input.item}}' } }] },
      { id: 'both', kind: 'parallel', input: { v: '{{steps.loop.output}}' }, branches: {
        a: [{ id: 'x', kind: 'transform', value: '{{input.v}}' }],
        b: [{ id: 'y', kind: 'tool', tool: 'inc', capability: 'inc', args: { n: 100 } }] } },
    ],
    output: { loop: '{{steps.loop.output}}', b: '{{steps.both.output.b.n}}' },
  });
  const RUNS = 12;
  const xs = [1, 2, 3, 4, 5];
  const ids = [];
  for (let i = 0; i < RUNS; i++) ids.push(await start('fanout-crash', { xs }));
  const watchers = ids.map((id) => watch(apiUrl, apiKey, id));
  // kill at points read from the log: while children are being started,
  // then while they finish, then in the parallel step
  const kill = async () => {
    await procs.orch.kill('SIGKILL');
    const port = await freePort();
    procs.orch = await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(port), RS_INSTANCE_ID: 'orch' }, port);
  };
  await watchers[RUNS - 1].until((e) => e.type === 'child.started');
  await kill();
  await watchers[RUNS - 1].until((e) => e.type === 'child.finished');
  await kill();
  await watchers[0].until((e) => e.type === 'child.started' && e.data.step_id === 'both', 60000);
  await kill();
  const all = await Promise.all(watchers.map((w) => w.done));
  const want = xs.map((x) => ({ n: x + 1 }));
  for (const [i, events] of all.entries()) {
    assertSeqs(events);
    assert.equal(events.at(-1).type, 'run.completed', `${ids[i]}: ${JSON.stringify(events.at(-1))}`);
    assert.deepEqual(events.at(-1).data.output, { loop: want, b: 101 });
    const started = events.filter((e) => e.type === 'child.started');
    assert.equal(started.length, xs.length + 2, `${ids[i]}: one child.started per element and branch`);
    assert.equal(new Set(started.map((e) => e.data.child_run_id)).size, started.length);
    assert.equal(events.filter((e) => e.type === 'child.finished').length, started.length);
    checked.push(...started.map((e) => e.data.child_run_id));
  }
  // every child ran once: one history each, completed
  for (const kid of checked.slice(-RUNS * (xs.length + 2))) {
    const ce = await finish(kid);
    assertSeqs(ce);
    assert.equal(ce.at(-1).type, 'run.completed', kid);
  }
  // every tool call of every child reached the device (a redelivery keeps its call_id)
  const callIds = new Set(dev.calls.map((c) => c.call_id));
  assert.equal(callIds.size, RUNS * (xs.length + 1));
  await dev.close();
});

test('tags: recorded on run.created, filtered by GET /v1/runs?tag= and created_after/before, runctl runs ls --tag', async () => {
  await push({ name: 'tagged', steps: [{ id: 'x', kind: 'transform', value: '{{input.n}}' }] });
  const t0 = new Date(Date.now() - 1000).toISOString();
  const mk = async (tags, n) => {
    const r = await api('POST', '/v1/runs', { agent: 'tagged', input: { n }, tags });
    assert.equal(r.status, 202, r.text);
    checked.push(r.json.run_id);
    return r.json.run_id;
  };
  const blue1 = await mk({ team: 'blue', 'cust.id': 'c 1' }, 1);
  const blue2 = await mk({ team: 'blue' }, 2);
  const red = await mk({ team: 'red' }, 3);
  const events = await finish(blue1);
  assert.deepEqual(events[0].data.tags, { team: 'blue', 'cust.id': 'c 1' });
  await finish(blue2);
  await finish(red);
  await waitFor('the tagged runs to be projected', async () => {
    const r = await api('GET', `/v1/runs?tag=${encodeURIComponent('team:blue')}`);
    return r.status === 200 && r.json.runs.length === 2;
  });
  let r = await api('GET', `/v1/runs?tag=${encodeURIComponent('team:blue')}`);
  assert.deepEqual(r.json.runs.map((x) => x.run_id), [blue2, blue1]);
  assert.deepEqual(r.json.runs[1].tags, { team: 'blue', 'cust.id': 'c 1' });
  r = await api('GET', `/v1/runs?tag=${encodeURIComponent('cust.id:c 1')}`);
  assert.deepEqual(r.json.runs.map((x) => x.run_id), [blue1]);
  r = await api('GET', `/v1/runs?tag=team:red&created_after=${encodeURIComponent(t0)}`);
  assert.deepEqual(r.json.runs.map((x) => x.run_id), [red]);
  r = await api('GET', `/v1/runs?tag=team:red&created_before=${encodeURIComponent(t0)}`);
  assert.deepEqual(r.json.runs, []);
  const got = await api('GET', `/v1/runs/${blue2}`);
  assert.deepEqual(got.json.tags, { team: 'blue' });
  // bounded and validated
  for (const [tags, want] of [
    ['x', /tags: must be an object of strings/],
    [{ a: 1 }, /tags.a: must be a string of at most 256 bytes/],
    [{ 'a:b': 'x' }, /tags: key .*a:b.* must match/],
    [{ a: 'x'.repeat(257) }, /at most 256 bytes/],
    [Object.fromEntries([...Array(17).keys()].map((i) => [`k${i}`, 'v'])), /at most 16 tags/],
  ]) {
    const bad = await api('POST', '/v1/runs', { agent: 'tagged', input: {}, tags });
    assert.equal(bad.status, 422, bad.text);
    assert.match(bad.text, want);
  }
  for (const q of ['tag=nocolon', 'created_after=yesterday', `tag=${encodeURIComponent('a b:x')}`]) {
    const bad = await api('GET', `/v1/runs?${q}`);
    assert.equal(bad.status, 400, `${q}: ${bad.text}`);
  }
  // runctl runs ls --tag
  const ls = runctl(['runs', 'ls', '--tag', 'team:blue'], { ...env, RS_API_URL: apiUrl, RS_API_KEY: apiKey });
  assert.equal(ls.code, 0, ls.stderr);
  assert.ok(ls.stdout.includes(blue1) && ls.stdout.includes(blue2) && !ls.stdout.includes(red), ls.stdout);
});

test('runctl replay --check passes on every parent and child run', async () => {
  assert.ok(checked.length >= 15, `${checked.length} runs`);
  for (const id of checked) {
    const r = runctl(['replay', id, '--check'], env, { timeout: 30000 });
    assert.equal(r.code, 0, `${id}: ${r.stdout}\n${r.stderr}`);
  }
  // the tree view of a parent names its children
  const parent = checked[0];
  const t = runctl(['replay', parent], env, { timeout: 30000 });
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /children \(key, run, status\):\n  left [0-9a-f-]{36}  completed\n  right [0-9a-f-]{36}  completed/);
});
