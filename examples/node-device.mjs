// node-device.mjs - an example device in Node on the JavaScript SDK
// (sdk/js), with the same tools as the C example (device/example.c):
//   echo      returns its args unchanged
//   sleep_ms  waits args.ms milliseconds; tool.cancel or the deadline abort it
//   fail      fails with args.code / args.message / args.retryable
// Environment: RS_ROUTER_URL (ws://127.0.0.1:8081/v1/devices/connect),
// RS_DEVICE_ID, RS_DEVICE_TOKEN. SIGTERM/SIGINT: running calls finish and
// are answered, then it exits 0. Exit 3: token refused (4401); 4: replaced
// by another connection of the same device (4409).
// It prints "start|end|cancelled <tool> <call_id>" per handler run (the
// SDK conformance test counts them). Run: node examples/node-device.mjs
import { connect, ToolError } from '../sdk/js/src/index.js';

const { RS_ROUTER_URL = 'ws://127.0.0.1:8081/v1/devices/connect', RS_DEVICE_ID, RS_DEVICE_TOKEN } = process.env;
if (!RS_DEVICE_ID || !RS_DEVICE_TOKEN) {
  console.error('node-device: set RS_DEVICE_ID and RS_DEVICE_TOKEN');
  process.exit(2);
}
const say = (line) => console.error(line);

const device = connect({ url: RS_ROUTER_URL, deviceId: RS_DEVICE_ID, token: RS_DEVICE_TOKEN });

device.tool('echo', { description: 'Returns its arguments unchanged', inputSchema: { type: 'object' } },
  async (args, ctx) => { say(`start echo ${ctx.callId}`); return args; });

device.tool('sleep_ms', {
  description: 'Sleeps args.ms milliseconds',
  inputSchema: { type: 'object', properties: { ms: { type: 'integer', minimum: 0 } }, required: ['ms'] },
}, async ({ ms }, ctx) => {
  say(`start sleep_ms ${ctx.callId}`);
  await new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    ctx.signal.addEventListener('abort', () => { clearTimeout(t); reject(ctx.signal.reason); }, { once: true });
  }).catch((e) => { say(`cancelled sleep_ms ${ctx.callId}`); throw e; });
  say(`end sleep_ms ${ctx.callId}`);
  return { slept_ms: ms };
});

device.tool('fail', { description: 'Always fails with args.code/message/retryable', inputSchema: { type: 'object' } },
  async (args) => {
    throw new ToolError(args.code || 'tool_error', args.message || 'the fail tool always fails', { retryable: args.retryable === true });
  });

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => device.close());
device.closed.then(() => process.exit(0), (e) => {
  console.error(`node-device: ${e.message}`);
  process.exit(e.code === 'unauthorized' ? 3 : e.code === 'replaced' ? 4 : 1);
});
