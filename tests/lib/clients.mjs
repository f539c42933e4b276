// clients.mjs - real clients of Runstream's public interfaces, for tests:
// HTTP (fetch), SSE (the `eventsource` package: EventSource semantics), a
// device speaking runstream.device.v1 over WebSocket (the `ws` package), and
// a live follower of the event log RUNS (the `nats` package).
import EventSource from 'eventsource';
import WebSocket from 'ws';
import { DeliverPolicy } from 'nats';

// Every client opened here, so a test can close them all (an EventSource
// left open reconnects forever and keeps the process alive).
const open = new Set();
export function closeAllClients() {
  for (const c of open) { try { c.close(); } catch { /* already closed */ } }
  open.clear();
}

// Follow run events live the way docs/events.md tells watchers to: an
// ordered consumer on RUNS (filter e.g. 'runs.>' or 'runs.acme.*'), deliver
// policy new. Resolves once the consumer exists on the server, so every
// event appended after that reaches onMsg, in stream order, none missing
// (the client re-creates the consumer on a gap). Returns { stop }.
export async function followRuns(js, filter, onMsg) {
  const oc = await js.consumers.get('RUNS', { filterSubjects: filter, deliver_policy: DeliverPolicy.New });
  const msgs = await oc.consume();
  (async () => { for await (const m of msgs) onMsg(m); })();
  return { stop: () => msgs.close() };
}

export function apiClient(baseUrl, apiKey) {
  return async function call(method, path, body, headers = {}) {
    const res = await fetch(baseUrl + path, {
      method,
      headers: {
        Authorization: `Bearer ${apiKey}`,
        ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
    });
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, json, text };
  };
}

// Follow a run over SSE. Resolves `done` when the stream reaches a terminal
// event. `events` collects {id, type, data} in arrival order.
export function watch(baseUrl, apiKey, runId, { lastEventId } = {}) {
  const headers = { Authorization: `Bearer ${apiKey}` };
  if (lastEventId !== undefined) headers['Last-Event-ID'] = String(lastEventId);
  const es = new EventSource(`${baseUrl}/v1/runs/${runId}/stream`, { headers });
  open.add(es);
  const events = [];
  const waiters = [];
  const terminal = new Set(['run.completed', 'run.failed', 'run.cancelled', 'run.timed_out']);
  let resolveDone;
  let rejectDone;
  const done = new Promise((res, rej) => { resolveDone = res; rejectDone = rej; });
  const types = ['run.created', 'run.started', 'step.started', 'step.completed', 'step.failed',
    'step.retry_scheduled', 'tool.requested', 'tool.dispatched', 'tool.completed', 'tool.failed',
    'tool.timed_out', 'timer.scheduled', 'timer.fired', 'signal.received', 'run.cancel_requested',
    'run.completed', 'run.failed', 'run.cancelled', 'run.timed_out', 'llm.delta', 'llm.message',
    'child.started', 'child.finished'];
  for (const t of types) {
    es.addEventListener(t, (e) => {
      const ce = JSON.parse(e.data); // the CloudEvent, on one line
      const ev = { id: Number(e.lastEventId), type: e.type, data: ce.data, ce };
      events.push(ev);
      for (const w of waiters.splice(0)) w();
      if (terminal.has(e.type)) { es.close(); resolveDone(events); }
    });
  }
  es.onerror = (err) => {
    // EventSource reconnects by itself on a dropped stream; a closed stream
    // after the terminal event is expected.
    if (es.readyState === EventSource.CLOSED && !events.some((e) => terminal.has(e.type))) {
      rejectDone(new Error(`SSE closed without a terminal event (${err?.status || err?.message || 'error'})`));
    }
  };
  return {
    es, events, done,
    close: () => es.close(),
    // Resolves when an event matching pred has arrived.
    until(pred, timeoutMs = 20000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`SSE: timed out waiting; have ${events.map((e) => e.type).join(',')}`)), timeoutMs);
        const check = () => {
          const hit = events.find(pred);
          if (hit) { clearTimeout(t); resolve(hit); } else waiters.push(check);
        };
        check();
      });
    },
  };
}

