<?php
// php://input for the request being served (RequestGlobals.php sets it).

declare(strict_types=1);

namespace Folk\AppServer;

/** php://input for the request being served; every other php:// stream is PHP's own. */
final class PhpStream
{
    public static string $input = '';
    /** @var resource|null */
    public $context;
    /** @var resource|null a php:// stream other than input, opened by PHP's own wrapper */
    private $inner = null;
    private int $position = 0;

    public static function install(): void
    {
        \stream_wrapper_unregister('php');
        \stream_wrapper_register('php', self::class);
    }

    public function stream_open(string $path, string $mode, int $options, ?string &$openedPath): bool
    {
        if (\strcasecmp($path, 'php://input') === 0) {
            return true;
        }
        // Any other php:// URL (stdout, memory, temp, filter, ...): open it
        // with PHP's wrapper and pass every call through.
        \stream_wrapper_restore('php');
        try {
            $this->inner = $this->context === null
                ? @\fopen($path, $mode, ($options & \STREAM_USE_PATH) !== 0)
                : @\fopen($path, $mode, ($options & \STREAM_USE_PATH) !== 0, $this->context);
        } finally {
            self::install();
        }
        if ($this->inner === false) {
            $this->inner = null;
            if (($options & \STREAM_REPORT_ERRORS) !== 0) {
                \trigger_error("failed to open stream $path", \E_USER_WARNING);
            }
            return false;
        }
        return true;
    }

    public function stream_read(int $count): string|false
    {
        if ($this->inner !== null) {
            return \fread($this->inner, $count);
        }
        $chunk = (string) \substr(self::$input, $this->position, $count);
        $this->position += \strlen($chunk);
        return $chunk;
    }

    public function stream_write(string $data): int
    {
        return $this->inner === null ? 0 : (int) \fwrite($this->inner, $data);
    }

    public function stream_eof(): bool
    {
        return $this->inner !== null ? \feof($this->inner) : $this->position >= \strlen(self::$input);
    }

    public function stream_tell(): int
    {
        return $this->inner !== null ? (int) \ftell($this->inner) : $this->position;
    }

    public function stream_seek(int $offset, int $whence): bool
    {
        if ($this->inner !== null) {
            return \fseek($this->inner, $offset, $whence) === 0;
        }
        $to = match ($whence) {
            \SEEK_SET => $offset,
            \SEEK_CUR => $this->position + $offset,
            \SEEK_END => \strlen(self::$input) + $offset,
            default => -1,
        };
        if ($to < 0) {
            return false;
        }
        $this->position = $to;
        return true;
    }

    public function stream_stat(): array|false
    {
        return $this->inner !== null ? \fstat($this->inner) : ['size' => \strlen(self::$input)];
    }

    public function stream_flush(): bool
    {
        return $this->inner === null || \fflush($this->inner);
    }

    public function stream_truncate(int $size): bool
    {
        return $this->inner !== null && \ftruncate($this->inner, $size);
    }

    public function stream_lock(int $operation): bool
    {
        return $this->inner !== null && \flock($this->inner, $operation);
    }

    public function stream_set_option(int $option, int $arg1, ?int $arg2): bool
    {
        if ($this->inner === null) {
            return false;
        }
        return match ($option) {
            \STREAM_OPTION_BLOCKING => \stream_set_blocking($this->inner, $arg1 !== 0),
            \STREAM_OPTION_READ_TIMEOUT => \stream_set_timeout($this->inner, $arg1, (int) $arg2),
            \STREAM_OPTION_WRITE_BUFFER => \stream_set_write_buffer($this->inner, (int) $arg2) === 0,
            default => false,
        };
    }

    /** @return resource|false */
    public function stream_cast(int $as)
    {
        return $this->inner ?? false;
    }

    public function stream_close(): void
    {
        if ($this->inner !== null) {
            \fclose($this->inner);
            $this->inner = null;
        }
    }
}
