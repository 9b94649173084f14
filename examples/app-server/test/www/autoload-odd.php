<?php
// Autoloaders holding what is awkward to compare, registered on every
// request: a captured array that contains itself, and an array of objects
// made anew each time. The worker must serve on (the same pid), and they
// must load.
$config = ['prefix' => 'Odd\\'];
$config['self'] = &$config;
spl_autoload_register(function (string $class) use ($config): void {
    if (str_starts_with($class, $config['prefix']) && !class_exists($class, false)) {
        eval('namespace Odd; class ' . substr($class, 4) . ' {}');
    }
});
$parts = [new ArrayObject(['a']), new ArrayObject(['b'])];
spl_autoload_register(function (string $class) use ($parts): void {
});
header('X-Pid: ' . getmypid());
echo json_encode(['loads' => class_exists('Odd\\C' . bin2hex(random_bytes(4)))]), "\n";
