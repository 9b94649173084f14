<?php
/**
 * The worker's (the child's) side of the folk worker protocol, for PHP (see
 * PROTOCOL.md in this package): Folk\WorkerConnection, the worker's
 * connection to its supervisor, as `serve()` of @folk/worker-spawn/worker
 * is for Node.
 *
 * PHP 8.1+, ext-sockets, no Composer dependencies. A worker is a loop:
 *
 *     require '/path/to/@folk/worker-spawn/php/Worker.php';
 *     $worker = Folk\WorkerConnection::fromEnv();
 *     while ($task = $worker->receive()) {
 *         $worker->respond($task, strtoupper($task->payload));
 *     }
 *
 * or, with errors turned into ERROR frames for you:
 *
 *     Folk\WorkerConnection::fromEnv()->serve(fn (string $payload) => strtoupper($payload));
 *
 * Folk\Worker, its former name, still names the same class (deprecated).
 */

declare(strict_types=1);

namespace Folk;

// Already loaded: a worker forked by a prototype (which loaded this file)
// runs a script that requires it again. (Not class_exists(): the classes
// below are bound when the file is compiled, before this line runs.)
if (\defined('Folk\\WORKER_LIBRARY_LOADED')) {
    return;
}
\define('Folk\\WORKER_LIBRARY_LOADED', true);

/** One request read from the task socket. */
final class Task
{
    public function __construct(
        public readonly int $id,
        public readonly string $payload,
    ) {
    }
}

/** Raised for protocol violations the worker cannot recover from. */
final class WorkerException extends \RuntimeException
{
}

/**
 * The worker's connection to its supervisor: tasks in on fd 3, answers out,
 * control messages (and fds) on fd 4.
 */
final class WorkerConnection
{
    public const PROTOCOL = 1;
    public const REQUEST = 1;
    public const RESPONSE = 2;
    public const ERROR = 3;
    /** Supervisor to worker: "a control message is waiting on fd 4". */
    public const WAKE = 4;
    public const HEADER_SIZE = 12;
    public const DEFAULT_MAX_FRAME = 16777216;
    /** EX_CONFIG from sysexits.h: started without the fds/environment of the pattern. */
    public const EXIT_CONFIG = 78;
    /** EX_PROTOCOL from sysexits.h: the supervisor sent something that is not the protocol. */
    public const EXIT_PROTOCOL = 76;

    private const CONTROL_MAX = 65536;
    private const MAX_FDS_PER_MESSAGE = 64;
    /** Longest error report sent whole; see reportError(). */
    private const REPORT_MAX = 8192;
    /** Large payloads are read in slices so a discard never allocates the whole thing. */
    private const READ_SLICE = 1048576;

    /** @var resource $task as a stream, for fill() and respond() */
    private $taskStream;
    /** Bytes read from the task socket but not yet parsed into a frame. */
    private string $buffer = '';
    private bool $stopping = false;
    private bool $readySent = false;
    /** @var list<callable(array, string, mixed): void> */
    private array $fdHandlers = [];
    /** @var list<array{tag: string, fds: array, meta: mixed}> fds received with no handler registered */
    private array $pendingFds = [];

    /** @var array{0: \Socket, 1: \Socket}|null set in a worker forked by a prototype (see PrototypeServer) */
    private static ?array $forked = null;

    private function __construct(
        private \Socket $task,
        private \Socket $control,
        public readonly int $maxFrame,
        public readonly string $runtime,
    ) {
        // The same socket as a stream, unbuffered both ways (so reading it
        // and $task can be mixed) and without default_socket_timeout: a
        // worker may wait for its next task as long as it takes.
        $stream = \socket_export_stream($task);
        if ($stream === false) {
            self::die('the task socket cannot be used as a stream');
        }
        \stream_set_read_buffer($stream, 0);
        \stream_set_write_buffer($stream, 0);
        \stream_set_timeout($stream, -1);
        $this->taskStream = $stream;
    }

