import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

import { fdTarget, openFds } from '@folk/test-support';
import { FRAME_HEADER_BYTES } from '../lib/index.js';

export { O_CLOEXEC, errorOf, fdFlags, openFds } from '@folk/test-support';

/** What an fd of ours points at (one argument, so it can be passed to map). */
export const target = (fd: number): string => fdTarget(fd);

/** A frame as FdSocket writes it on a stream socket: payload length, fd count (u32 LE), payload. */
export function frame(payload: string | Buffer, nfds: number): Buffer {
  const body = Buffer.from(payload);
  const head = Buffer.alloc(FRAME_HEADER_BYTES);
  head.writeUInt32LE(body.length, 0);
  head.writeUInt32LE(nfds, 4);
  return Buffer.concat([head, body]);
}

/** The built package, for child processes (which load it as users do). */
export const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run a program with `fd` as its fd 3 (the socket under test) and collect
 * its output. `onSpawn` may act while it runs.
 */
export async function runWithFd3(
  command: string,
  args: string[],
  fd: number,
  onSpawn?: (pid: number) => void | Promise<void>,
): Promise<Run> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe', fd] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = once(child, 'close');
  await onSpawn?.(child.pid!);
  const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  return { code, signal, stdout, stderr };
}

/** python3 -c `script` with the socket as fd 3. */
export async function python(script: string, fd: number): Promise<Run> {
  const r = await runWithFd3('python3', ['-c', script], fd);
  if (r.code !== 0) throw new Error(`python3 failed (${r.code ?? r.signal}): ${r.stderr}`);
  return r;
}

/**
 * Run `node -e` under RLIMIT_NOFILE 60 with a socketpair `[a, b]` of `type`
 * where `a` has sent one message carrying 40 fds and the process has room
 * for only 10 more. `receive` then runs with `b`, `count()` (open fds) and
 * `before` (the count just before it) in scope. Returns what it printed.
 */
export function runOutOfFds(type: string, receive: string): string {
  const script = `const fs = require('node:fs');
    const { FdSocket, recvFds, sendFds } = require(${JSON.stringify(DIST)});
    const { socketpair } = require('@folk/socketpair');
    const [a, b] = socketpair(${JSON.stringify(type)});
    const f = fs.openSync('/dev/null', 'r');
    sendFds(a, Buffer.from('x'), Array(40).fill(f));
    const held = [];
    try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch {}
    for (let i = 0; i < 10; i++) fs.closeSync(held.pop()); // room for 10 of the 40
    const count = () => fs.readdirSync('/proc/self/fd').length;
    const before = count();
    ${receive}`;
  return runLimited('-n 60', script);
}

/** `node -e script` from the package directory under `ulimit <limit>`; what it printed. */
export function runLimited(limit: string, script: string): string {
  return execFileSync('sh', ['-c', `ulimit ${limit} && exec "$0" -e "$1"`, process.execPath, script], {
    encoding: 'utf8',
    cwd: fileURLToPath(new URL('..', import.meta.url)),
  });
}

/**
 * SOL_SOCKET options (asm-generic numbers, as on x86-64 and arm64) that make
 * the kernel add a control message to every message a socket receives.
 */
export const PASS = { SO_PASSCRED: 16, SO_PASSSEC: 34, SO_PASSPIDFD: 76 } as const;

/**
 * setsockopt(fd, SOL_SOCKET, option, 1) for each option, through CPython
 * (Node has no setsockopt). Socket options belong to the socket, so the
 * child's copy of fd sets them for ours. False when the kernel does not know
 * one of them (ENOPROTOOPT: SO_PASSPIDFD before Linux 6.5).
 */
export function enableSocketOptions(fd: number, options: (keyof typeof PASS)[]): boolean {
  const r = spawnSync(
    'python3',
    [
      '-c',
      `import errno, socket, sys
s = socket.socket(fileno=3)
try:
    for opt in [${options.map((o) => PASS[o]).join(', ')}]:
        s.setsockopt(socket.SOL_SOCKET, opt, 1)
except OSError as e:
    if e.errno != errno.ENOPROTOOPT: raise
    print('unsupported')
finally:
    s.detach()`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe', fd], encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`python3 setsockopt failed: ${r.stderr}`);
  return r.stdout.trim() !== 'unsupported';
}

/** The fds of ours that are pidfds ("anon_inode:[pidfd]"). */
export function openPidFds(): string[] {
  return openFds().filter((f) => f.includes('pidfd'));
}
