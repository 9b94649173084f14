<?php
// Autoloaders registered by a file included with require_once (once per
// worker here), beside one from the same line registered on every request
// for another namespace: all must go on loading classes (each request
// asks for classes no request loaded before).
require_once __DIR__ . '/lib/autoload-once.php';
folk_test_register_prefix('Each\\');
spl_autoload_register((new FolkTestPrefixLoader('App\\Each\\'))->load(...));
$name = 'C' . bin2hex(random_bytes(4));
echo json_encode([
    'once' => class_exists("Once\\$name"),
    'each' => class_exists("Each\\$name") && class_exists("App\\Each\\$name"),
    'kept' => class_exists("Kept\\$name"),
    'vendor' => class_exists("Vendor\\$name"),
    'invokable' => class_exists("Inv\\$name"),
]), "\n";
