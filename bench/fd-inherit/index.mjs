// Figures, not assertions: spawn-to-exit latency of /bin/true with an fd map
// ({3: a, 4: b}, stdin /dev/null), as the parent's resident memory grows.
//
//   @folk/fd-inherit   spawn() + await wait(): a vfork-style clone, no copy of the parent
//   child_process      child_process.spawn with the same map (stdioFromFdMap) + 'exit':
//                      libuv forks, so its page tables are copied
//   C posix_spawn      glibc posix_spawn (clone(CLONE_VM|CLONE_VFORK)) + waitpid in a
//                      loop, from a C process holding the same amount of memory: the limit
//
// For each size two long-lived processes hold that many GB, touched: a Node
// process that spawns both ways, and the C program. They spawn in short
// batches taken in turn (fd-inherit, C, child_process, fd-inherit, ...), so
// a burst of load from elsewhere on the machine lands on every contender
// alike instead of on whichever happened to run then; the ratios are what
// to read. "blocked" is how long the spawn call itself held the event loop,
// per spawn. Prints medians and ratios; asserts nothing. 2 shared cores.
//
//   node bench/fd-inherit/index.mjs            sizes 0 1 2 4 8 (GB)
//   node bench/fd-inherit/index.mjs 0 2        chosen sizes
//   node bench/fd-inherit/index.mjs --quick    size 0, a few batches: checks that it runs
import * as childProcess from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { freemem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const GB = 1024 ** 3;
const QUICK = process.argv.includes('--quick');
const WARMUP = 10; // spawns per contender before anything counts
const BATCH = 25; // spawns per turn for the fast contenders
const MAX_SAMPLES = QUICK ? 50 : 400;
const MIN_SAMPLES = QUICK ? 5 : 15; // the slow contender stops early, never below this
const BUDGET_MS = QUICK ? 300 : 4000; // per contender and size

const median = (xs) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : NaN);

/** Allocate and touch `sizeGb` GB, so it is resident, not just reserved. */
function holdMemory(sizeGb) {
  const hold = [];
  for (let left = sizeGb * GB; left > 0; left -= GB) {
    const buf = Buffer.allocUnsafeSlow(Math.min(left, GB));
    buf.fill(1);
    hold.push(buf);
  }
  return hold;
}

// ---------------------------------------------------------------------------
// The Node side: holds the memory, then answers "folk N" / "cp N" on stdin
// with one JSON line of N spawn-to-exit times and N blocked times (ms).

