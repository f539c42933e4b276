// stack.mjs - start real servers for integration tests and stop them by pid.
//
// Every integration test builds its own small world: a nats-server with its
// own JetStream store, a throwaway Postgres cluster (run as the `postgres`
// user when we are root, because Postgres refuses root), streams and
// migrations applied with the real `runctl`, and the services under test.
// Everything listens on 127.0.0.1 on free ports. stopAll() (also run on
// process exit) kills exactly the pids this module started.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const BUILD = process.env.RS_BUILD_DIR || path.resolve('build');
export const SRC = process.env.RS_SRC_DIR || path.resolve('.');
const started = [];   // { name, proc }
const livePg = new Set(); // Postgres clusters running (pg_ctl daemonises them: no child pid to kill)
const cleanups = [];  // functions run by stopAll
const tmpDirs = [];   // removed on exit unless RS_KEEP_TMP=1 (logs, stores, clusters)

export function bin(name) {
  const map = {
    runctl: 'runctl/runctl', api: 'services/api/rs-api',
    orchestrator: 'services/orchestrator/rs-orchestrator',
    router: 'services/tool-router/rs-tool-router',
    projector: 'services/projector/rs-projector',
    executor: 'services/executor/rs-executor',
    device: 'device/rs-device-example',
  };
  return path.join(BUILD, map[name] || name);
}

function canListen(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.unref();
    s.on('error', () => resolve(0));
    s.listen(port, '127.0.0.1', () => {
      const got = s.address().port;
      s.close(() => resolve(got));
    });
  });
}

// A port for a server a test starts. Not one the kernel picked (port 0):
// those come from the ephemeral range (ip_local_port_range, 32768-60999 by
// default), which every client socket of both test files running at once
// also draws from, so one could take the port between here and the
// server's listen, and the server would exit at start (a CI run failed in
// 2.8 s that way, we think). Instead the ports below the range, 20000 to
// 32000, in a sequence of this process's own (starting from its pid), each
// checked free by listening on it.
let portSeq = (process.pid * 97) % 12000;
export async function freePort() {
  for (let i = 0; i < 500; i++) {
    const port = 20000 + (portSeq++ % 12000);
    if (await canListen(port)) return port;
  }
  return canListen(0);   // the low range is full: what the kernel gives
}

export function tmpDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `rs-${prefix}-`));
  tmpDirs.push(d);
  return d;
}

function canConnect(port) {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port }, () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

