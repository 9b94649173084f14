<?php
// Another front controller of the same application: it registers on every
// request the very autoloader (same code, same prefix) that
// lib/autoload-once.php registered once for autoload-once.php. That must
// not make the worker drop autoload-once.php's.
require_once __DIR__ . '/lib/autoload-once.php';
folk_test_register_prefix('Once\\');
echo json_encode(['once' => class_exists('Once\\C' . bin2hex(random_bytes(4)))]), "\n";