async function worker(sizeGb) {
  const { spawn, stdioFromFdMap } = await import('../../packages/fd-inherit/dist/index.js');
  const hold = holdMemory(sizeGb);
  const a = openSync('/dev/null', 'r');
  const b = openSync('/dev/null', 'r');
  const fds = { 3: a, 4: b };
  const stdio = stdioFromFdMap(fds, { stdin: 'ignore' });

  const methods = {
    async folk() {
      const t0 = performance.now();
      const child = spawn('/bin/true', [], { fds, stdin: 'ignore' });
      const t1 = performance.now();
      await child.wait();
      const t2 = performance.now();
      child.pidfd.close();
      return [t2 - t0, t1 - t0];
    },
    async cp() {
      const t0 = performance.now();
      const child = childProcess.spawn('/bin/true', [], { stdio });
      const t1 = performance.now();
      await new Promise((resolve) => child.once('exit', resolve));
      return [performance.now() - t0, t1 - t0];
    },
  };

  process.stdout.write(`${JSON.stringify({ rss: process.memoryUsage().rss })}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    const [name, count] = line.split(' ');
    const total = [];
    const blocked = [];
    for (let i = 0; i < Number(count); i++) {
      const [t, bl] = await methods[name]();
      total.push(t);
      blocked.push(bl);
    }
    process.stdout.write(`${JSON.stringify({ total, blocked })}\n`);
  }
  closeSync(a);
  closeSync(b);
  hold.length = 0;
}

// ---------------------------------------------------------------------------
// The limit: glibc posix_spawn + waitpid from a C process holding the same
// memory. Reads a count per line on stdin, answers with that many times (ms).

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
  printf("ready\\n");
  fflush(stdout);
  int rounds;
  while (scanf("%d", &rounds) == 1) {
    for (int i = 0; i < rounds; i++) {
      double t0 = now_ms();
      pid_t pid;
      if (posix_spawn(&pid, "/bin/true", &fa, NULL, args, environ) != 0) return 3;
      int status;
      waitpid(pid, &status, 0);
      printf(i ? " %.4f" : "%.4f", now_ms() - t0);
    }
    printf("\\n");
    fflush(stdout);
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

// ---------------------------------------------------------------------------
// The conductor.

/** A long-lived helper process spoken to one line at a time. */
function lineServer(file, args) {
  const child = childProcess.spawn(file, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  const next = async () => {
    const r = await Promise.race([lines.next(), exited.then((how) => ({ exited: how }))]);
    if (r.exited !== undefined || r.done) throw new Error(`${file} ended (${r.exited ?? 'EOF'})`);
    return r.value;
  };
  return {
    next,
    async ask(line) {
      child.stdin.write(`${line}\n`);
      return next();
    },
    async close() {
      child.stdin.end();
      await exited;
    },
  };
}

async function measureSize(sizeGb, cBin, self) {
  const node = lineServer(process.execPath, [self, '--worker', String(sizeGb)]);
  const c = cBin ? lineServer(cBin, [String(sizeGb * GB)]) : null;
  try {
    const { rss } = JSON.parse(await node.next());
    if (c) await c.next(); // "ready": its memory is touched

    const contenders = {
      folk: { total: [], blocked: [], spent: 0, batch: BATCH },
      cp: { total: [], blocked: [], spent: 0, batch: BATCH },
      c: { total: [], blocked: [], spent: 0, batch: BATCH },
    };
    const run = async (name, count) => {
      if (name === 'c') return { total: (await c.ask(String(count))).split(' ').map(Number), blocked: [] };
      return JSON.parse(await node.ask(`${name} ${count}`));
    };
    const names = c ? ['folk', 'c', 'cp'] : ['folk', 'cp'];
    for (const name of names) await run(name, WARMUP);

    const wanted = (k) => k.total.length < MIN_SAMPLES || (k.total.length < MAX_SAMPLES && k.spent < BUDGET_MS);
    while (names.some((n) => wanted(contenders[n]))) {
      for (const name of names) {
        const k = contenders[name];
        if (!wanted(k)) continue;
        const started = performance.now();
        const r = await run(name, Math.min(k.batch, MAX_SAMPLES - k.total.length));
        const took = performance.now() - started;
        k.spent += took;
        k.total.push(...r.total);
        k.blocked.push(...r.blocked);
        // A slow contender (child_process at several GB) takes small turns,
        // about 100 ms each, so the fast ones keep interleaving with it.
        k.batch = Math.max(1, Math.min(BATCH, Math.round((100 * r.total.length) / took)));
      }
    }
    const summary = (k) => ({ total: median(k.total), blocked: median(k.blocked), samples: k.total.length });
    return { sizeGb, rss, folk: summary(contenders.folk), cp: summary(contenders.cp), c: summary(contenders.c) };
  } finally {
    await Promise.all([node.close(), c?.close()]);
  }
}

async function main() {
  const sizes = process.argv.slice(2).filter((a) => a !== '--quick').map(Number);
  if (sizes.length === 0) sizes.push(...(QUICK ? [0] : [0, 1, 2, 4, 8]));
  const dir = mkdtempSync(join(tmpdir(), 'folk-bench-fd-inherit-'));
  const self = fileURLToPath(import.meta.url);
  try {
    const cBin = buildC(dir);
    const rows = [];
    for (const sizeGb of sizes) {
      // Both the Node process and the C program hold the memory at once.
      const need = sizeGb * GB * (cBin ? 2 : 1);
      if (need > freemem() * 0.9) {
        console.log(`${sizeGb} GB: skipped, needs ${(need / GB).toFixed(0)} GB, only ${(freemem() / GB).toFixed(1)} GB free`);
        continue;
      }
      try {
        const row = await measureSize(sizeGb, cBin, self);
        rows.push(row);
        console.error(`  ${sizeGb} GB done (samples: fd-inherit ${row.folk.samples}, C ${row.c.samples}, child_process ${row.cp.samples})`);
      } catch (err) {
        console.log(`${sizeGb} GB: failed: ${err.message}`);
      }
    }

    const f = (ms) => (Number.isNaN(ms) ? '   -  ' : ms.toFixed(3).padStart(7));
    const x = (r) => (Number.isFinite(r) ? `${r.toFixed(2)}x`.padStart(8) : '      - ');
    console.log(
      `\nspawn-to-exit of /bin/true with fds {3: a, 4: b}, stdin /dev/null; medians in ms, contenders interleaved` +
        `${QUICK ? ' (--quick: a smoke run, not figures)' : ''}\n`,
    );
    console.log(
      ' RSS GB | fd-inherit | child_process | C posix_spawn | fd-inherit/C | child_process/fd-inherit | blocked: fd-inherit | child_process',
    );
    for (const r of rows) {
      console.log(
        `${(r.rss / GB).toFixed(1).padStart(7)} | ${f(r.folk.total).padStart(10)} | ${f(r.cp.total).padStart(13)} | ` +
          `${f(r.c.total).padStart(13)} | ${x(r.folk.total / r.c.total).padStart(12)} | ${x(r.cp.total / r.folk.total).padStart(24)} | ` +
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
