import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { WorkerPool, type WorkerError, type WorkerPoolOptions } from '../lib/index.js';

export const FIXTURES = join(__dirname, 'fixtures');
export const fixture = (name: string): string => join(FIXTURES, name);

/**
 * The PHP tests need a real php-cli with ext-sockets. They never skip: a
 * machine without it fails here, saying what to install.
 */
export function requirePhp(): void {
  let modules: string;
  try {
    modules = execFileSync('php', ['-m'], { encoding: 'utf8' });
  } catch {
    throw new Error('php is not installed: these tests need php-cli 8.1+ (Debian/Ubuntu: apt-get install -y php-cli)');
  }
  if (!/^sockets$/m.test(modules)) {
    throw new Error('php has no sockets extension (ext-sockets): install the php-cli package of your distribution, which includes it');
  }
}

export { O_NONBLOCK, fdFlags, openFds, processState, zombieChildren } from '@folk/test-support';

/** Whether a pid still exists in any form (running, or an unreaped zombie). */
export function processExists(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

/** Resolves with the arguments of the next `event` on `emitter`. */
export function once<T extends unknown[]>(emitter: NodeJS.EventEmitter, event: string): Promise<T> {
  return new Promise((resolve) => emitter.once(event, (...args: unknown[]) => resolve(args as T)));
}

/** The error `promise` rejects with; a failure if it resolves. */
export function errorOf(promise: Promise<unknown>): Promise<WorkerError> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: WorkerError) => err,
  );
}

/** A pool (one tasks.php worker unless `options` say otherwise), stopped after `body` whatever happens. */
export async function withPool(options: Partial<WorkerPoolOptions>, body: (pool: WorkerPool) => Promise<void>): Promise<void> {
  const pool = new WorkerPool({ script: fixture('tasks.php'), size: 1, ...options });
  try {
    await body(pool);
  } finally {
    await pool.stop();
  }
}
