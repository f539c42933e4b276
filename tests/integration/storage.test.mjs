// storage.test.mjs - bounded storage (issue 21): a full event log refuses
// new runs with 507 instead of accepting runs it cannot record, nothing
// accepted is lost, and `runctl archive --purge` gives the space back.
//
// RUNS and CMDS are bounded with discard "new" (RS_STREAM_<NAME>_MAX_BYTES,
// streams/*.json): the server refuses appends rather than deleting events.
//  1. RUNS small (80 messages, refused from half full): runs of a one-step agent, one after another, until
//     the API answers 507 (it refuses above RS_API_STORAGE_HIGH_WATER_PCT of
//     max_bytes, keeping the rest for runs in flight). Every run it accepted
//     has exactly one terminal event in RUNS. `runctl archive --older-than 0
//     --purge` writes each as an export file, purges it from RUNS; the API
//     accepts runs again; replay of a purged run points at the archive.
//  2. CMDS small, no orchestrator: bursts of creations until publishes are
//     refused. Every answer is 202 or 507 (never a 202 for a run that was
//     not stored); each 202 run's run.start is in CMDS; once an orchestrator
//     starts, every accepted run completes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { connect } from 'nats';
import { startNats, startPostgres, startService, stopAll, runctl, freePort, waitFor, tmpDir } from '../lib/stack.mjs';
import { apiClient } from '../lib/clients.mjs';

after(async () => { await stopAll(); });

const agent = { name: 'tiny', timeout_s: 60, steps: [{ id: 'x', kind: 'transform', value: { n: '{{input.n}}' } }] };

async function world(streamEnv, { orchestrator = true, pg = true, apiEnv = {} } = {}) {
  const nats = await startNats();
  const env = { ...nats.env, RS_LOG_LEVEL: 'warn' };
  let r = runctl(['streams', 'apply'], { ...env, ...streamEnv });
  assert.equal(r.code, 0, r.stderr);
  if (pg) {
    const p = await startPostgres();
    env.RS_PG_URL = p.url;
    r = runctl(['migrate'], env);
    assert.equal(r.code, 0, r.stderr);
  }
  const key = runctl(['keys', 'create', '--tenant', 'acme'], env).stdout.trim();
  const svc = async (name, portVar) => {
    const port = await freePort();
    const p = await startService(name, { ...env, ...(name === 'api' ? apiEnv : {}), [portVar]: String(port) }, port);
    p.port = port;
    return p;
  };
  if (orchestrator) await svc('orchestrator', 'RS_ORCHESTRATOR_OPS_PORT');
  if (pg) await svc('projector', 'RS_PROJECTOR_OPS_PORT');
  const a = await svc('api', 'RS_API_PORT');
  const api = apiClient(`http://127.0.0.1:${a.port}`, key);
  const pushed = await api('POST', '/v1/agents', agent);
  assert.ok([200, 201].includes(pushed.status), pushed.text);
  const nc = await connect({ servers: nats.url, ...nats.creds });
  return { nats, env, api, nc, jsm: await nc.jetstreamManager(), svc };
}

async function lastEvent(jsm, runId) {
  try {
    const m = await jsm.direct.getMessage('RUNS', { last_by_subj: `runs.acme.${runId}` });
    return JSON.parse(new TextDecoder().decode(m.data));
  } catch { return null; }
}

function assert507(r) {
  assert.equal(r.status, 507, r.text);
  assert.match(r.headers.get('content-type'), /application\/problem\+json/);
  assert.equal(r.json.type, 'https://runstream.dev/problems/insufficient-storage');
  assert.equal(r.json.title, 'Insufficient Storage');
  assert.match(r.json.detail, /runctl archive/);
  assert.ok(r.headers.get('retry-after'), 'Retry-After');
}

