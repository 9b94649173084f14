<?php
// HTTP/1.1 requests read from the bytes of a client connection, for a PHP
// worker that owns the connection (--direct; Http.php has the rest: the
// response head and the CGI variables). No I/O here: the caller feeds what
// it read and takes requests out.
//
// What the parser accepts is what Node 20's HTTP parser (llhttp, in its
// default strict mode) accepts, where the two differ from nginx the choice
// is said at the rule, and every refusal is an HttpError with the status
// to answer before closing the connection:
// - Lines end with CRLF. llhttp refuses a bare LF anywhere in the head
//   ("Missing expected CR"), and so does this: 400.
// - Request line: method SP request-target SP HTTP/1.0 or HTTP/1.1. The
//   method is any token (llhttp knows a fixed list; nginx takes any
//   letters); the target is visible ASCII only (llhttp refuses bytes over
//   0x7E and controls in it) and starts as llhttp wants it to: "/", "*"
//   or "scheme://" (so no authority form: CONNECT is not served); one
//   space each (llhttp takes two, nginx too; RFC 9112 says one).
//   HTTP/x.y of another version: 505. A request line without a version
//   (HTTP/0.9, which llhttp takes) is 400.
// - Header lines: a token, a colon, a value of HTAB, visible ASCII and
//   bytes 0x80-0xFF (llhttp refuses every other control byte, NUL and a
//   bare CR among them). No space before the colon, no obs-fold. The value
//   is trimmed of spaces and tabs at both ends, as Node's rawHeaders are.
// - Empty lines before a request line are skipped (RFC 9112 2.2), and so
//   are lone CRs and LFs there, as llhttp and nginx skip them.
// - "Connection: close" ends the connection after the answer, whatever
//   else Connection says (RFC 9112 9.3; llhttp lets an HTTP/1.0
//   "keep-alive" win over it).
// - An HTTP/1.1 request without Host: 400 (Node's requireHostHeader,
//   nginx). Two Host headers: 400 (nginx; Node would join them, and
//   SERVER_NAME would come from a value the client chose twice).
// - Content-Length: digits only (spaces around them; a tab after them is
//   400, as llhttp has it); a second Content-Length header is 400
//   even with the same value (llhttp and nginx both refuse it); more than
//   18 significant digits is 400 (overflow); over maxBody is 413 as soon as
//   the head is read.
// - Transfer-Encoding with Content-Length: 400. Transfer-Encoding twice, or
//   in an HTTP/1.0 request: 400 (nginx). A value other than "chunked"
//   (any case): 501, as nginx answers; this includes "gzip, chunked",
//   which llhttp would take, handing the still-compressed body on.
// - Chunked bodies: hex sizes (at most 15 significant digits), optional
//   extensions after the size as llhttp takes them (";name" or
//   ";name=value", a token or a quoted string, no spaces: llhttp refuses
//   "1 ;a" and "0;"), each chunk's data followed by CRLF; trailer fields
//   are read, checked as header lines (Content-Length or
//   Transfer-Encoding there: 400, as llhttp) and dropped. A chunk over
//   maxBody in total is 413 as soon as its size line is read.

declare(strict_types=1);

namespace Folk\AppServer\Http;

require_once __DIR__ . '/Request.php';

/**
 * Requests out of the bytes of one connection. feed() what was read, then
 * call next() until it gives null; pipelined requests come out one by one,
 * and where the reads split the bytes makes no difference. After an
 * HttpError every next() throws it again: answer it and close.
 */
final class RequestReader
{
    private const HEAD = 0;
    private const BODY = 1;        // Content-Length bytes of body
    private const CHUNK_SIZE = 2;  // a chunk-size line
    private const CHUNK_DATA = 3;  // the data of a chunk, then its CRLF
    private const TRAILER = 4;     // trailer lines up to the empty line
    private const CLOSED = 5;      // a request said Connection: close (or an HTTP/1.0 one did not keep alive)

    /** A chunk-size line (with its extensions) longer than this is refused. */
    private const MAX_CHUNK_LINE = 4096;

