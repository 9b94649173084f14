<?php
// fastcgi_finish_request() (test/stream.test.ts, test/direct.test.ts):
// answers (with ?bytes more bytes of "x"), then works on, waiting (at most
// 5 s) for ?marker, which the test makes once it has the answer, and says
// in the file ?done what it saw.
header('Content-Type: text/plain; charset=utf-8');
header('X-Early: yes');
echo "answered early\n";
echo str_repeat('x', (int) ($_GET['bytes'] ?? 0));
if (!function_exists('fastcgi_finish_request')) {
    echo "no fastcgi_finish_request\n";
    return;
}
$first = fastcgi_finish_request();
echo "dropped\n";
header('X-Late: too late');
$until = microtime(true) + 5;
while (!file_exists($_GET['marker']) && microtime(true) < $until) {
    usleep(5000);
}
file_put_contents($_GET['done'], json_encode(['first' => $first, 'second' => fastcgi_finish_request(), 'sawMarker' => file_exists($_GET['marker'])]));
