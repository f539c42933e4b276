// app.js - the viewer's shell: sign-in, hash routes, the runs list, the
// agents and devices pages (the run page is run.js). docs/viewer.md.
//
// Every piece of text from the API goes into the DOM as text (h() below,
// never innerHTML), so event data cannot inject markup.
import { api, auth, setUnauthorizedHandler } from './api.js';
import { runPage } from './run.js';

export function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export const main = () => document.getElementById('main');
export const badge = (s) => h('span', { class: `badge s-${s}` }, s);
export const shortId = (id) => (id ? `${id.slice(0, 8)}…${id.slice(-4)}` : '');
export function fmtDur(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
export const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '');
export const json = (v) => JSON.stringify(v, null, 2);

// A modal: resolves true on OK, false on close. body: nodes.
export function modal(title, body, { ok = null, danger = false } = {}) {
  const dlg = document.getElementById('dlg');
  document.getElementById('dlg-title').textContent = title;
  const b = document.getElementById('dlg-body');
  b.replaceChildren(...[body].flat(Infinity).filter((x) => x !== '' && x !== null && x !== undefined));
  const okb = document.getElementById('dlg-ok');
  okb.hidden = !ok;
  okb.textContent = ok || 'OK';
  okb.className = danger ? 'danger' : 'primary';
  document.getElementById('dlg-cancel').textContent = ok ? 'Cancel' : 'Close';
  dlg.returnValue = '';
  dlg.showModal();
  return new Promise((res) => dlg.addEventListener('close', () => res(dlg.returnValue === 'ok'), { once: true }));
}

// ---- sign-in ----

function signin(next) {
  const input = h('input', { type: 'password', id: 'apikey', autocomplete: 'off', size: 48, 'aria-label': 'API key', required: true });
  const msg = h('p', { class: 'err', role: 'alert' });
  const form = h('form', { class: 'card', id: 'signin' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Paste an API key (runctl keys create --tenant T). It is kept in this tab only (sessionStorage) and sent as a Bearer header.'),
    h('div', { class: 'row' }, input, h('button', { class: 'primary', type: 'submit' }, 'Sign in')), msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.textContent = '';
    try {
      await api('/v1/agents', { key: input.value.trim() });
      auth.set(input.value.trim());
      location.hash = next && next !== '#/signin' ? next : '#/runs';
      route();
    } catch (err) {
      msg.textContent = err.status === 401 ? 'This key is not known.' : `Cannot sign in: ${err.message}`;
    }
  });
  main().replaceChildren(form);
  input.focus();
}

// ---- runs list ----

const STATUSES = ['', 'queued', 'running', 'waiting', 'completed', 'failed', 'cancelled', 'timed_out'];
let listTimer = null;

