// orchworld.mjs - a small world for orchestrator tests: a nats-server,
// agents written straight into KV `agents`, commands straight into CMDS,
// every event followed live (an ordered consumer on RUNS) and histories
// read back from RUNS. Used by orchestrator.test.mjs and crash.test.mjs.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { connect, headers, StringCodec } from 'nats';
import { startStack, startService, freePort, logTail } from './stack.mjs';
import { followRuns } from './clients.mjs';

export const sc = StringCodec();
export const TERMINAL = new Set(['run.completed', 'run.failed', 'run.cancelled', 'run.timed_out']);

// Canonical JSON (sorted keys, compact): what the version hash is over.
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export class World {
  async init() {
    const { nats, env } = await startStack({ pg: false });
    this.natsSrv = nats;
    this.env = env;
    this.nc = await connect({ servers: nats.url, ...nats.creds });
    this.js = this.nc.jetstream();
    this.jsm = await this.nc.jetstreamManager();
    this.kv = await this.js.views.kv('agents');
    this.runs = new Map();     // run_id -> [event]
    this.waiters = [];         // { run, pred, resolve }
    this.live = await followRuns(this.js, 'runs.>', (m) => this.onEvent(JSON.parse(sc.decode(m.data))));
    // Dead letters are JetStream publishes, so a core subscription sees them.
    this.dead = [];
    this.deadWaiters = [];
    const dsub = this.nc.subscribe('dlq.orchestrator');
    (async () => {
      for await (const m of dsub) {
        this.dead.push({ subject: m.headers?.get('Runstream-Dlq-Subject'), reason: m.headers?.get('Runstream-Dlq-Reason') });
        this.deadWaiters = this.deadWaiters.filter((w) => !w());
      }
    })();
    this.procs = [];
  }

  // Resolve once n dead letters match filter.
  waitDead(filter, n, timeoutMs = 20000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const got = this.dead.filter(filter);
        if (got.length < n) return false;
        clearTimeout(t);
        resolve(got);
        return true;
      };
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${n} dead letters: ` +
        `${JSON.stringify(this.dead)}\n${this.logs()}`)), timeoutMs);
      if (!check()) this.deadWaiters.push(check);
    });
  }

  onEvent(ev) {
    ev.observed = Date.now();
    const list = this.runs.get(ev.subject) || [];
    list.push(ev);
    this.runs.set(ev.subject, list);
    this.waiters = this.waiters.filter((w) => {
      if (w.run !== ev.subject || !w.pred(ev)) return true;
      w.resolve(ev);
      return false;
    });
    this.countWaiters = (this.countWaiters || []).filter((w) => !w());
  }

  // Resolve once pred() holds, checked after every event.
  waitCount(pred, what, timeoutMs = 30000) {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}\n` +
        `dead letters: ${JSON.stringify(this.dead)}\n${this.logs()}`)), timeoutMs);
      this.countWaiters = this.countWaiters || [];
      this.countWaiters.push(() => { if (!pred()) return false; clearTimeout(t); resolve(); return true; });
    });
  }

  // Resolve with the first event of run matching pred (seen or future).
  waitEvent(run, pred, what, timeoutMs = 30000) {
    const seen = (this.runs.get(run) || []).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what} of run ${run}: ` +
        `saw ${(this.runs.get(run) || []).map((e) => e.type).join(', ')}\n` +
        `dead letters: ${JSON.stringify(this.dead)}\n${this.logs()}`)), timeoutMs);
      this.waiters.push({ run, pred, resolve: (ev) => { clearTimeout(t); resolve(ev); } });
    });
  }

  waitType(run, type, timeoutMs) {
    return this.waitEvent(run, (e) => e.type === `runstream.${type}`, type, timeoutMs);
  }

  waitTerminal(run, timeoutMs) {
    return this.waitEvent(run, (e) => TERMINAL.has(e.type.replace(/^runstream\./, '')), 'a terminal event', timeoutMs);
  }

  logs() {
    return this.procs.map((p) => `--- ${p.name} ---\n${logTail(p, 15)}`).join('\n');
  }

  async push(tenant, def) {
    const text = canonical(def);
    const version = crypto.createHash('sha256').update(text).digest('hex').slice(0, 16);
    await this.kv.put(`${tenant}.${def.name}.${version}`, text);
    await this.kv.put(`${tenant}.${def.name}.latest`, JSON.stringify({ version }));
    return version;
  }

  async command(tenant, run, body, msgID) {
    const h = headers();
    h.set('Runstream-Type', body.type);
    await this.js.publish(`cmd.${tenant}.${run}`, sc.encode(JSON.stringify({ ...body, tenant, run_id: run })),
      { msgID, headers: h });
  }

  async start(tenant, agent, version, input = {}, msgID) {
    const run = crypto.randomUUID();
    const body = { type: 'run.start', agent, input };
    if (version) body.version = version;
    await this.command(tenant, run, body, msgID || `start-${run}`);
    return run;
  }

  async orchestrator(name, env = {}) {
    const port = await freePort();
    const p = await startService('orchestrator', {
      ...this.env, RS_ORCHESTRATOR_OPS_PORT: String(port), RS_INSTANCE_ID: name,
      RS_SHUTDOWN_GRACE_MS: '5000', ...env,
    }, port);
    p.name = name;
    this.procs.push(p);
    return p;
  }

  async metrics(p) {
    return (await fetch(`http://127.0.0.1:${p.port}/metrics`)).text();
  }

  // Every stored event of a run, in stream order, from RUNS itself.
  async history(tenant, run) {
    const subj = `runs.${tenant}.${run}`;
    const out = [];
    let seq = 0;
    for (;;) {
      let m;
      try {
        m = await this.jsm.direct.getMessage('RUNS', { seq: seq + 1, next_by_subj: subj });
      } catch (e) {
        if (e.code === '404' || /not found/i.test(e.message)) break;
        throw e;
      }
      seq = m.seq;
      out.push(JSON.parse(sc.decode(m.data)));
    }
    return out;
  }

}

// Runseq is exactly 1..N, ids unique, one terminal event, and it is last.
export function assertHistory(h, run) {
  assert.ok(h.length > 0, `run ${run} has no events`);
  h.forEach((ev, i) => {
    assert.equal(ev.runseq, i + 1, `run ${run}: event ${i} has runseq ${ev.runseq}`);
    assert.equal(ev.id, `${run}-${i + 1}`);
  });
  const terminals = h.filter((e) => TERMINAL.has(e.type.replace(/^runstream\./, '')));
  assert.equal(terminals.length, 1, `run ${run}: ${terminals.length} terminal events`);
  assert.equal(terminals[0], h[h.length - 1]);
}