    /**
     * Open the task and control sockets named by FOLK_TASK_FD / FOLK_CONTROL_FD.
     * Exits with status 78 when they are missing: the script was not started
     * by a folk supervisor, and there is nothing useful it can do.
     */
    public static function fromEnv(): self
    {
        if (!\extension_loaded('sockets')) {
            self::die('the PHP sockets extension (ext-sockets) is required; install php-cli with it enabled');
        }
        $maxFrame = self::envInt('FOLK_MAX_FRAME') ?? self::DEFAULT_MAX_FRAME;
        $runtime = \getenv('FOLK_RUNTIME');
        $runtime = $runtime === false ? 'pipe' : $runtime;
        if (self::$forked !== null) {
            // Forked by a prototype: the sockets came over its control socket.
            [$task, $control] = self::$forked;
            self::$forked = null;
            return new self($task, $control, $maxFrame, $runtime);
        }
        $taskFd = self::envInt('FOLK_TASK_FD');
        $controlFd = self::envInt('FOLK_CONTROL_FD');
        if ($taskFd === null || $controlFd === null) {
            self::die('FOLK_TASK_FD and FOLK_CONTROL_FD are not set: start this script with @folk/worker-spawn');
        }
        return new self(self::importFd($taskFd), self::importFd($controlFd), $maxFrame, $runtime);
    }

    /**
     * @internal For PrototypeServer: the task and control sockets a forked
     * worker received, which the next fromEnv() uses instead of fds 3 and 4.
     */
    public static function adoptForked(\Socket $task, \Socket $control): void
    {
        self::$forked = [$task, $control];
    }

    /**
     * Tell the supervisor this worker is ready for tasks. receive() calls it
     * on first use; call it yourself after slow bootstrapping is done if you
     * want to be explicit.
     */
    public function ready(): void
    {
        if ($this->readySent) {
            return;
        }
        $this->readySent = true;
        $this->sendControl([
            'type' => 'ready',
            'pid' => \getmypid(),
            'protocol' => self::PROTOCOL,
            'runtime' => $this->runtime,
            'lang' => 'php',
            'version' => \PHP_VERSION,
        ]);
    }

    /**
     * Wait for the next task. Returns null when the worker should exit: the
     * supervisor asked it to stop, or went away (EOF on the task socket).
     *
     * Waiting is one blocking read of the task socket: the supervisor follows
     * every control message with a WAKE frame there, so control messages
     * (stop, fds) are read as soon as they arrive without polling two sockets
     * for every task.
     */
    public function receive(): ?Task
    {
        if (!$this->readySent) {
            $this->ready();
        }
        while (true) {
            $buffered = \strlen($this->buffer);
            if ($buffered >= self::HEADER_SIZE) {
                // The usual case, in as few PHP operations as it takes: a
                // whole REQUEST (version 1, type 1) within maxFrame is already
                // buffered. Anything else goes the long way (readFrame).
                $h = \unpack('Nhead/Nid/Nlength', $this->buffer);
                $end = self::HEADER_SIZE + $h['length'];
                if (($h['head'] >> 16) === 0x0101 && $h['length'] <= $this->maxFrame && $buffered >= $end) {
                    if ($buffered === $end) {
                        $payload = (string) \substr($this->buffer, self::HEADER_SIZE);
                        $this->buffer = '';
                    } else {
                        $payload = \substr($this->buffer, self::HEADER_SIZE, $h['length']);
                        $this->buffer = \substr($this->buffer, $end);
                    }
                    return new Task($h['id'], $payload);
                }
                $task = $this->readFrame();
                if ($task !== null) {
                    return $task;
                }
                continue; // a WAKE, or an oversize or unexpected frame that was answered
            }
            if ($this->stopping) {
                return null;
            }
            if (!$this->fill()) {
                return null; // EOF on the task socket
            }
        }
    }

