<?php
// Requests read from HTTP connections the Node front hands this worker
// (--direct; lib/direct.mjs): the front accepts, passes each connection's
// descriptor over the control socket (SCM_RIGHTS, tag "conn"), and this
// worker reads its requests and writes its responses itself, keep-alive and
// all, so no request passes through the front. A connection arrives as a
// "conn" message (id, addresses, bytes already read, base64) with its
// descriptor. The front keeps its own
// copy of every connection: when this worker stops (a reload, a fatal error
// in a script) it hands back the ones it holds, with any bytes of a request it
// had read, and the front gives them to another worker.
//
// Messages to the front: {"type":"closed","ids":[...]} for connections this
// worker closed, {"type":"release","connections":[[id, base64 bytes], ...]}
// for the ones it gives back, {"type":"dropped","ids":[...]} for the ones it
// let go when asked, {"type":"finish","id":N,"close":bool,"buffered":base64}
// with a file holding the rest of an answer sent early
// (fastcgi_finish_request()) that the client has not taken: the front
// writes it, then hands the connection on (or closes it), and this worker
// has let go of it. From the front: {"type":"drop","ids":[...]} (a slow
// request keeps this worker busy: let these go, the front hands them to
// other workers), {"type":"trim","keep":N} (connections wait for room:
// close idle ones until at most N are held), {"type":"unready"} (the
// ready path says 503) and {"type":"drain"} (that, and "Connection:
// close" on every answer from now on, idle connections closed).
// Connections.php is the set of connections this worker holds and where
// each stands, Answers.php writes the answers, Connection.php is one
// connection.

declare(strict_types=1);

namespace Folk\AppServer;

use Folk\AppServer\Http\HttpError;
use Folk\Worker;

use function Folk\AppServer\Http\cgiVariables;

final class ConnectionSource
{
    /** Wait at most this long in select(), to close idle connections in time (seconds). */
    public const TICK = 1;
    /** Look for connections past their timeouts at most this often (seconds): each look goes through every connection. */
    private const SWEEP = 0.1;
    /** Connections a select() found readable are read without a new select() for this long (seconds): half the front's BUSY_AFTER (readNext()). */
    private const SAFE_READ = 0.05;

    private Connections $conns;
    private Answers $answers;
    /**
     * @var array<int, true> connections the last select() found readable,
     * read one at a time (readNext()): bytes a worker has not read stay in
     * the kernel, so if it dies the front hands those connections to
     * another worker with their requests intact.
     */
    private array $readable = [];
    /** When select() last returned (microtime): see readNext(). */
    private float $selected = 0.0;
    /** When wait() next looks for connections past their timeouts (microtime). */
    private float $nextSweep = 0.0;
    /** The ready path says 503 (stopping soon). */
    private bool $unready = false;
    /** Requests answered, against maxJobs. */
    private int $jobs = 0;
    /** Past maxJobs or maxMemory: give the connections back and end (the front starts a replacement). */
    private bool $retiring = false;
    /** Runtime's $answer, $stream and $early, made once (not for every request). */
    private \Closure $answer;
    private \Closure $stream;
    private \Closure $early;
    private \Socket $wake;
    private Scoreboard $board;
    private ?AccessLog $log = null;

    /**
     * $settings: maxBody (413 above it), maxResponse (502 above it),
     * maxJobs and maxMemory (bytes of RSS; 0: no limit; past either, the
     * worker ends after the request and the front replaces it),
     * idleTimeout (seconds a keep-alive connection may wait for its next
     * request), headerTimeout (seconds a request head may take), readyPath
     * ('' for none), https, serverName (for the CGI variables), scoreboard
     * (a directory), accessLog ('' for none, '-' for stdout).
     */
    public function __construct(private Worker $worker, private array $settings)
    {
        $this->wake = $worker->pollSocket();
        $this->board = new Scoreboard($settings['scoreboard']);
        if ($settings['accessLog'] !== '') {
            $this->log = new AccessLog($settings['accessLog']);
        }
        $this->conns = new Connections($this->board, (float) $settings['idleTimeout'], (float) $settings['headerTimeout']);
        $this->answers = new Answers($worker, $this->conns, $this->board, $this->log, $settings);
        $this->answer = $this->answer(...);
        $this->stream = $this->answers->stream(...);
        $this->early = $this->answers->early(...);
        $worker->onMessage($this->message(...));
        $worker->ready(); // the front sends connections from now on
    }

