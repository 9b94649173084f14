// systemd socket activation both ways: our spawn passing LISTEN_FDS, and
// listenFds() reading them; checked against systemd-socket-activate, which
// both consumes LISTEN_FDS (it verifies LISTEN_PID, then passes the fds on)
// and produces them.
import { closeSync, existsSync, openSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { PidFd, listenFds, spawn, type Subprocess } from '../lib/index.js';
import { DIST, libsystemdMissing, outputOf, pidfdInodeId, requireDist, withTempDir } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/listen-child.cjs', import.meta.url));
const ACTIVATE = '/usr/bin/systemd-socket-activate';
const hasActivate = existsSync(ACTIVATE);

interface Report {
  pid: number;
  /** The inode id of the child's own pidfd, as it found it; null where the kernel cannot tell. */
  pidfdId: string | null;
  envBefore: { LISTEN_PID?: string; LISTEN_PIDFDID?: string; LISTEN_FDS?: string; LISTEN_FDNAMES?: string };
  fds: Array<{ fd: number; name: string }>;
  inheritable: boolean[];
  envAfter: Record<string, string | undefined>;
}

/**
 * The first line of a stream. The stream keeps flowing afterwards: breaking
 * out of a for-await would destroy it, and a program writing more to its end
 * (systemd-socket-activate logs to stderr) would then die of SIGPIPE.
 */
function firstLine(stream: Readable): Promise<string> {
  stream.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\n');
      if (end === -1) return;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.resume();
      resolve(text.slice(0, end));
    };
    const onEnd = () => reject(new Error(`stream ended before a full line: ${JSON.stringify(text)}`));
    stream.on('data', onData);
    stream.on('end', onEnd);
  });
}

let abstractCount = 0;
/**
 * A listening unix socket whose fd we hand over; the caller closes its server
 * and the child keeps the fd. Abstract addresses (no file), because closing
 * a Node server bound to a path unlinks the path.
 */
async function listeningFd(): Promise<{ fd: number; server: net.Server; path: string }> {
  const path = `\0folk-fd-inherit-${process.pid}-${abstractCount++}`;
  const server = net.createServer();
  server.listen(path);
  await once(server, 'listening');
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  return { fd, server, path };
}

async function request(path: string): Promise<string> {
  const socket = net.connect(path);
  socket.setEncoding('utf8');
  let text = '';
  for await (const chunk of socket) text += chunk;
  return text;
}

async function finish(child: Subprocess): Promise<void> {
  try {
    child.kill('SIGTERM');
  } catch {
    // Exited already.
  }
  await child.wait();
  child.pidfd.close();
}

