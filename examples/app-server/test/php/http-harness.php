<?php
// Drives php/Http.php for test/http-php.test.ts: reads a JSON list of cases
// on stdin, prints a JSON list of results. Byte strings travel as JSON
// strings of code points 0-255 (latin1), one per byte.

declare(strict_types=1);

use Folk\AppServer\Http\HttpError;
use Folk\AppServer\Http\Request;
use Folk\AppServer\Http\RequestReader;

require __DIR__ . '/../../php/Http.php';

function bytes(string $latin1InUtf8): string
{
    return (string) iconv('UTF-8', 'ISO-8859-1', $latin1InUtf8);
}

function text(string $bytes): string
{
    return (string) iconv('ISO-8859-1', 'UTF-8', $bytes);
}

function request(Request $r): array
{
    return [
        'method' => text($r->method),
        'target' => text($r->target),
        'protocol' => $r->protocol,
        'headers' => array_map(fn ($h) => [text($h[0]), text($h[1])], $r->headers),
        'body' => text($r->body),
        'keepAlive' => $r->keepAlive,
        'chunked' => $r->chunked,
        'contentLength' => $r->contentLength,
    ];
}

/** Feed the chunks one by one, taking every request after each; what came out, and when. */
function read(array $case): array
{
    $reader = new RequestReader($case['maxBody'] ?? 1048576, $case['maxHead'] ?? 16384);
    $requests = [];
    $continues = [];
    $error = null;
    foreach ($case['chunks'] as $i => $chunk) {
        $reader->feed(bytes($chunk));
        try {
            while (($r = $reader->next()) !== null) {
                $requests[] = request($r) + ['feed' => $i];
            }
        } catch (HttpError $e) {
            $error = ['status' => $e->status, 'message' => $e->getMessage(), 'feed' => $i];
            break;
        }
        if ($reader->wantsContinue()) {
            $continues[] = $i;
        }
    }
    $result = ['requests' => $requests, 'error' => $error, 'continues' => $continues, 'idle' => $reader->idle(), 'buffered' => text($reader->buffered())];
    if (isset($case['after'])) {
        // More bytes after the error (or the end): what next() says then.
        $reader->feed(bytes($case['after']));
        try {
            $r = $reader->next();
            $result['after'] = $r === null ? null : request($r);
        } catch (HttpError $e) {
            $result['after'] = ['status' => $e->status];
        }
    }
    return $result;
}

$out = [];
foreach (json_decode((string) stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR) as $case) {
    switch ($case['type']) {
        case 'read':
            $out[] = read($case);
            break;
        case 'cgi':
            $reader = new RequestReader();
            $reader->feed(bytes($case['raw']));
            $vars = Folk\AppServer\Http\cgiVariables($reader->next(), $case['connection'], $case['settings']);
            $flat = [];
            foreach ($vars as $name => $value) {
                $flat[] = $name . "\0" . $value;
            }
            $out[] = text(implode("\0", $flat));
            break;
        case 'head':
            try {
                $out[] = ['head' => text(Folk\AppServer\Http\responseHead($case['status'], array_map('bytes', $case['lines']), $case['bodyLength'], $case['keepAlive'], $case['bodyless'], $case['chunked'] ?? false))];
            } catch (InvalidArgumentException $e) {
                $out[] = ['invalid' => $e->getMessage()];
            }
            break;
        case 'keepalive':
            // One keep-alive connection as a server reads it: feed a request,
            // take it with one next(), again and again. What the reader holds
            // must not grow with the bytes it has given out.
            $reader = new RequestReader();
            $raw = bytes($case['raw']);
            $reader->feed($raw);
            $reader->next();
            $before = memory_get_usage();
            for ($i = 0; $i < $case['times']; $i++) {
                $reader->feed($raw);
                $reader->next();
            }
            $out[] = ['growth' => memory_get_usage() - $before, 'idle' => $reader->idle()];
            break;
        default:
            throw new RuntimeException("unknown case type {$case['type']}");
    }
}
echo json_encode($out, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES), "\n";
