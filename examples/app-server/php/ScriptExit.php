<?php
// exit() and die() in a script end the script, not the worker, as under
// php-fpm they end the request and not the process. Scripts call them all
// the time (header('Location: ...'); exit;), and a worker that ended with
// each one made such a route cost a whole worker start (35 requests/s at
// 16 connections by hand with wrk, where the same workers serve 44,000 of
// a plain route).
//
// PHP 8 carries an exit() up the stack as an "unwind exit": an object like
// an exception that no catch matches (its class, UnwindExit, is not in the
// class table) and that skips finally blocks. It can be caught by giving
// that class a name: a class alias, through FFI, to the class entry of an
// unwind-exit object PHP makes for us. Only the runtime catches it: around
// the script (runtime.php), its shutdown functions (RequestEnd) and the
// other places script code runs between requests (Runtime: destructors,
// output callbacks, session handlers); a script's own catch (\Throwable)
// still does not match it.
//
// PHP unwinds some fatal errors the same way (running out of memory in an
// included file, for one; others, E_USER_ERROR or a time limit, jump out
// instead), after marking every object destructed: nothing may run on
// after those, so endIfFatal() lets them end the worker as before.
//
// The class entry is checked before it is named: its name must read back
// as "UnwindExit", and it must be unregistered with tables never filled in,
// as PHP 8.0 to 8.4 leave it. Otherwise nothing is changed and exit() ends
// the worker, which the server replaces (the worker says so at start).
// A caught exit(N) leaves N as the process's exit status; endIfFatal()
// puts 0 back where it finds that status (findExitStatus()).

declare(strict_types=1);

namespace Folk\AppServer;

final class ScriptExit
{
    /** The name a catch block gives exit(); a class of that name exists only once install() succeeded. */
    public const CAUGHT_AS = ScriptExited::class;

    private const CDEF = 'typedef struct { uint32_t refcount; uint32_t type_info; uint64_t h; size_t len; char val[1]; } zstr;'
        . ' typedef struct { uint32_t refcount; uint32_t type_info; uint32_t flags; uint32_t nTableMask; void *arData;'
        . ' uint32_t nNumUsed; uint32_t nNumOfElements; uint32_t nTableSize; uint32_t nInternalPointer; int64_t nNextFreeElement; void *pDestructor; } table;'
        . ' typedef struct { char type; zstr *name; void *parent; int refcount; uint32_t ce_flags;'
        . ' int default_properties_count; int default_static_members_count; void *default_properties_table;'
        . ' void *default_static_members_table; void *static_members_table;'
        . ' table function_table; table properties_info; table constants_table; } class_head;'
        . ' void _zend_hash_init(table *ht, uint32_t nSize, void *pDestructor, bool persistent);'
        . ' typedef struct { uint32_t refcount; uint32_t type_info; uint32_t handle; class_head *ce; } object_head;'
        . ' object_head *zend_create_unwind_exit(void);'
        . ' void zend_objects_store_del(object_head *object);'
        . ' int zend_register_class_alias_ex(const char *name, size_t name_len, class_head *ce, bool persistent);';
    /** ZEND_ACC_LINKED: a class lookup (a catch's, class_exists()) finds only linked classes. */
    private const LINKED = 1 << 3;
    /** The errors PHP does not return from. */
    public const FATAL = \E_ERROR | \E_PARSE | \E_CORE_ERROR | \E_COMPILE_ERROR | \E_USER_ERROR | \E_RECOVERABLE_ERROR;
    /** executor_globals as 32-bit words, and which of them is EG(exit_status) (see findExitStatus()); null if not found. */
    private static ?\FFI $executor = null;
    private static int $exitStatus = -1;

