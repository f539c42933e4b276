// natsauth.test.mjs - least privilege on NATS (docs/operations.md "NATS users").
//
// A real nats-server with the users `runctl nats config` writes. A team's
// credentials from `runctl consumers grant` read runs.<tenant>.> through
// their own JetStream consumer and nothing else: not another tenant (by
// subject, by a smuggled filter, by direct get, by another consumer), not
// KV, and they cannot publish. A service user cannot publish outside its
// role. Also RS_NATS_URL with several servers reaches a 3-node cluster.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, StringCodec, AckPolicy, DeliverPolicy, headers as natsHeaders } from 'nats';
import {
  startStack, startProcess, runctl, stopAll, natsUser, freePort, tmpDir, waitFor, SRC, bin,
} from '../lib/stack.mjs';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

const sc = StringCodec();
let stack; let admin; let ajs; let jsm;

before(async () => {
  stack = await startStack({ pg: false });
  admin = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  ajs = admin.jetstream();
  jsm = await admin.jetstreamManager();
});
after(async () => { await admin?.close(); await stopAll(); });

const denied = (e) => e?.code === 'PERMISSIONS_VIOLATION';

// Append one event as the admin (the tests' stand-in for the orchestrator).
async function append(tenant, run, type) {
  const h = natsHeaders();
  h.set('Runstream-Type', type);
  return ajs.publish(`runs.${tenant}.${run}`, sc.encode(JSON.stringify({ type, tenant, subject: run, runseq: 1 })),
    { headers: h });
}

async function lastSeq() { return (await jsm.streams.info('RUNS')).state.last_seq; }

// Resolves with the next permission error the server reports on nc for subject.
function violation(nc, subject) {
  return (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error' && s.permissionContext?.subject === subject) return s.permissionContext;
    }
    return null;
  })();
}

function grant(tenant, name) {
  return runctl(['consumers', 'grant', '--tenant', tenant, '--name', name, '--dir', stack.nats.authDir, '--json'],
    stack.env);
}

async function teamConnect(creds) {
  return connect({ servers: creds.url, user: creds.user, pass: creds.password, inboxPrefix: creds.inbox_prefix });
}

