// router.mjs - helpers of the tool-router tests (router, router_intake,
// router_limits, router_failover): a router started on a free port, device
// tokens, the router's metrics, and the commands it sends read from CMDS.
import assert from 'node:assert/strict';
import { startService, runctl, freePort } from './stack.mjs';

// p, or a rejection naming what after ms.
export function withTimeout(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms); })])
    .finally(() => clearTimeout(t));
}

// A router on a free port with its own instance id; .url is the device
// endpoint, .instance the id.
export async function startRouter(env, extra = {}) {
  const port = await freePort();
  const r = await startService('router', {
    ...env, RS_ROUTER_PORT: String(port), RS_INSTANCE_ID: `router-${port}`, RS_LOG_LEVEL: 'debug', ...extra,
  }, port);
  r.url = `ws://127.0.0.1:${port}/v1/devices/connect`;
  r.instance = `router-${port}`;
  return r;
}

// A device token from runctl.
export function deviceToken(env, device, tenant) {
  const r = runctl(['devices', 'token', '--tenant', tenant, '--device', device], env);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

// The value of metric name (any labels) on router's /metrics; 0 if absent.
export async function routerMetric(router, name) {
  const text = await (await fetch(`http://127.0.0.1:${router.port}/metrics`)).text();
  const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

// Commands the routers sent, read through the orchestrator's durable
// consumer (CMDS is a work queue: it admits no second consumer). `seen`
// holds { type, body } in arrival order; expect(pred) awaits a body.
export async function cmdReader(js) {
  const c = await js.consumers.get('CMDS', 'orchestrator');
  const seen = [];
  let waiters = [];
  const iter = await c.consume({ max_messages: 1024 });
  (async () => {
    for await (const m of iter) {
      seen.push({ type: m.headers?.get('Runstream-Type'), id: m.headers?.get('Nats-Msg-Id'), body: JSON.parse(m.string()) });
      m.ack();
      for (const w of [...waiters]) w();
    }
  })().catch(() => {});
  return {
    seen,
    expect(pred, ms = 8000, what = 'command') {
      return withTimeout(new Promise((resolve) => {
        const check = () => {
          const f = seen.find((x) => pred(x.body));
          if (!f) return false;
          waiters = waiters.filter((w) => w !== check);
          resolve(f);
          return true;
        };
        if (!check()) waiters.push(check);
      }), ms, `${what}; commands so far: ${JSON.stringify(seen.map((x) => x.body))}`);
    },
    stop() { iter.stop(); },
  };
}
