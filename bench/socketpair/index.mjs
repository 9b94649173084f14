// Figures, not assertions: how fast a connected AF_UNIX pair can be had.
//
//   @folk/socketpair   socketpair(2) through the N-API binding, then close both
//   node listen+connect  what Node offers without it: a UNIX server on a temp
//                      path, a client connecting to it, accept; then close all
//   CPython            socket.socketpair() + close, the usual peer
//   C                  socketpair(2) + close(2) in a loop: the limit
//
// Each runs ROUNDS rounds of N pairs; we print the median per-pair cost and
// its ratio to C. The machine is noisy (2 shared cores): read the medians.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { socketpair } from '../../packages/socketpair/dist/index.js';

const N = 20_000;
const ROUNDS = 7;
const work = mkdtempSync(join(tmpdir(), 'folk-bench-socketpair-'));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function folk() {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const [a, b] = socketpair('stream');
    closeSync(a);
    closeSync(b);
  }
  return Number(process.hrtime.bigint() - t0) / N;
}

async function nodeListenConnect() {
  const path = join(work, 'listen.sock');
  const server = net.createServer();
  await new Promise((resolve) => server.listen(path, resolve));
  const count = N / 20; // a round trip through the event loop per pair: far slower
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const accepted = new Promise((resolve) => server.once('connection', resolve));
    const client = net.connect(path);
    await new Promise((resolve) => client.once('connect', resolve));
    const peer = await accepted;
    client.destroy();
    peer.destroy();
  }
  const ns = Number(process.hrtime.bigint() - t0) / count;
  await new Promise((resolve) => server.close(resolve));
  return ns;
}

function python() {
  const code = `
import socket, time
n = ${N}
out = []
for _ in range(${ROUNDS}):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        a, b = socket.socketpair()
        a.close(); b.close()
    out.append((time.perf_counter_ns() - t0) / n)
print(" ".join(str(x) for x in out))
`;
  const r = spawnSync('python3', ['-c', code], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return r.stdout.trim().split(/\s+/).map(Number);
}

function c() {
  const src = join(work, 'pairs.c');
  const bin = join(work, 'pairs');
  writeFileSync(
    src,
    `#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(void) {
  for (int r = 0; r < ${ROUNDS}; r++) {
    double t0 = now();
    for (int i = 0; i < ${N}; i++) {
      int fds[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds)) return 1;
      close(fds[0]); close(fds[1]);
    }
    printf("%f ", (now() - t0) / ${N});
  }
  return 0;
}
`,
  );
  execFileSync('cc', ['-O2', '-o', bin, src]);
  return execFileSync(bin, { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
}

const rows = [];
const folkRuns = [];
const nodeRuns = [];
folk(); // warm up
for (let r = 0; r < ROUNDS; r++) {
  folkRuns.push(folk());
  nodeRuns.push(await nodeListenConnect());
}
const cRuns = c();
const pyRuns = python();
const limit = median(cRuns);
rows.push(['@folk/socketpair', median(folkRuns)]);
rows.push(['node listen+connect', median(nodeRuns)]);
if (pyRuns) rows.push(['CPython socket.socketpair', median(pyRuns)]);
rows.push(['C socketpair (limit)', limit]);

console.log(`socketpair: create + close one connected stream pair (median of ${ROUNDS} rounds; ${N} pairs a round, node listen+connect ${N / 20})`);
console.log('');
console.log('what'.padEnd(28) + 'per pair'.padStart(12) + 'pairs/s'.padStart(12) + '  vs C');
for (const [name, ns] of rows) {
  console.log(
    name.padEnd(28) +
      `${(ns / 1000).toFixed(2)} µs`.padStart(12) +
      Math.round(1e9 / ns).toLocaleString('en-US').padStart(12) +
      `  ${(ns / limit).toFixed(2)}x`,
  );
}
if (!pyRuns) console.log('(python3 not found: CPython row left out)');
rmSync(work, { recursive: true, force: true });
