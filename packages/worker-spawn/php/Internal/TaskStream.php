<?php
/**
 * @internal Part of the folk PHP worker library; loaded by ../Worker.php,
 * which is the file to require. Not an API: it may change in any release.
 */

declare(strict_types=1);

namespace Folk\Internal;

use Folk\Task;
use Folk\WorkerConnection;
use Folk\WorkerException;

/**
 * @internal The task socket (fd 3): the frame codec of PROTOCOL.md and
 * the socket's reads and writes, all but the usual case.
 *
 * The usual case stays in WorkerConnection, in as few PHP operations as it
 * takes and with no call into this class: receive() reads with one fread
 * and takes a whole REQUEST from its buffer with one unpack and one substr;
 * respond() writes a RESPONSE with one fwrite. Everything else comes here:
 * a read that returned nothing (readFailed()), any other frame or one not
 * all buffered (readFrame()), ERROR frames (fail()), the rest of a partial
 * write (writeAll()).
 */
final class TaskStream
{
    /** Large payloads are read in slices so a discard never allocates the whole thing. */
    private const READ_SLICE = 1048576;

    /** @var resource $task as a stream, which WorkerConnection reads and writes */
    public readonly mixed $stream;

    public function __construct(
        /** The task socket, which poll() reads and an event loop waits on (WorkerConnection::pollSocket()). */
        public readonly \Socket $task,
        private int $maxFrame,
        private ControlChannel $control,
    ) {
        // The same socket as a stream, unbuffered both ways (so reading it
        // and $task can be mixed) and without default_socket_timeout: a
        // worker may wait for its next task as long as it takes.
        $stream = \socket_export_stream($task);
        if ($stream === false) {
            WorkerConnection::die('the task socket cannot be used as a stream');
        }
        \stream_set_read_buffer($stream, 0);
        \stream_set_write_buffer($stream, 0);
        \stream_set_timeout($stream, -1);
        $this->stream = $stream;
    }

    /**
     * What an fread of the task socket that returned $result (false or '')
     * means: true when a signal interrupted it (read again), false at EOF
     * or a reset (the worker is stopping); any other failure throws.
     */
    public function readFailed(string|false $result): bool
    {
        if ($result === '') {
            $this->control->stopping = true;
            return false;
        }
        // fread() says false and nothing else (PHP 8.2 raises no warning on
        // a socket stream), so ask the socket itself, without taking data.
        // A reset (the supervisor closed its end with our answer unread) is
        // reported by one read only: the peek then sees the end of the stream.
        $peeked = @\socket_recv($this->task, $byte, 1, \MSG_PEEK | \MSG_DONTWAIT);
        if ($peeked === 0) {
            $this->control->stopping = true;
            return false;
        }
        if ($peeked !== false) {
            return true; // data after all (an interrupted read): read again
        }
        $errno = \socket_last_error($this->task);
        \socket_clear_error($this->task);
        return $errno === \SOCKET_EAGAIN || $this->recvFailed($errno);
    }

    /**
     * What the task socket holds now, without waiting (WorkerConnection::poll()):
     * the bytes, '' at EOF or a reset (the worker is stopping), null when
     * nothing is waiting. The socket stays blocking (MSG_DONTWAIT), for
     * receive() and respond().
     */
    public function readNow(): ?string
    {
        while (true) {
            $data = '';
            $n = @\socket_recv($this->task, $data, 65536, \MSG_DONTWAIT);
            if ($n === 0) {
                $this->control->stopping = true;
                return '';
            }
            if ($n !== false) {
                return (string) $data;
            }
            $errno = \socket_last_error($this->task);
            \socket_clear_error($this->task);
            if ($errno === \SOCKET_EAGAIN) {
                return null;
            }
            if (!$this->recvFailed($errno)) {
                return '';
            }
        }
    }

    /** A read of the task socket failed with $errno: true to read again (EINTR), false at a reset (stopping); throws for the rest. */
    private function recvFailed(int $errno): bool
    {
        if ($errno === \SOCKET_EINTR) {
            return true;
        }
        if ($errno === \SOCKET_ECONNRESET || $errno === \SOCKET_EPIPE) {
            $this->control->stopping = true;
            return false;
        }
        throw new WorkerException('reading the task socket failed: ' . \socket_strerror($errno));
    }

