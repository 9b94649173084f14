import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

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
