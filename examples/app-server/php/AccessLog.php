<?php
// The access log of --direct (lib/access-log.mjs writes the same lines for
// the front otherwise), in the combined format:
//   127.0.0.1 - - [05/Dec/2026:04:34:47 +0000] "GET /x HTTP/1.1" 200 1234 "referer" "user agent"
// One write(2) per line to a file opened for appending (O_APPEND), so every
// worker of every front can share the file. reopen() is for logrotate
// (SIGUSR1 to the server, a "reopen" message to the workers).

declare(strict_types=1);

namespace Folk\AppServer;

use Folk\AppServer\Http\Request;

final class AccessLog
{
    /** @var resource */
    private $file;
    private int $second = -1;
    private string $stamp = '';

    /** $path: a file, or '-' for standard output (which the front passes on to its own). */
    public function __construct(private string $path)
    {
        $this->reopen();
    }

    public function reopen(): void
    {
        $file = $this->path === '-' ? \STDOUT : @\fopen($this->path, 'a');
        if ($file === false) {
            \error_log("app server: cannot open the access log {$this->path}: " . (\error_get_last()['message'] ?? 'unknown error'));
            return; // keep the one open before, if any
        }
        if (isset($this->file) && $this->file !== \STDOUT) {
            \fclose($this->file);
        }
        $this->file = $file;
    }

    /** One request: $bytes is the length of the body sent. */
    public function add(string $remoteAddr, Request $request, int $status, int $bytes): void
    {
        if (!isset($this->file)) {
            return;
        }
        $referer = $agent = '';
        foreach ($request->headers as [$name, $value]) {
            if (\strcasecmp($name, 'referer') === 0) {
                $referer = $value;
            } elseif (\strcasecmp($name, 'user-agent') === 0) {
                $agent = $value;
            }
        }
        $line = $remoteAddr . ' - - [' . $this->time() . '] "'
            . self::escape("{$request->method} {$request->target} {$request->protocol}") . "\" $status $bytes \""
            . self::escape($referer) . '" "' . self::escape($agent) . "\"\n";
        @\fwrite($this->file, $line);
    }

    /** nginx escapes '"', '\' and bytes outside printable ASCII as \xHH in logged strings; '-' for nothing. */
    private static function escape(string $text): string
    {
        if ($text === '') {
            return '-';
        }
        if (!\preg_match('/["\\\\\x00-\x1f\x7f-\xff]/', $text)) {
            return $text;
        }
        return (string) \preg_replace_callback('/["\\\\\x00-\x1f\x7f-\xff]/', fn ($m) => \sprintf('\\x%02X', \ord($m[0])), $text);
    }

    /** 05/Dec/2026:04:34:47 +0000, local time, computed once a second. */
    private function time(): string
    {
        $now = \time();
        if ($now !== $this->second) {
            $this->second = $now;
            $this->stamp = \date('d/M/Y:H:i:s O', $now);
        }
        return $this->stamp;
    }
}