    /** A message from the front (see the top of this file). */
    private function message(array $message, array $fds): void
    {
        $type = $message['type'] ?? '';
        if ($type === 'conn' && \count($fds) === 1 && $fds[0] instanceof \Socket) {
            $this->adopt($fds[0], $message);
            return;
        }
        foreach ($fds as $fd) {
            $fd instanceof \Socket ? \socket_close($fd) : @\fclose($fd);
        }
        match ($type) {
            'drop' => $this->worker->send(['type' => 'dropped', 'ids' => $this->conns->drop((array) ($message['ids'] ?? []))]),
            'trim' => $this->conns->trim((int) ($message['keep'] ?? \PHP_INT_MAX)),
            'drain' => $this->conns->draining = $this->unready = true,
            'unready' => $this->unready = true,
            'reopen' => $this->log?->reopen(),
            default => null,
        };
    }

    /** The next request as [$vars, $body, $answer, $stream, $early] for Runtime::begin(), or null when the worker should end. */
    public function next(): ?array
    {
        while (true) {
            while (($id = $this->conns->nextReady()) !== null) {
                $request = $this->take($id);
                if ($request !== null) {
                    return $request;
                }
            }
            if ($this->retiring || $this->worker->isStopping()) {
                $this->answers->finishWriting();
                $this->releaseAll();
                return null;
            }
            if (!$this->readNext()) {
                $this->wait();
            }
        }
    }

    /**
     * Read the next connection the last select() found readable; false if
     * there is none, or if that select() is too old to go by. The front
     * moves connections away from a worker busy with one request for
     * BUSY_AFTER (100 ms, lib/direct.mjs), and takes it that the worker
     * reads none before it has handled the message saying so. Messages are
     * handled in wait(); so after SAFE_READ since the select, no more
     * reads without a new one. (The wall clock, as the front's: a jump of
     * it moves both the same way.)
     */
    private function readNext(): bool
    {
        if ($this->readable === [] || \microtime(true) - $this->selected >= self::SAFE_READ) {
            $this->readable = [];
            return false;
        }
        $id = \array_key_first($this->readable);
        unset($this->readable[$id]);
        $conn = $this->conns->get($id);
        if ($conn === null) {
            return true; // dropped or closed meanwhile
        }
        if (!$conn->peek()) {
            $this->conns->close($id); // the client closed (or reset) it
        } elseif ($conn->hasUnread()) {
            $this->conns->queue($id); // take() consumes what it peeked
        }
        return true;
    }

    /** A connection from the front, maybe with the first bytes of a request another worker had read. */
    private function adopt(\Socket $socket, array $meta): void
    {
        $buffered = \base64_decode((string) ($meta['buffered'] ?? ''), true);
        $this->conns->add(new Connection((int) $meta['id'], $socket, $meta, $this->settings['maxBody'], (string) $buffered));
    }

    /** Wait for bytes on any connection or a message from the front, and note which connections have bytes (readNext() reads them). */
    private function wait(): void
    {
        $this->tellClosed();
        $this->board->held($this->conns->kept());
        [$read, $write] = $this->conns->sockets();
        $read[] = $this->wake;
        $except = null;
        $n = @\socket_select($read, $write, $except, self::TICK);
        if ($n === false) {
            \socket_clear_error();
            return; // EINTR: a signal; go round again
        }
        $this->selected = \microtime(true);
        foreach ($write as $socket) {
            $id = $this->conns->idOf($socket);
            if ($id !== null) {
                $this->answers->flush($id);
            }
        }
        if (\in_array($this->wake, $read, true)) {
            $this->pollFront();
        }
        foreach ($this->conns->readable($read, $this->selected) as $id) {
            $this->readable[$id] = true;
        }
        $now = \microtime(true);
        if ($now >= $this->nextSweep || $this->conns->draining) {
            $this->nextSweep = $now + self::SWEEP;
            $this->conns->closeIdle();
        }
    }

