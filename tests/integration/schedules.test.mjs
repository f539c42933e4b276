// schedules.test.mjs - /v1/schedules through HTTP with real nats-server,
// Postgres and two orchestrators firing the same schedules: each tick
// starts exactly one run (derived run id), runs carry schedule_id and
// schedule_tick, pause stops the ticks and resume restarts them without
// firing the paused ones, catch-up `all` after downtime fires the latest
// max_catch_up missed ticks, validation and tenancy, runctl schedules.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { startStack, startService, stopAll, runctl, freePort } from '../lib/stack.mjs';
import { apiClient, closeAllClients, followRuns } from '../lib/clients.mjs';

let stack; let env; let api; let other; let apiUrl; let apiKey; let nc;
const orchs = [];
const created = [];   // run.created data of scheduled runs, in log order

async function startOrch(name) {
  const port = await freePort();
  const p = await startService('orchestrator', {
    ...env, RS_ORCHESTRATOR_OPS_PORT: String(port), RS_INSTANCE_ID: name,
    RS_ORCH_SCHEDULER_TICK_MS: '200', RS_ORCH_SCHEDULE_GRACE_MS: '1500',
  }, port);
  orchs.push(p);
  return p;
}

before(async () => {
  stack = await startStack({ pg: true });
  env = stack.env;
  apiKey = runctl(['keys', 'create', '--tenant', 'acme'], env).stdout.trim();
  const otherKey = runctl(['keys', 'create', '--tenant', 'globex'], env).stdout.trim();
  await startOrch('o1');
  await startOrch('o2');
  const port = await freePort();
  await startService('api', { ...env, RS_API_PORT: String(port) }, port);
  apiUrl = `http://127.0.0.1:${port}`;
  api = apiClient(apiUrl, apiKey);
  other = apiClient(apiUrl, otherKey);
  nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  await followRuns(nc.jetstream(), 'runs.acme.*', (m) => {
    if (m.headers?.get('Runstream-Type') !== 'run.created') return;
    const ce = JSON.parse(new TextDecoder().decode(m.data));
    if (ce.data.schedule_id) created.push({ run_id: ce.subject, ...ce.data });
  });
  const r = await api('POST', '/v1/agents', { name: 'tick', steps: [{ id: 'x', kind: 'transform', value: '{{input.n}}' }] });
  assert.equal(r.status, 201, r.text);
});

after(async () => { closeAllClients(); if (nc) await nc.close(); await stopAll(); });

