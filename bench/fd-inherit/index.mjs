// Figures, not assertions: spawn-to-exit latency of /bin/true with an fd map
// ({3: a, 4: b}, stdin /dev/null), as the parent's resident memory grows.
//
//   @folk/fd-inherit   spawn() + await wait(): a vfork-style clone, no copy of the parent
//   fd-inherit ns      the same with new user, pid, mount and net namespaces (uid and gid
//                      maps to our own ids, as unshare --map-root-user writes them, and
//                      private mount propagation; no new /proc): the clone without
//                      CLONE_VFORK and the parent writing the maps
//   child_process      child_process.spawn with the same map (stdioFromFdMap) + 'exit':
//                      libuv forks, so its page tables are copied
//   C posix_spawn      glibc posix_spawn (clone(CLONE_VM|CLONE_VFORK)) + waitpid in a
//                      loop, from a C process holding the same amount of memory: the limit
//
// and, for the namespaced spawn, the usual way to get the same namespaces:
//
//   unshare(1) from C  the C program above, posix_spawn of
//                      unshare --user --map-root-user --pid --mount --net --fork /bin/true
//                      (unshare makes the namespaces, writes the maps, forks, execs);
//                      this C process holds no memory, so the figure is unshare's own
//   child_process      child_process.spawn('unshare', the same arguments) + 'exit'
//     unshare
//
// For each size two long-lived processes hold that many GB, touched: a Node
// process that spawns every way, and the C program. They spawn in short
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
/** unshare(1) making what fd-inherit ns makes: the program runs in the new pid namespace only through --fork. */
const UNSHARE_ARGS = ['--user', '--map-root-user', '--pid', '--mount', '--net', '--fork', '/bin/true'];
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

  const folk = async (options) => {
    const t0 = performance.now();
    const child = spawn('/bin/true', [], options);
    const t1 = performance.now();
    await child.wait();
    const t2 = performance.now();
    child.pidfd.close();
    return [t2 - t0, t1 - t0];
  };
  const cp = async (file, args) => {
    const t0 = performance.now();
    const child = childProcess.spawn(file, args, { stdio });
    const t1 = performance.now();
    await new Promise((resolve) => child.once('exit', resolve));
    return [performance.now() - t0, t1 - t0];
  };
  const isolated = {
    namespaces: { user: true, pid: true, mount: true, net: true },
    uidMap: [{ inside: 0, outside: process.getuid(), count: 1 }],
    gidMap: [{ inside: 0, outside: process.getgid(), count: 1 }],
    mountProc: false,
  };
  const methods = {
    folk: () => folk({ fds, stdin: 'ignore' }),
    folkNs: () => folk({ fds, stdin: 'ignore', ...isolated }),
    cp: () => cp('/bin/true', []),
    cpUnshare: () => cp('unshare', UNSHARE_ARGS),
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
  (void)argc;
  size_t bytes = strtoull(argv[1], NULL, 10);
  char **args = argv + 2; /* the program to spawn, and its arguments */
  if (bytes) { char *mem = malloc(bytes); if (!mem) return 2; memset(mem, 1, bytes); }
  int null0 = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int a = open("/dev/null", O_RDONLY | O_CLOEXEC), b = open("/dev/null", O_RDONLY | O_CLOEXEC);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, null0, 0);
  posix_spawn_file_actions_adddup2(&fa, a, 3);
  posix_spawn_file_actions_adddup2(&fa, b, 4);
  posix_spawn_file_actions_addclosefrom_np(&fa, 5);
  printf("ready\\n");
  fflush(stdout);
  int rounds;
  while (scanf("%d", &rounds) == 1) {
    for (int i = 0; i < rounds; i++) {
      double t0 = now_ms();
      pid_t pid;
      if (posix_spawnp(&pid, args[0], &fa, NULL, args, environ) != 0) return 3;
      int status;
      waitpid(pid, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 4;
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

/** Every contender, in the order they take turns: run by the Node worker, or by a C program (C_RUN). */
const CONTENDERS = ['folk', 'c', 'cp', 'folkNs', 'cUnshare', 'cpUnshare'];
const C_RUN = ['c', 'cUnshare'];

async function measureSize(sizeGb, cBin, self) {
  const node = lineServer(process.execPath, [self, '--worker', String(sizeGb)]);
  const cPrograms = cBin
    ? { c: lineServer(cBin, [String(sizeGb * GB), '/bin/true']), cUnshare: lineServer(cBin, ['0', 'unshare', ...UNSHARE_ARGS]) }
    : {};
  try {
    const { rss } = JSON.parse(await node.next());
    for (const c of Object.values(cPrograms)) await c.next(); // "ready": its memory is touched

    const run = async (name, count) => {
      const c = cPrograms[name];
      if (c) return { total: (await c.ask(String(count))).split(' ').map(Number), blocked: [] };
      return JSON.parse(await node.ask(`${name} ${count}`));
    };
    const names = CONTENDERS.filter((n) => !C_RUN.includes(n) || cPrograms[n]);
    const contenders = Object.fromEntries(names.map((n) => [n, { total: [], blocked: [], spent: 0, batch: BATCH }]));
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
    const row = { sizeGb, rss };
    for (const name of CONTENDERS) {
      const k = contenders[name] ?? { total: [], blocked: [] };
      row[name] = { total: median(k.total), blocked: median(k.blocked), samples: k.total.length };
    }
    return row;
  } finally {
    await Promise.all([node.close(), ...Object.values(cPrograms).map((c) => c.close())]);
  }
}

const f = (ms) => (Number.isNaN(ms) ? '   -  ' : ms.toFixed(3).padStart(7));
const x = (r) => (Number.isFinite(r) ? `${r.toFixed(2)}x`.padStart(8) : '      - ');

/** A table: each column a header and how a row shows it. */
function table(rows, columns) {
  console.log(columns.map(([head]) => head).join(' | '));
  for (const r of rows) console.log(columns.map(([head, cell]) => cell(r).padStart(head.length)).join(' | '));
}

function report(rows) {
  const note = QUICK ? ' (--quick: a smoke run, not figures)' : '';
  console.log(`\nspawn-to-exit of /bin/true with fds {3: a, 4: b}, stdin /dev/null; medians in ms, contenders interleaved${note}\n`);
  table(rows, [
    [' RSS GB', (r) => (r.rss / GB).toFixed(1)],
    ['fd-inherit', (r) => f(r.folk.total)],
    ['fd-inherit ns', (r) => f(r.folkNs.total)],
    ['child_process', (r) => f(r.cp.total)],
    ['C posix_spawn', (r) => f(r.c.total)],
    ['fd-inherit/C', (r) => x(r.folk.total / r.c.total)],
    ['child_process/fd-inherit', (r) => x(r.cp.total / r.folk.total)],
    ['blocked: fd-inherit', (r) => f(r.folk.blocked)],
    ['fd-inherit ns', (r) => f(r.folkNs.blocked)],
    ['child_process', (r) => f(r.cp.blocked)],
  ]);
  console.log(`\nnew user, pid, mount and net namespaces (maps to our own ids, private propagation), spawn-to-exit of /bin/true; medians in ms${note}\n`);
  table(rows, [
    [' RSS GB', (r) => (r.rss / GB).toFixed(1)],
    ['fd-inherit ns', (r) => f(r.folkNs.total)],
    ['unshare(1) from C', (r) => f(r.cUnshare.total)],
    ['child_process unshare', (r) => f(r.cpUnshare.total)],
    ['fd-inherit ns/plain', (r) => x(r.folkNs.total / r.folk.total)],
    ['unshare from C/fd-inherit ns', (r) => x(r.cUnshare.total / r.folkNs.total)],
    ['child_process unshare/fd-inherit ns', (r) => x(r.cpUnshare.total / r.folkNs.total)],
  ]);
  console.log('\n"blocked": time inside the synchronous spawn call, i.e. the event loop stopped, per spawn.');
  console.log('unshare(1) from C: its C program holds no memory; unshare forks once more for the new pid namespace.');
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
        const samples = CONTENDERS.map((n) => `${n} ${row[n].samples}`).join(', ');
        console.error(`  ${sizeGb} GB done (samples: ${samples})`);
      } catch (err) {
        console.log(`${sizeGb} GB: failed: ${err.message}`);
      }
    }
    report(rows);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--worker') await worker(Number(process.argv[3]));
else await main();
