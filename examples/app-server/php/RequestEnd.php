<?php
// What PHP does when a request ends, done between the requests of a worker
// that serves many (php-cli's one request never ends): the shutdown
// functions the script registered run, and are dropped; the error and
// exception handlers it set are dropped; the ini settings it changed
// (ini_set(), error_reporting(), set_include_path() ...), its locale and
// its default time zone go back to the worker's own. Without them, a framework that registers a shutdown
// function or sets an error handler as it boots (Laravel does both) would
// keep each request's application alive until the worker ends, and the
// next request would run with the last one's handlers and settings.
//
// The shutdown functions and the ini settings need PHP's own functions
// (php_call_shutdown_functions(), php_free_shutdown_functions(),
// zend_ini_deactivate(), which php-cli exports) through FFI. Without FFI,
// shutdown functions run when the worker ends, and ini changes last.

declare(strict_types=1);

namespace Folk\AppServer;

final class RequestEnd
{
    /** The worker's own locale (all categories) and default time zone, which a request may change. */
    private readonly string $locale;
    private readonly string $timezone;

    private function __construct(private readonly ?\FFI $ffi)
    {
        $this->locale = (string) \setlocale(\LC_ALL, '0');
        $this->timezone = \date_default_timezone_get();
    }

    public static function make(): self
    {
        if (!\extension_loaded('ffi')) {
            return new self(null);
        }
        try {
            return new self(\FFI::cdef('void php_call_shutdown_functions(void); void php_free_shutdown_functions(void); void zend_ini_deactivate(void);'));
        } catch (\Throwable) {
            return new self(null);
        }
    }

    /**
     * Run the shutdown functions registered so far, in order, then drop
     * them, and register $keep again (the runtime's own). A throw from one
     * ends the run, as an uncaught one does in PHP: it is returned, for the
     * caller to report. False when this cannot be done (no FFI): the
     * functions stay, and run when the worker ends.
     */
    public function runShutdownFunctions(callable $keep): \Throwable|bool
    {
        if ($this->ffi === null) {
            return false;
        }
        $thrown = true;
        try {
            $this->ffi->php_call_shutdown_functions();
        } catch (\Throwable $e) {
            $thrown = $e;
        }
        $this->ffi->php_free_shutdown_functions();
        \register_shutdown_function($keep);
        return $thrown;
    }

    /** Drop every error and exception handler set since the worker started (each set_*_handler() keeps the one before it). */
    public static function dropHandlers(): void
    {
        for ($i = 0; $i < 100_000; $i++) {
            $current = \set_error_handler(null);
            \restore_error_handler(); // (back to $current)
            if ($current === null) {
                break;
            }
            \restore_error_handler(); // the one before it, or none
        }
        for ($i = 0; $i < 100_000; $i++) {
            $current = \set_exception_handler(null);
            \restore_exception_handler();
            if ($current === null) {
                break;
            }
            \restore_exception_handler();
        }
    }

    /**
     * The ini settings a script changed go back to the worker's own
     * (php.ini, -d), and so do its locale (setlocale()) and default time
     * zone (date_default_timezone_set()), which PHP also resets when a
     * request ends. (Not mt_srand()'s seed: reseeding costs 1.6 us.)
     */
    public function restore(): void
    {
        $this->ffi?->zend_ini_deactivate();
        if (\setlocale(\LC_ALL, '0') !== $this->locale) {
            \setlocale(\LC_ALL, $this->locale);
        }
        if (\date_default_timezone_get() !== $this->timezone) {
            \date_default_timezone_set($this->timezone);
        }
    }
}