// Poll a condition: the only place tests wait without an event to await
// (a process becoming reachable). Bounded; fails loudly with what it waited on.
export async function waitFor(what, fn, timeoutMs = 15000, stepMs = 25) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try { if (await fn()) return; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ': ' + last.message : ''}`);
}

// Spawn a long-running process; its output goes to a log file we print if
// the test fails. Returns { proc, pid, log, kill(sig) }.
export function startProcess(name, cmd, args, env = {}, opts = {}) {
  const logFile = path.join(opts.logDir || tmpDir('log'), `${name}.log`);
  const fd = fs.openSync(logFile, 'a');
  const proc = spawn(cmd, args, {
    env: { ...process.env, ...env }, stdio: ['ignore', fd, fd], detached: false,
  });
  fs.closeSync(fd);
  const entry = { name, proc, log: logFile };
  started.push(entry);
  proc.exitPromise = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  return {
    proc, pid: proc.pid, log: logFile, name,
    exited: proc.exitPromise,
    kill: (sig = 'SIGTERM') => { try { process.kill(proc.pid, sig); } catch { /* gone */ } return proc.exitPromise; },
  };
}

export function logTail(p, n = 40) {
  try { return fs.readFileSync(p.log, 'utf8').split('\n').slice(-n).join('\n'); } catch { return ''; }
}

// NATS users (docs/operations.md "NATS users"): unless opts.auth === false,
// the server runs with the users `runctl nats config` writes into
// <dir>/auth (passwords per store, kept across restarts), and its pid file
// there, so `runctl consumers grant --dir <authDir>` can reload it. The
// returned `creds` ({ user, pass } of the admin user) go into every Node
// client: connect({ servers: nats.url, ...nats.creds }); `env` holds the
// admin's RS_NATS_* for runctl. Services get their own role's user from
// startService (roleEnv).
const natsUsers = new Map(); // url -> { role: password }

// Service binary name (as in bin()) -> its NATS user.
const ROLE_OF = { api: 'api', orchestrator: 'orchestrator', router: 'tool-router',
  projector: 'projector', executor: 'executor' };

export function readEnvFile(file) {
  const out = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

// env with RS_NATS_USER/RS_NATS_PASSWORD of `role` ('api', 'tool-router', ...)
// on the server env.RS_NATS_URL points at; env unchanged when that server
// runs without users.
export function roleEnv(env, role) {
  const users = natsUsers.get(env.RS_NATS_URL);
  if (!users) return env;
  if (!users[role]) throw new Error(`no NATS user ${role}`);
  return { ...env, RS_NATS_USER: role, RS_NATS_PASSWORD: users[role] };
}

// { user, pass } of NATS user `role` on the server at url (tests that act
// as a service).
export function natsUser(url, role) {
  const users = natsUsers.get(url);
  if (!users?.[role]) throw new Error(`no NATS user ${role} on ${url}`);
  return { user: role, pass: users[role] };
}

export async function startNats(opts = {}) {
  const port = opts.port || await freePort();
  const dir = opts.dir || tmpDir('nats');
  const auth = opts.auth !== false;
  const authDir = path.join(dir, 'auth');
  let args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir, '--server_name', `rs-test-${port}`];
  const url = `nats://127.0.0.1:${port}`;
  let creds = {};
  let env = { RS_NATS_URL: url };
  if (auth) {
    const r = spawnSync(bin('runctl'), ['nats', 'config', '--dir', authDir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`runctl nats config failed: ${r.stderr}`);
    const pw = readEnvFile(path.join(authDir, 'users.env'));
    const users = {};
    for (const [k, v] of Object.entries(pw)) {
      users[k.replace('RS_NATS_PASSWORD_', '').toLowerCase().replace(/_/g, '-')] = v;
    }
    natsUsers.set(url, users);
    // Everything in the file, nothing on the command line: a reload
    // (SIGHUP, runctl consumers grant) re-reads only the file, and refuses
    // to run when a setting such as server_name would change.
    const conf = path.join(dir, 'server.conf');
    fs.writeFileSync(conf, [`listen: 127.0.0.1:${port}`, `server_name: rs-test-${port}`,
      `jetstream { store_dir: "${dir}" }`, `pid_file: "${authDir}/nats-server.pid"`,
      'include "auth/auth.conf"', ''].join('\n'));
    args = ['-c', conf];
    creds = { user: 'admin', pass: users.admin };
    env = { ...env, RS_NATS_USER: 'admin', RS_NATS_PASSWORD: users.admin };
  }
  const p = startProcess(`nats-${port}`, 'nats-server', args, {}, { logDir: dir });
  await waitFor(`nats-server on ${port}`, () => canConnect(port));
  return {
    ...p, url, port, dir, authDir: auth ? authDir : null, creds, env,
    restart: async () => { await p.kill('SIGKILL'); return startNats({ port, dir, auth }); },
  };
}

function asPostgres(cmd, args) {
  const isRoot = process.getuid && process.getuid() === 0;
  if (isRoot) return ['runuser', ['-u', 'postgres', '--', cmd, ...args]];
  return [cmd, args];
}

function pgBin(name) {
  for (const v of ['17', '16', '15', '14', '13']) {
    const p = `/usr/lib/postgresql/${v}/bin/${name}`;
    if (fs.existsSync(p)) return p;
  }
  return name;
}

