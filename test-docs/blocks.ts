// Reads the fenced code blocks out of the repository's Markdown and lays a
// document's runnable blocks out as files, the way a reader would copy them.
//
// The rules a README follows (ARCHITECTURE.md says the same):
// - A block fenced js/mjs runs as an ES module, cjs as CommonJS, ts as
//   TypeScript (type-checked by tsc against the published types, then run),
//   php with php-cli. Anything that is not a whole program is fenced `text`
//   (or sh, json, ini, c ...), and then it is not run.
// - A block whose first line names a file (`// worker.cjs`, `<?php // worker.php`)
//   is written under that name. A named block that another block of the same
//   document mentions is a support file (a worker script); every other block
//   is a program and runs on its own, from a directory where `@folk/*`
//   resolve as they would for a user who installed them.
// - A `console.log(...)` line with a trailing comment says what it prints:
//   the program's output must have a line that the comment begins with
//   (`console.log(n); // 2 (bytes sent)` is met by a line `2`).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(fileURLToPath(new URL('.', import.meta.url)), '..');

export type Lang = 'mjs' | 'cjs' | 'ts' | 'php';

/** Fence tags that are run, and the file type each becomes. */
const RUN: Record<string, Lang> = { js: 'mjs', mjs: 'mjs', javascript: 'mjs', cjs: 'cjs', ts: 'ts', typescript: 'ts', php: 'php' };
/** Fence tags that are never run (commands, data, other languages, prose). */
const SHOWN = new Set(['sh', 'bash', 'shell', 'console', 'text', 'txt', 'json', 'jsonc', 'ini', 'c', 'cpp', 'diff', 'yaml', 'toml', 'systemd', 'nginx', 'http']);

export interface Block {
  doc: string; // path relative to the repository
  line: number; // the opening fence's line, 1-based
  tag: string;
  lang: Lang | null; // null: shown, not run
  code: string;
  /** The file it is written as: its own name from the first line, else block-<line>.<ext>. */
  file: string;
  /** Named by its first line. */
  named: boolean;
}

const EXT: Record<Lang, string> = { mjs: 'mjs', cjs: 'cjs', ts: 'mts', php: 'php' };
const NAME = /^(?:<\?php\s*)?\/\/\s*([\w.-]+\.(?:mjs|cjs|js|ts|mts|php))\b/;

/** Every Markdown file git tracks, but changesets and changelogs (generated prose). */
export function documents(): string[] {
  return execFileSync('git', ['ls-files', '*.md', '**/*.md'], { cwd: repoRoot, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f && !f.startsWith('.changeset/') && !/CHANGELOG\.md$/.test(f))
    .filter((f, i, all) => all.indexOf(f) === i)
    .sort();
}

export function blocksOf(doc: string): Block[] {
  const lines = readFileSync(join(repoRoot, doc), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,})(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[1]!;
    const tag = open[2]!.trim().split(/\s+/)[0] ?? '';
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i]!.startsWith(fence); i++) body.push(lines[i]!);
    if (i === lines.length) throw new Error(`${doc}:${start + 1}: a code fence that is never closed`);
    const code = `${body.join('\n')}\n`;
    const lang = RUN[tag] ?? null;
    const named = NAME.exec(body[0] ?? '')?.[1];
    const file = named ?? (lang ? `block-${start + 1}.${EXT[lang]}` : '');
    blocks.push({ doc, line: start + 1, tag, lang, code, file, named: named !== undefined });
  }
  return blocks;
}

/** A tag that is neither run nor known to be shown: a typo, or a language we forgot. */
export function unknownTag(block: Block): boolean {
  return block.lang === null && !SHOWN.has(block.tag);
}

/** The blocks that run as programs: runnable, and not a support file another block names. */
export function programs(blocks: Block[]): Block[] {
  const runnable = blocks.filter((b) => b.lang !== null);
  return runnable.filter((b) => !(b.named && runnable.some((other) => other !== b && other.code.includes(b.file))));
}

/** The trailing comments of a block's console.log lines: what each says it prints. */
export function promisedOutput(block: Block): string[] {
  return block.code
    .split('\n')
    .map((line) => /^\s*console\.log\(.*\);\s*\/\/\s*(.+)$/.exec(line)?.[1]?.trim())
    .filter((comment): comment is string => comment !== undefined);
}

/** The promises no line of `output` keeps. */
export function brokenPromises(block: Block, output: string): string[] {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  return promisedOutput(block).filter((comment) => !lines.some((line) => comment.startsWith(line)));
}
