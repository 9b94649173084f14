// `pnpm release` ends with `pnpm run release:publish`. Here that step runs
// with --dry-run (nothing leaves the machine; --force skips only the registry
// lookup for versions already published), and what it would publish is
// compared with the tarballs the rest of this suite installs and tests: the
// same files with the same bytes, in dependency order, with workspace: ranges
// rewritten. pnpm hands each tarball to `npm publish`; a stand-in npm keeps a
// copy of it first. The one byte-level difference allowed is the order of the
// rewritten dependencies in package.json: pnpm fills that object as its
// lookups finish (p-map-values), so two packs of worker-spawn can list its
// four @folk dependencies in different orders.
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Packed, packAll, pnpmBin, repoRoot } from './harness/pack.js';

interface WouldPublish {
  name: string;
  version: string;
  shasum: string;
  files: string[];
}

let tarballs: string;
let captured: string;
let packed: Map<string, Packed>;
let order: string[];
let published: Map<string, WouldPublish>;

/** Every file of a tarball: path -> bytes. */
function unpack(tarball: string): Map<string, Buffer> {
  const dir = mkdtempSync(join(tarballs, 'unpacked-'));
  execFileSync('tar', ['-xzf', tarball, '-C', dir]);
  const files = new Map<string, Buffer>();
  const walk = (d: string, prefix: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${prefix}${e.name}/`);
      else files.set(`${prefix}${e.name}`, readFileSync(join(d, e.name)));
    }
  };
  walk(join(dir, 'package'), '');
  return files;
}

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
  captured = join(tarballs, 'captured');
  mkdirSync(captured);
  const npm = execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim();
  const standIn = join(tarballs, 'npm');
  writeFileSync(standIn, `#!/bin/sh\nfor a in "$@"; do case "$a" in *.tgz) cp "$a" '${captured}/';; esac; done\nexec '${npm}' "$@"\n`);
  chmodSync(standIn, 0o755);
  const r = spawnSync(pnpmBin(), ['run', 'release:publish', '--dry-run', '--force', `--config.npm-path=${standIn}`], {
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

it('would publish the very tarballs the suite tests (same files, same bytes)', () => {
  for (const [name, pkg] of packed) {
    const would = published.get(name)!;
    const file = join(captured, basename(pkg.tarball));
    // The copy is what npm was given: the shasum it printed is the copy's.
    expect({ name, shasum: createHash('sha1').update(readFileSync(file)).digest('hex') }).toEqual({ name, shasum: would.shasum });
    expect(would.files).toEqual([...pkg.files].sort());
    const tested = unpack(pkg.tarball);
    const publishing = unpack(file);
    expect([...publishing.keys()].sort()).toEqual([...tested.keys()].sort());
    for (const [path, bytes] of tested) {
      const other = publishing.get(path)!;
      if (path === 'package.json') {
        expect(JSON.parse(other.toString())).toEqual(JSON.parse(bytes.toString()));
        expect(other.length).toBe(bytes.length);
      } else {
        expect({ path, sha: createHash('sha256').update(other).digest('hex') }).toEqual({ path, sha: createHash('sha256').update(bytes).digest('hex') });
      }
    }
  }
});

it('ships no stale build output: every compiled file in a tarball has its source in the package', () => {
  // tsc never removes what an earlier build wrote, so a module renamed or
  // removed from lib/ would ship on from a working copy's dist/.
  for (const pkg of packed.values()) {
    const compiled = pkg.files.filter((f) => /^dist\/.*(?<!\.d)\.js$|^dist\/.*\.d\.ts$/.test(f));
    const orphans = compiled.filter((f) => !existsSync(join(repoRoot, 'packages', pkg.dir, 'lib', f.replace(/^dist\//, '').replace(/(\.d)?\.[jt]s$/, '.ts'))));
    expect({ name: pkg.name, orphans }).toEqual({ name: pkg.name, orphans: [] });
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
