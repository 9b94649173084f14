// The user's view: every package, packed as it would be published, installed
// alone into a fresh project with npm and with pnpm (install scripts blocked
// as npm 11 and pnpm 10 do by default, approved, and ignored) on a PATH where
// no compiler can run; then its consumers run through `import` and `require`
// and a TypeScript consumer typechecks against the published types.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Installer, type Packed, type Scripts, installAlone, noCompilerPath, packAll, repoRoot } from './harness/pack.js';

const consumersDir = join(repoRoot, 'test-e2e', 'consumers');
const consumers = readdirSync(consumersDir).filter((d) => existsSync(join(consumersDir, d, 'consumer.mjs')));

// What a published tarball may hold; anything else (tests, TS sources, maps,
// configs, build output) is a packaging mistake.
const ALLOWED = [
  /^package\.json$/,
  /^README\.md$/,
  /^PROTOCOL\.md$/,
  /^LICENSE$/,
  /^CHANGELOG\.md$/,
  /^dist\/[\w./-]+\.(js|mjs|d\.ts|d\.mts)$/,
  /^prebuilds\/[\w-]+\/[@\w.+-]+\.node$/,
  // The sources and their build file, for a build from source. Not a root
  // binding.gyp: pnpm and Yarn would run node-gyp for it on install.
  /^src\/[\w./-]+\.(cc|h)$/,
  /^src\/binding\.gyp$/,
  /^php\/[\w./-]+\.php$/,
];

let tarballs: string;
let packed: Map<string, Packed>;
let noCompiler: { path: string; log: string };
const projects: string[] = [];

beforeAll(() => {
  tarballs = mkdtempSync(join(tmpdir(), 'folk-tarballs-'));
  packed = packAll(tarballs);
  noCompiler = noCompilerPath();
});

afterAll(() => {
  for (const dir of [...projects, tarballs]) if (dir) rmSync(dir, { recursive: true, force: true });
});

function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: noCompiler.path };
  // Nothing may hand node-gyp a compiler by another route.
  for (const key of ['CC', 'CXX', 'LINK', 'npm_config_python', 'PYTHON']) delete env[key];
  return env;
}

