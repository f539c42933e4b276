// executor_tls.test.mjs - the executor's outbound HTTP against real servers:
// https with a throwaway CA (made here with the openssl CLI) for an http step
// and a streamed llm step (HTTP/2 when the server offers it), a certificate
// whose name does not match, the egress policy (loopback refused by default,
// allowed by RS_EXECUTOR_EGRESS_ALLOW, re-checked on redirects), the response
// cap, a CRLF header injection and a 3000-byte method (both refused before any
// connection), and credential-bearing response headers redacted.
//
// Stack: nats-server + rs-orchestrator + rs-executor (started twice: first
// with the default egress policy, then with the allow-list and the CA).
// Agents go straight into KV `agents`, run.start into CMDS (as llm.test.mjs);
// crafted requests (a method no agent can express) straight into RUNS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import path from 'node:path';
import { connect, headers, StringCodec } from 'nats';
import { startStack, startService, startProcess, freePort, stopAll, logTail, waitFor, tmpDir, BUILD, runctl }
  from '../lib/stack.mjs';
import { followRuns } from '../lib/clients.mjs';

const sc = StringCodec();
const TENANT = 'acme';
const COOKIE = 'session=s3cr3t-cookie-value-9d1';
const TERMINAL = new Set(['run.completed', 'run.failed', 'run.cancelled', 'run.timed_out']);
const short = (t) => t.replace(/^runstream\./, '');

let env; let nc; let js; let kv; let live; let pki;
const procs = {};
const runs = new Map();
let waiters = [];

// ---- a throwaway CA and two server certificates -----------------------------

function makePki() {
  const dir = tmpDir('pki');
  const f = (n) => path.join(dir, n);
  const ossl = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1',
    '-subj', '/CN=runstream test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  for (const [name, san] of [['good', 'IP:127.0.0.1,DNS:localhost'], ['wrong', 'DNS:wrong.example']]) {
    ossl(['req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`]);
    fs.writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
    ossl(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
      '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '1', '-extfile', f(`${name}.ext`)]);
  }
  const read = (n) => fs.readFileSync(f(n));
  return { ca: f('ca.pem'), good: { key: read('good.key'), cert: read('good.pem') },
    wrong: { key: read('wrong.key'), cert: read('wrong.pem') } };
}

// ---- servers -----------------------------------------------------------------

const seen = [];             // every request any server got: { server, method, url, headers, body, version }
const conns = { plain: 0, tls: 0, wrong: 0, other: 0 };

async function handler(server, req, res) {
  let body = '';
  for await (const d of req) body += d;
  seen.push({ server, method: req.method, url: req.url, headers: req.headers, body, version: req.httpVersion });
  if (req.url.startsWith('/v1/chat/completions')) {          // a streamed model turn
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const part of ['Sec', 'ure ', 'hello']) {
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: part }, finish_reason: null }] })}\n\n`);
      await new Promise((r) => setTimeout(r, 30));
    }
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`);
    res.end();
    return;
  }
  if (req.url.startsWith('/big')) {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('x'.repeat(300 * 1024));
    return;
  }
  if (req.url.startsWith('/redirect-away')) {                // to another loopback address
    res.writeHead(302, { location: `http://127.0.0.2:${otherPort}/final` }).end();
    return;
  }
  if (req.url.startsWith('/redirect')) {
    res.writeHead(302, { location: '/final' }).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': COOKIE, 'x-plain': 'kept' });
  res.end(JSON.stringify({ ok: true, url: req.url }));
}

let plainPort; let tlsPort; let wrongPort; let otherPort;
const servers = [];

async function listen(srv, host = '127.0.0.1') {
  servers.push(srv);
  await new Promise((r) => srv.listen(0, host, r));
  return srv.address().port;
}

// ---- runs ----------------------------------------------------------------------

function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

async function push(def) {
  const text = canonical(def);
  const version = crypto.createHash('sha256').update(text).digest('hex').slice(0, 16);
  await kv.put(`${TENANT}.${def.name}.${version}`, text);
  return version;
}

async function start(def, input = {}) {
  const version = await push(def);
  const run = crypto.randomUUID();
  const h = headers();
  h.set('Runstream-Type', 'run.start');
  await js.publish(`cmd.${TENANT}.${run}`, sc.encode(JSON.stringify({ type: 'run.start', agent: def.name, version, input, tenant: TENANT, run_id: run })),
    { msgID: `start-${run}`, headers: h });
  return run;
}

