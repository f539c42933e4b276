// run.js - the run page (docs/viewer.md): header, timeline of steps,
// attempts and waits on a time axis, tool calls with their device, llm
// text as it streams, every event (a virtualised list: only the rows in
// view exist, so 10,000 events stay quick) with its CloudEvent one click
// away, the time-travel slider and the re-check, and the actions (cancel,
// signal, fork, retry).
//
// The page folds nothing itself for time travel: the slider asks
// GET /v1/runs/{id}/state?at=N, the state machine's own fold (what
// `runctl replay --at N` prints). The timeline and header are drawn from
// the events as they arrive.
import { api, followRun, TERMINAL } from './api.js';
import { h, main, badge, fmtDur, fmtTime, json, modal, shortId } from './app.js';

const ROW = 26;
const short = (t) => t.replace(/^runstream\./, '');
const tms = (ev) => Date.parse(ev.time);

function summary(ty, d) {
  switch (ty) {
    case 'run.created': return `${d.agent}@${(d.version || '').slice(0, 10)} input ${JSON.stringify(d.input)}`;
    case 'step.started': return `${d.step_id} #${d.attempt} (${d.kind})`;
    case 'step.completed': return `${d.step_id} #${d.attempt} in ${fmtDur(d.duration_ms)}${d.next_step ? ` → ${d.next_step}` : ''}`;
    case 'step.failed': return `${d.step_id} #${d.attempt}${d.final ? ' final' : ''}: ${d.error && (d.error.message || d.error.code)}`;
    case 'step.retry_scheduled': return `${d.step_id} → #${d.attempt} after ${fmtDur(d.backoff_ms)}`;
    case 'tool.requested': return `${d.tool} for ${d.step_id} #${d.attempt}`;
    case 'tool.dispatched': return `→ device ${d.device_id}`;
    case 'tool.completed': case 'tool.failed': return `${d.step_id} #${d.attempt}${d.device_id ? ` on ${d.device_id}` : ''}`;
    case 'timer.scheduled': case 'timer.fired': return `${d.purpose}${d.step_id ? ` (${d.step_id})` : ''} due ${d.due_at}`;
    case 'signal.received': return `${d.name} ${JSON.stringify(d.payload)}`;
    case 'llm.delta': return JSON.stringify(d.text);
    case 'run.completed': return `output ${JSON.stringify(d.output)}`;
    case 'run.failed': return d.error && (d.error.message || d.error.code);
    default: return JSON.stringify(d || {}).slice(0, 160);
  }
}

// Everything the page knows, folded from the events as they come.
function newModel() {
  return { events: [], steps: new Map(), order: [], tools: new Map(), timers: new Map(), retries: [], llm: new Map(), signals: new Map(),
    status: 'queued', t0: null, tEnd: null, input: null, output: undefined, error: undefined, agent: '', version: '', waiting: '' };
}

