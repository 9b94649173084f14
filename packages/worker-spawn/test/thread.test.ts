// WorkerPool inside a worker thread (node:worker_threads), where Node
// tracks the fds its fs module opened and warns when fs closes any other,
// and where the thread ends only once nothing keeps its event loop alive.
import { Worker as Thread } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture, once, requirePhp } from './helpers.js';

interface ThreadReport {
  outcomes: string[];
  warnings: string[];
  resources: string[];
}

beforeAll(() => requirePhp());

describe('WorkerPool in a worker thread', () => {
  it.each([
    ['tasks, one of which kills its worker', 'tasks', ['a', 'b', 'ERR_WORKER_CRASHED', 'c', 'd']],
    ['a reload while a task runs', 'reload', ['reloaded', 'slept']],
    ['a worker that closes its task socket and lingers', 'hostile', ['answered']],
  ])('after %s: no warning, and once stop() resolved nothing of the pool is left on the loop and the thread ends', async (_what, scenario, outcomes) => {
    const thread = new Thread(fixture('thread-pool.mjs'), { workerData: { scenario } });
    const report = once<[ThreadReport]>(thread, 'message');
    const exited = once<[number]>(thread, 'exit');
    const [r] = await report;
    expect(r.outcomes).toEqual(outcomes);
    // fs.closeSync on the socketpair ends spawnWorker hands to the worker
    // (fds fs never opened) warned "File descriptor N closed but not opened
    // in unmanaged mode" for each, twice per worker.
    expect(r.warnings).toEqual([]);
    // No timer, socket or request of the pool's: a ref'd one would hold the
    // thread (a timer for as long as it runs).
    expect(r.resources).toEqual([]);
    expect((await exited)[0]).toBe(0);
  });
});
