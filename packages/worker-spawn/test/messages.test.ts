// Custom control messages between a pool and its workers: the pool's
// 'message' event and send(), the PHP library's send() and onMessage(),
// and its event-loop calls pollSocket() and poll().
import { beforeAll, describe, expect, it } from 'vitest';
import type { PoolWorkerInfo } from '../lib/index.js';
import { errorOf, fixture, requirePhp, withPool } from './helpers.js';

beforeAll(() => requirePhp());

const messages = fixture('messages.php');

describe('what a pool worker says just before it exits', () => {
  it("reaches the pool before its 'exit' and 'crash': 270 error reports, 20 times in a row", async () => {
    await withPool({ script: messages, args: ['late'] }, async (pool) => {
      const events: string[] = [];
      pool.on('workerError', (info: PoolWorkerInfo, message: string) => events.push(`${info.pid} ${message}`));
      pool.on('exit', (info: PoolWorkerInfo) => events.push(`${info.pid} exit`));
      pool.on('crash', (info: PoolWorkerInfo) => events.push(`${info.pid} crash`));
      const expected: string[] = [];
      for (let i = 0; i < 20; i++) {
        await pool.ready();
        const [{ pid }] = pool.stats().list;
        const crashed = new Promise((resolve) => pool.once('crash', resolve));
        const failed = errorOf(pool.run('report-exit:270'));
        // Busy here while the worker sends and exits: its messages and its
        // exit are then all waiting at once when the event loop next looks.
        const until = Date.now() + 100;
        while (Date.now() < until);
        expect((await failed).code).toBe('ERR_WORKER_CRASHED');
        await crashed;
        for (let n = 1; n <= 270; n++) expected.push(`${pid} leaving ${n}`);
        expected.push(`${pid} exit`, `${pid} crash`);
      }
      expect(events).toEqual(expected);
    });
  });
});
