// What a user gets from the registry: each publishable package packed with
// `pnpm pack` (which rewrites workspace: ranges to real versions), and a
// fresh project that installs one tarball the way a user would.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Packed {
  name: string; // @folk/socketpair
  dir: string; // socketpair
  tarball: string;
  manifest: { dependencies?: Record<string, string> };
  files: string[]; // paths inside the tarball, without the leading "package/"
}

/** pnpm: the one on PATH (the README's commands put the pinned one there) or the pinned one in .tools/. */
export function pnpmBin(): string {
  const { packageManager } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
  const version = String(packageManager).replace(/^pnpm@/, '');
  const local = join(repoRoot, '.tools', `pnpm-${version}`, 'node_modules', '.bin', 'pnpm');
  if (existsSync(local)) return local;
  return 'pnpm';
}

export function packAll(dest: string): Map<string, Packed> {
  const packed = new Map<string, Packed>();
  for (const dir of readdirSync(join(repoRoot, 'packages'))) {
    const pkgDir = join(repoRoot, 'packages', dir);
    if (!existsSync(join(pkgDir, 'package.json'))) continue;
    const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
    if (manifest.private) continue;
    const out = execFileSync(pnpmBin(), ['pack', '--pack-destination', dest], { cwd: pkgDir, encoding: 'utf8' });
    const tarball = out.trim().split('\n').pop()!.trim();
    const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map((f) => f.replace(/^package\//, ''));
    const packedManifest = JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' }));
    packed.set(manifest.name, { name: manifest.name, dir, tarball, manifest: packedManifest, files });
  }
  return packed;
}

/**
 * A directory of stand-ins for every compiler and build tool node-gyp could
 * reach for. Each one records that it was called and fails loudly, so an
 * install that tries to compile is caught, never silently satisfied.
 */
export function noCompilerPath(): { path: string; log: string } {
  const dir = mkdtempSync(join(tmpdir(), 'folk-nocc-'));
  const log = join(dir, 'calls.log');
  writeFileSync(log, '');
  for (const tool of ['cc', 'c++', 'gcc', 'g++', 'clang', 'clang++', 'make', 'gmake', 'python', 'python3']) {
    const shim = join(dir, tool);
    writeFileSync(
      shim,
      `#!/bin/sh\necho "${tool} $*" >> '${log}'\necho "e2e: '${tool}' was run during an install that must not compile" >&2\nexit 127\n`,
    );
    chmodSync(shim, 0o755);
  }
  return { path: `${dir}${delimiter}${process.env.PATH}`, log };
}

export type Installer = 'npm' | 'pnpm';
export type Scripts = 'blocked' | 'approved' | 'ignored';

/**
 * A fresh directory holding `pkg`'s tarball and those of the @folk/ packages
 * it depends on (a user gets those from the registry), each named relative to
 * it: `self` and `siblings` are `file:` specs for a manifest.
 */
export function projectWith(
  packed: Map<string, Packed>,
  pkg: Packed,
  prefix: string,
): { project: string; self: string; siblings: Record<string, string> } {
  const project = mkdtempSync(join(tmpdir(), prefix));
  const local = (p: Packed) => {
    copyFileSync(p.tarball, join(project, basename(p.tarball)));
    return `file:${basename(p.tarball)}`;
  };
  const siblings: Record<string, string> = {};
  const visit = (p: Packed) => {
    for (const dep of Object.keys(p.manifest.dependencies ?? {})) {
      const sib = packed.get(dep);
      if (sib && !siblings[dep]) {
        siblings[dep] = local(sib);
        visit(sib);
      }
    }
  };
  visit(pkg);
  return { project, self: local(pkg), siblings };
}

/**
 * A fresh project depending on `pkg` alone (plus the tarballs of its @folk/
 * dependencies, which a user would get from the registry), installed with
 * `installer` on a PATH where no compiler runs.
 */
export function installAlone(
  packed: Map<string, Packed>,
  pkg: Packed,
  installer: Installer,
  scripts: Scripts,
  env: NodeJS.ProcessEnv,
  extraArgs: string[] = [],
): { project: string; output: string } {
  const { project, self, siblings } = projectWith(packed, pkg, `folk-e2e-${pkg.dir}-${installer}-${scripts}-`);
  const manifest: Record<string, unknown> = {
    name: 'folk-consumer',
    private: true,
    version: '1.0.0',
    dependencies: { [pkg.name]: self },
  };
  const builds = [`${pkg.name}@${self}`, ...Object.entries(siblings).map(([n, spec]) => `${n}@${spec}`)];
  if (installer === 'npm') {
    manifest.overrides = siblings;
    if (scripts === 'approved') manifest.allowScripts = Object.fromEntries([pkg.name, ...Object.keys(siblings)].map((n) => [n, true]));
  } else {
    // pnpm reads its settings from pnpm-workspace.yaml (JSON is YAML). It
    // approves a tarball dependency's build by its full spec.
    const settings = { overrides: siblings, ...(scripts === 'approved' ? { onlyBuiltDependencies: builds } : {}) };
    writeFileSync(join(project, 'pnpm-workspace.yaml'), JSON.stringify(settings, null, 2));
  }
  writeFileSync(join(project, 'package.json'), JSON.stringify(manifest, null, 2));
  const args =
    installer === 'npm'
      ? ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts']
      : ['install', '--prefer-offline', '--reporter=append-only', '--config.side-effects-cache=false'];
  if (scripts === 'ignored') args.push('--ignore-scripts');
  args.push(...extraArgs);
  const bin = installer === 'npm' ? 'npm' : pnpmBin();
  const r = spawnSync(bin, args, { cwd: project, env, encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`${installer} ${args.join(' ')} failed in ${project}:\n${r.stdout}\n${r.stderr}`);
  }
  return { project, output: `${r.stdout}\n${r.stderr}` };
}