function apply(M, ev) {
  const ty = short(ev.type); const d = ev.data || {}; const t = tms(ev);
  M.events.push(ev);
  if (M.t0 === null) M.t0 = t;
  const sk = `${d.step_id}#${d.attempt}`;
  const step = () => {
    let s = M.steps.get(sk);
    if (!s) { s = { key: sk, step_id: d.step_id, attempt: d.attempt, kind: '', start: t, end: null, status: 'running', seqs: [] }; M.steps.set(sk, s); M.order.push(s); }
    return s;
  };
  switch (ty) {
    case 'run.created': M.agent = d.agent; M.version = d.version; M.input = d.input; M.forkedFrom = d.forked_from; M.fromSeq = d.from_seq; break;
    case 'run.started': M.status = 'running'; break;
    case 'step.started': { const s = step(); s.kind = d.kind; s.input = d.input; s.seqs.push(ev.runseq); M.waiting = d.kind === 'signal' ? 'signal' : d.kind === 'sleep' ? 'timer' : ''; break; }
    case 'step.completed': { const s = step(); s.end = t; s.status = 'done'; s.output = d.output; s.seqs.push(ev.runseq); M.waiting = ''; break; }
    case 'step.failed': { const s = step(); s.end = t; s.status = 'failed'; s.error = d.error; s.seqs.push(ev.runseq); break; }
    case 'step.retry_scheduled': M.retries.push({ step_id: d.step_id, attempt: d.attempt, start: t, end: Date.parse(d.due_at) }); break;
    case 'tool.requested': {
      const c = { call_id: d.call_id, tool: d.tool, step_id: d.step_id, attempt: d.attempt, args: d.args, start: t, end: null, status: 'requested', device: null };
      M.tools.set(d.call_id, c);
      const s = step(); (s.calls || (s.calls = [])).push(c); s.seqs.push(ev.runseq);
      M.waiting = 'tool'; break;
    }
    case 'tool.dispatched': { const c = M.tools.get(d.call_id); if (c) { c.device = d.device_id; c.status = 'dispatched'; } break; }
    case 'tool.completed': case 'tool.failed': case 'tool.timed_out': {
      const c = M.tools.get(d.call_id);
      if (c) { c.end = t; c.status = ty.split('.')[1]; c.output = d.output; c.error = d.error; if (d.device_id) c.device = d.device_id; }
      step().seqs.push(ev.runseq); M.waiting = ''; break;
    }
    case 'timer.scheduled': M.timers.set(d.timer_id, { purpose: d.purpose, step_id: d.step_id, attempt: d.attempt, start: t, end: null, due: Date.parse(d.due_at) }); break;
    case 'timer.fired': { const x = M.timers.get(d.timer_id); if (x) x.end = t; break; }
    case 'signal.received': M.waiting = ''; if (d.step_id) M.signals.set(d.step_id, t); break;
    case 'llm.delta': { const l = M.llm.get(d.effect_id) || { step_id: d.step_id, text: '' }; l.text += d.text; M.llm.set(d.effect_id, l); break; }
    case 'llm.message': { const l = M.llm.get(d.effect_id) || { step_id: d.step_id, text: '' }; l.done = true; if (!l.text && d.message) l.text = d.message.content || ''; M.llm.set(d.effect_id, l); break; }
    case 'run.cancel_requested': break;
    case 'run.completed': M.status = 'completed'; M.output = d.output; M.tEnd = t; break;
    case 'run.failed': M.status = 'failed'; M.error = d.error; M.tEnd = t; break;
    case 'run.cancelled': M.status = 'cancelled'; M.error = d.reason ? { reason: d.reason } : undefined; M.tEnd = t; break;
    case 'run.timed_out': M.status = 'timed_out'; M.tEnd = t; break;
    default: break;
  }
  if (!TERMINAL.has(ty) && M.status !== 'queued') M.status = M.waiting === 'signal' || M.waiting === 'timer' ? 'waiting' : 'running';
}

function showEvent(ev) {
  return modal(`${short(ev.type)} · event ${ev.runseq}`, [h('p', { class: 'muted' }, 'The CloudEvent as stored on the log:'), h('pre', { id: 'cloudevent' }, json(ev))]);
}

