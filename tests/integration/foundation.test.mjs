// foundation.test.mjs - streams and migrations apply idempotently against a
// real nats-server and Postgres; services' contract basics from outside.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { startStack, runctl, stopAll } from '../lib/stack.mjs';

after(stopAll);

test('streams apply twice: second run changes nothing', async () => {
  const { nats, env } = await startStack({ pg: false });
  const again = runctl(['streams', 'apply'], env);
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stdout, /created|updated/, again.stdout);
  assert.match(again.stdout, /unchanged stream RUNS/);
  assert.match(again.stdout, /unchanged kv presence/);
  // The public contract: RUNS on runs.> with republish for live fan-out.
  const nc = await connect({ servers: nats.url });
  const jsm = await nc.jetstreamManager();
  const si = await jsm.streams.info('RUNS');
  assert.deepEqual(si.config.subjects, ['runs.>']);
  assert.equal(si.config.republish.dest, 'rs.live.runs.>');
  const ci = await jsm.consumers.info('CMDS', 'orchestrator');
  assert.equal(ci.config.ack_policy, 'explicit');
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
