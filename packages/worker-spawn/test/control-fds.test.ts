// Fds a worker sends the supervisor on the control socket: each has exactly
// one owner at every moment (README, "ControlChannel"): the listeners of
// worker.control's 'message', else those of the WorkerHandle's 'message', else
// nobody, and then it is closed at once.
import { closeSync, fstatSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnWorker, type ControlMessage, type WorkerHandle } from '../lib/index.js';
import { fixture, once, openFds, requirePhp } from './helpers.js';

let dir: string;
let gift: string;

beforeAll(() => {
  requirePhp();
  dir = mkdtempSync(join(tmpdir(), 'folk-control-fds-'));
  gift = join(dir, 'gift.txt');
  writeFileSync(gift, 'a file the worker opened\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What an fd number refers to, read at once (before anything else can close or reuse it). */
function identity(fd: number): { dev: number; ino: number } | string {
  try {
    const st = fstatSync(fd);
    return { dev: st.dev, ino: st.ino };
  } catch (err) {
    return (err as NodeJS.ErrnoException).code!;
  }
}

const sent = (): { dev: number; ino: number } => {
  const st = statSync(gift);
  return { dev: st.dev, ino: st.ino };
};

type Seen = Array<[string, Array<{ dev: number; ino: number } | string>]>;

/** A 'message' listener that notes each message's type and what its fds are, then closes them (they are its own). */
function keep(seen: Seen): (message: ControlMessage, fds: number[]) => void {
  return (message, fds) => {
    seen.push([message.type, fds.map(identity)]);
    for (const fd of fds) closeSync(fd);
  };
}

/** Ask hostile.php to send its gift, and wait for the report it sends after it (same socket, so the gift came first). */
async function receiveGift(worker: WorkerHandle): Promise<void> {
  const reported = once<[string]>(worker, 'workerError');
  await worker.request(`gift:${gift}`);
  expect((await reported)[0]).toBe('gift sent');
}

/** A hostile.php worker, ready, stopped after `body` whatever happens. */
async function withWorker(body: (worker: WorkerHandle) => Promise<void>): Promise<void> {
  const worker = spawnWorker({ script: fixture('hostile.php') });
  try {
    await worker.ready;
    await body(worker);
  } finally {
    await worker.stop({ timeout: 0 });
  }
}

/** The gift's fd arrived open and is the file sent; the report after it brought none. */
const giftThenReport = (): Seen => [
  ['gift', [sent()]],
  ['error', []],
];

describe('fds a worker sends on the control socket', () => {
  it("reach a listener of worker.control open, still the file the worker sent, and are that listener's to close", async () => {
    await withWorker(async (worker) => {
      const seen: Seen = [];
      worker.control.on('message', keep(seen));
      await receiveGift(worker);
      // The WorkerHandle's own listener closed them first: the listener got EBADF
      // numbers (or, had the process opened something meanwhile, a stranger's).
      expect(seen).toEqual(giftThenReport());
    });
  });

  it("with no worker.control listener, go to the WorkerHandle's 'message' listeners, open", async () => {
    await withWorker(async (worker) => {
      const seen: Seen = [];
      worker.on('message', keep(seen));
      await receiveGift(worker);
      expect(seen).toEqual(giftThenReport());
    });
  });

  it("go to worker.control's listeners alone when both events have some: the WorkerHandle's 'message' then carries none", async () => {
    await withWorker(async (worker) => {
      const control: Seen = [];
      const own: unknown[] = [];
      worker.control.on('message', keep(control));
      worker.on('message', (message: ControlMessage, fds: number[]) => own.push([message.type, fds]));
      await receiveGift(worker);
      expect(control).toEqual(giftThenReport());
      expect(own).toEqual([
        ['gift', []],
        ['error', []],
      ]);
    });
  });

  it('that nobody listens for are closed at once: no fd is left', async () => {
    await withWorker(async (worker) => {
      const before = openFds();
      await receiveGift(worker);
      expect(openFds()).toEqual(before);
    });
  });

  it('with the ready message: a worker.control listener gets them open; with no listener they are closed', async () => {
    const listened = spawnWorker({ script: fixture('hostile.php'), args: [`ready-gift:${gift}`] });
    const seen: Seen = [];
    listened.control.on('message', keep(seen));
    try {
      await listened.ready;
      expect(seen).toEqual([['ready', [sent()]]]);
    } finally {
      await listened.stop({ timeout: 0 });
    }
    const alone = spawnWorker({ script: fixture('hostile.php'), args: [`ready-gift:${gift}`] });
    // Nothing is received before the event loop turns: the gift is not here yet.
    const before = openFds();
    try {
      await alone.ready;
      expect(openFds()).toEqual(before);
    } finally {
      await alone.stop({ timeout: 0 });
    }
  });
});
