// One HTTP front: Node's HTTP server on a listening socket, handing each
// request to its own pool of PHP workers (fd 3/4, @folk/worker-spawn) and
// each answer back to the client. The supervisor (supervisor.mjs) runs one
// front per core on one shared socket; front-main.mjs is a front's process.
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PHP_WORKER_LIBRARY, WorkerPool } from '@folk/worker-spawn';
import * as net from 'node:net';
import { AccessLog } from './access-log.mjs';
import { cgiVariables, decodeAnswer, encodeTask } from './cgi.mjs';
import { ConnectionBroker } from './direct.mjs';
import { StreamedResponse } from './streamed-response.mjs';
import { scoreboardDir } from './scoreboard.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const RUNTIME_PHP = join(here, '..', 'php', 'runtime.php');
export const APP_NODE = join(here, '..', 'app-node.cjs');
/** --prototype without --preload: the preload the prototype runs. */
const NO_PRELOAD = join(here, '..', 'php', 'no-preload.php');

/** Room for the CGI variables beside the body in one task frame. */
const HEAD_ROOM = 256 * 1024;

/** Which status a failed task becomes (the detail goes to the log, never to the client). */
const STATUS_FOR = {
  ERR_WORKER_EXEC_TIMEOUT: 504,
  ERR_WORKER_ALLOCATE_TIMEOUT: 503,
  ERR_WORKER_QUEUE_FULL: 503,
  ERR_WORKER_POOL_STOPPED: 503,
};

/** What PHP says of itself, asked with the settings the workers get: JSON of the extensions the server needs or uses. */
const PHP_PROBE = `echo json_encode([
  'sockets' => extension_loaded('sockets'),
  'opcache' => extension_loaded('Zend OPcache'),
  'ffi' => extension_loaded('ffi') && (static function () { try { FFI::cdef(''); return true; } catch (Throwable) { return false; } })(),
  'pcntl' => extension_loaded('pcntl'),
  'posix' => extension_loaded('posix'),
]);`;

/**
 * php-cli with ext-sockets, started with the ini arguments `ini` (-c, -d),
 * and which of the other extensions it has (ffi: loaded and allowed by
 * ffi.enable), or the reason there is none.
 */