    private const TOKEN = '[!#$%&\'*+\-.^_`|~0-9A-Za-z]';
    /** A whole head: request line, header lines, each with its CRLF (the final empty line not included). */
    /** A request-target as llhttp takes one: a path ("/..."), "*", or an absolute URL ("scheme://..."), visible ASCII. */
    private const TARGET = '(?:[\/*]|[A-Za-z]++:\/\/)[\x21-\x7e]*+';
    private const HEAD_RE = '/\A(' . self::TOKEN . '++) (' . self::TARGET . ') HTTP\/1\.([01])\r\n(?:' . self::TOKEN . '++:[\t\x20-\x7e\x80-\xff]*+\r\n)*+\z/';
    /** A well-formed request line of another HTTP version. */
    private const REQUEST_LINE_505 = '/\A' . self::TOKEN . '++ [\x21-\x7e]++ HTTP\/(?!1\.[01]\r\n)\d\.\d\r\n/';
    /** A field that frames the message, which no trailer may carry (RFC 9110 6.5.1; llhttp refuses it). */
    private const FRAMING_FIELD = '/\A(?:content-length|transfer-encoding):/i';
    private const FIELD_RE = '/\A' . self::TOKEN . '++:[\t\x20-\x7e\x80-\xff]*+\z/';
    /** Chunk extensions as llhttp takes them: ";name" or ";name=value", the value a token or a quoted string, no spaces. */
    private const EXTENSIONS = '/\G(?:;' . self::TOKEN . '++(?:=(?:' . self::TOKEN . '++|"(?:[^"\\\\\x00-\x08\x0a-\x1f\x7f]|\\\\[\t\x20-\x7e\x80-\xff])*+"))?)++\z/';
    /** What fields() notes, before any header line. */
    private const NOTHING_SEEN = ['close' => false, 'keepAlive' => false, 'hosts' => 0, 'te' => null, 'expect' => false];

    private string $buf = '';
    /** Where the request being read starts in $buf (what buffered() gives from). */
    private int $start = 0;
    /** Where parsing goes on in $buf. */
    private int $pos = 0;
    /** Bytes after $start already searched for the end of the head. */
    private int $scanned = 0;
    private int $state = self::HEAD;
    private ?HttpError $error = null;
    private ?Request $request = null;
    /** Bytes of the current chunk still to come. */
    private int $chunkLeft = 0;
    /** Bytes of trailer fields read so far (against maxHead). */
    private int $trailerBytes = 0;
    private bool $expectContinue = false;

    public function __construct(private readonly int $maxBody = 1048576, private readonly int $maxHead = 16384)
    {
    }

    /** Bytes read from the connection. */
    public function feed(string $bytes): void
    {
        if ($this->error !== null || $this->state === self::CLOSED) {
            return;
        }
        if ($this->start > 0) {
            // Drop what earlier requests used (next() does it too, but only
            // when it gives null: a server that takes one request per read
            // would keep every byte the connection ever brought).
            $this->buf = \substr($this->buf, $this->start) . $bytes;
            $this->pos -= $this->start;
            $this->start = 0;
            return;
        }
        $this->buf .= $bytes;
    }

    /**
     * The next whole request, or null until more bytes come (or for ever,
     * after a request that does not keep the connection alive).
     *
     * @throws HttpError the request is refused; the reader is done
     */
    public function next(): ?Request
    {
        if ($this->error !== null) {
            throw $this->error;
        }
        try {
            $request = $this->parse();
        } catch (HttpError $e) {
            $this->error = $e;
            $this->request = null;
            throw $e;
        }
        if ($request === null && $this->start > 0) {
            // Drop what earlier requests used; appends then grow $buf in place.
            $this->buf = (string) \substr($this->buf, $this->start);
            $this->pos -= $this->start;
            $this->start = 0;
        }
        return $request;
    }

    /**
     * True once per request, when its head is read (by next(), which gave
     * null), it has "Expect: 100-continue" (HTTP/1.1), it has a body and no
     * byte of that body has come yet: write "HTTP/1.1 100 Continue\r\n\r\n".
     */
    public function wantsContinue(): bool
    {
        if (!$this->expectContinue || $this->error !== null || $this->pos !== \strlen($this->buf)) {
            return false;
        }
        if ($this->state === self::BODY || ($this->state === self::CHUNK_SIZE && $this->request?->body === '')) {
            $this->expectContinue = false;
            return true;
        }
        return false;
    }

