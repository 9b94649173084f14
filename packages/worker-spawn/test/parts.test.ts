// Answers in pieces (PART frames, PROTOCOL.md): a handler's part() and the
// supervisor's onPart, in both worker libraries, through a WorkerHandle and
// through a WorkerPool; what an answer cut short looks like; and how a slow
// onPart slows the handler.
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnWorker, type PoolWorkerInfo, type WorkerExitInfo } from '../lib/index.js';
import { errorOf, fixture, once, requirePhp, withPool } from './helpers.js';

beforeAll(() => requirePhp());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The two worker libraries, each running its tasks fixture. */
const LIBRARIES = [
  ['PHP', { script: fixture('tasks.php') }],
  ['Node', { command: process.execPath, script: fixture('tasks-node.cjs') }],
] as const;

/** The pieces of `parts:<n>:<size>`, as the fixtures make them. */
const pieces = (n: number, size: number): string[] => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26)).repeat(size));

/**
 * An onPart that rejects every piece with `reason`, and counts the pieces
 * that come after its task has rejected (settle() the task to mark that):
 * there must be none.
 */
function rejectingOnPart(reason: Error) {
  let rejected = false;
  let after = 0;
  return {
    onPart: () => {
      if (rejected) after++;
      return Promise.reject(reason);
    },
    settle: <T>(task: Promise<T>) => task.finally(() => (rejected = true)),
    after: () => after,
  };
}