describe('listenFds option of spawn', () => {
  it('hands fds at 3, 4 with LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID = the child pid and LISTEN_PIDFDID = its pidfd inode id', async () => {
    requireDist();
    {
      const one = await listeningFd();
      const two = await listeningFd();
      const child = spawn(process.execPath, [CHILD, DIST], {
        listenFds: [{ fd: one.fd, name: 'web' }, two.fd],
        stdout: 'pipe',
        // Stale values are replaced; a stale LISTEN_PIDFDID would make the child refuse the fds.
        env: { ...process.env, LISTEN_PID: '1', LISTEN_FDS: '9', LISTEN_PIDFDID: '1', LISTEN_FDNAMES: 'x' },
      });
      one.server.close();
      two.server.close();
      try {
        const report = JSON.parse(await firstLine(child.stdout!)) as Report;
        expect(report.pid).toBe(child.pid);
        // The same inode as the pidfd we hold for the child; left out where the kernel cannot tell.
        const pidfdId = pidfdInodeId(child.pidfd.fd);
        expect(report.pidfdId).toBe(pidfdId);
        expect(report.envBefore).toEqual({
          LISTEN_PID: String(child.pid),
          LISTEN_PIDFDID: pidfdId ?? undefined,
          LISTEN_FDS: '2',
          LISTEN_FDNAMES: 'web:unknown',
        });
        expect(report.fds).toEqual([
          { fd: 3, name: 'web' },
          { fd: 4, name: 'unknown' },
        ]);
        expect(report.inheritable).toEqual([false, false]);
        expect(report.envAfter).toEqual({});
        expect(await request(one.path)).toBe('hello from web\n');
        expect(await request(two.path)).toBe('hello from unknown\n');
      } finally {
        await finish(child);
      }
    }
  });

  it('with no fds sets no variable, and removes stale ones (libsystemd takes LISTEN_FDS=0 for an error)', async () => {
    requireDist();
    const child = spawn(process.execPath, [CHILD, DIST], {
      listenFds: [],
      stdout: 'pipe',
      env: { ...process.env, LISTEN_PID: '1', LISTEN_FDS: '9', LISTEN_PIDFDID: '1', LISTEN_FDNAMES: 'x' },
    });
    try {
      const report = JSON.parse(await firstLine(child.stdout!)) as Report;
      expect(report.envBefore).toEqual({});
      expect(report.fds).toEqual([]);
    } finally {
      await finish(child);
    }
  });

  it('names as systemd allows them: empty included; a backslash (an escape to libsystemd) or ":" is refused', async () => {
    requireDist();
    const listening = await listeningFd();
    try {
      const child = spawn(process.execPath, [CHILD, DIST], {
        listenFds: [{ fd: listening.fd, name: '' }, { fd: listening.fd, name: 'x'.repeat(255) }, listening.fd],
        stdout: 'pipe',
      });
      try {
        const report = JSON.parse(await firstLine(child.stdout!)) as Report;
        expect(report.envBefore.LISTEN_FDNAMES).toBe(`:${'x'.repeat(255)}:unknown`);
        expect(report.fds).toEqual([
          { fd: 3, name: '' },
          { fd: 4, name: 'x'.repeat(255) },
          { fd: 5, name: 'unknown' },
        ]);
      } finally {
        await finish(child);
      }
      for (const bad of ['a\\b', 'a:b', 'x'.repeat(256), 'tab\there', 'caf\u00e9']) {
        expect(() => spawn('/bin/true', [], { listenFds: [{ fd: listening.fd, name: bad }] })).toThrow(
          expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('options.listenFds[0].name') }),
        );
      }
    } finally {
      listening.server.close();
    }
  });

  const missing = libsystemdMissing();
  it.skipIf(missing !== null)(
    `libsystemd in the child reads them as given (sd_listen_fds_with_names through ctypes)${missing === null ? '' : ` (skipped: ${missing})`}`,
    async () => {
      const one = await listeningFd();
      const two = await listeningFd();
      // Prints sd_listen_fds_with_names's answer: the count (or -errno) and the names.
      const script = [
        'import ctypes, json',
        'sd = ctypes.CDLL("libsystemd.so.0")',
        'names = ctypes.POINTER(ctypes.c_char_p)()',
        'r = sd.sd_listen_fds_with_names(1, ctypes.byref(names))',
        'got = [names[i].decode() for i in range(r)] if r > 0 else []',
        'print(json.dumps({"r": r, "names": got}))',
      ].join('\n');
      const child = spawn('python3', ['-c', script], {
        listenFds: [{ fd: one.fd, name: 'web' }, { fd: two.fd, name: '' }, one.fd],
        stdout: 'pipe',
      });
      one.server.close();
      two.server.close();
      const { out, code } = await outputOf(child);
      child.pidfd.close();
      expect(code).toBe(0);
      expect(JSON.parse(out)).toEqual({ r: 3, names: ['web', '', 'unknown'] });
    },
  );

  it.skipIf(!hasActivate)('systemd-socket-activate accepts them (it checks LISTEN_PID) and passes them on', async () => {
    requireDist();
    {
      const listening = await listeningFd();
      const child = spawn(ACTIVATE, [process.execPath, CHILD, DIST], {
        listenFds: [{ fd: listening.fd, name: 'api' }],
        stdout: 'pipe',
        stderr: 'pipe',
      });
      listening.server.close();
      try {
        // The first connection makes systemd-socket-activate exec the service.
        const answer = request(listening.path);
        const report = JSON.parse(await firstLine(child.stdout!)) as Report;
        // systemd-socket-activate execs in place, so the service has its pid.
        expect(report.pid).toBe(child.pid);
        expect(report.fds.map((f) => f.fd)).toEqual([3]);
        expect(report.inheritable).toEqual([false]);
        expect(await answer).toMatch(/^hello from /);
      } finally {
        await finish(child);
      }
    }
  });
});

