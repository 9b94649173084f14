// notify() against a datagram socket this test owns, bound as systemd binds
// NOTIFY_SOCKET (with SO_PASSCRED, so each message carries the sender's
// pid): a path and an abstract name.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { notify } from '../lib/index.js';
import { openFds, withTempDir } from './helpers.js';

const RECEIVER = join(__dirname, 'fixtures', 'notify-receiver.py');

interface Received {
  message: string;
  pid: number | null;
  /** When it arrived, CLOCK_MONOTONIC in microseconds. */
  usec: number;
}

/** A receiver bound at `address`; next() is its next datagram. */
async function receiver(address: string): Promise<{ child: ChildProcess; next(): Promise<Received> }> {
  const child = spawn('python3', [RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  let rest = '';
  child.stdout!.on('data', (d: Buffer) => {
    rest += d.toString();
    let nl;
    while ((nl = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      const w = waiting.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  const line = () =>
    new Promise<string>((resolve, reject) => {
      const l = lines.shift();
      if (l !== undefined) return resolve(l);
      waiting.push(resolve);
      child.once('exit', (code) => reject(new Error(`the receiver (python3) exited with ${code}: these tests need python3`)));
    });
  child.on('error', () => {});
  expect(await line()).toBe('ready');
  receivers.push(child);
  return { child, next: async () => JSON.parse(await line()) as Received };
}

const receivers: ChildProcess[] = [];
afterEach(() => {
  for (const r of receivers.splice(0)) r.kill();
});

describe('notify()', () => {
  it('sends sd_notify messages to a path socket: strings as given, objects as NAME=value lines, from this pid', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'notify.sock');
      const r = await receiver(path);
      const before = openFds();
      expect(notify('READY=1', { socket: path })).toBe(true);
      expect(await r.next()).toMatchObject({ message: 'READY=1', pid: process.pid });
      const usec = process.hrtime.bigint() / 1000n;
      expect(notify({ RELOADING: 1, MONOTONIC_USEC: usec, STATUS: 'Reloading: tüst' }, { socket: path })).toBe(true);
      const reloading = await r.next();
      expect(reloading).toMatchObject({ message: `RELOADING=1\nMONOTONIC_USEC=${usec}\nSTATUS=Reloading: tüst`, pid: process.pid });
      // process.hrtime is the clock systemd compares MONOTONIC_USEC with.
      expect(reloading.usec - Number(usec)).toBeGreaterThanOrEqual(0);
      expect(reloading.usec - Number(usec)).toBeLessThan(5_000_000);
      expect(notify({ STOPPING: true }, { socket: path })).toBe(true);
      expect((await r.next()).message).toBe('STOPPING=1');
      expect(openFds()).toEqual(before); // the socket of each send is closed
    });
  });

  it('reaches an abstract socket (@name) and reads NOTIFY_SOCKET, removing it when asked', async () => {
    const name = `@folk-notify-test-${process.pid}`;
    const r = await receiver(name);
    const saved = process.env.NOTIFY_SOCKET;
    try {
      process.env.NOTIFY_SOCKET = name;
      expect(notify('STATUS=one')).toBe(true);
      expect(await r.next()).toMatchObject({ message: 'STATUS=one', pid: process.pid });
      expect(process.env.NOTIFY_SOCKET).toBe(name);
      expect(notify('READY=1', { unsetEnvironment: true })).toBe(true);
      expect((await r.next()).message).toBe('READY=1');
      expect(process.env.NOTIFY_SOCKET).toBeUndefined();
      // Without a socket there is nothing to do, as with sd_notify.
      expect(notify('READY=1')).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.NOTIFY_SOCKET;
      else process.env.NOTIFY_SOCKET = saved;
    }
  });

  it('fails like Node when the datagram cannot go: no such socket, nobody bound, an address it cannot use', async () => {
    await withTempDir(async (dir) => {
      const before = openFds();
      const missing = join(dir, 'nobody.sock');
      expect(() => notify('READY=1', { socket: missing })).toThrow(
        expect.objectContaining({ code: 'ENOENT', syscall: 'sendto', errno: -2, address: missing, message: `ENOENT: no such file or directory, sendto '${missing}'` }),
      );
      expect(() => notify('READY=1', { socket: `@folk-nobody-${process.pid}` })).toThrow(expect.objectContaining({ code: 'ECONNREFUSED', syscall: 'sendto' }));
      expect(() => notify('READY=1', { socket: 'relative.sock' })).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'notify' }));
      expect(() => notify('READY=1', { socket: `/${'x'.repeat(120)}` })).toThrow(expect.objectContaining({ code: 'ENAMETOOLONG', syscall: 'notify' }));
      expect(() => notify('READY=1', { socket: 'vsock:2:1234' })).toThrow(expect.objectContaining({ code: 'EAFNOSUPPORT' }));
      expect(openFds()).toEqual(before);
    });
  });

  it('refuses bad arguments with TypeErrors naming them, sending nothing', () => {
    const socket = '/nonexistent/never-reached.sock';
    expect(() => notify(42 as never, { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"state"') }));
    expect(() => notify('', { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => notify('READY=1\0', { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => notify({ STATUS: 'a\nb' }, { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('"state.STATUS"') }));
    expect(() => notify({ 'A=B': 1 }, { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => notify({ READY: null } as never, { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => notify('READY=1', { socket: 3 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"options.socket"') }));
    expect(() => notify('READY=1', { unsetEnvironment: 'yes' } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});