// A device: connects, says hello, answers tool calls with handlers[tool](args, call).
// A handler may return a value (output), throw {code, message, retryable}, or
// return a promise. `calls` records every tool.call frame received.
export function device(url, { deviceId, token, tools, handlers = {}, autoAnswer = true }) {
  const ws = new WebSocket(url, 'runstream.device.v1');
  open.add(ws);
  const calls = [];
  const frames = [];
  const waiters = [];
  const notify = () => { for (const w of waiters.splice(0)) w(); };
  const welcomed = new Promise((resolve, reject) => {
    ws.on('open', () => ws.send(JSON.stringify({
      type: 'hello', device_id: deviceId, token,
      tools: tools.map((name) => ({ name, description: `${name} tool`, input_schema: { type: 'object' } })),
    })));
    ws.on('message', async (raw) => {
      const f = JSON.parse(raw.toString());
      frames.push(f);
      notify();
      if (f.type === 'welcome') resolve(f);
      else if (f.type === 'error' && !calls.length) reject(new Error(`refused: ${f.code} ${f.message}`));
      if (f.type === 'tool.call') {
        calls.push(f);
        notify();
        if (!autoAnswer) return;
        const h = handlers[f.tool];
        try {
          const output = h ? await h(f.args, f) : f.args;
          if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'tool.result', call_id: f.call_id, output }));
        } catch (e) {
          if (ws.readyState === WebSocket.OPEN) {
            ws.send(JSON.stringify({ type: 'tool.result', call_id: f.call_id,
              error: { code: e.code || 'tool_error', message: e.message || String(e), retryable: e.retryable ?? true } }));
          }
        }
      }
    });
    ws.on('error', reject);
  });
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  return {
    ws, calls, frames, welcomed, closed,
    answer(callId, output) { ws.send(JSON.stringify({ type: 'tool.result', call_id: callId, output })); },
    close() { ws.close(); return closed; },
    until(pred, timeoutMs = 20000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`device: timed out; frames ${frames.map((f) => f.type).join(',')}`)), timeoutMs);
        const check = () => {
          const hit = frames.find(pred);
          if (hit) { clearTimeout(t); resolve(hit); } else waiters.push(check);
        };
        check();
      });
    },
  };
}

// ---- SSE over fetch: exact control of the request headers, and the raw
// bytes kept (EventSource hides both) ----

// Parse complete SSE blocks: { events: [{ id, event, data (parsed JSON) }],
// comments: count of comment lines such as ": hb" }.
export function parseSse(text) {
  const out = { events: [], comments: 0 };
  for (const block of text.split('\n\n')) {
    if (!block) continue;
    const ev = {};
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) { out.comments++; continue; }
      const i = line.indexOf(': ');
      if (i > 0) ev[line.slice(0, i)] = line.slice(i + 2);
    }
    if (ev.id) out.events.push({ id: Number(ev.id), event: ev.event, data: JSON.parse(ev.data) });
  }
  return out;
}

// Read the stream at url until the server closes it or signal aborts it.
// onOpen(response) is called once the answer is 200; onEvent(ev, events,
// result) after each event (and with ev null after comments) may return
// true to stop reading. Resolves { status, headers, events, comments,
// closedByServer, raw } (text instead of events when the status is not 200).
export async function readSse(url, { headers = {}, onEvent, onOpen, signal } = {}) {
  const ac = new AbortController();
  signal?.addEventListener('abort', () => ac.abort());
  const res = await fetch(url, { headers, signal: ac.signal });
  const result = { status: res.status, headers: res.headers, events: [], comments: 0, closedByServer: false, raw: '' };
  if (res.status !== 200) { result.text = await res.text(); return result; }
  if (onOpen) onOpen(res);
  const dec = new TextDecoder();
  let buf = '';
  try {
    for await (const chunk of res.body) {
      buf += dec.decode(chunk, { stream: true });
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut + 2);
        buf = buf.slice(cut + 2);
        result.raw += block;
        const p = parseSse(block);
        result.comments += p.comments;
        for (const ev of p.events) {
          result.events.push(ev);
          if (onEvent && onEvent(ev, result.events, result)) { ac.abort(); return result; }
        }
        if (p.comments && onEvent && onEvent(null, result.events, result)) { ac.abort(); return result; }
      }
    }
    result.closedByServer = true;
  } catch (e) {
    if (e.name !== 'AbortError') throw e;
  }
  return result;
}
