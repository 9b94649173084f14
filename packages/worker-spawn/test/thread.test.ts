// WorkerPool inside a worker thread (node:worker_threads), where Node
// tracks the fds its fs module opened and warns when fs closes any other.
import { Worker as Thread } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture, once, requirePhp } from './helpers.js';

interface ThreadReport {
  answers: string[];
  warnings: string[];
  resources: string[];
}

beforeAll(() => requirePhp());

describe('WorkerPool in a worker thread', () => {
  it('spawns, serves and stops without a warning, and leaves nothing to keep the thread alive', async () => {
    const thread = new Thread(fixture('thread-pool.mjs'));
    const report = once<[ThreadReport]>(thread, 'message');
    const exited = once<[number]>(thread, 'exit');
    const [r] = await report;
    expect(r.answers).toEqual(['a', 'b', 'c']);
    // fs.closeSync on the socketpair ends spawnWorker hands to the worker
    // (fds fs never opened) warned "File descriptor N closed but not opened
    // in unmanaged mode" for each, twice per worker.
    expect(r.warnings).toEqual([]);
    expect(r.resources).toEqual([]);
    // And the thread ends: nothing of the pool keeps its loop alive.
    expect((await exited)[0]).toBe(0);
  });
});