test('RUNS full: 507 before a run it cannot record; accepted runs all end; archive --purge frees it', async () => {
  // Refused from half full: the other half is headroom for the run in
  // flight (about 6 events) and for the API's view being up to 1 s old.
  const w = await world({ RS_STREAM_RUNS_MAX_MSGS: '80' }, { apiEnv: { RS_API_STORAGE_HIGH_WATER_PCT: '50' } });
  const accepted = [];
  let refused = null;
  for (let i = 0; i < 300 && !refused; i++) {
    const r = await w.api('POST', '/v1/runs', { agent: 'tiny', input: { n: i } });
    if (r.status === 507) { refused = r; break; }
    assert.equal(r.status, 202, r.text);
    accepted.push(r.json.run_id);
    // One run at a time: each ends (in the log) before the next starts.
    await waitFor(`run ${i} to complete`, async () => (await lastEvent(w.jsm, r.json.run_id))?.type === 'runstream.run.completed', 10000, 20);
  }
  assert.ok(refused, 'the API never refused a run');
  assert507(refused);
  assert.match(refused.json.detail, /stream RUNS holds \d+ of its 80 messages/);
  assert.ok(accepted.length >= 3, `only ${accepted.length} runs fitted`);
  const info = await w.jsm.streams.info('RUNS');
  assert.equal(info.config.discard, 'new');
  assert.ok(info.state.messages < 80, `${info.state.messages} messages: the headroom was used up`);
  assert.equal(info.state.first_seq, 1, 'nothing was deleted to make room');
  for (const id of accepted) {
    const ev = await lastEvent(w.jsm, id);
    assert.equal(ev?.type, 'runstream.run.completed', `run ${id}`);
  }

  // The projector has every run finished, then archive and purge them.
  // max_bytes on a discard-new stream is refused (nats-server#4771).
  const bad = runctl(['streams', 'apply'], { ...w.env, RS_STREAM_RUNS_MAX_BYTES: '100000' });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /4771/);
  const out = tmpDir('archive');
  let r;
  await waitFor('archive to find every accepted run', async () => {
    r = runctl(['archive', '--out', out, '--older-than', '0', '--purge', '--json'], w.env);
    assert.equal(r.code, 0, r.stderr);
    return (await w.jsm.streams.info('RUNS')).state.messages === 0;
  }, 20000, 300);
  const files = fs.readdirSync(path.join(out, 'acme'));
  assert.deepEqual(files.sort(), accepted.map((id) => `${id}.ndjson`).sort());
  const lines = fs.readFileSync(path.join(out, 'acme', files[0]), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines[0].runstream_export, 1);
  assert.equal(lines.at(-1).type, 'runstream.run.completed');
  const manifest = fs.readFileSync(path.join(out, 'archive.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(new Set(manifest.filter((m) => m.purged).map((m) => m.run_id)).size, accepted.length);
  // The archived file replays offline; RUNS no longer has it and says where to look.
  const rep = runctl(['replay', '--file', path.join(out, 'acme', files[0]), '--check'], w.env);
  assert.equal(rep.code, 0, rep.stderr + rep.stdout);
  const gone = runctl(['replay', accepted[0], '--tenant', 'acme'], w.env);
  assert.equal(gone.code, 3, gone.stderr);
  assert.match(gone.stderr, /archive/);
  // The read model keeps the run.
  const shown = await w.api('GET', `/v1/runs/${accepted[0]}`);
  assert.equal(shown.status, 200, shown.text);
  assert.equal(shown.json.status, 'completed');
  // A wait on it answers at once from the read model (runctl archive marked
  // its registry entry before the purge), and a stream says it is gone
  // instead of waiting for events that will not come.
  const t0 = Date.now();
  const waited = await w.api('GET', `/v1/runs/${accepted[0]}?wait=20`);
  assert.equal(waited.status, 200, waited.text);
  assert.equal(waited.json.status, 'completed');
  assert.ok(Date.now() - t0 < 10000, `the wait took ${Date.now() - t0} ms`);
  const sse = await w.api('GET', `/v1/runs/${accepted[0]}/stream`);
  assert.equal(sse.status, 410, sse.text);
  assert.match(sse.json.detail, /archived/);
  // Space is back: the API takes runs again (its view of RUNS is at most 100 ms old).
  let again;
  await waitFor('the API to accept runs again', async () => {
    again = await w.api('POST', '/v1/runs', { agent: 'tiny', input: { n: -1 } });
    return again.status !== 507;
  }, 10000, 150);
  assert.equal(again.status, 202, again.text);
  await waitFor('the new run to complete', async () => (await lastEvent(w.jsm, again.json.run_id))?.type === 'runstream.run.completed', 10000, 20);
  await w.nc.close();
});

test('CMDS full: every answer is 202 or 507, and every 202 run is stored and completes', async () => {
  const w = await world({ RS_STREAM_CMDS_MAX_MSGS: '20' }, { orchestrator: false, pg: false });
  const accepted = [];
  let refusedN = 0;
  for (let round = 0; round < 20 && refusedN === 0; round++) {
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) =>
      w.api('POST', '/v1/runs', { agent: 'tiny', input: { n: round * 8 + i } })));
    for (const r of rs) {
      if (r.status === 202) accepted.push(r.json.run_id);
      else { assert507(r); refusedN++; }
    }
  }
  assert.ok(refusedN > 0, 'CMDS never filled');
  assert.ok(accepted.length > 0);
  const info = await w.jsm.streams.info('CMDS');
  assert.equal(info.state.first_seq, 1, 'nothing was deleted to make room');
  assert.equal(info.state.messages, accepted.length, 'one run.start in CMDS per accepted run');
  await w.svc('orchestrator', 'RS_ORCHESTRATOR_OPS_PORT');
  await waitFor('every accepted run to complete', async () => {
    for (const id of accepted) {
      const ev = await lastEvent(w.jsm, id);
      if (ev?.type !== 'runstream.run.completed') return false;
    }
    return true;
  }, 30000, 200);
  await w.nc.close();
});
