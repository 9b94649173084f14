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
    /** The autoloaders (as signature() gives them) that requests register on every request. */
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
            $signature = self::signature($loader);
            if ($signature !== null && !isset($this->perRequest[$signature]) && self::forgetCopy($signature, $loader, $earlier)) {
                $this->perRequest[$signature] = true;
            }
            if ($signature !== null && isset($this->perRequest[$signature])) {
                \spl_autoload_unregister($loader);
            }
        }
        $this->before = \spl_autoload_functions();
    }

    /** Unregister the first of $loaders whose signature is $signature: false if there is none. */
    private static function forgetCopy(string $signature, callable $of, array $loaders): bool
    {
        $code = self::code($of);
        foreach ($loaders as $loader) {
            if (self::code($loader) === $code && self::signature($loader) === $signature) { // (code first: values may be big, a class map)
                return \spl_autoload_unregister($loader);
            }
        }
        return false;
    }

    /**
     * What makes two autoloaders the same (see code() and values()); null
     * for a named callable.
     */
    private static function signature(callable $loader): ?string
    {
        $code = self::code($loader);
        return $code === null ? null : \serialize([$code, self::values($loader)]);
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

    /**
     * What a closure captured, or an object's properties: as they are, but
     * objects among them by their class (a loader object made anew on each
     * request is a new object, not another loader), arrays a few levels deep.
     */
    private static function values(callable $loader): array
    {
        return self::flatten($loader instanceof \Closure ? (new \ReflectionFunction($loader))->getStaticVariables() : (array) $loader[0]);
    }

    private static function flatten(array $values, int $depth = 0): array
    {
        foreach ($values as $key => $value) {
            $values[$key] = match (true) {
                \is_object($value) => ['object', self::plain($value::class)],
                \is_array($value) => $depth < 4 ? self::flatten($value, $depth + 1) : ['array', \count($value)],
                \is_resource($value) => ['resource', \get_resource_type($value)],
                default => $value,
            };
        }
        return $values;
    }
}
