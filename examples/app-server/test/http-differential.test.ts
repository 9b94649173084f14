// php/RequestReader.php against Node's own HTTP parser (llhttp, as Node 20's
// HTTP server runs it), on requests made by mutating well-formed ones: each
// is sent to a real Node HTTP server and read by a RequestReader in a real
// php-cli, and the two must agree on whether it is a request, and on what it
// says, except where RequestReader.php says it differs on purpose. A server
// that parses differently from the proxy in front of it is how requests get
// smuggled, so the differences are listed, not guessed at.
import * as http from 'node:http';
import * as net from 'node:net';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { requirePhp } from './helpers.js';

const HARNESS = join(__dirname, 'php', 'http-harness.php');

/** What a parser made of the bytes: the first request, a refusal, or nothing yet (more bytes would be needed). */
type Outcome =
  | { kind: 'request'; method: string; target: string; version: string; headers: [string, string][]; body: string }
  | { kind: 'refused'; why: string }
  | { kind: 'incomplete' };

const SEEDS = [
  'GET /a?b=c HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
  'PUT /u HTTP/1.1\r\nHost: x\r\nX-Tab:\tv \r\nContent-Length: 2\r\n\r\nab',
];

/** Bytes a mutation inserts or puts in place of one: the ones HTTP framing turns on. */
const PIECES = [' ', '\t', ':', '\r', '\n', '\r\n', '\0', '\x7f', '\xff', ',', ';', '0', '9', 'a', 'F', '-', '_', '/', '?',
  '\x0b', '\x0c', '"', '=', '+', 'chunked', 'CHUNKED', ', gzip', 'fffffffffffffffff', 'HTTP/2.0', ' HTTP/1.1', 'HTTP/1.0', '\r\n\r\n',
  'Content-Length: 1\r\n', 'Content-Length: 10\r\n', 'Transfer-Encoding: chunked\r\n', 'Host: y\r\n', 'Connection: close\r\n',
  'Expect: 100-continue\r\n', ';ext="q"'];

/** A small seeded generator (mulberry32), so a failure names a case that comes again. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` requests, each a seed with one to three mutations: a piece inserted, a byte replaced or dropped, a line doubled. */
function mutants(count: number, seed: number): string[] {
  const next = random(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    let raw = pick(SEEDS);
    for (let m = 1 + Math.floor(next() * 3); m > 0; m--) {
      const at = Math.floor(next() * raw.length);
      const how = next();
      if (how < 0.45) raw = raw.slice(0, at) + pick(PIECES) + raw.slice(at);
      else if (how < 0.7) raw = raw.slice(0, at) + pick(PIECES)[0] + raw.slice(at + 1);
      else if (how < 0.9) raw = raw.slice(0, at) + raw.slice(at + 1);
      else {
        const lines = raw.split('\r\n');
        const l = 1 + Math.floor(next() * Math.max(1, lines.length - 3));
        lines.splice(l, 0, lines[l]!);
        raw = lines.join('\r\n');
      }
    }
    out.push(raw);
  }
  return out;
}

/**
 * Each raw request on a connection of its own to a Node HTTP server (its
 * defaults), then the client's end: what Node made of the bytes, in order
 * (requests, then a refusal or a request cut short, if any). A refusal is
 * llhttp's error code, or the status of an answer Node's server wrote
 * itself (400 without Host). Bytes after a request that closes the
 * connection are not read: the list ends there.
 */
