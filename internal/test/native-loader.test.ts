// The loader every native package compiles in (internal/native-loader.ts),
// tried through each package's built dist/ in a child process: the escape
// hatch, the source build, and the error on a platform the package has no
// binary for. Needs `pnpm build` (the prebuilt binaries and dist/).
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { binaryEnvVar, detectLibc, libcFromMaps, platformKey } from '../native-loader.js';

const packages = fileURLToPath(new URL('../../packages/', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'folk-loader-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const NATIVE = [
  { dir: 'socketpair', target: 'socketpair', variable: 'FOLK_SOCKETPAIR_BINARY' },
  { dir: 'pidfd', target: 'pidfd', variable: 'FOLK_PIDFD_BINARY' },
  { dir: 'fd-inherit', target: 'fd_inherit', variable: 'FOLK_FD_INHERIT_BINARY' },
  { dir: 'scm-rights', target: 'scm_rights', variable: 'FOLK_SCM_RIGHTS_BINARY' },
];
const SHIPPED = ['linux-x64-glibc', 'linux-x64-musl', 'linux-arm64-glibc', 'linux-arm64-musl'];

const here = (): string => platformKey({ platform: process.platform, arch: process.arch, libc: detectLibc() });

/**
 * Requires a package's dist/ (after `preload`, if any) in a fresh Node and
 * reports what happened: the error's fields, or the .node files mapped into
 * the process once it loaded.
 */
function load(dir: string, env: NodeJS.ProcessEnv = {}, preload = ''): {
  ok: boolean;
  code?: string;
  message?: string;
  platform?: string;
  cause?: string;
  mapped?: string[];
} {
  const script = `${preload}
    try {
      require(${JSON.stringify(join(packages, dir, 'dist', 'index.js'))});
      const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');
      const mapped = [...new Set(maps.split('\\n').map((l) => l.split(/\\s+/)[5]).filter((f) => f && f.endsWith('.node')))];
      console.log(JSON.stringify({ ok: true, mapped }));
    } catch (e) {
      console.log(JSON.stringify({ ok: false, code: e.code, message: e.message, platform: e.platform, cause: e.cause && e.cause.message }));
    }`;
  const clean = { ...process.env };
  for (const n of NATIVE) delete clean[n.variable];
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...clean, ...env }, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout);
}

describe('libc detection', () => {
  it('reads glibc or musl off the libraries mapped into the process', () => {
    const glibc = [
      '7f1c2a000000-7f1c2a028000 r--p 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6',
      '7f1c2a200000-7f1c2a201000 r--p 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2',
    ].join('\n');
    const alpine = [
      '55d0c0000000-55d0c1000000 r-xp 00000000 00:2f 3 /usr/local/bin/node',
      '7f3b1e400000-7f3b1e4ab000 r-xp 00014000 00:2f 4 /lib/ld-musl-aarch64.so.1',
    ].join('\n');
    const old = '7f00-7f01 r-xp 00000000 08:01 5 /lib/x86_64-linux-gnu/libc-2.28.so';
    expect(libcFromMaps(glibc)).toBe('glibc');
    expect(libcFromMaps(alpine)).toBe('musl');
    expect(libcFromMaps(old)).toBe('glibc');
    expect(libcFromMaps('7f00-7f01 r-xp 00000000 08:01 5 /opt/lib/libcrypto.so.3')).toBe(undefined);
  });

  it('agrees with Node on this machine', () => {
    (process.report as { excludeNetwork?: boolean }).excludeNetwork = true;
    const header = process.report.getReport() as { header: { glibcVersionRuntime?: string } };
    expect(detectLibc()).toBe(header.header.glibcVersionRuntime ? 'glibc' : 'musl');
  });

  it('names one environment variable per package', () => {
    expect(NATIVE.map((n) => binaryEnvVar(`@folk/${n.dir}`))).toEqual(NATIVE.map((n) => n.variable));
  });
});