    /** The head of a request is read and its body is still coming. */
    public function readingBody(): bool
    {
        return $this->request !== null && $this->error === null;
    }

    /** Nothing buffered and no request begun: between requests. */
    public function idle(): bool
    {
        return $this->state === self::HEAD && $this->error === null && $this->start === \strlen($this->buf);
    }

    /** The bytes received and not yet given out as a request (from the start of a request partly read). */
    public function buffered(): string
    {
        return (string) \substr($this->buf, $this->start);
    }

    private function parse(): ?Request
    {
        for (;;) {
            switch ($this->state) {
                case self::HEAD:
                    if (!$this->head()) {
                        return null;
                    }
                    break;
                case self::BODY:
                    $r = $this->request;
                    if (\strlen($this->buf) - $this->pos < $r->contentLength) {
                        return null;
                    }
                    $r->body = (string) \substr($this->buf, $this->pos, $r->contentLength);
                    $this->pos += $r->contentLength;
                    return $this->done();
                case self::CHUNK_SIZE:
                    if (!$this->chunkSize()) {
                        return null;
                    }
                    break;
                case self::CHUNK_DATA:
                    if (!$this->chunkData()) {
                        return null;
                    }
                    break;
                case self::TRAILER:
                    if (!$this->trailer()) {
                        return null;
                    }
                    return $this->done();
                default: // CLOSED
                    return null;
            }
        }
    }

    /** Parse a head when it is all here; false until then. */
    private function head(): bool
    {
        $end = $this->headEnd();
        if ($end === null) {
            return false;
        }
        $r = $this->request = $this->requestOf(\substr($this->buf, $this->start, $end + 2 - $this->start));
        $this->pos = $end + 4;
        $this->state = $r->chunked ? self::CHUNK_SIZE : ($r->contentLength > 0 ? self::BODY : self::HEAD);
        if ($this->state === self::HEAD) {
            // No body: the request is whole. done() resets the state.
            $this->state = self::TRAILER;
            $this->trailerBytes = -1;
        }
        return true;
    }

    /**
     * Where the CRLF CRLF that ends the head starts, once it is here (empty
     * lines before the request line skipped); null until then. A head over
     * maxHead is refused (431), and so is a bare LF or CR as soon as it
     * comes (400, as llhttp does), not only when the head runs into maxHead.
     */
    private function headEnd(): ?int
    {
        $buf = $this->buf;
        $start = $this->start;
        // Empty lines before a request line are skipped, lone CRs and LFs too, as llhttp and nginx skip them.
        $blank = \strspn($buf, "\r\n", $start);
        if ($blank > 0) {
            $start += $blank;
            $this->start = $this->pos = $start;
            $this->scanned = 0;
        }
        $length = \strlen($buf) - $start;
        if ($length === 0) {
            return null;
        }
        $end = \strpos($buf, "\r\n\r\n", $start + \max(0, $this->scanned - 3));
        if ($end === false) {
            if ($length >= $this->maxHead) {
                throw new HttpError(431, "request head over $this->maxHead bytes");
            }
            // The new bytes only.
            for ($at = $start + \max(0, $this->scanned - 1); ($at = \strpos($buf, "\n", $at)) !== false; $at++) {
                if ($at === $start || $buf[$at - 1] !== "\r") {
                    throw new HttpError(400, 'bare LF in the request head');
                }
            }
            for ($at = $start + \max(0, $this->scanned - 1); ($at = \strpos($buf, "\r", $at)) !== false; $at++) {
                if ($at + 1 < \strlen($buf) && $buf[$at + 1] !== "\n") {
                    throw new HttpError(400, 'bare CR in the request head');
                }
            }
            $this->scanned = $length;
            return null;
        }
        $this->scanned = 0;
        if ($end + 4 - $start > $this->maxHead) {
            throw new HttpError(431, "request head over $this->maxHead bytes");
        }
        return $end;
    }