export async function startPostgres(opts = {}) {
  const port = opts.port || await freePort();
  const dir = opts.dir || tmpDir('pg');
  const data = path.join(dir, 'data');
  const isRoot = process.getuid && process.getuid() === 0;
  if (!opts.dir) {
    if (isRoot) execFileSync('chown', ['-R', 'postgres:postgres', dir]);
    const [c, a] = asPostgres(pgBin('initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    execFileSync(c, a, { stdio: 'ignore' });
  }
  const pg = {
    port, dir, data, url: `postgresql://postgres@127.0.0.1:${port}/runstream`,
    async start() {
      livePg.add(pg);
      const [c, a] = asPostgres(pgBin('pg_ctl'), ['-D', data, '-l', path.join(dir, 'pg.log'), '-w', '-t', '30', '-o',
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`, 'start']);
      execFileSync(c, a, { stdio: 'ignore' });
      pg.pid = parseInt(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0], 10);
    },
    async stop(mode = 'fast') {
      livePg.delete(pg);
      try {
        const [c, a] = asPostgres(pgBin('pg_ctl'), ['-D', data, '-m', mode, '-w', 'stop']);
        execFileSync(c, a, { stdio: 'ignore' });
      } catch { if (pg.pid) try { process.kill(pg.pid, 'SIGKILL'); } catch { /* gone */ } }
    },
    psql(sql) {
      return execFileSync('psql', [pg.url, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql], { encoding: 'utf8' }).trim();
    },
  };
  await pg.start();
  livePg.add(pg);
  if (!opts.dir) {
    execFileSync('psql', [`postgresql://postgres@127.0.0.1:${port}/postgres`, '-XAtq', '-c', 'CREATE DATABASE runstream'], { stdio: 'ignore' });
  }
  cleanups.push(() => pg.stop('immediate'));
  return pg;
}

// Run runctl to completion: { code, stdout, stderr } (stderr also on success:
// warnings are part of what some tests check).
export function runctl(args, env = {}, opts = {}) {
  const r = spawnSync(bin('runctl'), args, {
    env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: opts.timeout || 30000,
  });
  return { code: r.status ?? 1, stdout: r.stdout || '', stderr: r.stderr || (r.error ? String(r.error) : '') };
}

// A whole stack: nats (+ streams), optionally postgres (+ migrations).
export async function startStack({ pg = true } = {}) {
  const nats = await startNats();
  const env = { ...nats.env, RS_LOG_LEVEL: 'info' };
  let r = runctl(['streams', 'apply'], env);
  if (r.code !== 0) throw new Error(`streams apply failed: ${r.stderr}`);
  let postgres = null;
  if (pg) {
    postgres = await startPostgres();
    env.RS_PG_URL = postgres.url;
    r = runctl(['migrate'], env);
    if (r.code !== 0) throw new Error(`migrate failed: ${r.stderr}`);
  }
  return { nats, pg: postgres, env };
}

// Start a service binary and wait for its /readyz.
export async function startService(name, env, readyPort, extraArgs = []) {
  const p = startProcess(`${name}-${readyPort}`, bin(name), extraArgs,
    ROLE_OF[name] ? roleEnv(env, ROLE_OF[name]) : env);
  try {
    await waitFor(`${name} /readyz on ${readyPort}`, async () => {
      if (p.proc.exitCode !== null) throw new Error(`${name} exited with ${p.proc.exitCode}: ${logTail(p, 20)}`);
      const res = await fetch(`http://127.0.0.1:${readyPort}/readyz`);
      if (res.status === 200) return true;
      // Say why it is not ready (a stale connect error would mislead).
      throw new Error(`/readyz ${res.status}: ${(await res.text()).slice(0, 200)}`);
    }, 20000);
  } catch (e) {
    throw new Error(`${e.message}\n--- ${name} log ---\n${logTail(p)}`);
  }
  p.port = readyPort;
  return p;
}

export async function stopAll() {
  for (const { proc } of started.reverse()) {
    if (proc.exitCode === null && proc.signalCode === null) {
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
  started.length = 0;
  for (const f of cleanups.splice(0)) { try { await f(); } catch { /* best effort */ } }
}

// Last resort, also when the test runner is killed on a timeout: stop
// what we started, synchronously (an exit handler cannot await).
process.on('exit', () => {
  for (const { proc } of started) {
    if (proc.exitCode === null) try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  for (const pg of livePg) {
    try {
      const [c, a] = asPostgres(pgBin('pg_ctl'), ['-D', pg.data, '-m', 'immediate', '-w', 'stop']);
      execFileSync(c, a, { stdio: 'ignore', timeout: 10000 });
    } catch { /* already stopped */ }
  }
  // Each test file leaves JetStream stores and Postgres clusters of several
  // hundred MB: keep them only when asked (failures print their log tails).
  if (process.env.RS_KEEP_TMP === '1') {
    if (tmpDirs.length) process.stderr.write(`kept: ${tmpDirs.join(' ')}\n`);
    return;
  }
  for (const d of tmpDirs) try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(1));

// A 3-node JetStream cluster on loopback (issue 21): three nats-server
// processes with routes to each other, a store each, the same users (one
// `runctl nats config` directory). Resolves once the nodes have elected a
// meta leader. Returns { nodes, url (all three, comma-separated: what
// RS_NATS_URL takes), servers (an array, for Node clients), creds, env,
// dir, authDir, leaderOf(stream), node(name) }. Each node: { name, port,
// monPort, pid, kill(sig), restart() (same ports, same store) }.
export async function startCluster(opts = {}) {
  const dir = opts.dir || tmpDir('cluster');
  const authDir = path.join(dir, 'auth');
  const r = spawnSync(bin('runctl'), ['nats', 'config', '--dir', authDir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`runctl nats config failed: ${r.stderr}`);
  const pw = readEnvFile(path.join(authDir, 'users.env'));
  const users = {};
  for (const [k, v] of Object.entries(pw)) users[k.replace('RS_NATS_PASSWORD_', '').toLowerCase().replace(/_/g, '-')] = v;
  // A free port can be taken by another process between freePort() and
  // nats-server's listen (tests run two at a time): a node that exits
  // before it is reachable is started again, all three on new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startClusterOn(dir, authDir, users);
    } catch (e) {
      if (!(e instanceof NodeExited) || attempt === 3) throw e;
      process.stderr.write(`startCluster: ${e.message}; again on new ports\n`);
    }
  }
}

class NodeExited extends Error {}

async function startClusterOn(dir, authDir, users) {
  const ports = [];
  for (let i = 0; i < 3; i++) ports.push({ client: await freePort(), route: await freePort(), mon: await freePort() });
  const routes = ports.map((p) => `    nats-route://127.0.0.1:${p.route}`).join('\n');
  const nodes = ports.map((p, i) => {
    const name = `rs-node-${i + 1}`;
    const store = path.join(dir, `node-${i + 1}`);
    fs.rmSync(store, { recursive: true, force: true });   // a failed start's
    fs.mkdirSync(store, { recursive: true });
    const conf = path.join(dir, `${name}.conf`);
    fs.writeFileSync(conf, [`listen: 127.0.0.1:${p.client}`, `http: 127.0.0.1:${p.mon}`,
      `server_name: ${name}`, `jetstream { store_dir: "${store}" }`,
      'cluster {', '  name: rs-test', `  listen: 127.0.0.1:${p.route}`, '  routes: [', routes, '  ]', '}',
      `pid_file: "${path.join(authDir, `${name}.pid`)}"`, 'include "auth/auth.conf"', ''].join('\n'));
    return { name, port: p.client, monPort: p.mon, conf, url: `nats://127.0.0.1:${p.client}` };
  });
  const launch = (n) => {
    const p = startProcess(n.name, 'nats-server', ['-c', n.conf], {}, { logDir: dir });
    n.proc = p.proc; n.pid = p.pid; n.log = p.log; n.exited = p.exited; n.kill = p.kill;
    return n;
  };
  for (const n of nodes) {
    launch(n);
    n.restart = async () => {
      await n.kill('SIGKILL');
      launch(n);
      await waitFor(`${n.name} back on ${n.port}`, () => canConnect(n.port));
      return n;
    };
    natsUsers.set(n.url, users);
  }
  const url = nodes.map((n) => n.url).join(',');
  natsUsers.set(url, users);
  for (const n of nodes) {
    const deadline = Date.now() + 15000;
    while (!(await canConnect(n.port))) {
      if (n.proc.exitCode !== null || n.proc.signalCode !== null) {
        await Promise.all(nodes.map((o) => o.kill('SIGKILL')));
        throw new NodeExited(`${n.name} exited at start: ${logTail(n, 5)}`);
      }
      if (Date.now() > deadline) throw new Error(`timed out after 15000 ms waiting for ${n.name} on ${n.port}: ${logTail(n, 10)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  // /jsz of a node that answers (one may be killed or stopped by a test).
  const jsz = async (query = '', except = null, only = null) => {
    let last;
    for (const n of nodes) {
      if (n.proc.exitCode !== null || n.proc.signalCode !== null || n.stopped || n === except) continue;
      if (only && n !== only) continue;
      try {
        const res = await fetch(`http://127.0.0.1:${n.monPort}/jsz${query}`, { signal: AbortSignal.timeout(2000) });
        if (res.ok) return await res.json();
      } catch (e) { last = e; }
    }
    throw new Error(`no node answers /jsz${last ? ': ' + last.message : ''}`);
  };
  await waitFor('a JetStream meta leader', async () => (await jsz()).meta_cluster?.leader, 30000, 100);
  // A leader alone is not enough to place R3 streams: until every peer has
  // joined the meta group, creating one fails with 10005 ("no suitable
  // peers"; seen on a busy CI machine). Whether the peers are current only
  // the meta leader knows on 2.9, so the apply below is also retried.
  await waitFor('every node in the meta group', async () => {
    const m = (await jsz()).meta_cluster;
    return m?.leader && m.cluster_size === nodes.length;
  }, 30000, 100);
  const cluster = {
    nodes, url, servers: nodes.map((n) => n.url), dir, authDir,
    creds: { user: 'admin', pass: users.admin },
    env: { RS_NATS_URL: url, RS_NATS_USER: 'admin', RS_NATS_PASSWORD: users.admin },
    jsz,
    node: (name) => nodes.find((n) => n.name === name),
    // `stream` as a node sees it (/jsz stream_detail), or undefined.
    async streamInfo(stream, except = null, only = null) {
      const j = await jsz('?accounts=true&streams=true', except, only);
      for (const a of j.account_details || []) {
        for (const s of a.stream_detail || []) if (s.name === stream) return s;
      }
      return undefined;
    },
    // The node leading `stream` now (undefined while it has none).
    async leaderOf(stream) {
      const s = await cluster.streamInfo(stream);
      return s?.cluster?.leader ? cluster.node(s.cluster.leader) : undefined;
    },
    // Whether node n holds a current copy of `stream`: asked of the
    // stream's leader (on 2.9 only the leader's /jsz lists the replicas).
    async isCurrent(stream, n) {
      const leader = await cluster.leaderOf(stream);
      if (!leader) return false;
      if (leader === n) return true;
      const s = await cluster.streamInfo(stream, null, leader);
      return (s?.cluster?.replicas || []).some((r) => r.name === n.name && r.current);
    },
  };
  return cluster;
}

// startStack on a 3-node cluster: every stream and bucket with 3 replicas.
export async function startClusterStack({ pg = true, replicas = 3 } = {}) {
  const cluster = await startCluster();
  const env = { ...cluster.env, RS_LOG_LEVEL: 'info' };
  // Each stream elects its own leader after the meta group: an apply that
  // finds one still electing fails and is tried again (as ./run up does).
  let r;
  await waitFor('streams applied with their replicas', () => {
    r = runctl(['streams', 'apply'], { ...env, RS_STREAM_REPLICAS: String(replicas) }, { timeout: 60000 });
    return r.code === 0;
  }, 60000, 500).catch(() => { throw new Error(`streams apply failed: ${r.stderr}`); });
  let postgres = null;
  if (pg) {
    postgres = await startPostgres();
    env.RS_PG_URL = postgres.url;
    r = runctl(['migrate'], env);
    if (r.code !== 0) throw new Error(`migrate failed: ${r.stderr}`);
  }
  return { cluster, nats: cluster, pg: postgres, env };
}
