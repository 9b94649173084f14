// No package has a build step on install, and the strictest settings of each
// package manager agree: every tarball installs alone with
// `npm install --strict-allow-scripts`, pnpm with `strict-dep-builds=true`,
// and Yarn 4 (node-modules and Plug'n'Play), with no word about build
// scripts and no node-gyp in the tree; then its CommonJS consumer runs.
// Each tool is first shown a package that does ask for a build (a root
// binding.gyp and no install script, as ours were before), so a pass here
// means the tool looked and found nothing, not that it did not look.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Packed, installAlone, noCompilerPath, packAll, pnpmBin, projectWith, repoRoot } from './harness/pack.js';

const yarnJs = createRequire(join(repoRoot, 'test-e2e', 'package.json')).resolve('@yarnpkg/cli-dist/bin/yarn.js');
const consumers = join(repoRoot, 'test-e2e', 'consumers');
// Words a package manager uses about a dependency's build or install script.
const BUILD_TALK = /node-gyp|build script|install script|allowScripts|must be built|YN0007|YN0009/i;

let packed: Map<string, Packed>;
let control: Packed;
let noCompiler: { path: string; log: string };
const dirs: string[] = [];

function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: noCompiler.path };
  for (const key of Object.keys(env)) if (/^(FOLK_|YARN_|npm_config_|CC$|CXX$)/i.test(key)) delete env[key];
  return env;
}

beforeAll(() => {
  const tarballs = mkdtempSync(join(tmpdir(), 'folk-tarballs-'));
  dirs.push(tarballs);
  packed = packAll(tarballs);
  noCompiler = noCompilerPath();
  // The control: a package with a root binding.gyp and no install script.
  const src = join(tarballs, 'control');
  mkdirSync(src);
  writeFileSync(join(src, 'package.json'), JSON.stringify({ name: 'folk-control', version: '1.0.0', main: 'index.js' }));
  writeFileSync(join(src, 'index.js'), 'module.exports = 1;\n');
  writeFileSync(join(src, 'binding.gyp'), '{ "targets": [{ "target_name": "control", "sources": ["control.cc"] }] }\n');
  const tgz = execFileSync('npm', ['pack', '--silent', '--pack-destination', tarballs], { cwd: src, encoding: 'utf8' }).trim();
  control = { name: 'folk-control', dir: 'control', tarball: join(tarballs, tgz), manifest: {}, files: [] };
});

afterAll(() => {
  for (const dir of [...dirs, noCompiler?.path.split(':')[0]]) if (dir) rmSync(dir, { recursive: true, force: true });
});

type Tool = 'npm --strict-allow-scripts' | 'pnpm strict-dep-builds' | 'yarn node-modules' | 'yarn pnp';
const TOOLS: Tool[] = ['npm --strict-allow-scripts', 'pnpm strict-dep-builds', 'yarn node-modules', 'yarn pnp'];

/** Installs `pkg` alone into a fresh project with `tool`; status and everything it printed. */
function install(pkg: Packed, tool: Tool): { project: string; status: number; output: string } {
  if (tool === 'npm --strict-allow-scripts' || tool === 'pnpm strict-dep-builds') {
    const npm = tool.startsWith('npm');
    try {
      const { project, output } = installAlone(packed, pkg, npm ? 'npm' : 'pnpm', 'blocked', userEnv(), [
        npm ? '--strict-allow-scripts' : '--config.strict-dep-builds=true',
      ]);
      dirs.push(project);
      return { project, status: 0, output };
    } catch (err) {
      return { project: '', status: 1, output: String(err) };
    }
  }
  const { project, self, siblings } = pkg === control
    ? (() => {
        const p = mkdtempSync(join(tmpdir(), 'folk-e2e-control-'));
        copyFileSync(control.tarball, join(p, 'control.tgz'));
        return { project: p, self: 'file:./control.tgz', siblings: {} };
      })()
    : projectWith(packed, pkg, `folk-e2e-${pkg.dir}-yarn-`);
  dirs.push(project);
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'folk-consumer', private: true, version: '1.0.0', dependencies: { [pkg.name]: self }, resolutions: siblings }, null, 2),
  );
  const registry = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8' }).trim();
  writeFileSync(
    join(project, '.yarnrc.yml'),
    [
      `nodeLinker: ${tool === 'yarn pnp' ? 'pnp' : 'node-modules'}`,
      `npmRegistryServer: "${registry.replace(/\/$/, '')}"`,
      'enableGlobalCache: false',
      'enableTelemetry: false',
      // CI=true makes Yarn refuse to write a lockfile.
      'enableImmutableInstalls: false',
      '',
    ].join('\n'),
  );
  const r = spawnSync(process.execPath, [yarnJs, 'install'], { cwd: project, env: userEnv(), encoding: 'utf8', timeout: 120_000 });
  return { project, status: r.status ?? 1, output: `${r.stdout}\n${r.stderr}` };
}

