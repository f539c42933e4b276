// @runstream/device - serve tools to Runstream runs from Node or a browser tab.
//
// It speaks the tool-router protocol runstream.device.v1 (docs/devices.md)
// and takes its hard parts off the device author: reconnecting with
// backoff and jitter, at-least-once delivery (a redelivered call_id is
// answered from a bounded cache, never run twice), cancellation and
// deadlines as an AbortSignal, input validated against the declared JSON
// Schema before the handler runs, handler errors turned into protocol
// errors, and a shutdown that lets running calls finish.
//
// No build step: plain ES module. In Node the WebSocket is the `ws` package
// (loaded on first connect, so browsers never see the import); in a browser
// it is the native WebSocket. JSON Schema validation is @cfworker/json-schema,
// itself a plain ES module that runs in both (ajv compiles schemas with
// new Function, which a strict CSP forbids in a page).
import { Validator } from '@cfworker/json-schema';

export const SUBPROTOCOL = 'runstream.device.v1';

const DEVICE_ID_RE = /^[a-z0-9_-]{1,64}$/;
const MAX_TOOLS = 256;                 // the router's limit (docs/devices.md)
const MAX_TOOL_NAME = 128;
const MAX_CALL_ID = 128;
const MAX_MESSAGE = 4096;              // error messages are truncated to this
const FATAL_CLOSES = { 4401: 'unauthorized', 4409: 'replaced' };

/** An error a handler throws to fail a call with a code the run can act on. */
export class ToolError extends Error {
  /**
   * @param {string} code e.g. "not_found"; shows up in the run's tool.failed event
   * @param {string} message
   * @param {{retryable?: boolean}} [opts] retryable: the orchestrator may retry the step
   */
  constructor(code, message, { retryable = false } = {}) {
    super(message);
    this.name = 'ToolError';
    this.code = String(code || 'tool_error');
    this.retryable = Boolean(retryable);
  }
}

/** Why a device stopped for good: the router refused its token (4401) or
 * another connection of the same device replaced it (4409). Reconnecting
 * would not help, so the SDK does not. */
export class DeviceError extends Error {
  constructor(code, message, closeCode) {
    super(message);
    this.name = 'DeviceError';
    this.code = code;
    this.closeCode = closeCode;
  }
}

function abortError(message) {
  const e = new Error(message);
  e.name = 'AbortError';
  return e;
}

function defaultLog(level, msg) {
  if (level !== 'debug') console.error(`runstream-device ${level}: ${msg}`);
}

