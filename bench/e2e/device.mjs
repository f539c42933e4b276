// device.mjs - the device of bench/e2e: one Node process speaking
// runstream.device.v1 over WebSocket (the `ws` package, as docs/devices.md
// shows), offering one tool, `inc`: {n} -> {n: n+1}.
//
// A separate process (not inside the driver) so its CPU is read from /proc
// like every other part of the stack, and the driver's event loop does not
// slow the device down. Env: RS_ROUTER_URL, RS_DEVICE_ID, RS_DEVICE_TOKEN.
// Prints "welcome" on stdout once the router has accepted it; exits 1 when
// the connection closes (the driver treats that as a failed benchmark).
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/package.json', import.meta.url));
const WebSocket = require('ws');

const url = process.env.RS_ROUTER_URL;
const deviceId = process.env.RS_DEVICE_ID;
const token = process.env.RS_DEVICE_TOKEN;
if (!url || !deviceId || !token) {
  console.error('device: set RS_ROUTER_URL, RS_DEVICE_ID and RS_DEVICE_TOKEN');
  process.exit(2);
}

// Answers by call_id: a redelivered call gets the same answer again
// (docs/devices.md, "at least once"). Bounded: oldest answers dropped first.
const MAX_ANSWERS = 100000;
const answered = new Map();
let calls = 0;
let badCalls = 0;

const ws = new WebSocket(url, 'runstream.device.v1', { perMessageDeflate: false });
ws.on('open', () => ws.send(JSON.stringify({
  type: 'hello', device_id: deviceId, token,
  tools: [{ name: 'inc', description: 'n + 1',
    input_schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] } }],
})));
ws.on('message', (raw) => {
  let f;
  try { f = JSON.parse(raw.toString()); } catch { console.error('device: frame is not JSON'); return; }
  if (f.type === 'welcome') { process.stdout.write('welcome\n'); return; }
  if (f.type === 'error') { console.error(`device: error frame ${f.code}: ${f.message}`); return; }
  if (f.type !== 'tool.call' || typeof f.call_id !== 'string') return;
  calls++;
  let reply = answered.get(f.call_id);
  if (!reply) {
    const n = f.args?.n;
    if (f.tool !== 'inc' || typeof n !== 'number' || !Number.isFinite(n)) {
      badCalls++;
      reply = { type: 'tool.result', call_id: f.call_id,
        error: { code: 'bad_args', message: `inc wants {n: number}, got ${JSON.stringify(f.args)}`, retryable: false } };
    } else {
      reply = { type: 'tool.result', call_id: f.call_id, output: { n: n + 1 } };
    }
    answered.set(f.call_id, reply);
    if (answered.size > MAX_ANSWERS) answered.delete(answered.keys().next().value);
  }
  ws.send(JSON.stringify(reply));
});
ws.on('error', (e) => console.error(`device: ${e.message}`));
ws.on('close', (code) => {
  console.error(`device: connection closed (${code}) after ${calls} calls, ${badCalls} with bad args`);
  process.exit(1);
});
process.on('SIGTERM', () => {
  console.error(`device: stopping after ${calls} calls, ${badCalls} with bad args`);
  process.exit(0);
});
