// --prototype: PHP workers forked from a prototype that ran --preload once
// (@folk/worker-spawn's prototype option), with real php-cli: requests are
// served by the forks, scripts see what they see in exec'd workers plus the
// preload, a reload loads the preload again, a preload that fails stops the
// server at start-up with PHP's reason, and nothing is left behind.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WWW, alive, childrenOf, load, rawExchange, request, requirePhp, sleep, spawnServer, startServer, type Server } from './helpers.js';

let dir: string;

/** A preload that defines a class, a constant and two globals, and counts its runs in `runs`. */
function writePreload(file: string, version: string): void {
  writeFileSync(
    file,
    `<?php
final class Preloaded { public static function hello(): string { return 'hello from the preload'; } }
const PRELOAD_VERSION = ${JSON.stringify(version)};
$preloadTable = range(1, 50000);
$preloadPid = getmypid();
file_put_contents(__DIR__ . '/runs', getmypid() . "\\n", FILE_APPEND);
register_shutdown_function(static function (): void {
    file_put_contents(__DIR__ . '/preload-shutdown', getmypid() . "\\n", FILE_APPEND);
});
`,
  );
}

const json = async (port: number, path: string) => {
  const r = await request(port, 'GET', path);
  expect(r.status).toBe(200);
  return JSON.parse(r.body.toString());
};
const runs = () => readFileSync(join(dir, 'runs'), 'utf8').trim().split('\n').map(Number);
const startupPids = (server: Server) => {
  const m = /fronts ([\d, ]+); workers ([\d, ]+)/.exec(server.stdout())!;
  return { fronts: m[1]!.split(', ').map(Number), workers: m[2]!.split(', ').map(Number) };
};