    /** The request of a whole head (request line and header lines, each with its CRLF), or the HttpError that refuses it. */
    private function requestOf(string $head): Request
    {
        if (\preg_match(self::HEAD_RE, $head, $m) !== 1) {
            if (\preg_match(self::REQUEST_LINE_505, $head) === 1) {
                throw new HttpError(505, 'HTTP version not supported');
            }
            throw new HttpError(400, 'malformed request head');
        }
        $r = new Request();
        $r->method = $m[1];
        $r->target = $m[2];
        $r->protocol = $m[3] === '1' ? 'HTTP/1.1' : 'HTTP/1.0';
        $lineEnd = \strpos($head, "\r\n");
        $seen = $lineEnd + 2 < \strlen($head) ? $this->fields($r, \substr($head, $lineEnd + 2, -2)) : self::NOTHING_SEEN;
        $this->frame($r, $seen);
        return $r;
    }

    /**
     * The header lines (CRLF between them) into $r->headers, Content-Length
     * into $r->contentLength; returns what else the framing rules need:
     * Connection's close and keep-alive, how many Host headers, the
     * Transfer-Encoding, Expect: 100-continue.
     */
    private function fields(Request $r, string $lines): array
    {
        $seen = self::NOTHING_SEEN;
        foreach (\explode("\r\n", $lines) as $line) {
            $colon = \strpos($line, ':');
            $name = \substr($line, 0, $colon);
            $value = \trim(\substr($line, $colon + 1), " \t");
            $r->headers[] = [$name, $value];
            switch (\strtolower($name)) {
                case 'content-length':
                    // Spaces may follow the digits, not tabs (llhttp refuses "5\t").
                    $r->contentLength = self::contentLength($r->contentLength, \rtrim(\ltrim(\substr($line, $colon + 1), " \t"), ' '));
                    break;
                case 'transfer-encoding':
                    if ($seen['te'] !== null) {
                        throw new HttpError(400, 'more than one Transfer-Encoding header');
                    }
                    $seen['te'] = $value;
                    break;
                case 'connection':
                    foreach (\explode(',', $value) as $option) {
                        $option = \strtolower(\trim($option, " \t"));
                        $seen['close'] = $seen['close'] || $option === 'close';
                        $seen['keepAlive'] = $seen['keepAlive'] || $option === 'keep-alive';
                    }
                    break;
                case 'host':
                    $seen['hosts']++;
                    break;
                case 'expect':
                    $seen['expect'] = \strcasecmp($value, '100-continue') === 0;
                    break;
            }
        }
        return $seen;
    }

    /** A Content-Length value, the request having had $current (-1: none) before it. */
    private static function contentLength(int $current, string $value): int
    {
        if ($current >= 0) {
            throw new HttpError(400, 'more than one Content-Length header');
        }
        if (!\ctype_digit($value)) {
            throw new HttpError(400, 'Content-Length is not a number');
        }
        if (\strlen(\ltrim($value, '0')) > 18) {
            throw new HttpError(400, 'Content-Length overflow');
        }
        return (int) $value;
    }

    /** How the body comes and whether the connection stays open, from what fields() saw; refusals of the framing rules (see the top of this file). */
    private function frame(Request $r, array $seen): void
    {
        $http11 = $r->protocol === 'HTTP/1.1';
        if ($seen['hosts'] > 1) {
            throw new HttpError(400, 'more than one Host header');
        }
        if ($seen['hosts'] === 0 && $http11) {
            throw new HttpError(400, 'HTTP/1.1 request without Host');
        }
        if ($seen['te'] !== null) {
            if ($r->contentLength >= 0) {
                throw new HttpError(400, 'Content-Length and Transfer-Encoding together');
            }
            if (!$http11) {
                throw new HttpError(400, 'HTTP/1.0 request with Transfer-Encoding');
            }
            if (\strcasecmp($seen['te'], 'chunked') !== 0) {
                throw new HttpError(501, 'Transfer-Encoding other than chunked');
            }
            $r->chunked = true;
        }
        if ($r->contentLength > $this->maxBody) {
            throw new HttpError(413, "request body of $r->contentLength bytes is over --max-body $this->maxBody", $r);
        }
        $r->keepAlive = $http11 ? !$seen['close'] : $seen['keepAlive'] && !$seen['close'];
        $this->expectContinue = $seen['expect'] && $http11 && ($r->chunked || $r->contentLength > 0);
    }

