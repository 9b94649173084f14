<?php
// A script that flushes its output as it goes (test/stream.test.ts).
//   ?how=flush|ob|nested   flush() alone, ob_flush() alone, or flush() inside the script's own ob_start()
//   ?marker=PATH&wait=MS   after the first part, wait (at most MS) for the test to create PATH: it does
//                          once it has read that part, so the page says "saw marker" only if it streamed
//   ?parts=N&size=BYTES    then N parts of BYTES bytes each, each flushed
//   ?then=kill|late|exit   then SIGKILL itself, set a header too late, or exit()
header('Content-Type: text/plain; charset=utf-8');
header('X-Stream: yes');
$how = $_GET['how'] ?? 'flush';
if ($how === 'nested') {
    ob_start();
}
$send = static function (string $text) use ($how): void {
    echo $text;
    $how === 'ob' ? ob_flush() : flush();
};
$send("first part\n");
if (isset($_GET['marker'])) {
    $until = microtime(true) + (int) ($_GET['wait'] ?? 5000) / 1000;
    while (!file_exists($_GET['marker']) && microtime(true) < $until) {
        usleep(5000);
    }
    $send(file_exists($_GET['marker']) ? "saw marker\n" : "no marker\n");
}
for ($i = 0, $n = (int) ($_GET['parts'] ?? 0); $i < $n; $i++) {
    $send(str_repeat(chr(ord('a') + $i % 26), (int) $_GET['size']));
}
match ($_GET['then'] ?? '') {
    'kill' => posix_kill(getmypid(), SIGKILL),
    'late' => header('X-Late: too late'),
    'exit' => exit("exit's own words\n"),
    default => null,
};
echo "last part\n";
