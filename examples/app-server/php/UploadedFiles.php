<?php
// is_uploaded_file() and move_uploaded_file() for the files of a multipart
// request (FormData.php): PHP accepts only paths in the list of uploads its
// SAPI received (SG(rfc1867_uploaded_files), a HashTable in sapi_globals),
// which php-cli never fills. Through FFI this adds our temporary files to
// that list for the request, and takes them out after it, so the usual
// move_uploaded_file($_FILES['f']['tmp_name'], $to) works, and so do the
// frameworks' checks (Symfony's UploadedFile::isValid(), Laravel's `file`
// rule), as under php-fpm.
//
// The list's place in sapi_globals differs between PHP versions, so it is
// found, not assumed: it is the pointer just before SG(post_max_size),
// which holds the post_max_size ini setting in bytes; exactly one such
// pair must be there, and PHP itself must then say yes to a file added to
// the list (is_uploaded_file()) and no to one that is not. Otherwise
// nothing is changed, and the two functions refuse our files, as before.

declare(strict_types=1);

namespace Folk\AppServer;

final class UploadedFiles
{
    /** The C declarations used; HashTable stays opaque (PHP's own functions work on it). */
    private const CDEF = 'typedef struct _HashTable HashTable;'
        . ' typedef struct { uint64_t value; uint32_t type_info; uint32_t u2; } zval_t;'
        . ' extern unsigned char sapi_globals[1024];'
        . ' void *_emalloc(size_t size);'
        . ' void _efree(void *ptr);'
        . ' void _zend_hash_init(HashTable *ht, uint32_t nSize, void *pDestructor, bool persistent);'
        . ' void *zend_hash_str_update(HashTable *ht, const char *key, size_t len, zval_t *pData);'
        . ' int zend_hash_str_del(HashTable *ht, const char *key, size_t len);';
    /** Bytes for a HashTable (56 on 64-bit PHP 8), with room to spare. */
    private const TABLE_BYTES = 64;

    private function __construct(
        private readonly \FFI $ffi,
        /** The list itself: the HashTable our sapi_globals slot points to. */
        private readonly \FFI\CData $table,
        /** An IS_NULL zval, the value each path is stored with. */
        private readonly \FFI\CData $null,
    ) {
    }

    /**
     * The list, hooked for this process; null when FFI, the layout or PHP's
     * own check says no. Files it registers must be forgotten before the
     * process ends: call forgetAll() from a shutdown function.
     */
    public static function hook(): ?self
    {
        if (!\extension_loaded('ffi') || \PHP_INT_SIZE !== 8) {
            return null;
        }
        try {
            $ffi = \FFI::cdef(self::CDEF);
            $words = \FFI::cast('int64_t *', \FFI::addr($ffi->sapi_globals[0]));
            $slot = self::slot($words);
            if ($slot === null) {
                return null;
            }
            $table = $ffi->cast('HashTable *', $ffi->_emalloc(self::TABLE_BYTES));
            $ffi->_zend_hash_init($table, 8, null, false);
            $null = $ffi->new('zval_t');
            $null->type_info = 1; // IS_NULL: the value is never read (see forget())
            $words[$slot] = \FFI::cast('int64_t', $table)->cdata;
            $files = new self($ffi, $table, $null);
            if (!$files->confirmed()) {
                $words[$slot] = 0;
                $ffi->_efree($table);
                return null;
            }
            return $files;
        } catch (\Throwable) {
            return null;
        }
    }

    /** The index of the list's pointer among sapi_globals' 64-bit words: the one null word before the only post_max_size. */
    private static function slot(\FFI\CData $words): ?int
    {
        $postMax = self::bytes((string) \ini_get('post_max_size'));
        if ($postMax === null || $postMax <= 0) {
            return null;
        }
        $found = [];
        for ($i = 1; $i < 128; $i++) {
            if ($words[$i] === $postMax) {
                $found[] = $i - 1;
            }
        }
        return \count($found) === 1 && $words[$found[0]] === 0 ? $found[0] : null;
    }

    /** An ini size ("8M", "512K", "1G", "65536") in bytes, or null. */
    private static function bytes(string $setting): ?int
    {
        if (!\preg_match('/^\s*(\d+)\s*([kmg]?)\s*$/i', $setting, $m)) {
            return null;
        }
        return (int) $m[1] << ['' => 0, 'k' => 10, 'm' => 20, 'g' => 30][\strtolower($m[2])];
    }

    /** PHP itself says yes to a path in the list and no to one that is not. */
    private function confirmed(): bool
    {
        $probe = \sys_get_temp_dir() . '/folk-upload-probe-' . \getmypid();
        $this->register([$probe]);
        $yes = \is_uploaded_file($probe);
        $this->forget([$probe]);
        return $yes && !\is_uploaded_file($probe);
    }

    /** @param list<string> $paths files of this request, uploads from now on */
    public function register(array $paths): void
    {
        foreach ($paths as $path) {
            $this->ffi->zend_hash_str_update($this->table, $path, \strlen($path), \FFI::addr($this->null));
        }
        $this->registered += \array_fill_keys($paths, true);
    }

    /** @param list<string> $paths take these out of the list (move_uploaded_file() took out those it moved) */
    public function forget(array $paths): void
    {
        foreach ($paths as $path) {
            $this->ffi->zend_hash_str_del($this->table, $path, \strlen($path));
            unset($this->registered[$path]);
        }
    }

    /**
     * Empty the list before PHP's own shutdown walks it: PHP reads each
     * value as the name of a file to unlink, and ours are null.
     */
    public function forgetAll(): void
    {
        $this->forget(\array_keys($this->registered));
    }

    /** @var array<string, true> paths in the list now */
    private array $registered = [];
}
