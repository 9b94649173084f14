<?php
// error_get_last() as a script finds it: ?warn=1 makes a (silenced) warning
// first. php-fpm starts each request with none (test/http.test.ts).
if (isset($_GET['warn'])) {
    $none = [];
    $value = @$none['missing'];
}
echo json_encode(error_get_last()['message'] ?? null);