function runsPage(params) {
  const f = {
    status: params.get('status') || '', agent: params.get('agent') || '', tag: params.get('tag') || '',
    since: params.get('since') || '', until: params.get('until') || '', limit: params.get('limit') || '25',
  };
  const cursors = [];       // cursors of the pages before this one
  let cursor = null; let next = null; let rows = []; let sel = 0; let shownSig = '';
  const known = new Map();
  const tbody = h('tbody');
  const info = h('span', { class: 'muted', role: 'status' });
  const prev = h('button', { type: 'button', onclick: () => { cursor = cursors.pop() || null; load(); } }, '← Newer');
  const nextb = h('button', { type: 'button', onclick: () => { cursors.push(cursor); cursor = next; load(); } }, 'Older →');
  const agents = h('datalist', { id: 'agent-names' });
  const ctl = (name, el) => { el.name = name; el.value = f[name]; return h('label', {}, name, el); };
  const form = h('form', { class: 'row filters card', id: 'filters' },
    ctl('status', h('select', {}, ...STATUSES.map((s) => h('option', { value: s }, s || 'any')))),
    ctl('agent', h('input', { list: 'agent-names', placeholder: 'any', size: 16 })),
    // One tag, key:value (split at the first ':'), as GET /v1/runs?tag= takes it.
    ctl('tag', h('input', { placeholder: 'key:value', size: 16, pattern: '[^:]+:.*', title: 'key:value' })),
    ctl('since', h('input', { type: 'datetime-local' })),
    ctl('until', h('input', { type: 'datetime-local' })),
    ctl('limit', h('select', {}, ...['10', '25', '50', '100'].map((s) => h('option', { value: s }, s)))),
    h('button', { type: 'submit' }, 'Apply'), agents);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const k of Object.keys(f)) { const v = form.elements[k].value; if (v) q.set(k, v); }
    location.hash = `#/runs?${q}`;
  });
  const table = h('table', { id: 'runs' },
    h('thead', {}, h('tr', {}, h('th', {}, 'run'), h('th', {}, 'status'), h('th', {}, 'agent'),
      h('th', { class: 'hide-sm' }, 'version'), h('th', {}, 'created'), h('th', { class: 'hide-sm' }, 'duration'), h('th', { class: 'hide-sm' }, 'step'),
      h('th', { class: 'hide-sm' }, 'tags'))),
    tbody);
  main().replaceChildren(h('h1', {}, 'Runs'), form,
    h('div', { class: 'row' }, prev, nextb, info), table,
    h('p', { class: 'muted' }, 'Keys: j / k move, Enter opens, / filters. New runs appear by themselves on the first page.'));
  api('/v1/agents').then((b) => agents.replaceChildren(...b.agents.map((a) => h('option', { value: a })))).catch(() => {});

  const query = () => {
    const q = new URLSearchParams({ limit: f.limit });
    if (f.status) q.set('status', f.status);
    if (f.agent) q.set('agent', f.agent);
    if (f.tag) q.set('tag', f.tag);
    if (f.since) q.set('since', new Date(f.since).toISOString());
    if (f.until) q.set('until', new Date(f.until).toISOString());
    if (cursor) q.set('after', cursor);
    return `/v1/runs?${q}`;
  };
  const render = (fresh) => {
    tbody.replaceChildren(...rows.map((r, i) => {
      const end = r.finished_at ? Date.parse(r.finished_at) : (['queued', 'running', 'waiting'].includes(r.status) ? Date.now() : null);
      const tr = h('tr', { tabindex: i === sel ? 0 : -1, 'data-run': r.run_id, class: [fresh.has(r.run_id) ? 'fresh' : '', i === sel ? 'sel' : ''].join(' '),
        onclick: () => { location.hash = `#/runs/${r.run_id}`; } },
      h('td', { class: 'mono' }, h('a', { href: `#/runs/${r.run_id}` }, shortId(r.run_id))),
      h('td', {}, badge(r.status)), h('td', {}, r.agent),
      h('td', { class: 'mono hide-sm' }, (r.version || '').slice(0, 10)),
      h('td', {}, fmtTime(r.created_at)),
      h('td', { class: 'hide-sm' }, end ? fmtDur(end - Date.parse(r.created_at)) : ''),
      h('td', { class: 'hide-sm mono' }, r.current_step || ''),
      h('td', { class: 'hide-sm tags' }, ...Object.entries(r.tags || {}).map(([k, v]) => h('a', {
        class: 'tag', href: `#/runs?tag=${encodeURIComponent(`${k}:${v}`)}`, onclick: (e) => e.stopPropagation(),
      }, `${k}:${v}`))));
      return tr;
    }));
    info.textContent = rows.length ? `${rows.length} run${rows.length > 1 ? 's' : ''}${cursor ? ' (older page)' : ''}` : 'No runs match.';
    prev.disabled = !cursor;
    nextb.disabled = !next;
    if (!window.__rsListPaint) {
      window.__rsListPaint = performance.now();
      document.dispatchEvent(new Event('rs-list-painted'));
    }
  };
  async function load(poll = false) {
    try {
      const b = await api(query());
      const fresh = new Set();
      if (poll) for (const r of b.runs) if (!known.has(r.run_id)) fresh.add(r.run_id);
      for (const r of b.runs) known.set(r.run_id, r.status);
      // Redraw only what changed: rows replaced under a pointer lose clicks.
      const sig = JSON.stringify([b.runs.map((r) => [r.run_id, r.status, r.current_step, r.finished_at]), b.next_after]);
      if (poll && sig === shownSig) return;
      shownSig = sig;
      rows = b.runs;
      next = b.next_after;
      if (sel >= rows.length) sel = Math.max(0, rows.length - 1);
      render(fresh);
    } catch (e) {
      info.textContent = `Cannot load runs: ${e.message}`;
    }
  }
  load();
  // Live: the first page is read again every 2 s (the API has no tenant-wide
  // stream); new runs are highlighted.
  clearInterval(listTimer);
  listTimer = setInterval(() => { if (!cursor && document.visibilityState === 'visible') load(true); }, 2000);
  const onKey = (e) => {
    if (!document.body.contains(table)) { document.removeEventListener('keydown', onKey); return; }
    if (e.target.closest('input, select, textarea, dialog')) return;
    if (e.key === 'j' || e.key === 'k') {
      sel = Math.min(rows.length - 1, Math.max(0, sel + (e.key === 'j' ? 1 : -1)));
      render(new Set());
      tbody.children[sel]?.focus();
    } else if (e.key === 'Enter' && rows[sel] && !e.target.closest('a, button')) {
      e.preventDefault();
      location.hash = `#/runs/${rows[sel].run_id}`;
    } else if (e.key === '/') {
      e.preventDefault();
      form.elements.status.focus();
    }
  };
  document.addEventListener('keydown', onKey);
}

// ---- agents ----

// Line diff (LCS) of two texts: [{op: ' '|'+'|'-', line}].
export function diffLines(a, b) {
  const x = a.split('\n'); const y = b.split('\n');
  const n = x.length; const m = y.length;
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = []; let i = 0; let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push({ op: ' ', line: x[i] }); i++; j++; } else if (L[i + 1][j] >= L[i][j + 1]) out.push({ op: '-', line: x[i++] }); else out.push({ op: '+', line: y[j++] });
  }
  while (i < n) out.push({ op: '-', line: x[i++] });
  while (j < m) out.push({ op: '+', line: y[j++] });
  return out;
}