function onEvent(ev) {
  const list = runs.get(ev.subject) || [];
  list.push(ev);
  runs.set(ev.subject, list);
  waiters = waiters.filter((w) => {
    if (w.run !== ev.subject || !w.pred(ev)) return true;
    w.resolve(ev);
    return false;
  });
}

function logs() {
  return Object.entries(procs).map(([n, p]) => `--- ${n} ---\n${logTail(p, 20)}`).join('\n');
}

function waitTerminal(run, timeoutMs = 30000) {
  const pred = (e) => TERMINAL.has(short(e.type));
  const hit = (runs.get(run) || []).find(pred);
  if (hit) return Promise.resolve(hit);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for the end of ${run}: saw ` +
      `${(runs.get(run) || []).map((e) => short(e.type)).join(', ')}\n${logs()}`)), timeoutMs);
    waiters.push({ run, pred, resolve: (ev) => { clearTimeout(t); resolve(ev); } });
  });
}

async function startExecutor(extra) {
  const port = await freePort();
  const p = startProcess(`executor-${port}`, `${BUILD}/services/executor/rs-executor`, [], {
    ...env, RS_EXECUTOR_OPS_PORT: String(port), RS_EXECUTOR_WORKERS: '4', ...extra,
  });
  await waitFor('rs-executor /readyz', async () => {
    if (p.proc.exitCode !== null) throw new Error(`executor exited: ${logTail(p)}`);
    return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
  }, 20000);
  p.port = port;
  procs.executor = p;
  return p;
}

async function stopExecutor() {
  const p = procs.executor;
  const { code, sig } = await p.kill('SIGTERM');
  delete procs.executor;
  const log = fs.readFileSync(p.log, 'utf8');
  assert.equal(code, 0, `executor exit ${code} ${sig}\n${log.slice(-3000)}`);
  assert.ok(!/AddressSanitizer|LeakSanitizer|runtime error:/.test(log), log.slice(-3000));
}

const httpStep = (url, extra = {}) => ({
  name: `h-${crypto.randomBytes(4).toString('hex')}`,
  steps: [{ id: 'call', kind: 'http', method: 'GET', url, timeout_s: 5,
    retry: { max_attempts: 3, initial_backoff_ms: 100 }, ...extra }],
});

// A crafted http.requested in RUNS (what a NATS client with publish rights
// on runs.> could send): answered on cmd.<tenant>.<run> by the executor.
async function craftedRequest(data) {
  const run = crypto.randomUUID();
  const effect = `${run}-call-1-h1`;
  const ev = {
    specversion: '1.0', id: `${run}-1`, source: 'runstream/orchestrator', type: 'runstream.http.requested',
    subject: run, time: new Date().toISOString(), datacontenttype: 'application/json',
    tenant: TENANT, runseq: 1,
    data: { effect_id: effect, step_id: 'call', attempt: 1, method: 'GET', url: `http://127.0.0.1:${plainPort}/crafted`,
      headers: {}, timeout_ms: 5000, deadline: new Date(Date.now() + 5000).toISOString(), ...data },
  };
  const sub = nc.subscribe(`cmd.${TENANT}.${run}`, { max: 1 });
  const answer = (async () => { for await (const m of sub) return JSON.parse(sc.decode(m.data)); })();
  const h = headers();
  h.set('Runstream-Type', 'http.requested');
  h.set('Content-Type', 'application/cloudevents+json');
  await js.publish(`runs.${TENANT}.${run}`, sc.encode(JSON.stringify(ev)), { msgID: ev.id, headers: h });
  const t = setTimeout(() => sub.unsubscribe(), 15000);
  const cmd = await answer;
  clearTimeout(t);
  assert.ok(cmd, `no effect.result for the crafted request\n${logs()}`);
  return cmd;
}

