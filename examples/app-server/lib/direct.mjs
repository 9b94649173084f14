// --direct: the PHP workers speak HTTP themselves. The front accepts each
// connection and hands its descriptor to the worker holding the fewest
// connections (over the worker's control socket, SCM_RIGHTS: @folk/worker-spawn's
// pool.send); that worker reads every request of the connection and writes
// every response (php/ConnectionSource.php), so no request passes through
// Node. The front keeps its own copy of each connection, paused (Node never
// reads it), so a connection outlives its worker: one given back (a reload,
// a fatal error in a script) goes on to another worker with the bytes already read
// of its next request, and so does one whose worker died. Each worker
// writes into a scoreboard file which connection's request it is serving
// and since when: the front answers that one with a 502 if the worker dies
// (504 if the front killed it past --exec-timeout, 503 when stopping), and
// moves the idle connections of a worker busy with a slow request to the
// others, so that one slow request holds up only its own connection.

import { closeSync, createReadStream, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import { plainAddress } from './cgi.mjs';
import { parseScoreboardLine } from './scoreboard.mjs';

/** The base64 of no bytes. */
const NOTHING = '';
/**
 * A worker serving one request this long (ms) is busy: its other
 * connections, those it has read nothing of, go to other workers, so a slow
 * request holds up only its own connection. Checked every TICK ms.
 */
const BUSY_AFTER = 100;
const TICK = 50;

export class ConnectionBroker {
  /** id -> { id, socket (the front's paused copy), fd, pid (its worker), meta, handedBytes, dropping } */
  #conns = new Map();
  /** pid -> Set of ids */
  #byWorker = new Map();
  /** Connections waiting for a worker (none ready yet): [conn, buffered] */
  #waiting = [];
  #nextId = 1;
  #pool;
  #log;
  #emptied = null;
  #scoreboard;
  /** Workers killed for running a request past execTimeout (their request gets 504). */
  #timedOut = new Set();
  #stopping = false;
  #timer = null;
  /** Workers that exited lately: never picked, whatever the pool's list still says. */
  #gone = new Set();
  /** Workers serving one request for over BUSY_AFTER ms: picked last. */
  #busy = new Set();
  /** Connections one worker may hold (worker-connections). */
  #perWorker;
  /** A makeRoom() pass is due. */
  #roomAsked = false;

  /**
   * scoreboard: the directory the workers write their lines in;
   * execTimeout: ms, 0 for none; perWorker: the most connections one worker
   * holds (PHP's select() watches no descriptor past 1023).
   */
  constructor(pool, log, { scoreboard, execTimeout, perWorker = 512 }) {
    this.#pool = pool;
    this.#perWorker = perWorker;
    this.#log = log;
    this.#scoreboard = scoreboard;
    pool.on('message', (info, message, fds) => this.#message(info.pid, message, fds));
    pool.on('ready', () => this.#flushWaiting());
    // A worker gone without giving its connections back (it died): the one
    // it was serving gets an answer here, the others go to other workers.
    pool.on('exit', (info, exit) => this.#workerGone(info.pid, exit));
    this.#timer = setInterval(() => this.#watch(execTimeout), TICK);
    this.#timer.unref();
  }

  /** Connections open (held by a worker or waiting for one). */
  get size() {
    return this.#conns.size;
  }

  /** A connection the server accepted (paused: pauseOnConnect). */
  adopt(socket) {
    const fd = socket._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) {
      socket.destroy();
      return;
    }
    // Node never reads this copy; errors on it are the worker's to see.
    socket.on('error', () => {});
    const conn = {
      id: this.#nextId++,
      socket,
      fd,
      pid: 0,
      meta: { remoteAddr: plainAddress(socket.remoteAddress), remotePort: socket.remotePort ?? '', serverAddr: plainAddress(socket.localAddress), serverPort: socket.localPort ?? '' },
      /** Last handed over with bytes of a request another worker had read. */
      handedBytes: false,
      /** Its worker was told to let go of it, not yet done: 'busy' (a slow request), 'even' (#balance()), or false. */
      dropping: false,
    };
    this.#conns.set(conn.id, conn);
    this.#assign(conn, NOTHING);
  }

  /** Stopping soon: the ready path says 503 from now on (the workers answer it). */
  unready() {
    this.#tellAll({ type: 'unready' });
  }

  /** Tell every worker to answer with "Connection: close" and close idle connections; resolves true once none is open, false after `grace` ms. */
  drain(grace) {
    this.#tellAll({ type: 'drain' });
    if (this.#conns.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), grace);
      this.#emptied = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  /** Kill the workers still serving a request (past the grace period): those requests get 503. */
  cut() {
    this.#stopping = true;
    for (const w of this.#pool.stats().list) {
      if (this.#hasRequest(w.pid)) this.#kill(w.pid);
    }
  }

  /** Close the front's copies of every connection (after the workers stopped), and the scoreboard. */
  closeAll() {
    clearInterval(this.#timer);
    for (const conn of this.#conns.values()) conn.socket.destroy();
    this.#conns.clear();
    this.#byWorker.clear();
    rmSync(this.#scoreboard, { recursive: true, force: true });
  }

  #tellAll(message) {
    for (const w of this.#pool.stats().list) this.#pool.send(w.pid, message).catch(() => {});
  }

  /** The ready workers of the newest generation (those new connections go to). */
  #current() {
    const list = this.#pool.stats().list.filter((w) => (w.state === 'idle' || w.state === 'busy') && !this.#gone.has(w.pid));
    const newest = Math.max(...list.map((w) => w.generation));
    return list.filter((w) => w.generation === newest).map((w) => w.pid);
  }

  /** Connections a worker holds. */
  #held(pid) {
    return this.#byWorker.get(pid)?.size ?? 0;
  }

  /** The current worker with the fewest connections and room for one more (never `avoid`), or null. */
  #pick(avoid = 0) {
    let best = null;
    for (const pid of this.#current()) {
      if (pid === avoid || this.#held(pid) >= this.#perWorker) continue;
      // A busy worker only when every one is busy.
      const load = (this.#busy.has(pid) ? 1e9 : 0) + this.#held(pid);
      if (best === null || load < best.load) best = { pid, load };
    }
    return best?.pid ?? null;
  }

  #assign(conn, buffered, avoid = 0) {
    const pid = this.#pick(avoid);
    if (pid === null) {
      this.#waiting.push([conn, buffered]);
      this.#makeRoom();
      return;
    }
    conn.pid = pid;
    conn.handedBytes = buffered !== NOTHING;
    let set = this.#byWorker.get(pid);
    if (set === undefined) this.#byWorker.set(pid, (set = new Set()));
    set.add(conn.id);
    this.#pool.send(pid, { type: 'conn', id: conn.id, ...conn.meta, buffered }, [conn.fd]).catch(() => {
      // The worker is gone (its exit may have been handled already): another one.
      if (this.#conns.get(conn.id) !== conn || conn.pid !== pid) return;
      this.#byWorker.get(pid)?.delete(conn.id);
      this.#leaving(pid);
      this.#assign(conn, buffered);
    });
  }

  /**
   * Connections wait because every worker holds worker-connections: ask the
   * full workers to close idle keep-alive connections (the longest idle
   * first), as nginx reuses idle connections when it runs out; each one
   * closed lets a waiting one in ("closed" -> flushWaiting). Once per turn
   * of the event loop, however many connections came in it, and again on
   * each watch while they wait: a worker whose connections were all
   * mid-request had none to close. The ask says how many to keep, so a
   * repeated one closes no more.
   */
  #makeRoom() {
    if (this.#roomAsked) return;
    this.#roomAsked = true;
    setImmediate(() => {
      this.#roomAsked = false;
      const full = this.#current().filter((pid) => this.#held(pid) >= this.#perWorker);
      if (this.#waiting.length === 0 || full.length === 0) return;
      const keep = Math.max(0, this.#perWorker - Math.ceil(this.#waiting.length / full.length));
      for (const pid of full) this.#pool.send(pid, { type: 'trim', keep }).catch(() => {});
    });
  }

  #flushWaiting() {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const [conn, buffered] of waiting) {
      if (this.#conns.has(conn.id)) this.#assign(conn, buffered);
    }
  }

  #message(pid, message, fds) {
    if (message.type === 'finish' && fds.length === 1) {
      this.#finish(pid, message, fds[0]);
      return;
    }
    for (const fd of fds) this.#closeFd(fd);
    if (message.type === 'closed' && Array.isArray(message.ids)) {
      for (const id of message.ids) this.#forget(id, pid);
      if (this.#waiting.length > 0) this.#flushWaiting(); // room for them now
    } else if (message.type === 'dropped' && Array.isArray(message.ids)) {
      this.#moved(pid, message.ids);
      // Those it kept (it had read bytes of them by then) stay with it.
      for (const id of this.#byWorker.get(pid) ?? []) {
        const conn = this.#conns.get(id);
        if (conn !== undefined) conn.dropping = false;
      }
    } else if (message.type === 'release' && Array.isArray(message.connections)) {
      // It gives its connections back because it ends (a fatal error in a
      // script, --max-jobs, a stop): none for it any more, and its replacement now.
      this.#leaving(pid);
      this.#pool.retire(pid);
      for (const [id, buffered] of message.connections) {
        const conn = this.#conns.get(id);
        if (conn === undefined || conn.pid !== pid) continue;
        this.#byWorker.get(pid)?.delete(id);
        this.#assign(conn, String(buffered ?? NOTHING));
      }
    }
  }

  /**
   * The request a worker is serving, from its scoreboard line
   * (parseScoreboardLine()), or null. Read until two reads agree: a read
   * during the worker's rewrite can catch parts of two lines (one that
   * still parses, when both are of one request and only their lists of
   * connections differ), and two such reads the same are next to
   * impossible; none in three tries reads as nothing (the next tick looks
   * again).
   */
  #serving(pid) {
    try {
      const file = `${this.#scoreboard}/${pid}`;
      let text = readFileSync(file, 'latin1');
      for (let i = 0; i < 3; i++) {
        const again = readFileSync(file, 'latin1');
        if (again === text) return parseScoreboardLine(text);
        text = again;
      }
      return null;
    } catch {
      return null; // no line yet, or the worker's is removed
    }
  }

  /**
   * Whether the worker with this pid had a request in hand (the pool asks
   * when one dies soon after it started: a request that kills its worker
   * each time is no crash loop, and its replacement starts at once).
   */
  wasServing(pid) {
    return this.#hasRequest(pid);
  }

  /** Whether the worker's line names a request it serves (answered or not). */
  #hasRequest(pid) {
    return (this.#serving(pid)?.id ?? 0) > 0;
  }

  /** Requests being served now (what stopping cuts short). */
  running() {
    return this.#pool.stats().list.filter((w) => this.#hasRequest(w.pid)).length;
  }

  /** Every TICK ms: kill a worker past execTimeout; move the idle connections of one busy past BUSY_AFTER. */
  #watch(execTimeout) {
    if (this.#waiting.length > 0) this.#makeRoom();
    const now = Date.now();
    for (const w of this.#pool.stats().list) {
      const serving = this.#serving(w.pid);
      const age = serving === null || serving.id === 0 ? 0 : now - serving.since;
      if (execTimeout > 0 && age > execTimeout && !this.#timedOut.has(w.pid)) {
        this.#timedOut.add(w.pid);
        this.#log(`worker ${w.pid} has run one request for over --exec-timeout ${execTimeout} ms: killed`);
        this.#kill(w.pid);
      } else if (age > BUSY_AFTER) {
        this.#busy.add(w.pid);
        this.#moveIdle(w.pid, serving);
      } else {
        this.#busy.delete(w.pid);
      }
    }
    this.#balance();
  }

  /**
   * Spread the connections over the current workers again. Keep-alive
   * clients (a proxy's pool, a load generator) open few new connections,
   * so a worker that replaced one that died (whose connections went to the
   * others meanwhile) would otherwise serve none of them, and the others
   * all. The one holding the most is asked to let go of half its surplus
   * over the one holding the fewest ("drop"); those it lets go ("dropped":
   * not those it has read part of a request from) go to the workers holding
   * the fewest. One ask at a time per worker, repeated each TICK until even.
   */
  #balance() {
    const loads = this.#current()
      .filter((pid) => !this.#busy.has(pid))
      .map((pid) => [pid, this.#held(pid)])
      .sort((a, b) => a[1] - b[1]);
    if (loads.length < 2) return;
    const [most, surplus] = [loads.at(-1)[0], Math.floor((loads.at(-1)[1] - loads[0][1]) / 2)];
    const ids = [...(this.#byWorker.get(most) ?? [])];
    if (surplus < 1 || ids.some((id) => this.#conns.get(id)?.dropping)) return;
    const movable = ids.filter((id) => !this.#conns.get(id)?.handedBytes).slice(0, surplus);
    for (const id of movable) this.#conns.get(id).dropping = 'even';
    if (movable.length > 0) this.#pool.send(most, { type: 'drop', ids: movable }).catch(() => {});
  }

  /**
   * A worker busy with one slow request: its connections it has read
   * nothing of go to other workers. It is told first ("drop"); it reads a
   * connection only after handling such messages, so if its scoreboard
   * line is still the same after the telling, it has not read them and
   * cannot before it learns: they move now. If the line changed (it just
   * finished), they move when it says which it let go ("dropped").
   */
  #moveIdle(pid, serving) {
    // Not one handed over with bytes of a request: the worker may not have
    // taken it yet, and would then hold those bytes (and keep it).
    // One asked to drop to even the load (#balance()) is asked again: this
    // worker may answer that ask only after its slow request.
    const movable = (id) => (id !== serving.id || serving.answered) && !serving.holding.includes(id) && this.#conns.get(id)?.dropping !== 'busy' && !this.#conns.get(id)?.handedBytes;
    const ids = [...(this.#byWorker.get(pid) ?? [])].filter(movable);
    if (ids.length === 0 || this.#pick(pid) === null) return;
    for (const id of ids) this.#conns.get(id).dropping = 'busy';
    this.#pool.send(pid, { type: 'drop', ids }).then(
      () => {
        const now = this.#serving(pid);
        if (now !== null && now.id === serving.id && now.since === serving.since) this.#moved(pid, ids, pid);
      },
      () => {}, // gone: its exit hands them on
    );
  }

  /**
   * Connections a worker let go, or will before it reads them: to other
   * workers (never to `avoid`, the busy one that still holds a copy; with
   * no other ready, they wait for its "dropped").
   */
  #moved(pid, ids, avoid = 0) {
    for (const id of ids) {
      const conn = this.#conns.get(id);
      if (conn === undefined || conn.pid !== pid || !conn.dropping) continue;
      if (avoid !== 0 && this.#pick(avoid) === null) return;
      conn.dropping = false;
      this.#byWorker.get(pid)?.delete(id);
      this.#assign(conn, NOTHING, avoid);
    }
  }

  #kill(pid) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }

  /** A worker that is ending: never picked again (the pool's list may still show it for a while). */
  #leaving(pid) {
    if (this.#gone.has(pid)) return;
    this.#gone.add(pid);
    setTimeout(() => this.#gone.delete(pid), 10_000).unref();
  }

  #workerGone(pid, exit) {
    this.#leaving(pid);
    const serving = this.#serving(pid);
    rmSync(`${this.#scoreboard}/${pid}`, { force: true });
    const timedOut = this.#timedOut.delete(pid);
    const ids = this.#byWorker.get(pid) ?? new Set();
    this.#byWorker.delete(pid);
    // (Answered early, its connection is one like the others, below.)
    if (serving !== null && serving.id > 0 && !serving.answered && ids.has(serving.id)) {
      ids.delete(serving.id);
      const how = exit?.signal ?? `exit ${exit?.code}`;
      if (serving.answering) {
        // Part of the answer is out (the script flushed): a status line now
        // would land inside its body. Closed: the client sees it cut short.
        this.#log(`${serving.request}: worker ${pid} ended (${how}) after sending part of the answer: connection closed`);
        this.#closeConn(serving.id);
      } else {
        // The codes of the errors the pool's run() gives without --direct, so the log reads the same.
        const [status, code] = timedOut ? [504, 'ERR_WORKER_EXEC_TIMEOUT'] : this.#stopping ? [503, 'ERR_WORKER_POOL_STOPPED'] : [502, 'ERR_WORKER_CRASHED'];
        this.#fail(serving.id, status, `${serving.request}: ${code}: worker ${pid} ended (${how}) while serving this request`);
      }
    }
    // Connections it had read bytes of, or was still writing an answer to:
    // another worker would wait for a request the client already sent, or
    // send a second answer after part of one. Closed (the client sees the
    // connection end and may retry).
    const held = new Set(serving?.holding ?? []);
    for (const id of ids) {
      const conn = this.#conns.get(id);
      if (conn === undefined) continue;
      if (held.has(id) || conn.handedBytes) {
        // (One handed over with bytes of a request another worker had read
        // may have been answered already: a third worker could run it twice.)
        this.#log(`worker ${pid} ended holding a connection ${held.has(id) ? 'it had read or was writing to' : "handed over with a request's first bytes"}: closed`);
        this.#closeConn(id);
      } else {
        this.#assign(conn, NOTHING);
      }
    }
  }

  /**
   * The rest of an answer a worker sent early (fastcgi_finish_request())
   * that the client had not taken, in a file (fd): the front writes it
   * while the script runs on, as nginx writes what a php-fpm child handed
   * it, then closes the connection if the answer said so, or hands it to
   * a worker with the bytes of a next request the worker had read (not
   * the busy one, unless it is the only one). The worker has let go of the
   * connection: its death leaves it alone.
   */
  #finish(pid, message, fd) {
    const id = Number(message.id);
    const conn = this.#conns.get(id);
    if (conn === undefined || conn.pid !== pid) {
      this.#closeFd(fd);
      return;
    }
    this.#byWorker.get(pid)?.delete(id);
    conn.pid = 0;
    const keepAlive = message.close !== true;
    const rest = createReadStream('', { fd });
    const stop = () => {
      rest.destroy(); // the client went away, or the server stops
      this.#forget(id, 0);
    };
    conn.socket.on('close', stop);
    rest.on('error', (err) => {
      this.#log(`the rest of an answer sent early could not be read (${err.message}): connection closed`);
      this.#forget(id, 0);
    });
    rest.on('end', () => {
      if (!keepAlive) {
        this.#forget(id, 0); // (pipe() has ended the socket: it closes once all is out)
        return;
      }
      const handOn = () => {
        conn.socket.off('close', stop);
        if (this.#conns.get(id) === conn && conn.pid === 0) this.#assign(conn, String(message.buffered ?? NOTHING), this.#pick(pid) === null ? 0 : pid);
      };
      // Every byte in the kernel before a worker writes to the connection.
      if (conn.socket.writableLength === 0) handOn();
      else conn.socket.once('drain', handOn);
    });
    rest.pipe(conn.socket, { end: !keepAlive });
  }

  /** A generic answer for the client, then the connection closes; the detail ("METHOD TARGET: why") goes to the log. */
  #fail(id, status, detail) {
    const conn = this.#conns.get(id);
    if (conn === undefined) return;
    this.#log(`${status} ${detail}`);
    const text = `${status} ${http.STATUS_CODES[status]}\n`;
    conn.socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${text.length}\r\nConnection: close\r\n\r\n${text}`);
    this.#closeConn(id);
  }

  /** Close a connection whose worker is gone (after what #fail() wrote, if anything). */
  #closeConn(id) {
    const conn = this.#conns.get(id);
    if (conn === undefined) return;
    conn.pid = 0;
    this.#forget(id, 0);
  }

  #forget(id, pid) {
    const conn = this.#conns.get(id);
    if (conn === undefined || conn.pid !== pid) return;
    this.#conns.delete(id);
    this.#byWorker.get(pid)?.delete(id);
    if (conn.socket.writableEnded) conn.socket.once('finish', () => conn.socket.destroy());
    else conn.socket.destroy();
    if (this.#conns.size === 0 && this.#emptied !== null) {
      const emptied = this.#emptied;
      this.#emptied = null;
      emptied();
    }
  }

  #closeFd(fd) {
    try {
      closeSync(fd); // not expected: workers send the front no other descriptors
    } catch {
      // already closed
    }
  }
}
