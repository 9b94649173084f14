<?php
// Included with require_once by autoload-once.php and autoload-each.php: it
// runs in the first request of a worker that includes it, and so registers
// its autoloaders once: one for Once\ from folk_test_register_prefix(),
// which autoload-each.php also calls on every request with the same
// prefix, one for Kept\ that reaches its loader object by reference, one
// for Vendor\ that is a loader object's method (its prefix in the object:
// autoload-once.php registers another such loader on every request), and
// an object with __invoke() for Inv\.
function folk_test_register_prefix(string $prefix): void
{
    spl_autoload_register(function (string $class) use ($prefix): void {
        if (str_starts_with($class, $prefix) && !class_exists($class, false)) {
            eval('namespace ' . rtrim($prefix, '\\') . '; class ' . substr($class, strlen($prefix)) . ' {}');
        }
    });
}

function folk_test_register_by_reference(): void
{
    static $loader = null;
    $loader ??= new class () {
        public function load(string $class): void
        {
            if (str_starts_with($class, 'Kept\\') && !class_exists($class, false)) {
                eval('namespace Kept; class ' . substr($class, 5) . ' {}');
            }
        }
    };
    spl_autoload_register(function (string $class) use (&$loader): void {
        $loader->load($class);
    });
}

final class FolkTestPrefixLoader
{
    public function __construct(private string $prefix)
    {
    }

    public function load(string $class): void
    {
        if (str_starts_with($class, $this->prefix) && !class_exists($class, false)) {
            eval('namespace ' . rtrim($this->prefix, '\\') . '; class ' . substr($class, strlen($this->prefix)) . ' {}');
        }
    }
}

final class FolkTestInvokableLoader
{
    public function __invoke(string $class): void
    {
        if (str_starts_with($class, 'Inv\\') && !class_exists($class, false)) {
            eval('namespace Inv; class ' . substr($class, 4) . ' {}');
        }
    }
}

folk_test_register_prefix('Once\\');
folk_test_register_by_reference();
spl_autoload_register((new FolkTestPrefixLoader('Vendor\\'))->load(...));
spl_autoload_register(new FolkTestInvokableLoader());
