<?php
// An output buffer left open whose callback calls exit(): PHP runs it when
// the request ends, and the answer still goes, empty under php-fpm (output
// inside a handler goes nowhere; test/http.test.ts, the peer test).
ob_start(static function (string $buffer): string {
    exit(strtoupper($buffer));
});
echo 'shouted';
