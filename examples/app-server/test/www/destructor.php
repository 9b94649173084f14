<?php
// A global object whose destructor writes: when a php-fpm request ends,
// that goes out at the end of its answer (test/http.test.ts).
if (!class_exists('WritesAtTheEnd', false)) {
    final class WritesAtTheEnd
    {
        public function __destruct()
        {
            echo ' (destructed)';
        }
    }
}
$last = new WritesAtTheEnd();
echo 'body';
