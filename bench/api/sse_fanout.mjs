// sse_fanout.mjs - SSE fan-out benchmark for rs-api: W watchers across R
// runs (one TCP connection each, no EventSource overhead: a minimal
// parser), then E events per run appended to RUNS by this process. The
// latency of one delivery is receive time - time just before js.publish
// (same clock). Reports p50/p99/max and the API's RSS per watcher
// (VmRSS after all watchers are open - before, / W).
//
// usage: node sse_fanout.mjs <api base> <key> <nats url> <api pid> [W R E RATE]
import http from 'node:http';
import fs from 'node:fs';
import { createRequire } from 'node:module';

// The nats client lives in tests/node_modules (ESM ignores NODE_PATH).
const require = createRequire(new URL('../../tests/package.json', import.meta.url));
const { connect, headers: natsHeaders } = require('nats');

import { spawn } from 'node:child_process';
import { followRuns } from '../../tests/lib/clients.mjs';
import os from 'node:os';
import path from 'node:path';

if (process.argv[2] === 'append') {
  // Child: append E events to every run at RATE events/s, each carrying
  // its send time (data.sent_us), then exit.
  const [, , , url, file, e, rate] = process.argv;
  const runIds = JSON.parse(fs.readFileSync(file, 'utf8'));
  const nc = await connect({ servers: url });
  const js = nc.jetstream();
  const t0 = Date.now();
  let n = 0;
  const pubs = [];
  for (let seq = 1; seq <= Number(e); seq++) {
    for (const runId of runIds) {
      const last = seq === Number(e) && process.env.SSE_NO_TERMINAL !== '1';
      const type = last ? 'run.completed' : 'run.started';
      const ev = { data: { sent_us: Number(process.hrtime.bigint() / 1000n) }, datacontenttype: 'application/json',
        id: `${runId}-${seq}`, runseq: seq, source: 'runstream/orchestrator', specversion: '1.0',
        subject: runId, tenant: 'bench', time: new Date().toISOString(), type: `runstream.${type}` };
      const h = natsHeaders();
      h.set('Runstream-Type', type);
      pubs.push(js.publish(`runs.bench.${runId}`, JSON.stringify(ev), { headers: h, msgID: ev.id }));
      n++;
      if (pubs.length >= 20) {
        await Promise.all(pubs.splice(0));
        const due = t0 + (n / Number(rate)) * 1000;
        if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      }
    }
  }
  await Promise.all(pubs);
  await nc.close();
  process.exit(0);
}

const [base, key, natsUrl, apiPid] = process.argv.slice(2, 6);
const runsFile = path.join(os.tmpdir(), `rs-sse-fanout-${process.pid}.json`);
const W = Number(process.argv[6] || 10000);
const R = Number(process.argv[7] || 1000);
const E = Number(process.argv[8] || 5);
// Append rate (events/s across all runs): a steady load, not one burst, so
// the latency is the system's and not the queue of a 5,000-event burst.
const RATE = Number(process.argv[9] || 2000);
const rss = () => Number(fs.readFileSync(`/proc/${apiPid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]) * 1024;
const now = () => Number(process.hrtime.bigint() / 1000n); // us

async function post(path, body) {
  const r = await fetch(base + path, { method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (r.status !== 202) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

const runs = [];
for (let i = 0; i < R; i += 50) {
  const batch = await Promise.all(Array.from({ length: Math.min(50, R - i) }, () => post('/v1/runs', { agent: 'bench', input: {} })));
  for (const b of batch) runs.push(b.run_id);
}
const tenant = 'bench';
global.gc?.();
const rss0 = rss();
const lat = [];
const bySeq = {};   // runseq -> latencies: where in the run the tail is
let delivered = 0, opened = 0, outOfOrder = 0;
const expected = W * E;
let allDone;
const done = new Promise((r) => { allDone = r; });
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

function watch(runId) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/v1/runs/${runId}/stream`, { agent, headers: { Authorization: `Bearer ${key}` } }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`stream ${res.statusCode}`)); return; }
      opened++;
      resolve();
      let buf = '';
      let lastSeq = 0;   // every watcher must see 1, 2, 3, ... exactly
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          if (!block.startsWith('id: ')) continue;
          const t = /"sent_us":(\d+)/.exec(block);
          if (t) {
            const l = now() - Number(t[1]);
            lat.push(l);
            const seq = Number(block.slice(4, block.indexOf('\n')));
            (bySeq[seq] ||= []).push(l);
            if (seq !== lastSeq + 1) outOfOrder++;
            lastSeq = seq;
          }
          if (++delivered === expected) allDone();
        }
      });
    });
    req.on('error', reject);
  });
}