export function findPhp(php, ini = []) {
  let found;
  try {
    // (display_errors=stderr: a start-up warning, such as a module loaded twice, must not land in the JSON.)
    found = JSON.parse(execFileSync(php, [...ini, '-d', 'display_errors=stderr', '-r', PHP_PROBE], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch (err) {
    if (err.code === 'ENOENT') return { ok: false, why: `${php} was not found on PATH` };
    const said = String(err.stderr || err.message || '').trim().split('\n')[0];
    return { ok: false, why: `${php} ${ini.join(' ')} did not start${said ? `: ${said}` : ''}` };
  }
  if (!found.sockets) return { ok: false, why: `${php} is installed but has no sockets extension (ext-sockets)` };
  return { ok: true, ...found };
}

/**
 * How the workers are started: { label, command, execArgv, script, args,
 * prototype, direct, notes } (direct: the workers serve the connections
 * themselves; config.direct 'auto' means yes for PHP workers). PHP when it is there (php-cli with ini settings on its
 * command line), else the Node worker of app-node.cjs, saying how to install
 * php-cli. With --prototype, the pool's prototype option: php-cli with the
 * same ini settings, forking the workers.
 * Throws for settings that cannot work (--preload without --prototype, a
 * prototype without PHP or without pcntl).
 */
export function workerSpec(config) {
  const notes = [];
  if (config.preload && !config.prototype) throw new Error(`preload ${config.preload} is run by the prototype: add --prototype (or prototype = on)`);
  if (config.prototype && config.node) throw new Error('--prototype forks PHP workers; the Node workers (--node) cannot fork');
  if (config.direct === true && config.node) throw new Error('--direct is for PHP workers: the Node workers (--node) read tasks, not connections');
  if (!config.node) {
    const given = [...(config['php-ini'] ? ['-c', config['php-ini']] : []), ...config.define.flatMap((define) => ['-d', define])];
    const php = findPhp(config.php, given);
    if (config.prototype && php.ok && !(php.pcntl && php.posix)) {
      throw new Error(`--prototype needs ext-pcntl and ext-posix, which ${config.php} lacks (Debian's php-cli has both); run without --prototype`);
    }
    if (php.ok && !php.ffi) {
      // php-cli drops every header() call; the runtime undoes that through FFI (php/CliSapi.php).
      throw new Error(`the PHP workers need PHP's FFI, which ${config.php} lacks or ffi.enable forbids: without it every header() call is dropped. Enable it (ffi.enable=preload, PHP's default) or install it (Alpine: php83-ffi)`);
    }
    if (php.ok) {
      const ini = [];
      if (config['php-ini']) ini.push('-c', config['php-ini']);
      if (config.opcache) {
        // opcache's clock is the request's start, and a worker's one
        // request started with the worker. file_update_protection (2 s)
        // then left a file written just before the start, or since,
        // compiled anew on every request; and revalidate_freq (2 s) meant
        // never looking at a file's timestamp again, so an edited script
        // was never seen. With 0, opcache checks the timestamp of each
        // script a request includes (one stat; the classes a worker loaded
        // stay loaded, their files are not included again). --define can
        // set either back, or opcache.validate_timestamps=0 for none.
        if (php.opcache) ini.push('-d', 'opcache.enable_cli=1', '-d', 'opcache.file_update_protection=0', '-d', 'opcache.revalidate_freq=0');
        else notes.push(`${config.php} has no opcache (Debian: apt-get install php-opcache); the workers run without it`);
      }
      // php-fpm's production settings: errors to the log (the server's stderr), not into pages.
      ini.push('-d', `memory_limit=${config['memory-limit']}`, '-d', 'display_errors=0', '-d', 'log_errors=1');
      for (const define of config.define) ini.push('-d', define);
      // The pool runs `command ...execArgv script ...args`, and a prototype
      // `command ...execArgv prototype.php PRELOAD script ...args`.
      const prototype = config.prototype ? { preload: config.preload || NO_PRELOAD } : null;
      const direct = config.direct !== false;
      return { label: 'PHP', command: config.php, execArgv: ini, script: RUNTIME_PHP, args: [PHP_WORKER_LIBRARY], prototype, direct, notes };
    }
    if (config.prototype) throw new Error(`--prototype needs php-cli: ${php.why}`);
    if (config.direct === true) throw new Error(`--direct needs php-cli: ${php.why}`);
    notes.push(
      `${php.why}. To run the PHP workers, install php-cli:\n` +
        '  Debian/Ubuntu: sudo apt-get install -y php-cli\n' +
        '  Fedora:        sudo dnf install -y php-cli\n' +
        '  Alpine:        apk add php83 php83-sockets php83-ffi\n' +
        'Falling back to the Node worker (same protocol, same routes).',
    );
  }
  return { label: 'Node', command: process.execPath, execArgv: [], script: APP_NODE, args: [], prototype: null, direct: false, notes };
}

/** The environment of a worker: ours, without what belongs to the supervisor. */
function workerEnv(config, scoreboard) {
  const env = { ...process.env, FOLK_APP_ROOT: config.root, FOLK_APP_INDEX: config.index };
  for (const name of ['NOTIFY_SOCKET', 'LISTEN_PID', 'LISTEN_PIDFDID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'FOLK_APP_FRONT', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'FOLK_APP_DIRECT']) delete env[name];
  if (config.direct) {
    // php/ConnectionSource.php's settings.
    env.FOLK_APP_DIRECT = JSON.stringify({
      maxBody: config['max-body'],
      maxResponse: config['max-response'],
      maxJobs: config['max-jobs'],
      maxMemory: config['max-worker-memory'],
      idleTimeout: config['keepalive-timeout'] / 1000,
      headerTimeout: config['header-timeout'] / 1000,
      readyPath: config['ready-path'] || '',
      https: config.https,
      serverName: config['server-name'],
      accessLog: config['access-log'],
      scoreboard,
    });
  }
  return env;
}

export class Front extends EventEmitter {
  /** Requests received and not yet answered. */
  inflight = 0;
  draining = false;
  #config;
  #log;
  #accessLog;
  #readyPath;
  #maxBody;
  #maxResponse;
  #cgi;
  #drained = null;
  #servers = [];
  /** Workers whose last answer said they are ending (a fatal error): a task sent to one after it was never read. */
  #ending = new Set();
  /** Rejects when the prototype's preload fails before the first workers are ready (see ready()). */
  #startFailed;
  /** Workers on their way out (recycled; all of them once draining): their exit is no crash, but a fault signal still says something broke. */
  #leaving = new Set();
  #scoreboard;
  #started = false;

  /**
   * config: the settings (config.mjs); spec: workerSpec(config); workers:
   * how many this front runs; log(line): where details of failures go.
   */
  constructor(config, spec, { workers, log = (line) => process.stderr.write(`${line}\n`) }) {
    super();
    this.#config = config;
    this.#log = log;
    this.#readyPath = config['ready-path'] || null;
    this.#maxBody = config['max-body'];
    this.#maxResponse = config['max-response'];
    this.#cgi = { https: config.https, serverName: config['server-name'] };
    this.#accessLog = config['access-log'] ? new AccessLog(config['access-log']) : null;
    this.label = spec.label;
    // Direct mode: where the workers say which request they serve (lib/direct.mjs).
    this.#scoreboard = config.direct ? scoreboardDir() : null;
    this.pool = new WorkerPool({
      command: spec.command,
      execArgv: spec.execArgv,
      script: spec.script,
      args: spec.args,
      env: workerEnv(config, this.#scoreboard),
      cwd: config.root,
      size: workers,
      ...(spec.prototype ? { prototype: spec.prototype } : {}),
      // --direct: the workers count their requests and watch their memory themselves.
      maxJobs: config.direct ? 0 : config['max-jobs'],
      maxWorkerMemory: config.direct ? 0 : config['max-worker-memory'],
      execTimeout: config['exec-timeout'],
      allocateTimeout: config['queue-timeout'],
      maxQueue: config['max-queue'],
      // One frame carries a request (head and body) or a response.
      maxFrame: Math.min(2 ** 32 - 1, Math.max(config['max-response'] + HEAD_ROOM, config['max-body'] + HEAD_ROOM)),
      // --direct: the pool sees no tasks, so a worker asked to stop may be
      // in the middle of a request; it stops when that is answered.
      destroyTimeout: config.direct ? config['reload-timeout'] : 1000,
      // --direct: a worker that dies serving a request is replaced at once,
      // as the pool replaces one that dies with a task in hand.
      ...(config.direct ? { backoff: { wasServing: (info) => this.broker?.wasServing(info.pid) ?? false } } : {}),
    });
    this.broker = config.direct ? new ConnectionBroker(this.pool, log, { scoreboard: this.#scoreboard, execTimeout: config['exec-timeout'], perWorker: config['worker-connections'] }) : null;
    this.pool.on('crash', (info, exit, delay) => log(`worker ${info.pid} exited (${exit.signal ?? `exit ${exit.code}`}); replacing it${delay ? ` in ${delay} ms` : ''}`));
    this.pool.on('workerError', (info, message) => log(`worker ${info.pid}: ${message}`));
    let failStart;
    this.#startFailed = new Promise((_, reject) => (failStart = reject));
    this.#startFailed.catch(() => {});
    this.pool.on('spawnError', (err) => {
      // A preload that throws or exits at start-up is the application's
      // error, not bad luck: say so and stop, rather than retry for ever.
      if (!this.#started && err.code === 'ERR_WORKER_PROTOTYPE') failStart(err);
      else log(`starting a worker failed: ${err.message}`);
    });
    this.pool.on('stdout', (chunk) => process.stdout.write(chunk));
    this.pool.on('recycle', (info) => this.#leaving.add(info.pid));
    this.pool.on('exit', (info, exit) => {
      setTimeout(() => this.#ending.delete(info.pid), 1000).unref();
      const leaving = this.#leaving.delete(info.pid) || this.draining;
      if (leaving && exit.signal && exit.signal !== 'SIGKILL' && exit.signal !== 'SIGTERM') log(`worker ${info.pid} was leaving, but ended by ${exit.signal}`);
    });
    this.handle = this.handle.bind(this);
  }

  /** Resolves once every worker said ready; rejects if the prototype's preload failed first. */
  ready() {
    return Promise.race([this.pool.ready(), this.#startFailed]).then(() => {
      this.#started = true;
    });
  }

  /** Serve on a listening socket: { fd } (inherited) or { host, port } / { path } (opened here), with the backlog. */
  listen(where) {
    const server = this.broker !== null ? net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => this.broker.adopt(socket)) : this.#httpServer();
    this.#servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      // The backlog as an argument: Node 20 ignores options.backlog beside an fd.
      server.listen(where, this.#config.backlog, () => {
        server.off('error', reject);
        resolve(server);
      });
    });
  }

  #httpServer() {
    const headersTimeout = this.#config['header-timeout'];
    const server = http.createServer(
      {
        keepAliveTimeout: this.#config['keepalive-timeout'],
        headersTimeout,
        // Node checks headersTimeout only this often (30 s by default, which
        // made a 60 s timeout up to 90): once a second, or four times per
        // timeout when it is shorter.
        ...(headersTimeout > 0 ? { connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))) } : {}),
        noDelay: true,
      },
      this.handle,
    );
    server.on('clientError', (err, socket) => {
      if (socket.writable && !socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
    return server;
  }

  /** New workers for every old one, without failing a request (new PHP code, new opcache). */
  reload() {
    return this.pool.reload({ drainTimeout: this.#config['reload-timeout'] });
  }

  /**
   * Stop: after `delay` ms (readiness says 503 meanwhile), stop accepting,
   * close idle connections, let requests in flight finish for up to `grace`
   * ms, then stop the workers (a request still running is cut: 503).
   */
  async stop({ grace = this.#config.grace, delay = 0 } = {}) {
    this.draining = true;
    if (this.broker !== null) return this.#stopDirect(grace, delay);
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    for (const server of this.#servers) {
      server.close();
      server.closeIdleConnections();
    }
    if (this.inflight > 0) {
      let timer;
      await Promise.race([
        new Promise((resolve) => (this.#drained = resolve)),
        new Promise((resolve) => (timer = setTimeout(resolve, grace))),
      ]);
      clearTimeout(timer);
      if (this.inflight > 0) this.#log(`stopping with ${this.inflight} requests still running after the ${grace} ms grace period`);
    }
    await this.pool.stop();
    for (const server of this.#servers) server.closeAllConnections();
    this.#accessLog?.close();
  }

  /** stop() of --direct: the workers hold the connections, so they are told to drain them. */
  async #stopDirect(grace, delay) {
    this.broker.unready();
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    for (const server of this.#servers) server.close();
    if (!(await this.broker.drain(grace))) {
      const running = this.broker.running();
      if (running > 0) this.#log(`stopping with ${running} requests still running after the ${grace} ms grace period`);
      this.broker.cut();
    }
    await this.pool.stop();
    this.broker.closeAll();
  }

  reopenLog() {
    this.#accessLog?.reopen();
  }

  /** The request handler. */
  handle(req, res) {
    this.inflight++;
    if (this.#readyPath !== null && req.url === this.#readyPath) {
      const ready = !this.draining && this.pool.stats().idle + this.pool.stats().busy > 0;
      this.#send(req, res, ready ? 200 : 503, ['Content-Type', 'text/plain; charset=utf-8'], Buffer.from(ready ? 'ready\n' : 'not ready\n'));
      return;
    }
    const { head, contentLength, chunked } = cgiVariables(req, this.#cgi);
    if (contentLength <= 0 && !chunked) {
      this.#run(req, res, encodeTask(head, [], 0, contentLength === 0));
      return;
    }
    if (contentLength > this.#maxBody) {
      this.#refuseBody(req, res, contentLength);
      return;
    }
    const chunks = [];
    let size = 0;
    let refused = false;
    // The wait between two reads of the body, as in direct mode (nginx's
    // client_body_timeout); Node's own bound is the whole request's, 300 s.
    if (this.#config['header-timeout'] > 0) req.setTimeout(this.#config['header-timeout'], () => req.destroy());
    req.on('data', (chunk) => {
      if (refused) return;
      size += chunk.length;
      if (size > this.#maxBody) {
        refused = true;
        chunks.length = 0;
        this.#refuseBody(req, res, size);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      req.setTimeout(0);
      if (!refused) this.#run(req, res, encodeTask(head, chunks, size, contentLength >= 0));
    });
    // The client went away (or timed out) before the whole body came: the
    // request never runs, so it ends here (a stop would wait for it).
    req.on('close', () => {
      if (!req.complete && !refused) this.#done();
    });
  }

  /** 413, before the body is read whole; the rest of it is read and dropped so the client sees the answer, then the connection closes. */
  #refuseBody(req, res, size) {
    this.#fail(req, res, 413, `request body of ${size}${size > this.#maxBody ? '+' : ''} bytes is over --max-body ${this.#maxBody}`, true);
    req.resume();
  }

  async #run(req, res, task) {
    let answer;
    // A script that flushes sends its answer in pieces (lib/streamed-response.mjs).
    let stream = null;
    const onPart = (chunk) => (stream ??= new StreamedResponse(req, res, { log: this.#log, maxResponse: this.#maxResponse })).part(chunk);
    try {
      for (;;) {
        try {
          answer = await this.pool.run(task, { onPart });
          break;
        } catch (err) {
          // Sent to a worker that had said, in its last answer, that it was
          // ending: it never read this task, so running it elsewhere is safe.
          // (Each ending worker is forgiven once, so this ends.)
          if (!this.#ending.delete(err.pid) || (err.code !== 'ERR_WORKER_CRASHED' && err.code !== 'ERR_WORKER_PROTOCOL')) throw err;
        }
      }
    } catch (err) {
      const status = STATUS_FOR[err.code] ?? 502;
      const detail = err.workerCode === 'FRAME_TOO_LARGE' ? `the response is over the frame limit (--max-response ${this.#maxResponse})` : `${err.code ?? err.name}: ${err.message}`;
      if (stream?.started) {
        // Part of the answer is out: a status line now would land inside
        // its body. Closed: the client sees it cut short.
        const why = err.workerCode === 'FRAME_TOO_LARGE' ? `output after the last flush is over --max-response ${this.#maxResponse}` : detail;
        this.#log(`${req.method} ${req.url}: ${why}, after sending part of the answer: connection closed`);
        res.destroy();
        this.#done();
        return;
      }
      this.#fail(req, res, status, detail);
      return;
    }
    let decoded;
    try {
      decoded = decodeAnswer(answer);
    } catch (err) {
      this.#fail(req, res, 502, `the worker's answer is unreadable: ${err.message}`);
      return;
    }
    if (decoded.endingPid !== 0) this.#ending.add(decoded.endingPid);
    if (stream?.started) {
      stream.end(decoded);
      this.#accessLog?.add(req, stream.status, stream.bytes);
      this.#done();
      return;
    }
    if (stream !== null && stream.refused !== null) {
      this.#fail(req, res, 502, stream.refused);
      return;
    }
    if (decoded.body.length > this.#maxResponse) {
      this.#fail(req, res, 502, `response body of ${decoded.body.length} bytes is over --max-response ${this.#maxResponse}`);
      return;
    }
    this.#send(req, res, decoded.status, decoded.headers, decoded.body, false, decoded.contentLength);
  }

  /** `length`: the script's own Content-Length, kept for a HEAD answer (no body to measure), as nginx keeps it. */
  #send(req, res, status, headers, body, close = false, length = null) {
    const measured = req.method === 'HEAD' && length !== null ? length : String(body.length);
    if (status >= 200 && status !== 204 && status !== 304) headers.push('Content-Length', measured);
    if (this.draining || close) headers.push('Connection', 'close');
    try {
      res.writeHead(status, headers);
    } catch (err) {
      // A header name or value Node will not send (a worker's mistake).
      this.#fail(req, res, 502, `the worker's response headers are not valid HTTP: ${err.message}`);
      return;
    }
    res.end(body);
    this.#accessLog?.add(req, status, status === 204 || status === 304 || req.method === 'HEAD' ? 0 : body.length);
    this.#done();
  }

  /** A generic answer for the client; the detail goes to the log. */
  #fail(req, res, status, detail, close = false) {
    this.#log(`${status} ${req.method} ${req.url}: ${detail}`);
    if (res.headersSent) {
      res.destroy();
      this.#done();
      return;
    }
    const text = `${status} ${http.STATUS_CODES[status]}\n`;
    this.#send(req, res, status, ['Content-Type', 'text/plain; charset=utf-8'], Buffer.from(text), close);
  }

  #done() {
    this.inflight--;
    if (this.inflight === 0 && this.#drained !== null) this.#drained();
  }
}
