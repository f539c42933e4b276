// check_schemas.mjs - the event JSON Schemas (schemas/events/) checked
// against what the C codec actually emits.
//
// Usage: node check_schemas.mjs <event_samples program> <schemas/events dir>
//
// 1. The event types the codec knows (event_samples --types, i.e. the
//    rs_event_type enum) and the <type>.json files are the same set.
// 2. Every sample event (full and minimal, per type) validates against
//    envelope.json and its data against <type>.json; id is <subject>-<runseq>.
// 3. The schemas are open (consumers ignore unknown members), so drift is
//    caught here instead: every member a sample carries is declared by the
//    schema, and every declared member appears in some sample.
// 4. The schemas are not vacuous: dropping any required member fails.
// Exit status 0 when all hold; the failures are listed otherwise.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;

const [samplesProg, schemaDir] = process.argv.slice(2);
if (!samplesProg || !schemaDir) {
  console.error('usage: check_schemas.mjs <event_samples> <schemas/events>');
  process.exit(2);
}

const failures = [];
let checks = 0;
function check(ok, what) {
  checks++;
  if (!ok) failures.push(what);
}

const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats(ajv);

function loadSchema(file) {
  const schema = JSON.parse(readFileSync(path.join(schemaDir, file), 'utf8'));
  return { schema, validate: ajv.compile(schema) };
}

const run = (args) => execFileSync(samplesProg, args, { encoding: 'utf8' })
  .split('\n').filter((l) => l.length > 0);

// 1. Types vs files.
const types = run(['--types']);
const files = readdirSync(schemaDir).filter((f) => f.endsWith('.json'));
const typeFiles = files.filter((f) => f !== 'envelope.json').map((f) => f.slice(0, -5));
check(files.includes('envelope.json'), 'envelope.json missing');
for (const t of types) check(typeFiles.includes(t), `no schema file for event type ${t}`);
for (const t of typeFiles) check(types.includes(t), `schema ${t}.json names no event type of rs_event.h`);

const envelope = loadSchema('envelope.json');
const schemas = Object.fromEntries(typeFiles.map((t) => [t, loadSchema(`${t}.json`)]));
const seen = Object.fromEntries(typeFiles.map((t) => [t, new Set()]));
const seenEnvelope = new Set();

const errs = (v) => ajv.errorsText(v.errors, { dataVar: '' });

// 2-4. Samples.
for (const line of run([])) {
  const ev = JSON.parse(line);
  const type = String(ev.type).replace(/^runstream\./, '');
  const where = `${type} runseq ${ev.runseq}`;
  const s = schemas[type];

  check(envelope.validate(ev), `${where}: envelope: ${errs(envelope.validate)}`);
  check(ev.id === `${ev.subject}-${ev.runseq}`, `${where}: id is not <subject>-<runseq>`);
  for (const k of Object.keys(ev)) {
    seenEnvelope.add(k);
    check(k in envelope.schema.properties, `${where}: attribute ${k} not in envelope.json`);
  }
  if (!s) {
    check(false, `${where}: no schema for the sample's type`);
    continue;
  }
  check(s.validate(ev.data), `${where}: data: ${errs(s.validate)}`);
  for (const k of Object.keys(ev.data)) {
    seen[type].add(k);
    check(k in s.schema.properties, `${where}: data.${k} not declared in ${type}.json`);
  }
  for (const k of s.schema.required ?? []) {
    const copy = structuredClone(ev.data);
    delete copy[k];
    check(!s.validate(copy), `${where}: ${type}.json accepts data without ${k}`);
  }
}

for (const t of typeFiles) {
  for (const k of Object.keys(schemas[t].schema.properties))
    check(seen[t].has(k), `${t}.json declares ${k}, which no sample carries`);
}
for (const k of Object.keys(envelope.schema.properties))
  check(seenEnvelope.has(k), `envelope.json declares ${k}, which no sample carries`);

// A few known-bad envelopes must be refused by the envelope schema too.
const good = JSON.parse(run([])[0]);
for (const [k, v] of [['runseq', 0], ['tenant', 'Acme'], ['specversion', '0.3'],
  ['Bad_Ext', 1], ['subject', 'x'], ['time', 'yesterday']]) {
  check(!envelope.validate({ ...good, [k]: v }), `envelope.json accepts ${k}=${JSON.stringify(v)}`);
}

for (const f of failures) console.error(`FAIL ${f}`);
console.log(`check_schemas: ${types.length} event types, ${checks} checks, ${failures.length} failures`);
process.exit(failures.length === 0 ? 0 : 1);
