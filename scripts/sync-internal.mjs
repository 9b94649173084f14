#!/usr/bin/env node
// Run from a package directory before tsc (its build and typecheck scripts
// do). Copies each module of the repository's internal/ that the package's
// lib/ imports as `./internal/<name>.js` (and what those import in turn) into
// lib/internal/, so the package compiles its own copy into dist/ and its
// tarball installs alone, while the source exists once. lib/internal/ is
// gitignored; a module no longer imported is removed from it.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const internal = join(dirname(fileURLToPath(import.meta.url)), '..', 'internal');
const lib = join(process.cwd(), 'lib');
const dest = join(lib, 'internal');

const imports = (source, pattern) => [...source.matchAll(pattern)].map((m) => m[1]);
const wanted = new Set();
const queue = readdirSync(lib)
  .filter((f) => f.endsWith('.ts'))
  .flatMap((f) => imports(readFileSync(join(lib, f), 'utf8'), /from '\.\/internal\/([\w-]+)\.js'/g));
while (queue.length) {
  const name = queue.pop();
  if (wanted.has(name)) continue;
  const file = join(internal, `${name}.ts`);
  if (!existsSync(file)) throw new Error(`lib/ imports ./internal/${name}.js but internal/${name}.ts does not exist`);
  wanted.add(name);
  queue.push(...imports(readFileSync(file, 'utf8'), /from '\.\/([\w-]+)\.js'/g));
}

if (wanted.size) mkdirSync(dest, { recursive: true });
for (const name of wanted) {
  const text =
    `// A copy of internal/${name}.ts made by scripts/sync-internal.mjs before each build; edit that file, not this one.\n` +
    readFileSync(join(internal, `${name}.ts`), 'utf8');
  const target = join(dest, `${name}.ts`);
  if (existsSync(target) && readFileSync(target, 'utf8') === text) continue;
  // build and typecheck may run at once: a reader sees the old file or the new, never half of one.
  const tmp = `${target}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, target);
}
if (existsSync(dest)) {
  for (const f of readdirSync(dest)) {
    if (!wanted.has(f.replace(/\.ts$/, '')) && !f.endsWith('.tmp')) rmSync(join(dest, f));
  }
}
