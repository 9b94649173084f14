// php-fpm for the benchmarks that put it beside ours (app-server/,
// worker-spawn/prototype.mjs) and for the app server's peer test
// (examples/app-server/test/php-fpm-peer.test.ts): find it, install what is
// missing with apt-get (root only; CI never runs the benchmarks, and
// installs php-fpm itself in .ci/run), start a master with a pool of our
// choosing, and talk FastCGI to it directly where no web server is wanted.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';

export function have(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** The php-fpm binary (Debian names it php-fpm8.2 in /usr/sbin), or null. */
export function findFpm() {
  for (const name of ['php-fpm', 'php-fpm8.4', 'php-fpm8.3', 'php-fpm8.2', 'php-fpm8.1']) if (have(name)) return name;
  const sbin = ['/usr/sbin/php-fpm8.4', '/usr/sbin/php-fpm8.3', '/usr/sbin/php-fpm8.2', '/usr/sbin/php-fpm'].find(existsSync);
  return sbin ?? null;
}

/**
 * apt-get install the Debian packages in `missing` (nothing when empty).
 * Not root: returns the message saying what to install, else null.
 */
export function aptInstall(missing) {
  if (missing.length === 0) return null;
  if (process.getuid?.() !== 0) {
    return `missing: ${missing.join(', ')}. Install them (Debian/Ubuntu: sudo apt-get install -y ${missing.join(' ')}) or run this as root`;
  }
  console.log(`> apt-get install ${missing.join(' ')}`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return null;
}

/**
 * Start php-fpm in the foreground (-F, -R for root) with one pool `www` on
 * the UNIX socket `socket`; `pool` holds the pool's own lines (pm = ...).
 * `ini` adds -d settings. Resolves to the master's ChildProcess once the
 * socket is there; its log is dir/php-fpm.log.
 */
export async function startFpm(dir, socket, pool, ini = []) {
  const fpm = findFpm();
  if (fpm === null) throw new Error('php-fpm is not installed');
  const conf = join(dir, 'php-fpm.conf');
  writeFileSync(
    conf,
    `[global]
pid = ${join(dir, 'php-fpm.pid')}
error_log = ${join(dir, 'php-fpm.log')}
daemonize = no

[www]
listen = ${socket}
listen.mode = 0666
listen.backlog = 511
clear_env = yes
catch_workers_output = yes
${pool.join('\n')}
`,
  );
  const master = spawn(fpm, ['-F', '-R', '-y', conf, ...ini.flatMap((d) => ['-d', d])], { stdio: 'ignore' });
  for (let i = 0; i < 200 && !existsSync(socket); i++) {
    if (master.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  if (!existsSync(socket)) {
    master.kill('SIGTERM');
    const log = existsSync(join(dir, 'php-fpm.log')) ? readFileSync(join(dir, 'php-fpm.log'), 'utf8').split('\n').slice(0, 5).join('\n') : '';
    throw new Error(`php-fpm did not start:\n${log}`);
  }
  return master;
}

/** SIGQUIT (graceful) to a php-fpm master; resolves when it has exited (its children go with it). */
export function stopFpm(master) {
  if (master.exitCode !== null || master.signalCode !== null) return Promise.resolve();
  const exited = new Promise((resolve) => master.once('exit', resolve));
  master.kill('SIGQUIT');
  return exited;
}

/** nginx's binary: Debian's, or the one on PATH. */
export const NGINX = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';

/**
 * Start nginx in the foreground as the usual PHP site in front of php-fpm on
 * the UNIX socket `socket`: static files and directory indexes from `root`,
 * try_files $uri $uri/ /index.php, and .php paths (with PATH_INFO, as
 * fastcgi_split_path_info splits them; 404 for a script that is not there)
 * to php-fpm with Debian's fastcgi_params. Its files and error log go in
 * `dir`. Returns the ChildProcess at once: the caller waits until it answers.
 */
export function startNginx(dir, { port, root, socket, serverName = '' }) {
  const temp = ['client_body', 'fastcgi', 'proxy', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${join(dir, t)};`).join('\n  ');
  writeFileSync(
    join(dir, 'nginx.conf'),
    `${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes auto;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'nginx-error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  ${temp}
  server {
    listen 127.0.0.1:${port} backlog=511;
    ${serverName ? `server_name ${serverName};` : ''}
    root ${root};
    index index.php;
    location / { try_files $uri $uri/ /index.php$is_args$args; }
    location ~ [^/]\\.php(/|$) {
      fastcgi_split_path_info ^(.+?\\.php)(/.*)$;
      if (!-f $document_root$fastcgi_script_name) { return 404; }
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_param PATH_INFO $fastcgi_path_info;
      fastcgi_pass unix:${socket};
    }
  }
}
`,
  );
  return spawn(NGINX, ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
}

// FastCGI (the spec's record layout): version 1, type, request id, content
// length, padding length, reserved; then content and padding.
const FCGI = { BEGIN_REQUEST: 1, END_REQUEST: 3, PARAMS: 4, STDIN: 5, STDOUT: 6, STDERR: 7 };

function record(type, content) {
  const head = Buffer.alloc(8);
  head.writeUInt8(1, 0);
  head.writeUInt8(type, 1);
  head.writeUInt16BE(1, 2);
  head.writeUInt16BE(content.length, 4);
  return Buffer.concat([head, content]);
}

function nameValue(name, value) {
  const len = (n) => (n < 128 ? Buffer.from([n]) : Buffer.from([((n >>> 24) & 0x7f) | 0x80, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]));
  const [k, v] = [Buffer.from(name), Buffer.from(value)];
  return Buffer.concat([len(k.length), len(v.length), k, v]);
}

/**
 * One GET of `script` over FastCGI on the UNIX socket `socket`, as a web
 * server would send it (a new connection, no keep-alive). Resolves to the
 * script's output (CGI headers and body) once php-fpm ends the request.
 */
export function fastcgiGet(socket, script, query = '') {
  const params = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: 'GET',
    SCRIPT_FILENAME: script,
    SCRIPT_NAME: '/' + script.split('/').pop(),
    REQUEST_URI: '/' + script.split('/').pop() + (query ? `?${query}` : ''),
    QUERY_STRING: query,
    SERVER_PROTOCOL: 'HTTP/1.1',
    SERVER_NAME: 'localhost',
    REMOTE_ADDR: '127.0.0.1',
  };
  const begin = Buffer.alloc(8);
  begin.writeUInt16BE(1, 0); // RESPONDER; flags 0: php-fpm closes the connection after the request
  const body = Buffer.concat(Object.entries(params).map(([k, v]) => nameValue(k, v)));
  const out = Buffer.concat([record(FCGI.BEGIN_REQUEST, begin), record(FCGI.PARAMS, body), record(FCGI.PARAMS, Buffer.alloc(0)), record(FCGI.STDIN, Buffer.alloc(0))]);
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    let buf = Buffer.alloc(0);
    const stdout = [];
    const stderr = [];
    conn.on('connect', () => conn.write(out));
    conn.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 8) {
        const type = buf.readUInt8(1);
        const length = buf.readUInt16BE(4);
        const padding = buf.readUInt8(6);
        if (buf.length < 8 + length + padding) break;
        const content = buf.subarray(8, 8 + length);
        buf = buf.subarray(8 + length + padding);
        if (type === FCGI.STDOUT) stdout.push(content);
        else if (type === FCGI.STDERR) stderr.push(content);
        else if (type === FCGI.END_REQUEST) {
          conn.destroy();
          if (stderr.length) reject(new Error(`php-fpm: ${Buffer.concat(stderr).toString()}`));
          else resolve(Buffer.concat(stdout));
          return;
        }
      }
    });
    conn.on('error', reject);
  });
}