    /** Make exit() catchable as CAUGHT_AS; false (nothing changed) when FFI or this PHP's layout says no. */
    public static function install(): bool
    {
        if (\class_exists(self::CAUGHT_AS, false)) {
            return true;
        }
        if (!\extension_loaded('ffi') || \PHP_INT_SIZE !== 8) {
            return false;
        }
        try {
            $ffi = \FFI::cdef(self::CDEF);
            $class = self::unwindExitClass($ffi);
            if ($class === null) {
                return false;
            }
            // PHP never filled in this class entry's tables of methods,
            // properties and constants: empty ones, so that a lookup in the
            // class (method_exists(), reflection, a loop over
            // get_declared_classes()) finds nothing instead of crashing.
            foreach (['function_table', 'properties_info', 'constants_table'] as $tableName) {
                $ffi->_zend_hash_init(\FFI::addr($class->{$tableName}), 0, null, true);
            }
            $class->ce_flags |= self::LINKED;
            $name = self::CAUGHT_AS;
            if ($ffi->zend_register_class_alias_ex($name, \strlen($name), $class, false) !== 0 || !\class_exists($name, false)) {
                $class->ce_flags &= ~self::LINKED;
                return false;
            }
            self::findExitStatus();
            return true;
        } catch (\Throwable) {
            return false;
        }
    }

    /**
     * Call where CAUGHT_AS was caught: if what unwound was not an exit()
     * but a fatal error (the last error, which each request starts
     * without, is one), go on unwinding, out of the worker's loop: the
     * process ends as after any fatal error.
     */
    public static function endIfFatal(): void
    {
        $error = \error_get_last();
        if ($error !== null && ($error['type'] & self::FATAL) !== 0) {
            exit(255);
        }
        if (self::$executor !== null) {
            // exit(N) left N as the process's status: a worker that ends
            // later without an exit() of its own (its client aborted a
            // streamed answer) would end with the status of a request long gone.
            self::$executor->executor_globals[self::$exitStatus] = 0;
        }
    }

    /**
     * EG(exit_status), which exit() sets: the word after EG(error_reporting)
     * (the only one that follows error_reporting() through three values),
     * if an exit(7) caught here reads there as 7. Left unfound otherwise.
     */
    private static function findExitStatus(): void
    {
        try {
            $executor = \FFI::cdef('extern int32_t executor_globals[512];');
            $words = $executor->executor_globals;
            $level = \error_reporting();
            $found = null;
            foreach ([\E_ALL & ~\E_NOTICE, \E_ALL & ~\E_WARNING, \E_ERROR | \E_PARSE] as $value) {
                \error_reporting($value);
                $now = [];
                for ($i = 0; $i < 511; $i++) {
                    if ($words[$i] === $value) {
                        $now[] = $i;
                    }
                }
                $found = $found === null ? $now : \array_values(\array_intersect($found, $now));
            }
            \error_reporting($level);
            if (\count($found) !== 1) {
                return;
            }
            $at = $found[0] + 1;
            $before = $words[$at];
            try {
                exit(7);
            } catch (ScriptExited) {
            }
            if ($words[$at] === 7) {
                $words[$at] = $before;
                [self::$executor, self::$exitStatus] = [$executor, $at];
            }
        } catch (\Throwable) {
        }
    }

    /** The class entry of PHP's unwind-exit objects, if it reads as PHP 8.0 to 8.4 lay it out; the object made to find it is freed. */
    private static function unwindExitClass(\FFI $ffi): ?\FFI\CData
    {
        $object = $ffi->zend_create_unwind_exit();
        $class = $object->ce;
        $object->refcount = 0;
        $ffi->zend_objects_store_del($object);
        $name = $class->name;
        if ($name === null || $name->len !== 10 || ($class->ce_flags & self::LINKED) !== 0
            || $class->default_properties_count !== 0 || $class->default_static_members_count !== 0) {
            return null;
        }
        foreach ([$class->function_table, $class->properties_info, $class->constants_table] as $table) {
            if ($table->arData !== null || $table->nTableSize !== 0 || $table->nNumUsed !== 0) {
                return null; // (not the all-zero tables of an entry PHP never registered)
            }
        }
        return \FFI::string(\FFI::cast('char *', \FFI::addr($name->val)), 10) === 'UnwindExit' ? $class : null;
    }
}
