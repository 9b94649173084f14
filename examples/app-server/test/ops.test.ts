// Operations as php-fpm and nginx users expect them, across every front:
// SIGHUP/SIGUSR2 reload with no failed request, SIGTERM drains and exits,
// SIGINT twice is at once, the pid file, the readiness route, a front that
// dies is replaced.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WWW, alive, childrenOf, load, request, requirePhp, sleep, spawnServer, startServer, tree, type Server } from './helpers.js';

describe('signals', () => {
  let dir: string;
  beforeAll(() => {
    requirePhp();
    dir = mkdtempSync(join(tmpdir(), 'app-server-ops-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('SIGHUP and SIGUSR2 replace the workers of every front under load with no failed request', async () => {
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '2', '--workers', '4']);
    try {
      const traffic = load(server.port, 8);
      await sleep(300);
      server.child.kill('SIGHUP');
      const first = await server.waitFor(/reloaded: workers ([\d, ]+)\n/);
      await sleep(200);
      server.child.kill('SIGUSR2');
      await server.waitFor(/SIGUSR2: reloading the workers\n(?:.*\n)*?reloaded: workers [\d, ]+\n/);
      await sleep(200);
      const { statuses, errors } = await traffic.stop();
      expect(errors).toEqual([]);
      expect(Object.keys(statuses)).toEqual(['201']); // plain.php answers 201
      expect(statuses[201]).toBeGreaterThan(50);
      // Every worker of both fronts was replaced, twice.
      const before = /; workers ([\d, ]+)\)/.exec(server.stdout())![1]!.split(', ');
      const after = first[1]!.split(', ');
      expect(before).toHaveLength(4);
      expect(after).toHaveLength(4);
      expect(after.filter((pid) => before.includes(pid))).toEqual([]);
    } finally {
      await server.stop();
    }
  });

  it('SIGTERM: stops accepting, lets the request in flight finish, exits 0 with nothing left running; the pid file comes and goes', async () => {
    const pidFile = join(dir, 'app.pid');
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '2', '--workers', '2', '--pid-file', pidFile]);
    expect(readFileSync(pidFile, 'utf8')).toBe(`${server.child.pid}\n`);
    const everyone = tree(server.child.pid!);
    expect(everyone.length).toBe(1 + 2 + 2); // the main process, 2 fronts, 2 workers
    const slow = request(server.port, 'GET', '/sleep.php?ms=1200');
    await sleep(300);
    const started = Date.now();
    const exit = server.stop('SIGTERM');
    await sleep(300);
    // No longer accepting: the fronts closed their listeners and the main process its copy.
    await expect(request(server.port, 'GET', '/plain.php')).rejects.toThrow(/ECONNREFUSED/);
    const r = await slow;
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('slept\n');
    expect(await exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(everyone.filter(alive)).toEqual([]);
    expect(existsSync(pidFile)).toBe(false);
    expect(server.stderr()).not.toMatch(/still running/);
  });

  it('SIGTERM: a request whose client went away in the middle of its body is not waited for', async () => {
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--grace', '20000']);
    const socket = net.connect(server.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('POST /plain.php HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nxyz');
    await sleep(300);
    socket.destroy();
    await sleep(300);
    const started = Date.now();
    expect(await server.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(5000); // (with --direct off it counted as running, and the server waited out --grace)
    expect(server.stderr()).not.toMatch(/still running/);
  }, 30_000);

  it('SIGTERM: a request longer than --grace is cut (503) and the server exits soon after the grace period', async () => {
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--grace', '500']);
    const slow = request(server.port, 'GET', '/sleep.php?ms=10000');
    await sleep(300);
    const started = Date.now();
    const exit = server.stop('SIGTERM');
    const r = await slow;
    expect(r.status).toBe(503);
    expect(r.body.toString()).toBe('503 Service Unavailable\n');
    expect(await exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(4000);
    expect(server.stderr()).toMatch(/stopping with 1 requests still running after the 500 ms grace period/);
  });

  it('SIGINT (Ctrl-C) drains like SIGTERM; a second SIGINT exits at once', async () => {
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1']);
    const everyone = tree(server.child.pid!);
    const slow = request(server.port, 'GET', '/sleep.php?ms=10000').catch((err: Error) => err);
    await sleep(300);
    server.child.kill('SIGINT');
    await server.waitFor(/SIGINT: stopping/);
    const started = Date.now();
    expect(await server.stop('SIGINT')).toEqual({ code: 130, signal: null });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await slow).toBeInstanceOf(Error); // cut: its connection died with its front
    await sleep(200);
    expect(everyone.filter(alive)).toEqual([]);
  });

  it('listens on a UNIX socket path, and removes it on the way out', async () => {
    const path = join(dir, 'app.sock');
    const server = spawnServer(['--listen', path, '--root', WWW, '--fronts', '2', '--workers', '2']);
    await server.waitFor(new RegExp(`app server on http\\+unix://${path.replaceAll('.', '\\.')} with 2 fronts`));
    const r = await new Promise<number>((resolve, reject) => {
      http
        .get({ socketPath: path, path: '/plain.php', agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        })
        .on('error', reject);
    });
    expect(r).toBe(201);
    expect(await server.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(existsSync(path)).toBe(false);
  });

  it('a front that dies is replaced, and the others serve meanwhile', async () => {
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '2', '--workers', '2']);
    try {
      const fronts = /fronts (\d+), (\d+);/.exec(server.stdout())!.slice(1).map(Number);
      process.kill(fronts[0]!, 'SIGKILL');
      await server.waitFor(new RegExp(`front ${fronts[0]} ended \\(SIGKILL\\); starting another in 100 ms`), { stream: 'stderr' });
      for (let i = 0; i < 20; i++) expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
      await sleep(1000);
      const now = childrenOf(server.child.pid!);
      expect(now).toHaveLength(2);
      expect(now).not.toContain(fronts[0]);
    } finally {
      await server.stop();
    }
  });
});

describe('readiness (Kubernetes)', () => {
  it('answers the ready path itself: 200 while serving, 503 during --shutdown-delay while it still serves requests', async () => {
    requirePhp();
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--ready-path', '/readyz', '--shutdown-delay', '800']);
    const ready = await request(server.port, 'GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.toString()).toBe('ready\n');
    const exit = server.stop('SIGTERM');
    await sleep(300);
    expect((await request(server.port, 'GET', '/readyz')).status).toBe(503);
    expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
    expect(await exit).toEqual({ code: 0, signal: null });
  });
});
