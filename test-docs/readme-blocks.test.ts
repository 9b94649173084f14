// Every fenced js/ts/php block of every Markdown file runs, as written, the
// way a reader would run it after `npm install @folk/...`: see blocks.ts for
// the rules. A block that is not a whole program must be fenced as text.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Block, blocksOf, brokenPromises, documents, promisedOutput, programs, repoRoot, unknownTag } from './blocks.js';

const here = join(repoRoot, 'test-docs');
const docs = documents().map((doc) => ({ doc, blocks: blocksOf(doc) }));
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A directory holding every runnable block of `blocks` under its file name, with node_modules as a user's. */
function layOut(blocks: Block[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'folk-docs-'));
  dirs.push(dir);
  symlinkSync(join(here, 'node_modules'), join(dir, 'node_modules'));
  for (const b of blocks) if (b.lang) writeFileSync(join(dir, b.file), b.code);
  return dir;
}

function run(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 45_000, killSignal: 'SIGKILL' });
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', output: `${r.stdout ?? ''}${r.stderr ?? ''}`, error: r.error };
}

/** tsc checks the block against the published types and emits <name>.mjs beside it. */
function compileTs(dir: string, file: string) {
  const tsc = join(here, 'node_modules', '.bin', 'tsc');
  const flags = ['--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--skipLibCheck', '--lib', 'es2022,esnext.disposable'];
  return run(tsc, [...flags, file], dir);
}

function runBlock(dir: string, b: Block) {
  if (b.lang === 'php') return run('php', [b.file], dir);
  if (b.lang === 'ts') {
    const compiled = compileTs(dir, b.file);
    if (compiled.status !== 0) return compiled;
    return run(process.execPath, [b.file.replace(/\.m?ts$/, '.mjs')], dir);
  }
  return run(process.execPath, [b.file], dir);
}

it('finds the blocks (the documents are there and the parser reads them)', () => {
  expect(docs.map((d) => d.doc)).toContain('README.md');
  expect(docs.flatMap((d) => programs(d.blocks)).length).toBeGreaterThan(5);
  expect(docs.flatMap((d) => programs(d.blocks).flatMap(promisedOutput)).length).toBeGreaterThan(5);
});

it('reads what a console.log line promises, and sees a promise the output breaks', () => {
  const [b] = blocksOf('packages/socketpair/README.md').filter((x) => x.lang);
  expect(promisedOutput(b!)).toEqual(['one', 'two']);
  expect(brokenPromises(b!, 'one\ntwo\n')).toEqual([]);
  expect(brokenPromises(b!, 'one\nfalse\n')).toEqual(['two']);
});

it('every fence says its language, and it is one we either run or know only to show', () => {
  const unknown = docs.flatMap((d) => d.blocks.filter(unknownTag)).map((b) => `${b.doc}:${b.line} \`\`\`${b.tag}`);
  expect(unknown).toEqual([]);
});

describe.each(docs.filter((d) => programs(d.blocks).length > 0))('$doc', ({ blocks }) => {
  it.each(programs(blocks).map((b) => ({ name: `line ${b.line} (${b.tag})`, b })))('$name runs as written', ({ b }) => {
    const r = runBlock(layOut(blocks), b);
    if (r.error) throw r.error;
    expect({ block: `${b.doc}:${b.line}`, status: r.status, signal: r.signal }, r.output).toEqual({
      block: `${b.doc}:${b.line}`,
      status: 0,
      signal: null,
    });
    expect(brokenPromises(b, r.stdout), r.output).toEqual([]);
  });
});
