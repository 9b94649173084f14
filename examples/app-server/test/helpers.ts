import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { join } from 'node:path';
import { processState } from '@folk/test-support';
// @ts-expect-error: plain JavaScript, no types
import { findPhp } from '../lib/front.mjs';

export const EXAMPLE = join(__dirname, '..');
export const INDEX = join(EXAMPLE, 'index.mjs');
export const WWW = join(__dirname, 'www');

/** The tests need php-cli with ext-sockets (what the server itself checks for); they never skip. */
export function requirePhp(): void {
  const php = findPhp('php');
  if (!php.ok) throw new Error(`${php.why}: these tests need php-cli 8.1+ with it (Debian/Ubuntu: apt-get install -y php-cli)`);
}

/** A test that needs these PHP extensions fails with a clear reason, not a PHP fatal error in a page, when php lacks one. */
export function requirePhpExtensions(names: string[], install: string): void {
  const missing = execFileSync('php', ['-r', 'echo implode(" ", array_filter(array_slice($argv, 1), fn ($n) => !extension_loaded($n)));', ...names], { encoding: 'utf8' }).trim();
  if (missing !== '') throw new Error(`this test needs PHP's ${missing} (${install})`);
}

/**
 * Whether the PHP the tests run has a feature the server uses only where
 * PHP has it (opcache's caching, PHP 8.2's memory_reset_peak_usage()): a
 * test of it is skipped, by name, on a PHP without it. True when php
 * cannot be run at all, so that such a test fails with requirePhp()'s
 * reason rather than skip.
 */
export function phpHas(feature: 'opcache' | 'memory_reset_peak_usage'): boolean {
  const check = feature === 'opcache' ? "function_exists('opcache_is_script_cached')" : "function_exists('memory_reset_peak_usage')";
  try {
    return execFileSync('php', ['-d', 'display_errors=stderr', '-r', `echo ${check} ? 'yes' : 'no';`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }) !== 'no';
  } catch {
    return true;
  }
}

export interface Server {
  child: ChildProcess;
  port: number;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Send a signal and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once stdout (or stderr) matches `re`. */
  waitFor(re: RegExp, options?: { timeout?: number; stream?: 'stdout' | 'stderr' }): Promise<RegExpMatchArray>;
}

/** Start the app server (node index.mjs ...args) and wait until it says where it listens. */
export async function startServer(args: string[], options: { env?: NodeJS.ProcessEnv; command?: string[] } = {}): Promise<Server> {
  const server = spawnServer(args, options);
  try {
    const m = await server.waitFor(/app server on http:\/\/[^:]+:(\d+)\//);
    server.port = Number(m[1]);
  } catch (err) {
    await server.stop('SIGKILL'); // (a server that never said where it listens is no test's to stop)
    throw err;
  }
  return server;
}

/** Start the app server, or `command` followed by node index.mjs ...args; `port` is 0 until known. */
export function spawnServer(args: string[], options: { env?: NodeJS.ProcessEnv; command?: string[] } = {}): Server {
  const argv = [...(options.command ?? []), process.execPath, INDEX];
  // The "--direct off" project of the root vitest.config.mts runs the same
  // tests with requests passing through the front (tasks to the workers).
  if (process.env.FOLK_APP_TEST_TASKS === '1' && !args.includes('--node') && !args.includes('--direct')) args = [...args, '--direct', 'off'];
  const child = spawn(argv[0]!, [...argv.slice(1), ...args], { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const watchers = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of watchers) w();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of watchers) w();
  });
  // Resolved once what the server wrote before it exited has been read too
  // ('exit' can come first), or a second after (a worker that outlived it
  // may hold the pipes).
  const drained = (stream: NodeJS.ReadableStream) => new Promise<void>((resolve) => stream.once('close', resolve));
  const outputs = Promise.all([drained(child.stdout!), drained(child.stderr!)]);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', async (code, signal) => {
      await Promise.race([outputs, sleep(1000)]);
      for (const w of watchers) w();
      resolve({ code, signal });
    }),
  );
  const waitFor = (re: RegExp, { timeout = 20_000, stream = 'stdout' }: { timeout?: number; stream?: 'stdout' | 'stderr' } = {}) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const timer = setTimeout(() => {
        watchers.delete(check);
        reject(new Error(`no line matching ${re} within ${timeout} ms; stdout:\n${out}\nstderr:\n${err}`));
      }, timeout);
      const check = () => {
        const m = re.exec(stream === 'stdout' ? out : err);
        if (m) {
          clearTimeout(timer);
          watchers.delete(check);
          resolve(m);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          clearTimeout(timer);
          watchers.delete(check);
          reject(new Error(`the server exited (${child.exitCode ?? child.signalCode}) before ${re}; stdout:\n${out}\nstderr:\n${err}`));
        }
      };
      watchers.add(check);
      check();
    });
  return {
    child,
    port: 0,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor,
    stop: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** One request on a new connection (no keep-alive), headers given as latin1 strings of the bytes to send. */
export function request(port: number, method: string, path: string, options: { headers?: Record<string, string | string[]>; body?: Buffer | string; agent?: http.Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: options.headers, agent: options.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * One keep-alive connection that sends requests one after the other and
 * reads each answer whole; sockets(): how many distinct TCP connections
 * were kept for a next request so far (one the server closed is not).
 */
export function keepAliveClient(port: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set<net.Socket>();
  agent.on('free', (socket: net.Socket) => sockets.add(socket));
  return {
    get: (path: string) => request(port, 'GET', path, { agent }),
    sockets: () => sockets.size,
    close: () => agent.destroy(),
  };
}

/** Bytes as the latin1 string Node sends them from (one char per byte). */
export const bytes = (text: string): string => Buffer.from(text, 'utf8').toString('latin1');

/** A raw HTTP exchange: write `text`, read until the server closes. */
export function rawExchange(port: number, text: Buffer | string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    socket.on('error', reject);
    socket.write(text);
  });
}

/** Whether a process is running: it exists and is not a zombie waiting for its parent (or init) to reap it. */
export function alive(pid: number): boolean {
  const state = processState(pid);
  return state !== null && state !== 'Z';
}

/** The listen backlog of the TCP socket listening on `port`, as ss reports it (Send-Q of a listening socket). */
export function listenBacklog(port: number): number {
  const out = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' });
  const fields = out.trim().split(/\s+/);
  return Number(fields[2]);
}

/** Closed-loop clients on keep-alive connections until stop(); counts answers by status and errors. */
export function load(port: number, clients: number, path = '/plain.php') {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const statuses = new Map<number, number>();
  const errors: string[] = [];
  let running = true;
  const loop = async () => {
    while (running) {
      try {
        const r = await request(port, 'GET', path, { agent });
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
  };
  const loops = Array.from({ length: clients }, loop);
  return {
    statuses,
    errors,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return { statuses: Object.fromEntries(statuses), errors };
    },
  };
}

/** A free TCP port on 127.0.0.1 (free a moment ago). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The pids in /proc whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** `pid` and everything under it. */
export function tree(pid: number): number[] {
  return [pid, ...childrenOf(pid).flatMap(tree)];
}
