<?php
// A worker's line of the --direct scoreboard (lib/direct.mjs reads it).
// php-fpm keeps a scoreboard of what each child does; this one says which
// connection's request a worker is serving and since when, and which
// connections it holds bytes of: the front answers that request with a
// 502 (504 past --exec-timeout) if the worker dies first, and moves the
// connections it holds nothing of when it is busy for long.
//
// One file per worker, named by its pid, holding one line of fixed length:
// "ID MS HOLDING METHOD TARGET" (HOLDING: ids with commas, or -; "MS+"
// once the script has flushed part of its answer: the front then closes
// the connection rather than answer it if the worker dies; "MS*" once
// fastcgi_finish_request() has answered it and the script runs on: the
// connection is then an idle one, which the front may move), and
// between requests "0", or "0 MS HOLDING - -" while it keeps connections:
// answers still being written (from just before a whole answer goes out:
// the front must not put a 502 after it), bytes of a request read (those
// connections cannot go to another worker). A worker takes a request's
// bytes from the kernel only once its line names that request or lists
// its connection (ConnectionSource::take()). Each change is one lseek and
// one write.

declare(strict_types=1);

namespace Folk\AppServer;

use Folk\AppServer\Http\Request;
use Folk\Worker;

final class Scoreboard
{
    private const LINE = 512;

    /** @var resource */
    private $file;
    /** The line of the request being served as [id and start, its list of kept connections, method and target]; [] between requests. */
    private array $serving = [];
    /** @var list<int>|null between requests, the connections the line lists; null when the line says something else */
    private ?array $listed = null;

    public function __construct(string $dir)
    {
        $file = \fopen($dir . '/' . \getmypid(), 'c');
        if ($file === false) {
            Worker::die("cannot write the scoreboard in $dir");
        }
        $this->file = $file;
    }

    /** Serving $request of connection $id from now, keeping the connections $kept (see held()). */
    public function serving(int $id, Request $request, array $kept): void
    {
        $this->serving = ["$id " . (int) (\microtime(true) * 1000), self::list($kept), "{$request->method} {$request->target}"];
        $this->listed = null;
        $this->write($this->servingLine(''));
    }

    /** The request being served has begun its answer (the script flushed, or is answering early): "+". */
    public function answering(): void
    {
        $this->write($this->servingLine('+'));
    }

    /**
     * The request being served is answered (fastcgi_finish_request()) and
     * its script runs on: "*". Its connection is one like the others now,
     * and the connections this worker keeps are $kept.
     */
    public function answered(array $kept): void
    {
        $this->serving[1] = self::list($kept);
        $this->write($this->servingLine('*'));
    }

    /** The script of the request being served has ended: its line stands until the next held(). */
    public function ended(): void
    {
        $this->serving = [];
    }

    /**
     * Between requests: the connections this worker keeps, those it read
     * bytes of a request from and those it still writes an answer to (the
     * front closes them if it dies, rather than hand them on). Written only
     * when the line says otherwise; while a request is served, its line
     * stands (the front closes or answers that connection).
     */
    public function held(array $kept): void
    {
        if ($this->serving !== [] || $kept === $this->listed) {
            return;
        }
        $this->listed = $kept;
        $this->write($kept === [] ? '0' : '0 ' . (int) (\microtime(true) * 1000) . ' ' . self::list($kept) . ' - -');
    }

    private function servingLine(string $mark): string
    {
        [$start, $list, $request] = $this->serving;
        return "$start$mark $list $request";
    }

    private static function list(array $ids): string
    {
        return $ids === [] ? '-' : \implode(',', $ids);
    }

    private function write(string $line): void
    {
        $line = \substr($line, 0, self::LINE - 1);
        \fseek($this->file, 0);
        // Padded with str_repeat(): str_pad() fills byte by byte, 1.4 us for a line of 511 (a third of this class's cost per request).
        \fwrite($this->file, $line . \str_repeat(' ', self::LINE - 1 - \strlen($line)) . "\n");
    }
}
