<?php
// A fatal error PHP cannot recover from (it bails out): the request gets
// its 500, and the worker ends (test/direct.test.ts, test/prototype.test.ts).
ini_set('memory_limit', '16M');
echo 'before ';
$all = str_repeat('x', 32 << 20);
