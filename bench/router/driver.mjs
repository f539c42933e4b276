// driver.mjs - see run.sh. Uses the test harness (tests/lib/stack.mjs) to
// start a private nats-server, the router and the example device.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import { startStack, startService, startProcess, runctl, stopAll, freePort, bin, waitFor } from '../../tests/lib/stack.mjs';

// The npm clients live in tests/node_modules (ESM ignores NODE_PATH).
const require = createRequire(new URL('../../tests/package.json', import.meta.url));
const WebSocket = require('ws');
const { connect } = require('nats');

const CALLS = Number(process.env.BENCH_CALLS || 2000);
const IDLE = Number(process.env.BENCH_IDLE || 10000);
const T = 'bench';

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
const fmt = (ms) => ms.toFixed(2);
const rssKb = (pid) => Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);

async function runConcurrent(n, conc, one) {
  const lat = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) {
      next += 1;
      const s = performance.now();
      await one();
      lat.push(performance.now() - s);
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  return { p50: pct(lat, 50), p99: pct(lat, 99), rate: n / secs };
}

try {
  const stack = await startStack({ pg: false });
  const port = await freePort();
  const router = await startService('router', { ...stack.env, RS_ROUTER_PORT: String(port), RS_LOG_LEVEL: 'warn' }, port);
  const url = `ws://127.0.0.1:${port}/v1/devices/connect`;
  const tok = runctl(['devices', 'token', '--tenant', T, '--device', 'bench-dev'], stack.env).stdout.trim();
  startProcess('bench-device', bin('device'), [], { RS_ROUTER_URL: url, RS_DEVICE_ID: 'bench-dev', RS_DEVICE_TOKEN: tok, RS_DEVICE_WORKERS: '8', RS_LOG_LEVEL: 'warn' });

  const nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  const js = nc.jetstream();
  const kvp = await js.views.kv('presence');
  await waitFor('bench device online', async () => (await kvp.get(`${T}.bench-dev`))?.operation === 'PUT', 10000);

  // Results observed on CMDS through the orchestrator's durable consumer.
  const waiting = new Map();
  const cons = await js.consumers.get('CMDS', 'orchestrator');
  const iter = await cons.consume({ max_messages: 1024 });
  (async () => {
    for await (const m of iter) {
      m.ack();
      if (m.headers?.get('Runstream-Type') !== 'tool.result') continue;
      const b = JSON.parse(m.string());
      const w = waiting.get(b.call_id);
      if (w) { waiting.delete(b.call_id); w(); }
    }
  })().catch(() => {});

  let seq = 0;
  const runId = crypto.randomUUID();
  const toolCall = async () => {
    seq += 1;
    const call_id = `b${seq}-${process.pid}`;
    const done = new Promise((res) => waiting.set(call_id, res));
    await js.publish(`toolcalls.${T}.${call_id}`, JSON.stringify({
      type: 'tool.call', call_id, run_id: runId, tenant: T, step_id: 's', tool: 'echo',
      args: { i: seq }, attempt: 1, deadline: new Date(Date.now() + 60000).toISOString(), device: 'bench-dev',
    }));
    await done;
  };
  nc.subscribe('bench.echo', { callback: (_e, m) => m.respond(m.data) });
  const reqReply = async () => { await nc.request('bench.echo', 'x', { timeout: 5000 }); };

  await runConcurrent(200, 8, toolCall);   // warm up
  await runConcurrent(500, 8, reqReply);
  const rows = [];
  for (const conc of [1, 64]) {
    rows.push(['core NATS request-reply', conc, await runConcurrent(CALLS * (conc === 1 ? 1 : 5), conc, reqReply)]);
    rows.push(['tool call round trip', conc, await runConcurrent(CALLS * (conc === 1 ? 1 : 5), conc, toolCall)]);
  }

  // Idle devices: tokens written straight into KV devtokens (as runctl does).
  const kvt = await js.views.kv('devtokens');
  const toks = [];
  for (let i = 0; i < IDLE; i++) {
    const t = `dt_idle_${i}_${crypto.randomBytes(8).toString('hex')}`;
    toks.push(t);
    await kvt.put(crypto.createHash('sha256').update(t).digest('hex'), JSON.stringify({ tenant: T, device_id: `idle-${i}` }));
  }
  const rss0 = rssKb(router.pid);
  const socks = [];
  let welcomed = 0;
  const BATCH = 500;
  for (let i = 0; i < IDLE; i += BATCH) {
    await Promise.all(toks.slice(i, i + BATCH).map((t, k) => new Promise((resolve, reject) => {
      const ws = new WebSocket(url, 'runstream.device.v1', { perMessageDeflate: false });
      ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', device_id: `idle-${i + k}`, token: t, tools: [{ name: 'echo' }] })));
      ws.on('message', (d) => { if (JSON.parse(d.toString()).type === 'welcome') { welcomed += 1; resolve(); } else reject(new Error(d.toString())); });
      ws.on('error', reject);
      socks.push(ws);
    })));
  }
  // Let presence puts and allocator settle before reading RSS.
  await new Promise((r) => setTimeout(r, 2000));
  const rss1 = rssKb(router.pid);
  const perDev = ((rss1 - rss0) * 1024) / welcomed;

  console.log(`## Router benchmark (${os.cpus().length} cores, ${os.cpus()[0].model.trim()}, nats-server ${'2.9'}, ${new Date().toISOString().slice(0, 10)})\n`);
  console.log('| path | concurrency | calls | p50 ms | p99 ms | calls/s |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [name, conc, r] of rows)
    console.log(`| ${name} | ${conc} | ${CALLS * (conc === 1 ? 1 : 5)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${Math.round(r.rate)} |`);
  console.log(`\nIdle devices: ${welcomed} connected; router RSS ${Math.round(rss0 / 1024)} MB -> ${Math.round(rss1 / 1024)} MB: **${(perDev / 1024).toFixed(1)} KB per device**.`);
  for (const s of socks) s.terminate();
  iter.stop();
  await nc.close();
} finally {
  await stopAll();
}
process.exit(0);
