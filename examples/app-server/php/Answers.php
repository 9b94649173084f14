<?php
// The answers a PHP worker writes in direct mode (ConnectionSource.php has
// the loop): a script's whole answer, the parts of one that flushed
// (StreamedAnswer.php), one sent early by fastcgi_finish_request(), a
// refusal (HttpError), and the rest of each as its client takes it, so
// that a client reading slowly holds up no other connection. The access
// log line of each is written here.

declare(strict_types=1);

namespace Folk\AppServer;

use Folk\AppServer\Http\HttpError;
use Folk\AppServer\Http\Request;
use Folk\Worker;

use function Folk\AppServer\Http\responseHead;
use function Folk\AppServer\Http\scriptStatus;

final class Answers
{
    /** @var array<int, StreamedAnswer> answers of scripts that flushed: the head is out, the body goes as they flush */
    private array $streams = [];
    /** [connection id, Request] of the request being served, from begin() to its answer. */
    private ?array $serving = null;
    /** The request being served was answered by fastcgi_finish_request() (early()): its script runs on. */
    private bool $answeredEarly = false;

    /** $settings: ConnectionSource's (maxResponse, idleTimeout). */
    public function __construct(
        private Worker $worker,
        private Connections $conns,
        private Scoreboard $board,
        private ?AccessLog $log,
        private array $settings,
    ) {
    }

    /** A script starts serving this request: the next whole(), stream() or early() answer it. */
    public function begin(int $id, Request $request): void
    {
        $this->serving = [$id, $request];
    }

    /**
     * Runtime's $answer without its $ending: the script ended, its answer
     * goes (the rest of it, if it flushed or answered early). False if no
     * request was being served.
     */
    public function whole(int $status, array $lines, string $body): bool
    {
        [$id, $request] = $this->serving ?? [0, null];
        $this->serving = null;
        if ($request === null) {
            return false;
        }
        $this->board->ended();
        if ($this->answeredEarly) {
            $this->answeredEarly = false; // (sent by early())
            return true;
        }
        if (!isset($this->streams[$id])) {
            // Before the first byte of it goes out, the scoreboard stops
            // saying this request is unanswered: a worker that dies from
            // here on leaves the front a connection to close (kept() lists
            // it until the answer is out), never a 502 to put after its
            // answer. (A streamed answer's line says so already.)
            $this->board->held($this->conns->kept());
        }
        $this->last($id, $request, $status, $lines, $body);
        return true;
    }

    /**
     * Runtime's $early (the script called fastcgi_finish_request()): its
     * answer now, and the connection is one like the others once it is
     * out, kept alive as the request asks: the scoreboard line says "*",
     * and if the script runs on for long, the front moves this worker's
     * idle connections, this one among them, to workers that are free, as
     * for any slow request (php-fpm's next request on it goes to another
     * child). The line still says the request runs (--exec-timeout holds,
     * as php-fpm's request_terminate_timeout does).
     */
    public function early(int $status, array $lines, string $body): void
    {
        if ($this->serving === null) {
            return;
        }
        [$id, $request] = $this->serving;
        $this->board->answering();
        $this->last($id, $request, $status, $lines, $body);
        $this->answeredEarly = true;
        if ($this->conns->isWriting($id)) {
            $this->handOver($id);
        }
        $this->board->answered($this->conns->kept());
    }

    /**
     * The rest of an answer sent early that the client has not taken goes
     * to the front, in a file, and the front writes it while the script
     * runs on, as nginx writes what a php-fpm child handed it, then gives
     * the connection to a worker (or closes it, as the answer said) with
     * the bytes of a next request read here. This worker lets go of it. If
     * that fails, the rest stays here, written once the script has ended.
     */
    private function handOver(int $id): void
    {
        $conn = $this->conns->get($id);
        $rest = $conn->restInFile();
        if ($rest === null) {
            return;
        }
        try {
            $this->worker->send(['type' => 'finish', 'id' => $id, 'close' => $conn->closesAfter(), 'buffered' => \base64_encode($conn->reader->buffered())], [$rest]);
            $this->conns->letGo($id);
        } catch (\Throwable $e) {
            \error_log("the rest of an answer sent early stays with this worker until its script ends: {$e->getMessage()}");
        } finally {
            \fclose($rest);
        }
    }

    /**
     * Runtime's $stream (the script flushed): its head goes out the first
     * time (false, and nothing sent, when the head is not valid HTTP: the
     * answer is then a 502 at the end, as without a flush), then this part
     * of the body; null when the client is gone (nothing more reaches it).
     * From then on, a worker that dies leaves the front a connection to
     * close, not a request to answer (the scoreboard says so).
     */
    public function stream(int $status, array $lines, string $part): ?bool
    {
        if ($this->serving === null) {
            return false;
        }
        [$id, $request] = $this->serving;
        if (!isset($this->streams[$id])) {
            [$status, $lines] = scriptStatus($status, $lines);
            $keepAlive = $request->keepAlive && !$this->conns->draining;
            try {
                $this->streams[$id] = new StreamedAnswer($this->conns->get($id), $request, $status, $lines, $keepAlive, (int) $this->settings['idleTimeout']);
            } catch (\InvalidArgumentException) {
                return false;
            }
            $this->board->answering(); // before the head goes out: a worker that dies from now on leaves a connection to close
        }
        $this->streams[$id]->part($part);
        return $this->streams[$id]->clientGone() ? null : true;
    }

