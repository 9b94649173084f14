// The server's settings: defaults, a config file (key = value lines, the
// keys being the long flags without "--") and command-line flags, in that
// order of precedence (a flag wins over the file).
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const cores = availableParallelism();

const KiB = 1024;
const MiB = 1024 * KiB;

/** Every setting: its kind, default and what it is, as `--help` prints it. */
export const SETTINGS = {
  listen: { kind: 'address', default: '127.0.0.1:8080', help: 'HOST:PORT, PORT (every address) or a UNIX socket path; ignored under socket activation. --port N is 127.0.0.1:N' },
  backlog: { kind: 'count', default: 511, help: "the listen queue (nginx's default; the kernel caps it at net.core.somaxconn)" },
  // One front per two cores: a front spends more CPU on a request than a
  // small PHP script does (about 40 us against 25 on the development
  // machine), and each front splits the workers into a pool of its own. On
  // 2 cores, one front with all 4 workers had a lower p99 than two fronts in
  // 31 of 36 benchmark cells (two fronts: 25 to 210 ms in 16 of them), at
  // about the same req/s (bench/app-server/RESULTS.md).
  fronts: { kind: 'count', default: Math.max(1, Math.floor(cores / 2)), min: 1, help: 'HTTP front processes sharing the listening socket (default: half the CPU count, at least 1)' },
  // 'auto': one per core when the workers serve the connections (direct):
  // with more workers than cores, a worker the scheduler puts off holds up
  // every connection it has, and the p99 grew (bench/app-server/RESULTS.md). Twice
  // the cores otherwise: each front has a pool of its own, and a slow
  // request holds up only its own worker, not everything sent to its front.
  workers: { kind: 'count', default: 'auto', min: 1, help: 'PHP workers in all (pm.max_children), shared out among the fronts; auto: the CPU count with direct on, twice it with direct off (raise it for scripts that wait on databases or remote APIs)' },
  // PHP's socket_select() watches no descriptor past 1023 (FD_SETSIZE).
  'worker-connections': { kind: 'count', default: 512, min: 1, max: 1000, help: "direct mode: connections one PHP worker holds at most (nginx's worker_connections); more wait in the front while idle keep-alive connections are closed to make room" },
  'max-jobs': { kind: 'count', default: 0, help: 'replace a worker after this many requests (pm.max_requests); 0: never' },
  'max-worker-memory': { kind: 'bytes', default: 0, help: "replace a worker whose RSS passes this after a request (read from /proc each time); 0: off" },
  'memory-limit': { kind: 'string', default: '128M', help: "PHP's memory_limit for each request (php-cli's own default is unlimited)" },
  'exec-timeout': { kind: 'ms', default: 60_000, help: 'a request running this long has its worker killed: 504 (request_terminate_timeout); 0: none' },
  'queue-timeout': { kind: 'ms', default: 30_000, help: 'with --direct off: a request waiting this long for a free worker gets 503; 0: wait for ever' },
  'max-queue': { kind: 'count', default: 10_000, help: 'with --direct off: requests that may wait for a worker per front; more get 503' },
  'max-body': { kind: 'bytes', default: 1 * MiB, help: 'largest request body (client_max_body_size): 413 above it' },
  'max-response': { kind: 'bytes', default: 64 * MiB, help: 'largest response body a script may produce: 502 above it' },
  'keepalive-timeout': { kind: 'ms', default: 75_000, help: 'an idle keep-alive connection is closed after this long' },
  'header-timeout': { kind: 'ms', default: 60_000, help: 'a client must have sent the request head within this long, and then each part of its body within this long of the one before (client_header_timeout, client_body_timeout)' },
  'access-log': { kind: 'string', default: '', help: "file for an access log in the combined format, '-' for stdout, '' for none" },
  root: { kind: 'path', default: resolve(here, '..', 'public'), help: 'document root: /x.php runs <root>/x.php' },
  index: { kind: 'string', default: 'index.php', help: "front controller for paths that name no script ('' for none: 404)" },
  'server-name': { kind: 'string', default: '', help: "SERVER_NAME ('' : the request's Host)" },
  https: { kind: 'bool', default: false, help: "behind a TLS-terminating proxy: HTTPS=on and REQUEST_SCHEME=https for every request (nginx's fastcgi_param HTTPS on)" },
  php: { kind: 'string', default: 'php', help: 'the php-cli binary' },
  'php-ini': { kind: 'path', default: '', help: "a php.ini for the workers (php -c; in a config file, relative to its directory); '' : php-cli's own" },
  define: { kind: 'list', default: [], help: 'NAME=VALUE: an ini setting for the workers (php -d); repeatable' },
  opcache: { kind: 'bool', default: true, help: 'opcache for the workers (opcache.enable_cli=1)' },
  prototype: { kind: 'bool', default: false, help: 'fork the PHP workers from a prototype process that ran --preload once: workers start in a few ms and share its memory and opcache (needs ext-pcntl and ext-posix; README: when to use it)' },
  preload: { kind: 'path', default: '', help: "with --prototype: a PHP file the prototype runs once before forking (autoloader, container, config); '' : none" },
  grace: { kind: 'ms', default: 25_000, help: 'SIGTERM: how long in-flight requests may take before workers are killed' },
  'shutdown-delay': { kind: 'ms', default: 0, help: 'SIGTERM: keep accepting this long first, readiness saying 503 (for Kubernetes endpoints to catch up)' },
  'ready-path': { kind: 'string', default: '', help: "a readiness route answered by the front itself, e.g. /readyz ('' : none)" },
  'reload-timeout': { kind: 'ms', default: 60_000, help: 'reload: an old worker still busy this long after its replacement is ready is killed' },
  'pid-file': { kind: 'path', default: '', help: 'write the main pid here (removed on exit)' },
  node: { kind: 'bool', default: false, help: 'run the Node workers of app-node.cjs, not PHP' },
  direct: { kind: 'bool', default: 'auto', help: 'the PHP workers read requests and write responses on the connections themselves, the front only accepts and hands each connection over (README: Direct mode); auto: on, off for the Node workers (--node, or no php-cli)' },
};

