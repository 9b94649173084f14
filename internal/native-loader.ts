// How each native package finds its binary, written once for all four.
//
// internal/ holds TypeScript that several packages compile into their own
// dist/. It is not a package: scripts/sync-internal.mjs copies the modules a
// package's lib/ imports (`./internal/<name>.js`) into its lib/internal/ (a
// gitignored copy) before tsc runs, so every tarball carries its own compiled
// copy and installs alone. Edit the files here, never the copies.
//
// The order, first match wins:
//   1. FOLK_<NAME>_BINARY=/path/to/file.node: the escape hatch for bundles and
//      anything else; a file that fails to load is an error naming the variable.
//   2. A source build, src/build/Release/<target>.node (`node-gyp rebuild` in
//      the package's src/, as the unsupported-platform error says): someone
//      built it on purpose, so it wins over the prebuilt binary, as
//      node-gyp-build's build/ does.
//   3. The prebuilt binary for `${platform}-${arch}-${libc}`, required by a
//      literal path in the package's lib/native.ts so bundlers copy it.
//   4. Nothing fits: one error with the platform, the binaries the package
//      has, and the commands that build it from source.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export type Libc = 'glibc' | 'musl';

/** What the binary must match: `process.platform`, `process.arch` and, on Linux, the C library. */
export interface Host {
  platform: string;
  arch: string;
  libc: Libc | undefined;
}

/**
 * The prebuilt binaries every native package ships, built by `pnpm build`:
 * prebuilds/<platform>-<arch>/@folk+<name>.<libc>.node.
 */
export const PREBUILT: readonly string[] = ['linux-x64-glibc', 'linux-x64-musl', 'linux-arm64-glibc', 'linux-arm64-musl'];

export interface NativePackage {
  /** The npm name, e.g. `@folk/pidfd`. */
  name: string;
  /** binding.gyp's target_name: a source build is src/build/Release/<target>.node. */
  target: string;
  /**
   * `require()`s the prebuilt binary for a key of PREBUILT; undefined for
   * another key. Each path is a string literal, so that bundlers (esbuild's
   * .node loader, ncc) find and copy every binary, and only the one that
   * matches is loaded. The requires sit inside `try`: there a bundler leaves
   * one it cannot resolve (a binary that a partial build lacks) to fail at
   * run time, where loadNative reports it missing, instead of failing the
   * whole bundle.
   */
  requirePrebuild(key: string): unknown;
  /** The package's directory; by default two levels above this file (lib/internal/ or dist/internal/). */
  dir?: string | undefined;
}

// No __dirname in an ES module bundle; in any bundle it is the bundle's, which
// packageDir() then sees is not the package's.
const ownDir = typeof __dirname === 'string' ? join(__dirname, '..', '..') : undefined;

/** `FOLK_PIDFD_BINARY` for `@folk/pidfd`, `FOLK_FD_INHERIT_BINARY` for `@folk/fd-inherit`. */
export function binaryEnvVar(name: string): string {
  return `FOLK_${name.replace(/^@folk\//, '').replace(/[^A-Za-z0-9]/g, '_').toUpperCase()}_BINARY`;
}

/** `linux-x64-glibc`, `linux-arm64-musl`; `darwin-arm64` where there is no libc to tell. */
export function platformKey(host: Host): string {
  return `${host.platform}-${host.arch}${host.libc ? `-${host.libc}` : ''}`;
}

/**
 * The C library this process runs on, from the libraries mapped into it
 * (/proc/self/maps: musl's loader is its libc, ld-musl-<arch>.so.1; glibc's
 * is libc.so.6). That reads under a millisecond, where Node's own answer,
 * process.report's glibcVersionRuntime, builds a whole diagnostic report
 * (5 ms here); the report is the fallback when /proc cannot tell.
 */
export function libcFromMaps(maps: string): Libc | undefined {
  if (/\/(ld-musl-[^/\s]+\.so\.1|libc\.musl-[^/\s]+\.so\.1)$/m.test(maps)) return 'musl';
  if (/\/libc(\.so\.6|-2\.\d+\.so)$/m.test(maps)) return 'glibc';
  return undefined;
}

let detected: Libc | undefined;

