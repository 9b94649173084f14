<?php
// HTTP/1.1 for a PHP worker that owns a client connection (--direct,
// ConnectionSource.php): requests read from bytes (RequestReader.php,
// which says what it accepts), response heads written as bytes, and the
// CGI variables of a request as lib/cgi.mjs gives them. No I/O here: the
// caller reads and writes the socket, feeds what it read to a
// RequestReader and writes what responseHead() returns.

declare(strict_types=1);

namespace Folk\AppServer\Http;

require_once __DIR__ . '/RequestReader.php';

/** Reason phrases (RFC 9110, and the ones Node knows that are still in use). */
const REASONS = [
    100 => 'Continue', 101 => 'Switching Protocols', 102 => 'Processing', 103 => 'Early Hints',
    200 => 'OK', 201 => 'Created', 202 => 'Accepted', 203 => 'Non-Authoritative Information', 204 => 'No Content',
    205 => 'Reset Content', 206 => 'Partial Content', 207 => 'Multi-Status', 208 => 'Already Reported', 226 => 'IM Used',
    300 => 'Multiple Choices', 301 => 'Moved Permanently', 302 => 'Found', 303 => 'See Other', 304 => 'Not Modified',
    305 => 'Use Proxy', 307 => 'Temporary Redirect', 308 => 'Permanent Redirect',
    400 => 'Bad Request', 401 => 'Unauthorized', 402 => 'Payment Required', 403 => 'Forbidden', 404 => 'Not Found',
    405 => 'Method Not Allowed', 406 => 'Not Acceptable', 407 => 'Proxy Authentication Required', 408 => 'Request Timeout',
    409 => 'Conflict', 410 => 'Gone', 411 => 'Length Required', 412 => 'Precondition Failed', 413 => 'Payload Too Large',
    414 => 'URI Too Long', 415 => 'Unsupported Media Type', 416 => 'Range Not Satisfiable', 417 => 'Expectation Failed',
    418 => "I'm a Teapot", 421 => 'Misdirected Request', 422 => 'Unprocessable Entity', 423 => 'Locked',
    424 => 'Failed Dependency', 425 => 'Too Early', 426 => 'Upgrade Required', 428 => 'Precondition Required',
    429 => 'Too Many Requests', 431 => 'Request Header Fields Too Large', 451 => 'Unavailable For Legal Reasons',
    500 => 'Internal Server Error', 501 => 'Not Implemented', 502 => 'Bad Gateway', 503 => 'Service Unavailable',
    504 => 'Gateway Timeout', 505 => 'HTTP Version Not Supported', 506 => 'Variant Also Negotiates',
    507 => 'Insufficient Storage', 508 => 'Loop Detected', 510 => 'Not Extended', 511 => 'Network Authentication Required',
];

/** For a status without a phrase of its own: its class's. */
const CLASS_REASONS = [1 => 'Informational', 2 => 'Success', 3 => 'Redirection', 4 => 'Client Error', 5 => 'Server Error'];

/**
 * Headers of a script's answer that never reach the client (lib/cgi.mjs
 * drops the same): the connection and the framing are the server's; and
 * nginx's own controls, which nginx never passes on.
 */
const HOP_BY_HOP = [
    'connection' => true, 'keep-alive' => true, 'transfer-encoding' => true, 'content-length' => true,
    'upgrade' => true, 'proxy-connection' => true, 'te' => true, 'trailer' => true,
    'x-accel-buffering' => true, 'x-accel-charset' => true, 'x-accel-expires' => true, 'x-accel-limit-rate' => true,
];