function clip(s) {
  s = String(s ?? '');
  return s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE - 3)}...` : s;
}

async function nodeWebSocket() {
  const m = await import('ws');
  return m.default || m.WebSocket;
}

/**
 * Create a device and connect it (the connection opens on the next tick, so
 * register tools right after this call; they are announced in the hello).
 * @param {import('./index').ConnectOptions} opts
 * @returns {Device}
 */
export function connect(opts) {
  return new Device(opts);
}

export class Device {
  #opts;
  #tools = new Map();             // name -> { name, description, inputSchema, validator, handler }
  #cache = new Map();             // call_id -> { state: running|done|cancelled, frame?, ctl? } (insertion order = age)
  #inflight = new Map();          // call_id -> promise of the handler's end
  #sock = null;
  #helloSent = false;
  #stopping = false;
  #stopped = false;
  #backoff;
  #reconnectTimer = null;
  #watchdog = null;
  #routerError = null;            // last `error` frame, to explain a close
  #resolveReady; #rejectReady;
  #resolveClosed; #rejectClosed;
  #WS = null;

  /** Resolves with the first `welcome` frame; rejects if the device stops first. */
  ready;
  /** Resolves when close() has finished; rejects with a DeviceError on 4401/4409. */
  closed;
  /** Counters, for logs and tests. */
  stats = { executions: 0, cacheHits: 0, cancels: 0, invalidArgs: 0, reconnects: 0 };

  constructor(opts = {}) {
    const { url, deviceId, token } = opts;
    if (typeof url !== 'string' || !/^wss?:\/\//.test(url)) throw new TypeError('connect: url must be ws:// or wss://');
    if (typeof deviceId !== 'string' || !DEVICE_ID_RE.test(deviceId)) throw new TypeError('connect: deviceId must match [a-z0-9_-]{1,64}');
    if (typeof token !== 'string' || token.length === 0 || token.length > 256) throw new TypeError('connect: token must be a non-empty string (max 256)');
    this.#opts = {
      backoffMinMs: 100, backoffMaxMs: 10000, cacheSize: 512, maxResultBytes: 1 << 20,
      log: defaultLog, ...opts,
    };
    this.#backoff = this.#opts.backoffMinMs;
    this.ready = new Promise((res, rej) => { this.#resolveReady = res; this.#rejectReady = rej; });
    this.closed = new Promise((res, rej) => { this.#resolveClosed = res; this.#rejectClosed = rej; });
    // Both may be left unobserved by a caller that does not care.
    this.ready.catch(() => {});
    this.closed.catch(() => {});
    setTimeout(() => this.#open(), 0);
  }

  get deviceId() { return this.#opts.deviceId; }
  /** True while a connection has been welcomed. */
  get connected() { return this.#sock !== null && this.#sock.welcomed === true; }

  /**
   * Offer a tool. Register before the device says hello (synchronously after connect()).
   * @param {string} name
   * @param {{description?: string, inputSchema?: object}} spec
   * @param {(args: any, ctx: import('./index').CallContext) => any} handler
   */
  tool(name, spec, handler) {
    if (typeof spec === 'function') { handler = spec; spec = {}; }
    spec = spec || {};
    if (this.#helloSent) throw new Error(`tool ${name}: register tools before the device connects (right after connect())`);
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_TOOL_NAME || /[\s\x00-\x20\x7f]/.test(name)) {
      throw new TypeError(`tool: name must be a non-empty string without whitespace (max ${MAX_TOOL_NAME})`);
    }
    if (this.#tools.has(name)) throw new TypeError(`tool ${name}: registered twice`);
    if (this.#tools.size >= MAX_TOOLS) throw new TypeError(`tool ${name}: at most ${MAX_TOOLS} tools`);
    if (typeof handler !== 'function') throw new TypeError(`tool ${name}: handler must be a function`);
    const { description = '', inputSchema } = spec;
    if (inputSchema !== undefined && (inputSchema === null || typeof inputSchema !== 'object' || Array.isArray(inputSchema))) {
      throw new TypeError(`tool ${name}: inputSchema must be an object`);
    }
    const validator = inputSchema ? new Validator(inputSchema, '2020-12', false) : null;
    this.#tools.set(name, { name, description: String(description), inputSchema, validator, handler });
    return this;
  }

  /**
   * Stop: take no new calls, let running ones finish (aborting them after
   * timeoutMs) and send their results, then close the connection.
   * @param {{timeoutMs?: number}} [opts]
   */
  async close({ timeoutMs = 30000 } = {}) {
    if (this.#stopping) return this.closed.catch(() => {});
    this.#stopping = true;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    if (this.#inflight.size > 0) {
      let timer;
      const overdue = new Promise((res) => { timer = setTimeout(res, timeoutMs); });
      await Promise.race([Promise.allSettled([...this.#inflight.values()]), overdue]);
      clearTimeout(timer);
      for (const e of this.#cache.values()) if (e.state === 'running') e.ctl.abort(abortError('device shutting down'));
      await Promise.allSettled([...this.#inflight.values()]);
    }
    const s = this.#sock;
    if (s && s.readyState <= 1) {
      const gone = new Promise((res) => { s.onclose = res; });
      s.close(1000, 'device closing');
      let timer;
      await Promise.race([gone, new Promise((res) => { timer = setTimeout(res, 5000); })]);
      clearTimeout(timer);
    }
    this.#finish(null);
    return this.closed;
  }

  // ---- connection --------------------------------------------------------

  async #open() {
    if (this.#stopping) return;
    let s;
    try {
      if (!this.#WS) this.#WS = this.#opts.WebSocket ||
        (typeof process !== 'undefined' && process.versions?.node ? await nodeWebSocket() : globalThis.WebSocket);
      if (this.#stopping) return; // close() came while `ws` was loading
      s = this.#WS.prototype?.on
        ? new this.#WS(this.#opts.url, SUBPROTOCOL, { maxPayload: this.#opts.maxFrameBytes ?? 16 << 20 })
        : new this.#WS(this.#opts.url, SUBPROTOCOL);
    } catch (e) {
      // A URL the WebSocket refuses will not get better by retrying.
      this.#finish(new DeviceError('bad_url', `cannot open ${this.#opts.url}: ${e.message}`, 0));
      return;
    }
    this.#sock = s;
    this.#routerError = null;
    s.onopen = () => {
      const tools = [...this.#tools.values()].map((t) => ({
        name: t.name, description: t.description, ...(t.inputSchema ? { input_schema: t.inputSchema } : {}),
      }));
      this.#helloSent = true;
      s.send(JSON.stringify({ type: 'hello', device_id: this.#opts.deviceId, token: this.#opts.token, tools }));
    };
    s.onmessage = (ev) => this.#onFrame(s, ev.data);
    s.onerror = () => { /* a close event follows */ };
    s.onclose = (ev) => this.#onClose(s, ev.code, ev.reason);
    if (typeof s.on === 'function') s.on('ping', () => this.#feedWatchdog(s));
  }

  // Node only (a browser hides pings): the router pings every heartbeat_s;
  // two silent periods mean a dead path that TCP may take minutes to notice.
  #feedWatchdog(s) {
    if (s !== this.#sock || !s.heartbeatMs || typeof s.terminate !== 'function') return;
    clearTimeout(this.#watchdog);
    this.#watchdog = setTimeout(() => {
      this.#opts.log('warn', `no heartbeat from the router for ${s.heartbeatMs * 2 + 2000} ms: reconnecting`);
      s.terminate();
    }, s.heartbeatMs * 2 + 2000);
  }

  #onClose(s, code, reason) {
    if (s !== this.#sock) return;
    this.#sock = null;
    clearTimeout(this.#watchdog);
    const fatal = FATAL_CLOSES[code] ||
      (this.#routerError && ['unauthorized', 'replaced'].includes(this.#routerError.code) ? this.#routerError.code : null);
    if (fatal) {
      const why = fatal === 'unauthorized'
        ? 'the router refused the token (close 4401): issue a new one with `runctl devices token`'
        : 'another connection of this device replaced this one (close 4409)';
      this.#opts.log('error', `device ${this.#opts.deviceId}: ${why}; not reconnecting`);
      for (const e of this.#cache.values()) if (e.state === 'running') e.ctl.abort(abortError(`device stopped: ${fatal}`));
      this.#finish(new DeviceError(fatal, `${why}${this.#routerError?.message ? `: ${this.#routerError.message}` : ''}`, code));
      return;
    }
    if (this.#stopping) return;
    const base = this.#backoff;
    // Equal jitter: half fixed, half random, so a fleet does not reconnect in lockstep.
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.#backoff = Math.min(base * 2, this.#opts.backoffMaxMs);
    this.stats.reconnects += 1;
    this.#opts.log('info', `disconnected (${code}${reason ? ` ${reason}` : ''}); reconnecting in ${delay} ms`);
    this.#reconnectTimer = setTimeout(() => { this.#reconnectTimer = null; this.#open(); }, delay);
  }

  #finish(err) {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stopping = true;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#watchdog);
    if (this.#sock && this.#sock.readyState <= 1) this.#sock.close(1000);
    this.#sock = null;
    if (err) {
      this.#rejectReady(err);
      this.#rejectClosed(err);
    } else {
      this.#rejectReady(new DeviceError('closed', 'device closed before it was welcomed', 1000));
      this.#resolveClosed();
    }
  }

  #send(frame) {
    const s = this.#sock;
    if (s && s.readyState === 1 && s.welcomed) { s.send(frame); return true; }
    return false;
  }

  // ---- frames ------------------------------------------------------------

  #onFrame(s, data) {
    if (s !== this.#sock) return;
    let f;
    try {
      f = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
    } catch (e) {
      this.#opts.log('warn', `unparseable frame from the router: ${e.message}`);
      return;
    }
    if (f === null || typeof f !== 'object') return;
    this.#feedWatchdog(s);
    switch (f.type) {
      case 'welcome': {
        s.welcomed = true;
        const hb = Number(f.heartbeat_s);
        s.heartbeatMs = Number.isFinite(hb) && hb >= 1 && hb <= 3600 ? hb * 1000 : 15000;
        this.#feedWatchdog(s);
        this.#backoff = this.#opts.backoffMinMs;
        this.#opts.log('info', `welcome: device ${f.device_id} of tenant ${f.tenant}`);
        this.#resolveReady(f);
        // Results that finished while we were away go out when the router
        // redelivers their calls (it does, on this hello).
        break;
      }
      case 'tool.call': this.#onCall(f); break;
      case 'tool.cancel': this.#onCancel(f); break;
      case 'error':
        this.#routerError = { code: String(f.code), message: String(f.message ?? '') };
        this.#opts.log('warn', `router error ${f.code}: ${f.message}`);
        break;
      default:
        this.#opts.log('debug', `ignoring frame ${String(f.type)}`);
    }
  }

  #remember(callId, entry) {
    this.#cache.set(callId, entry);
    // Bounded: the oldest entries go first. A running call that is evicted
    // still finishes and answers; only its de-duplication is forgotten.
    while (this.#cache.size > this.#opts.cacheSize) this.#cache.delete(this.#cache.keys().next().value);
  }

  #resultFrame(callId, output, error) {
    if (error) {
      return JSON.stringify({ type: 'tool.result', call_id: callId,
        error: { code: clip(error.code).slice(0, 64) || 'tool_error', message: clip(error.message), retryable: Boolean(error.retryable) } });
    }
    let s;
    try {
      s = JSON.stringify({ type: 'tool.result', call_id: callId, output: output === undefined ? null : output });
    } catch (e) {
      return this.#resultFrame(callId, null, { code: 'invalid_output', message: `output is not JSON: ${e.message}` });
    }
    if (s.length > this.#opts.maxResultBytes) {
      return this.#resultFrame(callId, null, { code: 'result_too_large',
        message: `the output is ${s.length} bytes, over ${this.#opts.maxResultBytes}` });
    }
    return s;
  }

  #onCall(f) {
    const callId = f.call_id;
    if (typeof callId !== 'string' || callId.length === 0 || callId.length > MAX_CALL_ID || typeof f.tool !== 'string') {
      this.#opts.log('warn', 'tool.call without a valid call_id or tool: ignored');
      return;
    }
    const seen = this.#cache.get(callId);
    if (seen) {
      if (seen.state === 'done') {
        this.stats.cacheHits += 1;
        this.#opts.log('info', `answered from cache: ${callId}`);
        this.#send(seen.frame);
      } else {
        this.#opts.log('info', `redelivered while ${seen.state}: ${callId}`);
      }
      return;
    }
    if (this.#stopping) return; // not ours to start: the router hands it out again after we leave
    const tool = this.#tools.get(f.tool);
    const entry = { state: 'running', frame: null, ctl: new AbortController() };
    this.#remember(callId, entry);
    const settle = (frame) => {
      entry.ctl = null;
      if (entry.state === 'cancelled') return;
      entry.state = 'done';
      entry.frame = frame;
      this.#send(frame); // offline: the cached frame answers the redelivery
    };
    if (!tool) {
      settle(this.#resultFrame(callId, null, { code: 'unknown_tool', message: `this device has no tool "${f.tool}"` }));
      return;
    }
    const args = f.args === undefined ? {} : f.args;
    if (tool.validator) {
      const r = tool.validator.validate(args);
      if (!r.valid) {
        this.stats.invalidArgs += 1;
        const msg = r.errors.filter((e) => e.keyword !== 'properties').slice(0, 5)
          .map((e) => `${e.instanceLocation}: ${e.error}`).join('; ') || r.errors[0]?.error;
        settle(this.#resultFrame(callId, null, { code: 'invalid_args', message: msg }));
        return;
      }
    }
    const ms = Date.parse(f.deadline);
    const deadline = Number.isFinite(ms) ? new Date(ms) : null;
    let timer = null;
    if (deadline) {
      // setTimeout holds at most 2^31-1 ms; further deadlines need no timer yet.
      const wait = Math.max(0, deadline.getTime() - Date.now());
      if (wait < 2 ** 31 - 1) timer = setTimeout(() => entry.ctl?.abort(abortError('deadline exceeded')), wait);
    }
    const ctx = Object.freeze({
      callId, runId: f.run_id, stepId: f.step_id, tool: f.tool,
      attempt: Number.isInteger(f.attempt) ? f.attempt : 1, deadline, signal: entry.ctl.signal,
    });
    this.stats.executions += 1;
    const signal = entry.ctl.signal;
    const done = Promise.resolve()
      .then(() => tool.handler(args, ctx))
      .then((output) => this.#resultFrame(callId, output, null), (err) => {
        if (err instanceof ToolError) return this.#resultFrame(callId, null, err);
        if (signal.aborted && /deadline/.test(String(signal.reason?.message))) {
          return this.#resultFrame(callId, null, { code: 'deadline_exceeded', message: 'the call passed its deadline', retryable: true });
        }
        if (signal.aborted) {
          return this.#resultFrame(callId, null, { code: 'cancelled', message: String(signal.reason?.message ?? 'aborted') });
        }
        this.#opts.log('warn', `tool ${f.tool} (${callId}) threw: ${err?.stack || err}`);
        return this.#resultFrame(callId, null, { code: 'tool_error', message: err?.message ?? String(err), retryable: false });
      })
      .then(settle)
      .finally(() => { clearTimeout(timer); this.#inflight.delete(callId); });
    this.#inflight.set(callId, done);
  }

  #onCancel(f) {
    const e = typeof f.call_id === 'string' ? this.#cache.get(f.call_id) : undefined;
    if (!e || e.state !== 'running') return;
    e.state = 'cancelled';
    this.stats.cancels += 1;
    this.#opts.log('info', `cancelled by the router: ${f.call_id}`);
    e.ctl.abort(abortError('cancelled by the router'));
  }
}
