// Workers that take no tasks (their own event loop): leaving on purpose
// (pool.retire()), and what their deaths mean for the crash backoff.
import { beforeAll, describe, expect, it } from 'vitest';
import type { PoolWorkerInfo, RecycleReason, WorkerExitInfo, WorkerPool } from '../lib/index.js';
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