    /** Handle the front's messages (poll() passes each to message()); a task among them is a mistake. */
    private function pollFront(): void
    {
        $task = $this->worker->poll();
        if ($task !== null) {
            $this->worker->fail($task, 'this worker serves HTTP connections (--direct), not tasks', 'NOT_A_TASK_WORKER');
        }
    }

    /**
     * The next whole request of a connection as [$vars, $body, $answer,
     * $stream, $early], or null (not all here yet, or answered here). The
     * bytes its reader peeked at leave the kernel only once the scoreboard
     * accounts for them: a worker that dies before has taken nothing, and
     * the front hands the connection on with its request whole.
     */
    private function take(int $id): ?array
    {
        $conn = $this->conns->get($id);
        try {
            $request = $conn->reader->next();
        } catch (HttpError $e) {
            $this->consume($conn);
            $this->answers->refuse($id, $e);
            return null;
        }
        if ($request === null) {
            $this->consume($conn); // (part of a request: the rest comes later)
            if ($conn->reader->wantsContinue()) {
                $conn->writeAll("HTTP/1.1 100 Continue\r\n\r\n", (int) $this->settings['idleTimeout']);
            }
            return null;
        }
        if ($this->settings['readyPath'] !== '' && $request->target === $this->settings['readyPath']) {
            $this->consume($conn);
            $ready = !$this->unready && !$this->worker->isStopping();
            $this->answers->send($id, $request, $ready ? 200 : 503, ['Content-Type: text/plain; charset=utf-8'], $ready ? "ready\n" : "not ready\n");
            return null;
        }
        $this->board->serving($id, $request, $this->conns->kept());
        $conn->consume();
        $vars = cgiVariables($request, $conn->meta, $this->settings);
        $this->answers->begin($id, $request);
        return [$vars, $request->body, $this->answer, $this->stream, $this->early];
    }

    /** Take the bytes a connection's reader peeked at from the kernel, once the scoreboard lists the connection among those this worker keeps (the front closes it if this worker dies). */
    private function consume(Connection $conn): void
    {
        if ($conn->hasUnread()) {
            $this->board->held($this->conns->kept());
            $conn->consume();
        }
    }

    /** Runtime's $answer for the request being served (take()); $ending: a fatal error (or an exit() ScriptExit could not catch), this process ends after the answer. */
    private function answer(int $status, array $lines, string $body, bool $ending): void
    {
        if (!$this->answers->whole($status, $lines, $body)) {
            return;
        }
        $this->retiring = $this->spent();
        if ($ending) {
            $this->answers->finishWriting();
            $this->releaseAll();
        }
    }

    /** Whether this worker has served its maxJobs requests, or its RSS is over maxMemory (php-fpm's pm.max_requests; RoadRunner's max_worker_memory). */
    private function spent(): bool
    {
        if ($this->settings['maxJobs'] > 0 && ++$this->jobs >= $this->settings['maxJobs']) {
            return true;
        }
        if ($this->settings['maxMemory'] > 0) {
            // VmRSS in kB, whatever the page size (arm64 kernels may use 64 KiB pages).
            $status = (string) @\file_get_contents('/proc/self/status');
            return \preg_match('/^VmRSS:\s+(\d+) kB/m', $status, $m) === 1 && (int) $m[1] * 1024 > $this->settings['maxMemory'];
        }
        return false;
    }

    private function tellClosed(): void
    {
        $closed = $this->conns->takeClosed();
        if ($closed !== []) {
            $this->worker->send(['type' => 'closed', 'ids' => $closed]);
        }
    }

    /**
     * Give every connection back to the front, with the bytes of any request
     * read from it: this worker ends. Sent even with none to give, as the
     * front's sign that the end is planned (it starts the replacement now).
     */
    private function releaseAll(): void
    {
        $this->tellClosed();
        $this->worker->send(['type' => 'release', 'connections' => $this->conns->releaseAll()]);
    }
}