    /** Answer $task with $payload (any bytes). */
    public function respond(Task|int $task, string $payload): void
    {
        $id = $task instanceof Task ? $task->id : $task;
        if (\strlen($payload) > $this->maxFrame) {
            $this->fail($id, \sprintf(
                'response of %d bytes exceeds the maximum frame size of %d bytes (FOLK_MAX_FRAME)',
                \strlen($payload),
                $this->maxFrame,
            ), 'FRAME_TOO_LARGE');
            return;
        }
        $frame = \pack('CCnNN', self::PROTOCOL, self::RESPONSE, 0, $id, \strlen($payload)) . $payload;
        // One send(2) for the whole frame as a rule; writeAll for the rest
        // of a partial one (or all of a failed one: it retries, or says why).
        $n = @\fwrite($this->taskStream, $frame);
        if ($n !== \strlen($frame)) {
            $this->writeAll($frame, $n === false ? 0 : $n);
        }
    }

    /** Answer $task with an error the supervisor rejects the task with. */
    public function fail(Task|int $task, string $message, string $code = 'HANDLER_ERROR'): void
    {
        $id = $task instanceof Task ? $task->id : $task;
        $this->writeFrame(self::ERROR, $id, $this->errorBody($code, $message));
    }

    /**
     * The whole worker loop: call $handler(string $payload, Task $task) for
     * every task and send back what it returns. A Throwable becomes an ERROR
     * frame and the loop goes on. Returns the exit status (0).
     */
    public function serve(callable $handler): int
    {
        while ($task = $this->receive()) {
            try {
                $result = $handler($task->payload, $task);
                $this->respond($task, (string) $result);
            } catch (\Throwable $e) {
                $this->fail($task, \get_class($e) . ': ' . $e->getMessage());
            }
        }
        return 0;
    }

    /**
     * Register $handler(array $fds, string $tag, mixed $meta) for descriptors
     * the supervisor sends over the control socket. Sockets arrive as \Socket
     * objects, other descriptors as stream resources. Descriptors that arrived
     * before any handler was registered are delivered now.
     *
     * A socket created by Node is non-blocking, and that flag belongs to the
     * open file both processes share: wait with socket_select() before
     * socket_accept(), or socket_set_block() it once the supervisor has
     * closed its own copy.
     */
    public function onFds(callable $handler): void
    {
        $this->fdHandlers[] = $handler;
        $pending = $this->pendingFds;
        $this->pendingFds = [];
        foreach ($pending as $entry) {
            $handler($entry['fds'], $entry['tag'], $entry['meta']);
        }
    }

    /**
     * Block until descriptors tagged $tag arrive (handling other control
     * messages meanwhile) and return them; null if the supervisor stops or
     * goes away first.
     */
    public function waitFds(string $tag): ?array
    {
        $this->ready();
        while (true) {
            foreach ($this->pendingFds as $i => $entry) {
                if ($entry['tag'] === $tag) {
                    \array_splice($this->pendingFds, $i, 1);
                    return $entry['fds'];
                }
            }
            if ($this->stopping) {
                return null;
            }
            $this->readControl();
        }
    }

    /** Send an error report to the supervisor (it surfaces it as an event). */
    public function reportError(string $message, bool $fatal = false): void
    {
        // A control datagram is at most 64 KiB (PROTOCOL.md) and the supervisor
        // drops the control socket on a larger one. 8 KiB of message stays
        // under that even if JSON escapes every byte (6 bytes each).
        if (\strlen($message) > self::REPORT_MAX) {
            $message = \substr($message, 0, self::REPORT_MAX) . \sprintf('... (%d bytes cut)', \strlen($message) - self::REPORT_MAX);
        }
        $this->sendControl(['type' => 'error', 'message' => $message, 'fatal' => $fatal]);
    }

    /** True once the supervisor asked this worker to stop or went away. */
    public function isStopping(): bool
    {
        return $this->stopping;
    }

    // ---- internals -------------------------------------------------------

