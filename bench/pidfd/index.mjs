// Figures, not assertions: how soon a process's exit is known, and what one
// exit costs when many children are alive.
//
// Exit-notification latency: a `sleep` is killed with SIGKILL; the clock runs
// from just before the kill to the moment the waiter learns of the exit.
//   child_process 'exit'    Node's own way: libuv's SIGCHLD handler, waitpid
//   PidFd.wait()            @folk/pidfd, reap: true: uv_poll on the pidfd, then waitid(P_PIDFD)
//   CPython                 os.pidfd_open + poll + os.waitid(P_PIDFD), the usual peer
//   C                       pidfd_open + poll(2) + waitid(P_PIDFD): the limit
//
// Scaling: the same measurement with 1, 100 and 1,000 other children alive.
// libuv calls waitpid on every child it knows at each SIGCHLD, so with
// child_process each exit costs O(children); with PidFds only the pidfd that
// became readable wakes anyone. Besides the median latency we print the
// Node process's own CPU time (user + system) per exit, from kill to
// notification.
//
// The machine is noisy (2 shared cores): read the medians.
//
// `--quick` (node bench/pidfd/index.mjs --quick) runs every measurement a
// few times only, the same 1, 100 and 1,000 children included: a check that
// the benchmark works, not figures to quote.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PidFd } from '../../packages/pidfd/dist/index.js';

const QUICK = process.argv.includes('--quick');
const LATENCY_RUNS = QUICK ? 10 : 300;
const SCALING_RUNS = QUICK ? 5 : 100;
const WARMUP_RUNS = QUICK ? 2 : 20;
const work = mkdtempSync(join(tmpdir(), 'folk-bench-pidfd-'));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const now = () => process.hrtime.bigint();
const us = (ns) => Number(ns) / 1000;

/**
 * A child that is ours and that libuv does not reap: spawn it with
 * child_process and close libuv's process handle before the loop runs, so
 * libuv forgets the pid. (@folk/fd-inherit's spawn gives this directly.)
 */
function spawnUnreaped(command, args) {
  const child = spawn(command, args, { stdio: 'ignore' });
  child._handle.close();
  child._handle = null;
  return child.pid;
}

// Each measurement returns [latency ns, this process's CPU µs], both taken
// around the kill and the notification only: spawning is not counted, and
// the waiter is in place before the clock starts, as a supervisor's would be.
async function childProcessExit() {
  const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  const cpu = process.cpuUsage();
  const t0 = now();
  child.kill('SIGKILL');
  await exited;
  const dt = now() - t0;
  const used = process.cpuUsage(cpu);
  return [dt, used.user + used.system];
}

async function pidfdWait() {
  const p = PidFd.open(spawnUnreaped('sleep', ['1000']), { reap: true });
  const exited = p.wait();
  const cpu = process.cpuUsage();
  const t0 = now();
  p.kill('SIGKILL');
  await exited;
  const dt = now() - t0;
  const used = process.cpuUsage(cpu);
  p.close();
  return [dt, used.user + used.system];
}

/** Run `fn` `runs` times: [latencies in µs, CPU µs per run]. */
async function sample(fn, runs) {
  const lat = [];
  let cpu = 0;
  for (let i = 0; i < runs; i++) {
    const [ns, used] = await fn();
    lat.push(us(ns));
    cpu += used;
  }
  return [lat, cpu / runs];
}