test('a team reads its tenant through its own consumer, and nothing else', async () => {
  const pid = fs.readFileSync(`${stack.nats.authDir}/nats-server.pid`, 'utf8').trim();
  assert.equal(Number(pid), stack.nats.pid, 'the pid file is the server the tests started');
  const r = grant('acme', 'billing');
  assert.equal(r.code, 0, r.stderr);
  const creds = JSON.parse(r.stdout);
  assert.equal(creds.user, 'team-billing');
  assert.equal(creds.consumer, 'team-billing');
  assert.equal(creds.filter, 'runs.acme.>');
  assert.match(creds.password, /^[0-9a-f]{64}$/);
  assert.equal(creds.url, stack.nats.url);
  assert.equal(fs.statSync(`${stack.nats.authDir}/auth.conf`).mode & 0o777, 0o600);
  assert.equal(fs.statSync(`${stack.nats.authDir}/teams.tsv`).mode & 0o777, 0o600);

  const before1 = await append('acme', 'r0', 'run.created');
  await append('globex', 'g0', 'run.created');
  const nc = await teamConnect(creds);
  const tjsm = await nc.jetstreamManager({ checkAPI: false });
  const tjs = nc.jetstream();

  // The grant created its durable consumer (for clients such as nats.c
  // 3.4.1 that cannot create one through the filtered create API).
  const made = await jsm.consumers.info('RUNS', 'team-billing');
  assert.equal(made.config.filter_subject, 'runs.acme.>');
  // Re-created by the team itself (nats.js uses the filtered API), filtered
  // to its tenant: exactly acme's events, in order.
  await tjsm.consumers.delete('RUNS', 'team-billing');
  await tjsm.consumers.add('RUNS', {
    durable_name: 'team-billing', filter_subject: 'runs.acme.>', ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: before1.seq,
  });
  await append('acme', 'r1', 'run.started');
  await append('globex', 'g1', 'run.started');
  await append('acme', 'r1', 'run.completed');
  const c = await tjs.consumers.get('RUNS', 'team-billing');
  const got = [];
  const msgs = await c.consume();
  for await (const m of msgs) {
    got.push(`${m.subject} ${JSON.parse(sc.decode(m.data)).type}`);
    m.ack();
    if (got.length === 3) break;
  }
  assert.deepEqual(got, ['runs.acme.r0 run.created', 'runs.acme.r1 run.started', 'runs.acme.r1 run.completed']);
  await waitFor('acks recorded', async () => (await tjsm.consumers.info('RUNS', 'team-billing')).num_ack_pending === 0);

  // Last event of one of its runs by direct get.
  const last = await nc.request('$JS.API.DIRECT.GET.RUNS.runs.acme.r1', sc.encode(''), { timeout: 2000 });
  assert.equal(JSON.parse(sc.decode(last.data)).type, 'run.completed');

  // (a) Another tenant: a consumer on runs.globex.> is refused by subject...
  await assert.rejects(tjsm.consumers.add('RUNS', { durable_name: 'team-billing', filter_subject: 'runs.globex.>',
    ack_policy: AckPolicy.Explicit }), denied);
  // ... and so are the wider filters, and the filterless create APIs.
  for (const filter of ['runs.>', 'runs.*.>', 'runs.*.r1']) {
    await assert.rejects(nc.request(`$JS.API.CONSUMER.CREATE.RUNS.team-billing.${filter}`,
      sc.encode(JSON.stringify({ stream_name: 'RUNS', config: { durable_name: 'team-billing', filter_subject: filter } })),
      { timeout: 2000 }), denied, filter);
  }
  for (const subj of ['$JS.API.CONSUMER.CREATE.RUNS', '$JS.API.CONSUMER.DURABLE.CREATE.RUNS.team-billing']) {
    await assert.rejects(nc.request(subj, sc.encode(JSON.stringify({ stream_name: 'RUNS',
      config: { durable_name: 'team-billing', filter_subject: 'runs.globex.>' } })), { timeout: 2000 }), denied, subj);
  }
  // A foreign filter smuggled in the body of the allowed subject: the
  // server itself refuses it (10131), nothing is created.
  const smuggle = await nc.request('$JS.API.CONSUMER.CREATE.RUNS.team-billing.runs.acme.>', sc.encode(JSON.stringify({
    stream_name: 'RUNS', config: { name: 'team-billing', durable_name: 'team-billing', filter_subject: 'runs.globex.>',
      ack_policy: 'explicit' } })), { timeout: 2000 });
  const answer = JSON.parse(sc.decode(smuggle.data));
  assert.equal(answer.error?.err_code, 10131, JSON.stringify(answer));
  assert.equal((await jsm.consumers.info('RUNS', 'team-billing')).config.filter_subject, 'runs.acme.>');
  // Reading another tenant's messages directly, or through a consumer it does not own.
  for (const [subj, body] of [['$JS.API.DIRECT.GET.RUNS.runs.globex.g1', ''],
    ['$JS.API.DIRECT.GET.RUNS', JSON.stringify({ last_by_subj: 'runs.globex.g1' })],
    ['$JS.API.STREAM.MSG.GET.RUNS', JSON.stringify({ last_by_subj: 'runs.globex.g1' })],
    ['$JS.API.CONSUMER.MSG.NEXT.RUNS.executor', JSON.stringify({ batch: 1, expires: 1e9 })],
    ['$JS.API.CONSUMER.INFO.RUNS.executor', ''],
    ['$JS.API.STREAM.INFO.RUNS', JSON.stringify({ subjects_filter: '>' })]]) {
    await assert.rejects(nc.request(subj, sc.encode(body), { timeout: 2000 }), denied, subj);
  }
  // Core subscriptions: its tenant yes, another tenant, KV or someone else's inbox no.
  const own = nc.subscribe('runs.acme.>', { max: 1 });
  for (const subj of ['runs.globex.>', 'runs.>', '$KV.apikeys.>', '_INBOX.>', '_INBOX_api.>']) {
    const sub = nc.subscribe(subj);
    await assert.rejects((async () => { for await (const _ of sub) { /* nothing may arrive */ } })(), denied, subj);
  }
  await nc.flush();
  await append('acme', 'r2', 'run.created');
  for await (const m of own) assert.equal(m.subject, 'runs.acme.r2');

  // (b) No publishing: not to runs.> (its own tenant included), not to cmd.>.
  const seq = await lastSeq();
  for (const subj of ['runs.acme.r1', 'cmd.acme.r1', 'timers.acme.r1', '$KV.apikeys.x']) {
    const v = violation(nc, subj);
    nc.publish(subj, sc.encode('{}'));
    assert.equal((await v).operation, 'publish', subj);
  }
  await assert.rejects(tjs.publish('runs.acme.r1', sc.encode('{}')), denied);
  assert.equal(await lastSeq(), seq, 'nothing was appended to RUNS');
  assert.equal((await jsm.streams.info('CMDS')).state.messages, 0, 'nothing reached CMDS');

  // (c) No KV: not the API keys, not the agents.
  for (const bucket of ['apikeys', 'agents', 'devtokens']) {
    await assert.rejects(nc.request(`$JS.API.DIRECT.GET.KV_${bucket}.$KV.${bucket}.x`, sc.encode(''), { timeout: 2000 }),
      denied, bucket);
    await assert.rejects(nc.request(`$JS.API.STREAM.INFO.KV_${bucket}`, sc.encode(''), { timeout: 2000 }), denied, bucket);
  }
  await assert.rejects((async () => { const kv = await tjs.views.kv('apikeys'); await kv.get('x'); })(), denied);

  // It may delete (and re-create) its own consumer, nobody else's.
  await tjsm.consumers.delete('RUNS', 'team-billing');
  await assert.rejects(tjsm.consumers.delete('RUNS', 'executor'), denied);
  assert.ok(await jsm.consumers.info('RUNS', 'executor'));
  await nc.close();
});

