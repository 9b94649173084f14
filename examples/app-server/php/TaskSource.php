<?php
// Requests as tasks from the Node front (lib/front.mjs, lib/cgi.mjs): a
// decimal length and "\n", that many bytes of CGI variables
// ("NAME\0value\0NAME\0value"), then the body. The answer is the status (and
// " ending PID" when the process ends after it) and "\n", each header line
// and "\n", an empty line, then the body. A script that flushes sends its
// answer in pieces (the worker library's part(), when the front takes them):
// the first is the head as above and what the script flushed, the next ones
// more of the body; the answer that ends it has the same form as a whole one
// (the front keeps only its ending pid and its body from it).

declare(strict_types=1);

namespace Folk\AppServer;

use Folk\Task;
use Folk\Worker;

final class TaskSource
{
    /** The task being served. */
    private ?Task $task = null;
    /** Part of its answer went out already (the head with it). */
    private bool $streamed = false;
    /** Runtime's $answer and $stream, made once (not for every request). */
    private \Closure $answer;
    private \Closure $stream;

    public function __construct(private Worker $worker)
    {
        $this->answer = $this->answer(...);
        $this->stream = $this->stream(...);
    }

    /**
     * The next request as [$vars, $body, $answer, $stream] for
     * Runtime::begin(), or null when the worker should end (stopped, or
     * the front went away). $stream only when the front takes the answer
     * in pieces.
     */
    public function next(): ?array
    {
        $task = $this->worker->receive();
        if ($task === null) {
            return null;
        }
        $this->task = $task;
        $this->streamed = false;
        $payload = $task->payload;
        $nl = (int) \strpos($payload, "\n");
        $length = (int) \substr($payload, 0, $nl);
        $vars = [];
        $list = \explode("\0", \substr($payload, $nl + 1, $length));
        for ($i = 0, $n = \count($list) - 1; $i < $n; $i += 2) {
            $vars[$list[$i]] = $list[$i + 1];
        }
        return [$vars, (string) \substr($payload, $nl + 1 + $length), $this->answer, $task->takesParts ? $this->stream : null];
    }

    /** Runtime's $answer: the whole answer, or its last piece after the ones stream() sent. */
    private function answer(int $status, array $lines, string $body, bool $ending): void
    {
        // "302 ending 1234": this worker reads no task after this answer.
        // The front may already have written it the next one; knowing the
        // worker never read it, the front runs that task again.
        $this->worker->respond($this->task, self::head($status . ($ending ? ' ending ' . \getmypid() : ''), $lines) . $body);
    }

    /** Runtime's $stream: what the script flushed, as the next piece of the answer (the head with the first). */
    private function stream(int $status, array $lines, string $part): bool
    {
        $this->worker->part($this->task, $this->streamed ? $part : self::head((string) $status, $lines) . $part);
        $this->streamed = true;
        return true;
    }

    /** The head of an answer: the status line, each header line, an empty line. */
    private static function head(string $status, array $lines): string
    {
        $head = $status . "\n";
        foreach ($lines as $line) {
            $head .= $line . "\n";
        }
        return $head . "\n";
    }
}
