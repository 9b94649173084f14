// systemd's readiness protocol, the sending side: notify() is sd_notify(3).
// A service started with Type=notify (or notify-reload) finds an AF_UNIX
// datagram socket in $NOTIFY_SOCKET and sends it "READY=1", "RELOADING=1",
// "STOPPING=1", "STATUS=..." as newline-separated assignments. Node's dgram
// speaks UDP only, so the datagram goes out through the binding (one
// socket, one sendto, close), as libsystemd does it.
import { invalidArgType, invalidArgValue, optionalBoolean, optionsObject } from './internal/args.js';
import { systemError } from './errors.js';
import { native } from './native.js';
import type { NotifyOptions, NotifyState } from './types.js';

type ErrnoException = NodeJS.ErrnoException;

/** sizeof(sockaddr_un.sun_path) on Linux. */
const SUN_PATH_MAX = 108;

/**
 * The longest NOTIFY_SOCKET libsystemd takes, in bytes: sun_path less the
 * NUL byte it insists on (a path's last, an abstract name's first).
 */
const MAX_SOCKET_BYTES = SUN_PATH_MAX - 1;

/** The message: "NAME=value" lines, in the order given. */
function message(state: unknown): Buffer {
  let text: string;
  if (typeof state === 'string') {
    text = state;
  } else if (state !== null && typeof state === 'object' && !Array.isArray(state)) {
    const lines: string[] = [];
    for (const [name, value] of Object.entries(state)) {
      if (name === '' || /[=\n\0]/.test(name)) throw invalidArgValue(`state.${name}`, 'must be named without "=", newlines or null bytes', name);
      let shown: string;
      if (typeof value === 'string') shown = value;
      else if (typeof value === 'number' || typeof value === 'bigint') shown = String(value);
      else if (typeof value === 'boolean') shown = value ? '1' : '0';
      else throw invalidArgType(`state.${name}`, 'of type string, number, bigint or boolean', value);
      if (/[\n\0]/.test(shown)) throw invalidArgValue(`state.${name}`, 'must be a value without newlines or null bytes', shown);
      lines.push(`${name}=${shown}`);
    }
    text = lines.join('\n');
  } else {
    throw invalidArgType('state', 'of type string or object', state);
  }
  // systemd drops a message with a NUL in it (sd_notify, given a C string,
  // could not send one). An empty state is an empty datagram, as sd_notify
  // sends it.
  if (text.includes('\0')) throw invalidArgValue('state', 'must be a string without null bytes', text);
  return Buffer.from(text, 'utf8');
}

/**
 * sun_path's bytes for NOTIFY_SOCKET's value: an absolute path, or "@name"
 * for an abstract socket. Refused as libsystemd 252 refuses it: EINVAL for
 * less than 2 bytes or another first character, and past MAX_SOCKET_BYTES
 * ENAMETOOLONG for a path, EINVAL for an abstract name. (It says EINVAL for
 * "vsock:" too; 253 and later speak AF_VSOCK, which this does not.)
 */
function address(socket: string): Buffer {
  if (socket.startsWith('vsock:')) {
    throw systemError('EAFNOSUPPORT', 'notify', `notify '${socket}' (AF_VSOCK notification sockets are not supported)`);
  }
  const bytes = Buffer.from(socket, 'utf8');
  const abstract = socket.startsWith('@');
  if (bytes.length < 2 || !(abstract || socket.startsWith('/'))) {
    throw systemError('EINVAL', 'notify', `notify '${socket}' (NOTIFY_SOCKET must be an absolute path or @name, at least 2 bytes long)`);
  }
  if (bytes.length > MAX_SOCKET_BYTES) {
    throw systemError(abstract ? 'EINVAL' : 'ENAMETOOLONG', 'notify', `notify '${socket}' (longer than ${MAX_SOCKET_BYTES} bytes)`);
  }
  if (abstract) bytes[0] = 0;
  return bytes;
}

/**
 * Tell the service manager about this process, as sd_notify(3) does:
 * `notify('READY=1')`, `notify({ STATUS: 'serving', READY: 1 })`. Sends one
 * datagram to `options.socket`, by default `$NOTIFY_SOCKET`; returns false
 * without sending when there is none (not started by systemd), true once
 * sent. With `unsetEnvironment`, NOTIFY_SOCKET is removed from process.env
 * afterwards, sent or not, errors included, so children do not inherit it.
 *
 * @throws TypeError/RangeError for a bad state or options; an errno Error
 * (`ENOENT`, `ECONNREFUSED`, `EACCES`, `EAGAIN`, ...; `syscall` 'sendto' or
 * 'socket') when the datagram cannot be sent, with `address`; `EINVAL` /
 * `ENAMETOOLONG` / `EAFNOSUPPORT` (syscall 'notify') for a socket address
 * this cannot use.
 */
export function notify(state: NotifyState, options?: NotifyOptions): boolean {
  const opts = optionsObject(options);
  const unset = optionalBoolean(opts, 'unsetEnvironment', false);
  try {
    return send(state, opts);
  } finally {
    // As sd_notify(1, ...): gone whatever happened, errors included.
    if (unset) delete process.env.NOTIFY_SOCKET;
  }
}

/** One datagram of `state` to options.socket, else $NOTIFY_SOCKET; false when there is neither. */
function send(state: unknown, opts: Record<string, unknown>): boolean {
  if (opts['socket'] !== undefined && typeof opts['socket'] !== 'string') throw invalidArgType('options.socket', 'of type string', opts['socket']);
  const payload = message(state);
  const socket = (opts['socket'] as string | undefined) ?? process.env.NOTIFY_SOCKET;
  if (socket === undefined) return false;
  const to = address(socket);
  try {
    native.notifySend(to, payload);
  } catch (err) {
    const e = err as ErrnoException;
    if (e instanceof Error && typeof e.syscall === 'string') {
      e.message += ` '${socket}'`;
      (e as ErrnoException & { address?: string }).address = socket;
    }
    throw e;
  }
  return true;
}
