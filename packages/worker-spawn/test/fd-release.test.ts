// Release after reap: a worker that has exited and been reaped holds no fd
// here (its pidfd and the pidfd's private duplicate, its task and control
// sockets, its stdout) once its `exited` has settled, whether or not
// anyone called close().
import { describe, expect, it } from 'vitest';
import { spawnWorker, type WorkerHandle } from '../lib/index.js';
import { errorOf, fixture, openFds, zombieChildren } from './helpers.js';

/** End `worker` one of three ways, none of them close(): stop(), a signal, or a task that makes it exit. What it wrote on stdout is never read. */
function end(worker: WorkerHandle, how: number): void {
  if (how === 0) void worker.stop();
  else if (how === 1) worker.kill('SIGKILL');
  else void errorOf(worker.request('exit:3'));
}

describe('a WorkerHandle', () => {
  it('300 Node workers, stopped, killed or exiting on their own and never close()d: once `exited` settles, no fd of theirs is left', async () => {
    // Nothing may be left for the collector to find: this process cannot ask for one.
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    const before = openFds();
    for (let round = 0; round < 30; round++) {
      const workers = Array.from({ length: 10 }, () => spawnWorker({ command: process.execPath, script: fixture('chatty-node.cjs') }));
      await Promise.all(workers.map((w) => w.ready));
      workers.forEach((w, i) => end(w, (round + i) % 3));
      const exits = await Promise.all(workers.map((w) => w.exited));
      expect(exits.map((e) => String(e.code ?? e.signal)).sort()).toEqual(
        workers.map((_, i) => ['0', 'SIGKILL', '3'][(round + i) % 3]!).sort(),
      );
      expect(openFds()).toEqual(before);
    }
    expect(zombieChildren()).toEqual([]);
  }, 300_000);
});
