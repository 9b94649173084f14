// scripts/esm-wrapper.mjs writes each package's ES module face,
// dist/<entry>.mjs, over its CommonJS build. Every name it exports must have
// its value both in Node and under Vitest, which runs a linked workspace
// package's CommonJS itself (as in this repository's own tests, or a user's
// monorepo that links @folk packages). Needs `pnpm build`.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

// Every ES module entry the packages' export maps name (`import.default`).
const FACES = ['socketpair', 'pidfd', 'fd-inherit', 'scm-rights', 'worker-spawn'].flatMap((dir) => {
  const manifest = JSON.parse(readFileSync(new URL(`../../packages/${dir}/package.json`, import.meta.url), 'utf8'));
  return Object.values(manifest.exports as Record<string, unknown>)
    .map((entry) => (entry as { import?: { default?: string } }).import?.default)
    .filter((file): file is string => typeof file === 'string')
    .map((file) => `${dir}/${file.replace(/^\.\//, '')}`);
});

/** name -> typeof, for every export of a module. */
function shape(ns: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.keys(ns).map((k) => [k, typeof ns[k]]));
}

it('finds the ES module faces of every package, worker-spawn/worker included', () => {
  expect(FACES).toContain('worker-spawn/dist/serve.mjs');
  expect(FACES.length).toBe(6);
});

describe.each(FACES)('packages/%s', (face) => {
  const url = pathToFileURL(new URL(`../../packages/${face}`, import.meta.url).pathname).href;

  it('exports every name with its value, the same under Vitest as in Node', async () => {
    const r = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', `import * as ns from ${JSON.stringify(url)}; console.log(JSON.stringify(Object.fromEntries(Object.keys(ns).map((k) => [k, typeof ns[k]]))));`],
      { encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    const inNode = JSON.parse(r.stdout) as Record<string, string>;
    const underVitest = shape((await import(/* @vite-ignore */ url)) as Record<string, unknown>);
    expect(Object.values(inNode)).not.toContain('undefined');
    expect(underVitest).toEqual(inNode);
  });
});
