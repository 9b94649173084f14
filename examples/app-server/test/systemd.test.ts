// Under systemd: Type=notify-reload's protocol on $NOTIFY_SOCKET (READY=1,
// RELOADING=1 with MONOTONIC_USEC, READY=1 again, STOPPING=1, STATUS=),
// checked against a datagram socket this test binds as systemd does; and
// socket activation through the real systemd-socket-activate.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WWW, freePort, listenBacklog, request, requirePhp, spawnServer, startServer } from './helpers.js';

/** The receiver of @folk/fd-inherit's own notify() test: binds like systemd (SO_PASSCRED), prints a JSON line per datagram. */
const RECEIVER = join(__dirname, '..', '..', '..', 'packages', 'fd-inherit', 'test', 'fixtures', 'notify-receiver.py');
const ACTIVATE = '/usr/bin/systemd-socket-activate';

interface Notification {
  message: string;
  pid: number;
  usec: number;
}

/** A NOTIFY_SOCKET of our own at `path`: next() is the next datagram, parsed into its assignments. */
async function notifySocket(path: string) {
  const child = spawn('python3', [RECEIVER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.value !== 'ready') throw new Error('the notify receiver (python3) did not start: these tests need python3');
  return {
    child,
    async next(): Promise<Notification & { vars: Record<string, string> }> {
      const line = await lines.next();
      if (line.done) throw new Error('the notify receiver ended');
      const n = JSON.parse(line.value) as Notification;
      return { ...n, vars: Object.fromEntries(n.message.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])) };
    },
  };
}

/** The environment of a running process. */
function environOf(pid: number): Record<string, string> {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, 'latin1')
      .split('\0')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}

describe('systemd', () => {
  let dir: string;
  beforeAll(() => {
    requirePhp();
    dir = mkdtempSync(join(tmpdir(), 'app-server-systemd-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('speaks Type=notify-reload on NOTIFY_SOCKET from the main pid: READY=1, RELOADING=1 with MONOTONIC_USEC then READY=1 on SIGHUP, STOPPING=1 on SIGTERM', async () => {
    const socket = join(dir, 'notify.sock');
    const notifications = await notifySocket(socket);
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '2', '--workers', '2'], { env: { ...process.env, NOTIFY_SOCKET: socket } });
    const main = server.child.pid!;
    try {
      const starting = await notifications.next();
      expect(starting).toMatchObject({ pid: main, vars: { STATUS: 'Starting' } });
      const ready = await notifications.next();
      expect(ready).toMatchObject({ pid: main, vars: { READY: '1', STATUS: '2 fronts, 2 PHP workers' } });

      // Nothing below the main process can reach systemd: no NOTIFY_SOCKET in
      // a front or a worker, and a worker has no LISTEN_* either (a front
      // gets its own, for the socket it is handed).
      const fronts = /fronts (\d+), (\d+);/.exec(server.stdout())!.slice(1).map(Number);
      const workers = /; workers (\d+), (\d+)\)/.exec(server.stdout())!.slice(1).map(Number);
      for (const pid of fronts) {
        expect(Object.keys(environOf(pid)).filter((k) => k === 'NOTIFY_SOCKET')).toEqual([]);
        expect(environOf(pid)).toMatchObject({ LISTEN_FDS: '1', LISTEN_PID: String(pid) });
      }
      for (const pid of workers) expect(Object.keys(environOf(pid)).filter((k) => k === 'NOTIFY_SOCKET' || k.startsWith('LISTEN_'))).toEqual([]);

      server.child.kill('SIGHUP');
      const reloading = await notifications.next();
      expect(reloading).toMatchObject({ pid: main, vars: { RELOADING: '1', STATUS: 'Reloading the PHP workers' } });
      // CLOCK_MONOTONIC in microseconds, taken just before sending: what systemd compares with its own clock.
      const sent = Number(reloading.vars.MONOTONIC_USEC);
      expect(reloading.usec - sent).toBeGreaterThanOrEqual(0);
      expect(reloading.usec - sent).toBeLessThan(2_000_000);
      const reloaded = await notifications.next();
      expect(reloaded).toMatchObject({ pid: main, vars: { READY: '1', STATUS: '2 fronts, 2 PHP workers' } });
      await server.waitFor(/reloaded: workers/);

      server.child.kill('SIGTERM');
      expect(await notifications.next()).toMatchObject({ pid: main, vars: { STOPPING: '1' } });
      expect(await server.exited).toEqual({ code: 0, signal: null });
    } finally {
      await server.stop();
      notifications.child.kill();
    }
  });

  it('takes its socket from systemd-socket-activate (LISTEN_FDS): a connection made before it started is served', async () => {
    const port = await freePort();
    const server = spawnServer(['--root', WWW, '--fronts', '2', '--workers', '2', '--listen', '127.0.0.1:1'], { command: [ACTIVATE, '-l', `127.0.0.1:${port}`] });
    try {
      // "Listening on 127.0.0.1:PORT as 3.", then the first connection makes it exec the server.
      await server.waitFor(/Listening on/, { stream: 'stderr' });
      const early = request(port, 'GET', '/plain.php?early=1');
      const line = await server.waitFor(/app server on http:\/\/127\.0\.0\.1:(\d+)\/ .*; socket from systemd\)/);
      expect(Number(line[1])).toBe(port); // not --listen's port: systemd's socket
      const r = await early;
      expect(r.status).toBe(201);
      expect(JSON.parse(r.body.toString()).get).toEqual({ early: '1' });
      expect((await request(port, 'GET', '/plain.php')).status).toBe(201);
      expect(listenBacklog(port)).toBe(511);
      server.child.kill('SIGTERM');
      expect(await server.exited).toEqual({ code: 0, signal: null });
    } finally {
      await server.stop('SIGKILL');
    }
  });
});

describe('the sample files in systemd/', () => {
  it('app-server.conf holds only settings the server knows, with values it takes', async () => {
    // @ts-expect-error: plain JavaScript, no types
    const { parseArgs } = await import('../lib/config.mjs');
    const { config } = parseArgs(['--config', join(__dirname, '..', 'systemd', 'app-server.conf')]);
    expect(config).toMatchObject({ root: '/srv/www', workers: 'auto', listen: '0.0.0.0:8080', 'max-body': 8 * 1024 * 1024 });
  });
});