before(async () => {
  pki = makePki();
  const stack = await startStack({ pg: false });
  // The model key is a tenant secret (sealed in KV secrets), never an
  // executor variable.
  env = { ...stack.env, RS_SECRETS_KEY: crypto.randomBytes(32).toString('hex') };
  const rs = runctl(['secrets', 'set', '--tenant', 'acme', 'MODEL_KEY', '--value', 'k-1'], env);
  assert.equal(rs.code, 0, rs.stderr);
  nc = await connect({ servers: stack.nats.url, ...stack.nats.creds });
  js = nc.jetstream();
  kv = await js.views.kv('agents');
  live = await followRuns(js, 'runs.>', (m) => onEvent(JSON.parse(sc.decode(m.data))));
  const plain = http.createServer((q, s) => handler('plain', q, s));
  plain.on('connection', () => conns.plain++);
  plainPort = await listen(plain);
  const other = http.createServer((q, s) => handler('other', q, s));
  other.on('connection', () => conns.other++);
  otherPort = await listen(other, '127.0.0.2');
  // HTTP/2 with HTTP/1.1 fallback: curl negotiates h2 by ALPN.
  const tls = http2.createSecureServer({ ...pki.good, allowHTTP1: true }, (q, s) => handler('tls', q, s));
  tls.on('secureConnection', () => conns.tls++);
  tlsPort = await listen(tls);
  const wrong = http2.createSecureServer({ ...pki.wrong, allowHTTP1: true }, (q, s) => handler('wrong', q, s));
  wrong.on('secureConnection', () => conns.wrong++);
  wrongPort = await listen(wrong);
  const port = await freePort();
  procs.orch = await startService('orchestrator', { ...env, RS_ORCHESTRATOR_OPS_PORT: String(port) }, port);
});

after(async () => {
  for (const s of servers) s.close();
  await live?.stop();
  if (nc) await nc.close();
  await stopAll();
});

test('default egress policy: an http step to a 127.0.0.1 listener is refused, permanently, naming the policy', async () => {
  await startExecutor({});
  const before = seen.length; const c0 = conns.plain;
  const run = await start(httpStep(`http://127.0.0.1:${plainPort}/hook`));
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.failed', JSON.stringify(end.data));
  assert.equal(end.data.error.code, 'egress_denied');
  assert.match(end.data.error.message, /egress policy: loopback address 127\.0\.0\.1/);
  const fails = runs.get(run).filter((e) => short(e.type) === 'step.failed');
  assert.equal(fails.length, 1, 'a permanent error is not retried');
  assert.equal(fails[0].data.error.class, 'permanent');
  assert.equal(seen.length, before, 'the listener got a request');
  assert.equal(conns.plain, c0, 'the listener got a connection');
  // the name "localhost" resolves to loopback too: judged by the address
  const run2 = await start(httpStep(`http://localhost:${plainPort}/hook`));
  const end2 = await waitTerminal(run2);
  assert.equal(end2.data.error.code, 'egress_denied', JSON.stringify(end2.data));
  assert.equal(conns.plain, c0);
  await stopExecutor();
});

test('with the allow-list and the CA: an https http step over HTTP/2, Set-Cookie redacted', async () => {
  await startExecutor({ RS_EXECUTOR_EGRESS_ALLOW: '127.0.0.1/32', RS_EXECUTOR_CA_FILE: pki.ca });
  const run = await start(httpStep(`https://127.0.0.1:${tlsPort}/hook/{{input.id}}`, { headers: { 'X-Order': '{{input.id}}' } }), { id: 'o-9' });
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.completed', JSON.stringify(end.data));
  const done = runs.get(run).find((e) => short(e.type) === 'http.completed');
  assert.equal(done.data.status, 200);
  assert.deepEqual(done.data.body, { ok: true, url: '/hook/o-9' });
  assert.equal(done.data.headers['set-cookie'], '[redacted]');
  assert.equal(done.data.headers['x-plain'], 'kept');
  assert.ok(!JSON.stringify(runs.get(run)).includes('s3cr3t'), 'the cookie is in an event');
  const req = seen.find((s) => s.server === 'tls' && s.url === '/hook/o-9');
  assert.equal(req.headers['x-order'], 'o-9');
  assert.equal(req.version, '2.0', 'curl did not negotiate HTTP/2');
});

test('a streamed llm step over https', async () => {
  const def = { name: 'tls-llm', steps: [{ id: 'ask', kind: 'llm', prompt: 'hi {{input.n}}',
    model: { base_url: `https://localhost:${tlsPort}/v1`, model: 'm', api_key_secret: 'MODEL_KEY' },
    timeout_s: 10 }], output: { text: '{{steps.ask.output.text}}' } };
  const run = await start(def, { n: crypto.randomBytes(3).toString('hex') });
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.completed', JSON.stringify(end.data));
  assert.equal(end.data.output.text, 'Secure hello');
  const t = runs.get(run).map((e) => short(e.type));
  assert.ok(t.indexOf('llm.delta') >= 0 && t.indexOf('llm.delta') < t.indexOf('llm.message'), t.join(' '));
  const call = seen.filter((s) => s.server === 'tls' && s.url === '/v1/chat/completions').pop();
  assert.equal(call.headers.authorization, 'Bearer k-1');
});