    /**
     * The frame whose header starts $buffer, read whole (from the socket
     * for what $buffer lacks): the request, or null for a frame answered
     * here (FRAME_TOO_LARGE, BAD_FRAME) or a WAKE, the bytes of $buffer
     * after the frame, and whether it was a WAKE (control messages wait).
     *
     * @return array{0: ?Task, 1: string, 2: bool}
     */
    public function readFrame(string $buffer): array
    {
        $h = \unpack('Cversion/Ctype/nflags/Nid/Nlength', $buffer);
        if ($h['version'] !== WorkerConnection::PROTOCOL) {
            // The stream cannot be resynchronised (PROTOCOL.md): tell the
            // supervisor (a fatal report), say it on stderr, and leave with
            // EX_PROTOCOL, as the Node library does.
            $message = \sprintf('task frame with protocol version %d; this library speaks %d', $h['version'], WorkerConnection::PROTOCOL);
            $this->control->reportError($message, true);
            \fwrite(\STDERR, "folk worker: $message\n");
            exit(WorkerConnection::EXIT_PROTOCOL);
        }
        $rest = (string) \substr($buffer, WorkerConnection::HEADER_SIZE);
        $id = $h['id'];
        $length = $h['length'];
        if ($length > $this->maxFrame) {
            $rest = $this->discard($rest, $length);
            $this->fail($id, \sprintf(
                'request of %d bytes exceeds the maximum frame size of %d bytes (FOLK_MAX_FRAME)',
                $length,
                $this->maxFrame,
            ), 'FRAME_TOO_LARGE');
            return [null, $rest, false];
        }
        [$payload, $rest] = $this->readExact($rest, $length);
        if ($h['type'] === WorkerConnection::WAKE) {
            return [null, $rest, true];
        }
        if ($h['type'] !== WorkerConnection::REQUEST) {
            $this->fail($id, \sprintf('a worker accepts only REQUEST frames (type 1), got type %d', $h['type']), 'BAD_FRAME');
            return [null, $rest, false];
        }
        return [new Task($id, $payload, ($h['flags'] & WorkerConnection::FLAG_PARTS) !== 0), $rest, false];
    }

    /** An ERROR frame carrying {code, message}. */
    public function fail(int $id, string $message, string $code): void
    {
        $body = $this->errorBody($code, $message);
        $this->writeAll(\pack('CCnNN', WorkerConnection::PROTOCOL, WorkerConnection::ERROR, 0, $id, \strlen($body)) . $body);
    }

    /**
     * $length bytes: those $have starts with, then from the socket. Returns
     * them and what is left of $have.
     *
     * @return array{0: string, 1: string}
     */
    private function readExact(string $have, int $length): array
    {
        if (\strlen($have) >= $length) {
            return [\substr($have, 0, $length), (string) \substr($have, $length)];
        }
        // Collect slices and join once: appending megabytes a chunk at a time is quadratic.
        $parts = [$have];
        $got = \strlen($have);
        while ($got < $length) {
            $data = '';
            $n = @\socket_recv($this->task, $data, \min(self::READ_SLICE, $length - $got), \MSG_WAITALL);
            if ($n === false && \socket_last_error($this->task) === \SOCKET_EINTR) {
                continue;
            }
            if ($n === false || $n === 0 || $data === null) {
                $this->control->stopping = true;
                throw new WorkerException('the task socket closed in the middle of a frame');
            }
            $parts[] = $data;
            $got += $n;
        }
        return [\implode('', $parts), ''];
    }

    /** Skip $length bytes: those $have starts with, then from the socket. Returns what is left of $have. */
    private function discard(string $have, int $length): string
    {
        $take = \min($length, \strlen($have));
        $rest = (string) \substr($have, $take);
        $length -= $take;
        while ($length > 0) {
            $data = '';
            $n = @\socket_recv($this->task, $data, \min(self::READ_SLICE, $length), 0);
            if ($n === false && \socket_last_error($this->task) === \SOCKET_EINTR) {
                continue;
            }
            if ($n === false || $n === 0) {
                $this->control->stopping = true;
                throw new WorkerException('the task socket closed in the middle of a frame');
            }
            $length -= $n;
        }
        return $rest;
    }

    /** Write $bytes from $offset on. */
    public function writeAll(string $bytes, int $offset = 0): void
    {
        $total = \strlen($bytes);
        while ($offset < $total) {
            $chunk = $offset === 0 ? $bytes : \substr($bytes, $offset);
            $n = @\socket_write($this->task, $chunk, $total - $offset);
            if ($n === false) {
                $err = \socket_last_error($this->task);
                if ($err === \SOCKET_EINTR || $err === \SOCKET_EAGAIN) {
                    continue;
                }
                $this->control->stopping = true;
                throw new WorkerException('writing the task socket failed: ' . \socket_strerror($err));
            }
            $offset += $n;
        }
    }

    /**
     * The JSON of an ERROR frame, within FOLK_MAX_FRAME: a message too long
     * for it is cut (halved until it fits; JSON may escape a byte into six),
     * never the JSON itself, so the supervisor still reads the code.
     */
    private function errorBody(string $code, string $message): string
    {
        $flags = \JSON_INVALID_UTF8_SUBSTITUTE | \JSON_UNESCAPED_SLASHES;
        $body = (string) \json_encode(['code' => $code, 'message' => $message], $flags);
        while (\strlen($body) > $this->maxFrame && $message !== '') {
            $message = \substr($message, 0, \intdiv(\strlen($message), 2));
            $body = (string) \json_encode(['code' => $code, 'message' => $message . '... (cut to fit the maximum frame size)'], $flags);
        }
        return $body;
    }
}
