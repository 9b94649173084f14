<?php
// A request as RequestReader.php reads it, and the refusal of one.

declare(strict_types=1);

namespace Folk\AppServer\Http;

/**
 * A request the reader refuses; $status is what to answer before closing
 * the connection. $request: its head, when it was read whole (for the log).
 */
final class HttpError extends \Exception
{
    public function __construct(public readonly int $status, string $message, public readonly ?Request $request = null)
    {
        parent::__construct($message);
    }
}

final class Request
{
    public string $method = '';
    /** The request-target as sent ("/path?query", "*", "http://host/path"). */
    public string $target = '';
    /** 'HTTP/1.1' or 'HTTP/1.0'. */
    public string $protocol = '';
    /** @var list<array{string,string}> name/value pairs, bytes as received (values trimmed of spaces and tabs), in order */
    public array $headers = [];
    /** The body, de-chunked. */
    public string $body = '';
    /** HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with "Connection: keep-alive". */
    public bool $keepAlive = true;
    public bool $chunked = false;
    /** The Content-Length header's value; -1 when the request had none. */
    public int $contentLength = -1;
}