describe.each(NATIVE.map((n) => [n.dir, n] as const))('@folk/%s', (dir, { target, variable }) => {
  const prebuild = join(packages, dir, 'prebuilds', `${process.platform}-${process.arch}`, `@folk+${dir}.${detectLibc()}.node`);

  it('loads the prebuilt binary for this platform by default', () => {
    const r = load(dir);
    expect(r.ok).toBe(true);
    expect(r.mapped).toContain(prebuild);
  });

  it(`loads the binary ${variable} names instead, from anywhere`, () => {
    const elsewhere = join(tmp, `${dir}-elsewhere`);
    mkdirSync(elsewhere, { recursive: true });
    const copy = join(elsewhere, 'mine.node');
    copyFileSync(prebuild, copy);
    const r = load(dir, { [variable]: copy });
    expect(r.ok).toBe(true);
    expect(r.mapped).toContain(copy);
    expect(r.mapped).not.toContain(prebuild);
  });

  it(`fails with an error naming ${variable} when its file does not load`, () => {
    const missing = join(tmp, 'no-such-dir', `${dir}.node`);
    const r = load(dir, { [variable]: missing });
    expect(r.ok).toBe(false);
    expect(r.code).toBe('ERR_FOLK_BINARY_LOAD_FAILED');
    expect(r.message).toContain(`${variable}=${missing}`);
    expect(r.cause).toMatch(/No such file or directory/);

    // A file that is not a binary at all: the same, with dlopen's reason.
    const junk = join(tmp, `${dir}-junk.node`);
    writeFileSync(junk, 'not an ELF file');
    const bad = load(dir, { [variable]: junk });
    expect(bad.code).toBe('ERR_FOLK_BINARY_LOAD_FAILED');
    expect(bad.message).toContain(variable);
    expect(bad.cause).toMatch(/invalid ELF header|file too short/);
  });

  it('prefers a source build in src/build/Release over the prebuilt binary', () => {
    // A copy of the package as installed, with a source build beside it (the
    // prebuild stands in for the compiler's output: the same bytes).
    const pkg = join(tmp, `${dir}-installed`);
    mkdirSync(join(pkg, 'src', 'build', 'Release'), { recursive: true });
    for (const entry of ['dist', 'prebuilds', 'package.json']) cpSync(join(packages, dir, entry), join(pkg, entry), { recursive: true });
    symlinkSync(join(packages, dir, 'node_modules'), join(pkg, 'node_modules')); // fd-inherit's @folk/pidfd
    const built = join(pkg, 'src', 'build', 'Release', `${target}.node`);
    copyFileSync(prebuild, built);
    const script = `const maps = () => require('node:fs').readFileSync('/proc/self/maps', 'utf8');
      require(${JSON.stringify(join(pkg, 'dist', 'index.js'))});
      console.log(maps().includes(${JSON.stringify(built)}), maps().includes(${JSON.stringify(`@folk+${dir}.`)}));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('true false');
  });

  it('names the platform whose binary it tried: missing from the installation, or there but not loadable here', () => {
    // The other architecture's key is in the table; on this machine its
    // binary is either absent (a partial build) or present and refused by dlopen.
    const other = process.arch === 'x64' ? 'arm64' : 'x64';
    const key = `linux-${other}-${detectLibc()}`;
    const file = join(packages, dir, 'prebuilds', `linux-${other}`, `@folk+${dir}.${detectLibc()}.node`);
    const pidfd = join(packages, 'pidfd', 'prebuilds', `${process.platform}-${process.arch}`, `@folk+pidfd.${detectLibc()}.node`);
    const r = load(dir, dir === 'fd-inherit' ? { FOLK_PIDFD_BINARY: pidfd } : {}, `Object.defineProperty(process, 'arch', { value: '${other}' });`);
    expect(r.platform).toBe(key);
    if (existsSync(file)) {
      expect(r.code).toBe('ERR_FOLK_BINARY_LOAD_FAILED');
      expect(r.message).toContain(`the prebuilt binary for ${key} does not load`);
    } else {
      expect(r.code).toBe('ERR_FOLK_NO_BINARY');
      expect(r.message).toContain(`the prebuilt binary for ${key} is not in this installation`);
      expect(r.message).toContain('npx node-gyp rebuild --directory');
    }
  });

  it('on a platform it has no binary for, says which, what it has, and how to build it', () => {
    // fd-inherit loads @folk/pidfd first, which would fail the same way: its
    // variable names pidfd's binary for this machine.
    const pidfd = join(packages, 'pidfd', 'prebuilds', `${process.platform}-${process.arch}`, `@folk+pidfd.${detectLibc()}.node`);
    const dependency = dir === 'fd-inherit' ? { FOLK_PIDFD_BINARY: pidfd } : {};
    const r = load(dir, dependency, "Object.defineProperty(process, 'arch', { value: 'riscv64' });");
    expect(r.ok).toBe(false);
    expect(r.code).toBe('ERR_FOLK_NO_BINARY');
    const key = `linux-riscv64-${detectLibc()}`;
    expect(r.platform).toBe(key);
    const message = r.message!;
    expect(message).toContain(`@folk/${dir} has no binary for this platform: ${key} (platform linux, arch riscv64, libc ${detectLibc()})`);
    expect(message).toContain(`It ships prebuilt binaries for: ${SHIPPED.join(', ')}.`);
    const src = join(packages, dir, 'src');
    expect(message).toContain('npm install --no-save node-addon-api@^8 node-gyp@^12');
    expect(message).toContain(`npx node-gyp rebuild --directory ${JSON.stringify(src)}`);
    expect(message).toContain(join(src, 'build', 'Release', `${target}.node`));
    expect(message).toContain(`${variable}=/path/to/file.node`);
    // What the steps build from is there: the package's own build file.
    expect(readFileSync(join(src, 'binding.gyp'), 'utf8')).toContain(`"target_name": "${target}"`);

    const bsd = load(dir, dependency, "Object.defineProperty(process, 'platform', { value: 'freebsd' });");
    expect(bsd.code).toBe('ERR_FOLK_NO_BINARY');
    expect(bsd.platform).toBe(`freebsd-${process.arch}`);
    expect(bsd.message).toContain(`(platform freebsd, arch ${process.arch}, libc n/a)`);
  });
});

it('this machine is one the packages ship a binary for', () => {
  expect(SHIPPED).toContain(here());
});
