// check_map.mjs - keeps the map of the source tree in docs/architecture.md
// true: every file it names exists, and every .c file under common/,
// services/ and runctl/ is named in it. Run by meson as the unit test
// `house_map`: node tests/docs/check_map.mjs <source root>.
//
// How the map is read: the section "## Map of the source tree" up to the
// next "## " heading; a "### `dir/`" heading sets the folder that bare
// names (`engine.c`) are in; a name with a '/' is from the source root.
// Only backticked names ending in .c, .h or .mjs count.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = process.argv[2];
if (!root) {
  console.error('usage: check_map.mjs <source root>');
  process.exit(2);
}
const TITLE = '## Map of the source tree';
const SCANNED = ['common', 'services', 'runctl'];

function mapSection(text) {
  const lines = text.split('\n');
  const start = lines.indexOf(TITLE);
  if (start < 0) return null;
  const out = [];
  for (let i = start + 1; i < lines.length && !lines[i].startsWith('## '); i++) out.push(lines[i]);
  return out;
}

// The files the map names: a Map of path -> the heading it was named under.
function namedFiles(section) {
  const named = new Map();
  const perDir = new Map();
  let dir = null;
  for (const line of section) {
    const h = /^### `([^`]+)\/`\s*$/.exec(line);
    if (h) {
      dir = h[1];
      perDir.set(dir, 0);
      continue;
    }
    for (const m of line.matchAll(/`([^`\s]+)`/g)) {
      const tok = m[1];
      if (!/^[\w./-]+\.(c|h|mjs)$/.test(tok) || tok.startsWith('.')) continue;
      const path = tok.includes('/') ? tok : dir === null ? null : `${dir}/${tok}`;
      if (path === null) continue;   // a bare name before any folder heading
      named.set(path, dir);
      if (dir !== null && !tok.includes('/')) perDir.set(dir, perDir.get(dir) + 1);
    }
  }
  return { named, perDir };
}

function cFiles(dir) {
  const out = [];
  for (const e of readdirSync(join(root, dir))) {
    const rel = `${dir}/${e}`;
    const st = statSync(join(root, rel));
    if (st.isDirectory()) out.push(...cFiles(rel));
    else if (e.endsWith('.c')) out.push(rel);
  }
  return out;
}

const section = mapSection(readFileSync(join(root, 'docs/architecture.md'), 'utf8'));
const problems = [];
if (section === null) {
  problems.push(`docs/architecture.md has no "${TITLE}" section`);
} else {
  const { named, perDir } = namedFiles(section);
  for (const [d, n] of perDir)
    if (n === 0) problems.push(`map: the heading for ${d}/ names no file`);
  for (const path of named.keys())
    if (!existsSync(join(root, path))) problems.push(`map names ${path}, which does not exist`);
  for (const top of SCANNED)
    for (const path of cFiles(top))
      if (!named.has(path)) problems.push(`${path} is not in the map (docs/architecture.md)`);
  if (problems.length === 0)
    console.log(`map of the source tree: ${named.size} files named, all present; every .c ` +
                `under ${SCANNED.join('/, ')}/ is named`);
}
for (const p of problems) console.error(p);
process.exit(problems.length === 0 ? 0 : 1);
