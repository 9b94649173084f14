// The main process: holds the listening socket (its own, or systemd's by
// socket activation), runs one HTTP front per core on it, and speaks for
// the whole server: signals, systemd notifications, the pid file.
//
// Fronts are started with @folk/fd-inherit's spawn, which hands them the
// socket the way systemd would (listenFds: LISTEN_FDS at fd 3), plus a
// control socket (@folk/socketpair). Node's cluster is not used: no fork of
// this process, no round-robin through it; the kernel gives each front the
// connections it accepts.
import { closeSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listenFds, notify, spawn } from '@folk/fd-inherit';
import { PidFd } from '@folk/pidfd';
import { socketpair } from '@folk/socketpair';
import { serverFd } from '@folk/worker-spawn';
import { frontCount, parseListen, workersOf } from './config.mjs';
import { onMessages, sendMessage } from './control.mjs';

const FRONT_MAIN = join(dirname(fileURLToPath(import.meta.url)), 'front-main.mjs');

export class Supervisor {
  /** Each front: { index, child, control, pid, workers, ready } */
  fronts = [];
  /** Where the first front listens ({ address, port } or a path), once started. */
  address = null;
  activated = false;
  #config;
  #spec;
  #log;
  #sockets = [];
  #socketPath = null;
  #reloading = null;
  #reloadId = 0;
  #stopping = null;
  #restartDelay = 100;
  #started = false;

  constructor(config, spec, { log = (line) => process.stderr.write(`${line}\n`) } = {}) {
    this.#config = config;
    this.#spec = spec;
    this.#log = log;
  }

