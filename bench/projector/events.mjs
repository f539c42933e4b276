// events.mjs - realistic run event streams for the projector's test and
// benchmark: CloudEvents exactly as common/rs_event.h / docs/events.md
// define them (envelope, data fields, headers), for a few run shapes that
// together use every event type.
import crypto from 'node:crypto';

export function uuid() {
  return crypto.randomUUID();
}

const hex = (n) => crypto.randomBytes(n).toString('hex');
const err = (code, message, cls = 'permanent', retryable = false) => ({ code, message, class: cls, retryable });

// The [type, data] list of one run of the given shape. t0: Unix ms of run.created.
export function runShape(shape, runId, t0) {
  // 80 bits of the run id: 8 hex digits collided between runs of a 20,000-run
  // stream about one run in 20 (tool_calls_pkey), which dead-lettered a run.
  const cid = `${runId.slice(0, 8)}-${runId.slice(24)}`;
  const c1 = `${cid}-c1`, c2 = `${cid}-c2`;
  const iso = (ms) => new Date(ms).toISOString();
  const created = ['run.created', { agent: 'greeter', version: '0123456789abcdef', input: { name: 'Ada', n: 3 }, idempotency_key: `k-${runId}`, timeout_s: 600 }];
  const started = ['run.started', { instance: 'orchestrator-1' }];
  switch (shape) {
  case 'tool_ok': return [created, started,
    ['step.started', { step_id: 'fetch', kind: 'tool', attempt: 1, input: { q: 'weather' } }],
    ['tool.requested', { call_id: c1, step_id: 'fetch', attempt: 1, tool: 'http.get', args: { url: 'https://example.com' }, capability: 'net', deadline: iso(t0 + 30000) }],
    ['tool.dispatched', { call_id: c1, device_id: 'dev-1', router: 'router-a' }],
    ['tool.completed', { call_id: c1, step_id: 'fetch', attempt: 1, output: { status: 200, body: 'sunny\twarm\n' }, device_id: 'dev-1' }],
    ['step.completed', { step_id: 'fetch', attempt: 1, output: { status: 200 }, duration_ms: 42, next_step: 'pause' }],
    ['step.started', { step_id: 'pause', kind: 'sleep', attempt: 1 }],
    ['timer.scheduled', { timer_id: `${runId}-t1`, purpose: 'sleep', step_id: 'pause', attempt: 1, due_at: iso(t0 + 1000) }],
    ['timer.fired', { timer_id: `${runId}-t1`, purpose: 'sleep', step_id: 'pause', attempt: 1, due_at: iso(t0 + 1000) }],
    ['step.completed', { step_id: 'pause', attempt: 1, output: null, duration_ms: 1000 }],
    ['run.completed', { output: { greeting: 'hello Ada', quote: "it's \\ fine" } }]];
  case 'retry_fail': return [created, started,
    ['step.started', { step_id: 'charge', kind: 'tool', attempt: 1, input: { amount: 5 } }],
    ['tool.requested', { call_id: c1, step_id: 'charge', attempt: 1, tool: 'pay', args: { amount: 5 }, device: 'dev-2', deadline: iso(t0 + 30000) }],
    ['tool.dispatched', { call_id: c1, device_id: 'dev-2' }],
    ['tool.failed', { call_id: c1, step_id: 'charge', attempt: 1, error: err('tool_error', 'card declined', 'transient', true), device_id: 'dev-2' }],
    ['step.failed', { step_id: 'charge', attempt: 1, error: err('tool_error', 'card declined', 'transient', true), final: false }],
    ['step.retry_scheduled', { step_id: 'charge', attempt: 2, backoff_ms: 500, due_at: iso(t0 + 600), timer_id: `${runId}-r2` }],
    ['timer.scheduled', { timer_id: `${runId}-r2`, purpose: 'retry', step_id: 'charge', attempt: 2, due_at: iso(t0 + 600) }],
    ['timer.fired', { timer_id: `${runId}-r2`, purpose: 'retry', step_id: 'charge', attempt: 2, due_at: iso(t0 + 600) }],
    ['step.started', { step_id: 'charge', kind: 'tool', attempt: 2, input: { amount: 5 } }],
    ['tool.requested', { call_id: c2, step_id: 'charge', attempt: 2, tool: 'pay', args: { amount: 5 }, deadline: iso(t0 + 40000) }],
    ['tool.timed_out', { call_id: c2, step_id: 'charge', attempt: 2 }],
    ['step.failed', { step_id: 'charge', attempt: 2, error: err('timeout', 'tool timed out', 'timeout', false), final: true }],
    ['run.failed', { error: { ...err('step_failed', 'charge failed'), step_id: 'charge' } }]];
  case 'signal_ok': return [created, started,
    ['step.started', { step_id: 'approve', kind: 'signal', attempt: 1 }],
    ['timer.scheduled', { timer_id: `${runId}-s1`, purpose: 'signal_timeout', step_id: 'approve', attempt: 1, due_at: iso(t0 + 60000) }],
    ['signal.received', { signal_id: `sig-${runId.slice(0, 8)}`, name: 'approve', payload: { ok: true }, step_id: 'approve' }],
    ['step.completed', { step_id: 'approve', attempt: 1, output: { ok: true }, duration_ms: 900 }],
    ['run.completed', { output: { approved: true } }]];
  case 'cancelled': return [created, started,
    ['step.started', { step_id: 'approve', kind: 'signal', attempt: 1 }],
    ['run.cancel_requested', { reason: 'user asked' }],
    ['run.cancelled', { reason: 'user asked' }]];
  case 'timed_out': return [created, started,
    ['step.started', { step_id: 'slow', kind: 'tool', attempt: 1, input: {} }],
    ['tool.requested', { call_id: c1, step_id: 'slow', attempt: 1, tool: 'sleep', args: { s: 999 }, deadline: iso(t0 + 999000) }],
    ['tool.dispatched', { call_id: c1, device_id: 'dev-3', router: 'router-b' }],
    ['timer.scheduled', { timer_id: `${runId}-to`, purpose: 'run_timeout', due_at: iso(t0 + 5000) }],
    ['timer.fired', { timer_id: `${runId}-to`, purpose: 'run_timeout', due_at: iso(t0 + 5000) }],
    ['run.timed_out', { timeout_s: 5 }]];
  case 'waiting': return [created, started,
    ['step.started', { step_id: 'fetch', kind: 'tool', attempt: 1, input: { q: 1 } }],
    ['tool.requested', { call_id: c1, step_id: 'fetch', attempt: 1, tool: 'http.get', args: { url: 'x' }, deadline: iso(t0 + 30000) }]];
  case 'queued': return [created];
  default: throw new Error(`unknown shape ${shape}`);
  }
}

