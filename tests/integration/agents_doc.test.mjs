// agents_doc.test.mjs - docs/agents.md is held to the code: every ```json
// block in it is a complete agent definition that a real stack accepts
// (POST /v1/agents on rs-api over a real nats-server), and every
// ```json invalid block is refused with the message printed right after it
// ("Refused: `<message>`"), as the API's 422 detail. `runctl agents
// validate` (the same parser, offline) is held to the same expectations.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startStack, startService, runctl, stopAll, freePort, bin, SRC } from '../lib/stack.mjs';

const DOC = path.join(SRC, 'docs', 'agents.md');

// [{ kind: 'valid'|'invalid', body, message?, line }] in document order.
function extract(text) {
  const out = [];
  const re = /^```(json(?: invalid)?)\n([\s\S]*?)^```\n/gm;
  let m;
  while ((m = re.exec(text)) !== null) {
    const line = text.slice(0, m.index).split('\n').length;
    const block = { kind: m[1] === 'json' ? 'valid' : 'invalid', body: m[2], line };
    if (block.kind === 'invalid') {
      const next = text.slice(re.lastIndex).replace(/^\n+/, '').split('\n')[0];
      // `message`, or `` message `` when the message holds a backtick.
      const r = /^Refused: (``?) ?(.*?) ?\1$/.exec(next);
      assert.ok(r, `docs/agents.md:${line}: an invalid example must be followed by "Refused: \`<message>\`", found: ${next}`);
      block.message = r[2];
    }
    out.push(block);
  }
  return out;
}

const blocks = extract(fs.readFileSync(DOC, 'utf8'));
let stack, api, base, key;

// runctl agents validate on a definition given on stdin ("-"): offline, no
// NATS in its environment, and no temporary file to lose.
function validate(body, json) {
  const r = spawnSync(bin('runctl'), ['agents', 'validate', '-', ...(json ? ['--json'] : [])], {
    input: body, encoding: 'utf8', timeout: 30000,
    env: { ...process.env, RS_NATS_URL: 'nats://127.0.0.1:1' },
  });
  return { code: r.status ?? 1, stdout: r.stdout || '', stderr: r.stderr || '' };
}

before(async () => {
  stack = await startStack({ pg: false });
  const r = runctl(['keys', 'create', '--tenant', 'docs'], stack.env);
  assert.equal(r.code, 0, r.stderr);
  key = r.stdout.trim();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  api = await startService('api', { ...stack.env, RS_API_PORT: String(port), RS_LOG_LEVEL: 'warn' }, port);
});

after(async () => {
  await stopAll();
});

test('docs/agents.md has valid and invalid examples of every step kind', () => {
  const valid = blocks.filter((b) => b.kind === 'valid');
  const invalid = blocks.filter((b) => b.kind === 'invalid');
  assert.ok(valid.length >= 10, `only ${valid.length} valid examples`);
  assert.ok(invalid.length >= 20, `only ${invalid.length} invalid examples`);
  const kinds = new Set();
  for (const b of valid) for (const s of JSON.parse(b.body).steps) kinds.add(s.kind);
  assert.deepEqual([...kinds].sort(), ['branch', 'foreach', 'http', 'llm', 'parallel', 'run', 'signal', 'sleep', 'tool', 'transform']);
});

test('every valid example is accepted by the API and by runctl agents validate', async () => {
  for (const b of blocks.filter((x) => x.kind === 'valid')) {
    const where = `docs/agents.md:${b.line}`;
    const def = JSON.parse(b.body);
    const res = await fetch(`${base}/v1/agents`, {
      method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: b.body,
    });
    const text = await res.text();
    assert.ok(res.status === 201 || res.status === 200, `${where}: POST /v1/agents ${res.status} ${text}`);
    const body = JSON.parse(text);
    assert.equal(body.name, def.name, where);
    assert.match(body.version, /^[0-9a-f]{16}$/, where);
    // Stored as given, and now the latest version.
    const got = await (await fetch(`${base}/v1/agents/${def.name}`, { headers: { Authorization: `Bearer ${key}` } })).json();
    assert.equal(got.latest, body.version, where);
    assert.deepEqual(got.definition, def, where);

    const v = validate(b.body, true);
    assert.equal(v.code, 0, `${where}: runctl agents validate: ${v.stdout}${v.stderr}`);
    const doc = JSON.parse(v.stdout);
    assert.equal(doc.valid, true, where);
    assert.equal(doc.version, body.version, `${where}: runctl and the API disagree on the version`);
  }
});

test('every invalid example is refused with the documented message', async () => {
  for (const b of blocks.filter((x) => x.kind === 'invalid')) {
    const where = `docs/agents.md:${b.line}`;
    const res = await fetch(`${base}/v1/agents`, {
      method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: b.body,
    });
    const problem = await res.json();
    assert.equal(res.status, 422, `${where}: ${JSON.stringify(problem)}`);
    assert.equal(res.headers.get('content-type'), 'application/problem+json', where);
    assert.equal(problem.detail, b.message, where);

    const v = validate(b.body, true);
    assert.equal(v.code, 2, `${where}: runctl agents validate exit ${v.code}: ${v.stdout}${v.stderr}`);
    const doc = JSON.parse(v.stdout);
    assert.equal(doc.valid, false, where);
    assert.equal(doc.error.message, b.message, where);
    // Plain mode: the same message on stderr, after the file name.
    const p = validate(b.body, false);
    assert.equal(p.code, 2, where);
    assert.equal(p.stderr.trim(), `runctl agents validate: - is not a valid agent: ${b.message}`, where);
  }
});
