<?php
// The autoloaders of a worker that serves many requests. php-fpm drops a
// request's autoloaders when it ends, and so a front controller registers
// its own on every request. A worker cannot drop them all: one registered
// by a file that was require_once'd would be gone for good, as that file
// will not run again. Kept, the ones registered on every request piled up,
// one more a request (a closure and all it holds, for the worker's life,
// each called for every class not found). So the worker learns which ones
// come again: an autoloader a request registers that is the same as one an
// earlier request registered (the same code, holding the same values) is
// registered on every request, and from then on goes when its request
// ends, as under php-fpm. The second request of a worker still finds the
// first request's copy beside its own.

declare(strict_types=1);

namespace Folk\AppServer;

final class Autoloaders
{
    /** The autoloaders there were when the request began. */
    private array $before;
    /** What autoloaders that requests register on every request are, as pattern() gives it. */
    private array $perRequest = [];

    public function __construct()
    {
        $this->before = \spl_autoload_functions();
    }

    /**
     * After a request: the autoloaders it registered that are registered on
     * every request go, and so does an earlier request's copy of one. A
     * named function or a static method, registered again, is one already
     * (spl_autoload_register() keeps one of each): only closures and
     * objects' methods are new each time.
     */
    public function forgetPerRequest(): void
    {
        $now = \spl_autoload_functions();
        if ($now === $this->before) {
            return;
        }
        $added = \array_filter($now, fn ($loader): bool => !\in_array($loader, $this->before, true));
        $earlier = \array_diff_key($now, $added);
        foreach ($added as $loader) {
            $pattern = self::pattern($loader);
            if ($pattern === null) {
                continue;
            }
            if (!\in_array($pattern, $this->perRequest, true) && self::forgetCopy($pattern, $earlier)) {
                $this->perRequest[] = $pattern;
            }
            if (\in_array($pattern, $this->perRequest, true)) {
                \spl_autoload_unregister($loader);
            }
        }
        $this->before = \spl_autoload_functions();
    }

    /** Unregister the first of $loaders that has $pattern: false if there is none. */
    private static function forgetCopy(array $pattern, array $loaders): bool
    {
        foreach ($loaders as $loader) {
            if (self::code($loader) === $pattern[0] && self::pattern($loader) === $pattern) { // (code first: it is cheaper)
                return \spl_autoload_unregister($loader);
            }
        }
        return false;
    }

    /**
     * What makes two autoloaders the same: their code (see code()) and the
     * values they hold, a closure's captured values or an object's
     * properties, compared as they are (===), but an object among them
     * (not one inside an array) by its class: a loader made anew on each
     * request is a new object, not another loader. An array compares fast
     * when it is the same array (a class map both captured), and in C
     * otherwise. Null for a named callable.
     */
    private static function pattern(callable $loader): ?array
    {
        $code = self::code($loader);
        if ($code === null) {
            return null;
        }
        $values = $loader instanceof \Closure ? (new \ReflectionFunction($loader))->getStaticVariables() : (array) $loader[0];
        foreach ($values as $name => $value) {
            if (\is_object($value)) {
                $values[$name] = ['object', self::plain($value::class)];
            }
        }
        return [$code, $values];
    }

    /**
     * A closure's code (file, line, name, class, the class of its $this),
     * or an object's class and method; null for a named callable.
     */
    private static function code(callable $loader): ?array
    {
        if ($loader instanceof \Closure) {
            $function = new \ReflectionFunction($loader);
            $bound = $function->getClosureThis();
            return [$function->getFileName(), $function->getStartLine(), $function->getName(),
                self::plain($function->getClosureScopeClass()?->name), self::plain($bound === null ? null : $bound::class)];
        }
        return \is_array($loader) && \is_object($loader[0]) ? [self::plain($loader[0]::class), $loader[1]] : null;
    }

    /**
     * A class name; for an anonymous class, where it is declared (its name
     * also counts the times its file was compiled: "$0", "$1", ...).
     */
    private static function plain(?string $class): ?string
    {
        return $class !== null && \str_contains($class, "@anonymous\0") ? \substr($class, 0, (int) \strrpos($class, '$')) : $class;
    }
}