async function agentsPage(name) {
  const list = h('ul', { id: 'agents' });
  const detail = h('div', { id: 'agent' });
  main().replaceChildren(h('h1', {}, 'Agents'), h('div', { class: 'grid2' }, h('div', { class: 'card' }, list), detail));
  try {
    const b = await api('/v1/agents');
    list.replaceChildren(...(b.agents.length ? b.agents.map((a) => h('li', {}, h('a', { href: `#/agents/${encodeURIComponent(a)}` }, a))) : [h('li', { class: 'muted' }, 'No agents yet.')]));
  } catch (e) { list.replaceChildren(h('li', { class: 'err' }, e.message)); }
  if (!name) return;
  try {
    const a = await api(`/v1/agents/${encodeURIComponent(name)}`);
    const defs = new Map([[a.latest, a.definition]]);
    const get = async (v) => {
      if (!defs.has(v)) defs.set(v, (await api(`/v1/agents/${encodeURIComponent(name)}/versions/${encodeURIComponent(v)}`)).definition);
      return defs.get(v);
    };
    const pre = h('pre', { id: 'agent-def' }, json(a.definition));
    const opts = () => a.versions.map((v) => h('option', { value: v }, v === a.latest ? `${v} (latest)` : v));
    const selA = h('select', { 'aria-label': 'from version' }, ...opts());
    const selB = h('select', { 'aria-label': 'to version' }, ...opts());
    selB.value = a.latest;
    if (a.versions.length > 1) selA.value = a.versions.find((v) => v !== a.latest);
    const diffOut = h('div', { class: 'diff', id: 'agent-diff' });
    const doDiff = async () => {
      const [da, db] = await Promise.all([get(selA.value), get(selB.value)]);
      const d = diffLines(json(da), json(db));
      diffOut.replaceChildren(...d.map((l) => h('div', { class: l.op === '+' ? 'add' : l.op === '-' ? 'del' : '' }, `${l.op} ${l.line}`)));
    };
    const vlist = h('ul', {}, ...a.versions.map((v) => h('li', {}, h('button', { type: 'button', class: 'linkish', onclick: async () => { pre.textContent = json(await get(v)); } }, v), v === a.latest ? ' (latest)' : '')));
    detail.replaceChildren(h('div', { class: 'card' }, h('h2', {}, a.name), h('p', { class: 'muted' }, `${a.versions.length} version(s); showing the definition of the one clicked (latest first).`), vlist, pre),
      h('div', { class: 'card' }, h('h2', {}, 'Diff two versions'), h('div', { class: 'row' }, selA, '→', selB, h('button', { type: 'button', id: 'diff-btn', onclick: doDiff }, 'Diff')), diffOut));
  } catch (e) { detail.replaceChildren(h('p', { class: 'err' }, e.message)); }
}

// ---- devices ----

async function devicesPage(params) {
  const all = params.get('all') === '1';
  const tbody = h('tbody');
  main().replaceChildren(h('h1', {}, 'Devices'),
    h('p', {}, h('a', { href: all ? '#/devices' : '#/devices?all=1' }, all ? 'Show online devices only' : 'Include offline devices')),
    h('table', { id: 'devices' }, h('thead', {}, h('tr', {}, h('th', {}, 'device'), h('th', {}, 'online'), h('th', {}, 'tools'), h('th', { class: 'hide-sm' }, 'router'), h('th', { class: 'hide-sm' }, 'last seen'))), tbody));
  try {
    const b = await api(`/v1/devices${all ? '?include_offline=true' : ''}`);
    tbody.replaceChildren(...(b.devices.length ? b.devices.map((d) => h('tr', { 'data-device': d.device_id },
      h('td', { class: 'mono' }, d.device_id), h('td', {}, d.online ? 'yes' : 'no'),
      h('td', {}, (d.tools || []).map((t) => (typeof t === 'string' ? t : t.name || JSON.stringify(t))).join(', ')),
      h('td', { class: 'hide-sm mono' }, d.router || ''), h('td', { class: 'hide-sm' }, fmtTime(d.last_seen))))
      : [h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No devices online.'))]));
  } catch (e) { tbody.replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'err' }, e.message))); }
}

// ---- routing ----

let leave = null;
export function route() {
  const hash = location.hash || '#/runs';
  const [path, qs] = hash.slice(1).split('?');
  const params = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (leave) { leave(); leave = null; }
  clearInterval(listTimer);
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('on', a.dataset.nav === parts[0]);
  document.getElementById('signout').hidden = !auth.key;
  if (!auth.key) { signin(hash); return; }
  if (parts[0] === 'runs' && parts[1]) leave = runPage(parts[1]);
  else if (parts[0] === 'agents') agentsPage(parts[1]);
  else if (parts[0] === 'devices') devicesPage(params);
  else if (parts[0] === 'signin') signin('#/runs');
  else runsPage(params);
}

setUnauthorizedHandler(() => { auth.clear(); signin(location.hash); });
document.getElementById('signout').addEventListener('click', () => { auth.clear(); location.hash = '#/runs'; route(); });
window.addEventListener('hashchange', route);
route();