const t0 = Date.now();
const opens = [];
for (let i = 0; i < W; i++) {
  opens.push(watch(runs[i % R]));
  if (i % 500 === 499) await Promise.all(opens.slice(-500));
}
await Promise.all(opens);
const openS = (Date.now() - t0) / 1000;
await new Promise((r) => setTimeout(r, 500)); // let the server settle its buffers before measuring RSS
const rss1 = rss();

const nc = await connect({ servers: natsUrl });
// The same events as read straight from the server by an ordered consumer
// on RUNS (what rs-api reads too): separates the server's share of the
// latency from the API's.
const rlat = [];
await followRuns(nc.jetstream(), 'runs.>', (m) => {
  const t = /"sent_us":(\d+)/.exec(new TextDecoder().decode(m.data));
  if (t) rlat.push(now() - Number(t[1]));
});
// The appender runs in its own process (its event loop must not delay the
// watchers' reads); process.hrtime is CLOCK_MONOTONIC, shared by both.
const cpu = () => fs.readFileSync(`/proc/${apiPid}/stat`, 'utf8').split(') ')[1].split(' ').slice(11, 13).reduce((a, b) => a + Number(b), 0);
const cpu0 = cpu();
const tPub = Date.now();
fs.writeFileSync(runsFile, JSON.stringify(runs));
const child = spawn(process.execPath, [new URL(import.meta.url).pathname, 'append', natsUrl, runsFile, String(E), String(RATE)], { stdio: 'inherit' });
await new Promise((r) => child.on('exit', r));
const timeout = setTimeout(() => allDone(), 30000);
await done;
clearTimeout(timeout);
const pubS = (Date.now() - tPub) / 1000;
const apiCpu = (cpu() - cpu0) / 100 / pubS;  // cores busy while appending
lat.sort((a, b) => a - b);
// The API's own share, from its histogram rs_api_sse_delivery_seconds
// (NATS callback -> socket write): the fraction of deliveries under each bound.
const metrics = await (await fetch(`${base}/metrics`)).text();
const buckets = [...metrics.matchAll(/^rs_api_sse_delivery_seconds_bucket\{le="([^"]+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]);
const total = Number((/^rs_api_sse_delivery_seconds_count (\d+)/m.exec(metrics) || [0, 0])[1]);
const inApi = Object.fromEntries(buckets.filter(([le]) => ['0.005', '0.01', '0.02', '0.05', '0.1'].includes(le)).map(([le, n]) => [`le_${le}s`, (100 * n / Math.max(1, total)).toFixed(2) + '%']));
rlat.sort((a, b) => a - b);
const rpct = (p) => (rlat[Math.min(rlat.length - 1, Math.floor(rlat.length * p))] / 1000).toFixed(1);
const pct = (p) => (lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] / 1000).toFixed(1);
console.log(JSON.stringify({
  watchers: W, runs: R, events_per_run: E, append_rate: RATE, delivery_rate: RATE * W / R, opened, open_s: openS,
  deliveries: delivered, expected, gaps_or_dups: outOfOrder, publish_and_deliver_s: pubS,
  p50_ms: pct(0.5), p99_ms: pct(0.99), max_ms: (lat[lat.length - 1] / 1000).toFixed(1),
  p99_ms_by_runseq: Object.fromEntries(Object.entries(bySeq).map(([k, v]) => { v.sort((a, b) => a - b); return [k, (v[Math.floor(v.length * 0.99)] / 1000).toFixed(1)]; })),
  in_api: inApi,
  api_cpu_cores: apiCpu.toFixed(2),
  nats_consumer_p50_ms: rpct(0.5), nats_consumer_p99_ms: rpct(0.99),
  rss_before_mb: (rss0 / 1048576).toFixed(1), rss_after_open_mb: (rss1 / 1048576).toFixed(1),
  rss_per_watcher_kb: ((rss1 - rss0) / W / 1024).toFixed(2),
}));
await nc.close();
fs.rmSync(runsFile, { force: true });
process.exit(0);
