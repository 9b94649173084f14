// An HTTP request as the CGI variables php-fpm gives a script (what nginx's
// fastcgi_params send), and a worker's answer as an HTTP response. Both sides
// keep bytes as they are: Node's parser hands header bytes over as latin1
// strings (one char per byte), and latin1 turns them back into the same bytes.

/** Header names as CGI variables ('User-Agent' -> 'HTTP_USER_AGENT'), remembered. */
const cgiNames = new Map();

function cgiName(name) {
  let cgi = cgiNames.get(name);
  if (cgi === undefined) {
    // nginx (underscores_in_headers off) drops names with "_", which would
    // otherwise pass for another header (X-Real_IP as X-Real-IP), and
    // Proxy, which CGI programs would take for HTTP_PROXY ("httpoxy").
    const lower = name.toLowerCase();
    cgi = name.includes('_') || lower === 'proxy' ? null : `HTTP_${name.toUpperCase().replaceAll('-', '_')}`;
    if (cgiNames.size < 1000) cgiNames.set(name, cgi);
  }
  return cgi;
}

const CONNECTION = Symbol('cgi connection variables');

/** An address as nginx gives it: an IPv4 client of a dual-stack socket without its "::ffff:". */
export function plainAddress(addr) {
  return addr?.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : (addr ?? '');
}

/** REMOTE_ADDR/PORT and SERVER_ADDR/PORT of a connection, once per connection. */
function connectionVars(socket) {
  let vars = socket[CONNECTION];
  if (vars === undefined) {
    const remote = plainAddress(socket.remoteAddress);
    const local = plainAddress(socket.localAddress);
    vars = {
      text: `\0REMOTE_ADDR\0${remote}\0REMOTE_PORT\0${socket.remotePort ?? ''}\0REMOTE_USER\0\0SERVER_ADDR\0${local}\0SERVER_PORT\0${socket.localPort ?? ''}`,
      serverAddr: local,
    };
    socket[CONNECTION] = vars;
  }
  return vars;
}

/**
 * The CGI variables of `req` as one latin1 string "NAME\0value\0NAME\0value",
 * and what the front needs from the headers: { head, contentLength,
 * chunked, host }. Repeated headers are joined with ", " ("; " for Cookie), as
 * nginx does. `contentLength` is -1 when absent.
 */
export function cgiVariables(req, { https, serverName }) {
  const raw = req.rawHeaders;
  const url = originForm(req.url);
  const q = url.indexOf('?');
  let contentLength = -1;
  let contentType = '';
  let chunked = false;
  let host = '';
  let fields = null; // only built when a header repeats
  let headers = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const value = raw[i + 1];
    const cgi = cgiName(name);
    if (cgi === null) continue;
    switch (cgi) {
      case 'HTTP_CONTENT_LENGTH':
        contentLength = Number(value);
        break;
      case 'HTTP_CONTENT_TYPE':
        contentType = value;
        break;
      case 'HTTP_TRANSFER_ENCODING':
        chunked = true;
        break;
      case 'HTTP_HOST':
        host = value;
        break;
    }
    if (fields !== null) {
      fields.set(cgi, fields.has(cgi) ? fields.get(cgi) + (cgi === 'HTTP_COOKIE' ? '; ' : ', ') + value : value);
    } else if (headers.includes(`\0${cgi}\0`)) {
      // A repeated header: start over with a map that joins them.
      fields = new Map();
      for (let j = 0; j < i; j += 2) {
        const c = cgiName(raw[j]);
        if (c !== null) fields.set(c, fields.has(c) ? fields.get(c) + (c === 'HTTP_COOKIE' ? '; ' : ', ') + raw[j + 1] : raw[j + 1]);
      }
      fields.set(cgi, fields.get(cgi) + (cgi === 'HTTP_COOKIE' ? '; ' : ', ') + value);
    } else headers += `\0${cgi}\0${value}`;
  }
  if (fields !== null) {
    headers = '';
    for (const [k, v] of fields) headers += `\0${k}\0${v}`;
  }
  const connection = connectionVars(req.socket);
  const name = serverName || hostName(host) || connection.serverAddr;
  const head =
    `REQUEST_METHOD\0${req.method}\0REQUEST_URI\0${url}\0QUERY_STRING\0${q < 0 ? '' : url.slice(q + 1)}` +
    `\0SERVER_PROTOCOL\0HTTP/${req.httpVersion}\0REQUEST_SCHEME\0${https ? 'https\0HTTPS\0on' : 'http'}` +
    `\0SERVER_NAME\0${name}\0CONTENT_TYPE\0${contentType}${connection.text}${headers}`;
  return { head, contentLength, chunked };
}

/**
 * A request target in absolute form ("http://host/a.php?x", which a server
 * must take: RFC 9112, 3.2.2) as the path and query nginx passes on
 * ("/a.php?x"); any other target as it is.
 */
function originForm(target) {
  if (target.startsWith('/')) return target;
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(target);
  if (m === null) return target;
  const rest = target.slice(m[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** The host part of a Host header ("example.com:8080" -> "example.com", "[::1]:80" -> "::1"). */
function hostName(host) {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.indexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}

/**
 * The task for a worker: the length of the head, "\n", the head (with
 * CONTENT_LENGTH, which is known only now for a chunked body), the body.
 */
export function encodeTask(head, chunks, bodyLength, hadLength) {
  const full = `${head}\0CONTENT_LENGTH\0${hadLength || bodyLength > 0 ? bodyLength : ''}`;
  const prefix = `${full.length}\n`;
  const task = Buffer.allocUnsafe(prefix.length + full.length + bodyLength);
  task.latin1Write(prefix, 0);
  let at = prefix.length + task.latin1Write(full, prefix.length);
  for (const chunk of chunks) at += chunk.copy(task, at);
  return task;
}

/**
 * Headers of a worker's answer that never reach the client: the front owns
 * the connection and the framing; and nginx's own controls, which scripts
 * written for nginx set and nginx never passes on (X-Accel-Redirect is
 * left: dropping it would hide that nothing here acts on it).
 */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade', 'proxy-connection', 'te', 'trailer',
  'x-accel-buffering', 'x-accel-charset', 'x-accel-expires', 'x-accel-limit-rate',
]);

/**
 * A worker's answer ("status\nName: value\n...\n\nbody") as { status,
 * headers (a flat [name, value, ...] list for writeHead), body, endingPid,
 * contentLength (the script's own Content-Length, digits, or null: it
 * stands only where there is no body to measure, a HEAD answer) }.
 * A "Status:" header sets the status, as under php-fpm. A first line
 * "302 ending 1234" says worker 1234 exits after this answer (endingPid;
 * else 0). Throws on an answer that is not this format.
 */
export function decodeAnswer(answer) {
  const end = answer.indexOf('\n\n');
  if (end < 0) throw new Error('the answer has no end of head');
  const lines = answer.latin1Slice(0, end).split('\n');
  const first = lines[0].split(' ');
  let status = Number(first[0]);
  const endingPid = first[1] === 'ending' ? Number(first[2]) : 0;
  const headers = [];
  let contentLength = null;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`the answer has a header line without a name: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    const lower = name.toLowerCase();
    if (lower === 'status') status = Number.parseInt(value, 10);
    else if (!HOP_BY_HOP.has(lower)) headers.push(name, value);
    else if (lower === 'content-length' && /^\d+$/.test(value)) contentLength = value;
  }
  if (!Number.isInteger(status) || status < 100 || status > 999) throw new Error(`the answer has no valid status: ${JSON.stringify(lines[0])}`);
  return { status, headers, body: answer.subarray(end + 2), endingPid, contentLength };
}