function runConsumer(project: string, tool: Tool, dir: string): string {
  copyFileSync(join(consumers, dir, 'consumer.cjs'), join(project, 'consumer.cjs'));
  // `yarn node` sets up Plug'n'Play resolution (and passes it on to workers through NODE_OPTIONS).
  const args = tool.startsWith('yarn') ? [yarnJs, 'node', 'consumer.cjs'] : ['consumer.cjs'];
  const r = spawnSync(process.execPath, args, { cwd: project, env: userEnv(), encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`consumer.cjs failed (${r.signal ?? r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout.trim().split('\n').pop()!;
}

/** Every package directory in the installed tree (node_modules, or Yarn's cache and unplugged folders). */
function installedNames(project: string): string {
  const seen: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 6 || !existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      seen.push(entry.name);
      if (entry.isDirectory() && entry.name !== 'prebuilds' && entry.name !== 'dist') walk(join(dir, entry.name), depth + 1);
    }
  };
  walk(join(project, 'node_modules'), 0);
  walk(join(project, '.yarn'), 0);
  const lock = ['yarn.lock', 'pnpm-lock.yaml', 'package-lock.json', '.pnp.cjs'].map((f) => join(project, f)).filter(existsSync);
  return [...seen, ...lock.map((f) => readFileSync(f, 'utf8'))].join('\n');
}

it.each(TOOLS)('%s does flag a package that asks for a build (the control)', (tool) => {
  const r = install(control, tool);
  if (tool.startsWith('yarn')) {
    // YN0004 here ("lists build scripts"); YN0007 ("must be built") where it runs them.
    expect(r.output).toMatch(/lists build scripts|must be built/);
  } else {
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(tool.startsWith('npm') ? /ESTRICTALLOWSCRIPTS|strict-allow-scripts/ : /ERR_PNPM_IGNORED_BUILDS|Ignored build scripts/);
  }
});

describe.each(['socketpair', 'pidfd', 'fd-inherit', 'scm-rights', 'worker-spawn'])('%s', (dir) => {
  it.each(TOOLS)('installs alone with %s, quietly, and runs', (tool) => {
    const pkg = [...packed.values()].find((p) => p.dir === dir)!;
    writeFileSync(noCompiler.log, '');
    const r = install(pkg, tool);
    expect(r.status, r.output).toBe(0);
    expect(r.output).not.toMatch(BUILD_TALK);
    expect(installedNames(r.project)).not.toMatch(/node-gyp/);
    if (tool === 'yarn pnp' && pkg.files.includes('src/binding.gyp')) {
      // Plug'n'Play keeps packages in zips; ours are unpacked (preferUnplugged) so the binary can be dlopened.
      expect(readdirSync(join(r.project, '.yarn', 'unplugged')).some((d) => d.startsWith(`@folk-${dir}-`))).toBe(true);
    }
    expect(runConsumer(r.project, tool, dir)).toBe('ok');
    expect(readFileSync(noCompiler.log, 'utf8')).toBe('');
  });
});

it('uses a pnpm with strict-dep-builds and an npm with --strict-allow-scripts', () => {
  const [major, minor] = execFileSync('npm', ['--version'], { encoding: 'utf8' }).trim().split('.').map(Number);
  expect(major! > 11 || (major === 11 && minor! >= 19)).toBe(true);
  expect(execFileSync(pnpmBin(), ['--version'], { encoding: 'utf8' }).trim()).toMatch(/^(10|11)\./);
});
