#!/usr/bin/env node
// Passing fds between two processes: how many per second, one fd per
// message, and how many fd-less messages per second.
//
//   node bench/scm-rights/index.mjs            (after `pnpm build`)
//
// Three sender/receiver pairs, each a pair of separate processes over one
// AF_UNIX SOCK_SEQPACKET socketpair made here:
//   node   @folk/scm-rights FdSocket -> FdSocket ('message' events, await send)
//   python CPython socket.send_fds -> socket.recv_fds (the peer with an fd API)
//   c      sendmsg -> recvmsg in a loop (the limit)
// plus the Node pair over a SOCK_STREAM socket (framed), for information.
// The receiver times from its first message to its last and closes every fd
// it gets, as a real receiver must. Each case runs RUNS times; the median is
// reported. Figures, not assertions.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..', '..', 'packages', 'scm-rights', 'dist', 'index.js');
const { socketpair } = await import(join(here, '..', '..', 'packages', 'socketpair', 'dist', 'index.js'));
const { closeSync } = await import('node:fs');

const N = Number(process.env.BENCH_N ?? 200_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

// --- the three implementations -------------------------------------------

const nodeSender = `
const fs = require('node:fs');
const { FdSocket } = require(${JSON.stringify(pkg)});
const [n, withFd] = [Number(process.argv[1]), process.argv[2] === '1'];
const s = new FdSocket(3);
const fd = fs.openSync('/dev/null', 'r');
const fds = withFd ? [fd] : [];
const data = Buffer.alloc(withFd ? 1 : 16, 120);
(async () => {
  for (let i = 0; i < n; i++) await s.send(data, fds);
  s.close();
})();
`;

const nodeReceiver = `
const fs = require('node:fs');
const { FdSocket } = require(${JSON.stringify(pkg)});
const [n, withFd] = [Number(process.argv[1]), process.argv[2] === '1'];
const s = new FdSocket(3);
let count = 0;
let start = 0n;
s.on('message', (m) => {
  if (count === 0) start = process.hrtime.bigint();
  for (const fd of m.fds) fs.closeSync(fd);
  if (withFd && m.fds.length !== 1) throw new Error('expected one fd');
  if (++count === n) {
    console.log(String(process.hrtime.bigint() - start));
    s.close();
  }
});
`;

const pySender = `
import os, socket, sys
n, with_fd = int(sys.argv[1]), sys.argv[2] == '1'
s = socket.socket(fileno=3)
fd = os.open('/dev/null', os.O_RDONLY)
fds = [fd] if with_fd else []
data = [b'x' * (1 if with_fd else 16)]
for _ in range(n):
    socket.send_fds(s, data, fds)
`;

const pyReceiver = `
import os, socket, sys, time
n, with_fd = int(sys.argv[1]), sys.argv[2] == '1'
s = socket.socket(fileno=3)
start = 0
for i in range(n):
    msg, fds, flags, addr = socket.recv_fds(s, 64, 1)
    if i == 0:
        start = time.perf_counter_ns()
    for fd in fds:
        os.close(fd)
    if with_fd and len(fds) != 1:
        raise SystemExit('expected one fd')
print(time.perf_counter_ns() - start)
`;

const cSource = `
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char** argv) {
  int n = atoi(argv[2]), with_fd = argv[3][0] == '1';
  char data[64];
  memset(data, 'x', sizeof data);
  size_t len = with_fd ? 1 : 16;
  union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } ctl;
  struct iovec iov = { data, with_fd ? len : sizeof data };
  struct msghdr msg;
  if (strcmp(argv[1], "send") == 0) {
    int fd = open("/dev/null", O_RDONLY);
    iov.iov_len = len;
    for (int i = 0; i < n; i++) {
      memset(&msg, 0, sizeof msg);
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      if (with_fd) {
        msg.msg_control = ctl.b;
        msg.msg_controllen = sizeof ctl.b;
        struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
      }
      if (sendmsg(3, &msg, MSG_NOSIGNAL) < 0) { perror("sendmsg"); return 1; }
    }
    return 0;
  }
  long long start = 0;
  for (int i = 0; i < n; i++) {
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.b;
    msg.msg_controllen = sizeof ctl.b;
    if (recvmsg(3, &msg, MSG_CMSG_CLOEXEC) < 0) { perror("recvmsg"); return 1; }
    if (i == 0) start = now();
    int got = 0;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_type == SCM_RIGHTS) { int fd; memcpy(&fd, CMSG_DATA(c), sizeof fd); close(fd); got++; }
    }
    if (with_fd && got != 1) { fprintf(stderr, "expected one fd\\n"); return 1; }
  }
  printf("%lld\\n", now() - start);
  return 0;
}
`;

// --- running --------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), 'scm-rights-bench-'));
const cBinary = join(work, 'scm_bench');
writeFileSync(join(work, 'scm_bench.c'), cSource);
execFileSync('cc', ['-O2', '-o', cBinary, join(work, 'scm_bench.c')]);

const impls = {
  node: { send: [process.execPath, ['-e', nodeSender]], recv: [process.execPath, ['-e', nodeReceiver]] },
  python: { send: ['python3', ['-c', pySender]], recv: ['python3', ['-c', pyReceiver]] },
  c: { send: [cBinary, ['send']], recv: [cBinary, ['recv']] },
};

function run([cmd, args], extra, fd) {
  const child = spawn(cmd, [...args, ...extra], { stdio: ['ignore', 'pipe', 'inherit', fd] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s) => (out += s));
  return new Promise((resolve, reject) =>
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}`)))),
  );
}

/** One timed transfer: messages per second as the receiver saw it. */
async function once(impl, type, withFd) {
  const [a, b] = socketpair(type);
  const extra = [String(N), withFd ? '1' : '0'];
  const recv = run(impls[impl].recv, extra, a);
  const send = run(impls[impl].send, extra, b);
  closeSync(a);
  closeSync(b);
  const [ns] = await Promise.all([recv, send]);
  return ((N - 1) * 1e9) / Number(ns.trim());
}

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const fmt = (x) => `${(x / 1000).toFixed(0)}k/s`.padStart(9);

const cases = [
  ['node', 'seqpacket'],
  ['python', 'seqpacket'],
  ['c', 'seqpacket'],
  ['node', 'stream'],
];

console.log(`scm-rights: ${N} messages per run, ${RUNS} runs, median; Node ${process.version}`);
const results = {};
for (const withFd of [true, false]) {
  for (const [impl, type] of cases) {
    const rates = [];
    for (let r = 0; r < RUNS; r++) rates.push(await once(impl, type, withFd));
    results[`${impl}/${type}/${withFd}`] = median(rates);
  }
}
rmSync(work, { recursive: true, force: true });

for (const [label, withFd] of [
  ['fds/s (one fd per message)', true],
  ['messages/s (16 bytes, no fds)', false],
]) {
  console.log(`\n${label}`);
  const c = results[`c/seqpacket/${withFd}`];
  const py = results[`python/seqpacket/${withFd}`];
  for (const [impl, type] of cases) {
    const v = results[`${impl}/${type}/${withFd}`];
    const name = { node: '@folk/scm-rights FdSocket', python: 'CPython send_fds/recv_fds', c: 'C sendmsg/recvmsg' }[impl];
    console.log(
      `  ${`${name} (${type})`.padEnd(44)}${fmt(v)}   ${(v / py).toFixed(2)}x CPython   ${(v / c).toFixed(2)}x C`,
    );
  }
}