describe.each(LIBRARIES)('%s worker: part()', (_lib, options) => {
  it('with onPart: each piece arrives on its own, in order, before the request resolves with the last', async () => {
    const worker = spawnWorker(options);
    try {
      const got: string[] = [];
      let resolved = false;
      const answer = worker.request('parts:5:3', { onPart: (chunk) => void got.push(`${resolved ? 'late ' : ''}${chunk.toString()}`) });
      const last = (await answer).toString();
      resolved = true;
      expect(got).toEqual(pieces(5, 3));
      expect(last).toMatch(/^end \d+$/);
    } finally {
      await worker.stop();
    }
  });

  it('without onPart: the library joins the pieces into one answer, the same bytes', async () => {
    const worker = spawnWorker(options);
    try {
      const whole = (await worker.request('parts:4:1000')).toString();
      expect(whole.slice(0, 4000)).toBe(pieces(4, 1000).join(''));
      expect(whole.slice(4000)).toMatch(/^end \d+$/);
      // Joined over FOLK_MAX_FRAME: the answer is refused as any too large one is.
      const err = await errorOf(worker.request(`parts:3:${worker.maxFrame / 2}`));
      expect(err.code).toBe('ERR_WORKER_FRAME_TOO_LARGE');
      expect((await worker.request('echo:after')).toString()).toBe('after');
    } finally {
      await worker.stop();
    }
  });

  it('a piece larger than FOLK_MAX_FRAME goes out as several, each within it', async () => {
    const worker = spawnWorker({ ...options, maxFrame: 4096 });
    try {
      const sizes: number[] = [];
      const last = await worker.request('parts:1:10000', { onPart: (chunk) => void sizes.push(chunk.length) });
      expect(sizes).toEqual([4096, 4096, 1808]);
      expect(last.toString()).toMatch(/^end \d+$/);
    } finally {
      await worker.stop();
    }
  });

  it('a handler that throws after some pieces: they were delivered, and the request rejects (the answer was cut short)', async () => {
    const worker = spawnWorker(options);
    try {
      const got: string[] = [];
      const err = await errorOf(worker.request('partsthrow:3', { onPart: (chunk) => void got.push(chunk.toString()) }));
      expect(got).toEqual(['p0', 'p1', 'p2']);
      expect(err.code).toBe('ERR_WORKER_TASK');
      expect(err.message).toContain('after parts');
      // Without onPart nothing of it arrives; the worker goes on either way.
      expect((await errorOf(worker.request('partsthrow:2'))).code).toBe('ERR_WORKER_TASK');
      expect((await worker.request('echo:ok')).toString()).toBe('ok');
    } finally {
      await worker.stop();
    }
  });

  it('a worker killed after a piece: the piece was delivered, and the request rejects with the exit', async () => {
    const worker = spawnWorker(options);
    try {
      const got: string[] = [];
      const err = await errorOf(worker.request('partskill', { onPart: (chunk) => void got.push(chunk.toString()) }));
      expect(got).toEqual(['first']);
      expect(err.code).toBe('ERR_WORKER_EXITED');
    } finally {
      await worker.stop({ timeout: 0 });
    }
  });

  it('an onPart that returns a promise holds the handler in its writes until it settles', async () => {
    const worker = spawnWorker(options);
    try {
      // 8 MiB in 64 KiB pieces: far more than the socket buffers hold.
      let first = true;
      let bytes = 0;
      const last = await worker.request('parts:128:65536', {
        onPart: (chunk) => {
          bytes += chunk.length;
          if (!first) return undefined;
          first = false;
          return sleep(600);
        },
      });
      expect(bytes).toBe(128 * 65536);
      // The handler took the pause (it would take a few ms otherwise).
      expect(Number(/^end (\d+)$/.exec(last.toString())![1])).toBeGreaterThanOrEqual(450);
    } finally {
      await worker.stop();
    }
  });

  it('an onPart that throws: the request rejects with that error, the rest of its answer is dropped, and the worker and the requests after it are unaffected', async () => {
    const worker = spawnWorker(options);
    try {
      const bug = new Error('bug in onPart');
      let calls = 0;
      const failing = worker.request('parts:3:10', {
        onPart: () => {
          calls++;
          throw bug;
        },
      });
      const next = worker.request('echo:next'); // pipelined behind it
      expect(await errorOf(failing)).toBe(bug);
      expect((await next).toString()).toBe('next');
      expect(calls).toBe(1);
      const got: string[] = [];
      expect((await worker.request('parts:2:1', { onPart: (chunk) => void got.push(chunk.toString()) })).toString()).toMatch(/^end \d+$/);
      expect(got).toEqual(pieces(2, 1));
      expect(worker.hasExited).toBe(false);
    } finally {
      await worker.stop();
    }
  }, 10_000);

  it('an onPart whose promise rejects: the request rejects with that reason, whether its answer had been read by then or not', async () => {
    const worker = spawnWorker(options);
    try {
      const reason = new Error('async bug in onPart');
      // Rejected after the answer may well have been read (in the same chunk as the piece).
      const late = worker.request('parts:1:10', { onPart: () => sleep(100).then(() => Promise.reject(reason)) });
      const next = worker.request('echo:next');
      expect(await errorOf(late)).toBe(reason);
      expect((await next).toString()).toBe('next');
      // Rejected at once: no piece comes after the request has rejected.
      const parts = rejectingOnPart(reason);
      const early = worker.request('parts:3:10', { onPart: parts.onPart });
      expect(await errorOf(parts.settle(early))).toBe(reason);
      expect((await worker.request('echo:after')).toString()).toBe('after');
      expect(parts.after()).toBe(0);
    } finally {
      await worker.stop();
    }
  }, 10_000);

  it('refuses an onPart that is no function, sending nothing', async () => {
    const worker = spawnWorker(options);
    try {
      for (const bad of [true, 'f', {}]) {
        const err = await errorOf(worker.request('echo:x', { onPart: bad as unknown as () => void }));
        expect(err).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
        expect(err.message).toContain('"options.onPart"');
      }
      expect((await worker.request('echo:sent')).toString()).toBe('sent');
    } finally {
      await worker.stop();
    }
  });
});

