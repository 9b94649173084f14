<?php
// The globals a script finds besides the superglobals (under php-fpm: none),
// then what the client sent made globals, as old scripts do with
// extract($_GET): whatever the names, the server serves on.
$names = array_values(array_filter(array_keys($GLOBALS), static fn (string $name): bool => preg_match('/^_[A-Z]+$/', $name) !== 1));
extract($_GET);
echo json_encode($names);