test('a certificate for another name: permanent tls_verify_failed naming the mismatch', async () => {
  const c0 = seen.filter((s) => s.server === 'wrong').length;
  const run = await start(httpStep(`https://127.0.0.1:${wrongPort}/hook`));
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.failed', JSON.stringify(end.data));
  assert.equal(end.data.error.code, 'tls_verify_failed');
  assert.match(end.data.error.message, /certificate|subject name/i);
  assert.match(end.data.error.message, /127\.0\.0\.1/);
  assert.equal(runs.get(run).filter((e) => short(e.type) === 'step.failed').length, 1);
  assert.equal(seen.filter((s) => s.server === 'wrong').length, c0, 'a request went out over the untrusted connection');
});

test('a plain-http response over the cap: response_too_large', async () => {
  const run = await start(httpStep(`http://127.0.0.1:${plainPort}/big`, { max_response_bytes: 4096 }));
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.failed', JSON.stringify(end.data));
  assert.equal(end.data.error.code, 'response_too_large');
  assert.match(end.data.error.message, /larger than 4096 bytes/);
});

test('CRLF header injection from a run input is refused before any connection', async () => {
  const c0 = conns.plain; const s0 = seen.length;
  const run = await start(httpStep(`http://127.0.0.1:${plainPort}/inj`, { headers: { 'X-Note': '{{input.note}}' } }),
    { note: 'a\r\nX-Injected: 1' });
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.failed', JSON.stringify(end.data));
  assert.equal(end.data.error.code, 'invalid_request');
  assert.match(end.data.error.message, /X-Note.*CR, LF/);
  assert.equal(conns.plain, c0, 'a connection was opened');
  assert.equal(seen.length, s0);
  assert.ok(!seen.some((s) => 'x-injected' in s.headers), 'the injected header reached a server');
  // ... and in the URL
  const run2 = await start(httpStep(`http://127.0.0.1:${plainPort}/{{input.p}}`), { p: 'a HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /b' });
  const end2 = await waitTerminal(run2);
  assert.equal(end2.data.error.code, 'invalid_request', JSON.stringify(end2.data));
  assert.equal(conns.plain, c0);
});

test('a 3000-byte method in a crafted http.requested is refused cleanly (the old heap overflow)', async () => {
  const c0 = conns.plain;
  const cmd = await craftedRequest({ method: 'A'.repeat(3000) });
  assert.equal(cmd.type, 'effect.result');
  assert.equal(cmd.error.code, 'invalid_request');
  assert.match(cmd.error.message, /method must be a token of 1 to 16/);
  assert.equal(conns.plain, c0);
  const bad = await craftedRequest({ method: 'GET', headers: { 'Bad Name': 'x' } });
  assert.equal(bad.error.code, 'invalid_request');
  assert.equal((await fetch(`http://127.0.0.1:${procs.executor.port}/readyz`)).status, 200);
});

test('redirects: not followed by default; followed when asked, each hop vetted by the egress policy', async () => {
  const run = await start(httpStep(`http://127.0.0.1:${plainPort}/redirect`, { retry: { max_attempts: 1 } }));
  const end = await waitTerminal(run);
  assert.equal(short(end.type), 'run.failed', JSON.stringify(end.data));
  assert.equal(end.data.error.code, 'http_302');
  assert.ok(!seen.some((s) => s.url === '/final' && s.server === 'plain'));
  const ok = await craftedRequest({ url: `http://127.0.0.1:${plainPort}/redirect`, max_redirects: 2 });
  assert.equal(ok.output.status, 200, JSON.stringify(ok));
  assert.equal(ok.output.body.url, '/final');
  // 127.0.0.2 is loopback too, and not in the allow-list (127.0.0.1/32)
  const o0 = conns.other;
  const away = await craftedRequest({ url: `http://127.0.0.1:${plainPort}/redirect-away`, max_redirects: 2 });
  assert.equal(away.error.code, 'egress_denied', JSON.stringify(away));
  assert.match(away.error.message, /127\.0\.0\.2/);
  assert.equal(conns.other, o0);
});

test('keep-alive: sequential calls to one host reuse a connection', async () => {
  const c0 = conns.plain;
  for (let i = 0; i < 5; i++) {
    const cmd = await craftedRequest({ url: `http://127.0.0.1:${plainPort}/ka/${i}` });
    assert.equal(cmd.output.status, 200, JSON.stringify(cmd));
  }
  assert.ok(conns.plain - c0 <= 2, `${conns.plain - c0} connections for 5 calls`);
});

test('graceful SIGTERM: exits 0, sanitizer-clean in the ASan build', async () => {
  await stopExecutor();
});
