// Figures, not assertions: spawn-to-exit latency of /bin/true with an fd map
// ({3: a, 4: b}, stdin /dev/null), as the parent's resident memory grows.
//
//   @folk/fd-inherit   spawn() + await wait(): a vfork-style clone, no copy of the parent
//   child_process      child_process.spawn with the same map (stdioFromFdMap) + 'exit':
//                      libuv forks, so its page tables are copied
//   C posix_spawn      glibc posix_spawn (clone(CLONE_VM|CLONE_VFORK)) + waitpid in a
//                      loop, from a C process holding the same amount of memory: the limit
//
// Each size runs in a fresh Node process that first allocates and touches
// that many GB with Buffer.alloc, so this script's own heap stays small.
// "blocked" is how long the spawn call itself held the event loop, per
// spawn. Prints medians and ratios; asserts nothing. 2 shared cores: noisy.
//
//   node bench/fd-inherit/index.mjs            sizes 0 1 2 4 8 (GB)
//   node bench/fd-inherit/index.mjs 0 2        chosen sizes
import * as childProcess from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { freemem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const GB = 1024 ** 3;
const WARMUP = 10;
const MAX_ROUNDS = 300;
const BUDGET_MS = 4000; // per method and size; slow methods stop early (at least MIN_ROUNDS)
const MIN_ROUNDS = 15;

const median = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : NaN);

// ---------------------------------------------------------------------------
// Worker: one size, both Node methods. Prints one JSON line.

async function worker(sizeGb) {
  const { spawn, stdioFromFdMap } = await import('../../packages/fd-inherit/dist/index.js');
  const hold = [];
  let left = sizeGb * GB;
  while (left > 0) {
    const chunk = Math.min(left, GB);
    const buf = Buffer.allocUnsafeSlow(chunk);
    buf.fill(1); // touch every page: resident, not just reserved
    hold.push(buf);
    left -= chunk;
  }
  const rss = process.memoryUsage().rss;

  const a = openSync('/dev/null', 'r');
  const b = openSync('/dev/null', 'r');
  const fds = { 3: a, 4: b };

  async function measure(once) {
    const total = [];
    const blocked = [];
    const started = performance.now();
    for (let i = 0; i < WARMUP + MAX_ROUNDS; i++) {
      const r = await once();
      if (i < WARMUP) continue;
      total.push(r.total);
      blocked.push(r.blocked);
      if (total.length >= MIN_ROUNDS && performance.now() - started > BUDGET_MS) break;
    }
    return { total: median(total), blocked: median(blocked), rounds: total.length };
  }

  const folk = await measure(async () => {
    const t0 = performance.now();
    const child = spawn('/bin/true', [], { fds, stdin: 'ignore' });
    const t1 = performance.now();
    await child.wait();
    const t2 = performance.now();
    child.pidfd.close();
    return { total: t2 - t0, blocked: t1 - t0 };
  });

  const stdio = stdioFromFdMap(fds, { stdin: 'ignore' });
  const cp = await measure(async () => {
    const t0 = performance.now();
    const child = childProcess.spawn('/bin/true', [], { stdio });
    const t1 = performance.now();
    await new Promise((resolve) => child.once('exit', resolve));
    const t2 = performance.now();
    return { total: t2 - t0, blocked: t1 - t0 };
  });

  closeSync(a);
  closeSync(b);
  process.stdout.write(`${JSON.stringify({ sizeGb, rss, folk, cp })}\n`);
  hold.length = 0;
}

// ---------------------------------------------------------------------------
// The C limit.