    /** Write a response; keep the connection for the next request, or close it (when the client or $close says so, or when draining). */
    public function send(int $id, Request $request, int $status, array $lines, string $body, bool $close = false): void
    {
        // A worker that stops or ends (a fatal error) keeps the connection open:
        // it goes back to the front with the others, and on to another worker.
        $keepAlive = $request->keepAlive && !$this->conns->draining && !$close;
        $bodyless = $request->method === 'HEAD';
        [$status, $lines] = scriptStatus($status, $lines);
        try {
            $head = responseHead($status, $lines, \strlen($body), $keepAlive, $bodyless);
        } catch (\InvalidArgumentException $e) {
            // A header PHP let through that is not valid HTTP: the script's mistake, said in the log.
            \error_log("502 {$request->method} {$request->target}: the worker's response headers are not valid HTTP: {$e->getMessage()}");
            $status = 502;
            $body = "502 Bad Gateway\n";
            $head = responseHead($status, ['Content-Type: text/plain; charset=utf-8'], \strlen($body), $keepAlive, $bodyless);
        }
        // A 1xx, 204 or 304 response has no body, whatever the script echoed (RFC 9112 6.3; nginx drops it too).
        $noBody = $bodyless || $status < 200 || $status === 204 || $status === 304;
        $conn = $this->conns->get($id);
        $this->log?->add($conn->meta['remoteAddr'], $request, $status, $noBody ? 0 : \strlen($body));
        $this->written($id, $conn->answer($noBody ? $head : $head . $body, !$keepAlive));
    }

    /**
     * A request that cannot be served (HttpError): a short answer, then the
     * connection closes, once the client has stopped sending (or LINGER
     * seconds went by without a byte): closing with its bytes unread would
     * reset the connection, and the client might never read the answer.
     */
    public function refuse(int $id, HttpError $e): void
    {
        $text = "{$e->status} " . (Http\REASONS[$e->status] ?? 'Error') . "\n";
        $conn = $this->conns->get($id);
        if ($e->request !== null) {
            $this->log?->add($conn->meta['remoteAddr'], $e->request, $e->status, \strlen($text));
            \error_log("{$e->status} {$e->request->method} {$e->request->target}: {$e->getMessage()}");
        }
        $head = responseHead($e->status, ['Content-Type: text/plain; charset=utf-8'], \strlen($text), false, false);
        if (!$conn->writeAll($head . $text, (int) $this->settings['idleTimeout'])) {
            $this->conns->close($id);
            return;
        }
        $conn->linger();
        $this->conns->hold($id);
    }

    /** A connection became writable while its answer waits for the client: write more. */
    public function flush(int $id): void
    {
        $this->written($id, $this->conns->get($id)->flush());
    }

    /** Before this worker ends: write the answers still waiting, each as long as its client keeps reading (closed after idleTimeout without progress). */
    public function finishWriting(): void
    {
        while (($ids = $this->conns->writingIds()) !== []) {
            $read = $except = null;
            $write = [];
            foreach ($ids as $id) {
                $write[] = $this->conns->get($id)->socket;
            }
            if (@\socket_select($read, $write, $except, ConnectionSource::TICK) === false) {
                \socket_clear_error();
            }
            foreach ($write as $socket) {
                $id = $this->conns->idOf($socket);
                if ($id !== null) {
                    $this->flush($id);
                }
            }
            $this->conns->closeIdle();
        }
    }

    /** The end of an answer: the rest of a streamed one, or a whole one (a 502 past --max-response); $close: then close the connection. */
    private function last(int $id, Request $request, int $status, array $lines, string $body, bool $close = false): void
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
        $this->log?->add($this->conns->get($id)->meta['remoteAddr'], $request, $stream->status, $stream->bytes);
        $this->written($id, $done);
    }

    /**
     * After writing (Connection::answer() or flush(), which said $done):
     * all out, the connection closes or goes on with its next request; some
     * left, ConnectionSource::wait() writes more when the socket is
     * writable, so a client that reads slowly holds up no other connection
     * of this worker; null, the client went away.
     */
    private function written(int $id, ?bool $done): void
    {
        $conn = $this->conns->get($id);
        $this->conns->setWriting($id, $done === false);
        if ($done === false) {
            // Only now that the scoreboard lists it (writing a large rest
            // to a file takes a while, and a worker that dies meanwhile
            // must leave the front a connection to close, not a request to
            // answer after part of its answer).
            $conn->keepRest();
            return;
        }
        if ($done === null || $conn->closesAfter()) {
            $this->conns->close($id);
        } else {
            $this->conns->answered($id);
        }
    }
}