    /** Take the data of a chunk and the CRLF after it; false until they are here. */
    private function chunkData(): bool
    {
        $available = \strlen($this->buf) - $this->pos;
        if ($this->chunkLeft > 0) {
            if ($available === 0) {
                return false;
            }
            $take = \min($available, $this->chunkLeft);
            $this->request->body .= \substr($this->buf, $this->pos, $take);
            $this->pos += $take;
            $this->chunkLeft -= $take;
            $available -= $take;
            if ($this->chunkLeft > 0) {
                return false;
            }
        }
        // The CRLF after the data; a wrong first byte is refused at once.
        if ($available >= 1 && $this->buf[$this->pos] !== "\r"
            || $available >= 2 && $this->buf[$this->pos + 1] !== "\n") {
            throw new HttpError(400, 'chunk data not followed by CRLF');
        }
        if ($available < 2) {
            return false;
        }
        $this->pos += 2;
        $this->state = self::CHUNK_SIZE;
        return true;
    }

    /** Read a chunk-size line; false until it is all here. */
    private function chunkSize(): bool
    {
        $eol = \strpos($this->buf, "\r\n", $this->pos);
        if ($eol === false) {
            if (\strlen($this->buf) - $this->pos > self::MAX_CHUNK_LINE) {
                throw new HttpError(400, 'chunk-size line too long');
            }
            return false;
        }
        if ($eol - $this->pos > self::MAX_CHUNK_LINE) {
            throw new HttpError(400, 'chunk-size line too long');
        }
        $line = \substr($this->buf, $this->pos, $eol - $this->pos);
        $semi = \strpos($line, ';');
        $hex = $semi === false ? $line : \substr($line, 0, $semi);
        if (!\ctype_xdigit($hex)) {
            throw new HttpError(400, 'invalid chunk size');
        }
        if ($semi !== false && \preg_match(self::EXTENSIONS, $line, $unused, 0, $semi) !== 1) {
            throw new HttpError(400, 'invalid chunk extension');
        }
        $hex = \ltrim($hex, '0');
        if (\strlen($hex) > 15) {
            throw new HttpError(400, 'chunk size overflow');
        }
        $size = $hex === '' ? 0 : (int) \hexdec($hex);
        $this->pos = $eol + 2;
        if ($size === 0) {
            $this->state = self::TRAILER;
            $this->trailerBytes = 0;
            return true;
        }
        $r = $this->request;
        if (\strlen($r->body) + $size > $this->maxBody) {
            throw new HttpError(413, "chunked request body over --max-body $this->maxBody", $r);
        }
        $this->chunkLeft = $size;
        $this->state = self::CHUNK_DATA;
        return true;
    }

    /** Read (and drop) trailer fields up to the empty line; false until it is here. */
    private function trailer(): bool
    {
        if ($this->trailerBytes < 0) {
            return true; // a request without a body
        }
        for (;;) {
            $eol = \strpos($this->buf, "\r\n", $this->pos);
            if ($eol === false) {
                if ($this->trailerBytes + \strlen($this->buf) - $this->pos >= $this->maxHead) {
                    throw new HttpError(431, "request trailer over $this->maxHead bytes");
                }
                return false;
            }
            $this->trailerBytes += $eol + 2 - $this->pos;
            if ($this->trailerBytes > $this->maxHead) {
                throw new HttpError(431, "request trailer over $this->maxHead bytes");
            }
            if ($eol === $this->pos) {
                $this->pos += 2;
                return true;
            }
            $field = \substr($this->buf, $this->pos, $eol - $this->pos);
            if (\preg_match(self::FIELD_RE, $field) !== 1) {
                throw new HttpError(400, 'malformed trailer field');
            }
            if (\preg_match(self::FRAMING_FIELD, $field) === 1) {
                throw new HttpError(400, 'Content-Length or Transfer-Encoding in the trailer');
            }
            $this->pos = $eol + 2;
        }
    }

    /** The request now whole: give it out and get ready for the next one. */
    private function done(): Request
    {
        $r = $this->request;
        $this->request = null;
        $this->start = $this->pos;
        $this->expectContinue = false;
        $this->state = $r->keepAlive ? self::HEAD : self::CLOSED;
        return $r;
    }
}