export const SHAPES = ['tool_ok', 'retry_fail', 'signal_ok', 'cancelled', 'timed_out', 'waiting', 'queued'];

// The CloudEvent (object) of one event.
export function cloudEvent(tenant, runId, runseq, type, data, timeMs) {
  return {
    specversion: '1.0', id: `${runId}-${runseq}`, source: 'runstream/orchestrator',
    type: `runstream.${type}`, subject: runId, time: new Date(timeMs).toISOString(),
    datacontenttype: 'application/json', runseq, tenant,
    traceparent: `00-${hex(16)}-${hex(8)}-01`, data,
  };
}

// Every event of one run as publishable messages, runseq 1..n.
export function runMessages(tenant, shape, t0 = Date.now(), runId = uuid()) {
  return runShape(shape, runId, t0).map(([type, data], i) => {
    const ce = cloudEvent(tenant, runId, i + 1, type, data, t0 + i * 10);
    return { subject: `runs.${tenant}.${runId}`, id: ce.id, type, body: JSON.stringify(ce), runId };
  });
}

// natsHeaders: the `headers` function of the npm nats client (passed in:
// this file lives outside tests/node_modules' reach).
export function eventHeaders(natsHeaders, type) {
  const h = natsHeaders();
  h.set('Content-Type', 'application/cloudevents+json');
  h.set('Runstream-Type', type);
  return h;
}

// Publish messages with bounded concurrency; returns the last PubAck.
export async function publishAll(js, natsHeaders, msgs, window = 512) {
  const enc = new TextEncoder();
  let last = null;
  for (let i = 0; i < msgs.length; i += window) {
    const acks = await Promise.all(msgs.slice(i, i + window).map((m) =>
      js.publish(m.subject, enc.encode(m.body), { msgID: m.id, headers: eventHeaders(natsHeaders, m.type) })));
    last = acks[acks.length - 1];
  }
  return last;
}

// Interleave the runs' events the way concurrent runs append them.
export function interleave(runs) {
  const out = [];
  const idx = runs.map(() => 0);
  let left = runs.reduce((a, r) => a + r.length, 0);
  while (left > 0) {
    for (let r = 0; r < runs.length; r++) {
      if (idx[r] < runs[r].length) { out.push(runs[r][idx[r]++]); left--; }
    }
  }
  return out;
}

// Interleave with at most `window` runs in flight at once (a run's events
// are spread over its life while others start and finish), the shape an
// orchestrator with that concurrency appends.
export function interleaveWindow(runs, window) {
  const out = [];
  const active = [];
  let next = 0;
  while (active.length > 0 || next < runs.length) {
    while (active.length < window && next < runs.length) active.push({ r: runs[next++], i: 0 });
    for (let k = 0; k < active.length; k++) {
      const a = active[k];
      out.push(a.r[a.i++]);
      if (a.i === a.r.length) { active.splice(k, 1); k--; }
    }
  }
  return out;
}
