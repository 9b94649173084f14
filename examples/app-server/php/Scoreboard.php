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
// the connection rather than answer it if the worker dies), and
// between requests "0", or "0 MS HOLDING - -" while responses are still
// being written to slow clients (those connections cannot go to another
// worker). Each change is one lseek and one write.

declare(strict_types=1);

namespace Folk\AppServer;

use Folk\AppServer\Http\Request;
use Folk\Worker;

final class Scoreboard
{
    private const LINE = 512;

    /** @var resource */
    private $file;
    /** The line of the request being served, "+" to come after its MS. */
    private array $serving = [];

    public function __construct(string $dir)
    {
        $file = \fopen($dir . '/' . \getmypid(), 'c');
        if ($file === false) {
            Worker::die("cannot write the scoreboard in $dir");
        }
        $this->file = $file;
    }

    /** Serving $request of connection $id from now, holding bytes of the connections $holding. */
    public function serving(int $id, Request $request, array $holding): void
    {
        $held = $holding === [] ? '-' : \implode(',', $holding);
        $this->serving = ["$id " . (int) (\microtime(true) * 1000), " $held {$request->method} {$request->target}"];
        $this->write($this->serving[0] . $this->serving[1]);
    }

    /** The request being served has begun its answer (the script flushed). */
    public function answering(): void
    {
        $this->write($this->serving[0] . '+' . $this->serving[1]);
    }

    /** Between requests, still writing the responses of the connections $writing. */
    public function idle(array $writing = []): void
    {
        $this->write($writing === [] ? '0' : '0 ' . (int) (\microtime(true) * 1000) . ' ' . \implode(',', $writing) . ' - -');
    }

    private function write(string $line): void
    {
        $line = \substr($line, 0, self::LINE - 1);
        \fseek($this->file, 0);
        // Padded with str_repeat(): str_pad() fills byte by byte, 1.4 us for a line of 511 (a third of this class's cost per request).
        \fwrite($this->file, $line . \str_repeat(' ', self::LINE - 1 - \strlen($line)) . "\n");
    }
}
