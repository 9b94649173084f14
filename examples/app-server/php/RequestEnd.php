<?php
// What PHP does when a request ends, done between the requests of a worker
// that serves many (php-cli's one request never ends): the shutdown
// functions the script registered run, and are dropped; the error and
// exception handlers it set are dropped; the ini settings it changed
// (ini_set(), error_reporting(), set_include_path() ...), its locale, its
// default time zone, the environment variables it putenv(), its umask,
// libxml's error mode, errors, entity loader and stream context, and
// mbstring's encodings go back to the worker's own, and mt_rand() seeds itself afresh. Without them, a framework that registers a shutdown
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
    /** Its umask, libxml's error mode (null without libxml) and mbstring's settings (see mbstring()). */
    private readonly int $umask;
    private readonly ?bool $libxmlErrors;
    private readonly array $mbstring;

    /**
     * PHP's functions and, first in basic_globals, the table of shutdown
     * functions (BG(user_shutdown_function_names)) and, right after it,
     * the table of a request's putenv() calls (BG(putenv_ht)).
     */
    private const CDEF = 'void php_call_shutdown_functions(void); void php_free_shutdown_functions(void); void zend_ini_deactivate(void);'
        . ' typedef struct { uint32_t refcount; uint32_t type_info; uint32_t flags; uint32_t nTableMask; void *arData;'
        . ' uint32_t nNumUsed; uint32_t nNumOfElements; uint32_t nTableSize; uint32_t nInternalPointer; int64_t nNextFreeElement; void *pDestructor; } table_head;'
        . ' typedef struct { table_head *user_shutdown_function_names; table_head putenv_ht; } basic_head;'
        . ' void zend_hash_clean(table_head *ht);'
        . ' extern basic_head basic_globals;'
        . ' extern int64_t executor_globals[256];';

    private function __construct(
        private readonly ?\FFI $ffi,
        /** The number of shutdown functions can be read (checked in make()): run them only when a script added some. */
        private readonly bool $counted = false,
        /** Which word of executor_globals is EG(modified_ini_directives), null if unknown: restore ini only when it is set. */
        private readonly ?int $iniSlot = null,
        /** random_globals (PHP 8.2+), whose mt19937_seeded flag makes mt_rand() seed itself afresh; null if not found. */
        private readonly ?\FFI $random = null,
        /** BG(putenv_ht) is where make() checked it is: emptying it undoes a request's putenv() calls. */
        private readonly bool $putenv = false,
    ) {
        $this->locale = (string) \setlocale(\LC_ALL, '0');
        $this->timezone = \date_default_timezone_get();
        $this->umask = \umask();
        $this->libxmlErrors = \function_exists('libxml_use_internal_errors') ? \libxml_use_internal_errors() : null;
        $this->mbstring = self::mbstring();
    }

    /**
     * mbstring's settings that are not ini settings, which PHP resets when
     * a request ends: each function's name and what it gives now (with no
     * argument, each is the getter; given that value, the setter).
     *
     * @return array<string, mixed>
     */
    private static function mbstring(): array
    {
        $settings = [];
        foreach (['mb_internal_encoding', 'mb_regex_encoding', 'mb_substitute_character', 'mb_detect_order', 'mb_http_output'] as $function) {
            if (\function_exists($function)) { // (mb_regex_encoding: not without Oniguruma)
                $settings[$function] = $function();
            }
        }
        return $settings;
    }

    /** Call before registering any shutdown function of the runtime's own: it checks where PHP counts them. */
    public static function make(): self
    {
        if (!\extension_loaded('ffi')) {
            return new self(null);
        }
        try {
            $ffi = \FFI::cdef(self::CDEF);
        } catch (\Throwable) {
            return new self(null);
        }
        return new self($ffi, self::countable($ffi), self::iniSlot($ffi), self::random(), self::putenvTable($ffi));
    }

    /**
     * Whether the second field of basic_globals is the table of putenv()
     * calls, which PHP empties when a request ends, each entry's destructor
     * putting the variable back as it was: one putenv() must add an entry,
     * and emptying the table must undo it. Not when it holds entries
     * already (a --prototype preload's: they stay, as its other settings).
     */
    private static function putenvTable(\FFI $ffi): bool
    {
        try {
            $table = $ffi->basic_globals->putenv_ht;
            if ($table->nNumOfElements !== 0 || \getenv('FOLK_PUTENV_PROBE') !== false) {
                return false;
            }
            \putenv('FOLK_PUTENV_PROBE=1');
            if ($ffi->basic_globals->putenv_ht->nNumOfElements !== 1) {
                \putenv('FOLK_PUTENV_PROBE');
                return false;
            }
            $ffi->zend_hash_clean(\FFI::addr($ffi->basic_globals->putenv_ht));
            return \getenv('FOLK_PUTENV_PROBE') === false && $ffi->basic_globals->putenv_ht->nNumOfElements === 0;
        } catch (\Throwable) {
            return false;
        }
    }

    /**
     * random_globals, if its mt19937_seeded flag is where PHP 8.2 keeps it:
     * it turns true when mt_rand() seeds itself, and a false written there
     * makes the next mt_rand() seed again. (PHP 8.1 has no such symbol.)
     */
    private static function random(): ?\FFI
    {
        try {
            $ffi = \FFI::cdef('typedef struct { void *combined_lcg; bool combined_lcg_seeded; void *mt19937; bool mt19937_seeded; int random_fd; } random_head;'
                . ' extern random_head random_globals;');
            $globals = $ffi->random_globals;
            \mt_rand();
            $seeded = $globals->mt19937_seeded;
            $globals->mt19937_seeded = false;
            \mt_rand();
            return $seeded === true && $globals->mt19937_seeded === true ? $ffi : null;
        } catch (\Throwable) {
            return null;
        }
    }

    /**
     * The word of executor_globals that is EG(modified_ini_directives):
     * the only one that is null, is set by an ini_set(), and is null again
     * after zend_ini_deactivate(). (Any ini change made before, a
     * --prototype preload's, is undone here.)
     */
    private static function iniSlot(\FFI $ffi): ?int
    {
        try {
            $ffi->zend_ini_deactivate();
            $words = $ffi->executor_globals;
            $before = [];
            for ($i = 0; $i < 256; $i++) {
                $before[$i] = $words[$i];
            }
            \ini_set('precision', (string) ((int) \ini_get('precision') + 1));
            $set = [];
            foreach ($before as $i => $word) {
                if ($word === 0 && $words[$i] !== 0) {
                    $set[] = $i;
                }
            }
            $ffi->zend_ini_deactivate();
            $found = \array_values(\array_filter($set, static fn (int $i): bool => $words[$i] === 0));
            return \count($found) === 1 ? $found[0] : null;
        } catch (\Throwable) {
            return null;
        }
    }

    /**
     * Whether basic_globals starts with the table of shutdown functions,
     * as in every PHP 8: the count read there follows a registration (and,
     * when the probe was the only one, PHP's own freeing of the table). A
     * table that held some already (a --prototype preload's) is left as it
     * is, probe included (a no-op): they run after the first request.
     */
    private static function countable(\FFI $ffi): bool
    {
        try {
            $before = self::count($ffi);
            \register_shutdown_function(static function (): void {
            });
            if (self::count($ffi) !== $before + 1) {
                return false;
            }
            if ($before > 0) {
                return true;
            }
            $ffi->php_free_shutdown_functions();
            return self::count($ffi) === 0;
        } catch (\Throwable) {
            return false;
        }
    }

    /** Shutdown functions registered now, as basic_globals says. */
    private static function count(\FFI $ffi): int
    {
        $table = $ffi->basic_globals->user_shutdown_function_names;
        return $table === null ? 0 : $table->nNumOfElements;
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
        if ($this->counted && self::count($this->ffi) <= 1) {
            return true; // only $keep: nothing to run (three FFI calls saved, most of this class's cost)
        }
        $thrown = true;
        try {
            $this->ffi->php_call_shutdown_functions();
        } catch (ScriptExited) {
            // exit() in one: PHP skipped the ones after it, as under php-fpm (ScriptExit.php)
        } catch (\Throwable $e) {
            $thrown = $e;
        }
        // A fatal error PHP jumps out of (E_USER_ERROR, a time limit) ends
        // the list inside PHP's own zend_try: the call returns as if all
        // went well, from a process no longer fit to serve (its cycle
        // collector off for good). The worker ends, as after any fatal error.
        ScriptExit::endIfFatal();
        try {
            $this->ffi->php_free_shutdown_functions(); // (what their closures held goes: destructors run)
        } catch (ScriptExited) {
            ScriptExit::endIfFatal();
        } catch (\Throwable $e) {
            $thrown = $thrown === true ? $e : $thrown;
        }
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
     * (php.ini, -d), and so do its locale (setlocale()), default time
     * zone (date_default_timezone_set()) and putenv() calls, which PHP
     * also undoes when a request ends; and mt_rand() seeds itself afresh the next time it is
     * used, as in each php-fpm request, so that a script's mt_srand() does
     * not leave the next requests a known sequence. Then what extensions
     * reset (restoreExtensions()).
     */
    public function restore(): void
    {
        $this->restoreCore();
        $this->restoreExtensions();
    }

    private function restoreCore(): void
    {
        if ($this->putenv && $this->ffi->basic_globals->putenv_ht->nNumOfElements !== 0) {
            $this->ffi->zend_hash_clean(\FFI::addr($this->ffi->basic_globals->putenv_ht));
        }
        if ($this->random !== null && $this->random->random_globals->mt19937_seeded) {
            $this->random->random_globals->mt19937_seeded = false;
        }
        if ($this->ffi !== null && ($this->iniSlot === null || $this->ffi->executor_globals[$this->iniSlot] !== 0)) {
            $this->ffi->zend_ini_deactivate();
        }
        if (\setlocale(\LC_ALL, '0') !== $this->locale) {
            \setlocale(\LC_ALL, $this->locale);
        }
        if (\date_default_timezone_get() !== $this->timezone) {
            \date_default_timezone_set($this->timezone);
        }
    }

    /**
     * What PHP and its extensions reset when a request ends: the umask
     * (umask(), as Symfony's front controllers once set it), libxml's
     * error mode, its errors, its entity loader and its stream context
     * (libxml_use_internal_errors(true) is what a script sets to read
     * untrusted XML quietly: left on, the next script's XML errors would
     * pile up unseen, and libxml_get_last_error() would report one on valid
     * XML), and mbstring's encodings.
     */
    private function restoreExtensions(): void
    {
        \umask($this->umask);
        if ($this->libxmlErrors !== null) {
            \libxml_use_internal_errors($this->libxmlErrors);
            \libxml_clear_errors(); // (the list, and the last error, which turning internal errors off keeps)
            if (!\function_exists('libxml_get_external_entity_loader') || \libxml_get_external_entity_loader() !== null) {
                \libxml_set_external_entity_loader(null); // (PHP 8.1 cannot tell whether one is set; the worker never sets one)
            }
            // Its stream context: a script's (libxml_set_streams_context(),
            // with a token in its headers, say) would go with every later
            // request's XML loads. The default is what libxml uses with none.
            \libxml_set_streams_context(\stream_context_get_default());
        }
        foreach ($this->mbstring as $function => $value) {
            if ($function() !== $value) {
                $function($value);
            }
        }
    }
}
