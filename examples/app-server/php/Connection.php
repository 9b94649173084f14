<?php
// One HTTP connection a PHP worker serves in direct mode
// (ConnectionSource.php has the set of them and the loop): its socket, the
// requests read from it (RequestReader.php), and the answer being written
// to it. The socket is non-blocking (the front's copy and this one share
// the open file, and Node made it so): reads and writes take what is there
// and never wait.

declare(strict_types=1);

namespace Folk\AppServer;

use Folk\AppServer\Http\RequestReader;

final class Connection
{
    /** An answer's rest that the client has not taken is kept in memory up to this size, in a temporary file past it (nginx's proxy buffers and temp files). */
    private const SPOOL_OVER = 1048576;
    /** Bytes read back from such a file at a time. */
    private const CHUNK = 262144;

    public readonly RequestReader $reader;
    /** When a byte last came or went (microtime). */
    public float $seen;
    /** When the request being read began. */
    public float $begun;
    /** At least one answer was written: the connection has been between two requests. */
    public bool $answered = false;
    /** A request was refused: what the client still sends is read and dropped, then it closes. */
    public bool $lingering = false;
    /** Close once the answer being written is all out. */
    private bool $closeAfter = false;
    /** What is still to write of the answer, with the rest in $spool. */
    private string $out = '';
    /** @var resource|null */
    private $spool = null;
    /** Bytes peek() fed the reader that are still in the kernel. */
    private int $unread = 0;

    /** $meta: the front's "conn" message (id, addresses); $buffered: bytes of a request another worker had read. */
    public function __construct(public readonly int $id, public readonly \Socket $socket, public readonly array $meta, int $maxBody, string $buffered)
    {
        $this->reader = new RequestReader($maxBody);
        if ($buffered !== '') {
            $this->reader->feed($buffered);
        }
        $this->seen = $this->begun = \microtime(true);
    }

    /**
     * Copy what the client sent into the reader, leaving it in the kernel
     * until consume(): false once the client closed (or reset) the
     * connection. The caller consumes it once the scoreboard accounts for
     * it, so a worker that dies before has taken nothing from the
     * connection. What the reader does not keep (bytes of a refused
     * request, or empty lines between requests) is consumed at once.
     */
    public function peek(): bool
    {
        $this->consume(); // (what an earlier peek fed the reader: never fed twice)
        $data = '';
        $n = @\socket_recv($this->socket, $data, 65536, \MSG_PEEK | \MSG_DONTWAIT);
        if ($n === false && \socket_last_error($this->socket) === \SOCKET_EAGAIN) {
            \socket_clear_error($this->socket);
            return true;
        }
        if ($n === false || $n === 0) {
            return false;
        }
        $this->seen = \microtime(true);
        $this->unread = $n;
        if ($this->lingering) {
            $this->consume(); // bytes of a refused request: dropped
            return true;
        }
        if ($this->reader->idle()) {
            $this->begun = $this->seen; // a request starts
        }
        $this->reader->feed($data);
        if ($this->reader->idle()) {
            $this->consume();
        }
        return true;
    }

    /** Whether the reader holds bytes peek() left in the kernel. */
    public function hasUnread(): bool
    {
        return $this->unread > 0;
    }

    /** Take from the kernel what peek() fed the reader. */
    public function consume(): void
    {
        while ($this->unread > 0) {
            $gone = '';
            $n = @\socket_recv($this->socket, $gone, $this->unread, \MSG_DONTWAIT);
            if ($n === false || $n === 0) {
                \socket_clear_error($this->socket);
                $this->unread = 0; // the connection failed: the next peek() says so
                return;
            }
            $this->unread -= $n;
        }
    }

    /** Bytes of a next request wait in the kernel (or the client closed): peeked at, not read. */
    public function hasInput(): bool
    {
        $peek = '';
        if (@\socket_recv($this->socket, $peek, 1, \MSG_PEEK | \MSG_DONTWAIT) === false) {
            \socket_clear_error($this->socket);
            return false;
        }
        return true;
    }

    /**
     * Start writing an answer, or the last of a streamed one: what the
     * client takes now (see flush()). The rest waits; keepRest() puts that
     * of a large one in a temporary file.
     */
    public function answer(string $data, bool $closeAfter): ?bool
    {
        $this->answered = true;
        $this->closeAfter = $closeAfter;
        $this->out = $this->out === '' ? $data : $this->out . $data; // (no copy of a whole answer)
        return $this->flush();
    }