/**
 * The status line and headers of a response, ending with the empty line.
 * $headerLines as headers_list() gives them ("Name: value"); the ones about
 * the connection and its framing (Content-Length, Connection,
 * Transfer-Encoding...) are dropped and written here: Content-Length is the
 * body's length (for a HEAD request, $bodyless, a script's own
 * Content-Length is kept, since there is no body to measure), none for
 * 1xx, 204 and 304; "Connection: close" or "Connection: keep-alive" (what
 * an HTTP/1.0 client needs to hear to keep it). A Date header unless the
 * script set one. A $bodyLength of null is a body whose length is not
 * known yet (it is streamed): "Transfer-Encoding: chunked" when $chunked
 * (an HTTP/1.1 client), else none (the close ends the body).
 *
 * @param list<string> $headerLines
 * @throws \InvalidArgumentException a status or header line that is not valid HTTP (a worker's mistake: answer 502)
 */
function responseHead(int $status, array $headerLines, ?int $bodyLength, bool $keepAlive, bool $bodyless, bool $chunked = false): string
{
    static $second = -1;
    static $date = '';
    if ($status < 100 || $status > 999) {
        throw new \InvalidArgumentException("status $status is not a 3-digit HTTP status");
    }
    $head = '';
    $dated = false;
    $theirLength = null;
    foreach ($headerLines as $line) {
        if (!\is_string($line) || \preg_match('/\A[!#$%&\'*+\-.^_`|~0-9A-Za-z]++:[\t\x20-\x7e\x80-\xff]*+\z/', $line) !== 1) {
            throw new \InvalidArgumentException('not a valid header line: ' . \json_encode(\is_string($line) ? \substr($line, 0, 80) : \get_debug_type($line), \JSON_INVALID_UTF8_SUBSTITUTE));
        }
        $name = \strtolower(\substr($line, 0, \strpos($line, ':')));
        if (isset(HOP_BY_HOP[$name])) {
            if ($name === 'content-length') {
                $theirLength = \trim(\substr($line, 15), " \t");
            }
            continue;
        }
        $dated = $dated || $name === 'date';
        $head .= $line . "\r\n";
    }
    if (!$dated) {
        $now = \time();
        if ($now !== $second) {
            $second = $now;
            $date = 'Date: ' . \gmdate('D, d M Y H:i:s', $now) . " GMT\r\n";
        }
        $head = $date . $head;
    }
    $head = 'HTTP/1.1 ' . $status . ' ' . (REASONS[$status] ?? CLASS_REASONS[\intdiv($status, 100)] ?? 'Unknown') . "\r\n" . $head;
    if ($status >= 200 && $status !== 204 && $status !== 304) {
        $length = $bodyless && $theirLength !== null && \ctype_digit($theirLength) ? $theirLength : $bodyLength;
        if ($length !== null) {
            $head .= 'Content-Length: ' . $length . "\r\n";
        } elseif ($chunked) {
            $head .= "Transfer-Encoding: chunked\r\n";
        }
    }
    return $head . ($keepAlive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
}

/**
 * The status a script chose and its header lines: header('Status: 404')
 * sets the status, as under php-fpm (php-cli keeps it as a header line).
 *
 * @param list<string> $headerLines
 * @return array{int, array<int, string>} (the header lines without the Status lines, keys kept)
 */
function scriptStatus(int $status, array $headerLines): array
{
    foreach ($headerLines as $i => $line) {
        if (\strncasecmp($line, 'status:', 7) === 0) {
            $status = (int) \trim(\substr($line, 7));
            unset($headerLines[$i]);
        }
    }
    return [$status, $headerLines];
}

/**
 * The CGI variables of a request, as lib/cgi.mjs's cgiVariables and
 * encodeTask give them to a worker: the same names in the same order, the
 * same headers dropped (names with "_", Proxy), repeated headers joined
 * with ", " ("; " for Cookie), CONTENT_LENGTH last ('' for a request
 * without a body that had no Content-Length, the body's length otherwise).
 *
 * @param array{remoteAddr?: ?string, remotePort?: int|string|null, serverAddr?: ?string, serverPort?: int|string|null} $connection
 * @param array{https?: bool, serverName?: string} $settings
 * @return array<string, string>
 */
function cgiVariables(Request $r, array $connection, array $settings): array
{
    $headers = [];
    $contentType = '';
    $host = '';
    foreach ($r->headers as [$name, $value]) {
        if (\str_contains($name, '_')) {
            continue; // X-Real_IP would pass for X-Real-IP (nginx's underscores_in_headers off)
        }
        $upper = \strtoupper($name);
        if ($upper === 'PROXY') {
            continue; // HTTP_PROXY ("httpoxy")
        }
        $cgi = 'HTTP_' . \strtr($upper, '-', '_');
        if ($cgi === 'HTTP_CONTENT_TYPE') {
            $contentType = $value;
        } elseif ($cgi === 'HTTP_HOST') {
            $host = $value;
        }
        $headers[$cgi] = isset($headers[$cgi]) ? $headers[$cgi] . ($cgi === 'HTTP_COOKIE' ? '; ' : ', ') . $value : $value;
    }
    $remoteAddr = plainAddress($connection['remoteAddr'] ?? null);
    $serverAddr = plainAddress($connection['serverAddr'] ?? null);
    $target = originForm($r->target);
    $q = \strpos($target, '?');
    $vars = [
        'REQUEST_METHOD' => $r->method,
        'REQUEST_URI' => $target,
        'QUERY_STRING' => $q === false ? '' : (string) \substr($target, $q + 1),
        'SERVER_PROTOCOL' => $r->protocol,
        'REQUEST_SCHEME' => empty($settings['https']) ? 'http' : 'https',
    ];
    if (!empty($settings['https'])) {
        $vars['HTTPS'] = 'on';
    }
    $name = (string) ($settings['serverName'] ?? '');
    if ($name === '') {
        $name = hostName($host);
    }
    $vars['SERVER_NAME'] = $name === '' ? $serverAddr : $name;
    $vars['CONTENT_TYPE'] = $contentType;
    $vars['REMOTE_ADDR'] = $remoteAddr;
    $vars['REMOTE_PORT'] = (string) ($connection['remotePort'] ?? '');
    $vars['REMOTE_USER'] = ''; // (Debian's fastcgi_params sends $remote_user: empty without HTTP auth)
    $vars['SERVER_ADDR'] = $serverAddr;
    $vars['SERVER_PORT'] = (string) ($connection['serverPort'] ?? '');
    $vars += $headers;
    $length = \strlen($r->body);
    $vars['CONTENT_LENGTH'] = $r->contentLength >= 0 || $length > 0 ? (string) $length : '';
    return $vars;
}

/**
 * A request target in absolute form ("http://host/a.php?x", which a server
 * must take: RFC 9112, 3.2.2) as the path and query nginx passes on
 * ("/a.php?x"), as cgi.mjs takes it; any other target as it is.
 */
function originForm(string $target): string
{
    if ($target[0] === '/' || \preg_match('~\A[A-Za-z][A-Za-z0-9+.\-]*+://[^/?#]*+~', $target, $m) !== 1) {
        return $target;
    }
    $rest = \substr($target, \strlen($m[0]));
    return $rest === '' || $rest[0] !== '/' ? '/' . $rest : $rest;
}

/** An IPv4 address mapped into IPv6 ("::ffff:127.0.0.1") as plain IPv4, as cgi.mjs gives it. */
function plainAddress(?string $address): string
{
    if ($address === null) {
        return '';
    }
    return \str_starts_with($address, '::ffff:') && \str_contains($address, '.') ? \substr($address, 7) : $address;
}

/** The host part of a Host header ("example.com:8080" -> "example.com", "[::1]:80" -> "::1"), as cgi.mjs takes it. */
function hostName(string $host): string
{
    if (\str_starts_with($host, '[')) {
        $close = \strpos($host, ']');
        // cgi.mjs's slice(1, indexOf(']')): without a "]" that is slice(1, -1).
        return (string) ($close === false ? \substr($host, 1, -1) : \substr($host, 1, $close - 1));
    }
    $colon = \strpos($host, ':');
    return $colon === false ? $host : \substr($host, 0, $colon);
}
