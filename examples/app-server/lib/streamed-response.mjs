// The answer of a script that flushes, with --direct off: the worker sends
// it in pieces (worker-spawn's onPart), the first with the head. The head
// goes out with the first piece and the body as it comes (chunked to an
// HTTP/1.1 client, as Node writes a response without Content-Length; to an
// HTTP/1.0 one as it is, ended by closing the connection): what direct
// mode's StreamedAnswer.php does on the worker's side.

import { decodeAnswer } from './cgi.mjs';

export class StreamedResponse {
  /** Body bytes sent (for the access log). */
  bytes = 0;
  /** The head as the first piece gave it; null until then. */
  #head = null;
  /** Set once the answer is cut short (a piece past --max-response, the client gone): later pieces are dropped. */
  #cut = false;
  /** Why the head could not go out (not valid HTTP): the answer is a 502 at the end, as without a flush. */
  refused = null;
  #req;
  #res;
  #log;
  #maxResponse;

  constructor(req, res, { log, maxResponse }) {
    this.#req = req;
    this.#res = res;
    this.#log = log;
    this.#maxResponse = maxResponse;
  }

  /** Whether the head has gone out: the answer can no longer be a 502. */
  get started() {
    return this.#head !== null;
  }

  /** The status the head gave (for the access log). */
  get status() {
    return this.#head?.status ?? 0;
  }

  /**
   * One piece: the head and the first of the body, then more of the body.
   * Returns a promise while the client is behind (the worker's next piece
   * waits for it), else undefined.
   */
  part(chunk) {
    if (this.#cut || this.refused !== null || this.#res.destroyed) return undefined;
    let body = chunk;
    if (this.#head === null) {
      let head;
      try {
        head = decodeAnswer(chunk);
        this.#res.writeHead(head.status, head.headers);
      } catch (err) {
        // Nothing went out (writeHead checks the headers before it writes).
        this.refused = `the worker's response headers are not valid HTTP: ${err.message}`;
        return undefined;
      }
      this.#head = head;
      body = head.body;
    }
    if (body.length > this.#maxResponse) return this.#cutShort(`output of ${body.length} bytes after a flush is over --max-response ${this.#maxResponse}: the answer is cut short`);
    this.bytes += body.length;
    if (this.#res.write(body)) return undefined;
    // Resolved when the client has taken it, or is gone.
    return new Promise((resolve) => {
      const done = () => {
        this.#res.off('drain', done);
        this.#res.off('close', done);
        resolve();
      };
      this.#res.on('drain', done);
      this.#res.on('close', done);
    });
  }

  /** The answer that ends it (`decoded`: decodeAnswer()'s): the rest of the body, and the end. */
  end(decoded) {
    if (this.#cut) return;
    const head = this.#head;
    if (decoded.status !== head.status || decoded.headers.join('\n') !== head.headers.join('\n')) {
      this.#log(`${this.#req.method} ${this.#req.url}: a status or headers set after the script flushed were not sent (the head was out)`);
    }
    if (decoded.body.length > this.#maxResponse) {
      this.#cutShort(`output of ${decoded.body.length} bytes after the last flush is over --max-response ${this.#maxResponse}: the answer is cut short`);
      return;
    }
    this.bytes += decoded.body.length;
    this.#res.end(decoded.body);
  }

  /** Drop the rest and close the connection: the client can tell the body ended early (no last chunk). */
  #cutShort(detail) {
    this.#cut = true;
    this.#log(`${this.#req.method} ${this.#req.url}: ${detail}`);
    this.#res.destroy();
    return undefined;
  }
}