describe('listenFds()', () => {
  it('returns [] without the variables, and when LISTEN_PID names another process (removing them)', () => {
    expect(listenFds()).toEqual([]);
    process.env['LISTEN_PID'] = String(process.pid + 1);
    process.env['LISTEN_PIDFDID'] = '1';
    process.env['LISTEN_FDS'] = '1';
    process.env['LISTEN_FDNAMES'] = 'a';
    expect(listenFds()).toEqual([]);
    for (const name of ['LISTEN_PID', 'LISTEN_PIDFDID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) expect(process.env[name]).toBeUndefined();
  });

  it('returns [] when LISTEN_PIDFDID names another process that got our pid', () => {
    // Our pid, but not our pidfd: systemd 258 meant them for an earlier holder
    // of this pid, or one in another pid namespace.
    const own = PidFd.open(process.pid);
    const id = pidfdInodeId(own.fd);
    own.close();
    if (id === null) return; // no pidfs (before Linux 6.9): LISTEN_PID alone decides, as in libsystemd
    process.env['LISTEN_PID'] = String(process.pid);
    process.env['LISTEN_PIDFDID'] = String(BigInt(id) + 1n);
    process.env['LISTEN_FDS'] = '1';
    expect(listenFds()).toEqual([]);
    expect(process.env['LISTEN_PIDFDID']).toBeUndefined();
  });

  it('rejects what libsystemd rejects, with a message naming the variable: LISTEN_FDS=0, a LISTEN_PID that is no pid', () => {
    const cases: Array<[Record<string, string>, string, RegExp]> = [
      [{ LISTEN_FDS: '0' }, 'EINVAL', /LISTEN_FDS is not a number of fds \(1 or more\): "0"/],
      [{ LISTEN_PID: 'self' }, 'EINVAL', /LISTEN_PID is not a pid: "self"/],
      [{ LISTEN_PID: '0' }, 'ERANGE', /LISTEN_PID is out of range for a pid: "0"/],
      [{ LISTEN_PIDFDID: '-1' }, 'ERANGE', /LISTEN_PIDFDID is out of range for a pidfd inode id: "-1"/],
      [{ LISTEN_FDNAMES: 'a\\' }, 'EINVAL', /LISTEN_FDNAMES ends in a lone backslash/],
    ];
    // Each fails before any fd is touched (fd 3 here is vitest's).
    for (const [env, code, message] of cases) {
      Object.assign(process.env, { LISTEN_PID: String(process.pid), LISTEN_FDS: '1' }, env);
      expect(() => listenFds()).toThrow(expect.objectContaining({ code, syscall: 'listenFds', message: expect.stringMatching(message) }));
      expect(process.env['LISTEN_PID']).toBeUndefined();
    }
  });

  it('can leave the variables in place', () => {
    process.env['LISTEN_PID'] = String(process.pid + 1);
    process.env['LISTEN_FDS'] = '1';
    try {
      expect(listenFds({ unsetEnvironment: false })).toEqual([]);
      expect(process.env['LISTEN_FDS']).toBe('1');
    } finally {
      delete process.env['LISTEN_PID'];
      delete process.env['LISTEN_FDS'];
    }
  });

  it('rejects a LISTEN_FDS that is not a number', () => {
    process.env['LISTEN_PID'] = String(process.pid);
    process.env['LISTEN_FDS'] = 'many';
    expect(() => listenFds()).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'listenFds' }));
  });

  it('rejects LISTEN_FDNAMES with another number of names than LISTEN_FDS, after making the fds close-on-exec (as libsystemd)', async () => {
    requireDist();
    const script = `
      const { listenFds, isInheritable, setInheritable } = require(${JSON.stringify(DIST)});
      setInheritable(3, true); // Node made it close-on-exec as it started
      Object.assign(process.env, { LISTEN_PID: String(process.pid), LISTEN_FDS: '1', LISTEN_FDNAMES: 'a:b' });
      let error;
      try {
        listenFds();
      } catch (e) {
        error = { code: e.code, syscall: e.syscall, message: e.message };
      }
      console.log(JSON.stringify({ error, cloexec: !isInheritable(3) }));`;
    const file = openSync('/dev/null', 'r');
    try {
      const { out, code } = await outputOf(spawn(process.execPath, ['-e', script], { fds: { 3: file }, stdout: 'pipe' }));
      expect(code).toBe(0);
      expect(JSON.parse(out)).toEqual({
        error: {
          code: 'EINVAL',
          syscall: 'listenFds',
          message: 'EINVAL: invalid argument, LISTEN_FDNAMES has 2 names for LISTEN_FDS=1: "a:b"',
        },
        cloexec: true,
      });
    } finally {
      closeSync(file);
    }
  });

  it.skipIf(!hasActivate)('reads what systemd-socket-activate hands over', async () => {
    requireDist();
    await withTempDir(async (dir) => {
      const path = join(dir, 'sd.sock');
      const activate = spawn(ACTIVATE, ['-l', path, '--fdname=from-systemd', process.execPath, CHILD, DIST], {
        stdout: 'pipe',
        stderr: 'pipe',
      });
      try {
        // "Listening on <path> as 3." once the socket exists.
        expect(await firstLine(activate.stderr!)).toContain(path);
        const answer = request(path);
        const report = JSON.parse(await firstLine(activate.stdout!)) as Report;
        expect(report.envBefore.LISTEN_PID).toBe(String(report.pid));
        expect(report.fds).toEqual([{ fd: 3, name: 'from-systemd' }]);
        expect(report.inheritable).toEqual([false]);
        expect(report.envAfter).toEqual({});
        expect(await answer).toBe('hello from from-systemd\n');
      } finally {
        await finish(activate);
      }
    });
  });
});
