// Workers that take no tasks (their own event loop): leaving on purpose
// (pool.retire()), and what their deaths mean for the crash backoff.
import { beforeAll, describe, expect, it } from 'vitest';
import { WorkerPool, type PoolWorkerInfo, type RecycleReason, type WorkerExitInfo } from '../lib/index.js';
import { fixture, once, requirePhp, withPool } from './helpers.js';

const leave = fixture('leave.php');

beforeAll(() => requirePhp());

/** The pids of the pool's workers in `state`. */
const pidsIn = (pool: WorkerPool, state: PoolWorkerInfo['state']): number[] =>
  pool
    .stats()
    .list.filter((w) => w.state === state)
    .map((w) => w.pid);

/** When each pool event happened (Date.now()), by pid. */
function timeline(pool: WorkerPool): Map<string, number> {
  const at = new Map<string, number>();
  for (const event of ['spawn', 'ready', 'exit']) pool.on(event, (info: PoolWorkerInfo) => at.set(`${info.pid} ${event}`, Date.now()));
  return at;
}

describe('pool.retire(pid): a worker leaving on purpose', () => {
  it("a worker that says it is leaving and exits, retired on its message: replaced at once, no 'crash', 10 times in a row", async () => {
    await withPool({ script: leave, args: ['when-asked'], size: 2 }, async (pool) => {
      const at = timeline(pool);
      const crashes: number[] = [];
      pool.on('crash', (info: PoolWorkerInfo) => crashes.push(info.pid));
      const recycled: Array<[number, RecycleReason]> = [];
      pool.on('recycle', (info: PoolWorkerInfo, reason: RecycleReason) => recycled.push([info.pid, reason]));
      const replacements = new Map<number, number>();
      pool.on('message', (info: PoolWorkerInfo, message: { type: string }) => {
        if (message.type !== 'leaving') return;
        const before = new Set(pool.stats().list.map((w) => w.pid));
        expect(pool.retire(info.pid)).toBe(true);
        // The replacement exists as retire() returns.
        const added = pool.stats().list.filter((w) => !before.has(w.pid));
        expect(added.map((w) => w.state)).toEqual(['starting']);
        replacements.set(info.pid, added[0]!.pid);
      });
      const left: number[] = [];
      for (let i = 0; i < 10; i++) {
        await pool.ready();
        const pid = pidsIn(pool, 'idle')[0]!;
        const exited = new Promise<void>((resolve) => pool.on('exit', (info: PoolWorkerInfo) => info.pid === pid && resolve()));
        await pool.send(pid, { type: 'leave' });
        await exited;
        left.push(pid);
      }
      await pool.ready();
      expect(crashes).toEqual([]);
      expect(recycled).toEqual(left.map((pid) => [pid, 'retired']));
      for (const pid of left) {
        const next = replacements.get(pid)!;
        // Started before its predecessor's exit was handled, or at most a moment after: never after a backoff (100 ms, doubling).
        expect(at.get(`${next} spawn`)! - at.get(`${pid} exit`)!).toBeLessThan(50);
        expect(at.has(`${next} ready`)).toBe(true);
      }
      expect(pool.stats()).toMatchObject({ size: 2, workers: 2, idle: 2, crashed: 0, recycled: 10, spawned: 12 });
    });
  });

  it('a busy worker is not interrupted: it finishes its task, then stops; its replacement started at once and took no task from it', async () => {
    await withPool({}, async (pool) => {
      await pool.ready();
      const [pid] = pidsIn(pool, 'idle');
      const holding = once(pool, 'stdout');
      const task = pool.run('hold:300');
      await holding;
      const exited = once<[PoolWorkerInfo, WorkerExitInfo]>(pool, 'exit');
      expect(pool.retire(pid!)).toBe(true);
      expect(pool.stats()).toMatchObject({ workers: 2, starting: 1, stopping: 1, busy: 0 });
      expect((await task).toString()).toBe('slept');
      const [info, exit] = await exited;
      expect([info.pid, exit.code, exit.signal]).toEqual([pid, 0, null]);
      await pool.ready();
      expect((await pool.run('pid')).toString()).not.toBe(String(pid));
      expect(pool.stats()).toMatchObject({ workers: 1, completed: 2, failed: 0, crashed: 0, recycled: 1, spawned: 2 });
    });
  });

  it('an idle worker is stopped the usual way (a stop message, which an event-loop worker sees in poll())', async () => {
    await withPool({ script: leave, args: ['when-asked'] }, async (pool) => {
      await pool.ready();
      const [pid] = pidsIn(pool, 'idle');
      const exited = once<[PoolWorkerInfo, WorkerExitInfo]>(pool, 'exit');
      expect(pool.retire(pid!)).toBe(true);
      const [info, exit] = await exited;
      // leave.php exits 0 without a word when stopped: no 'leaving' message, no SIGTERM.
      expect([info.pid, exit.code, exit.signal]).toEqual([pid, 0, null]);
      await pool.ready();
      expect(pool.stats()).toMatchObject({ workers: 1, crashed: 0, recycled: 1, spawned: 2 });
    });
  });

  it("a worker already stopping is left alone: a second retire(), or one during stop(), says true and changes nothing", async () => {
    await withPool({ script: leave, args: ['when-asked'] }, async (pool) => {
      await pool.ready();
      const [pid] = pidsIn(pool, 'idle');
      const reasons: RecycleReason[] = [];
      pool.on('recycle', (_info: PoolWorkerInfo, reason: RecycleReason) => reasons.push(reason));
      expect(pool.retire(pid!)).toBe(true);
      expect(pool.retire(pid!)).toBe(true);
      expect(reasons).toEqual(['retired']);
      expect(pool.stats()).toMatchObject({ workers: 2, recycled: 1, spawned: 2 });
      await pool.ready();
      const [next] = pidsIn(pool, 'idle');
      const stopped = pool.stop();
      expect(pool.retire(next!)).toBe(true);
      await stopped;
      expect(reasons).toEqual(['retired']);
      expect(pool.stats()).toMatchObject({ workers: 0, crashed: 0, recycled: 1, spawned: 2 });
    });
  });

  it('returns false for a pid that is no live worker of this pool, and throws for one that is no pid', async () => {
    await withPool({ script: leave, args: ['when-asked'] }, async (pool) => {
      await pool.ready();
      const [pid] = pidsIn(pool, 'idle');
      expect(pool.retire(process.pid)).toBe(false);
      const exited = once(pool, 'exit');
      pool.retire(pid!);
      await exited;
      expect(pool.retire(pid!)).toBe(false);
      for (const bad of [0, -1, 1.5, 2 ** 53]) expect(() => pool.retire(bad)).toThrow(RangeError);
      for (const bad of ['1', null, undefined]) expect(() => pool.retire(bad as unknown as number)).toThrow(TypeError);
      expect(pool.stats()).toMatchObject({ recycled: 1, crashed: 0 });
    });
  });
});

