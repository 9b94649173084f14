<?php
// Requests read from HTTP connections the Node front hands this worker
// (--direct; lib/direct.mjs): the front accepts, passes each connection's
// descriptor over the control socket (SCM_RIGHTS, tag "conn"), and this
// worker reads its requests and writes its responses itself, keep-alive and
// all, so no request passes through the front. A connection arrives as a
// "conn" message (id, addresses, bytes already read, base64) with its
// descriptor. The front keeps its own
// copy of every connection: when this worker stops (a reload, exit() in a
// script) it hands back the ones it holds, with any bytes of a request it
// had read, and the front gives them to another worker.
//
// Messages to the front: {"type":"closed","ids":[...]} for connections this
// worker closed, {"type":"release","connections":[[id, base64 bytes], ...]}
// for the ones it gives back, {"type":"dropped","ids":[...]} for the ones it
// let go when asked. From the front: {"type":"drop","ids":[...]} (a slow
// request keeps this worker busy: let these go, the front hands them to
// other workers), {"type":"trim","keep":N} (connections wait for room:
// close idle ones until at most N are held), {"type":"unready"} (the
// ready path says 503) and {"type":"drain"} (that, and "Connection:
// close" on every answer from now on, idle connections closed).
// Connection.php is one connection: its reads, and its answer written as
// the client takes it.

declare(strict_types=1);

namespace Folk\AppServer;

use Folk\AppServer\Http\HttpError;
use Folk\AppServer\Http\Request;
use Folk\Worker;

use function Folk\AppServer\Http\cgiVariables;
use function Folk\AppServer\Http\responseHead;
use function Folk\AppServer\Http\scriptStatus;

final class ConnectionSource
{
    /** Wait at most this long in select(), to close idle connections in time (seconds). */
    private const TICK = 1;
    /** Look for connections past their timeouts at most this often (seconds): each look goes through every connection. */
    private const SWEEP = 0.1;
    /** Connections a select() found readable are read without a new select() for this long (seconds): half the front's BUSY_AFTER (readNext()). */
    private const SAFE_READ = 0.05;
    /** After refusing a request, read and drop what the client still sends for this long (seconds), so it sees the answer: nginx's lingering_timeout. */
    private const LINGER = 5;

