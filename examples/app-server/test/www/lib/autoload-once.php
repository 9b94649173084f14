<?php
// Included with require_once by autoload-once.php: it runs in a worker's
// first request only, and so registers its autoloader once.
function folk_test_register_prefix(string $prefix): void
{
    spl_autoload_register(function (string $class) use ($prefix): void {
        if (str_starts_with($class, $prefix) && !class_exists($class, false)) {
            eval('namespace ' . rtrim($prefix, '\\') . '; class ' . substr($class, strlen($prefix)) . ' {}');
        }
    });
}

folk_test_register_prefix('Once\\');