test('the C example consumer (docs/quickstart.md) works with team credentials', async () => {
  const creds = JSON.parse(grant('acme', 'example').stdout);
  const r = spawnSync(bin('examples/rs-example-consumer'), [creds.url, 'acme', creds.consumer, '3'], {
    env: { ...process.env, RS_NATS_USER: creds.user, RS_NATS_PASSWORD: creds.password }, encoding: 'utf8', timeout: 20000,
  });
  assert.equal(r.status, 0, r.stderr);
  // Tenant acme's events (appended by the test above; it stops after the
  // batch that reaches 3), none of globex.
  const lines = r.stdout.trim().split('\n');
  assert.ok(lines.length >= 3, r.stdout);
  assert.deepEqual(lines.slice(0, 3), ['1 run.created r0', '1 run.started r1', '1 run.completed r1']);
  assert.doesNotMatch(r.stdout, /globex|g0|g1/);
  // Another tenant through the same program and credentials: refused.
  const other = spawnSync(bin('examples/rs-example-consumer'), [creds.url, 'globex', creds.consumer, '1'], {
    env: { ...process.env, RS_NATS_USER: creds.user, RS_NATS_PASSWORD: creds.password }, encoding: 'utf8', timeout: 20000,
  });
  assert.notEqual(other.status, 0);
  assert.match(other.stderr, /cannot create consumer/);
});

test('granting again rotates the password; a taken name is refused; the server was only reloaded', async () => {
  const first = JSON.parse(grant('acme', 'ops').stdout);
  const second = JSON.parse(grant('acme', 'ops').stdout);
  assert.notEqual(first.password, second.password);
  await assert.rejects(teamConnect(first), (e) => e.code === 'AUTHORIZATION_VIOLATION');
  const nc = await teamConnect(second);
  await nc.close();
  const taken = grant('globex', 'ops');
  assert.equal(taken.code, 2);
  assert.match(taken.stderr, /already reads tenant acme/);
  const bad = runctl(['consumers', 'grant', '--tenant', 'acme', '--name', 'a.b', '--dir', stack.nats.authDir], stack.env);
  assert.equal(bad.code, 2);
  assert.equal(stack.nats.proc.exitCode, null, 'the same nats-server process throughout');
});