describe('WorkerPool.run(payload, { onPart })', () => {
  it('delivers the pieces of each task to its own onPart, with tasks with and without onPart mixed on one worker', async () => {
    await withPool({ script: fixture('tasks.php'), size: 1 }, async (pool) => {
      const a: string[] = [];
      const b: string[] = [];
      const [ra, whole, rb] = await Promise.all([
        pool.run('parts:2:2', { onPart: (chunk) => void a.push(chunk.toString()) }),
        pool.run('parts:2:2'),
        pool.run('parts:3:1', { onPart: (chunk) => void b.push(chunk.toString()) }),
      ]);
      expect([a, b]).toEqual([pieces(2, 2), pieces(3, 1)]);
      expect([ra.toString(), rb.toString()]).toEqual([expect.stringMatching(/^end/), expect.stringMatching(/^end/)]);
      expect(whole.toString()).toMatch(/^aabbend \d+$/);
    });
  });

  it('a task past execTimeout stops getting pieces once it is rejected', async () => {
    await withPool({ script: fixture('tasks.php'), size: 1, execTimeout: 300, backoff: { initial: 0 } }, async (pool) => {
      let after = 0;
      let rejected = false;
      const crashed = once<[PoolWorkerInfo, WorkerExitInfo]>(pool, 'recycle');
      const err = await errorOf(
        pool.run('parts:2000:65536', {
          onPart: () => {
            if (rejected) after++;
            return sleep(100); // slower than the worker: it is still sending at execTimeout
          },
        }).finally(() => (rejected = true)),
      );
      expect(err.code).toBe('ERR_WORKER_EXEC_TIMEOUT');
      await crashed;
      await sleep(200);
      expect(after).toBe(0);
      expect((await pool.run('echo:next')).toString()).toBe('next');
    });
  });

  it('an onPart that throws: run() rejects with that error; the worker finishes that task before it takes the next, and stays', async () => {
    await withPool({ script: fixture('tasks.php'), size: 1 }, async (pool) => {
      await pool.ready();
      const pid = pool.stats().list[0]!.pid;
      const bug = new Error('bug in onPart');
      let calls = 0;
      let queuedAtRejection = -1;
      // 64 pieces of 64 KiB: the worker is still sending them when the task rejects.
      const failing = pool.run('parts:64:65536', {
        onPart: () => {
          calls++;
          throw bug;
        },
      });
      const next = pool.run('pid');
      const err = await errorOf(failing.catch((e: unknown) => {
        queuedAtRejection = pool.stats().queued;
        throw e;
      }));
      expect(err).toBe(bug);
      expect(Number((await next).toString())).toBe(pid);
      expect(calls).toBe(1);
      // The next task waited for the worker to be done with this one.
      expect(queuedAtRejection).toBe(1);
      expect(pool.stats()).toMatchObject({ failed: 1, completed: 1, crashed: 0, recycled: 0, spawned: 1 });
    });
  }, 10_000);

  it('an onPart whose promise rejects: run() rejects with that reason, no piece comes after, and the worker stays', async () => {
    await withPool({ script: fixture('tasks.php'), size: 1 }, async (pool) => {
      await pool.ready();
      const reason = new Error('async bug in onPart');
      const parts = rejectingOnPart(reason);
      const failing = pool.run('parts:3:10', { onPart: parts.onPart });
      expect(await errorOf(parts.settle(failing))).toBe(reason);
      expect((await pool.run('echo:next')).toString()).toBe('next');
      expect(parts.after()).toBe(0);
      expect(pool.stats()).toMatchObject({ failed: 1, completed: 1, crashed: 0, spawned: 1 });
    });
  }, 10_000);

  it('a task its onPart failed is still bounded by execTimeout: a worker still on it then is killed and replaced', async () => {
    await withPool({ script: fixture('tasks.php'), size: 1, execTimeout: 300, backoff: { initial: 0 } }, async (pool) => {
      await pool.ready();
      const pid = pool.stats().list[0]!.pid;
      const bug = new Error('bug in onPart');
      const recycled = once<[PoolWorkerInfo, string]>(pool, 'recycle');
      // 100 pieces 20 ms apart: two seconds of work left when onPart throws.
      expect(
        await errorOf(
          pool.run('partsslow:100:20', {
            onPart: () => {
              throw bug;
            },
          }),
        ),
      ).toBe(bug);
      const [info, reason] = await recycled;
      expect([info.pid, reason]).toEqual([pid, 'execTimeout']);
      expect(Number((await pool.run('pid')).toString())).not.toBe(pid);
      expect(pool.stats()).toMatchObject({ failed: 1, timedOut: 0 });
    });
  }, 10_000);

  it('refuses an onPart that is no function, as a bad argument (no task is run)', async () => {
    await withPool({ script: fixture('tasks.php'), size: 1 }, async (pool) => {
      const err = await errorOf(pool.run('echo:x', { onPart: 42 as unknown as () => void }));
      expect(err).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      expect(pool.stats()).toMatchObject({ completed: 0, failed: 0 });
    });
  });
});

it('Node library: part() after the handler returned rejects (the answer is complete), and sends nothing', async () => {
  const worker = spawnWorker({ command: process.execPath, script: fixture('tasks-node.cjs') });
  try {
    const reports: string[] = [];
    worker.on('workerError', (message: string) => reports.push(message));
    expect((await worker.request('partlate', { onPart: () => {} })).toString()).toBe('early');
    await sleep(300);
    expect(reports).toEqual(['late part(): task 1 is answered already: part() must come before its handler returns']);
  } finally {
    await worker.stop();
  }
});