const BYTES = /^(\d+)\s*([kmg]i?b?|b)?$/i;
const UNIT = { '': 1, b: 1, k: KiB, m: MiB, g: 1024 * MiB };

function parseValue(name, raw, where) {
  const setting = SETTINGS[name];
  const fail = (what) => {
    throw new Error(`${where}: ${name} ${what}, got ${JSON.stringify(raw)}`);
  };
  // A setting whose default is 'auto' may be set back to it (settle() decides).
  const orAuto = setting.default === 'auto' ? ', auto' : '';
  if (orAuto && String(raw).toLowerCase() === 'auto') return 'auto';
  switch (setting.kind) {
    case 'count':
    case 'ms': {
      const n = Number(raw);
      const [min, max] = [setting.min ?? 0, setting.max ?? Infinity];
      if (raw === '' || !Number.isSafeInteger(n) || n < min || n > max) fail(max < Infinity ? `needs a whole number from ${min} to ${max}` : `needs a whole number of at least ${min}${orAuto && ' or auto'}`);
      return n;
    }
    case 'bytes': {
      const m = BYTES.exec(String(raw).trim());
      if (!m) fail('needs a size in bytes (like 1048576, 512K, 64M, 1G)');
      return Number(m[1]) * UNIT[(m[2] ?? '').charAt(0).toLowerCase()];
    }
    case 'bool':
      if (['1', 'true', 'on', 'yes', ''].includes(String(raw).toLowerCase())) return true;
      if (['0', 'false', 'off', 'no'].includes(String(raw).toLowerCase())) return false;
      return fail(`needs on${orAuto} or off`);
    case 'address':
    case 'string':
    case 'path':
      return String(raw);
    case 'list':
      return [String(raw)];
  }
  throw new Error(`unknown kind ${setting.kind}`);
}

/** key = value lines; ';' and '#' start comments, as in php-fpm.conf. */
function readConfigFile(file) {
  const out = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const text = line.trim();
      if (text === '' || text.startsWith(';') || text.startsWith('#')) return;
      const m = /^([\w-]+)\s*=\s*(.*)$/.exec(text);
      if (!m) throw new Error(`${file}:${i + 1}: expected "key = value", got ${JSON.stringify(text)}`);
      const name = m[1].replaceAll('_', '-');
      if (!(name in SETTINGS)) throw new Error(`${file}:${i + 1}: unknown setting ${m[1]}`);
      out.push([name, m[2].replace(/^"(.*)"$/, '$1'), `${file}:${i + 1}`, dirname(file)]);
    });
  return out;
}

/**
 * Settings from argv (after the program name). Returns { config, selfTest,
 * help, configFile }. Relative paths in a config file are taken from its
 * directory; on the command line, from the working directory.
 */
