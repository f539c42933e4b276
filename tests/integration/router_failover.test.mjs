// router_failover.test.mjs - a tool call is dispatched after a JetStream
// leader fault (docs/benchmarks.md, "Open: a tool call never dispatched";
// docs/devices.md, "Router architecture").
//
// On a 3-node cluster a call waits pending in KV `calls` (its device is not
// connected). The node leading KV_calls is stopped (SIGSTOP), then the device
// connects: the router's claim (a compare-and-set on the record) gets no
// answer. Before the fix the router took "no answer" for a lost race and
// waited for the watch to bring the winner, which never came: the call was
// never dispatched. Now an unanswered claim is tried again, and a record
// that names this router's live connection though the frame was never
// written (a write that landed while its answer was lost) is delivered.
// Real nats-servers, a real router, a raw `ws` device; every wait is on a
// frame or a KV record.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { connect } from 'nats';
import { startClusterStack, startService, stopAll, freePort, waitFor } from '../lib/stack.mjs';
import { deviceToken as tokenOf } from '../lib/router.mjs';

const T = 'failover';
const SUB = 'runstream.device.v1';
let stack, nc, js;
const stopped = new Set();
const deviceToken = (device) => tokenOf(stack.env, device, T);

after(async () => {
  for (const n of stopped) try { process.kill(n.pid, 'SIGCONT'); } catch { /* gone */ }
  await nc?.close();
  await stopAll();
});

before(async () => {
  stack = await startClusterStack({ pg: false });
  nc = await connect({ servers: stack.cluster.servers, ...stack.cluster.creds });
  js = nc.jetstream();
});

// Connects, says hello, records every tool.call frame (never answers).
// An `unavailable` answer to the hello (the router could not verify the
// token while the cluster elects: "retry later") is what a real device
// retries: so does this one, on a new connection, until the deadline.
function device(url, id, token, deadlineMs = 30000) {
  const d = { calls: [], ws: null, hellos: 0 };
  const until = Date.now() + deadlineMs;
  d.welcome = new Promise((resolve, reject) => {
    const connect = () => {
      const ws = new WebSocket(url, SUB);
      d.ws = ws;
      d.hellos++;
      ws.on('error', () => {});
      ws.once('open', () => ws.send(JSON.stringify({ type: 'hello', device_id: id, token, tools: [{ name: 'echo' }] })));
      ws.on('message', (data) => {
        const f = JSON.parse(data.toString());
        if (f.type === 'welcome') resolve(f);
        else if (f.type === 'error' && f.code === 'unavailable' && Date.now() < until) {
          ws.terminate();
          setTimeout(connect, 200);
        } else if (f.type === 'error') reject(new Error(JSON.stringify(f)));
        else if (f.type === 'tool.call') d.calls.push(f);
      });
    };
    connect();
  });
  return d;
}

test('a claim left unanswered by a stopped KV leader is tried again: the call reaches its device', async (t) => {
  // The node to stop leads KV_calls (and not KV_devtokens: the device's
  // hello reads it). The router connects to the two other nodes only, so
  // it is the claim that goes unanswered, not the router's connection.
  let leader;
  await waitFor('KV_devtokens led by another node than KV_calls', async () => {
    leader = await stack.cluster.leaderOf('KV_calls');
    const tokens = await stack.cluster.leaderOf('KV_devtokens');
    if (!leader || !tokens) return false;
    if (tokens !== leader) return true;
    await nc.request('$JS.API.STREAM.LEADER.STEPDOWN.KV_devtokens', new Uint8Array(0), { timeout: 5000 }).catch(() => {});
    return false;
  }, 30000, 500);
  const others = stack.cluster.nodes.filter((n) => n !== leader).map((n) => n.url).join(',');
  const port = await freePort();
  const instance = `router-${port}`;
  const r = await startService('router', {
    ...stack.env, RS_NATS_URL: others, RS_ROUTER_PORT: String(port), RS_INSTANCE_ID: instance, RS_LOG_LEVEL: 'debug',
  }, port);
  const kv = await js.views.kv('calls');
  const call = {
    type: 'tool.call', call_id: `fo-${process.pid}-${crypto.randomBytes(3).toString('hex')}`,
    run_id: crypto.randomUUID(), tenant: T, step_id: 's1', tool: 'echo', args: {},
    attempt: 1, deadline: new Date(Date.now() + 120000).toISOString(), device: 'late-dev',
  };
  await js.publish(`toolcalls.${T}.${call.call_id}`, JSON.stringify(call));
  const key = `${T}.${call.call_id}`;
  const record = async () => { const e = await kv.get(key); return e && e.length ? JSON.parse(e.string()) : null; };
  await waitFor('the call recorded pending', async () => (await record())?.state === 'pending', 15000, 50);

  const token = deviceToken('late-dev');   // before the fault: runctl reads KV
  assert.equal(await stack.cluster.leaderOf('KV_calls'), leader, 'KV_calls kept its leader');
  process.kill(leader.pid, 'SIGSTOP');
  leader.stopped = true;
  stopped.add(leader);
  t.diagnostic(`stopped ${leader.name}, the KV_calls leader`);
  const d = device(`ws://127.0.0.1:${port}/v1/devices/connect`, 'late-dev', token);
  await d.welcome;
  // The survivors elect a new leader; the claim, unanswered meanwhile, is
  // made again and wins. (Before the fix: never delivered.)
  await waitFor('the call delivered to late-dev', () => d.calls.some((f) => f.call_id === call.call_id), 45000, 50);
  process.kill(leader.pid, 'SIGCONT');
  leader.stopped = false;
  stopped.delete(leader);
  // A follower may answer a get: wait for the one that has caught up.
  let rec;
  await waitFor('the record delivered', async () => (rec = await record().catch(() => null))?.state === 'delivered', 15000, 100);
  assert.equal(rec.device, 'late-dev');
  assert.equal(rec.router, instance);
  assert.equal(d.calls.filter((f) => f.call_id === call.call_id).length, 1, 'delivered once');
  d.ws.terminate();
  await r.kill();
});
