// Builds from source. First, the commands the loader's error gives for a
// platform with no prebuilt binary, run as written in a project that
// installed a tarball: they build the package's src/ and the package then
// loads that build. Then every native package the same way: its tarball,
// unpacked as an install leaves it, with node-addon-api beside it, builds
// with `node-gyp rebuild` in its own src/, and its consumer runs on that
// build. The sources include headers written once in internal/native/,
// which scripts/sync-internal.mjs copies into src/internal/ before
// `pnpm pack`: a tarball without them would not build.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Packed, installAlone, packAll, repoRoot } from './harness/pack.js';

const NATIVE = readdirSync(join(repoRoot, 'packages')).filter((dir) => existsSync(join(repoRoot, 'packages', dir, 'src', 'binding.gyp')));

const dirs: string[] = [];
let packed: Map<string, Packed>;

beforeAll(() => {
  const tarballs = mkdtempSync(join(tmpdir(), 'folk-tarballs-'));
  dirs.push(tarballs);
  packed = packAll(tarballs);
});

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** node-gyp would download Node's headers; this machine has them beside node. */
function buildEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  const headers = join(dirname(process.execPath), '..', 'include', 'node', 'node_api.h');
  if (!env.npm_config_nodedir && existsSync(headers)) env.npm_config_nodedir = join(dirname(process.execPath), '..');
  return env;
}

it('the unsupported-platform error gives commands that build the package from src/, and it then loads that build', () => {
  const { project } = installAlone(packed, packed.get('@folk/socketpair')!, 'npm', 'blocked', process.env);
  dirs.push(project);

  // The error, on an architecture the package has no binary for.
  const fake = spawnSync(
    process.execPath,
    ['-e', "Object.defineProperty(process, 'arch', { value: 'riscv64' }); try { require('@folk/socketpair') } catch (e) { console.log(e.message) }"],
    { cwd: project, encoding: 'utf8' },
  );
  const steps = fake.stdout.split('\n').filter((l) => /^ {2}(npm|npx) /.test(l)).map((l) => l.trim());
  expect(steps).toEqual([
    'npm install --no-save node-addon-api@^8 node-gyp@^12',
    `npx node-gyp rebuild --directory ${JSON.stringify(join(project, 'node_modules', '@folk', 'socketpair', 'src'))}`,
  ]);

  // Run them.
  const env = buildEnv();
  for (const step of steps) {
    const r = spawnSync('sh', ['-c', step], { cwd: project, env, encoding: 'utf8', timeout: 300_000 });
    expect(r.status, `${step}\n${r.stdout}\n${r.stderr}`).toBe(0);
  }
  const built = join(project, 'node_modules', '@folk', 'socketpair', 'src', 'build', 'Release', 'socketpair.node');
  expect(existsSync(built)).toBe(true);

  // The package now loads the source build, not its prebuilt binary.
  writeFileSync(
    join(project, 'check.cjs'),
    `const { socketpair } = require('@folk/socketpair');
     const [a, b] = socketpair('stream');
     const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');
     console.log(maps.includes(${JSON.stringify(built)}), maps.includes('/prebuilds/'), a >= 0 && b >= 0);`,
  );
  const r = spawnSync(process.execPath, ['check.cjs'], { cwd: project, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.stdout.trim()).toBe('true false true');
});

// The build tools a user installs (the commands above), taken from the
// repository's own install, so the four builds below need no network.
const fromPackage = createRequire(join(repoRoot, 'packages', 'pidfd', 'package.json'));
const nodeAddonApi = dirname(fromPackage.resolve('node-addon-api/package.json'));
const nodeGyp = fromPackage.resolve('node-gyp/bin/node-gyp.js');

/** The package as an install leaves it: its tarball's contents in node_modules/. */
function unpack(project: string, p: Packed): string {
  const dest = join(project, 'node_modules', ...p.name.split('/'));
  mkdirSync(dest, { recursive: true });
  execFileSync('tar', ['-xzf', p.tarball, '-C', dest, '--strip-components=1']);
  return dest;
}

describe.each(NATIVE)('%s', (dir) => {
  it('builds from the sources in its tarball, loads that build and runs its consumer on it', () => {
    const p = [...packed.values()].find((x) => x.dir === dir)!;
    expect(p.files).toContain('src/binding.gyp');
    const project = mkdtempSync(join(tmpdir(), `folk-source-${dir}-`));
    dirs.push(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'folk-consumer', private: true, dependencies: { [p.name]: '*' } }));
    const installed = unpack(project, p);
    // Its @folk/ dependencies as the registry would bring them, with their prebuilds.
    for (const dep of Object.keys(p.manifest.dependencies ?? {})) {
      if (packed.has(dep)) unpack(project, packed.get(dep)!);
    }
    symlinkSync(nodeAddonApi, join(project, 'node_modules', 'node-addon-api'), 'dir');

    // Every header the sources include is in the tarball.
    const src = join(installed, 'src');
    for (const file of readdirSync(src).filter((f) => /\.(cc|h)$/.test(f))) {
      for (const [, header] of readFileSync(join(src, file), 'utf8').matchAll(/^#include "([^"]+)"/gm)) {
        expect(existsSync(join(src, header!)), `${file} includes ${header}`).toBe(true);
      }
    }

    const build = spawnSync(process.execPath, [nodeGyp, 'rebuild', '--directory', src], { cwd: project, env: buildEnv(), encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`node-gyp rebuild failed (${build.signal ?? build.status}):\n${build.stdout}\n${build.stderr}`);
    const target = /"target_name":\s*"([\w-]+)"/.exec(readFileSync(join(src, 'binding.gyp'), 'utf8'))![1]!;
    const built = join(src, 'build', 'Release', `${target}.node`);
    expect(existsSync(built)).toBe(true);

    copyFileSync(join(repoRoot, 'test-e2e', 'consumers', dir, 'consumer.cjs'), join(project, 'consumer.cjs'));
    const run = spawnSync(process.execPath, ['consumer.cjs'], { cwd: project, encoding: 'utf8', timeout: 120_000 });
    if (run.status !== 0) throw new Error(`consumer.cjs failed (${run.signal ?? run.status}):\n${run.stdout}\n${run.stderr}`);
    expect(run.stdout.trim().split('\n').pop()).toBe('ok');

    const mapped = spawnSync(
      process.execPath,
      [
        '-e',
        `require(${JSON.stringify(p.name)});
         const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');
         console.log(JSON.stringify([...new Set(maps.split('\\n').map((l) => l.split(/\\s+/)[5]).filter((f) => f && f.endsWith('.node')))]));`,
      ],
      { cwd: project, encoding: 'utf8' },
    );
    expect(mapped.stderr).toBe('');
    const binaries = JSON.parse(mapped.stdout) as string[];
    expect(binaries).toContain(built);
    expect(binaries.filter((f) => f.startsWith(join(installed, 'prebuilds')))).toEqual([]);
  });
});