beforeAll(() => {
  requirePhp();
  dir = mkdtempSync(join(tmpdir(), 'app-server-prototype-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('--prototype', () => {
  let server: Server;
  let exec: Server;
  const common = ['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '2', '--define', 'precision=7'];
  beforeAll(async () => {
    writePreload(join(dir, 'preload.php'), 'one');
    [server, exec] = await Promise.all([startServer([...common, '--prototype', '--preload', join(dir, 'preload.php')]), startServer(common)]);
  });
  afterAll(() => Promise.all([server?.stop(), exec?.stop()]));

  it('serves requests from workers forked by a prototype that ran the preload once', async () => {
    const { fronts, workers } = startupPids(server);
    // The front's one child is the prototype; the workers are its children.
    const [prototype] = childrenOf(fronts[0]!);
    expect(childrenOf(fronts[0]!)).toEqual([prototype]);
    expect(childrenOf(prototype!).sort()).toEqual([...workers].sort());
    expect(runs()).toEqual([prototype]);
    // Two requests at once: both workers, each forked (its parent ran the preload), neither ran it again.
    const [a, b] = await Promise.all([json(server.port, '/forked.php?ms=400'), (async () => (await sleep(100), json(server.port, '/forked.php')))()]);
    expect(new Set([a.pid, b.pid])).toEqual(new Set(workers));
    for (const seen of [a, b]) {
      expect(seen.ppid).toBe(prototype);
      expect(seen.preloadPid).toBe(prototype);
      expect(seen.class).toBe('hello from the preload');
      expect(seen.version).toBe('one');
      expect(seen.table).toBe(50000);
    }
    expect(runs()).toEqual([prototype]);
  });

  it("runs a shutdown function the preload registered once in each worker, after its first request, as a script's", async () => {
    const seen = new Set<number>();
    for (let i = 0; i < 10 && seen.size < 2; i++) {
      const pair = await Promise.all([json(server.port, '/forked.php?ms=200'), json(server.port, '/forked.php?ms=200')]);
      for (const answer of pair) seen.add(answer.pid);
    }
    await sleep(100);
    const ran = readFileSync(join(dir, 'preload-shutdown'), 'utf8').trim().split('\n').map(Number);
    expect([...seen].map((pid) => ran.filter((p) => p === pid).length)).toEqual([1, 1]);
  });

  it("gives a script the $_SERVER, globals and ini settings of an exec'd worker, plus the preload's globals", async () => {
    const [forked, execd] = await Promise.all([server, exec].map((s) => json(s.port, '/forked.php')));
    expect(execd.preloadPid).toBe(null);
    expect(forked.globals.sort()).toEqual([...execd.globals, 'preloadPid', 'preloadTable'].sort());
    // --define, --memory-limit and opcache reach the prototype's php as they reach an exec'd one.
    expect(forked.ini).toEqual({ memory_limit: '128M', display_errors: '0', precision: '7' });
    expect(forked.ini).toEqual(execd.ini);
    expect(forked.opcache).toBe(true);
    // $_SERVER has the same names, and the same values but for what differs per server and request.
    const [fs, es] = await Promise.all(
      [server, exec].map(async (s) => JSON.parse((await request(s.port, 'GET', '/plain.php/x?a=1', { headers: { 'X-Test': 'v' } })).body.toString()).server),
    );
    expect(Object.keys(fs).sort()).toEqual(Object.keys(es).sort());
    for (const name of ['SERVER_PORT', 'REMOTE_PORT', 'REQUEST_TIME', 'REQUEST_TIME_FLOAT', 'HTTP_HOST', 'SERVER_NAME']) delete fs[name], delete es[name];
    expect(fs).toEqual(es);
    // A script's own globals are gone by the next request; the preload's stay.
    for (let i = 0; i < 4; i++) {
      const seen = await json(server.port, '/forked.php');
      expect(seen.leftover).toBe(false);
      expect(seen.table).toBe(50000);
    }
  });

  it('a forked worker streams what a script flushes (the FFI callback behind flush() survives the fork)', async () => {
    const raw = (await rawExchange(server.port, 'GET /stream.php?parts=2&size=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toString('latin1');
    // (With --direct off, the same chunks: each piece the worker sent, written by the front as it came.)
    expect(raw).toMatch(/\r\nTransfer-Encoding: chunked\r\n([^]*\r\n)?\r\nb\r\nfirst part\n\r\n5\r\naaaaa\r\n5\r\nbbbbb\r\na\r\nlast part\n\r\n0\r\n\r\n$/);
  });

  it("shares the prototype's opcache: a script one worker compiled is cached for both", async () => {
    // One worker compiles dir/index.php (no request ran it before) ...
    expect((await request(server.port, 'GET', '/dir/')).status).toBe(200);
    // ... and both find it in the opcache. Asked two at a time until each
    // has answered (with --direct, two new connections may land on one).
    const seen = new Map<number, boolean>();
    for (let i = 0; i < 10 && seen.size < 2; i++) {
      const pair = await Promise.all([json(server.port, '/forked.php?ms=300&cached=dir/index.php'), json(server.port, '/forked.php?ms=300&cached=dir/index.php')]);
      for (const answer of pair) seen.set(answer.pid, answer.cached);
    }
    expect(new Set(seen.keys())).toEqual(new Set(startupPids(server).workers));
    expect([...seen.values()]).toEqual([true, true]);
  });

  it('an exit() in a forked worker answers, and the worker serves on; a fatal error ends it, and another fork replaces it', async () => {
    const before = startupPids(server).workers;
    const [prototypeNow] = childrenOf(startupPids(server).fronts[0]!);
    for (let i = 0; i < 5; i++) expect((await request(server.port, 'GET', '/exit.php')).status).toBe(302);
    expect(childrenOf(prototypeNow!).sort()).toEqual([...before].sort());
    const r = await request(server.port, 'GET', '/out-of-memory.php');
    expect(r.status).toBe(500);
    for (let i = 0; i < 10; i++) expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
    const [prototype] = childrenOf(startupPids(server).fronts[0]!);
    let now = childrenOf(prototype!);
    for (let i = 0; i < 100 && (now.length !== 2 || now.every((pid) => before.includes(pid))); i++) {
      await sleep(50); // the replacement is being forked, the worker that ended reaped
      now = childrenOf(prototype!);
    }
    expect(now).toHaveLength(2);
    expect(now.filter((pid) => !before.includes(pid))).toHaveLength(1);
    expect(runs()).toEqual([prototype]);
  });
});

describe("--prototype: the preload's shutdown functions", () => {
  it("run once in a worker whose first request's shutdown function calls exit(), and the worker serves on", async () => {
    // The preload's functions come before the runtime's own in PHP's list:
    // when an exit() there ended the worker, PHP ran the list again from
    // its start as the process ended, and they ran twice.
    const sub = mkdtempSync(join(dir, 'exit-first-'));
    writePreload(join(sub, 'preload.php'), 'one');
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--prototype', '--preload', join(sub, 'preload.php')]);
    try {
      const log = join(sub, 'exit.log');
      const first = await request(server.port, 'GET', `/exit-in-shutdown.php?log=${encodeURIComponent(log)}`);
      expect({ status: first.status, body: first.body.toString() }).toEqual({ status: 200, body: 'answered\n' });
      const worker = (await json(server.port, '/forked.php')).pid;
      expect((await json(server.port, '/forked.php')).pid).toBe(worker);
      expect(readFileSync(log, 'utf8')).toBe('first\nsecond (exits)\n');
      expect(readFileSync(join(sub, 'preload-shutdown'), 'utf8')).toBe(`${worker}\n`);
    } finally {
      await server.stop();
    }
  });
});

describe('--prototype operations', () => {
  it('SIGHUP under load starts a new prototype with the new preload and forks new workers from it, with no failed request', async () => {
    const preload = join(dir, 'reload.php');
    rmSync(join(dir, 'runs'), { force: true });
    writePreload(preload, 'one');
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '2', '--workers', '4', '--prototype', '--preload', preload]);
    try {
      const { fronts, workers } = startupPids(server);
      const prototypes = fronts.flatMap((f) => childrenOf(f));
      expect(prototypes).toHaveLength(2);
      expect(runs().sort()).toEqual([...prototypes].sort());
      expect((await json(server.port, '/forked.php')).version).toBe('one');
      const traffic = load(server.port, 8, '/forked.php');
      await sleep(300);
      writePreload(preload, 'two');
      server.child.kill('SIGHUP');
      const m = await server.waitFor(/reloaded: workers ([\d, ]+)\n/);
      await sleep(200);
      const { statuses, errors } = await traffic.stop();
      expect(errors).toEqual([]);
      expect(Object.keys(statuses)).toEqual(['200']);
      const after = m[1]!.split(', ').map(Number);
      expect(after.filter((pid) => workers.includes(pid))).toEqual([]);
      // An old prototype ends once its last worker has: a moment after the
      // reload, longer under qemu (the arm64 PHP project).
      let newPrototypes = fronts.flatMap((f) => childrenOf(f));
      for (let i = 0; i < 100 && newPrototypes.some((pid) => prototypes.includes(pid)); i++) {
        await sleep(100);
        newPrototypes = fronts.flatMap((f) => childrenOf(f));
      }
      expect(newPrototypes.filter((pid) => prototypes.includes(pid))).toEqual([]);
      expect(newPrototypes.flatMap(childrenOf).sort()).toEqual([...after].sort());
      expect(runs()).toHaveLength(4); // each front's old and new prototype, once each
      for (let i = 0; i < 6; i++) expect((await json(server.port, '/forked.php')).version).toBe('two');
      expect([...prototypes, ...workers].filter(alive)).toEqual([]);
    } finally {
      await server.stop();
    }
  });

  it('a reload whose preload fails keeps the old workers serving, and completes once the preload is fixed', async () => {
    const preload = join(dir, 'flaky.php');
    writePreload(preload, 'good');
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '2', '--prototype', '--preload', preload]);
    try {
      const { workers } = startupPids(server);
      writeFileSync(preload, '<?php\nthrow new RuntimeException("half-deployed");\n');
      server.child.kill('SIGHUP');
      await server.waitFor(/starting a worker failed: prototype pid \d+ ended \(exit code 255\) before its preload/, { stream: 'stderr' });
      await server.waitFor(/Uncaught RuntimeException: half-deployed/, { stream: 'stderr' });
      for (let i = 0; i < 6; i++) {
        const seen = await json(server.port, '/forked.php');
        expect(seen.version).toBe('good');
        expect(workers).toContain(seen.pid);
      }
      writePreload(preload, 'fixed');
      // The pool retries the prototype (crash backoff: 100 ms, doubling) and the reload completes.
      await server.waitFor(/reloaded: workers [\d, ]+\n/);
      expect((await json(server.port, '/forked.php')).version).toBe('fixed');
    } finally {
      await server.stop();
    }
  });

  it('SIGTERM leaves no prototype and no worker behind', async () => {
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '2', '--workers', '2', '--prototype']);
    const { fronts, workers } = startupPids(server);
    const prototypes = fronts.flatMap((f) => childrenOf(f));
    expect(prototypes).toHaveLength(2);
    expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
    expect(await server.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    await sleep(200);
    expect([...fronts, ...prototypes, ...workers].filter(alive)).toEqual([]);
  });

  it('a preload that throws or exits stops the start-up with PHP\'s reason, exit code 1, nothing left running', async () => {
    for (const [name, code, reason] of [
      ['throws.php', 'throw new RuntimeException("no database configured");', /PHP Fatal error: {2}Uncaught RuntimeException: no database configured/],
      ['exits.php', 'fwrite(STDERR, "cannot boot\\n"); exit(3);', /cannot boot\n/],
    ] as const) {
      const file = join(dir, name);
      writeFileSync(file, `<?php\n${code}\n`);
      const server = spawnServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '2', '--workers', '2', '--prototype', '--preload', file]);
      const exit = await server.exited;
      expect(exit).toEqual({ code: 1, signal: null });
      const err = server.stderr();
      expect(err).toMatch(reason);
      expect(err).toMatch(new RegExp(`could not start: prototype pid \\d+ ended \\(exit code ${name === 'exits.php' ? 3 : 255}\\) before its preload "${file.replaceAll('.', '\\.')}" was done`));
      expect(err).toMatch(/the server could not start: front \d+ ended \(exit 1\) before it was ready/);
      expect(err).not.toMatch(/starting another/);
      expect(server.stdout()).not.toMatch(/app server on/);
      const pids = [...err.matchAll(/(?:front|prototype pid) (\d+)/g)].map((m) => Number(m[1]));
      await sleep(300);
      expect(pids.filter(alive)).toEqual([]);
    }
  });

  it('is set in a config file too, the preload path taken from the file\'s directory, with --php-ini reaching the prototype', async () => {
    const conf = mkdtempSync(join(dir, 'conf-'));
    writePreload(join(conf, 'boot.php'), 'from the config file');
    writeFileSync(join(conf, 'custom.ini'), 'precision = 9\n');
    writeFileSync(join(conf, 'app.conf'), [`root = ${WWW}`, 'fronts = 1', 'workers = 1', 'prototype = on', 'preload = boot.php', 'php-ini = custom.ini', ''].join('\n'));
    const server = await startServer(['--config', join(conf, 'app.conf'), '--listen', '127.0.0.1:0']);
    try {
      const seen = await json(server.port, '/forked.php');
      expect(seen.version).toBe('from the config file');
      expect(seen.ppid).toBe(seen.preloadPid);
      expect(seen.ini.precision).toBe('9');
    } finally {
      await server.stop();
    }
  });

  it('--preload without --prototype, or of a file that is not there, is refused before anything starts', async () => {
    for (const [args, message] of [
      [['--preload', join(WWW, 'plain.php')], /preload .*plain\.php is run by the prototype: add --prototype/],
      [['--prototype', '--preload', join(dir, 'missing.php')], /preload .*missing\.php is not a file/],
    ] as const) {
      const server = spawnServer(['--listen', '127.0.0.1:0', '--root', WWW, ...args]);
      expect(await server.exited).toEqual({ code: 1, signal: null });
      expect(server.stderr()).toMatch(message);
    }
  });
});
