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
 *
 * This file is the one to require; it loads the rest of the library from
 * beside it (Internal/: the task socket's framing, the control socket), so
 * copy the whole php/ folder, not this file alone.
 */

declare(strict_types=1);

namespace Folk;

use Folk\Internal\ControlChannel;
use Folk\Internal\TaskStream;

// Already loaded: a worker forked by a prototype (which loaded this file)
// runs a script that requires it again. (Not class_exists(): the classes
// below are bound when the file is compiled, before this line runs.)
if (\defined('Folk\\WORKER_LIBRARY_LOADED')) {
    return;
}
\define('Folk\\WORKER_LIBRARY_LOADED', true);

require_once __DIR__ . '/Internal/ControlChannel.php';
require_once __DIR__ . '/Internal/TaskStream.php';

/** One request read from the task socket. */
final class Task
{
    public function __construct(
        public readonly int $id,
        public readonly string $payload,
        /** The supervisor takes this answer in pieces (WorkerConnection::part()); if not, they are joined. */
        public readonly bool $takesParts = false,
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
 *
 * The usual request and response are read and written here, in as few PHP
 * operations as they take; everything else about fd 3 is
 * Internal\TaskStream's, fd 4 is Internal\ControlChannel's.
 */
final class WorkerConnection
{
    public const PROTOCOL = 1;
    public const REQUEST = 1;
    public const RESPONSE = 2;
    public const ERROR = 3;
    /** Supervisor to worker: "a control message is waiting on fd 4". */
    public const WAKE = 4;
    /** Worker to supervisor: the next piece of an answer (part()). */
    public const PART = 5;
    /** REQUEST flag: the supervisor takes PART frames for it. */
    public const FLAG_PARTS = 1;
    public const HEADER_SIZE = 12;
    public const DEFAULT_MAX_FRAME = 16777216;
    /** EX_CONFIG from sysexits.h: started without the fds/environment of the pattern. */
    public const EXIT_CONFIG = 78;
    /** EX_PROTOCOL from sysexits.h: the supervisor sent something that is not the protocol. */
    public const EXIT_PROTOCOL = 76;
    /** Control message types the library sends and handles itself: send() refuses them, onMessage() never sees them. */
    public const RESERVED_TYPES = ['ready', 'error', 'stop', 'fds'];
    /** The largest control message, as JSON (PROTOCOL.md). */
    public const CONTROL_MAX = 65536;
    /** The most descriptors one control message may carry (the kernel's SCM_MAX_FD). */
    public const MAX_FDS = 253;

    private TaskStream $tasks;
    private ControlChannel $control;
    /** @var resource the task socket as a stream (TaskStream's), for receive() and respond() */
    private $taskStream;
    /** Bytes read from the task socket but not yet parsed into a frame. */
    private string $buffer = '';
    private bool $readySent = false;
    /** @var array<int, string> pieces of answers part() holds for the end, by request id (their supervisor takes no parts) */
    private array $held = [];

    /** @var array{0: \Socket, 1: \Socket}|null set in a worker forked by a prototype (see PrototypeServer) */
    private static ?array $forked = null;

    private function __construct(
        \Socket $task,
        \Socket $control,
        public readonly int $maxFrame,
        public readonly string $runtime,
    ) {
        $this->control = new ControlChannel($control);
        $this->tasks = new TaskStream($task, $maxFrame, $this->control);
        $this->taskStream = $this->tasks->stream;
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
        $this->control->send([
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
        return $this->next(true);
    }

    /**
     * For a worker that runs its own event loop: the socket to watch for
     * reading (socket_select()) besides its own. It is readable whenever the
     * supervisor has sent something: a task, or the WAKE frame that follows
     * every control message. Then call poll(), until it returns null.
     */
    public function pollSocket(): \Socket
    {
        return $this->tasks->task;
    }

    /**
     * receive() that never waits: read what the task socket holds now,
     * handle the control messages it announces (descriptors go to the
     * onFds() handlers, messages of your own types to the onMessage() ones,
     * a stop makes isStopping() true), and return the next task if a whole
     * one has arrived, else null. Call it until it returns null before you
     * wait on pollSocket() again: what it has read already, the socket no
     * longer shows. May be mixed with receive(). (A frame the supervisor
     * announces as longer than FOLK_MAX_FRAME, which it never sends, is
     * skipped as receive() skips it: by waiting for all its bytes.)
     */
    public function poll(): ?Task
    {
        return $this->next(false);
    }

    /** receive() ($wait) and poll(): the next task, or null (stopping; without $wait, also: none has come whole yet). */
    private function next(bool $wait): ?Task
    {
        if (!$this->readySent) {
            $this->ready();
        }
        while (true) {
            if (\strlen($this->buffer) >= self::HEADER_SIZE && ($task = $this->takeFrames($wait)) !== null) {
                return $task;
            }
            if (!$wait) {
                $data = $this->tasks->readNow();
                if ($data === null || $data === '') {
                    return null; // nothing more now, or the supervisor is gone (isStopping())
                }
                $this->buffer .= $data;
                continue;
            }
            if ($this->control->stopping) {
                return null;
            }
            // fread on the stream, not socket_recv: it waits in poll(2) and then
            // reads, which costs a syscall more and yet makes the round trip
            // quicker than a recv(2) that blocks (bench/worker-spawn measures it).
            $data = @\fread($this->taskStream, 65536);
            if ($data === false || $data === '') {
                if ($this->tasks->readFailed($data)) {
                    continue; // a signal interrupted it
                }
                return null; // EOF on the task socket
            }
            $this->buffer .= $data;
        }
    }

    /**
     * The frames at the start of the buffer, up to the first task: WAKE
     * frames handle the control messages waiting, frames a worker does not
     * accept are answered (TaskStream::readFrame). Returns the task, or null
     * when the buffer holds no whole frame any more. With $wait, the rest of
     * a frame whose header is buffered is read from the socket, waiting for
     * it (receive()); without, it is left for later (poll()).
     */
    private function takeFrames(bool $wait): ?Task
    {
        while (($buffered = \strlen($this->buffer)) >= self::HEADER_SIZE) {
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
                return new Task($h['id'], $payload, ($h['head'] & self::FLAG_PARTS) !== 0);
            }
            if (!$wait && $buffered < $end && $h['length'] <= $this->maxFrame) {
                return null; // the rest of this frame is still on its way
            }
            [$task, $this->buffer, $wake] = $this->tasks->readFrame($this->buffer);
            if ($task !== null) {
                return $task;
            }
            if ($wake) {
                $this->control->drain();
            }
            // a WAKE, or an oversize or unexpected frame that was answered
        }
        return null;
    }

    /** Answer $task with $payload (any bytes): after the pieces part() sent, the last one. */
    public function respond(Task|int $task, string $payload): void
    {
        $id = $task instanceof Task ? $task->id : $task;
        if ($this->held !== [] && isset($this->held[$id])) {
            $payload = $this->held[$id] . $payload;
            unset($this->held[$id]);
        }
        if (\strlen($payload) > $this->maxFrame) {
            $this->tasks->fail($id, \sprintf(
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
            $this->tasks->writeAll($frame, $n === false ? 0 : $n);
        }
    }

    /** Answer $task with an error the supervisor rejects the task with (after any pieces part() sent: the answer is cut short). */
    public function fail(Task|int $task, string $message, string $code = 'HANDLER_ERROR'): void
    {
        $id = $task instanceof Task ? $task->id : $task;
        unset($this->held[$id]);
        $this->tasks->fail($id, $message, $code);
    }

    /**
     * Send the next piece of $task's answer now, before the rest: respond()
     * (or what serve()'s handler returns) sends the last piece. Returns once
     * the piece is written: a supervisor that reads slowly holds the worker
     * here. When the supervisor takes no parts (the task's takesParts is
     * false: no onPart on its side), the pieces are held and sent joined
     * with the last one, up to FOLK_MAX_FRAME in all. A piece larger than
     * FOLK_MAX_FRAME goes out as several.
     */
    public function part(Task $task, string $bytes): void
    {
        if ($bytes === '') {
            return;
        }
        if (!$task->takesParts) {
            $this->held[$task->id] = ($this->held[$task->id] ?? '') . $bytes;
            return;
        }
        foreach (\str_split($bytes, $this->maxFrame) as $piece) {
            $this->tasks->writeAll(\pack('CCnNN', self::PROTOCOL, self::PART, 0, $task->id, \strlen($piece)) . $piece);
        }
    }

    /**
     * The whole worker loop: call $handler(string $payload, Task $task) for
     * every task and send back what it returns (after the pieces it sent
     * with part($task, ...), if any). A Throwable becomes an ERROR frame and
     * the loop goes on. Returns the exit status (0).
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
        $this->control->onFds($handler);
    }

    /**
     * Register $handler(array $message, array $fds) for control messages
     * the supervisor sends of types this library does not handle itself
     * (WorkerPool's send(), ControlChannel's send()): every type but stop,
     * fds, ready and error. $fds are the descriptors that came with the
     * message, yours from then on (\Socket objects, or stream resources for
     * other descriptors; as for onFds(), a socket Node created is
     * non-blocking). Messages that arrived before any handler was registered
     * are delivered now. Handlers run inside receive(), poll() and waitFds().
     */
    public function onMessage(callable $handler): void
    {
        $this->control->onMessage($handler);
    }

    /**
     * Send a control message of your own to the supervisor (WorkerPool's
     * 'message' event), with $fds attached (SCM_RIGHTS): \Socket objects,
     * stream resources or fd numbers, at most 253; the supervisor gets its
     * own copies, yours stay open. $message must have a string 'type' that
     * is not one of the library's (RESERVED_TYPES), and be at most 64 KiB
     * as JSON. Works after isStopping() turned true (a last word before
     * exiting). If the supervisor is gone, the message is dropped and
     * isStopping() is true.
     *
     * @throws \ValueError for a message that cannot be sent (no 'type',
     *   a reserved type, not JSON-encodable, too long, too many fds, an fd
     *   number that is not open)
     * @throws \TypeError for an fd that is none of the three
     * @throws WorkerException when the control socket fails otherwise
     */
    public function send(array $message, array $fds = []): void
    {
        $type = $message['type'] ?? null;
        if (!\is_string($type) || $type === '') {
            throw new \ValueError(__METHOD__ . '(): Argument #1 ($message) must have a non-empty string "type"');
        }
        if (\in_array($type, self::RESERVED_TYPES, true)) {
            throw new \ValueError(\sprintf(
                '%s(): Argument #1 ($message) has type "%s", which the library uses itself (reserved: %s)',
                __METHOD__,
                $type,
                \implode(', ', self::RESERVED_TYPES),
            ));
        }
        $body = \json_encode($message, \JSON_UNESCAPED_SLASHES);
        if ($body === false) {
            throw new \ValueError(__METHOD__ . '(): Argument #1 ($message) cannot be sent as JSON: ' . \json_last_error_msg());
        }
        if (\strlen($body) > self::CONTROL_MAX) {
            throw new \ValueError(\sprintf(
                '%s(): Argument #1 ($message) must be at most %d bytes as JSON (one control datagram); this one is %d',
                __METHOD__,
                self::CONTROL_MAX,
                \strlen($body),
            ));
        }
        if (\count($fds) > self::MAX_FDS) {
            throw new \ValueError(\sprintf('%s(): Argument #2 ($fds) must hold at most %d descriptors, not %d', __METHOD__, self::MAX_FDS, \count($fds)));
        }
        $attach = [];
        $opened = [];
        try {
            foreach (\array_values($fds) as $i => $fd) {
                if ($fd instanceof \Socket || (\is_resource($fd) && \get_resource_type($fd) === 'stream')) {
                    $attach[] = $fd;
                } elseif (\is_int($fd)) {
                    // sendmsg takes \Socket objects and streams: a stream on a duplicate of it.
                    $stream = $fd < 0 ? false : @\fopen('php://fd/' . $fd, 'r');
                    if ($stream === false) {
                        throw new \ValueError(\sprintf('%s(): Argument #2 ($fds) holds fd %d, which is not open', __METHOD__, $fd));
                    }
                    $opened[] = $stream;
                    $attach[] = $stream;
                } else {
                    throw new \TypeError(\sprintf(
                        '%s(): Argument #2 ($fds) must hold \Socket objects, stream resources or fd numbers; [%d] is %s',
                        __METHOD__,
                        $i,
                        \get_debug_type($fd),
                    ));
                }
            }
            $this->control->sendBody($body, $attach);
        } finally {
            foreach ($opened as $stream) {
                \fclose($stream);
            }
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
        return $this->control->waitFds($tag);
    }

    /** Send an error report to the supervisor (it surfaces it as an event). */
    public function reportError(string $message, bool $fatal = false): void
    {
        $this->control->reportError($message, $fatal);
    }

    /** True once the supervisor asked this worker to stop or went away. */
    public function isStopping(): bool
    {
        return $this->control->stopping;
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
