// intake.mjs - the tool-router's own share of a tool call, from the
// server's clocks: a tool.call stored in TOOLCALLS -> its tool.delivered
// stored in CMDS (intake, claim, delivery), and tool.delivered -> tool.result
// stored (WebSocket to the C example device and back, result CAS, publish).
// Concurrency 1, BENCH_CALLS calls (the first 50 are warm-up). Uses the test
// harness (tests/lib/stack.mjs): a private nats-server, one router, the
// example device. Run from tests/ like run.sh does:
//   cd tests && RS_BUILD_DIR=../build RS_SRC_DIR=.. BENCH_CALLS=350 node ../bench/router/intake.mjs
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { startStack, startService, startProcess, runctl, stopAll, freePort, bin, waitFor } from '../../tests/lib/stack.mjs';

// The npm clients live in tests/node_modules (ESM ignores NODE_PATH).
const require = createRequire(new URL('../../tests/package.json', import.meta.url));
const { connect } = require('nats');

const CALLS = Number(process.env.BENCH_CALLS || 350);
const T = 'bench';

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
const fmt = (ms) => ms.toFixed(2);

try {
  const stack = await startStack({ pg: false });
  const port = await freePort();
  await startService('router', { ...stack.env, RS_ROUTER_PORT: String(port), RS_LOG_LEVEL: 'warn' }, port);
  const url = `ws://127.0.0.1:${port}/v1/devices/connect`;
  const tok = runctl(['devices', 'token', '--tenant', T, '--device', 'bench-dev'], stack.env).stdout.trim();
  startProcess('bench-device', bin('device'), [], { RS_ROUTER_URL: url, RS_DEVICE_ID: 'bench-dev', RS_DEVICE_TOKEN: tok, RS_DEVICE_WORKERS: '8', RS_LOG_LEVEL: 'warn' });

  const nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  const js = nc.jetstream();
  const kvp = await js.views.kv('presence');
  await waitFor('bench device online', async () => (await kvp.get(`${T}.bench-dev`))?.operation === 'PUT', 10000);

  // Per call, server timestamps: TOOLCALLS stored -> tool.delivered stored -> tool.result stored.
  const waiting = new Map();
  const cons = await js.consumers.get('CMDS', 'orchestrator');
  const iter = await cons.consume({ max_messages: 1024 });
  (async () => {
    for await (const m of iter) {
      m.ack();
      const b = JSON.parse(m.string());
      const w = waiting.get(b.call_id);
      if (!w) continue;
      w[m.headers?.get('Runstream-Type')] = m.info.timestampNanos;
      if (w['tool.result'] && w['tool.delivered']) { waiting.delete(b.call_id); w.done(); }
    }
  })().catch(() => {});
  const jsm = await nc.jetstreamManager();
  let seq = 0;
  const runId = crypto.randomUUID();
  const intake = [], device = [];
  for (let i = 0; i < CALLS; i++) {
    seq += 1;
    const call_id = `b${seq}-${process.pid}`;
    const w = {};
    const done = new Promise((res) => { w.done = res; });
    waiting.set(call_id, w);
    const pa = await js.publish(`toolcalls.${T}.${call_id}`, JSON.stringify({
      type: 'tool.call', call_id, run_id: runId, tenant: T, step_id: 's', tool: 'echo',
      args: { i: seq }, attempt: 1, deadline: new Date(Date.now() + 60000).toISOString(), device: 'bench-dev',
    }));
    await done;
    const sm = await jsm.streams.getMessage('TOOLCALLS', { seq: pa.seq });
    const ts = sm.timestamp; // RFC 3339 with nanoseconds
    const frac = (ts.match(/\.(\d+)Z$/) || [null, '0'])[1].padEnd(9, '0');
    const tcall = BigInt(Date.parse(ts.replace(/\.\d+Z$/, 'Z'))) * 1000000n + BigInt(frac);
    if (i >= 50) {
      intake.push(Number(BigInt(w['tool.delivered']) - tcall) / 1e6);
      device.push(Number(BigInt(w['tool.result']) - BigInt(w['tool.delivered'])) / 1e6);
    }
  }
  console.log(`TOOLCALLS stored -> tool.delivered stored: p50 ${fmt(pct(intake, 50))} p90 ${fmt(pct(intake, 90))} mean ${fmt(intake.reduce((a, b) => a + b, 0) / intake.length)} ms (${intake.length} calls, C=1)`);
  console.log(`tool.delivered -> tool.result stored: p50 ${fmt(pct(device, 50))} p90 ${fmt(pct(device, 90))} ms`);
  iter.stop();
  await nc.close();
} finally {
  await stopAll();
}
process.exit(0);