const C_SOURCE = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
int main(int argc, char **argv) {
  size_t bytes = strtoull(argv[1], NULL, 10);
  int rounds = atoi(argv[2]);
  if (bytes) { char *mem = malloc(bytes); if (!mem) return 2; memset(mem, 1, bytes); }
  int null0 = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int a = open("/dev/null", O_RDONLY | O_CLOEXEC), b = open("/dev/null", O_RDONLY | O_CLOEXEC);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, null0, 0);
  posix_spawn_file_actions_adddup2(&fa, a, 3);
  posix_spawn_file_actions_adddup2(&fa, b, 4);
  posix_spawn_file_actions_addclosefrom_np(&fa, 5);
  char *args[] = {"/bin/true", NULL};
  for (int i = 0; i < rounds; i++) {
    double t0 = now_ms();
    pid_t pid;
    if (posix_spawn(&pid, "/bin/true", &fa, NULL, args, environ) != 0) return 3;
    int status;
    waitpid(pid, &status, 0);
    printf("%.4f\\n", now_ms() - t0);
  }
  return 0;
}
`;

function buildC(dir) {
  const src = join(dir, 'spawn.c');
  const bin = join(dir, 'spawn');
  writeFileSync(src, C_SOURCE);
  const r = childProcess.spawnSync('cc', ['-O2', '-o', bin, src], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`cc failed, no C column:\n${r.stderr}`);
    return null;
  }
  return bin;
}

function runC(bin, sizeGb) {
  const r = childProcess.spawnSync(bin, [String(sizeGb * GB), String(WARMUP + 200)], { encoding: 'utf8' });
  if (r.status !== 0) return NaN;
  return median(r.stdout.trim().split('\n').map(Number).slice(WARMUP));
}

// ---------------------------------------------------------------------------

async function main() {
  const sizes = process.argv.slice(2).map(Number);
  if (sizes.length === 0) sizes.push(0, 1, 2, 4, 8);
  const dir = mkdtempSync(join(tmpdir(), 'folk-bench-fd-inherit-'));
  const self = fileURLToPath(import.meta.url);
  try {
    const cBin = buildC(dir);
    const rows = [];
    for (const sizeGb of sizes) {
      if (sizeGb * GB > freemem() * 0.9) {
        console.log(`${sizeGb} GB: skipped, only ${(freemem() / GB).toFixed(1)} GB free`);
        continue;
      }
      const r = childProcess.spawnSync(process.execPath, [self, '--worker', String(sizeGb)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 1 << 20,
      });
      if (r.status !== 0) {
        console.log(`${sizeGb} GB: worker failed (status ${r.status}, signal ${r.signal})`);
        continue;
      }
      const result = JSON.parse(r.stdout.trim().split('\n').pop());
      result.c = cBin ? runC(cBin, sizeGb) : NaN;
      rows.push(result);
      console.error(`  ${sizeGb} GB done (${result.folk.rounds} / ${result.cp.rounds} rounds)`);
    }

    const f = (ms) => (Number.isNaN(ms) ? '   -  ' : ms.toFixed(3).padStart(7));
    const x = (r) => (Number.isFinite(r) ? `${r.toFixed(2)}x`.padStart(8) : '      - ');
    console.log('\nspawn-to-exit of /bin/true with fds {3: a, 4: b}, stdin /dev/null; medians in ms\n');
    console.log(
      ' RSS GB | fd-inherit | child_process | C posix_spawn | fd-inherit/C | child_process/fd-inherit | blocked: fd-inherit | child_process',
    );
    for (const r of rows) {
      console.log(
        `${(r.rss / GB).toFixed(1).padStart(7)} | ${f(r.folk.total).padStart(10)} | ${f(r.cp.total).padStart(13)} | ` +
          `${f(r.c).padStart(13)} | ${x(r.folk.total / r.c).padStart(12)} | ${x(r.cp.total / r.folk.total).padStart(24)} | ` +
          `${f(r.folk.blocked).padStart(19)} | ${f(r.cp.blocked).padStart(13)}`,
      );
    }
    console.log('\n"blocked": time inside the synchronous spawn call, i.e. the event loop stopped, per spawn.');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--worker') await worker(Number(process.argv[3]));
else await main();
