<?php
// The PHP application: one worker process, many requests. A request arrives
// as a task (a JSON line with method, url and headers, then the raw body);
// the answer is a JSON line with status and headers, then the raw body.
// Usage: php app.php /path/to/Worker.php   (the supervisor passes the path)
declare(strict_types=1);

require $argv[1] ?? __DIR__ . '/../../packages/worker-spawn/php/Worker.php';

$served = 0; // lives as long as the worker: state a php-fpm request could not keep

function reply(int $status, string $body, string $type = 'text/plain; charset=utf-8'): string
{
    return json_encode(['status' => $status, 'headers' => ['content-type' => $type]]) . "\n" . $body;
}

Folk\WorkerConnection::fromEnv()->serve(function (string $payload) use (&$served): string {
    $served++;
    [$head, $body] = explode("\n", $payload, 2) + [1 => ''];
    $req = json_decode($head, true, 16, JSON_THROW_ON_ERROR);
    $path = parse_url($req['url'], PHP_URL_PATH) ?: '/';
    parse_str(parse_url($req['url'], PHP_URL_QUERY) ?? '', $query);

    switch ("{$req['method']} $path") {
        case 'GET /':
            return reply(200, sprintf(
                "Hello from PHP %s, worker pid %d (request %d of this worker)\n",
                PHP_VERSION,
                getmypid(),
                $served,
            ));
        case 'GET /json':
            return reply(200, json_encode([
                'php' => PHP_VERSION,
                'pid' => getmypid(),
                'served' => $served,
                'method' => $req['method'],
                'url' => $req['url'],
                'query' => $query,
                'user_agent' => $req['headers']['user-agent'] ?? null,
            ], JSON_PRETTY_PRINT) . "\n", 'application/json');
        case 'POST /echo':
            return reply(200, $body, $req['headers']['content-type'] ?? 'application/octet-stream');
        case 'GET /slow':
            usleep(1000 * min(10000, (int) ($query['ms'] ?? 100)));
            return reply(200, "slept\n");
        case 'GET /error':
            throw new RuntimeException('this route always fails');
        default:
            return reply(404, "no route for {$req['method']} $path\n");
    }
});