const of = (id) => created.filter((c) => c.schedule_id === id);
async function until(pred, what, ms = 15000) {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out: ${what}`);
    await new Promise((res) => setTimeout(res, 50));   // polling the follower's array
  }
}

test('an interval schedule: one run per tick across two orchestrators; pause, resume, delete', async () => {
  let r = await api('POST', '/v1/schedules', { id: 'every-sec', agent: 'tick', input: { n: 1 }, interval_s: 1 });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.headers.get('location'), '/v1/schedules/every-sec');
  assert.equal(r.json.paused, false);
  assert.ok(r.json.next_fire_at);
  await until(() => of('every-sec').length >= 4, '4 ticks');
  const ticks = of('every-sec').map((c) => c.schedule_tick);
  assert.equal(new Set(ticks).size, ticks.length, `a tick fired twice: ${ticks}`);
  assert.equal(new Set(of('every-sec').map((c) => c.run_id)).size, ticks.length);
  const t = ticks.map((x) => Date.parse(x));
  for (let i = 1; i < t.length; i++) assert.equal(t[i] - t[i - 1], 1000, `ticks ${ticks}`);
  assert.deepEqual(of('every-sec')[0].input, { n: 1 });

  // list and get
  r = await api('GET', '/v1/schedules');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.schedules.map((s) => s.id), ['every-sec']);
  assert.ok(Date.parse(r.json.schedules[0].next_fire_at) > Date.now() - 1000);
  r = await other('GET', '/v1/schedules');
  assert.deepEqual(r.json.schedules, []);
  r = await other('GET', '/v1/schedules/every-sec');
  assert.equal(r.status, 404, r.text);

  // pause: no tick fires while paused (observed over 2.5 intervals)
  r = await api('POST', '/v1/schedules/every-sec/pause');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.paused, true);
  assert.equal(r.json.next_fire_at, null);
  await new Promise((res) => setTimeout(res, 600));   // let a pass already under way finish
  const n = of('every-sec').length;
  await new Promise((res) => setTimeout(res, 2500));  // the observation window itself
  assert.equal(of('every-sec').length, n, 'a paused schedule fired');
  r = await api('POST', '/v1/schedules/every-sec/resume');
  assert.equal(r.status, 200, r.text);
  const resumedAt = Date.now();
  await until(() => of('every-sec').length >= n + 2, 'ticks after resume');
  // nothing from the pause was caught up
  assert.ok(of('every-sec').slice(n).every((c) => Date.parse(c.schedule_tick) >= resumedAt - 1500));

  r = await api('DELETE', '/v1/schedules/every-sec');
  assert.equal(r.status, 204, r.text);
  r = await api('GET', '/v1/schedules/every-sec');
  assert.equal(r.status, 404, r.text);
});

test('catch-up after downtime: `all` fires the latest max_catch_up missed ticks', async () => {
  let r = await api('POST', '/v1/schedules', { id: 'catchy', agent: 'tick', interval_s: 1, catch_up: 'all', max_catch_up: 3 });
  assert.equal(r.status, 201, r.text);
  await until(() => of('catchy').length >= 1, 'first tick');
  for (const o of orchs.splice(0)) await o.kill('SIGKILL');
  const downAt = Date.now();
  await new Promise((res) => setTimeout(res, 6000));   // the downtime being tested
  const before = of('catchy').length;
  await startOrch('o3');
  await until(() => of('catchy').length >= before + 3, 'catch-up runs');
  const caught = of('catchy').slice(before).map((c) => Date.parse(c.schedule_tick));
  // the first pass fires the latest 3 ticks of the downtime, not all 6
  assert.ok(caught[0] > downAt + 2000, `caught up from ${new Date(caught[0]).toISOString()}, down at ${new Date(downAt).toISOString()}`);
  assert.equal(new Set(of('catchy').map((c) => c.schedule_tick)).size, of('catchy').length);
  r = await api('DELETE', '/v1/schedules/catchy');
  assert.equal(r.status, 204);
});

test('validation, cron with a time zone, runctl schedules', async () => {
  let r = await api('POST', '/v1/schedules', { id: 'paris-9', agent: 'tick', cron: '0 9 * * *', timezone: 'Europe/Paris' });
  assert.equal(r.status, 201, r.text);
  const next = new Date(r.json.next_fire_at);
  const paris = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Paris', hour: '2-digit', minute: '2-digit' }).format(next);
  assert.equal(paris, '09:00');
  assert.ok(next.getTime() > Date.now() && next.getTime() <= Date.now() + 86400000 + 3600000);
  for (const [body, status, re] of [
    [{ id: 'paris-9', agent: 'tick', cron: '0 9 * * *' }, 409, /exists/],
    [{ agent: 'tick', cron: '0 9 * *' }, 422, /5 fields/],
    [{ agent: 'tick', cron: '0 25 * * *' }, 422, /hour/],
    [{ agent: 'tick', cron: '0 9 * * *', timezone: 'Mars/Base' }, 422, /unknown zone/],
    [{ agent: 'tick', cron: '0 9 * * *', timezone: '../../etc/passwd' }, 422, /timezone/],
    [{ agent: 'tick', cron: '0 0 30 2 *' }, 422, /never fires/],
    [{ agent: 'tick', cron: '0 9 * * *', interval_s: 60 }, 422, /exactly one/],
    [{ agent: 'tick' }, 422, /exactly one/],
    [{ agent: 'nobody', interval_s: 60 }, 422, /no agent/],
    [{ agent: 'tick', interval_s: 0 }, 422, /interval_s/],
    [{ agent: 'tick', interval_s: 60, catch_up: 'most' }, 422, /catch_up/],
    [{ agent: 'tick', interval_s: 60, timezone: 'UTC' }, 422, /only with cron/],
    [{ agent: 'tick', interval_s: 60, extra: 1 }, 422, /unknown member/],
    [{ id: 'Bad Id', agent: 'tick', interval_s: 60 }, 422, /id/],
  ]) {
    r = await api('POST', '/v1/schedules', body);
    assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.json.detail, re);
  }
  const cenv = { ...env, RS_API_URL: apiUrl, RS_API_KEY: apiKey };
  let c = runctl(['schedules', 'create', 'tick', '--id', 'ctl-1', '--interval', '3600', '--input', '{"n":2}'], cenv);
  assert.equal(c.code, 0, c.stderr);
  c = runctl(['schedules', 'ls'], cenv);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /ctl-1/);
  assert.match(c.stdout, /paris-9/);
  c = runctl(['schedules', 'pause', 'ctl-1'], cenv);
  assert.equal(c.code, 0, c.stderr);
  c = runctl(['schedules', 'show', 'ctl-1', '--json'], cenv);
  assert.equal(JSON.parse(c.stdout).paused, true);
  c = runctl(['schedules', 'resume', 'ctl-1'], cenv);
  assert.equal(c.code, 0, c.stderr);
  c = runctl(['schedules', 'rm', 'ctl-1'], cenv);
  assert.equal(c.code, 0, c.stderr);
  c = runctl(['schedules', 'show', 'ctl-1'], cenv);
  assert.notEqual(c.code, 0);
  // every scheduled run is what today's state machine decides
  for (const { run_id: id } of created.slice(0, 3)) {
    c = runctl(['replay', id, '--check'], env, { timeout: 30000 });
    assert.equal(c.code, 0, `replay --check ${id}: ${c.stdout}\n${c.stderr}`);
  }
});
