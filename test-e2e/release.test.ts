// `pnpm release` ends with `pnpm run release:publish`. Here that step runs
// with --dry-run (nothing leaves the machine; --force skips only the registry
// lookup for versions already published), and what it would publish is
// compared with the tarballs the rest of this suite installs and tests:
// the same bytes, in dependency order, with workspace: ranges rewritten.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Packed, packAll, pnpmBin, repoRoot } from './harness/pack.js';

interface WouldPublish {
  name: string;
  version: string;
  shasum: string;
  files: string[];
}

let tarballs: string;
let packed: Map<string, Packed>;
let order: string[];
let published: Map<string, WouldPublish>;

/** The `npm notice` blocks that a dry-run publish prints, one per package. */
function parseDryRun(output: string): Map<string, WouldPublish> {
  const found = new Map<string, WouldPublish>();
  for (const block of output.split(/npm notice 📦\s+/).slice(1)) {
    const contents = block.slice(block.indexOf('Tarball Contents'), block.indexOf('Tarball Details'));
    const detail = (key: string) => new RegExp(`npm notice ${key}: (\\S+)`).exec(block)?.[1] ?? '';
    const item: WouldPublish = {
      name: detail('name'),
      version: detail('version'),
      shasum: detail('shasum'),
      files: [...contents.matchAll(/^npm notice [\d.]+k?B (\S+)$/gm)].map((m) => m[1]!).sort(),
    };
    found.set(item.name, item);
  }
  return found;
}

beforeAll(() => {
  tarballs = mkdtempSync(join(tmpdir(), 'folk-tarballs-'));
  packed = packAll(tarballs);
  const r = spawnSync(pnpmBin(), ['run', 'release:publish', '--dry-run', '--force'], {
    cwd: repoRoot,
    encoding: 'utf8',
    // No credentials are needed for a dry run; none are passed.
    env: { ...process.env, NPM_TOKEN: '', NODE_AUTH_TOKEN: '' },
  });
  const output = `${r.stdout}\n${r.stderr}`;
  if (r.status !== 0) throw new Error(`release:publish --dry-run failed:\n${output}`);
  expect(output).toMatch(/\(dry-run\)/);
  order = [...output.matchAll(/^\+ (@folk\/[\w-]+)@/gm)].map((m) => m[1]!);
  published = parseDryRun(output);
});

afterAll(() => rmSync(tarballs, { recursive: true, force: true }));

it('would publish every public package, and nothing else', () => {
  expect([...published.keys()].sort()).toEqual([...packed.keys()].sort());
  expect([...order].sort()).toEqual([...packed.keys()].sort());
});

it('would publish the very tarballs the suite tests (same bytes, same files)', () => {
  for (const [name, pkg] of packed) {
    const would = published.get(name)!;
    const sha1 = createHash('sha1').update(readFileSync(pkg.tarball)).digest('hex');
    expect({ name, shasum: would.shasum }).toEqual({ name, shasum: sha1 });
    expect(would.files).toEqual([...pkg.files].sort());
  }
});

it('publishes each package after the @folk packages it depends on, with their versions as ranges', () => {
  for (const [name, pkg] of packed) {
    const deps = pkg.manifest.dependencies ?? {};
    for (const [dep, range] of Object.entries(deps)) {
      if (!dep.startsWith('@folk/')) continue;
      expect(order.indexOf(dep), `${dep} before ${name}`).toBeLessThan(order.indexOf(name));
      expect(range).toBe(`^${published.get(dep)!.version}`);
    }
    expect(JSON.stringify(pkg.manifest)).not.toContain('workspace:');
  }
});
