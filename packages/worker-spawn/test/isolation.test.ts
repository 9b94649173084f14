// options.isolation: workers in new namespaces (and a cgroup), through
// spawnWorker and WorkerPool, with php-cli. The PHP library still finds its
// fds 3 and 4, and a worker without network still serves HTTP on a listening
// socket sent to it over fd 4.
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmdirSync } from 'node:fs';
import * as net from 'node:net';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { WorkerPool, serverFd, spawnWorker, type IsolationOptions } from '../lib/index.js';
import { fixture, openFds, requirePhp, zombieChildren } from './helpers.js';

const UNIFIED = '/sys/fs/cgroup/unified';
const KINDS = ['user', 'pid', 'mnt', 'net'] as const;

/** user + pid + mount + net, root inside mapped to our own ids: needs no privilege. */
const sandbox: IsolationOptions = {
  namespaces: { user: true, pid: true, mount: true, net: true },
  uidMap: [{ inside: 0, outside: process.getuid!(), count: 1 }],
  gidMap: [{ inside: 0, outside: process.getgid!(), count: 1 }],
};

/** What http-isolated.php reports about its view. */
interface Seen {
  pid: number;
  processes: number[];
  interfaces: string[];
  connectOut: string;
}

const namespacesOf = (pid: number | 'self') => KINDS.map((k) => readlinkSync(`/proc/${pid}/ns/${k}`));

beforeAll(() => {
  requirePhp();
});

async function listening(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => {
    if (server.listening) server.close();
  });
  return { server, port: (server.address() as net.AddressInfo).port };
}

describe('spawnWorker({ isolation })', () => {
  it('a PHP worker that cannot see the network or other processes still serves HTTP on a listening socket sent over fd 4', async () => {
    const before = openFds();
    const { server, port } = await listening();
    const worker = spawnWorker({ script: fixture('http-isolated.php'), env: { ...process.env, PORT: String(port) }, isolation: sandbox });
    try {
      // The PHP library found fds 3 and 4; its pid is 1 in its own namespace.
      expect((await worker.ready).pid).toBe(1);
      const inside = namespacesOf(worker.pid);
      namespacesOf('self').forEach((ours, i) => expect(inside[i], KINDS[i]).not.toBe(ours));
      await worker.control.sendFds([serverFd(server)], { tag: 'listen' });
      await new Promise((resolve) => server.close(resolve)); // the worker's copy keeps it listening
      const response = await fetch(`http://127.0.0.1:${port}/`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({
        pid: 1,
        processes: [1], // php alone: a /proc of its own pid namespace
        interfaces: ['lo'], // no network but the loopback, and that is down
        connectOut: 'Network is unreachable', // even the port it serves, from the inside
      });
      expect((await worker.request('still serving')).toString()).toBe('still serving');
    } finally {
      await worker.stop();
    }
    expect(zombieChildren()).toEqual([]);
    expect(openFds()).toEqual(before);
  });

  it('without isolation the same worker sees our network and processes (the control)', async () => {
    const { server, port } = await listening();
    const worker = spawnWorker({ script: fixture('http-isolated.php'), env: { ...process.env, PORT: String(port) } });
    try {
      expect((await worker.ready).pid).toBe(worker.pid);
      await worker.control.sendFds([serverFd(server)], { tag: 'listen' });
      await new Promise((resolve) => server.close(resolve));
      const seen = (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as Seen;
      expect(seen.pid).toBe(worker.pid);
      expect(seen.processes).toContain(process.pid);
      expect(seen.interfaces.length).toBeGreaterThan(1);
      expect(seen.connectOut).toBe('connected');
    } finally {
      await worker.stop();
    }
  });

  it('a ready message from another pid is still refused in a pid namespace', async () => {
    // A wrapper that forks php instead of exec'ing it: php is pid 2 inside, not 1.
    const worker = spawnWorker({ command: '/bin/sh', script: '-c', args: [`php ${fixture('echo.php')}; true`], isolation: sandbox });
    try {
      const err = await worker.ready.then(
        () => null,
        (e: Error & { code?: string }) => e,
      );
      expect(err).toMatchObject({ code: 'ERR_WORKER_PID_MISMATCH' });
      expect(err!.message).toBe(
        `worker ready message says pid 2, but the spawned process is pid ${worker.pid}, 1 in its pid namespace (a wrapper that forks instead of exec'ing?)`,
      );
    } finally {
      worker.close();
      await worker.exited;
    }
  });

  it('names a bad isolation option options.isolation.<name>, and refuses options that are not isolation', () => {
    const before = openFds();
    const bad = (isolation: unknown) => {
      try {
        spawnWorker({ script: fixture('echo.php'), isolation: isolation as IsolationOptions });
      } catch (err) {
        return err as Error & { code: string };
      }
      throw new Error('no error');
    };
    expect(bad({ hostname: 'x' })).toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
      message: `The "options.isolation.hostname" property needs options.isolation.namespaces.uts. Received 'x'`,
    });
    expect(bad({ namespaces: { pid: 'yes' } })).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"options.isolation.namespaces.pid"') });
    expect(bad({ fds: { 3: 0 } })).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining("unknown option 'fds'") });
    expect(bad(5)).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    // A map the kernel refuses: the spawn error, with its step and namespace.
    const refused = bad({ namespaces: { user: true }, uidMap: [{ inside: 0, outside: 0, count: 2 }, { inside: 1, outside: 9, count: 1 }] });
    expect(refused).toMatchObject({ code: 'EINVAL', step: 'write uid_map', namespace: 'user' });
    expect(zombieChildren()).toEqual([]);
    expect(openFds()).toEqual(before);
  });
});

describe('new WorkerPool({ isolation })', () => {
  it('starts every worker isolated, each in namespaces of its own, all in the pool cgroup', async () => {
    const cgroup = existsSync(`${UNIFIED}/cgroup.procs`) ? `${UNIFIED}/folk-worker-spawn-${process.pid}` : undefined;
    if (cgroup) {
      mkdirSync(cgroup);
      // Also when the test fails midway; by then the pool's stop() has reaped its workers.
      onTestFinished(() => rmdirSync(cgroup));
    }
    const pool = new WorkerPool({ script: fixture('echo.php'), size: 2, isolation: { ...sandbox, ...(cgroup ? { cgroup } : {}) } });
    try {
      await pool.ready();
      expect((await Promise.all(['a', 'b', 'c'].map((p) => pool.run(p)))).map(String)).toEqual(['a', 'b', 'c']);
      const pids = pool.stats().list.map((w) => w.pid);
      expect(pids).toHaveLength(2);
      const [one, two] = pids.map(namespacesOf);
      const ours = namespacesOf('self');
      KINDS.forEach((kind, i) => {
        expect(one![i], kind).not.toBe(ours[i]);
        expect(two![i], kind).not.toBe(ours[i]);
        expect(one![i], kind).not.toBe(two![i]);
      });
      if (cgroup) {
        const members = readFileSync(`${cgroup}/cgroup.procs`, 'utf8').trim().split('\n').map(Number);
        expect(members.sort()).toEqual([...pids].sort());
      }
    } finally {
      await pool.stop();
    }
  });
});
