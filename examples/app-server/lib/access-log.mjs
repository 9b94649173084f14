// An access log in the combined format (Apache's and nginx's default):
//   127.0.0.1 - - [05/Dec/2026:04:34:47 +0000] "GET /x HTTP/1.1" 200 1234 "referer" "user agent"
// Lines are gathered and written once per turn of the event loop, appended
// (O_APPEND), so several fronts can share one file. reopen() is for
// logrotate (SIGUSR1, as nginx and php-fpm do).
import { closeSync, openSync, write, writeSync } from 'node:fs';
import { plainAddress } from './cgi.mjs';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** nginx escapes '"', '\' and bytes outside printable ASCII as \xHH in logged strings. */
function escape(text) {
  if (text === undefined || text === '') return '-';
  return /["\\\x00-\x1f\x7f-\xff]/.test(text) ? text.replace(/["\\\x00-\x1f\x7f-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`) : text;
}

const two = (n) => String(n).padStart(2, '0');

export class AccessLog {
  #path;
  #fd = -1;
  #lines = [];
  #scheduled = false;
  #second = -1;
  #stamp = '';

  /** path: a file, or '-' for stdout. */
  constructor(path) {
    this.#path = path;
    this.reopen();
  }

  reopen() {
    const old = this.#fd;
    this.#fd = this.#path === '-' ? 1 : openSync(this.#path, 'a');
    if (old > 2) closeSync(old);
  }

  /** One request; `bytes` is the body length sent. */
  add(req, status, bytes) {
    const h = req.headers;
    this.#lines.push(
      `${plainAddress(req.socket.remoteAddress) || '-'} - - [${this.#time()}] "${escape(`${req.method} ${req.url} HTTP/${req.httpVersion}`)}" ${status} ${bytes} "${escape(h.referer)}" "${escape(h['user-agent'])}"\n`,
    );
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush() {
    this.#scheduled = false;
    if (this.#lines.length === 0) return;
    const text = Buffer.from(this.#lines.join(''), 'latin1');
    this.#lines = [];
    write(this.#fd, text, (err) => {
      if (err) process.stderr.write(`access log ${this.#path}: ${err.message}\n`);
    });
  }

  /** Write what is gathered, synchronously, and close the file. */
  close() {
    if (this.#lines.length > 0) {
      try {
        writeSync(this.#fd, Buffer.from(this.#lines.join(''), 'latin1'));
      } catch (err) {
        process.stderr.write(`access log ${this.#path}: ${err.message}\n`);
      }
      this.#lines = [];
    }
    if (this.#fd > 2) closeSync(this.#fd);
    this.#fd = -1;
  }

  /** [05/Dec/2026:04:34:47 +0000], local time, computed once a second. */
  #time() {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.#second) {
      const d = new Date(now);
      const offset = -d.getTimezoneOffset();
      const sign = offset >= 0 ? '+' : '-';
      const abs = Math.abs(offset);
      this.#stamp = `${two(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ${sign}${two(Math.floor(abs / 60))}${two(abs % 60)}`;
      this.#second = second;
    }
    return this.#stamp;
  }
}