    /** @var array<int, Connection> by the front's id */
    private array $conns = [];
    /** @var array<int, int> socket object id => connection id */
    private array $ids = [];
    /** @var array<int, true> connections with bytes of a request buffered, served in turn (each once, however many reads brought them) */
    private array $ready = [];
    /**
     * @var array<int, true> connections the last select() found readable,
     * read one at a time (readNext()): bytes a worker has not read stay in
     * the kernel, so if it dies the front hands those connections to
     * another worker with their requests intact.
     */
    private array $readable = [];
    /** When select() last returned (microtime): see readNext(). */
    private float $selected = 0.0;
    /** @var list<int> closed since the front was last told */
    private array $closed = [];
    /**
     * @var array<int, true> connections this worker has read bytes of that
     * it has not answered yet (or is refusing): it keeps those. The front
     * may move any other while this worker is busy (the scoreboard lists
     * these), which is why bytes are read from a connection only here in
     * wait(), after the front's messages.
     */
    private array $holding = [];
    /**
     * @var array<int, true> connections whose answer the client has not
     * taken whole yet: the rest is written as it reads (flush()), the next
     * request waits, and this worker serves the others meanwhile.
     */
    private array $writing = [];
    /** @var array<int, StreamedAnswer> answers of scripts that flushed: the head is out, the body goes as they flush */
    private array $streams = [];
    /** Answer with "Connection: close" and close idle connections (the server is stopping). */
    private bool $draining = false;
    /** When wait() next looks for connections past their timeouts (microtime). */
    private float $nextSweep = 0.0;
    /** The ready path says 503 (stopping soon). */
    private bool $unready = false;
    /** Requests answered, against maxJobs. */
    private int $jobs = 0;
    /** Past maxJobs or maxMemory: give the connections back and end (the front starts a replacement). */
    private bool $retiring = false;
    /** [connection id, Request] of the request being served, from take() to its answer. */
    private ?array $serving = null;
    /** The request being served was answered by fastcgi_finish_request() (answerEarly()): its script runs on. */
    private bool $answeredEarly = false;
    /** answer(), stream() and answerEarly() as closures, made once (not for every request). */
    private \Closure $answerServing;
    private \Closure $streamServing;
    private \Closure $earlyServing;
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
        $this->answerServing = $this->answer(...);
        $this->streamServing = $this->stream(...);
        $this->earlyServing = $this->answerEarly(...);
        $this->wake = $worker->pollSocket();
        $this->board = new Scoreboard($settings['scoreboard']);
        if ($settings['accessLog'] !== '') {
            $this->log = new AccessLog($settings['accessLog']);
        }
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
            'drop' => $this->drop((array) ($message['ids'] ?? [])),
            'trim' => $this->trim((int) ($message['keep'] ?? \PHP_INT_MAX)),
            'drain' => $this->draining = $this->unready = true,
            'unready' => $this->unready = true,
            'reopen' => $this->log?->reopen(),
            default => null,
        };
    }

    /** The next request as [$vars, $body, $answer, $stream, $early] for Runtime::begin(), or null when the worker should end. */
    public function next(): ?array
    {
        while (true) {
            while ($this->ready !== []) {
                $id = \array_key_first($this->ready);
                unset($this->ready[$id]);
                $request = isset($this->conns[$id]) ? $this->take($id) : null;
                if ($request !== null) {
                    return $request;
                }
            }
            if ($this->retiring || $this->worker->isStopping()) {
                $this->finishWriting();
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
        if (isset($this->conns[$id])) { // not dropped or closed meanwhile
            $this->readFrom($id);
        }
        return true;
    }

    /** A connection from the front, maybe with the first bytes of a request another worker had read. */
    private function adopt(\Socket $socket, array $meta): void
    {
        $id = (int) $meta['id'];
        $buffered = \base64_decode((string) ($meta['buffered'] ?? ''), true);
        $conn = $this->conns[$id] = new Connection($id, $socket, $meta, $this->settings['maxBody'], (string) $buffered);
        $this->ids[\spl_object_id($socket)] = $id;
        if (!$conn->reader->idle()) {
            $this->holding[$id] = true;
            $this->ready[$id] = true;
        }
    }

    /** Wait for bytes on any connection or a message from the front, and read what came. */
    private function wait(): void
    {
        $this->tellClosed();
        $read = [$this->wake];
        $write = [];
        foreach ($this->conns as $id => $conn) {
            // A connection still being written to is read only after: its next request waits.
            isset($this->writing[$id]) ? $write[] = $conn->socket : $read[] = $conn->socket;
        }
        $except = null;
        $n = @\socket_select($read, $write, $except, self::TICK);
        if ($n === false) {
            \socket_clear_error();
            return; // EINTR: a signal; go round again
        }
        $this->selected = \microtime(true);
        foreach ($write as $socket) {
            $id = $this->ids[\spl_object_id($socket)] ?? null;
            if ($id !== null) {
                $this->flush($id);
            }
        }
        foreach ($read as $socket) {
            if ($socket === $this->wake) {
                $task = $this->worker->poll();
                if ($task !== null) {
                    $this->worker->fail($task, 'this worker serves HTTP connections (--direct), not tasks', 'NOT_A_TASK_WORKER');
                }
                continue;
            }
            $id = $this->ids[\spl_object_id($socket)] ?? null;
            if ($id !== null) { // not dropped by a message read just now
                $this->readable[$id] = true; // read in turn, by readNext()
                $this->conns[$id]->seen = $this->selected; // (bytes came: not idle, for closeIdle())
            }
        }
        $now = \microtime(true);
        if ($now >= $this->nextSweep || $this->draining) {
            $this->nextSweep = $now + self::SWEEP;
            $this->closeIdle();
        }
    }

    private function readFrom(int $id): void
    {
        $conn = $this->conns[$id];
        if (!$conn->read()) {
            $this->close($id); // the client closed (or reset) it
        } elseif (!$conn->lingering && !$conn->reader->idle()) {
            $this->holding[$id] = true;
            $this->ready[$id] = true;
        }
    }

    /**
     * The front moves connections away from this worker while it is busy
     * with a slow request: close our copies of those we hold nothing of,
     * and say which (the front hands them on).
     */
    private function drop(array $ids): void
    {
        $dropped = [];
        foreach ($ids as $id) {
            if (isset($this->conns[$id]) && !$this->keeps($id)) {
                $conn = $this->conns[$id];
                unset($this->conns[$id], $this->ids[\spl_object_id($conn->socket)]);
                $conn->close(false); // the connection lives on elsewhere
                $dropped[] = $id;
            }
        }
        $this->worker->send(['type' => 'dropped', 'ids' => $dropped]);
    }

    /**
     * The front has connections waiting because this worker holds its
     * worker-connections: close idle keep-alive connections, the longest
     * idle first, until it holds at most $keep (as nginx reuses idle
     * connections when it runs out). Only connections between two requests:
     * answered at least once, nothing of a next request read or waiting in
     * the kernel. The front asks again while connections wait (none may be
     * idle when it asks), and a repeated ask closes no more.
     */
    private function trim(int $keep): void
    {
        $count = \count($this->conns) - $keep;
        $idle = [];
        foreach ($this->conns as $id => $conn) {
            if ($conn->answered && !$this->keeps($id) && $conn->reader->idle()) {
                $idle[$id] = $conn->seen;
            }
        }
        \asort($idle);
        foreach (\array_keys($idle) as $id) {
            if ($count <= 0) {
                break;
            }
            if (!$this->conns[$id]->hasInput()) { // else a request (or the client's close) came: it is read as usual
                $this->close($id);
                $count--;
            }
        }
    }

    /** The next whole request of a connection as [$vars, $body, $answer, $stream, $early], or null (not all here yet, or answered here). */
    private function take(int $id): ?array
    {
        $conn = $this->conns[$id];
        try {
            $request = $conn->reader->next();
        } catch (HttpError $e) {
            $this->refuse($id, $e);
            return null;
        }
        if ($request === null) {
            if ($conn->reader->wantsContinue()) {
                $conn->writeAll("HTTP/1.1 100 Continue\r\n\r\n", (int) $this->settings['idleTimeout']);
            }
            return null;
        }
        if ($this->settings['readyPath'] !== '' && $request->target === $this->settings['readyPath']) {
            $ready = !$this->unready && !$this->worker->isStopping();
            $this->send($id, $request, $ready ? 200 : 503, ['Content-Type: text/plain; charset=utf-8'], $ready ? "ready\n" : "not ready\n");
            return null;
        }
        $vars = cgiVariables($request, $conn->meta, $this->settings);
        $this->board->serving($id, $request, $this->kept());
        $this->serving = [$id, $request];
        return [$vars, $request->body, $this->answerServing, $this->streamServing, $this->earlyServing];
    }

    /** Runtime's $answer for the request being served (take()). */
    private function answer(int $status, array $lines, string $body, bool $ending): void
    {
        [$id, $request] = $this->serving ?? [0, null];
        $this->serving = null;
        if ($request === null) {
            return;
        }
        if ($this->answeredEarly) {
            $this->answeredEarly = false; // (sent by answerEarly())
        } else {
            $this->sendWhole($id, $request, $status, $lines, $body);
        }
        $this->board->idle(\array_keys($this->writing));
        $this->retiring = $this->spent();
        if ($ending) {
            // exit() or a fatal error: this process ends after the answer.
            $this->finishWriting();
            $this->releaseAll();
        }
    }

    /**
     * Runtime's $early for the request being served (the script called
     * fastcgi_finish_request()): its answer now, with "Connection: close",
     * so that the client's next request goes to a worker that is free. The
     * scoreboard still says the request runs (--exec-timeout holds, as
     * php-fpm's request_terminate_timeout does), its answer begun.
     */
    private function answerEarly(int $status, array $lines, string $body): void
    {
        if ($this->serving === null) {
            return;
        }
        [$id, $request] = $this->serving;
        $this->board->answering();
        $this->sendWhole($id, $request, $status, $lines, $body, true);
        $this->answeredEarly = true;
    }

    /** The end of an answer: the rest of a streamed one, or a whole one (a 502 past --max-response); $close: then close the connection. */
    private function sendWhole(int $id, Request $request, int $status, array $lines, string $body, bool $close = false): void
    {
        if (isset($this->streams[$id])) {
            $this->endStream($id, $request, $status, $lines, $body, $close);
            return;
        }
        if (\strlen($body) > $this->settings['maxResponse']) {
            \error_log("502 {$request->method} {$request->target}: response body of " . \strlen($body) . " bytes is over --max-response {$this->settings['maxResponse']}");
            [$status, $lines, $body] = [502, ['Content-Type: text/plain; charset=utf-8'], "502 Bad Gateway\n"];
        }
        $this->send($id, $request, $status, $lines, $body, $close);
    }

    /** Runtime's $stream for the request being served: part of its answer (streamPart()). */
    private function stream(int $status, array $lines, string $part): bool
    {
        return $this->serving !== null && $this->streamPart($this->serving[0], $this->serving[1], $status, $lines, $part);
    }

    /**
     * The script flushed: its head goes out the first time (false, and
     * nothing sent, when the head is not valid HTTP: the answer is then a
     * 502 at the end, as without a flush), then this part of the body. From
     * now on, a worker that dies leaves the front a connection to close,
     * not a request to answer (the scoreboard says so).
     */
    private function streamPart(int $id, Request $request, int $status, array $lines, string $part): bool
    {
        if (!isset($this->streams[$id])) {
            [$status, $lines] = scriptStatus($status, $lines);
            try {
                $this->streams[$id] = new StreamedAnswer($this->conns[$id], $request, $status, $lines, $request->keepAlive && !$this->draining, (int) $this->settings['idleTimeout']);
            } catch (\InvalidArgumentException) {
                return false;
            }
            $this->board->answering(); // before the head goes out: a worker that dies from now on leaves a connection to close
        }
        $this->streams[$id]->part($part);
        return true;
    }

    /** The script ended after it flushed: the rest of its output, and the end of the body (or a cut, past --max-response). */
    private function endStream(int $id, Request $request, int $status, array $lines, string $rest, bool $close): void
    {
        $stream = $this->streams[$id];
        unset($this->streams[$id]);
        [$status, $lines] = scriptStatus($status, $lines);
        if ($stream->changed($status, $lines)) {
            \error_log("{$request->method} {$request->target}: a status or headers set after the script flushed were not sent (the head was out)");
        }
        $done = null;
        if (\strlen($rest) > $this->settings['maxResponse']) {
            \error_log("{$request->method} {$request->target}: output of " . \strlen($rest) . " bytes after the last flush is over --max-response {$this->settings['maxResponse']}: the answer is cut short");
        } else {
            $done = $stream->end($rest, $close);
        }
        $this->log?->add($this->conns[$id]->meta['remoteAddr'], $request, $stream->status, $stream->bytes);
        $this->written($id, $done);
    }

    /** Write a response; keep the connection for the next request, or close it (when the client or $close says so, or when draining). */
    private function send(int $id, Request $request, int $status, array $lines, string $body, bool $close = false): void
    {
        // A worker that stops or ends (exit()) keeps the connection open:
        // it goes back to the front with the others, and on to another worker.
        $keepAlive = $request->keepAlive && !$this->draining && !$close;
        $bodyless = $request->method === 'HEAD';
        [$status, $lines] = scriptStatus($status, $lines);
        try {
            $head = responseHead($status, $lines, \strlen($body), $keepAlive, $bodyless);
        } catch (\InvalidArgumentException $e) {
            // A header PHP let through that is not valid HTTP: the script's mistake, said in the log.
            \error_log("502 {$request->method} {$request->target}: the worker's response headers are not valid HTTP: {$e->getMessage()}");
            $body = "502 Bad Gateway\n";
            $head = responseHead(502, ['Content-Type: text/plain; charset=utf-8'], \strlen($body), $keepAlive, $bodyless);
        }
        // A 1xx, 204 or 304 response has no body, whatever the script echoed (RFC 9112 6.3; nginx drops it too).
        $noBody = $bodyless || $status < 200 || $status === 204 || $status === 304;
        $this->log?->add($this->conns[$id]->meta['remoteAddr'], $request, $status, $noBody ? 0 : \strlen($body));
        $this->written($id, $this->conns[$id]->answer($noBody ? $head : $head . $body, !$keepAlive));
    }

    /** A connection became writable while its answer waits for the client: write more. */
    private function flush(int $id): void
    {
        $this->written($id, $this->conns[$id]->flush());
    }

    /**
     * After writing (Connection::answer() or flush(), which said $done):
     * all out, the connection closes or goes on with its next request; some
     * left, wait() writes more when the socket is writable, so a client that
     * reads slowly holds up no other connection of this worker; null, the
     * client went away.
     */
    private function written(int $id, ?bool $done): void
    {
        $conn = $this->conns[$id];
        $this->setWriting($id, $done === false);
        if ($done === false) {
            // Only now that the scoreboard lists it (writing a large rest
            // to a file takes a while, and a worker that dies meanwhile
            // must leave the front a connection to close, not a request to
            // answer after part of its answer).
            $conn->keepRest();
            return;
        }
        if ($done === null || $conn->closesAfter()) {
            $this->close($id);
        } elseif (!$conn->reader->idle()) {
            $this->ready[$id] = true; // the next request (pipelined) is already here
        } else {
            unset($this->holding[$id]);
        }
    }

    /**
     * Whether a connection's answer is still being written; the scoreboard's
     * line between requests lists those (the front closes them, rather than
     * hand them on, if this worker dies), so the two change together.
     */
    private function setWriting(int $id, bool $writing): void
    {
        if ($writing === isset($this->writing[$id])) {
            return;
        }
        if ($writing) {
            $this->writing[$id] = true;
        } else {
            unset($this->writing[$id]);
        }
        $this->board->idle(\array_keys($this->writing));
    }

    /** Before this worker ends: write the answers still waiting, each as long as its client keeps reading (closed after idleTimeout without progress). */
    private function finishWriting(): void
    {
        while ($this->writing !== []) {
            $read = $except = null;
            $write = [];
            foreach (\array_keys($this->writing) as $id) {
                $write[] = $this->conns[$id]->socket;
            }
            if (@\socket_select($read, $write, $except, self::TICK) === false) {
                \socket_clear_error();
            }
            foreach ($write as $socket) {
                $id = $this->ids[\spl_object_id($socket)] ?? null;
                if ($id !== null) {
                    $this->flush($id);
                }
            }
            $this->closeIdle();
        }
    }

    /**
     * A request that cannot be served (HttpError): a short answer, then the
     * connection closes, once the client has stopped sending (or LINGER
     * seconds went by without a byte): closing with its bytes unread would
     * reset the connection, and the client might never read the answer.
     */
    private function refuse(int $id, HttpError $e): void
    {
        $text = "{$e->status} " . (Http\REASONS[$e->status] ?? 'Error') . "\n";
        $conn = $this->conns[$id];
        if ($e->request !== null) {
            $this->log?->add($conn->meta['remoteAddr'], $e->request, $e->status, \strlen($text));
            \error_log("{$e->status} {$e->request->method} {$e->request->target}: {$e->getMessage()}");
        }
        $head = responseHead($e->status, ['Content-Type: text/plain; charset=utf-8'], \strlen($text), false, false);
        if (!$conn->writeAll($head . $text, (int) $this->settings['idleTimeout'])) {
            $this->close($id);
            return;
        }
        $conn->linger();
        $this->holding[$id] = true;
    }

    /**
     * Whether this worker must keep a connection: it has read bytes of a
     * request on it, or is still writing an answer to it. The front moves
     * or trims only the others.
     */
    private function keeps(int $id): bool
    {
        return isset($this->holding[$id]) || isset($this->writing[$id]);
    }

    /** @return list<int> the connections this worker keeps (keeps()), for the scoreboard */
    private function kept(): array
    {
        return \array_keys($this->holding + $this->writing);
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

    private function close(int $id): void
    {
        $conn = $this->conns[$id];
        unset($this->conns[$id], $this->ids[\spl_object_id($conn->socket)], $this->holding[$id]);
        $this->setWriting($id, false);
        // The front still holds a copy of the connection: shutdown ends it
        // for the client now, not when the front closes that copy.
        $conn->close(true);
        $this->closed[] = $id;
    }

    /**
     * Close connections idle past idleTimeout (at once when draining), those
     * whose request head has not come whole within headerTimeout, and those
     * whose body has not moved for headerTimeout.
     */
    private function closeIdle(): void
    {
        $now = \microtime(true);
        $idle = $now - ($this->draining ? 0 : $this->settings['idleTimeout']);
        foreach ($this->conns as $id => $conn) {
            if ($conn->lingering) {
                $over = $conn->seen < $now - self::LINGER;
            } elseif (isset($this->writing[$id])) {
                $over = $conn->seen < $now - $this->settings['idleTimeout']; // no progress: the client stopped reading
            } elseif ($conn->reader->idle()) {
                $over = $conn->seen < $idle;
            } elseif ($conn->reader->readingBody()) {
                $over = $conn->seen < $now - $this->settings['headerTimeout']; // between two reads, as nginx's client_body_timeout
            } else {
                $over = $conn->begun < $now - $this->settings['headerTimeout'];
            }
            if ($over) {
                $this->close($id);
            }
        }
    }

    private function tellClosed(): void
    {
        if ($this->closed !== []) {
            $this->worker->send(['type' => 'closed', 'ids' => $this->closed]);
            $this->closed = [];
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
        $list = [];
        foreach ($this->conns as $id => $conn) {
            $list[] = [$id, \base64_encode($conn->reader->buffered())];
            $conn->close(false);
        }
        $this->conns = $this->ids = $this->ready = $this->holding = [];
        $this->worker->send(['type' => 'release', 'connections' => $list]);
    }
}
