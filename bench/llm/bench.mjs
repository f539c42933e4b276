// bench.mjs - see run.sh. One process plays the model server and the SSE
// watchers, so "sent" and "seen" are read from the same clock
// (performance.now()). Each chunk's text is "<id>;": the watcher maps every
// id in an llm.delta back to when that chunk was written to the socket.
import crypto from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { startStack, startService, startProcess, freePort, stopAll, waitFor, runctl, BUILD, SRC }
  from '../../tests/lib/stack.mjs';
import { followRuns } from '../../tests/lib/clients.mjs';

const require = createRequire(path.join(SRC, 'tests', 'package.json'));
const EventSource = require('eventsource');
const { connect, headers, StringCodec } = require('nats');

const RUNS = Number(process.env.RUNS || 100);
const CHUNKS = Number(process.env.CHUNKS || 40);
const GAP = Number(process.env.CHUNK_GAP_MS || 30);
const KA_CALLS = Number(process.env.KA_CALLS || 100);
const KA_WAVE = Number(process.env.KA_WAVE || 10);
const sc = StringCodec();
const sent = [];            // id -> performance.now() at write
const lat = [];             // ms
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let connections = 0;        // TCP connections the model server accepted
const model = http.createServer(async (req, res) => {
  for await (const _ of req) { /* drain */ }
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  for (let i = 0; i < CHUNKS; i++) {
    const id = sent.length;
    sent.push(0);
    const data = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: `${id};` }, finish_reason: null }] })}\n\n`;
    res.write(data, () => {});
    sent[id] = performance.now();
    await sleep(GAP);
  }
  res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`);
  res.end();
});

function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  return JSON.stringify(v);
}
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor(a.length * p))];

