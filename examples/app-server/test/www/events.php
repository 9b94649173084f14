<?php
// Server-sent events for ever (test/stream.test.ts): a tick a few times a
// second, flushed, and each tick also appended to the file ?log names, so
// the test sees how long the script ran. ?ignore=1: ignore_user_abort(true).
ignore_user_abort(isset($_GET['ignore']));
header('Content-Type: text/event-stream');
register_shutdown_function(static function (): void {
    file_put_contents($_GET['log'], "shutdown " . connection_aborted() . "\n", FILE_APPEND);
});
for ($i = 1; ; $i++) {
    echo "data: tick $i\n\n";
    flush();
    file_put_contents($_GET['log'], "tick $i\n", FILE_APPEND);
    usleep(100_000);
}