/**
 * Each worker's 'crash' (its pid and the delay it announced), and the time
 * from its 'exit' to its replacement's 'spawn'. `kill(info)`: what to do
 * once a worker is ready (resolve when done, after which it is expected to
 * crash); `n` crashes.
 */
async function crashes(pool: WorkerPool, n: number, kill: (info: PoolWorkerInfo) => Promise<void>) {
  const result: Array<{ pid: number; delay: number; waited: number }> = [];
  let exitedAt = 0;
  pool.on('exit', () => (exitedAt = Date.now()));
  pool.on('crash', (info: PoolWorkerInfo, _exit: WorkerExitInfo, delay: number) => result.push({ pid: info.pid, delay, waited: -1 }));
  pool.on('spawn', () => {
    const last = result.at(-1);
    if (last && last.waited === -1) last.waited = Date.now() - exitedAt;
  });
  for (let i = 0; i < n; i++) {
    const [info] = await once<[PoolWorkerInfo]>(pool, 'ready');
    await kill(info);
    await once(pool, 'spawn');
  }
  return result;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the crash backoff, for workers that take no tasks (backoff.resetAfter)', () => {
  it('an event-loop worker SIGKILLed after resetAfter ms of readiness was serving: replaced at once, 5 times in a row', async () => {
    // A long initial backoff: had it applied, the 'crash' delays and the waits would say so.
    await withPool({ script: fixture('eventloop.php'), backoff: { initial: 1000, resetAfter: 200 } }, async (pool) => {
      const lost = await crashes(pool, 5, async (info) => {
        await sleep(300);
        process.kill(info.pid, 'SIGKILL');
      });
      expect(lost.map((c) => c.delay)).toEqual([0, 0, 0, 0, 0]);
      for (const c of lost) expect(c.waited).toBeLessThan(50);
      await pool.ready();
      expect(pool.stats()).toMatchObject({ workers: 1, crashed: 5, spawned: 6 });
    });
  });

  it('with the default resetAfter (1000 ms): dying right after ready backs off, doubling; one that served 1 s is replaced at once and resets the streak', async () => {
    await withPool({ script: fixture('eventloop.php') }, async (pool) => {
      const delays: number[] = [];
      pool.on('crash', (_info: PoolWorkerInfo, _exit: WorkerExitInfo, delay: number) => delays.push(delay));
      const plan = [0, 0, 1100, 0, 0];
      let i = 0;
      await crashes(pool, plan.length, async (info) => {
        const after = plan[i++]!;
        if (after > 0) await sleep(after);
        process.kill(info.pid, 'SIGKILL');
      });
      expect(delays).toEqual([100, 200, 0, 100, 200]);
    });
  });

  it('a worker that exits by itself right after ready still backs off, doubling (no retire())', async () => {
    await withPool({ script: leave }, async (pool) => {
      const lost = await crashes(pool, 4, async () => {});
      expect(lost.map((c) => c.delay)).toEqual([100, 200, 400, 800]);
      for (const c of lost) expect(c.waited).toBeGreaterThanOrEqual(c.delay - 5);
    });
  });

  it('resetAfter 0: readiness proves nothing, as before it existed; a worker that dies idle long after ready backs off', async () => {
    await withPool({ script: fixture('eventloop.php'), backoff: { initial: 50, resetAfter: 0 } }, async (pool) => {
      const lost = await crashes(pool, 3, async (info) => {
        await sleep(300);
        process.kill(info.pid, 'SIGKILL');
      });
      expect(lost.map((c) => c.delay)).toEqual([50, 100, 200]);
    });
  });

  it('refuses a resetAfter that is no number of milliseconds', () => {
    expect(() => new WorkerPool({ script: leave, backoff: { resetAfter: -1 } })).toThrow(
      expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: expect.stringContaining('"options.backoff.resetAfter"') }),
    );
    expect(() => new WorkerPool({ script: leave, backoff: { resetAfter: '1000' as unknown as number } })).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }),
    );
  });
});