    /**
     * Write what the client takes now of the answer: true when all of it is
     * out, false while some waits for the client to read (the socket
     * becomes writable), null if the connection failed.
     */
    public function flush(): ?bool
    {
        for (;;) {
            if ($this->out === '' && $this->spool !== null) {
                $this->out = (string) \fread($this->spool, self::CHUNK);
                if ($this->out === '') {
                    $this->dropSpool();
                }
            }
            if ($this->out === '') {
                return true;
            }
            $n = @\socket_write($this->socket, $this->out);
            if ($n === false) {
                if (\socket_last_error($this->socket) !== \SOCKET_EAGAIN) {
                    return null; // the client went away
                }
                \socket_clear_error($this->socket);
                return false;
            }
            $this->out = (string) \substr($this->out, $n);
            $this->seen = \microtime(true);
        }
    }

    /**
     * Write part of an answer while the script still runs (it flushed):
     * what the client does not take at once waits in memory, and past
     * SPOOL_OVER this waits for the client to read, as a php-fpm child
     * waits when nginx stops reading; the script waits with it. False if
     * the client went away, or took nothing for $timeout seconds.
     */
    public function stream(string $data, int $timeout): bool
    {
        $this->out .= $data;
        for (;;) {
            $done = $this->flush();
            if ($done === null) {
                return false;
            }
            if ($done || \strlen($this->out) <= self::SPOOL_OVER) {
                return true;
            }
            $read = $except = null;
            $write = [$this->socket];
            if (@\socket_select($read, $write, $except, $timeout) === 0) {
                return false; // the client stopped reading
            }
        }
    }

    /** Whether the connection is to close now that its answer is out. */
    public function closesAfter(): bool
    {
        return $this->closeAfter;
    }

    /** Write all of $data (a short answer), waiting while the client's window is full, at most $timeout seconds without progress; false if it failed. */
    public function writeAll(string $data, int $timeout): bool
    {
        while ($data !== '') {
            $n = @\socket_write($this->socket, $data);
            if ($n === false) {
                if (\socket_last_error($this->socket) !== \SOCKET_EAGAIN) {
                    return false;
                }
                \socket_clear_error($this->socket);
                $read = $except = null;
                $write = [$this->socket];
                if (@\socket_select($read, $write, $except, $timeout) === 0) {
                    return false; // the client stopped reading
                }
                continue;
            }
            $data = (string) \substr($data, $n);
        }
        return true;
    }

    /** Refuse the rest: the answer is written, no more comes from us, what the client sends is dropped (see ConnectionSource::refuse()). */
    public function linger(): void
    {
        @\socket_shutdown($this->socket, 1);
        $this->lingering = true;
        $this->seen = \microtime(true);
    }

    /** End the connection for the client too (the front's copy would keep it open), or only our copy of it (it goes on elsewhere). */
    public function close(bool $forTheClient): void
    {
        if ($forTheClient) {
            @\socket_shutdown($this->socket, 2);
        }
        \socket_close($this->socket);
        $this->dropSpool();
    }

    /** The rest of an answer the client did not take at once: past SPOOL_OVER, in a temporary file (nginx's proxy temp files). */
    public function keepRest(): void
    {
        if ($this->spool !== null || \strlen($this->out) <= self::SPOOL_OVER) {
            return;
        }
        // Unlinked at once (not php://temp, whose file PHP removes only when
        // it closes it): a worker killed meanwhile (--exec-timeout, the OOM
        // killer) leaves nothing in the temporary directory.
        $spool = self::unlinkedFile('folk-spool-');
        if ($spool === null || \fwrite($spool, $this->out) === false || !\rewind($spool)) {
            return; // kept in memory then
        }
        $this->out = '';
        $this->spool = $spool;
    }

    /**
     * What is still to write of the answer, in a temporary file of its own
     * (already unlinked, so nothing is left behind), read from its start:
     * for the front to write (Answers::handOver()). The answer here is left
     * as it was. Null if the file could not be made.
     *
     * @return resource|null
     */
    public function restInFile()
    {
        $file = self::unlinkedFile('folk-rest-');
        if ($file === null) {
            return null;
        }
        $ok = \fwrite($file, $this->out) === \strlen($this->out);
        if ($ok && $this->spool !== null) {
            $at = (int) \ftell($this->spool);
            $ok = \stream_copy_to_stream($this->spool, $file) !== false;
            \fseek($this->spool, $at);
        }
        if (!$ok || !\rewind($file)) {
            \fclose($file);
            return null;
        }
        return $file;
    }

    /**
     * A new temporary file, open for reading and writing, already unlinked:
     * it goes when its last descriptor closes, however the process ends.
     *
     * @return resource|null
     */
    private static function unlinkedFile(string $prefix)
    {
        $path = \tempnam(\sys_get_temp_dir(), $prefix);
        $file = $path === false ? false : @\fopen($path, 'w+b');
        if ($path !== false) {
            @\unlink($path);
        }
        return $file === false ? null : $file;
    }

    private function dropSpool(): void
    {
        if ($this->spool !== null) {
            \fclose($this->spool);
            $this->spool = null;
        }
    }
}
