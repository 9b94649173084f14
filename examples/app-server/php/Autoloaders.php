<?php
// The autoloaders of a worker that serves many requests. php-fpm drops a
// request's autoloaders when it ends, and so a front controller registers
// its own on every request. A worker cannot drop them all: one registered
// by a file that was require_once'd would be gone for good, as that file
// will not run again. Kept, the ones registered on every request piled up,
// one more a request (a closure and all it holds, for the worker's life,
// each called for every class not found). So the worker learns which ones
// come again: an autoloader that a request of a script registers and that
// is the same as one an earlier request of that script registered (the
// same code, holding the same values) is registered on every request of
// that script, and from then on goes when such a request ends, as under
// php-fpm. The second request of a script still finds the first request's
// copy beside its own. An autoloader registered once, by a file another
// script require_once'd, stays, whatever this script registers.

declare(strict_types=1);

namespace Folk\AppServer;

final class Autoloaders
{
    /** The most values an array an autoloader holds may have for the autoloader to be compared (see pattern()). */
    private const SHORT = 64;
    /** The autoloaders there were when the request began. */
    private array $before;
    /** By script: what the autoloaders its requests register on every request are, as pattern() gives it. */
    private array $perRequest = [];
    /** The script whose request registered each autoloader still registered, by id(); none for those of the worker's start. */
    private array $addedBy = [];

    public function __construct()
    {
        $this->before = \spl_autoload_functions();
    }

    /**
     * After a request of $script: the autoloaders it registered that the
     * script registers on every request go, and so does an earlier request's
     * copy of one. A named function or a static method, registered again,
     * is one already (spl_autoload_register() keeps one of each): only
     * closures and objects' methods are new each time.
     */
    public function forgetPerRequest(string $script): void
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
            $learned = \in_array($pattern, $this->perRequest[$script] ?? [], true);
            if (!$learned && $this->forgetCopy($pattern, $script, $earlier)) {
                $this->perRequest[$script][] = $pattern;
                $learned = true;
            }
            if ($learned) {
                \spl_autoload_unregister($loader);
            } else {
                $this->addedBy[self::id($loader)] = $script;
            }
        }
        $this->before = \spl_autoload_functions();
        // (An id is reused by the next object made: keep only those of autoloaders still registered.)
        $this->addedBy = \array_intersect_key($this->addedBy, \array_flip(\array_map(self::id(...), $this->before)));
    }

    /** Unregister the first of $loaders that a request of $script registered and that has $pattern: false if there is none. */
    private function forgetCopy(array $pattern, string $script, array $loaders): bool
    {
        foreach ($loaders as $loader) {
            if (($this->addedBy[self::id($loader)] ?? null) === $script && self::pattern($loader) === $pattern) {
                return \spl_autoload_unregister($loader);
            }
        }
        return false;
    }

    /** Which autoloader this is, while it lives: its closure's or object's id (with the method). */
    private static function id(callable $loader): string
    {
        return match (true) {
            \is_object($loader) => (string) \spl_object_id($loader), // (a closure, or an object with __invoke())
            \is_array($loader) && \is_object($loader[0]) => \spl_object_id($loader[0]) . '::' . $loader[1],
            \is_array($loader) => \implode('::', $loader),
            default => $loader,
        };
    }

    /**
     * What makes two autoloaders the same: their code (see code()) and the
     * values they hold: a closure's captured variables (not its static
     * ones, which change as it runs) and the properties of its $this, or
     * the properties of a loader object. They compare as they are (===),
     * but an object among them by its class: a loader made anew on each
     * request is a new object, not another loader. An array among them is
     * compared only if it is short and holds no array (one that holds
     * itself would stop PHP's === with a fatal error; a long one would cost
     * a walk per request), and its own objects compare as objects do (the
     * same object only). Null for a named callable, or one holding another
     * array: never taken for one registered on every request (it stays, as
     * before the worker learned any).
     */
    private static function pattern(callable $loader): ?array
    {
        $code = self::code($loader);
        if ($code === null) {
            return null;
        }
        $values = [];
        foreach (self::held($loader) as $part => $held) {
            foreach ($held as $name => $value) { // (copied: one captured by reference must not be written through)
                if (\is_array($value) && !self::flat($value)) {
                    return null;
                }
                $values[$part][$name] = \is_object($value) ? ['object', self::plain($value::class)] : $value;
            }
        }
        return [$code, $values];
    }

    /** @return array<string, array> what a loader holds: a closure's captured variables, its $this's or a loader object's properties */
    private static function held(callable $loader): array
    {
        if ($loader instanceof \Closure) {
            $function = new \ReflectionFunction($loader);
            $bound = $function->getClosureThis();
            return ['used' => $function->getClosureUsedVariables(), 'this' => $bound === null ? [] : (array) $bound];
        }
        return ['object' => (array) (\is_array($loader) ? $loader[0] : $loader)];
    }

    /** At most SHORT values, none of them an array. */
    private static function flat(array $values): bool
    {
        if (\count($values) > self::SHORT) {
            return false;
        }
        foreach ($values as $value) {
            if (\is_array($value)) {
                return false;
            }
        }
        return true;
    }

    /**
     * A closure's code (file, line, name, class, the class of its $this),
     * or an object's class and method (__invoke() for an object registered
     * itself); null for a named callable.
     */
    private static function code(callable $loader): ?array
    {
        if ($loader instanceof \Closure) {
            $function = new \ReflectionFunction($loader);
            $bound = $function->getClosureThis();
            return [$function->getFileName(), $function->getStartLine(), $function->getName(),
                self::plain($function->getClosureScopeClass()?->name), self::plain($bound === null ? null : $bound::class)];
        }
        return match (true) {
            \is_object($loader) => [self::plain($loader::class), '__invoke'],
            \is_array($loader) && \is_object($loader[0]) => [self::plain($loader[0]::class), $loader[1]],
            default => null,
        };
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
