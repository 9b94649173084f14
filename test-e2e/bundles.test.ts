// The packages survive a bundler: one application using all five
// (bundle/app.mjs), installed from the tarballs, bundled with esbuild (CommonJS
// and ES module output) and with ncc as their READMEs' "Bundling" sections
// say, then moved to a fresh directory with no node_modules and run there.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Packed, installAlone, noCompilerPath, packAll, repoRoot } from './harness/pack.js';

const here = join(repoRoot, 'test-e2e');
const resolveTool = createRequire(join(here, 'package.json')).resolve;
const esbuild = resolveTool('esbuild/bin/esbuild');
const ncc = resolveTool('@vercel/ncc/dist/ncc/cli.js');
const hasPhp = spawnSync('php', ['-r', 'exit(extension_loaded("sockets") ? 0 : 1);']).status === 0;

// What an ES module bundle of CommonJS code needs at its top (esbuild's own
// advice): a `require`, for Node's modules and the .node files. No __dirname.
const ESM_BANNER = "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);";

let packed: Map<string, Packed>;
let project: string;
const dirs: string[] = [];

function temp(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const key of Object.keys(e)) if (/^FOLK_/.test(key) && !(key in extra)) delete e[key];
  return e;
}

function run(cmd: string, args: string[], cwd: string, extra: NodeJS.ProcessEnv = {}) {
  return spawnSync(cmd, args, { cwd, env: env(extra), encoding: 'utf8', timeout: 120_000 });
}

/** Runs a bundler in the project; returns its output directory, moved to a fresh place with nothing else. */
function bundle(tool: string, args: string[]): string {
  const r = run(process.execPath, [tool, ...args], project);
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  const moved = join(temp('folk-bundle-'), 'app');
  cpSync(join(project, 'out'), moved, { recursive: true });
  rmSync(join(project, 'out'), { recursive: true, force: true });
  copyFileSync(join(here, 'bundle', 'worker.php'), join(moved, 'worker.php'));
  return moved;
}

function start(dir: string, entry: string, extra: NodeJS.ProcessEnv = {}) {
  return run(process.execPath, [entry, ...(hasPhp ? ['--php'] : [])], dir, extra);
}

/** The PHP library, copied as the README says: the package's whole php/ folder, to `dir`. */
function copyPhpLibrary(dir: string): void {
  cpSync(join(project, 'node_modules', '@folk', 'worker-spawn', 'php'), dir, { recursive: true });
}

/** Node would look for packages in these: none may exist above a bundle. */
function noNodeModulesAbove(dir: string): void {
  for (let d = dir; d !== '/'; d = join(d, '..')) expect(existsSync(join(d, 'node_modules')), d).toBe(false);
}

beforeAll(() => {
  packed = packAll(temp('folk-tarballs-'));
  // worker-spawn brings the other four with it, as from the registry.
  const noCompiler = noCompilerPath();
  dirs.push(noCompiler.path.split(':')[0]!);
  ({ project } = installAlone(packed, packed.get('@folk/worker-spawn')!, 'npm', 'blocked', { ...process.env, PATH: noCompiler.path }));
  dirs.push(project);
  copyFileSync(join(here, 'bundle', 'app.mjs'), join(project, 'app.mjs'));
});

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('esbuild', () => {
  it('CommonJS bundle: runs elsewhere, binaries copied beside it, php/ found beside it', () => {
    const out = bundle(esbuild, ['app.mjs', '--bundle', '--platform=node', '--format=cjs', '--loader:.node=copy', '--outdir=out']);
    noNodeModulesAbove(out);
    const binaries = readdirSync(out).filter((f) => f.endsWith('.node'));
    for (const name of ['socketpair', 'pidfd', 'fd-inherit', 'scm-rights']) {
      expect(binaries.some((f) => f.startsWith(`@folk+${name}.glibc-`))).toBe(true);
    }
    copyPhpLibrary(join(out, 'php'));
    const r = start(out, 'app.js');
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n').pop()).toBe('ok');
    if (hasPhp) expect(r.stdout).toContain('worker-spawn PHP worker: yes');
  });

  it('ES module bundle with the README banner (no __dirname): runs elsewhere, FOLK_PHP_WORKER_LIBRARY names the PHP library', () => {
    const out = bundle(esbuild, [
      'app.mjs',
      '--bundle',
      '--platform=node',
      '--format=esm',
      '--loader:.node=copy',
      '--outdir=out',
      '--out-extension:.js=.mjs',
      `--banner:js=${ESM_BANNER}`,
    ]);
    noNodeModulesAbove(out);
    const folder = join(temp('folk-php-'), 'php');
    copyPhpLibrary(folder);
    const r = start(out, 'app.mjs', { FOLK_PHP_WORKER_LIBRARY: join(folder, 'Worker.php') });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n').pop()).toBe('ok');
    if (hasPhp) expect(r.stdout).toContain('worker-spawn PHP worker: yes');
  });
});

describe('ncc', () => {
  it('ES module bundle: runs elsewhere, binaries relocated by ncc, php/ found beside it', () => {
    const out = bundle(ncc, ['build', 'app.mjs', '-o', 'out', '--quiet']);
    noNodeModulesAbove(out);
    const entry = readdirSync(out).find((f) => /^index\.(c|m)?js$/.test(f))!;
    copyPhpLibrary(join(out, 'php'));
    const r = start(out, entry);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n').pop()).toBe('ok');
    if (hasPhp) expect(r.stdout).toContain('worker-spawn PHP worker: yes');
  });
});

it('the bundled app covers every published package', () => {
  const app = spawnSync('grep', ['-o', "from '@folk/[a-z-]*", join(here, 'bundle', 'app.mjs')], { encoding: 'utf8' }).stdout;
  const used = new Set(app.split('\n').filter(Boolean).map((l) => l.replace("from '", '')));
  expect([...used].sort()).toEqual([...packed.keys()].sort());
});