export function runPage(runId) {
  const M = newModel();
  let sel = -1; let at = 0; let follow = true; let diverged = 0; let dirty = false; let stateTimer = null;
  const conn = h('span', { class: 'conn', id: 'conn', role: 'status' }, 'connecting');
  const headInfo = h('div');
  const actions = h('div', { class: 'row' });
  const head = h('div', { class: 'card', id: 'run-head' }, headInfo, actions);
  const banner = h('div', { id: 'banner', role: 'status' });
  const tl = h('div', { class: 'tl', id: 'timeline' });
  const slider = h('input', { type: 'range', class: 'slider', id: 'slider', min: 1, max: 1, value: 1, 'aria-label': 'time travel: state after event' });
  const atLabel = h('span', { id: 'at-label' });
  const statePre = h('pre', { id: 'state' }, 'Move the slider to see the run as it was after any event.');
  const llm = h('div', { class: 'llm', id: 'llm' });
  const list = h('div', { class: 'ev-list', id: 'events', tabindex: 0, role: 'listbox', 'aria-label': 'events' });
  const spacer = h('div');
  const rowsBox = h('div');
  list.append(spacer, rowsBox);
  const btn = (label, fn, cls, id) => h('button', { type: 'button', class: cls, id, onclick: fn }, label);
  const cancelB = btn('Cancel…', async () => {
    const reason = h('input', { id: 'cancel-reason', value: 'cancelled from the viewer', size: 40 });
    if (!await modal(`Cancel run ${shortId(runId)}?`, [h('p', {}, 'The run stops at its next decision; a tool call in flight is cancelled.'), h('label', { for: 'cancel-reason' }, 'Reason'), reason], { ok: 'Cancel run', danger: true })) return;
    try { await api(`/v1/runs/${runId}/cancel`, { method: 'POST', body: { reason: reason.value } }); say('info', 'Cancel requested.'); } catch (e) { say('bad', `Cancel failed: ${e.message}`); }
  }, 'danger', 'cancel-btn');
  const signalB = btn('Signal…', async () => {
    const name = h('input', { id: 'signal-name', placeholder: 'approve', pattern: '[a-z0-9_-]{1,64}' });
    const payload = h('textarea', { id: 'signal-payload' }, '{}');
    if (!await modal(`Send a signal to ${shortId(runId)}?`, [h('label', { for: 'signal-name' }, 'Name'), name, h('label', { for: 'signal-payload' }, 'Payload (JSON)'), payload], { ok: 'Send signal' })) return;
    let body;
    try { body = JSON.parse(payload.value || 'null'); } catch (e) { say('bad', `The payload is not JSON: ${e.message}`); return; }
    try { await api(`/v1/runs/${runId}/signals/${encodeURIComponent(name.value)}`, { method: 'POST', body }); say('info', `Signal ${name.value} sent.`); } catch (e) { say('bad', `Signal failed: ${e.message}`); }
  }, '', 'signal-btn');
  const checkB = btn('Re-check against today\'s code', async () => {
    checkB.disabled = true;
    try {
      const r = await api(`/v1/runs/${runId}/check`);
      diverged = r.ok ? 0 : r.seq;
      if (r.ok) say('ok', `Check ok: ${r.events} events in ${r.groups} decisions are what this build decides (${r.agent}@${r.version.slice(0, 10)}, ${r.status}).`);
      else {
        say('bad', `Divergence at event ${r.seq}: ${r.reason} (the ${r.command} command rebuilt from event ${r.group_seq}, ${r.group_type}).`,
          h('div', { class: 'grid2' }, h('div', {}, h('h2', {}, 'Recorded'), h('pre', {}, json(r.recorded))), h('div', {}, h('h2', {}, 'Today\'s decide'), h('pre', {}, json(r.decided)))));
        const i = M.events.findIndex((e) => e.runseq === r.seq);
        if (i >= 0) { sel = i; list.scrollTop = Math.max(0, i * ROW - list.clientHeight / 2); }
      }
      dirty = true; schedule();
    } catch (e) { say('bad', `Check failed: ${e.message}`); } finally { checkB.disabled = false; }
  }, '', 'recheck-btn');
  // Fork and retry (docs/api.md "Fork and retry"): confirm, POST, then open
  // the new run. A fork starts from the event the slider shows (the newest
  // one while it follows the end): the source's effect steps completed by
  // then are reused, everything after runs again under the chosen version.
  const startFrom = async (what, path, body) => {
    try {
      const r = await api(`/v1/runs/${runId}/${path}`, { method: 'POST', body });
      location.hash = `#/runs/${r.run_id}`;
    } catch (e) { say('bad', `${what} failed: ${e.message}`); }
  };
  const versionField = () => h('input', { id: 'fork-version', placeholder: 'latest', size: 20, pattern: '[0-9a-f]{16}', title: 'a version id; empty: the agent\'s latest' });
  const inputField = () => h('textarea', { id: 'fork-input', placeholder: 'empty: the source run\'s input' });
  // {version?, input?} of the dialog's fields, or null after saying why not.
  const forkBody = (version, input) => {
    const body = {};
    if (version.value.trim()) body.version = version.value.trim();
    if (input.value.trim()) {
      try { body.input = JSON.parse(input.value); } catch (e) { say('bad', `The input is not JSON: ${e.message}`); return null; }
    }
    return body;
  };
  const forkB = btn('Fork…', async () => {
    const last = M.events.length ? M.events[M.events.length - 1].runseq : 1;
    const from = h('input', { id: 'fork-from', type: 'number', min: 1, max: last, value: at || last, required: true });
    const version = versionField(); const input = inputField();
    if (!await modal(`Fork run ${shortId(runId)}?`, [
      h('p', {}, 'A new run of the same agent. The tool calls, sleeps, signals, requests and model turns this run completed within its first N events are reused, not done again; the rest runs anew.'),
      h('label', { for: 'fork-from' }, `From event (1–${last})`), from,
      h('label', { for: 'fork-version' }, 'Version'), version,
      h('label', { for: 'fork-input' }, 'Input (JSON)'), input], { ok: 'Fork' })) return;
    const body = forkBody(version, input);
    if (body) await startFrom('Fork', 'fork', { from_seq: Number(from.value), ...body });
  }, '', 'fork-btn');
  const retryB = btn('Retry…', async () => {
    const version = versionField(); const input = inputField();
    if (!await modal(`Retry run ${shortId(runId)}?`, [
      h('p', {}, 'A new run forked from just before the step that failed: what went right before it is reused.'),
      h('label', { for: 'fork-version' }, 'Version (e.g. the fixed one)'), version,
      h('label', { for: 'fork-input' }, 'Input (JSON)'), input], { ok: 'Retry' })) return;
    const body = forkBody(version, input);
    if (body) await startFrom('Retry', 'retry', body);
  }, '', 'retry-btn');
  actions.append(cancelB, signalB, checkB, forkB, retryB);
  const say = (kind, text, extra) => banner.replaceChildren(h('div', { class: `banner ${kind}` }, text, extra || ''));

  main().replaceChildren(
    h('p', {}, h('a', { href: '#/runs' }, '← Runs')),
    head, banner,
    h('div', { class: 'card' }, h('div', { class: 'row' }, h('h2', {}, 'Timeline'), conn), tl),
    h('div', { class: 'card' }, h('h2', {}, 'Time travel'), slider, atLabel, statePre),
    h('div', { class: 'card', id: 'llm-card', hidden: true }, h('h2', {}, 'Model output'), llm),
    h('div', { class: 'card' }, h('h2', {}, 'Events'), h('p', { class: 'muted' }, 'j / k or arrows move, Enter shows the CloudEvent. Click a timeline bar for a step\'s details.'), list));

  function renderHead() {
    const end = M.tEnd ?? (TERMINAL.has(M.status) ? null : Date.now());
    const acts = !TERMINAL.has(M.status);
    cancelB.disabled = !acts; signalB.disabled = !acts;
    forkB.disabled = !M.events.length;
    retryB.disabled = M.status !== 'failed' && M.status !== 'timed_out';
    headInfo.replaceChildren(
      h('div', { class: 'row' }, h('h1', { class: 'mono' }, `Run ${runId}`), badge(M.status), M.waiting ? h('span', { class: 'muted' }, `waiting for a ${M.waiting}`) : ''),
      h('dl', { class: 'kv' },
        h('dt', {}, 'agent'), h('dd', {}, h('a', { href: `#/agents/${encodeURIComponent(M.agent)}` }, M.agent), ' ', h('span', { class: 'mono muted' }, M.version)),
        h('dt', {}, 'created'), h('dd', {}, M.t0 ? fmtTime(M.t0) : ''),
        M.forkedFrom ? [h('dt', {}, 'forked from'), h('dd', { id: 'forked-from' }, h('a', { class: 'mono', href: `#/runs/${M.forkedFrom}` }, shortId(M.forkedFrom)), ` after event ${M.fromSeq}`)] : '',
        h('dt', {}, 'duration'), h('dd', {}, M.t0 && end ? fmtDur(end - M.t0) : ''),
        h('dt', {}, 'events'), h('dd', { id: 'nevents' }, String(M.events.length))),
      h('div', { class: 'grid2' },
        h('div', {}, h('h2', {}, 'Input'), h('pre', { id: 'run-input' }, json(M.input))),
        h('div', {}, h('h2', {}, M.error !== undefined ? 'Error' : 'Output'), h('pre', { id: 'run-output', class: M.error !== undefined ? 'err' : '' },
          M.error !== undefined ? json(M.error) : M.output !== undefined ? json(M.output) : '(not yet)'))));
  }

  function stepDetails(s) {
    const calls = [...M.tools.values()].filter((c) => c.step_id === s.step_id && c.attempt === s.attempt);
    const evs = M.events.filter((e) => e.data && e.data.step_id === s.step_id && e.data.attempt === s.attempt);
    modal(`Step ${s.step_id} · attempt ${s.attempt}`, [
      h('dl', { class: 'kv' }, h('dt', {}, 'kind'), h('dd', {}, s.kind), h('dt', {}, 'status'), h('dd', {}, s.status),
        h('dt', {}, 'duration'), h('dd', {}, s.end ? fmtDur(s.end - s.start) : 'open')),
      s.input !== undefined ? [h('h2', {}, 'Input'), h('pre', {}, json(s.input))] : '',
      s.output !== undefined ? [h('h2', {}, 'Output'), h('pre', { id: 'step-output' }, json(s.output))] : '',
      s.error !== undefined ? [h('h2', {}, 'Error'), h('pre', { class: 'err' }, json(s.error))] : '',
      calls.length ? [h('h2', {}, 'Tool calls'), h('table', { id: 'step-calls' }, h('tbody', {}, ...calls.map((c) => h('tr', {}, h('td', {}, c.tool), h('td', {}, `device ${c.device || '—'}`), h('td', {}, c.status), h('td', {}, c.end ? fmtDur(c.end - c.start) : '')))))] : '',
      h('h2', {}, 'Events'), h('ul', {}, ...evs.map((e) => h('li', {}, h('button', { type: 'button', onclick: () => showEvent(e) }, `${e.runseq} ${short(e.type)}`)))),
    ]);
  }

  function renderTimeline() {
    const t0 = M.t0; if (t0 === null) { tl.replaceChildren(h('p', { class: 'muted' }, 'No events yet.')); return; }
    const t1 = Math.max(M.tEnd ?? Date.now(), t0 + 1);
    const span = t1 - t0;
    const pct = (t) => `${Math.min(100, Math.max(0, ((t - t0) / span) * 100))}%`;
    const wid = (a, b) => `${Math.max(0.4, ((Math.min(b, t1) - a) / span) * 100)}%`;
    const axis = h('div', { class: 'tl-axis' });
    for (let i = 0; i <= 4; i++) { const s = h('span', {}, fmtDur((span * i) / 4)); s.style.left = `${i * 25}%`; axis.append(s); }
    const rows = [axis];
    const shown = M.order.slice(0, 300);
    for (const s of shown) {
      const lane = h('div', { class: 'tl-lane' });
      const bar = h('button', { type: 'button', class: `bar step ${s.status}${s.end ? '' : ' open'}`, title: `${s.step_id} #${s.attempt} (${s.kind}) ${s.end ? fmtDur(s.end - s.start) : 'open'}`, 'data-step': s.key, onclick: () => stepDetails(s) }, s.kind);
      bar.style.left = pct(s.start); bar.style.width = wid(s.start, s.end ?? t1);
      lane.append(bar);
      for (const c of s.calls || []) {
        const w = h('span', { class: 'bar wait', title: `tool ${c.tool} on ${c.device || '(not yet dispatched)'}: ${c.status}` });
        w.style.left = pct(c.start); w.style.width = wid(c.start, c.end ?? s.end ?? t1); lane.append(w);
      }
      if (s.kind === 'signal') {
        const got = M.signals.get(s.step_id);
        const w = h('span', { class: 'bar wait', title: got ? 'waited for its signal' : 'waiting for a signal' });
        w.style.left = pct(s.start); w.style.width = wid(s.start, got ?? s.end ?? t1); lane.append(w);
      }
      for (const x of M.timers.values()) {
        // Deadlines (tool_timeout, signal_timeout, ...) are not waits.
        if (x.step_id !== s.step_id || (x.attempt !== undefined && x.attempt !== s.attempt) || /timeout$/.test(x.purpose)) continue;
        const w = h('span', { class: 'bar wait', title: `timer ${x.purpose}${x.end ? ' fired' : ''}` });
        w.style.left = pct(x.start); w.style.width = wid(x.start, x.end ?? s.end ?? t1); lane.append(w);
      }
      for (const r of M.retries) {
        if (r.step_id !== s.step_id || r.attempt !== s.attempt + 1) continue;
        const w = h('span', { class: 'bar retry', title: `retry backoff ${fmtDur(r.end - r.start)}` });
        w.style.left = pct(r.start); w.style.width = wid(r.start, r.end); lane.append(w);
      }
      const dev = (s.calls || []).find((c) => c.device);
      rows.push(h('div', { class: 'tl-row' }, h('div', { class: 'tl-label', title: s.key }, `${s.step_id}`, s.attempt > 1 ? ` #${s.attempt}` : '', dev ? h('span', { class: 'muted' }, ` @${dev.device}`) : ''), lane));
    }
    if (M.order.length > shown.length) rows.push(h('p', { class: 'muted' }, `… and ${M.order.length - shown.length} more step attempts (all are in the events below).`));
    tl.replaceChildren(...rows);
  }

  function renderList() {
    const n = M.events.length;
    spacer.style.height = `${n * ROW}px`;
    const top = list.scrollTop; const hgt = list.clientHeight || 420;
    const first = Math.max(0, Math.floor(top / ROW) - 8); const last = Math.min(n, Math.ceil((top + hgt) / ROW) + 8);
    const out = [];
    for (let i = first; i < last; i++) {
      const ev = M.events[i];
      const cls = ['ev-row', i === sel ? 'sel' : '', ev.runseq === at ? 'at' : '', at && ev.runseq > at ? 'future' : '', ev.runseq === diverged ? 'diverged' : ''].join(' ');
      const row = h('div', { class: cls, role: 'option', 'aria-selected': i === sel ? 'true' : 'false', 'data-seq': ev.runseq, onclick: () => { sel = i; renderList(); showEvent(ev); } },
        h('span', { class: 'seq' }, ev.runseq), h('span', { class: 't' }, `+${fmtDur(tms(ev) - M.t0)}`), h('span', { class: 'ty' }, short(ev.type)), h('span', { class: 'sum' }, summary(short(ev.type), ev.data || {})));
      row.style.top = `${i * ROW}px`;
      out.push(row);
    }
    rowsBox.replaceChildren(...out);
  }

  function renderLlm() {
    if (!M.llm.size) return;
    document.getElementById('llm-card').hidden = false;
    llm.replaceChildren(...[...M.llm.entries()].map(([id, l]) => h('div', {}, h('p', { class: 'muted' }, `${l.step_id} · ${id}${l.done ? '' : ' · streaming…'}`), h('pre', { 'data-effect': id }, l.text))));
  }

  // The list, slider and counters follow every frame; header, timeline and
  // model text (whole redraws) at most every 250 ms, so a fast stream of
  // events costs a few redraws a second, not one per event.
  let heavyTimer = null; let lastHeavy = 0;
  function renderHeavy() { heavyTimer = null; lastHeavy = performance.now(); renderHead(); renderTimeline(); renderLlm(); }
  function render() {
    dirty = false;
    const n = M.events.length;
    const max = n ? M.events[n - 1].runseq : 1;
    slider.max = String(max);
    if (follow) { at = max; slider.value = String(max); }
    atLabel.textContent = n ? ` state after event ${at} of ${max}${follow ? ' (following the end)' : ''}` : '';
    renderList();
    const wait = 250 - (performance.now() - lastHeavy);
    if (wait <= 0) renderHeavy(); else if (!heavyTimer) heavyTimer = setTimeout(renderHeavy, wait);
  }
  function schedule() { if (!dirty) { dirty = true; } requestAnimationFrame(() => { if (dirty) render(); }); }

  async function loadState() {
    try {
      const s = await api(`/v1/runs/${runId}/state?at=${at}`);
      if (s.at !== at) return;
      statePre.textContent = json(s.state);
      statePre.dataset.at = String(s.at);
      statePre.dataset.status = s.status;
    } catch (e) { statePre.textContent = `Cannot fold: ${e.message}`; }
  }
  slider.addEventListener('input', () => {
    at = Number(slider.value);
    follow = at === Number(slider.max);
    const i = M.events.findIndex((e) => e.runseq === at);
    if (i >= 0) { sel = i; if (i * ROW < list.scrollTop || i * ROW > list.scrollTop + list.clientHeight - ROW) list.scrollTop = Math.max(0, i * ROW - list.clientHeight / 2); }
    schedule();
    clearTimeout(stateTimer);
    stateTimer = setTimeout(loadState, 120);
  });
  list.addEventListener('scroll', () => renderList(), { passive: true });
  list.addEventListener('keydown', (e) => {
    const n = M.events.length; if (!n) return;
    if (['j', 'k', 'ArrowDown', 'ArrowUp'].includes(e.key)) {
      e.preventDefault();
      sel = Math.min(n - 1, Math.max(0, sel + (e.key === 'j' || e.key === 'ArrowDown' ? 1 : -1)));
      if (sel * ROW < list.scrollTop) list.scrollTop = sel * ROW;
      else if ((sel + 1) * ROW > list.scrollTop + list.clientHeight) list.scrollTop = (sel + 1) * ROW - list.clientHeight;
      renderList();
    } else if (e.key === 'Enter' && sel >= 0) {
      // Else the same key press goes on to the dialog's first button and closes it.
      e.preventDefault();
      showEvent(M.events[sel]);
    }
  });

  const follower = followRun(runId, {
    onEvent: (ev) => {
      const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - ROW * 2;
      apply(M, ev);
      if (atBottom && follow) requestAnimationFrame(() => { list.scrollTop = list.scrollHeight; });
      schedule();
    },
    onState: (s) => { conn.textContent = s === 'live' ? '● live' : s === 'ended' ? 'finished' : s; conn.className = `conn ${s}`; if (s === 'ended' && follow) { clearTimeout(stateTimer); stateTimer = setTimeout(loadState, 50); } },
  });
  const tick = setInterval(() => { if (!TERMINAL.has(M.status) && M.t0 !== null) schedule(); }, 1000);

  // For the browser test (tests/integration/viewer.test.mjs) and for
  // measuring: the page's model and its stream's counters, and a synthetic
  // long run drawn through the same code.
  window.__rsRun = {
    runId, model: M, stats: follower.stats, get last() { return follower.last; },
    synthetic(n) {
      const t = Date.now(); const t0 = performance.now();
      follower.stop();
      Object.assign(M, newModel());
      for (let i = 1; i <= n; i++) {
        const k = Math.floor((i - 1) / 2);
        apply(M, { type: i % 2 ? 'runstream.step.started' : 'runstream.step.completed', runseq: i, time: new Date(t + i).toISOString(),
          data: i % 2 ? { step_id: `s${k}`, attempt: 1, kind: 'transform' } : { step_id: `s${k}`, attempt: 1, output: { i }, duration_ms: 1 } });
      }
      follow = true; render(); renderHeavy();
      return performance.now() - t0;
    },
  };
  render();
  return () => { follower.stop(); clearInterval(tick); clearTimeout(stateTimer); clearTimeout(heavyTimer); };
}
