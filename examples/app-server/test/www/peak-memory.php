<?php
// memory_get_peak_usage() as a script finds it: ?mb=N first allocates N MB.
// php-fpm starts each request's peak afresh (test/http.test.ts).
$block = str_repeat('x', (int) ($_GET['mb'] ?? 0) << 20);
unset($block);
echo intdiv(memory_get_peak_usage(), 1 << 20);