async function byNode(raws: string[]): Promise<Outcome[][]> {
  let seen: (Outcome | null)[] = [];
  let started: http.IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    // Its place now: a refusal of later bytes can come before this one's 'end'.
    const at = seen.push(null) - 1;
    started[at] = req;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen[at] = { kind: 'request', method: req.method!, target: req.url!, version: req.httpVersion, headers: pairs(req.rawHeaders), body: Buffer.concat(chunks).toString('latin1') };
      res.end();
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    // Bytes after a request that closes the connection are not read.
    if (err.code !== 'HPE_CLOSED_CONNECTION') {
      // At the client's end with a head or body cut short: not a request yet.
      const outcome: Outcome = err.code === 'HPE_INVALID_EOF_STATE' ? { kind: 'incomplete' } : { kind: 'refused', why: String(err.code) };
      // A refusal of a body is the refusal of its request.
      const reading = started.findIndex((req) => !req.complete);
      if (reading >= 0) seen[reading] = outcome;
      else seen.push(outcome);
    }
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const outcomes: Outcome[][] = [];
  try {
    for (const raw of raws) {
      seen = [];
      started = [];
      const answer = await new Promise<string>((resolve) => {
        let got = '';
        const socket = net.connect(port, '127.0.0.1', () => socket.end(Buffer.from(raw, 'latin1')));
        socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
        socket.on('error', () => {});
        socket.on('close', () => setImmediate(() => resolve(got)));
      });
      // A request whose body never ended was cut short.
      const list = seen.map((o) => o ?? { kind: 'incomplete' as const });
      const status = /HTTP\/1\.1 (4\d\d) /.exec(answer)?.[1];
      if (status !== undefined && !list.some((o) => o.kind === 'refused')) list.push({ kind: 'refused', why: status });
      outcomes.push(list);
    }
  } finally {
    server.close();
  }
  return outcomes;
}

