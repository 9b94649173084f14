<?php
// What a script leaves in its worker when it ends, taken away as the end
// of a php-fpm request takes it: the globals it created, before its
// answer goes (their destructors may still write to it); after the answer,
// the autoloaders it registers on every request (Autoloaders.php) and what
// it left in reference cycles.

declare(strict_types=1);

namespace Folk\AppServer;

final class Leftovers
{
    /** Possible roots of garbage cycles that make collectCycles() collect them (Laravel leaves about 90 a request). */
    private const GC_ROOTS = 300;
    /** Globals that exist between requests (the worker's own); everything else a script creates is removed after it. */
    private array $keep = [];
    private Autoloaders $autoloaders;

    /** $uncaught reports what script code run here (a destructor) threw, as PHP reports an uncaught exception. */
    public function __construct(private readonly \Closure $uncaught)
    {
        $this->autoloaders = new Autoloaders();
    }

    /** The globals there are now are the worker's own, kept between requests. */
    public function keepGlobals(): void
    {
        $this->keep = \array_fill_keys(\array_keys($GLOBALS), true);
    }

    /**
     * Remove the globals the script created (php-fpm starts every request
     * without them), before its answer goes: their destructors run now, and
     * what they write is part of the answer, as when a php-fpm request ends.
     * In PHP's order: the objects last to first while the other globals are
     * still there, then the rest; then the script's error and exception
     * handlers go. A destructor that throws is reported as an uncaught
     * exception there.
     */
    public function forgetGlobals(): void
    {
        $names = \array_reverse(\array_keys($GLOBALS));
        foreach ([true, false] as $objectsFirst) {
            foreach ($names as $name) {
                if (!isset($this->keep[$name]) && (!$objectsFirst || \is_object($GLOBALS[$name] ?? null))) {
                    $this->forgetGlobal($name);
                }
            }
        }
        RequestEnd::dropHandlers(); // (after the destructors: they ran with the script's handlers, as under php-fpm)
    }

    private function forgetGlobal(string $name): void
    {
        try {
            unset($GLOBALS[$name]);
        } catch (ScriptExited) {
            ScriptExit::endIfFatal(); // (exit() in a destructor: the rest are still removed)
        } catch (\Throwable $e) {
            ($this->uncaught)($e);
        }
    }

    /**
     * After the answer of a request of $script: the autoloaders the script
     * registers on every request go (Autoloaders.php), and garbage cycles are collected (see
     * collectCycles()). Destructors may run in both: what they write has
     * no request to go to (Runtime::begin() drops it), an exit() there ends
     * nothing, and what they throw is logged.
     */
    public function afterAnswer(string $script): void
    {
        try {
            $this->autoloaders->forgetPerRequest($script);
            $this->collectCycles();
        } catch (ScriptExited) {
            ScriptExit::endIfFatal();
        } catch (\Throwable $e) {
            ($this->uncaught)($e);
        }
    }

    /**
     * Collect what scripts left in reference cycles (a
     * framework's application object graph is one; at the end of a php-fpm
     * request all of it goes, with its destructors) once there are GC_ROOTS
     * possible roots: PHP's own collector waits for 10,000, about a hundred
     * Laravel requests' worth of garbage (60 KB each). A run costs a few
     * microseconds even with nothing to collect (it walks the runtime's
     * own objects), so not after every request: a request that leaves no
     * cycles (25 to 40 roots) never triggers one.
     */
    private function collectCycles(): void
    {
        if (\gc_status()['roots'] >= self::GC_ROOTS) {
            \gc_collect_cycles();
        }
    }
}
