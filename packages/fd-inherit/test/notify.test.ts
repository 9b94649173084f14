// notify() against a datagram socket this test owns, bound as systemd binds
// NOTIFY_SOCKET (with SO_PASSCRED, so each message carries the sender's
// pid): a path and an abstract name.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { notify } from '../lib/index.js';
import { libsystemdMissing, openFds, withTempDir } from './helpers.js';

const RECEIVER = join(__dirname, 'fixtures', 'notify-receiver.py');
const ORACLE = join(__dirname, 'fixtures', 'sd-notify-oracle.py');

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
  const waiting: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = [];
  let rest = '';
  child.stdout!.on('data', (d: Buffer) => {
    rest += d.toString();
    let nl;
    while ((nl = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      const w = waiting.shift();
      if (w) w.resolve(line);
      else lines.push(line);
    }
  });
  const exited = (code: number | null) => new Error(`the receiver (python3) exited with ${code}: these tests need python3`);
  child.once('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(exited(code));
  });
  const line = () =>
    new Promise<string>((resolve, reject) => {
      const l = lines.shift();
      if (l !== undefined) return resolve(l);
      if (child.exitCode !== null) return reject(exited(child.exitCode));
      waiting.push({ resolve, reject });
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

  it('sends what sd_notify sends: an empty state as an empty datagram, a message past the default send buffer', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'notify.sock');
      const r = await receiver(path);
      expect(notify('', { socket: path })).toBe(true);
      expect((await r.next()).message).toBe('');
      expect(notify({}, { socket: path })).toBe(true);
      expect((await r.next()).message).toBe('');
      // Past net.core.wmem_default (about 208 KiB), which caps a datagram
      // unless the socket's SO_SNDBUF is raised, as libsystemd raises it.
      const status = `STATUS=${'x'.repeat(300_000)}`;
      expect(notify(status, { socket: path })).toBe(true);
      expect((await r.next()).message).toBe(status);
    });
  });

  it('refuses NOTIFY_SOCKET values libsystemd 252 refuses, with its codes: shorter than 2 bytes, longer than 107', () => {
    const before = openFds();
    for (const socket of ['', '@', '/', 'x']) {
      expect(() => notify('READY=1', { socket }), JSON.stringify(socket)).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'notify' }));
    }
    // 107 bytes is sent (nothing is bound there), 108 is not.
    const path = `/${'p'.repeat(106)}`;
    expect(() => notify('READY=1', { socket: path })).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'sendto' }));
    expect(() => notify('READY=1', { socket: `${path}p` })).toThrow(expect.objectContaining({ code: 'ENAMETOOLONG', syscall: 'notify' }));
    // In bytes, not characters: 53 two-byte characters and the slash.
    expect(() => notify('READY=1', { socket: `/${'é'.repeat(53)}` })).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => notify('READY=1', { socket: `/${'é'.repeat(54)}` })).toThrow(expect.objectContaining({ code: 'ENAMETOOLONG' }));
    const abstract = `@folk-${process.pid}-${'a'.repeat(100 - String(process.pid).length)}`;
    expect(Buffer.byteLength(abstract)).toBe(107);
    expect(() => notify('READY=1', { socket: abstract })).toThrow(expect.objectContaining({ code: 'ECONNREFUSED', syscall: 'sendto' }));
    // libsystemd says EINVAL, not ENAMETOOLONG, for an abstract name.
    expect(() => notify('READY=1', { socket: `${abstract}a` })).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'notify' }));
    expect(openFds()).toEqual(before);
  });

  it('with unsetEnvironment, removes NOTIFY_SOCKET whatever happens, as sd_notify(1, ...) does: a bad state, a bad socket', () => {
    const saved = process.env.NOTIFY_SOCKET;
    try {
      for (const [state, socket, code] of [
        [42, '/nonexistent/never-reached.sock', 'ERR_INVALID_ARG_TYPE'],
        ['READY=1\0', '/nonexistent/never-reached.sock', 'ERR_INVALID_ARG_VALUE'],
        ['READY=1', 'relative.sock', 'EINVAL'],
        ['READY=1', '@', 'EINVAL'],
        ['READY=1', '/nonexistent/x.sock', 'ENOENT'],
      ] as const) {
        process.env.NOTIFY_SOCKET = socket;
        expect(() => notify(state as never, { unsetEnvironment: true }), `${state} ${socket}`).toThrow(expect.objectContaining({ code }));
        expect(process.env.NOTIFY_SOCKET, `${state} ${socket}`).toBeUndefined();
      }
    } finally {
      if (saved === undefined) delete process.env.NOTIFY_SOCKET;
      else process.env.NOTIFY_SOCKET = saved;
    }
  });

  it('refuses bad arguments with TypeErrors naming them, sending nothing', () => {
    const socket = '/nonexistent/never-reached.sock';
    expect(() => notify(42 as never, { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"state"') }));
    expect(() => notify('READY=1\0', { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => notify({ STATUS: 'a\nb' }, { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('"state.STATUS"') }));
    expect(() => notify({ 'A=B': 1 }, { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => notify({ READY: null } as never, { socket })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => notify('READY=1', { socket: 3 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"options.socket"') }));
    expect(() => notify('READY=1', { unsetEnvironment: 'yes' } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});

const missing = libsystemdMissing();

interface OracleCase {
  /** NOTIFY_SOCKET; null: unset. "{receiver}" stands for the receiver's path. */
  socket: string | null;
  state: string;
  unset: boolean;
}

/** Cases whose answer is the same in every libsystemd since 252 (the 108-byte ones above are 252's own). */
const ORACLE_CASES: OracleCase[] = (
  [
    ['{receiver}', 'READY=1'],
    ['{receiver}', ''],
    ['{receiver}', `STATUS=${'x'.repeat(300_000)}`],
    // Past net.core.wmem_max too: sent where SO_SNDBUFFORCE is allowed (root), else EMSGSIZE.
    ['{receiver}', `STATUS=${'y'.repeat(1_000_000)}`],
    [null, 'READY=1'],
    ['', 'READY=1'],
    ['@', 'READY=1'],
    ['/', 'READY=1'],
    ['x', 'READY=1'],
    ['relative.sock', 'READY=1'],
    ['//', 'READY=1'],
    ['@@', 'READY=1'],
    ['/nonexistent/notify.sock', 'READY=1'],
    [`@folk-nobody-${process.pid}`, 'READY=1'],
    [`/${'p'.repeat(106)}`, 'READY=1'],
    [`@${'a'.repeat(106)}`, 'READY=1'],
  ] as Array<[string | null, string]>
).flatMap(([socket, state]) => [
  { socket, state, unset: false },
  { socket, state, unset: true },
]);

describe.skipIf(missing !== null)(`notify() agrees with libsystemd's sd_notify${missing === null ? '' : ` (skipped: ${missing})`}`, () => {
  it(`over ${ORACLE_CASES.length} cases: what is sent, the return value or errno, NOTIFY_SOCKET afterwards`, async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'notify.sock');
      const r = await receiver(path);
      const cases = ORACLE_CASES.map((c) => ({ ...c, socket: c.socket?.replace('{receiver}', path) ?? null }));
      /** What the receiver got for the answers `results` (a datagram for each 1). */
      const received = async (results: Array<{ r: number }>) => {
        const messages: string[] = [];
        for (const { r: sent } of results) if (sent === 1) messages.push((await r.next()).message);
        return messages;
      };

      const oracle = spawnSync('python3', [ORACLE], { input: JSON.stringify(cases), encoding: 'utf8' });
      expect(oracle.stderr).toBe('');
      const theirs = JSON.parse(oracle.stdout) as Array<{ r: number; after: string | null }>;
      const theirMessages = await received(theirs);

      const saved = process.env.NOTIFY_SOCKET;
      const ours: Array<{ r: number; after: string | null }> = [];
      try {
        for (const c of cases) {
          if (c.socket === null) delete process.env.NOTIFY_SOCKET;
          else process.env.NOTIFY_SOCKET = c.socket;
          let result: number;
          try {
            result = notify(c.state, { unsetEnvironment: c.unset }) ? 1 : 0;
          } catch (err) {
            result = (err as NodeJS.ErrnoException).errno ?? NaN;
          }
          ours.push({ r: result, after: process.env.NOTIFY_SOCKET ?? null });
        }
      } finally {
        if (saved === undefined) delete process.env.NOTIFY_SOCKET;
        else process.env.NOTIFY_SOCKET = saved;
      }
      const ourMessages = await received(ours);

      const label = (results: Array<{ r: number; after: string | null }>) =>
        results.map((x, i) => ({ socket: cases[i]!.socket?.slice(0, 40) ?? null, state: cases[i]!.state.slice(0, 20), unset: cases[i]!.unset, ...x }));
      expect(label(ours)).toEqual(label(theirs));
      expect(ourMessages.map((m) => m.length)).toEqual(theirMessages.map((m) => m.length));
      expect(ourMessages).toEqual(theirMessages);
    });
  }, 60_000);
});