export function detectLibc(): Libc {
  if (detected) return detected;
  let libc: Libc | undefined;
  try {
    libc = libcFromMaps(readFileSync('/proc/self/maps', 'latin1'));
  } catch {
    // No /proc: ask Node.
  }
  if (!libc) {
    const report = process.report as NodeJS.ProcessReport & { excludeNetwork?: boolean };
    const excluded = report.excludeNetwork;
    report.excludeNetwork = true; // no DNS lookups for the report's network section
    try {
      const header = (report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
      libc = header?.glibcVersionRuntime ? 'glibc' : 'musl';
    } finally {
      report.excludeNetwork = excluded;
    }
  }
  detected = libc;
  return libc;
}

export function currentHost(): Host {
  const { platform, arch } = process;
  return { platform, arch, libc: platform === 'linux' ? detectLibc() : undefined };
}

function loaderError(code: string, message: string, extra: Record<string, unknown> = {}, cause?: unknown): Error {
  const err = new Error(message, cause === undefined ? undefined : { cause });
  Object.assign(err, { code, ...extra });
  return err;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** dlopen a binary named by a path (never through require, which a bundler would try to follow). */
function dlopen(file: string): unknown {
  const module = { exports: {} };
  process.dlopen(module, file);
  return module.exports;
}

/** The package's directory, when this is the package (its package.json names it) and not a bundle. */
function packageDir(pkg: Pick<NativePackage, 'name' | 'dir'>): string | undefined {
  const dir = 'dir' in pkg ? pkg.dir : ownDir;
  if (!dir) return undefined;
  try {
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown };
    return manifest.name === pkg.name ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** The commands that build the binary from the package's own src/. */
export function sourceBuildSteps(pkg: Pick<NativePackage, 'name' | 'target' | 'dir'>): string {
  const dir = packageDir(pkg);
  const src = dir ? join(dir, 'src') : `node_modules/${pkg.name}/src`;
  return [
    `  # a C++17 compiler, make and python3 (Debian: apt-get install g++ make python3), then in your project:`,
    `  npm install --no-save node-addon-api@^8 node-gyp@^12`,
    `  npx node-gyp rebuild --directory ${JSON.stringify(src)}`,
    `It is then loaded from ${join(src, 'build', 'Release', `${pkg.target}.node`)}`,
    `(from a bundle: set ${binaryEnvVar(pkg.name)} to that file).`,
  ].join('\n');
}

/** Loads the package's binary; see the order at the top of this file. */
export function loadNative(pkg: NativePackage, host: Host = currentHost(), env: NodeJS.ProcessEnv = process.env): unknown {
  const variable = binaryEnvVar(pkg.name);
  const named = env[variable];
  if (named) {
    const file = resolve(named);
    try {
      return dlopen(file);
    } catch (err) {
      throw loaderError(
        'ERR_FOLK_BINARY_LOAD_FAILED',
        `${pkg.name}: ${variable}=${named} names a binary that does not load (${file}): ${describe(err)}`,
        { path: file },
        err,
      );
    }
  }

  const dir = packageDir(pkg);
  const src = dir && join(dir, 'src', 'build');
  const built = src && join(src, 'Release', `${pkg.target}.node`);
  if (built && existsSync(built)) {
    try {
      return dlopen(built);
    } catch (err) {
      throw loaderError(
        'ERR_FOLK_BINARY_LOAD_FAILED',
        `${pkg.name}: the source build ${built} does not load: ${describe(err)}\n` +
          `Rebuild it, or delete ${src} to use the prebuilt binary.`,
        { path: built },
        err,
      );
    }
  }

  const key = platformKey(host);
  if (PREBUILT.includes(key)) {
    try {
      return pkg.requirePrebuild(key);
    } catch (err) {
      if ((err as NodeJS.ErrnoException)?.code !== 'MODULE_NOT_FOUND') {
        throw loaderError(
          'ERR_FOLK_BINARY_LOAD_FAILED',
          `${pkg.name}: the prebuilt binary for ${key} does not load: ${describe(err)}`,
          { platform: key },
          err,
        );
      }
      throw loaderError(
        'ERR_FOLK_NO_BINARY',
        `${pkg.name}: the prebuilt binary for ${key} is not in this installation (${describe(err).split('\n')[0]}).\n` +
          `In a bundle, copy it beside the bundle (see "Bundling" in the README) or set ${variable}=/path/to/file.node.\n` +
          `Or build it from source:\n${sourceBuildSteps(pkg)}`,
        { platform: key },
        err,
      );
    }
  }
  throw loaderError(
    'ERR_FOLK_NO_BINARY',
    `${pkg.name} has no binary for this platform: ${key} (platform ${host.platform}, arch ${host.arch}, ` +
      `libc ${host.libc ?? 'n/a'}).\nIt ships prebuilt binaries for: ${PREBUILT.join(', ')}.\n` +
      `Build it from source (binding.gyp and the C++ sources are in the package's src/):\n${sourceBuildSteps(pkg)}\n` +
      `Or set ${variable}=/path/to/file.node to load a binary built elsewhere.`,
    { platform: key },
  );
}