export function parseArgs(argv) {
  const config = Object.fromEntries(Object.entries(SETTINGS).map(([k, s]) => [k, Array.isArray(s.default) ? [...s.default] : s.default]));
  const flags = [];
  let configFile = null;
  let selfTest = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    if (arg === '--self-test' || arg === '--once') selfTest = true;
    else if (arg === '--help' || arg === '-h') help = true;
    else if (arg.startsWith('--')) {
      let value;
      const eq = arg.indexOf('=');
      if (eq > 0) [arg, value] = [arg.slice(0, eq), arg.slice(eq + 1)];
      const name = arg.slice(2);
      if (name === 'config') {
        configFile = resolve(value ?? argv[++i] ?? '');
        continue;
      }
      if (name === 'port') {
        // --port N: 127.0.0.1:N, as the example always served.
        flags.push(['listen', `127.0.0.1:${value ?? argv[++i]}`, '--port', process.cwd()]);
        continue;
      }
      if (!(name in SETTINGS)) throw new Error(`unknown option ${arg} (--help lists them)`);
      if (value === undefined) value = SETTINGS[name].kind === 'bool' && !/^(on|off|auto|true|false|yes|no|0|1)$/.test(argv[i + 1] ?? '') ? '' : argv[++i];
      if (value === undefined) throw new Error(`${arg} needs a value`);
      flags.push([name, value, arg, process.cwd()]);
    } else throw new Error(`unexpected argument ${arg} (--help lists the options)`);
  }
  const entries = [...(configFile ? readConfigFile(configFile) : []), ...flags];
  for (const [name, raw, where, base] of entries) {
    let value = parseValue(name, raw, where);
    if (SETTINGS[name].kind === 'path' && value !== '' && !isAbsolute(value)) value = resolve(base, value);
    // A list (define) adds up over the file and the flags, as repeated php -d do.
    config[name] = SETTINGS[name].kind === 'list' ? [...config[name], ...value] : value;
  }
  return { config, selfTest, help, configFile };
}

/** `--help`. */
export function usage() {
  const lines = ['usage: node index.mjs [--config FILE] [--option value ...] [--self-test]', ''];
  for (const [name, s] of Object.entries(SETTINGS)) {
    const def = Array.isArray(s.default) ? '' : ` (default: ${s.default === '' ? "''" : s.default})`;
    lines.push(`  --${name.padEnd(18)} ${s.help}${def}`);
  }
  lines.push('', 'A config file holds the same settings as "name = value" lines (; or # for comments).');
  lines.push('Signals: SIGHUP or SIGUSR2 reloads the PHP workers, SIGTERM or SIGQUIT drains and exits,');
  lines.push('SIGINT (Ctrl-C) does the same and a second one exits at once, SIGUSR1 reopens the access log.');
  return lines.join('\n');
}

/** { host, port } or { path } for the listen setting. */
export function parseListen(listen) {
  if (listen.startsWith('/') || listen.startsWith('.')) return { path: resolve(listen) };
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen) ?? /^()()(\d+)$/.exec(listen);
  if (!m) throw new Error(`listen: expected HOST:PORT, PORT or a socket path, got ${JSON.stringify(listen)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`listen: port ${port} is out of range`);
  return { host: m[1] || m[2] || '0.0.0.0', port };
}

/**
 * The settings left to 'auto', decided once workerSpec() knows what the
 * workers are (spec.direct: PHP workers serving connections).
 */
export function settle(config, spec) {
  const workers = config.workers === 'auto' ? (spec.direct ? cores : 2 * cores) : config.workers;
  return { ...config, direct: spec.direct, workers };
}

/** Settings that were changed but do nothing in the mode `config` settled on: a line to print for each. */
export function unused(config) {
  const changed = (name) => config[name] !== SETTINGS[name].default;
  if (!config.direct) return [];
  return ['queue-timeout', 'max-queue']
    .filter(changed)
    .map((name) => `--${name} does nothing in direct mode (requests wait in the kernel and in the workers, not in a queue of the front's): it applies with --direct off`);
}

/** How many workers front `i` of `fronts` runs, out of `workers` in all. */
export function workersOf(config, i) {
  const fronts = frontCount(config);
  return Math.floor(config.workers / fronts) + (i < config.workers % fronts ? 1 : 0);
}

/** Fronts actually started: never more than workers (each front needs one). */
export function frontCount(config) {
  return Math.min(config.fronts, config.workers);
}
