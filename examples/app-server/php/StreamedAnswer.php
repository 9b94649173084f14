<?php
// The answer of a script that flushes (flush(), ob_flush()) in direct mode:
// the head goes out at the first flush, then each part as the script
// flushes it, as a php-fpm child's output reaches the client through nginx.
// The body goes in chunks ("Transfer-Encoding: chunked"), or as it is to
// an HTTP/1.0 client, which learns where it ends when the connection
// closes. ConnectionSource.php starts one at a script's first flush and
// ends it with the rest of the output; Connection.php writes the bytes.

declare(strict_types=1);

namespace Folk\AppServer;

use Folk\AppServer\Http\Request;

use function Folk\AppServer\Http\responseHead;

final class StreamedAnswer
{
    /** Bytes of the body sent (for the access log). */
    public int $bytes = 0;
    /**
     * The body goes in chunks: to an HTTP/1.1 client, which can then tell
     * a whole body from one cut short. An HTTP/1.0 body ends with the
     * connection.
     */
    private readonly bool $chunked;
    /** The connection stays open after this answer. */
    private readonly bool $keepAlive;
    /** HEAD, 1xx, 204, 304: the head alone. */
    private readonly bool $noBody;
    /** The client went away, or stopped reading: the rest is dropped, the connection closes. */
    private bool $failed = false;
    /** The head, written with the first part. */
    private string $head;

    /**
     * The head of the answer: $status and $lines as the script set them at
     * its first flush. It goes out with the first part.
     *
     * @param list<string> $lines
     * @throws \InvalidArgumentException a status or header line that is not valid HTTP (responseHead())
     */
    public function __construct(
        private readonly Connection $conn,
        Request $request,
        public readonly int $status,
        private readonly array $lines,
        bool $keepAlive,
        private readonly int $timeout,
    ) {
        $this->chunked = $request->protocol === 'HTTP/1.1';
        $this->keepAlive = $keepAlive && $this->chunked;
        $this->noBody = $request->method === 'HEAD' || $status < 200 || $status === 204 || $status === 304;
        $this->head = responseHead($status, $lines, null, $this->keepAlive, $request->method === 'HEAD', $this->chunked);
    }

    /** Send a part of the body; the script waits while the client is more than a little behind (Connection::stream()). */
    public function part(string $data): void
    {
        if ($this->noBody || $data === '') {
            $this->write('');
            return;
        }
        $this->bytes += \strlen($data);
        $this->write($this->chunked ? \dechex(\strlen($data)) . "\r\n" . $data . "\r\n" : $data);
    }

    /**
     * Send the rest and end the body, then close the connection if it does
     * not stay open or $close says so: Connection::answer()'s outcome
     * (true: all out, false: the client takes the rest later, null: failed).
     */
    public function end(string $rest, bool $close = false): ?bool
    {
        if ($this->failed) {
            return null;
        }
        $last = $this->noBody || $rest === '' ? '' : ($this->chunked ? \dechex(\strlen($rest)) . "\r\n" . $rest . "\r\n" : $rest);
        $this->bytes += $this->noBody ? 0 : \strlen($rest);
        $head = $this->head;
        $this->head = '';
        return $this->conn->answer($head . $last . ($this->chunked && !$this->noBody ? "0\r\n\r\n" : ''), !$this->keepAlive || $close);
    }

    /** The client went away, or stopped reading for longer than it may: nothing more reaches it. */
    public function clientGone(): bool
    {
        return $this->failed;
    }

    /** Whether the script changed its status or headers after the head went out (they are not sent: PHP says "headers already sent"). */
    public function changed(int $status, array $lines): bool
    {
        return $status !== $this->status || $lines !== $this->lines;
    }

    /** Write $bytes, after the head the first time; nothing more once the client is gone. */
    private function write(string $bytes): void
    {
        $bytes = $this->head . $bytes;
        $this->head = '';
        if (!$this->failed && $bytes !== '' && !$this->conn->stream($bytes, $this->timeout)) {
            $this->failed = true;
        }
    }
}