describe('the crash backoff, for workers that take no tasks (backoff.wasServing)', () => {
  it('a worker that dies right after ready, said to have been serving: replaced at once, 4 times in a row, as one with a task in hand', async () => {
    // A direct-mode app server's poison route: each new worker is given the request that kills it.
    const asked: number[] = [];
    const wasServing = (info: PoolWorkerInfo) => (asked.push(info.pid), true);
    await withPool({ script: fixture('eventloop.php'), backoff: { initial: 1000, resetAfter: 60_000, wasServing } }, async (pool) => {
      const lost = await crashes(pool, 4, async (info) => void process.kill(info.pid, 'SIGKILL'));
      expect(lost.map((c) => c.delay)).toEqual([0, 0, 0, 0]);
      for (const c of lost) expect(c.waited).toBeLessThan(50);
      expect(asked).toEqual(lost.map((c) => c.pid));
    });
  });

  it('one said not to have been serving is a crash loop, doubling, as without wasServing', async () => {
    await withPool({ script: fixture('eventloop.php'), backoff: { initial: 50, resetAfter: 60_000, wasServing: () => false } }, async (pool) => {
      const lost = await crashes(pool, 3, async (info) => void process.kill(info.pid, 'SIGKILL'));
      expect(lost.map((c) => c.delay)).toEqual([50, 100, 200]);
    });
  });

  it('is not asked about a worker with a task in hand, nor one that exited on purpose', async () => {
    const asked: number[] = [];
    await withPool({ script: leave, args: ['when-asked'], backoff: { wasServing: (info: PoolWorkerInfo) => (asked.push(info.pid), false) } }, async (pool) => {
      await pool.ready();
      const [pid] = pidsIn(pool, 'idle');
      const exited = once(pool, 'exit');
      pool.retire(pid!);
      await exited;
      expect(asked).toEqual([]);
    });
    await withPool({ script: fixture('tasks.php'), backoff: { initial: 1000, wasServing: (info: PoolWorkerInfo) => (asked.push(info.pid), false) } }, async (pool) => {
      const crashed = once<[PoolWorkerInfo, WorkerExitInfo, number]>(pool, 'crash');
      await expect(pool.run('kill')).rejects.toMatchObject({ code: 'ERR_WORKER_CRASHED' });
      expect((await crashed)[2]).toBe(0);
      expect(asked).toEqual([]);
    });
  });

  it('one that throws counts the death as a crash loop and says so in a workerError', async () => {
    const wasServing = () => {
      throw new Error('scoreboard unreadable');
    };
    await withPool({ script: fixture('eventloop.php'), backoff: { initial: 50, resetAfter: 60_000, wasServing } }, async (pool) => {
      const reports: string[] = [];
      pool.on('workerError', (_info: PoolWorkerInfo, message: string) => reports.push(message));
      const lost = await crashes(pool, 2, async (info) => void process.kill(info.pid, 'SIGKILL'));
      expect(lost.map((c) => c.delay)).toEqual([50, 100]);
      expect(reports).toEqual([
        expect.stringMatching(/^options\.backoff\.wasServing threw \(Error: scoreboard unreadable\); counted as a crash loop$/),
        expect.stringMatching(/wasServing threw/),
      ]);
    });
  });

  it('refuses a wasServing that is no function', () => {
    for (const bad of [true, 'yes', {}]) {
      expect(() => new WorkerPool({ script: leave, backoff: { wasServing: bad as unknown as () => boolean } })).toThrow(
        expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"options.backoff.wasServing"') }),
      );
    }
  });
});