/** Each raw request fed whole to a RequestReader: what it made of the bytes, in order, as byNode() gives Node's. */
function byPhp(raws: string[]): (Outcome & { message?: string })[][] {
  requirePhp();
  const out = execFileSync('php', [HARNESS], { input: JSON.stringify(raws.map((raw) => ({ type: 'read', chunks: [raw] }))), maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' });
  type Read = { requests: { method: string; target: string; protocol: string; headers: [string, string][]; body: string; keepAlive: boolean }[]; error: { status: number; message: string } | null; buffered: string };
  return (JSON.parse(out) as Read[]).map((r) => {
    const list: (Outcome & { message?: string })[] = r.requests.map((q) => ({ kind: 'request', method: q.method, target: q.target, version: q.protocol.slice(5), headers: q.headers, body: q.body }));
    if (r.error !== null) list.push({ kind: 'refused', why: String(r.error.status), message: r.error.message });
    else if (r.buffered !== '' && (r.requests.at(-1)?.keepAlive ?? true)) list.push({ kind: 'incomplete' });
    return list;
  });
}

/** Whether a request says "Connection: close" (among other options or not). */
function closes(o: Outcome | undefined): boolean {
  return o?.kind === 'request' && o.headers.some(([name, value]) => name.toLowerCase() === 'connection' && value.split(',').some((v) => v.trim().toLowerCase() === 'close'));
}

/** The first thing a parser made of the bytes (nothing at all: waiting for more). */
const firstOf = <T extends Outcome>(list: T[]): T | { kind: 'incomplete' } => list[0] ?? { kind: 'incomplete' };

/** What a request says, to compare: method, target, version, headers, body. */
function said(o: Outcome): string {
  return o.kind === 'request' ? JSON.stringify([o.method, o.target, o.version, o.headers, o.body]) : o.kind;
}

function pairs(flat: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

/**
 * Why the two may differ on `raw`, as RequestReader.php's header says, or
 * null: a method llhttp does not know (any token is a method here), two
 * spaces in the request line (llhttp takes them), an HTTP/0.9 request line
 * (no version: llhttp takes it and then reads headers), two Host headers,
 * a Transfer-Encoding other than chunked, or one in HTTP/1.0 (nginx's
 * refusals, taken here).
 */
function onPurpose(raw: string, node: Outcome, php: Outcome & { message?: string }): string | null {
  const line = raw.replace(/^[\r\n]+/, '').split(/[\r\n]/)[0]!; // the request line, as far as either parser could tell
  if (php.kind === 'refused' && !/ HTTP\//.test(line) && /^\S+ \S+$/.test(line) && node.kind !== 'refused') return 'HTTP/0.9';
  if (node.kind === 'refused' && node.why === 'HPE_INVALID_METHOD' && php.kind !== 'refused') return 'a method llhttp does not know';
  if (php.kind === 'refused' && /  /.test(line) && node.kind !== 'refused') return 'two spaces in the request line';
  if (php.kind === 'refused' && /more than one Host header|Transfer-Encoding other than chunked|HTTP\/1\.0 request with Transfer-Encoding|more than one Transfer-Encoding/.test(php.message ?? '')) return php.message!;
  return null;
}

describe('RequestReader against llhttp', () => {
  it('agrees with Node 20\'s HTTP parser on mutated requests (600 by default): whether each is one, and its method, target, version, headers and body', async () => {
    // Other seeds and counts, to look further: FOLK_HTTP_FUZZ=SEED,COUNT.
    const [seed = 20261205, count = 600] = (process.env['FOLK_HTTP_FUZZ'] ?? '').split(',').filter(Boolean).map(Number);
    const raws = mutants(count, seed);
    const node = (await byNode(raws)).map(firstOf);
    const php = byPhp(raws).map(firstOf);
    // llhttp refuses a byte as soon as it comes; RequestReader looks at a
    // head (or a chunk-size line) once it is whole. Where llhttp refused and
    // RequestReader still waits, the same bytes with the head ended must be
    // refused too.
    const waiting = raws.flatMap((raw, i) => (node[i]!.kind === 'refused' && php[i]!.kind === 'incomplete' ? [i] : []));
    byPhp(waiting.map((i) => `${raws[i]}\r\n\r\n`)).map(firstOf).forEach((whole, j) => {
      if (whole.kind === 'refused') php[waiting[j]!] = whole;
    });
    const differences: string[] = [];
    const kinds = { request: 0, refused: 0, incomplete: 0 };
    let exempted = 0;
    for (let i = 0; i < raws.length; i++) {
      const [n, p] = [node[i]!, php[i]!];
      kinds[n.kind]++;
      if (n.kind === p.kind && (n.kind !== 'request' || said(n) === said(p))) continue;
      if (n.kind !== p.kind && onPurpose(raws[i]!, n, p) !== null) {
        exempted++;
        continue;
      }
      differences.push(`${JSON.stringify(raws[i])}\n  node: ${JSON.stringify(n)}\n  php:  ${JSON.stringify(p)}`);
    }
    expect(differences.join('\n')).toBe('');
    // What the comparison covered: enough of each kind to mean something,
    // and the differences on purpose a few of them.
    expect(kinds.request).toBeGreaterThan(raws.length / 6);
    expect(kinds.refused).toBeGreaterThan(raws.length / 6);
    expect(exempted).toBeLessThan(raws.length / 10);
  }, 60_000);

  it('agrees on where a request ends: a well-formed request sent after each mutant is read alike, or refused by both (request smuggling)', async () => {
    const [seed = 20261206, count = 600] = (process.env['FOLK_HTTP_FUZZ'] ?? '').split(',').filter(Boolean).map(Number);
    const raws = mutants(count, seed).map((raw) => `${raw}GET /next HTTP/1.1\r\nHost: x\r\n\r\n`);
    const [node, php] = [await byNode(raws), byPhp(raws)];
    const differences: string[] = [];
    let compared = 0;
    for (let i = 0; i < raws.length; i++) {
      const [n, p] = [node[i]!, php[i]!];
      // Only where the first request was read alike (the test above is about the first).
      if (n[0]?.kind !== 'request' || said(n[0]) !== said(p[0] ?? { kind: 'incomplete' })) continue;
      compared++;
      const k = Array.from({ length: Math.max(n.length, p.length) }, (_, j) => j).find((j) => said(n[j] ?? { kind: 'incomplete' }) !== said(p[j] ?? { kind: 'incomplete' }));
      if (k === undefined) continue;
      const [nk, pk] = [n[k] ?? { kind: 'incomplete' as const }, p[k] ?? { kind: 'incomplete' as const }];
      if (nk.kind !== pk.kind && onPurpose('', nk, pk) !== null) continue;
      // "close" ends the connection whatever else Connection says (RFC 9112
      // 9.3); llhttp lets an HTTP/1.0 keep-alive win over it and reads on.
      if (p[k] === undefined && closes(p[k - 1])) continue;
      differences.push(`${JSON.stringify(raws[i])}\n  node: ${JSON.stringify(n)}\n  php:  ${JSON.stringify(p)}`);
    }
    expect(differences.join('\n')).toBe('');
    expect(compared).toBeGreaterThan(raws.length / 6);
  }, 60_000);
});