    /** Parse one frame from the buffer (reading the rest of it). Null when it was answered here. */
    private function readFrame(): ?Task
    {
        $h = \unpack('Cversion/Ctype/nflags/Nid/Nlength', $this->buffer);
        if ($h['version'] !== self::PROTOCOL) {
            // The stream cannot be resynchronised (PROTOCOL.md): tell the
            // supervisor (a fatal report), say it on stderr, and leave with
            // EX_PROTOCOL, as the Node library does.
            $message = \sprintf('task frame with protocol version %d; this library speaks %d', $h['version'], self::PROTOCOL);
            $this->reportError($message, true);
            \fwrite(\STDERR, "folk worker: $message\n");
            exit(self::EXIT_PROTOCOL);
        }
        $this->buffer = (string) \substr($this->buffer, self::HEADER_SIZE);
        $id = $h['id'];
        $length = $h['length'];
        if ($length > $this->maxFrame) {
            $this->discard($length);
            $this->fail($id, \sprintf(
                'request of %d bytes exceeds the maximum frame size of %d bytes (FOLK_MAX_FRAME)',
                $length,
                $this->maxFrame,
            ), 'FRAME_TOO_LARGE');
            return null;
        }
        $payload = $this->readExact($length);
        if ($h['type'] === self::WAKE) {
            $this->drainControl();
            return null;
        }
        if ($h['type'] !== self::REQUEST) {
            $this->fail($id, \sprintf('a worker accepts only REQUEST frames (type 1), got type %d', $h['type']), 'BAD_FRAME');
            return null;
        }
        return new Task($id, $payload);
    }

    /** Read more bytes from the task socket into the buffer. False on EOF. */
    private function fill(): bool
    {
        // fread on the stream, not socket_recv: it waits in poll(2) and then
        // reads, which costs a syscall more and yet makes the round trip
        // quicker than a recv(2) that blocks (bench/worker-spawn measures it).
        $data = @\fread($this->taskStream, 65536);
        if ($data === false) {
            // A stream says its errno only in the warning it raised.
            $why = \error_get_last()['message'] ?? 'unknown error';
            if (\str_contains($why, 'errno=' . \SOCKET_EINTR . ' ')) {
                return true;
            }
            if (\str_contains($why, 'errno=' . \SOCKET_ECONNRESET . ' ')) {
                $this->stopping = true;
                return false;
            }
            throw new WorkerException('reading the task socket failed: ' . $why);
        }
        if ($data === '') {
            $this->stopping = true;
            return false;
        }
        $this->buffer .= $data;
        return true;
    }

    private function readExact(int $length): string
    {
        if (\strlen($this->buffer) >= $length) {
            $out = \substr($this->buffer, 0, $length);
            $this->buffer = (string) \substr($this->buffer, $length);
            return $out;
        }
        // Collect slices and join once: appending megabytes a chunk at a time is quadratic.
        $parts = [$this->buffer];
        $have = \strlen($this->buffer);
        $this->buffer = '';
        while ($have < $length) {
            $data = '';
            $n = @\socket_recv($this->task, $data, \min(self::READ_SLICE, $length - $have), \MSG_WAITALL);
            if ($n === false && \socket_last_error($this->task) === \SOCKET_EINTR) {
                continue;
            }
            if ($n === false || $n === 0 || $data === null) {
                $this->stopping = true;
                throw new WorkerException('the task socket closed in the middle of a frame');
            }
            $parts[] = $data;
            $have += $n;
        }
        return \implode('', $parts);
    }

    private function discard(int $length): void
    {
        $take = \min($length, \strlen($this->buffer));
        $this->buffer = (string) \substr($this->buffer, $take);
        $length -= $take;
        while ($length > 0) {
            $data = '';
            $n = @\socket_recv($this->task, $data, \min(self::READ_SLICE, $length), 0);
            if ($n === false && \socket_last_error($this->task) === \SOCKET_EINTR) {
                continue;
            }
            if ($n === false || $n === 0) {
                $this->stopping = true;
                throw new WorkerException('the task socket closed in the middle of a frame');
            }
            $length -= $n;
        }
    }

    private function writeFrame(int $type, int $id, string $payload): void
    {
        $this->writeAll(\pack('CCnNN', self::PROTOCOL, $type, 0, $id, \strlen($payload)) . $payload);
    }

    /** Write $bytes from $offset on. */
    private function writeAll(string $bytes, int $offset = 0): void
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
                $this->stopping = true;
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

