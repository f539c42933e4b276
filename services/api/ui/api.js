// api.js - the viewer's only way to the API (docs/viewer.md).
//
// The API key lives in sessionStorage (gone when the tab closes) and is
// sent as the Bearer header by fetch; it never goes into a URL. Live
// updates are the run's SSE stream read through fetch streaming (so the
// header can be sent), resumed after a drop with Last-Event-ID = the last
// runseq this page holds: the server sends history after it, then live,
// with no gap and no duplicate (docs/api.md, SSE).

const KEY = 'runstream.apiKey';

export const auth = {
  get key() { return sessionStorage.getItem(KEY); },
  set(k) { sessionStorage.setItem(KEY, k); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? `${status}: ${problem.detail}` : `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export async function api(path, { method = 'GET', body, headers = {}, signal, key } = {}) {
  const h = { Authorization: `Bearer ${key || auth.key || ''}`, ...headers };
  let b;
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    b = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers: h, body: b, signal, cache: 'no-store' });
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text.slice(0, 200) }; }
  }
  if (res.status === 401 && !key) onUnauthorized();
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const TERMINAL = new Set(['run.completed', 'run.failed', 'run.cancelled', 'run.timed_out']);

// Parse one SSE block ("id: 3\nevent: x\ndata: {...}"); null for a comment.
function parseBlock(block) {
  let id = null; let event = null; const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':') || line === '') continue;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let v = c < 0 ? '' : line.slice(c + 1);
    if (v.startsWith(' ')) v = v.slice(1);
    if (field === 'id') id = Number(v);
    else if (field === 'event') event = v;
    else if (field === 'data') data.push(v);
  }
  if (id === null || data.length === 0) return null;
  return { id, event, data: data.join('\n') };
}

// Follow a run's events from runseq `after` on. onEvent(cloudEvent) in
// order; onState('connecting'|'live'|'reconnecting'|'ended', info).
// Returns { stop(), last }.
export function followRun(runId, { after = 0, onEvent, onState = () => {} }) {
  let last = after; let stopped = false; let ac = null; let ended = false;
  const stats = { connects: 0, resumes: [] };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  (async () => {
    let delay = 250;
    while (!stopped && !ended) {
      ac = new AbortController();
      try {
        onState(stats.connects ? 'reconnecting' : 'connecting');
        const headers = { Authorization: `Bearer ${auth.key}`, Accept: 'text/event-stream' };
        if (last > 0) headers['Last-Event-ID'] = String(last);
        stats.connects++;
        if (last > 0 && stats.connects > 1) stats.resumes.push(last);
        const res = await fetch(`/v1/runs/${encodeURIComponent(runId)}/stream`, { headers, signal: ac.signal, cache: 'no-store' });
        if (res.status === 204) { ended = true; break; }
        if (res.status === 401) { onUnauthorized(); return; }
        if (!res.ok) throw new ApiError(res.status, null);
        onState('live');
        delay = 250;
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const f = parseBlock(buf.slice(0, i));
            buf = buf.slice(i + 2);
            if (!f || f.id <= last) continue;     // the server sends none; never show one
            if (f.id !== last + 1) stats.gap = (stats.gap || 0) + 1;
            last = f.id;
            const ev = JSON.parse(f.data);
            onEvent(ev);
            if (TERMINAL.has(f.event)) ended = true;
          }
        }
      } catch (e) {
        if (stopped) return;
        onState('reconnecting', e);
      }
      if (!ended && !stopped) { await sleep(delay); delay = Math.min(delay * 2, 4000); }
    }
    if (ended && !stopped) onState('ended');
  })();
  return { stop() { stopped = true; if (ac) ac.abort(); }, get last() { return last; }, stats };
}
