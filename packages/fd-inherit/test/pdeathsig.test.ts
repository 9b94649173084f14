// pdeathsig: a child dies with the process (or thread) that spawned it.
import * as childProcess from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { describe, expect, it, onTestFinished } from 'vitest';
import { PidFd } from '@folk/pidfd';
import { DIST, requireDist } from './helpers.js';
import { spawn, type Subprocess } from '../lib/index.js';
import { native } from '../lib/native.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** Lines from a stream as they come. */
function lines(stream: Readable): AsyncIterator<string> {
  stream.setEncoding('utf8');
  let buffered = '';
  const queue: string[] = [];
  const source = stream[Symbol.asyncIterator]();
  return {
    async next() {
      for (;;) {
        if (queue.length) return { value: queue.shift()!, done: false };
        const chunk = await source.next();
        if (chunk.done) return { value: undefined, done: true };
        buffered += chunk.value as string;
        const parts = buffered.split('\n');
        buffered = parts.pop()!;
        queue.push(...parts);
      }
    },
  };
}

/** The pid of a child of `pid` that has exited and was not reaped, once there is one. */
async function exitedChildOf(pid: number): Promise<number> {
  for (;;) {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ').filter(Boolean);
    for (const kid of kids) {
      const stat = readFileSync(`/proc/${kid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return Number(kid);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A child that must not outlive the test, should the check under test be broken. */
function killWhenTestEnds(child: Subprocess): void {
  onTestFinished(() => {
    try {
      child.kill('SIGKILL');
    } catch {
      // ESRCH: it has exited, as it should have.
    }
  });
}

describe('pdeathsig', () => {
  it('a child whose parent died during the spawn signals itself (the getppid check after the prctl)', async () => {
    // The race cannot be produced on demand: the parent would have to die
    // between the clone and the prctl. Make the child see a different
    // parent pid instead, which is what it would see then.
    native.testing.setAssumedParentPid(1);
    let child: Subprocess;
    let unaffected: Subprocess;
    try {
      child = spawn('/bin/sleep', ['1000'], { pdeathsig: 'SIGTERM' });
      unaffected = spawn('/bin/sh', ['-c', 'exit 3']); // no pdeathsig: no check
    } finally {
      native.testing.setAssumedParentPid(0);
    }
    // Should the check be broken, the sleeper must not outlive the failed test.
    killWhenTestEnds(child!);
    expect((await child.wait()).signal).toBe('SIGTERM');
    expect((await unaffected.wait()).code).toBe(3);
    const normal = spawn('/bin/sh', ['-c', 'exit 4'], { pdeathsig: 'SIGTERM' });
    expect((await normal.wait()).code).toBe(4);
  });

  it('in a new pid namespace, where getppid() is 0, a child whose parent lives runs; one whose parent died ends itself', async () => {
    // The parent is outside the namespace: getppid() cannot tell, a pidfd of the parent can.
    const alive = spawn('/bin/sh', ['-c', 'echo $$; exit 5'], { namespaces: { pid: true }, pdeathsig: 'SIGTERM', stdout: 'pipe' });
    let out = '';
    for await (const chunk of alive.stdout!) out += chunk;
    expect(await alive.wait()).toMatchObject({ code: 5, signal: null });
    expect(out).toBe('1\n');

    // As if the parent had died during the spawn: the child watches the
    // pidfd of a process that has exited (a zombie nobody reaps: the
    // background `true` of a shell that exec'd sleep). As the init of its
    // namespace it cannot signal itself (the kernel spares an init any
    // signal it has no handler for), so it exits 128 + SIGTERM instead.
    const holder = childProcess.spawn('/bin/sh', ['-c', 'true & exec sleep 1000'], { stdio: 'ignore' });
    onTestFinished(() => {
      holder.kill('SIGKILL');
    });
    const zombie = await exitedChildOf(holder.pid!);
    native.testing.setAssumedParentPid(zombie);
    let child: Subprocess;
    try {
      child = spawn('/bin/sleep', ['1000'], { namespaces: { pid: true }, pdeathsig: 'SIGTERM' });
    } finally {
      native.testing.setAssumedParentPid(0);
    }
    killWhenTestEnds(child!);
    expect(await child.wait()).toMatchObject({ code: 128 + 15, signal: null });
  });

  it.each([
    ['', {}],
    [' (in a new pid namespace)', { namespaces: { pid: true } }],
  ])('the child gets the signal when the spawning process is SIGKILLed%s', async (_name, extra) => {
    requireDist();
    // The helper gets a socket at fd 3 and hands it to its child, so the
    // child can tell us what it received even after the helper is gone.
    const helper = childProcess.spawn(process.execPath, [fixture('pdeathsig-parent.cjs'), DIST, JSON.stringify(extra)], {
      stdio: ['ignore', 'pipe', 'inherit', 'pipe'],
    });
    let grandchild = 0;
    try {
      const fromHelper = lines(helper.stdout!);
      const fromGrandchild = lines(helper.stdio[3] as Readable);
      grandchild = Number((await fromHelper.next()).value);
      expect(grandchild).toBeGreaterThan(0);
      expect((await fromGrandchild.next()).value).toBe('ready');

      helper.kill('SIGKILL');
      await once(helper, 'exit');
      // Only the signal makes the grandchild write this and exit; without
      // it the socket stays open and this waits until the test times out.
      expect((await fromGrandchild.next()).value).toBe('SIGTERM');
      expect((await fromGrandchild.next()).done).toBe(true);
    } finally {
      helper.kill('SIGKILL');
      if (grandchild) {
        try {
          process.kill(grandchild, 'SIGKILL');
        } catch {
          // Already gone, as it should be.
        }
      }
    }
  });

  it('the child gets the signal when the spawning thread (a worker) ends', async () => {
    requireDist();
    const worker = new Worker(fixture('pdeathsig-worker.cjs'), { workerData: { dist: DIST } });
    // Listen for 'exit' first: a worker that ends at once has its last
    // message and its 'exit' emitted in the same tick, before the await below
    // returns, and a listener attached after that waits for ever.
    const exited = once(worker, 'exit');
    const [pid] = (await once(worker, 'message')) as [number];
    // Watched from here (a peek: the worker's PidFd is the one that reaps).
    const pidfd = PidFd.open(pid);
    worker.postMessage('end'); // only now: before this, the pid could be reaped and gone
    try {
      await exited;
      // sleep 1000 ends only through the signal; the worker's PidFd, torn
      // down with the worker, hands the reap on, so no zombie is left either.
      const exit = await pidfd.wait();
      expect(exit.pid).toBe(pid);
      expect([null, 'SIGKILL']).toContain(exit.signal); // null: reaped before the peek could see the status
      const deadline = Date.now() + 5000;
      while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(existsSync(`/proc/${pid}`)).toBe(false);
    } finally {
      pidfd.close();
    }
  });
});
