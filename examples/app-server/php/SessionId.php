<?php
// PHP's sessions in a worker that serves many requests. PHP forgets a
// request's session id (PS(id)) when the request ends; php-cli's one
// request never ends, so session_start() in the next request would take
// up the last client's session instead of reading the cookie of its own.
// forget() does what the end of a request does to the id: through FFI, it
// releases PS(id) in ps_globals (the session module's globals) and sets it
// to null, after checking the layout (the id follows save_path and
// session_name there, and session_name must read back as session_name()).
// Without FFI, or with another layout, each request starts with
// session_id() set from its own cookie (or empty: a new session), which
// keeps sessions apart too, but then PHP sends the cookie again with every
// answer.

declare(strict_types=1);

namespace Folk\AppServer;

final class SessionId
{
    /** zend_string flags (in its type_info) marking an interned string: never freed. */
    private const INTERNED = 1 << 6;

    private function __construct(private readonly ?\FFI $ffi)
    {
    }

    /** The session id handling for this process (FFI when it can be trusted). */
    public static function make(): self
    {
        return new self(self::hook());
    }

    private static function hook(): ?\FFI
    {
        if (!\extension_loaded('ffi') || !\extension_loaded('session') || \PHP_INT_SIZE !== 8) {
            return null;
        }
        try {
            $ffi = \FFI::cdef('typedef struct { uint32_t refcount; uint32_t type_info; uint64_t h; size_t len; char val[1]; } zstr;'
                . ' typedef struct { char *save_path; char *session_name; zstr *id; } ps_head;'
                . ' extern ps_head ps_globals; void _efree(void *ptr);');
            $name = $ffi->ps_globals->session_name;
            return $name !== null && \FFI::string($name) === \session_name() && self::idOf($ffi) === \session_id() ? $ffi : null;
        } catch (\Throwable) {
            return null;
        }
    }

    /** PS(id) as a PHP string ('' for none). */
    private static function idOf(\FFI $ffi): string
    {
        $id = $ffi->ps_globals->id;
        return $id === null ? '' : \FFI::string($id->val, $id->len);
    }

    /** Before a request: without FFI, take the id from the request's cookie ('' : a new session at session_start()). */
    public function begin(): void
    {
        if ($this->ffi === null && \session_status() === \PHP_SESSION_NONE) {
            $cookie = $_COOKIE[\session_name()] ?? null;
            \session_id(\is_string($cookie) ? $cookie : '');
        }
    }

    /** After a request (its session written and closed): forget its id, as PHP does when a request ends. */
    public function forget(): void
    {
        if ($this->ffi === null || \session_id() === '' || \session_status() !== \PHP_SESSION_NONE) {
            return; // (no id: nothing to forget, and no FFI call)
        }
        $globals = $this->ffi->ps_globals;
        $id = $globals->id;
        if ($id === null) {
            return;
        }
        // zend_string_release(): an interned string is shared, never freed.
        if (($id->type_info & self::INTERNED) === 0 && --$id->refcount === 0) {
            $this->ffi->_efree($id);
        }
        $globals->id = null;
    }
}