function run(project: string, file: string): string {
  const r = spawnSync(process.execPath, [file], { cwd: project, env: userEnv(), encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${file} failed (${r.signal ?? r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

it('finds a consumer for every published package', () => {
  const published = [...packed.values()].map((p) => p.dir).sort();
  expect(consumers.sort()).toEqual(published);
});

describe.each(consumers)('%s', (dir) => {
  const pkg = () => {
    const found = [...packed.values()].find((p) => p.dir === dir);
    if (!found) throw new Error(`no published package in packages/${dir}`);
    return found;
  };

  it('tarball holds only what users need, with a prebuild for this platform', () => {
    const { files } = pkg();
    const stray = files.filter((f) => !ALLOWED.some((re) => re.test(f)));
    expect(stray).toEqual([]);
    expect(files).toContain('README.md');
    expect(files).toContain('LICENSE');
    expect(files).toContain('dist/index.js');
    expect(files).toContain('dist/index.mjs');
    expect(files).toContain('dist/index.d.ts');
    expect(files).toContain('dist/index.d.mts');
    if (files.includes('src/binding.gyp')) {
      expect(files.some((f) => f.startsWith(`prebuilds/${process.platform}-${process.arch}/`))).toBe(true);
    }
  });

  it('its prebuilds ask for no newer glibc or libstdc++ than Node 20 itself runs on', () => {
    // Node 20's Linux binaries need glibc 2.28 and the libstdc++ of GCC 8
    // (RHEL 8); a prebuild that links a newer symbol version fails to load
    // there, on a machine with no compiler to fall back to. What a build
    // links depends on the headers it is built against, so this is read from
    // the binaries in the tarball, x64 and arm64 (readelf, from binutils,
    // reads any architecture's ELF).
    const p = pkg();
    const binaries = p.files.filter((f) => f.startsWith('prebuilds/linux-') && f.endsWith('.glibc.node'));
    if (!p.files.includes('src/binding.gyp')) return expect(binaries).toEqual([]);
    expect(binaries.length).toBeGreaterThan(0);
    const out = mkdtempSync(join(tmpdir(), 'folk-prebuild-'));
    projects.push(out);
    const untar = spawnSync('tar', ['-xzf', p.tarball, '-C', out, ...binaries.map((f) => `package/${f}`)], { encoding: 'utf8' });
    expect(untar.stderr).toBe('');
    const floor: Record<string, number[]> = { GLIBC: [2, 28], GLIBCXX: [3, 4, 25], CXXABI: [1, 3, 11] };
    const newer = (v: number[], max: number[]) => {
      for (let i = 0; i < Math.max(v.length, max.length); i++) {
        if ((v[i] ?? 0) !== (max[i] ?? 0)) return (v[i] ?? 0) > (max[i] ?? 0);
      }
      return false;
    };
    for (const file of binaries) {
      const dump = spawnSync('readelf', ['--dyn-syms', '-W', join(out, 'package', file)], { encoding: 'utf8' });
      if (dump.error) throw new Error(`readelf (binutils, part of any C++ toolchain) is needed to read ${file}: ${dump.error.message}`);
      expect(dump.status).toBe(0);
      const needs = [...dump.stdout.matchAll(/\s(\S+?)@@?(GLIBC|GLIBCXX|CXXABI)_([\d.]+)/g)];
      expect(needs.length).toBeGreaterThan(0); // it does read the versions
      const tooNew = needs
        .filter(([, , lib, version]) => newer(version!.split('.').map(Number), floor[lib!]!))
        .map(([, symbol, lib, version]) => `${symbol} needs ${lib}_${version}`);
      expect({ file, tooNew }).toEqual({ file, tooNew: [] });
    }
  });

  const modes: [Installer, Scripts][] = [
    ['npm', 'blocked'],
    ['npm', 'approved'],
    ['npm', 'ignored'],
    ['pnpm', 'blocked'],
    ['pnpm', 'approved'],
    ['pnpm', 'ignored'],
  ];

  it.each(modes)('installs alone with %s (install scripts %s), no compiler, and runs via import and require', (installer, scripts) => {
    const p = pkg();
    writeFileSync(noCompiler.log, '');
    const { project, output } = installAlone(packed, p, installer, scripts, userEnv());
    projects.push(project);
    // No package has an install script: whatever the policy, nothing ran.
    expect(output).not.toMatch(/node-gyp|install script|build script/i);
    for (const file of ['consumer.mjs', 'consumer.cjs']) {
      copyFileSync(join(consumersDir, dir, file), join(project, file));
      expect(run(project, file).trim().split('\n').pop()).toBe('ok');
    }
    // The binary came from prebuilds/: nothing was compiled, nothing tried to.
    const installed = join(project, 'node_modules', ...p.name.split('/'));
    expect(existsSync(join(installed, 'build'))).toBe(false);
    expect(existsSync(join(installed, 'src', 'build'))).toBe(false);
    expect(readFileSync(noCompiler.log, 'utf8')).toBe('');
  });

  it('a TypeScript consumer typechecks against the published types', () => {
    const p = pkg();
    const { project } = installAlone(packed, p, 'npm', 'blocked', userEnv());
    projects.push(project);
    copyFileSync(join(consumersDir, dir, 'consumer.ts'), join(project, 'consumer.ts'));
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          lib: ['ES2022', 'ESNext.Disposable'],
          strict: true,
          noEmit: true,
          types: ['node'],
          typeRoots: [join(repoRoot, 'node_modules', '@types')],
        },
        files: ['consumer.ts'],
      }),
    );
    const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: project, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
    // The consumer holds `@ts-expect-error` lines: were the published types
    // missing or `any`, those directives would be unused and tsc would fail.
    expect(readFileSync(join(project, 'consumer.ts'), 'utf8')).toMatch(/@ts-expect-error/);
  });
});