function python(runs) {
  const code = `
import os, select, signal, subprocess, time
out = []
for _ in range(${runs}):
    p = subprocess.Popen(["sleep", "1000"])
    fd = os.pidfd_open(p.pid)
    t0 = time.perf_counter_ns()
    signal.pidfd_send_signal(fd, signal.SIGKILL)
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    poll.poll()
    os.waitid(os.P_PIDFD, fd, os.WEXITED)
    out.append((time.perf_counter_ns() - t0) / 1000)
    os.close(fd)
    p.returncode = -9  # reaped above; tell Popen so it does not wait again
print(" ".join(str(x) for x in out))
`;
  const r = spawnSync('python3', ['-c', code], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return r.stdout.trim().split(/\s+/).map(Number);
}

function c(runs) {
  const src = join(work, 'exit.c');
  const bin = join(work, 'exit');
  writeFileSync(
    src,
    `#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
extern char** environ;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(int argc, char** argv) {
  int runs = atoi(argv[1]);
  char* args[] = {"sleep", "1000", NULL};
  for (int i = 0; i < runs; i++) {
    pid_t pid;
    /* glibc's posix_spawn returns after the exec, like uv_spawn. */
    if (posix_spawnp(&pid, "sleep", NULL, NULL, args, environ) != 0) return 1;
    int fd = syscall(SYS_pidfd_open, pid, 0);
    double t0 = now();
    syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
    struct pollfd p = {fd, POLLIN, 0};
    poll(&p, 1, -1);
    siginfo_t si;
    waitid((idtype_t)P_PIDFD, fd, &si, WEXITED);
    printf("%.3f ", (now() - t0) / 1000);
    close(fd);
  }
  return 0;
}
`,
  );
  try {
    execFileSync('cc', ['-O2', '-o', bin, src], { stdio: 'pipe' });
  } catch {
    return null;
  }
  return execFileSync(bin, [String(runs)], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
}

// ---------------------------------------------------------------------------

async function scaling(others) {
  // child_process: the others are child_process children, known to libuv.
  const crowd = Array.from({ length: others }, () => spawn('sleep', ['1000'], { stdio: 'ignore' }));
  await Promise.all(crowd.map((c) => once(c, 'spawn')));
  const [cp, cpCpu] = await sample(childProcessExit, SCALING_RUNS);
  await Promise.all(crowd.map((c) => (c.kill('SIGKILL'), once(c, 'exit'))));

  // PidFd: the others are our children too, each with a pending wait.
  const handles = Array.from({ length: others }, () => PidFd.open(spawnUnreaped('sleep', ['1000']), { reap: true }));
  const waits = handles.map((p) => p.wait());
  const [pf, pfCpu] = await sample(pidfdWait, SCALING_RUNS);
  for (const p of handles) p.kill('SIGKILL');
  await Promise.all(waits);
  for (const p of handles) p.close();

  return { cp: median(cp), cpCpu, pf: median(pf), pfCpu };
}

const fmt = (x) => (x === null || x === undefined ? '     n/a' : x.toFixed(1).padStart(8));

if (QUICK) console.log('--quick: a few runs each, to see that the benchmark works; not figures to quote\n');
console.log(`exit-notification latency, SIGKILL to waiter (median of ${LATENCY_RUNS}, µs)\n`);
// Warm up the spawn paths and the JIT.
await sample(childProcessExit, WARMUP_RUNS);
await sample(pidfdWait, WARMUP_RUNS);
const cpLat = median((await sample(childProcessExit, LATENCY_RUNS))[0]);
const pfLat = median((await sample(pidfdWait, LATENCY_RUNS))[0]);
const pyRuns = python(LATENCY_RUNS);
const cRuns = c(LATENCY_RUNS);
const pyLat = pyRuns ? median(pyRuns) : null;
const cLat = cRuns ? median(cRuns) : null;
const vsC = (x) => (cLat && x !== null ? `${(x / cLat).toFixed(2)}x C` : '');
console.log(`  child_process 'exit'   ${fmt(cpLat)}   ${vsC(cpLat)}`);
console.log(`  PidFd.wait()           ${fmt(pfLat)}   ${vsC(pfLat)}   ('exit' / PidFd: ${(cpLat / pfLat).toFixed(2)}x)`);
console.log(`  CPython pidfd+poll     ${fmt(pyLat)}   ${vsC(pyLat)}`);
console.log(`  C pidfd+poll+waitid    ${fmt(cLat)}`);

console.log(`\none exit among N other live children (median latency µs of ${SCALING_RUNS}; mean Node CPU µs per exit)\n`);
console.log('       N   child_process: latency    cpu   PidFd: latency    cpu   latency ratio   cpu ratio');
for (const n of [1, 100, 1000]) {
  const r = await scaling(n);
  console.log(
    `  ${String(n).padStart(6)}   ${fmt(r.cp)}          ${fmt(r.cpCpu)}   ${fmt(r.pf)}  ${fmt(r.pfCpu)}   ${(r.cp / r.pf).toFixed(2).padStart(12)}x  ${(r.cpCpu / r.pfCpu).toFixed(2).padStart(9)}x`,
  );
}

rmSync(work, { recursive: true, force: true });