  /** Take or open the listening sockets, start the fronts, resolve once every one is serving. */
  async start(listenOverride) {
    this.#notify({ STATUS: 'Starting' });
    this.#sockets = await this.#openSockets(listenOverride);
    if (this.#config['pid-file']) writeFileSync(this.#config['pid-file'], `${process.pid}\n`);
    const n = frontCount(this.#config);
    await Promise.all(Array.from({ length: n }, (_, i) => this.#startFront(i)));
    this.#started = true;
    this.#notify({ READY: 1, STATUS: this.#status() });
  }

  get workerPids() {
    return this.fronts.flatMap((f) => f.workers);
  }

  /** New PHP workers in every front, none failing a request: SIGHUP / SIGUSR2. */
  reload() {
    if (this.#stopping) return Promise.resolve();
    // A reload asked for while one runs starts over once it is done (the new code may be newer still).
    this.#reloading = (this.#reloading ?? Promise.resolve()).then(() => this.#reloadAll());
    return this.#reloading;
  }

  async #reloadAll() {
    if (this.#stopping) return;
    this.#notify({ RELOADING: 1, MONOTONIC_USEC: process.hrtime.bigint() / 1000n, STATUS: 'Reloading the PHP workers' });
    this.#log(`reloading the workers of ${this.fronts.length} front${this.fronts.length === 1 ? '' : 's'}`);
    const id = ++this.#reloadId;
    await Promise.all(
      this.fronts.map(
        (front) =>
          new Promise((resolve) => {
            front.onReloaded.set(id, resolve);
            front.exited.then(resolve);
            this.#send(front, { type: 'reload', id });
          }),
      ),
    );
    if (!this.#stopping) this.#notify({ READY: 1, STATUS: this.#status() });
  }

  /** Let the fronts reopen the access log (SIGUSR1, after logrotate). */
  reopenLogs() {
    for (const front of this.fronts) this.#send(front, { type: 'reopen' });
  }

  /**
   * Stop: every front stops accepting (after `delay`), finishes what is in
   * flight within `grace`, stops its workers and exits. Resolves when all
   * are gone (any still there after grace + 5 s are killed).
   */
  stop({ grace = this.#config.grace, delay = this.#config['shutdown-delay'] } = {}) {
    this.#stopping ??= (async () => {
      this.#notify({ STOPPING: 1, STATUS: 'Stopping: finishing the requests in flight' });
      for (const front of this.fronts) this.#send(front, { type: 'stop', grace, delay });
      // The fronts hold their own copies; ours would only keep accepting
      // into a queue nobody reads once they are gone.
      for (const { fd } of this.#sockets) closeSync(fd);
      this.#sockets = [];
      const killer = setTimeout(() => {
        for (const front of this.fronts) if (!front.gone) this.#killFront(front, 'SIGKILL');
      }, delay + grace + 5000);
      await Promise.all(this.fronts.map((f) => f.exited));
      clearTimeout(killer);
      if (this.#socketPath) rmSync(this.#socketPath, { force: true });
      if (this.#config['pid-file']) rmSync(this.#config['pid-file'], { force: true });
    })();
    return this.#stopping;
  }

  /** At once: SIGKILL to every front (their workers die with them). */
  kill() {
    for (const front of this.fronts) if (!front.gone) this.#killFront(front, 'SIGKILL');
    if (this.#config['pid-file']) rmSync(this.#config['pid-file'], { force: true });
  }

  #status() {
    return `${this.fronts.length} fronts, ${this.workerPids.length} ${this.#spec.label} workers`;
  }

  #notify(state) {
    try {
      notify(state);
    } catch (err) {
      this.#log(`systemd notification failed: ${err.message}`);
    }
  }

  /**
   * The listening sockets: systemd's (socket activation), else one opened
   * here. Node cannot give up a listening socket without closing it, so
   * this keeps a duplicate (pidfd_getfd on our own pidfd, close-on-exec)
   * and closes the server: nothing in this process accepts.
   */
  async #openSockets(listenOverride) {
    const activated = listenFds();
    if (activated.length > 0) {
      this.activated = true;
      return activated;
    }
    const where = listenOverride ?? parseListen(this.#config.listen);
    const server = net.createServer();
    // A UNIX socket is bound under a temporary name and moved into place:
    // Node removes the path it bound when its server closes.
    const bound = where.path ? { path: `${where.path}.${process.pid}.tmp` } : where;
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ ...bound, backlog: this.#config.backlog }, resolve);
    });
    if (where.path) {
      renameSync(bound.path, where.path);
      this.#socketPath = where.path;
      this.address = where.path;
    }
    const self = PidFd.open(process.pid);
    let fd;
    try {
      fd = self.getFd(serverFd(server));
    } finally {
      self.close();
    }
    server.close();
    return [{ fd, name: 'http' }];
  }

  #startFront(index) {
    const controlFd = 3 + this.#sockets.length;
    const [ours, theirs] = socketpair('stream');
    let child;
    try {
      // Node flags given to this process (--max-old-space-size, --cpu-prof ...) apply to the fronts too.
      child = spawn(process.execPath, [...process.execArgv, FRONT_MAIN], {
        listenFds: this.#sockets.map(({ fd, name }) => ({ fd, name })),
        fds: { [controlFd]: theirs },
        env: {
          ...process.env,
          NOTIFY_SOCKET: undefined,
          FOLK_APP_FRONT: JSON.stringify({ config: this.#config, spec: this.#spec, workers: workersOf(this.#config, index), controlFd }),
        },
        stdin: 'ignore',
        // Its own session: a terminal's Ctrl-C reaches this process only,
        // which then stops the fronts in order.
        setsid: true,
        pdeathsig: 'SIGTERM',
      });
    } finally {
      closeSync(theirs);
    }
    const control = new net.Socket({ fd: ours, readable: true, writable: true });
    const front = { index, child, control, pid: child.pid, workers: [], gone: false, onReloaded: new Map() };
    front.exited = child.wait().then((exit) => {
      front.gone = true;
      control.destroy();
      for (const resolve of front.onReloaded.values()) resolve();
      return exit;
    });
    this.fronts[index] = front;
    return new Promise((resolve, reject) => {
      onMessages(control, (message) => {
        if (message.type === 'ready') {
          front.workers = message.workers;
          this.address ??= message.address;
          this.#restartDelay = 100;
          resolve(front);
        } else if (message.type === 'reloaded') {
          front.workers = message.workers;
          front.onReloaded.get(message.id)?.();
          front.onReloaded.delete(message.id);
        }
      });
      control.on('error', () => {});
      front.exited.then((exit) => {
        if (this.#stopping) return;
        const how = exit.signal ?? `exit ${exit.code}`;
        // Before the server is up, a front that cannot start fails start()
        // (its log said why); starting it again would only repeat that.
        if (!this.#started) {
          reject(new Error(`the server could not start: front ${front.pid} ended (${how}) before it was ready`));
          return;
        }
        this.#log(`front ${front.pid} ended (${how}); starting another in ${this.#restartDelay} ms`);
        reject(new Error(`front ${front.pid} ended (${how}) before it was ready`));
        const delay = this.#restartDelay;
        this.#restartDelay = Math.min(this.#restartDelay * 2, 10_000);
        setTimeout(() => {
          if (!this.#stopping) this.#startFront(index).catch(() => {});
        }, delay);
      });
    });
  }

  #send(front, message) {
    if (!front.gone) sendMessage(front.control, message);
  }

  #killFront(front, signal) {
    try {
      front.child.kill(signal);
    } catch {
      // gone meanwhile
    }
  }
}
