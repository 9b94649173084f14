#!/usr/bin/env node
// The README's two commands start here. They must work on a fresh clone of a
// machine that has only Node, npm and a C++ toolchain, so this script first
// makes sure the pnpm pinned in package.json#packageManager is at hand
// (installing it with npm into .tools/ when it is not), then runs the job.
//
//   node scripts/with-pnpm.mjs demo   install, build, run examples/app-server --self-test
//   node scripts/with-pnpm.mjs test   install, build, typecheck, every test
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { packageManager } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const version = packageManager.replace(/^pnpm@/, '').replace(/\+.*$/, '');

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    console.error(`\n${cmd} ${args.join(' ')} failed (${r.signal ?? `exit ${r.status}`})`);
    process.exit(r.status ?? 1);
  }
}

function findPnpm() {
  const onPath = spawnSync('pnpm', ['--version'], { encoding: 'utf8' });
  if (onPath.status === 0 && onPath.stdout.trim() === version) return 'pnpm';
  const local = join(root, '.tools', `pnpm-${version}`);
  const bin = join(local, 'node_modules', '.bin', 'pnpm');
  if (!existsSync(bin)) {
    console.log(`> installing pnpm ${version} into .tools/ (npm)`);
    run('npm', ['install', '--prefix', local, '--no-save', '--no-audit', '--no-fund', `pnpm@${version}`]);
  }
  return bin;
}

const job = process.argv[2];
if (job !== 'demo' && job !== 'test') {
  console.error('usage: node scripts/with-pnpm.mjs demo|test');
  process.exit(2);
}

const pnpm = findPnpm();
// turbo looks pnpm up on PATH; it should find the same one.
if (pnpm !== 'pnpm') process.env.PATH = `${dirname(pnpm)}:${process.env.PATH}`;
process.env.TURBO_TELEMETRY_DISABLED = '1';
// Our own packages are built explicitly below (prebuildify), so no install
// script needs to run; this also keeps a dependency's script from running.
run(pnpm, ['install', '--frozen-lockfile', '--ignore-scripts']);
if (job === 'demo') {
  // The main job: the mini application server (Node HTTP in front of a pool
  // of PHP workers on fd 3/4) starts, serves a handful of requests, shows
  // them, and stops. Without php it says how to get it and runs Node workers.
  // It needs only this machine's prebuild, built with its own compiler (the
  // other three need the cross toolchains that `npm test` checks them with).
  const libc = process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
  process.env.FOLK_PREBUILD_TARGETS ??= `${process.platform}-${process.arch}-${libc}`;
  run(pnpm, ['exec', 'turbo', 'run', 'build', '--filter', '@folk/example-app-server...', '--output-logs=errors-only']);
  run(process.execPath, [join(root, 'examples', 'app-server', 'index.mjs'), '--self-test']);
} else {
  run(pnpm, ['exec', 'turbo', 'run', 'build', 'typecheck', '--output-logs=errors-only']);
  // Every test, then one plain closing line that any CI can read.
  const results = join(root, 'node_modules', '.vitest-results.json');
  const r = spawnSync(
    pnpm,
    ['exec', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${results}`],
    { cwd: root, stdio: 'inherit', env: process.env },
  );
  if (existsSync(results)) {
    const { numPassedTests, numFailedTests, numPendingTests, numTodoTests } = JSON.parse(readFileSync(results, 'utf8'));
    console.log(`\nvitest: ${numPassedTests} passed, ${numFailedTests} failed, ${numPendingTests + numTodoTests} skipped`);
  }
  process.exit(r.status ?? 1);
}
