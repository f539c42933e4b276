// foundation.test.mjs - streams and migrations apply idempotently against a
// real nats-server and Postgres; services' contract basics from outside.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { startStack, startNats, runctl, stopAll } from '../lib/stack.mjs';

after(stopAll);

test('streams apply twice: second run changes nothing', async () => {
  const { nats, env } = await startStack({ pg: false });
  const again = runctl(['streams', 'apply'], env);
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stdout, /created|updated/, again.stdout);
  assert.match(again.stdout, /unchanged stream RUNS/);
  assert.match(again.stdout, /unchanged kv presence/);
  // The public contract: RUNS on runs.>, no republish (live watchers open
  // ordered consumers).
  const nc = await connect({ servers: nats.url, ...nats.creds });
  const jsm = await nc.jetstreamManager();
  const si = await jsm.streams.info('RUNS');
  assert.deepEqual(si.config.subjects, ['runs.>']);
  assert.equal(si.config.republish, undefined);
  const ci = await jsm.consumers.info('CMDS', 'orchestrator');
  assert.equal(ci.config.ack_policy, 'explicit');
  await nc.close();
});

test('streams apply keeps an older RUNS that still republishes, with a warning', async () => {
  // A deployment from before RUNS dropped its RePublish: nats-server 2.9
  // cannot remove it on an update, so apply must leave it and say so.
  const nats = await startNats();
  const nc = await connect({ servers: nats.url, ...nats.creds });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({
    name: 'RUNS', subjects: ['runs.>'], storage: 'file', max_msg_size: 1048576,
    duplicate_window: 120 * 1e9, allow_direct: true,
    description: 'Every run event; republished to core NATS rs.live.runs.<tenant>.<run_id>.',
    republish: { src: 'runs.>', dest: 'rs.live.runs.>' },
  });
  const env = { ...nats.env, RS_LOG_LEVEL: 'info' };
  const warning = /stream RUNS \(still republishes to rs\.live\.runs\.>; harmless, nothing reads it any more; recreate the stream to drop it\)/;
  // First apply: the description changes, the RePublish stays.
  const first = runctl(['streams', 'apply'], env);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.match(first.stdout, new RegExp(`^updated ${warning.source}$`, 'm'));
  assert.match(first.stdout, /^created stream CMDS$/m);
  assert.match(first.stderr, /"level":"warn".*still republishes to rs\.live\.runs\.>/);
  // Second apply: nothing else differs: unchanged, still said.
  const again = runctl(['streams', 'apply'], env);
  assert.equal(again.code, 0, again.stdout + again.stderr);
  assert.doesNotMatch(again.stdout, /created|updated/, again.stdout);
  assert.match(again.stdout, new RegExp(`^unchanged ${warning.source}$`, 'm'));
  const si = await jsm.streams.info('RUNS');
  assert.equal(si.config.republish.dest, 'rs.live.runs.>');
  assert.match(si.config.description, /No RePublish/);
  // Recreated, as the warning says: no RePublish, and apply is quiet.
  await jsm.streams.delete('RUNS');
  const fresh = runctl(['streams', 'apply'], env);
  assert.equal(fresh.code, 0, fresh.stdout + fresh.stderr);
  assert.match(fresh.stdout, /^created stream RUNS$/m);
  assert.doesNotMatch(fresh.stdout + fresh.stderr, /republish/);
  assert.equal((await jsm.streams.info('RUNS')).config.republish, undefined);
  await nc.close();
});

test('migrations apply twice, refuse an edited file, survive two concurrent runners', async () => {
  const { pg, env } = await startStack({ pg: true });
  const again = runctl(['migrate'], env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /0 migration\(s\) applied/);
  // Two runners at once: both succeed, nothing applied twice.
  pg.psql('DROP TABLE projection_checkpoints; DELETE FROM schema_migrations;');
  const { spawn } = await import('node:child_process');
  const { bin } = await import('../lib/stack.mjs');
  const run = () => new Promise((resolve) => {
    const p = spawn(bin('runctl'), ['migrate'], { env: { ...process.env, ...env } });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('close', (code) => resolve({ code, out })); // 'close': stdout fully read
  });
  const [a, b] = await Promise.all([run(), run()]);
  assert.equal(a.code, 0);
  assert.equal(b.code, 0);
  const applied = (a.out.match(/^applied /gm) || []).length + (b.out.match(/^applied /gm) || []).length;
  const total = parseInt(pg.psql('SELECT count(*) FROM schema_migrations'), 10);
  assert.equal(applied, total, `${a.out}\n${b.out}`);
  // Tamper with a recorded checksum: the runner must refuse.
  pg.psql("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1");
  const bad = runctl(['migrate'], env);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /edited after it was applied/);
});

test('runctl gives a clear error and exit 4 when NATS is down', async () => {
  const r = runctl(['streams', 'apply'], { RS_NATS_URL: 'nats://127.0.0.1:1' });
  assert.equal(r.code, 4);
  assert.match(r.stderr, /cannot reach NATS/);
});
