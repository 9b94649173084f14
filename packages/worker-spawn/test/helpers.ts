import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
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

/** The fds open in this process, each with what it points at. */
export function openFds(): string[] {
  const fds: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      fds.push(`${fd} -> ${readlinkSync(`/proc/self/fd/${fd}`)}`);
    } catch {
      // The fd readdirSync itself used, already closed.
    }
  }
  return fds.sort();
}

/** Whether a pid still exists in any form (running, or an unreaped zombie). */
export function processExists(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

/** The state letter of a process (R, S, Z, ...), or null when it is gone. */
export function processState(pid: number): string | null {
  try {
    return /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

/** Children of this process that are zombies (exited, not reaped). */
export function zombieChildren(): number[] {
  const me = String(process.pid);
  const zombies: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z' && fields[1] === me) zombies.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return zombies;
}

/** Resolves with the arguments of the next `event` on `emitter`. */
export function once<T extends unknown[]>(emitter: NodeJS.EventEmitter, event: string): Promise<T> {
  return new Promise((resolve) => emitter.once(event, (...args: unknown[]) => resolve(args as T)));
}
