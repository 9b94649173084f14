#!/usr/bin/env node
// Run from a package directory before tsc and before node-gyp (its build,
// typecheck, build:native and prepack scripts do). The repository's
// internal/ holds source that several packages build into their own output,
// written once; this copies what the package uses next to its own sources,
// so each package compiles its own copy and its tarball installs (and
// builds from source) alone:
//
//   lib/ imports ./internal/<name>.js       internal/<name>.ts        -> lib/internal/<name>.ts
//   src/ includes "internal/<name>.h"       internal/native/<name>.h  -> src/internal/<name>.h
//
// and, in turn, what those import or include. Both copies are gitignored; a
// module no longer used is removed from them.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const internal = join(dirname(fileURLToPath(import.meta.url)), '..', 'internal');

const imports = (source, pattern) => [...source.matchAll(pattern)].map((m) => m[1]);

/**
 * Copies into `<dir>/internal/` each `<name><ext>` of `from` that the files
 * of `dir` ending in one of `sources` name (`uses`), and what those name in
 * turn (`usesInside`).
 */
function sync({ dir, sources, ext, from, uses, usesInside, comment }) {
  if (!existsSync(dir)) return;
  const dest = join(dir, 'internal');
  const wanted = new Set();
  const queue = readdirSync(dir)
    .filter((f) => sources.some((s) => f.endsWith(s)))
    .flatMap((f) => imports(readFileSync(join(dir, f), 'utf8'), uses));
  while (queue.length) {
    const name = queue.pop();
    if (wanted.has(name)) continue;
    const file = join(from, `${name}${ext}`);
    if (!existsSync(file)) throw new Error(`${dir} uses internal/${name} but ${file} does not exist`);
    wanted.add(name);
    queue.push(...imports(readFileSync(file, 'utf8'), usesInside));
  }

  if (wanted.size) mkdirSync(dest, { recursive: true });
  for (const name of wanted) {
    const text = comment(name) + readFileSync(join(from, `${name}${ext}`), 'utf8');
    const target = join(dest, `${name}${ext}`);
    if (existsSync(target) && readFileSync(target, 'utf8') === text) continue;
    // Two scripts may run at once (build and typecheck): a reader sees the
    // old file or the new, never half of one.
    const tmp = `${target}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, target);
  }
  if (existsSync(dest)) {
    for (const f of readdirSync(dest)) {
      if (!wanted.has(f.slice(0, -ext.length)) && !f.endsWith('.tmp')) rmSync(join(dest, f));
    }
  }
}

sync({
  dir: join(process.cwd(), 'lib'),
  sources: ['.ts'],
  ext: '.ts',
  from: internal,
  uses: /from '\.\/internal\/([\w-]+)\.js'/g,
  usesInside: /from '\.\/([\w-]+)\.js'/g,
  comment: (name) => `// A copy of internal/${name}.ts made by scripts/sync-internal.mjs before each build; edit that file, not this one.\n`,
});

sync({
  dir: join(process.cwd(), 'src'),
  sources: ['.cc', '.h'],
  ext: '.h',
  from: join(internal, 'native'),
  uses: /^#include "internal\/([\w-]+)\.h"/gm,
  usesInside: /^#include "([\w-]+)\.h"/gm,
  comment: (name) =>
    `// A copy of internal/native/${name}.h made by scripts/sync-internal.mjs before each build and pack; edit that file, not this one.\n`,
});
