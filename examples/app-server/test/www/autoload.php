<?php
// A front controller that registers its autoloaders on every request, as
// it must under php-fpm, where each request starts with none: two closures
// from one line (one per namespace, each with its own prefix), a method of
// a loader object, and a closure that counts its calls in a static
// variable. The answer: how many of this file's autoloaders the request
// finds (php-fpm: four, every time), and whether they load.
foreach (['App\\', 'Lib\\'] as $prefix) {
    spl_autoload_register(function (string $class) use ($prefix): void {
        if (str_starts_with($class, $prefix) && !class_exists($class, false)) {
            eval('namespace ' . rtrim($prefix, '\\') . '; class ' . substr($class, strlen($prefix)) . ' {}');
        }
    });
}
spl_autoload_register([new class (__DIR__) {
    public function __construct(public string $dir)
    {
    }

    public function load(string $class): void
    {
    }
}, 'load']);
spl_autoload_register(function (string $class): void {
    static $misses = 0;
    $misses++;
});

$here = static fn (callable $loader): bool => (is_array($loader)
    ? new ReflectionMethod($loader[0], $loader[1])
    : new ReflectionFunction(Closure::fromCallable($loader)))->getFileName() === __FILE__;
echo json_encode([
    'autoloaders of this file' => count(array_filter(spl_autoload_functions(), $here)),
    'loads' => class_exists('App\\Thing') && class_exists('Lib\\Other') && !class_exists('None\\' . bin2hex(random_bytes(4))),
]), "\n";