async function main() {
  const stack = await startStack({ pg: true });
  const env = stack.env;
  model.on('connection', () => { connections++; });
  await new Promise((r) => model.listen(0, '127.0.0.1', r));
  const key = runctl(['keys', 'create', '--tenant', 'bench'], env).stdout.trim();
  const oport = await freePort();
  await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(oport) }, oport);
  const xport = await freePort();
  const x = startProcess('executor', `${BUILD}/services/executor/rs-executor`, [],
    { ...env, RS_EXECUTOR_OPS_PORT: String(xport), RS_EXECUTOR_WORKERS: process.env.RS_EXECUTOR_WORKERS || '128',
      RS_EXECUTOR_EGRESS_ALLOW: '127.0.0.1/32' });   // the mock model is on loopback
  await waitFor('executor', async () => (await fetch(`http://127.0.0.1:${xport}/readyz`)).status === 200);
  const aport = await freePort();
  await startService('api', { ...env, RS_API_PORT: String(aport) }, aport);
  const nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  const js = nc.jetstream();
  const kv = await js.views.kv('agents');
  const def = { name: 'bench-llm', steps: [{ id: 'ask', kind: 'llm', prompt: 'go {{input.i}}',
    model: { base_url: `http://127.0.0.1:${model.address().port}/v1`, model: 'bench' }, timeout_s: 60 }] };
  const text = canonical(def);
  const version = crypto.createHash('sha256').update(text).digest('hex').slice(0, 16);
  await kv.put(`bench.${def.name}.${version}`, text);

  const done = [];
  const ids = [];
  // A stream on a run that does not exist yet is a 404 (EventSource then
  // gives up): open each watcher at the run's first event.
  const created = new Map();
  const ended = new Map();   // run -> resolve, for the keep-alive phase
  const live = await followRuns(js, 'runs.bench.*', (m) => {
    const run = m.subject.split('.').pop();
    const f = created.get(run);
    if (f) { created.delete(run); f(); }
    const e = ended.get(run);
    if (e && /run\.(completed|failed)$/.test(JSON.parse(sc.decode(m.data)).type)) { ended.delete(run); e(); }
  });
  const finished = new Set();
  const t0 = performance.now();
  for (let i = 0; i < RUNS; i++) {
    const run = crypto.randomUUID();
    ids.push(run);
    const exists = new Promise((r) => created.set(run, r));
    const h = headers();
    h.set('Runstream-Type', 'run.start');
    // Start first: a stream on a run not created yet is a 404.
    await js.publish(`cmd.bench.${run}`, sc.encode(JSON.stringify({ type: 'run.start', run_id: run, tenant: 'bench', agent: def.name, version, input: { i } })), { msgID: `start-${run}`, headers: h });
    done.push(exists.then(() => new Promise((resolve) => {
      const es = new EventSource(`http://127.0.0.1:${aport}/v1/runs/${run}/stream`, { headers: { Authorization: `Bearer ${key}` } });
      es.addEventListener('llm.delta', (e) => {
        const now = performance.now();
        for (const id of JSON.parse(e.data).data.text.split(';').filter(Boolean)) lat.push(now - sent[Number(id)]);
      });
      for (const t of ['run.completed', 'run.failed']) es.addEventListener(t, () => { es.close(); finished.add(run); resolve(t); });
    })));
  }
  const jsm = await nc.jetstreamManager();
  const watchdog = setInterval(async () => {
    console.error(`... ${lat.length} chunk latencies, ${sent.length} chunks sent, ${finished.size} runs done`);
    const tally = {};
    for (const r of ids.filter((x) => !finished.has(x))) {
      try {
        const m = await jsm.direct.getMessage('RUNS', { last_by_subj: `runs.bench.${r}` });
        const t = JSON.parse(sc.decode(m.data)).type;
        tally[t] = (tally[t] || 0) + 1;
      } catch (e) { tally[e.message] = (tally[e.message] || 0) + 1; }
    }
    console.error('unfinished runs by last stored event:', JSON.stringify(tally));
  }, 10000);
  const ends = await Promise.all(done);
  clearInterval(watchdog);
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const connLatency = connections;
  // Keep-alive: KA_CALLS more model calls in waves of KA_WAVE concurrent runs
  // (each wave waits for the previous): connections the model server
  // accepts meanwhile, per 100 calls. Without reuse this is 100.
  const c0 = connections;
  for (let w = 0; w < KA_CALLS / KA_WAVE; w++) {
    const wave = [];
    for (let i = 0; i < KA_WAVE; i++) {
      const run = crypto.randomUUID();
      wave.push(new Promise((r) => ended.set(run, r)));
      const h = headers();
      h.set('Runstream-Type', 'run.start');
      await js.publish(`cmd.bench.${run}`, sc.encode(JSON.stringify({ type: 'run.start', run_id: run, tenant: 'bench', agent: def.name, version, input: { i: -1 } })), { msgID: `start-${run}`, headers: h });
    }
    await Promise.all(wave);
  }
  const kaConns = connections - c0;
  const m = await (await fetch(`http://127.0.0.1:${xport}/metrics`)).text();
  const chunks = /^rs_exec_llm_chunks_total\S* (\S+)$/m.exec(m)?.[1];
  console.log(JSON.stringify({
    runs: RUNS, completed: ends.filter((e) => e === 'run.completed').length, chunks_per_run: CHUNKS,
    chunk_gap_ms: GAP, model_chunks: sent.length, llm_chunk_commands: Number(chunks), latencies: lat.length,
    p50_ms: +pct(lat, 0.5).toFixed(1), p90_ms: +pct(lat, 0.9).toFixed(1), p99_ms: +pct(lat, 0.99).toFixed(1),
    max_ms: +lat[lat.length - 1].toFixed(1), wall_s: +secs.toFixed(1),
    connections_latency_phase: connLatency,
    keepalive_calls: KA_CALLS, keepalive_wave: KA_WAVE,
    connections_per_100_calls: +(kaConns * 100 / KA_CALLS).toFixed(1),
  }));
  await live.stop();
  await nc.close();
  await stopAll();
  model.close();
}
main().catch(async (e) => { console.error(e); await stopAll(); process.exit(1); });
