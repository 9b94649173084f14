<?php
// What examples/app-server/php/Http.php costs per request, run by hand:
//   php bench/app-server/http-php.php
//   php -d opcache.enable_cli=1 -d opcache.jit=tracing -d opcache.jit_buffer_size=64M bench/app-server/http-php.php
// µs per parse of a typical GET head (one reader kept, as on a keep-alive
// connection, and a new reader each time), per responseHead of 4 header
// lines and per cgiVariables. Figures, never assertions.

declare(strict_types=1);

require __DIR__ . '/../../examples/app-server/php/Http.php';

use Folk\AppServer\Http\RequestReader;

use function Folk\AppServer\Http\cgiVariables;
use function Folk\AppServer\Http\responseHead;

$head = "GET /index.php?page=2&sort=name HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/120\r\n"
    . "Accept: text/html,application/xhtml+xml\r\nAccept-Encoding: gzip, deflate\r\nCookie: session=abc123\r\n\r\n";
$lines = ['X-Powered-By: PHP/8.2', 'Content-Type: text/html; charset=UTF-8', 'Set-Cookie: session=abc123; path=/; HttpOnly', 'Cache-Control: no-store'];
$connection = ['remoteAddr' => '127.0.0.1', 'remotePort' => 50000, 'serverAddr' => '127.0.0.1', 'serverPort' => 8080];
$settings = ['https' => false, 'serverName' => ''];
$n = 200000;

/** µs per call of $f, over $n calls. */
function us(int $n, callable $f): float
{
    $t = \hrtime(true);
    for ($i = 0; $i < $n; $i++) {
        $f();
    }
    return (\hrtime(true) - $t) / $n / 1000;
}

printf("GET head of %d bytes, %s%s\n", strlen($head), PHP_VERSION, function_exists('opcache_get_status') && (opcache_get_status()['jit']['on'] ?? false) ? ', JIT on' : '');
$kept = new RequestReader();
$request = null;
for ($round = 1; $round <= 3; $round++) {
    printf(
        "round %d: parse %.2f µs (kept reader), %.2f µs (new reader); responseHead %.2f µs; cgiVariables %.2f µs\n",
        $round,
        us($n, function () use ($kept, $head, &$request): void {
            $kept->feed($head);
            $request = $kept->next();
            $kept->next();
        }),
        us($n, function () use ($head): void {
            $reader = new RequestReader();
            $reader->feed($head);
            $reader->next();
        }),
        us($n, fn () => responseHead(200, $lines, 1234, true, false)),
        us($n, fn () => cgiVariables($request, $connection, $settings)),
    );
}