test('service users publish only within their role', async () => {
  const seq = await lastSeq();
  const api = await connect({ servers: stack.nats.url, ...natsUser(stack.nats.url, 'api'), inboxPrefix: '_INBOX_api' });
  // The api sends commands, never run events or timers.
  await api.jetstream().publish('cmd.acme.r9', sc.encode('{}'));
  for (const subj of ['runs.acme.r9', 'timers.acme.r9', 'toolcalls.acme.c9', 'dlq.orchestrator']) {
    await assert.rejects(api.jetstream().publish(subj, sc.encode('{}')), denied, subj);
  }
  assert.equal(await lastSeq(), seq);
  // Nor can it read another role's work queue or consumer.
  await assert.rejects(api.request('$JS.API.CONSUMER.MSG.NEXT.CMDS.orchestrator', sc.encode('{"batch":1}'), { timeout: 2000 }), denied);
  await api.close();
  const router = await connect({ servers: stack.nats.url, ...natsUser(stack.nats.url, 'tool-router'), inboxPrefix: '_INBOX_tool-router' });
  await assert.rejects(router.jetstream().publish('runs.acme.r9', sc.encode('{}')), denied);
  await assert.rejects(router.request('$JS.API.DIRECT.GET.KV_apikeys.$KV.apikeys.x', sc.encode(''), { timeout: 2000 }), denied);
  await router.close();
  // The orchestrator is the one writer of run events.
  const orch = await connect({ servers: stack.nats.url, ...natsUser(stack.nats.url, 'orchestrator'), inboxPrefix: '_INBOX_orchestrator' });
  await orch.jetstream().publish('runs.acme.r9', sc.encode('{"type":"run.created"}'));
  await orch.close();
  assert.equal(await lastSeq(), seq + 1);
  // Without credentials nobody gets in.
  await assert.rejects(connect({ servers: stack.nats.url }), (e) => e.code === 'AUTHORIZATION_VIOLATION');
});

// ---- RS_NATS_URL with several servers (issue 21) ----------------------------

test('RS_NATS_URL listing three cluster nodes connects, and survives the first node going away', async () => {
  const ports = await Promise.all([0, 1, 2].map(() => freePort()));
  const routes = await Promise.all([0, 1, 2].map(() => freePort()));
  const nodes = [];
  for (let i = 0; i < 3; i++) {
    const dir = tmpDir('cluster');
    nodes.push(startProcess(`nats-c${i}`, 'nats-server', ['-a', '127.0.0.1', '-p', String(ports[i]), '-js', '-sd', dir,
      '--server_name', `c${i}`, '--cluster_name', 'rs-test', '-cluster', `nats://127.0.0.1:${routes[i]}`,
      '-routes', routes.filter((_, j) => j !== i).map((p) => `nats://127.0.0.1:${p}`).join(',')], {}, { logDir: dir }));
  }
  const url = ports.map((p) => `nats://127.0.0.1:${p}`).join(', ');
  const env = { RS_NATS_URL: url, RS_STREAM_REPLICAS: '3' };
  // The JetStream meta leader is elected once the routes are up.
  await waitFor('cluster JetStream ready', () => runctl(['streams', 'apply'], env).code === 0, 30000, 250);
  // Kill the first listed node: runctl still reaches the cluster through the others.
  await nodes[0].kill('SIGKILL');
  let r;
  // Bounded: a stream whose leader was node 0 elects another first.
  await waitFor('a KV write through the other two nodes', () => (r = runctl(['keys', 'create', '--tenant', 'acme'], env)).code === 0,
    20000, 250);
  assert.match(r.stdout, /^rk_/);
  // A list that is not one: a clear error, not a hang.
  const bad = runctl(['streams', 'apply'], { RS_NATS_URL: `${url},,` });
  assert.equal(bad.code, 4);
  assert.match(bad.stderr, /comma-separated list/);
});

// ---- compose/ -------------------------------------------------------------

test('compose/nats/auth.conf is what runctl generates, and nats-server accepts compose/nats/nats.conf', () => {
  const r = runctl(['nats', 'config', '--env-passwords'], {});
  assert.equal(r.code, 0, r.stderr);
  const committed = fs.readFileSync(`${SRC}/compose/nats/auth.conf`, 'utf8');
  assert.equal(committed, r.stdout, 'regenerate: runctl nats config --env-passwords > compose/nats/auth.conf');
  const pw = {};
  for (const role of ['ADMIN', 'API', 'ORCHESTRATOR', 'TOOL_ROUTER', 'PROJECTOR', 'EXECUTOR']) pw[`RS_NATS_PASSWORD_${role}`] = 'x';
  const t = spawnSync('nats-server', ['-c', `${SRC}/compose/nats/nats.conf`, '-t'], { env: { ...process.env, ...pw }, encoding: 'utf8' });
  assert.equal(t.status, 0, t.stderr + t.stdout);
  // Every service of the compose file logs in as its own user.
  const yml = fs.readFileSync(`${SRC}/compose/docker-compose.yml`, 'utf8');
  for (const svc of ['orchestrator', 'projector', 'executor', 'api', 'tool-router']) {
    assert.match(yml, new RegExp(`RS_NATS_USER: ${svc}, RS_NATS_PASSWORD: "\\$\\{RS_NATS_PASSWORD_${svc.toUpperCase().replace('-', '_')}:`), svc);
  }
});
