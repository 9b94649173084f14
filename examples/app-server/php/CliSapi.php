<?php
// php-cli's SAPI, changed through FFI to act where a script can tell as a
// web SAPI acts: header() calls are kept, flush() sends what the script's
// buffers passed down, output that no buffer holds goes to the answer, not
// to the worker's stdout, and a client that went away can end the script.
//
// php-cli's header handler says "do not add" to every header() call; with
// no handler at all, PHP keeps them in the list headers_list() reads, as
// every web SAPI does. Its flush() flushes php-cli's stdout; here it calls
// back into the runtime (Runtime::flushOutput()).

declare(strict_types=1);

namespace Folk\AppServer;

final class CliSapi
{
    private const CDEF = 'typedef struct { const char *name; const char *pretty_name;'
        . ' void *startup; void *shutdown; void *activate; void *deactivate;'
        . ' size_t (*ub_write)(const void *str, size_t length); void (*flush)(void *);'
        . ' void *get_stat; void *getenv; void *sapi_error; void *header_handler; } sapi_module_struct;'
        . ' extern sapi_module_struct sapi_module;';

    /** The handle whose callback is PHP's flush() now: kept, since the callback lives as long as it does (freed, it crashed the worker). */
    private ?\FFI $module = null;
    /** php-cli's own flush(), put back by unhook(). */
    private ?\FFI\CData $cliFlush = null;
    /** php-cli's own unbuffered write (to its stdout), put back by unhook(). */
    private ?\FFI\CData $cliWrite = null;
    /** PHP's php_handle_aborted_connection() (null: a PHP without it, or without FFI callbacks). */
    private ?\FFI $aborted = null;
    /** Ending the script for its client is under way: flushes on the way out do nothing more. */
    private bool $aborting = false;
    /** sapi_globals, for SG(headers_sent); null when its place was not found (see findHeadersSent()). */
    private ?\FFI $globals = null;
    /** SG(headers_sent)'s byte in sapi_globals. */
    private int $headersSent = -1;
    /** findHeadersSent() is writing: what reaches the write hook is its probe's. */
    private bool $probing = false;

    private function __construct()
    {
    }

    /**
     * The hooks, with $onFlush as PHP's flush() and $onWrite($bytes) taking
     * the output that no buffer holds (a script ended them all); null without
     * FFI (or under another SAPI), when header() calls are lost.
     */
    public static function hook(\Closure $onFlush, \Closure $onWrite): ?self
    {
        if (!\extension_loaded('ffi')) {
            return null;
        }
        try {
            $ffi = \FFI::cdef(self::CDEF);
            if (\FFI::string($ffi->sapi_module->name) !== 'cli') {
                return null; // another SAPI: its handler is its own business
            }
            $ffi->sapi_module->header_handler = null;
        } catch (\Throwable) {
            return null;
        }
        $sapi = new self();
        try {
            $sapi->cliFlush = $ffi->sapi_module->flush;
            $ffi->sapi_module->flush = static function ($context) use ($onFlush, $sapi): void {
                if (!$sapi->probing) {
                    $onFlush();
                }
            };
            $sapi->cliWrite = $ffi->sapi_module->ub_write;
            $ffi->sapi_module->ub_write = static function (\FFI\CData $bytes, int $length) use ($onWrite, $sapi): int {
                if (!$sapi->probing) {
                    $onWrite(\FFI::string($bytes, $length)); // (not a char *: FFI would stop it at the first NUL)
                }
                return $length;
            };
            $sapi->module = $ffi;
            $sapi->findHeadersSent();
            $sapi->aborted = \FFI::cdef('void php_handle_aborted_connection(void);');
        } catch (\Throwable) {
            // (no FFI callbacks: ob_flush() still streams, flush() alone does not;
            // or no php_handle_aborted_connection(): the script runs on, its output going nowhere)
        }
        return $sapi;
    }

    /**
     * Output that no buffer holds makes PHP send the headers first: php-cli's
     * SAPI sends none, but PHP marks them sent (SG(headers_sent)), and from
     * then on refuses every header() call, in every request the worker
     * serves. So a script may end the buffer PHP starts it with only where
     * forgetHeadersSent() can undo that. The flag's place in sapi_globals
     * differs between PHP versions and machines (it follows a struct stat),
     * so it is found, not assumed: the one byte a first unbuffered write
     * turns from 0 to 1 that, set back to 0, makes headers_sent() false.
     */
    private function findHeadersSent(): void
    {
        if (\headers_sent() || \ob_get_level() !== 0) {
            return;
        }
        $globals = \FFI::cdef('extern unsigned char sapi_globals[1024];');
        $before = \FFI::string($globals->sapi_globals, 1024);
        $this->probing = true;
        echo "\0"; // (to the write hook, which drops it)
        $this->probing = false;
        $after = \FFI::string($globals->sapi_globals, 1024);
        for ($i = 0; $i < 1024 && \headers_sent(); $i++) {
            if ($before[$i] === "\0" && $after[$i] === "\1") {
                $globals->sapi_globals[$i] = 0;
                if (\headers_sent()) {
                    $globals->sapi_globals[$i] = 1;
                } else {
                    [$this->globals, $this->headersSent] = [$globals, $i];
                }
            }
        }
        \header_remove(); // (the default Content-Type PHP added as it sent them)
    }

    /** Whether a script may end the buffer PHP starts it with (see findHeadersSent()). */
    public function canForgetHeadersSent(): bool
    {
        return $this->globals !== null;
    }

    /** The headers count as not sent: the next request's header() calls are taken. */
    public function forgetHeadersSent(): void
    {
        if ($this->globals !== null) {
            $this->globals->sapi_globals[$this->headersSent] = 0;
        }
    }

    /**
     * Give php-cli its flush() and write back, before the request ends. PHP calls
     * flush() once more as the process ends, after the request's objects
     * and FFI's callbacks are gone: our callback then crashed the worker
     * (SIGSEGV in zend_objects_store_put()), most often after a fatal error.
     */
    public function unhook(): void
    {
        if ($this->module !== null && $this->cliFlush !== null) {
            $this->module->sapi_module->flush = $this->cliFlush;
            $this->cliFlush = null;
        }
        if ($this->module !== null && $this->cliWrite !== null) {
            $this->module->sapi_module->ub_write = $this->cliWrite;
            $this->cliWrite = null;
        }
    }

    /** The script is being ended for its client (see abortScript()). */
    public function aborting(): bool
    {
        return $this->aborting;
    }

    /**
     * The client of a streamed answer is gone and the script flushed again:
     * end the script, as PHP ends one whose client aborted (the caller
     * checks ignore_user_abort()). PHP's own php_handle_aborted_connection()
     * does it: connection_aborted() turns 1 and the script stops where it
     * is. That ends the worker's loop too, so the shutdown functions run and
     * the worker ends (replaced at once) with its other connections handed
     * back, as after a fatal error. Otherwise a script that streams for ever (a
     * server-sent events loop) would hold its worker until --exec-timeout.
     */
    public function abortScript(): void
    {
        if ($this->aborted === null) {
            return;
        }
        $this->aborting = true;
        $request = ($_SERVER['REQUEST_METHOD'] ?? '') . ' ' . ($_SERVER['REQUEST_URI'] ?? '');
        \error_log("$request: the client went away during a streamed answer: the script was ended (ignore_user_abort() keeps it running)");
        $this->aborted->php_handle_aborted_connection();
    }
}