    /** Handle every control message already waiting, without blocking. */
    private function drainControl(): void
    {
        while (!$this->stopping && $this->readControl(\MSG_DONTWAIT)) {
        }
    }

    /** Read and handle one control message; false when none was waiting (or the socket is done). */
    private function readControl(int $flags = 0): bool
    {
        $msg = [
            'name' => [],
            'buffer_size' => self::CONTROL_MAX,
            'controllen' => \socket_cmsg_space(\SOL_SOCKET, \SCM_RIGHTS, self::MAX_FDS_PER_MESSAGE),
        ];
        // MSG_CMSG_CLOEXEC: descriptors handed to us must not leak into programs this worker runs.
        $n = @\socket_recvmsg($this->control, $msg, \MSG_CMSG_CLOEXEC | $flags);
        if ($n === false) {
            // socket_recvmsg records its errno only in the global last error, not the socket's.
            $err = \socket_last_error();
            \socket_clear_error();
            if ($err === \SOCKET_EINTR) {
                return true;
            }
            if ($err === \SOCKET_EAGAIN) {
                return false;
            }
            $this->stopping = true; // the supervisor is unreachable; finish up
            return false;
        }
        $body = $msg['iov'][0] ?? '';
        if ($n === 0 && $body === '' && empty($msg['control'])) {
            $this->stopping = true; // EOF: the supervisor closed the control socket or died
            return false;
        }
        $fds = [];
        foreach ($msg['control'] ?? [] as $cmsg) {
            if ($cmsg['level'] === \SOL_SOCKET && $cmsg['type'] === \SCM_RIGHTS) {
                foreach ($cmsg['data'] as $fd) {
                    $fds[] = $fd;
                }
            }
        }
        $message = \json_decode($body, true);
        if (!\is_array($message) || !isset($message['type'])) {
            $this->reportError('unreadable control message: ' . \substr($body, 0, 200));
            return true;
        }
        switch ($message['type']) {
            case 'stop':
                $this->stopping = true;
                break;
            case 'fds':
                if (($msg['flags'] & \MSG_CTRUNC) !== 0) {
                    $this->reportError('control message carried more descriptors than fit; some were dropped');
                }
                $tag = (string) ($message['tag'] ?? '');
                $meta = $message['meta'] ?? null;
                if ($this->fdHandlers === []) {
                    $this->pendingFds[] = ['tag' => $tag, 'fds' => $fds, 'meta' => $meta];
                } else {
                    foreach ($this->fdHandlers as $handler) {
                        $handler($fds, $tag, $meta);
                    }
                }
                break;
            default:
                break; // unknown types are ignored so the protocol can grow
        }
        return true;
    }

    private function sendControl(array $message): void
    {
        $body = \json_encode($message, \JSON_INVALID_UTF8_SUBSTITUTE | \JSON_UNESCAPED_SLASHES);
        if (@\socket_send($this->control, (string) $body, \strlen((string) $body), 0) === false) {
            // EPIPE: the supervisor is gone. Nothing to report to; wind down.
            $this->stopping = true;
        }
    }

    /** @internal The socket at $fd (a duplicate of it), or exit 78. */
    public static function importFd(int $fd): \Socket
    {
        $stream = @\fopen('php://fd/' . $fd, 'r+');
        $socket = $stream === false ? false : @\socket_import_stream($stream);
        if ($socket === false || $socket === null) {
            self::die(\sprintf('fd %d is not an open socket: start this script with @folk/worker-spawn', $fd));
        }
        return $socket;
    }

    /** @internal */
    public static function envInt(string $name): ?int
    {
        $value = \getenv($name);
        if ($value === false || !\ctype_digit($value)) {
            return null;
        }
        return (int) $value;
    }

    /** @internal */
    public static function die(string $message): never
    {
        \fwrite(\STDERR, "folk worker: $message\n");
        exit(self::EXIT_CONFIG);
    }
}

/**
 * @deprecated Folk\WorkerConnection's former name, kept so that existing
 * workers go on working: "Worker" read as the supervisor's end (and as
 * Node's worker_threads), where this is the worker's.
 */
\class_alias(WorkerConnection::class, Worker::class);
