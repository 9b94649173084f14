<?php
// Request data as PHP itself decodes it for $_GET, $_COOKIE, $_POST and
// $_FILES (RequestGlobals.php fills the superglobals with it), within PHP's
// limits and with the warnings PHP gives when one is passed.

declare(strict_types=1);

namespace Folk\AppServer;

final class FormData
{
    /** C's isspace() in the C locale, which PHP's parsers use. */
    private const SPACE = " \t\n\r\v\f";

    // PHP's limits on request input, from the worker's ini. They are
    // PHP_INI_PERDIR or PHP_INI_SYSTEM settings, which a script's ini_set()
    // cannot change (php-cli reads no .user.ini), so they are read once.
    private readonly int $maxInputVars;
    private readonly int $postMaxSize;
    private readonly int $maxNesting;
    private readonly int $uploadMaxFilesize;
    private readonly int $maxFileUploads;
    private readonly int $maxBodyParts;
    private readonly bool $fileUploads;
    /** arg_separator.input is '&' (the usual): parse_str() splits at '&' only. */
    private readonly bool $ampersand;
    /** Where uploads go: upload_tmp_dir, or the system's temporary directory as PHP falls back to it. */
    private readonly string $uploadDir;
    /** zend_error_at() through FFI and a zend_string "Unknown" for warn() (false: no FFI), made at the first warning. */
    private \FFI|false|null $errors = null;
    private ?\FFI\CData $unknown = null;

    public function __construct()
    {
        $this->maxInputVars = (int) \ini_get('max_input_vars');
        $this->maxNesting = (int) \ini_get('max_input_nesting_level');
        $this->postMaxSize = self::quantity((string) \ini_get('post_max_size'));
        $this->uploadMaxFilesize = self::quantity((string) \ini_get('upload_max_filesize'));
        $this->maxFileUploads = (int) \ini_get('max_file_uploads');
        $parts = \ini_get('max_multipart_body_parts'); // (PHP 8.1.17 and 8.2.4 on: -1 means max_input_vars + max_file_uploads)
        $this->maxBodyParts = $parts === false || (int) $parts < 0 ? $this->maxInputVars + $this->maxFileUploads : (int) $parts;
        $this->fileUploads = (bool) \ini_get('file_uploads');
        $this->ampersand = \ini_get('arg_separator.input') === '&';
        $dir = (string) \ini_get('upload_tmp_dir');
        $this->uploadDir = $dir !== '' && \is_dir($dir) && \is_writable($dir) ? $dir : \sys_get_temp_dir();
    }

    /** An ini size ("8M", "2K", "1G", "65536") in bytes, as PHP reads it. */
    private static function quantity(string $setting): int
    {
        if (\function_exists('ini_parse_quantity')) {
            return @\ini_parse_quantity($setting);
        }
        $value = (int) $setting;
        return match (\strtolower(\substr(\rtrim($setting), -1))) {
            'g' => $value << 30,
            'm' => $value << 20,
            'k' => $value << 10,
            default => $value,
        };
    }

    /**
     * A warning as PHP gives it while it reads a request, before any
     * script runs: E_WARNING "in Unknown on line 0" (what error_get_last()
     * says and the log line), through FFI (zend_error_at(), with the file
     * PHP itself names "Unknown"); without FFI, trigger_error().
     */
    public function warn(string $message): void
    {
        if ($this->errors === null) {
            try {
                $this->errors = \FFI::cdef('typedef struct _zend_string zend_string;'
                    . ' void zend_error_at(int type, zend_string *filename, uint32_t lineno, const char *format, ...);'
                    . ' zend_string *zend_strpprintf(size_t max_len, const char *format, ...);');
                $this->unknown = $this->errors->zend_strpprintf(0, '%s', 'Unknown'); // (kept for the worker's life)
            } catch (\Throwable) {
                $this->errors = false;
            }
        }
        if ($this->errors !== false) {
            $this->errors->zend_error_at(\E_WARNING, $this->unknown, 0, '%s', $message);
        } else {
            \trigger_error($message, \E_USER_WARNING);
        }
    }

    /** A POST body over post_max_size: PHP's warning (with `$prefix`, where PHP's has one), and true. */
    public function overPostMaxSize(int $length, string $prefix = ''): bool
    {
        if ($this->postMaxSize > 0 && $length > $this->postMaxSize) {
            $this->warn("{$prefix}POST Content-Length of $length bytes exceeds the limit of {$this->postMaxSize} bytes");
            return true;
        }
        return false;
    }

    /**
     * $_COOKIE as PHP builds it: pairs split at ';' and leading blanks
     * dropped, values raw-URL-decoded ('+' stays '+'), names as they are
     * (not decoded), registered as any variable (name[] and name[key] make
     * arrays) but for one rule: the first of a plain name wins. At most
     * max_input_vars pairs, with PHP's warning.
     */
    public function cookies(string $header): array
    {
        $cookies = [];
        $count = 0;
        $nested = \str_contains($header, '[');
        foreach (\explode(';', $header) as $pair) {
            $pair = \ltrim($pair, self::SPACE);
            if ($pair === '' || $pair[0] === '=') {
                continue;
            }
            if (++$count > $this->maxInputVars) {
                $this->warn("PHP Request Startup: Input variables exceeded {$this->maxInputVars}. To increase the limit change max_input_vars in php.ini.");
                break;
            }
            $equals = \strpos($pair, '=');
            $name = $equals === false ? $pair : \substr($pair, 0, $equals);
            $value = $equals === false ? '' : \rawurldecode(\substr($pair, $equals + 1));
            if ($nested) {
                $this->register($cookies, $name, $value, true);
                continue;
            }
            // (No '[' anywhere: each name is a plain one.)
            $key = \strtr($name, ' .', '__');
            if ($key !== '' && !isset($cookies[$key]) && ($key === $name || !self::forbidden($key, $name))) {
                $cookies[$key] = $value;
            }
        }
        return $cookies;
    }

    /**
     * A query string as PHP reads it into $_GET (parse_str() does it the
     * same way, but names itself in the warning for a limit passed, where
     * PHP reading a request gives "PHP Request Startup").
     */
    public function query(string $query): array
    {
        $vars = [];
        if ($this->ampersand && \substr_count($query, '&') < $this->maxInputVars && \substr_count($query, '[') < $this->maxNesting) {
            \parse_str($query, $vars); // (under both limits: no warning can come)
            return $vars;
        }
        $before = \error_get_last();
        @\parse_str($query, $vars);
        $error = \error_get_last();
        if ($error !== null && $error !== $before && \str_starts_with($error['message'], 'parse_str(): ')) {
            $this->warn('PHP Request Startup: ' . \substr($error['message'], \strlen('parse_str(): ')));
        }
        return $vars;
    }

    /**
     * An application/x-www-form-urlencoded body as PHP's POST handler reads
     * it into $_POST: it counts every piece between '&'s, empty ones too,
     * and stops after max_input_vars + 1 of them (the one over the limit is
     * kept), with its warning.
     */
    public function urlencoded(string $body): array
    {
        if (\substr_count($body, '&') < $this->maxInputVars) {
            return $this->query($body); // (at most max_input_vars pieces)
        }
        $pieces = \explode('&', $body, $this->maxInputVars + 2);
        if (\count($pieces) === $this->maxInputVars + 1 && $pieces[$this->maxInputVars] === '') {
            return $this->query($body); // (max_input_vars pieces, then a last '&')
        }
        $last = $pieces[$this->maxInputVars];
        $post = $this->query(\implode('&', \array_slice($pieces, 0, $this->maxInputVars)));
        [$name, $value] = \explode('=', $last, 2) + [1 => ''];
        $this->register($post, \urldecode($name), \urldecode($value));
        $this->warn("PHP Request Startup: Input variables exceeded {$this->maxInputVars}. To increase the limit change max_input_vars in php.ini.");
        return $post;
    }

    /**
     * A multipart/form-data body as PHP's own parser (main/rfc1867.c) lays
     * it out in $_POST and $_FILES, each file's content in a temporary file
     * (the caller removes them after the request), within post_max_size,
     * upload_max_filesize, the form's MAX_FILE_SIZE, max_file_uploads,
     * max_input_vars and max_multipart_body_parts, with PHP's warnings.
     * Null when PHP would not have read the body at all (over post_max_size,
     * no boundary): php://input then still has it.
     *
     * @return array{array, array, list<string>}|null [$_POST, $_FILES, the temporary files]
     */
    public function multipart(string $body, string $contentType, int $length): ?array
    {
        if ($this->overPostMaxSize($length)) {
            return null;
        }
        $boundary = $this->boundary($contentType);
        return $boundary === null ? null : $this->parts($body, $boundary);
    }

    /**
     * The boundary of a multipart/form-data Content-Type: after "boundary"
     * (any case) and '=', quoted or up to ',' or ';'. Null, with PHP's
     * warning, when there is none.
     */
    private function boundary(string $contentType): ?string
    {
        $at = \strpos($contentType, 'boundary');
        $at = $at === false ? \stripos($contentType, 'boundary') : $at;
        $equals = $at === false ? false : \strpos($contentType, '=', $at);
        if ($equals === false) {
            $this->warn('Missing boundary in multipart/form-data POST data');
            return null;
        }
        $boundary = \substr($contentType, $equals + 1);
        if (!\str_starts_with($boundary, '"')) {
            return \substr($boundary, 0, \strcspn($boundary, ',;'));
        }
        $close = \strpos($boundary, '"', 1);
        if ($close === false) {
            $this->warn('Invalid boundary in multipart/form-data POST data');
            return null;
        }
        return \substr($boundary, 1, $close - 1);
    }

    /**
     * The parts of a multipart body, in order, into [$_POST, $_FILES, the
     * temporary files] (see multipart()). The body is read in place, by
     * offset (`$pos`), never cut into copies: only header lines, values
     * and files' contents are taken out of it.
     *
     * @return array{array, array, list<string>}
     */
    private function parts(string $body, string $boundary): array
    {
        $delimiter = "--$boundary";
        $next = "\n--$boundary";
        $pos = 0;
        $post = $files = $uploads = [];
        $fields = $maxFileSize = $anonymous = 0;
        $uploadsLeft = $this->maxFileUploads;
        $partsLeft = $this->maxBodyParts;
        $skip = !$this->fileUploads; // (once a file is skipped, PHP skips every file after it)
        while (($part = $this->nextPart($body, $pos, $delimiter, $partsLeft)) !== null) {
            [$headers, $disposition] = $part;
            [$name, $filename] = self::disposition($disposition);
            if ($filename === null && $name !== null) {
                [$value, $pos] = self::content($body, $pos, $next);
                $this->field($post, ++$fields, $name, $value);
                if (\strcasecmp($name, 'MAX_FILE_SIZE') === 0) {
                    $maxFileSize = (int) $value;
                }
                continue;
            }
            if ($this->uploadRefused($uploadsLeft)) {
                $skip = true;
            }
            if ($name === null && $filename === null) {
                $this->warn('File Upload Mime headers garbled');
                break;
            }
            $name ??= (string) $anonymous++;
            $skip = $skip || !self::bracketsClosed($name);
            if ($skip) {
                continue;
            }
            if ($filename === '') {
                $upload = ['', \UPLOAD_ERR_NO_FILE, 0];
            } else {
                $upload = $this->upload($body, $pos, $next, $maxFileSize, $uploads);
                $uploadsLeft--;
            }
            $this->registerFile($files, $name, $filename, $headers, $upload);
        }
        return [$post, $files, $uploads];
    }

    /**
     * The next part with a Content-Disposition, from `$pos` (moved past its
     * headers): [its headers, the Content-Disposition]. Null at the end of
     * the body, or past max_multipart_body_parts (with PHP's warning).
     *
     * @return array{list<array{string, string}>, string}|null
     */
    private function nextPart(string $body, int &$pos, string $delimiter, int &$partsLeft): ?array
    {
        $end = \strlen($body);
        while ($pos < $end) {
            $after = self::afterDelimiter($body, $pos, $delimiter);
            if ($after === null) {
                return null;
            }
            $pos = $after;
            $headers = self::headers($body, $pos);
            $disposition = self::header($headers, 'content-disposition');
            if ($disposition === null) {
                continue; // (what it holds is passed over on the way to the next boundary)
            }
            if (--$partsLeft < 0) {
                $this->warn("PHP Request Startup: Multipart body parts limit exceeded {$this->maxBodyParts}. To increase the limit change max_multipart_body_parts in php.ini.");
                return null;
            }
            return [$headers, $disposition];
        }
        return null;
    }

    /** A form field into `$post`, the `$count`th: past max_input_vars dropped, PHP warning at the first one only. */
    private function field(array &$post, int $count, string $name, string $value): void
    {
        if ($count <= $this->maxInputVars) {
            $this->register($post, $name, $value);
        } elseif ($count === $this->maxInputVars + 1) {
            $this->warn("PHP Request Startup: Input variables exceeded {$this->maxInputVars}. To increase the limit change max_input_vars in php.ini.");
        }
    }

    /**
     * Whether a file part is refused: file_uploads off, or max_file_uploads
     * used up (PHP warns at the first file over it only, so `$uploadsLeft`
     * goes on counting down past 0).
     */
    private function uploadRefused(int &$uploadsLeft): bool
    {
        if (!$this->fileUploads) {
            return true;
        }
        if ($uploadsLeft > 0) {
            return false;
        }
        if ($uploadsLeft-- === 0) {
            $this->warn('Maximum number of allowable file uploads has been exceeded');
        }
        return true;
    }

    /**
     * A file part's content, from `$pos` (moved past it), in a temporary
     * file added to `$uploads`, as PHP keeps an upload: within
     * upload_max_filesize and the form's MAX_FILE_SIZE (`$maxFileSize`, 0:
     * none), and UPLOAD_ERR_PARTIAL when the body ends before its boundary.
     * [tmp_name, error, size]; on an error no file is kept ('', error, 0).
     *
     * @return array{string, int, int}
     */
    private function upload(string $body, int &$pos, string $next, int $maxFileSize, array &$uploads): array
    {
        [$data, $pos, $ended] = self::content($body, $pos, $next);
        $size = \strlen($data);
        $tmp = (string) @\tempnam($this->uploadDir, 'php');
        $error = \UPLOAD_ERR_OK;
        if ($tmp === '') {
            $this->warn('File upload error - unable to create a temporary file');
            $error = \UPLOAD_ERR_NO_TMP_DIR;
        } elseif ($size > 0 && $this->uploadMaxFilesize > 0 && $size > $this->uploadMaxFilesize) {
            $error = \UPLOAD_ERR_INI_SIZE;
        } elseif ($size > 0 && $maxFileSize !== 0 && $size > $maxFileSize) {
            $error = \UPLOAD_ERR_FORM_SIZE;
        } elseif (@\file_put_contents($tmp, $data) !== $size) {
            $error = \UPLOAD_ERR_CANT_WRITE;
        } elseif (!$ended) {
            $error = \UPLOAD_ERR_PARTIAL;
        }
        if ($error !== \UPLOAD_ERR_OK) {
            if ($tmp !== '') {
                @\unlink($tmp);
            }
            return ['', $error, 0];
        }
        $uploads[] = $tmp;
        return [$tmp, $error, $size];
    }

    /**
     * A file part's entry in `$files`, as PHP lays them out:
     * $_FILES['a']['name'] for a field named a, $_FILES['a']['name']['b']
     * for a[b]. The type is the part's Content-Type up to ';', none for a
     * file not received.
     *
     * @param array{string, int, int} $upload [tmp_name, error, size]
     */
    private function registerFile(array &$files, string $name, string $filename, array $headers, array $upload): void
    {
        [$tmp, $error, $size] = $upload;
        $type = $error === \UPLOAD_ERR_OK ? (string) self::header($headers, 'content-type') : '';
        $semicolon = \strpos($type, ';');
        $type = $semicolon === false ? $type : \substr($type, 0, $semicolon);
        $open = \strpos($name, '[');
        [$base, $index] = $open !== false && \str_ends_with($name, ']') ? [\substr($name, 0, $open), \substr($name, $open)] : [$name, ''];
        $slash = \max((int) \strrpos('/' . $filename, '/'), (int) \strrpos('/' . $filename, '\\'));
        foreach (['name' => \substr($filename, $slash), 'full_path' => $filename, 'type' => $type, 'tmp_name' => $tmp, 'error' => $error, 'size' => $size] as $key => $value) {
            $this->register($files, "{$base}[{$key}]{$index}", $value);
        }
    }

    /** Where the line after the next delimiter line ("--boundary", alone on its line) starts, from `$pos` (at a line's start); null: none. */
    private static function afterDelimiter(string $body, int $pos, string $delimiter): ?int
    {
        $length = \strlen($delimiter);
        $line = $pos;
        while (true) {
            if (\substr($body, $line, $length) === $delimiter) {
                $after = $line + $length;
                if (($body[$after] ?? '') === "\n") {
                    return $after + 1;
                }
                if (($body[$after] ?? '') === "\r" && ($body[$after + 1] ?? '') === "\n") {
                    return $after + 2;
                }
            }
            $found = \strpos($body, "\n" . $delimiter, $line);
            if ($found === false) {
                return null;
            }
            $line = $found + 1;
        }
    }

    /**
     * A part's header lines from `$pos` to the empty line (or a line not
     * ended, which stays for the content, as PHP leaves it): [name, value]
     * pairs, a line starting with a blank added to the header before it.
     *
     * @return list<array{string, string}>
     */
    private static function headers(string $body, int &$pos): array
    {
        $headers = [];
        $key = null;
        $value = '';
        while (($lf = \strpos($body, "\n", $pos)) !== false) {
            $line = \substr($body, $pos, $lf - $pos);
            $pos = $lf + 1;
            if (\str_ends_with($line, "\r")) {
                $line = \substr($line, 0, -1);
            }
            if ($line === '') {
                break;
            }
            $colon = \strpos(self::SPACE, $line[0]) === false ? \strpos($line, ':') : false;
            if ($colon !== false) {
                if ($key !== null) {
                    $headers[] = [$key, $value];
                }
                $key = \substr($line, 0, $colon);
                $value = \ltrim(\substr($line, $colon + 1), self::SPACE);
            } elseif ($key !== null) {
                $value .= $line;
            }
        }
        if ($key !== null) {
            $headers[] = [$key, $value];
        }
        return $headers;
    }

    /** The first header of that name (any case), or null. */
    private static function header(array $headers, string $name): ?string
    {
        foreach ($headers as [$key, $value]) {
            if (\strcasecmp($key, $name) === 0) {
                return $value;
            }
        }
        return null;
    }

    /**
     * The name and filename parameters of a Content-Disposition as PHP
     * reads them (any disposition type; quoted with " or ', or a word up to
     * a blank; a backslash escapes a backslash or the quote; the last of
     * each wins).
     *
     * @return array{?string, ?string}
     */
    private static function disposition(string $value): array
    {
        $name = $filename = null;
        $value = \ltrim($value, self::SPACE);
        while ($value !== '') {
            $pair = self::word($value, ';');
            $value = \ltrim($value, self::SPACE);
            if (!\str_contains($pair, '=')) {
                continue;
            }
            $key = self::word($pair, '=');
            if (\strcasecmp($key, 'name') === 0) {
                $name = self::parameter($pair);
            } elseif (\strcasecmp($key, 'filename') === 0) {
                $filename = self::parameter($pair);
            }
        }
        return [$name, $filename];
    }

    /** php_ap_getword(): what comes before `$stop` (outside quotes), taken off `$line` with the `$stop`s after it. */
    private static function word(string &$line, string $stop): string
    {
        $length = \strlen($line);
        $pos = 0;
        while ($pos < $length && $line[$pos] !== $stop) {
            $quote = $line[$pos];
            if ($quote === '"' || $quote === "'") {
                for ($pos++; $pos < $length && $line[$pos] !== $quote; $pos++) {
                    if ($line[$pos] === '\\' && ($line[$pos + 1] ?? '') === $quote) {
                        $pos++;
                    }
                }
            }
            $pos++;
        }
        if ($pos >= $length) {
            [$word, $line] = [$line, ''];
            return $word;
        }
        $word = \substr($line, 0, $pos);
        $line = \substr($line, $pos + \strspn($line, $stop, $pos));
        return $word;
    }

    /** php_ap_getword_conf(): a parameter's value, quoted or a word. */
    private static function parameter(string $text): string
    {
        $text = \ltrim($text, self::SPACE);
        $quote = $text[0] ?? '';
        if ($quote === '"' || $quote === "'") {
            $text = \substr($text, 1);
            $length = \strlen($text);
        } else {
            $quote = '';
            $length = \strcspn($text, self::SPACE);
        }
        $value = '';
        for ($i = 0; $i < $length && $text[$i] !== $quote; $i++) {
            $next = $text[$i + 1] ?? '';
            $value .= $text[$i] === '\\' && ($next === '\\' || ($quote !== '' && $next === $quote)) ? $text[++$i] : $text[$i];
        }
        return $value;
    }

    /** PHP refuses a file field whose brackets are not closed, or with anything but '[' after a ']'. */
    private static function bracketsClosed(string $name): bool
    {
        $open = 0;
        for ($i = 0, $length = \strlen($name); $i < $length; $i++) {
            if ($name[$i] === '[') {
                $open++;
            } elseif ($name[$i] === ']') {
                $open--;
                if ($i + 1 < $length && $name[$i + 1] !== '[') {
                    return false;
                }
            }
            if ($open < 0) {
                return false;
            }
        }
        return $open === 0;
    }

    /**
     * A part's content from `$pos`, as PHP reads it: up to the next
     * "\n--boundary" (a CR before it dropped); with none, up to what may
     * be its start at the very end, or all. [content, where the reading
     * stopped, whether a whole boundary follows].
     *
     * @return array{string, int, bool}
     */
    private static function content(string $body, int $pos, string $next): array
    {
        $stop = \strpos($body, $next, $pos);
        $ended = $stop !== false;
        if ($stop === false) {
            $end = \strlen($body);
            for ($from = \max($pos, $end - \strlen($next) + 1); ($lf = \strpos($body, "\n", $from)) !== false; $from = $lf + 1) {
                if (\str_starts_with($next, \substr($body, $lf))) {
                    $stop = $lf;
                    break;
                }
            }
        }
        if ($stop === false) {
            return [(string) \substr($body, $pos), \strlen($body), false];
        }
        if ($stop > $pos && $body[$stop - 1] === "\r") {
            $stop--;
        }
        return [\substr($body, $pos, $stop - $pos), $stop, $ended];
    }

    /** php_is_forbidden_variable_name(): a key made to start with __Host- or __Secure- by the mangling, not as sent. */
    private static function forbidden(string $key, string $name): bool
    {
        return (\str_starts_with($key, '__Host-') && !\str_starts_with($name, '__Host-'))
            || (\str_starts_with($key, '__Secure-') && !\str_starts_with($name, '__Secure-'));
    }

    /**
     * php_register_variable_ex(): `$value` into `$vars` under `$name` as
     * PHP files it: leading spaces dropped, ' ' and '.' in the base name
     * made '_', name[a][] making arrays (an unclosed '[' made '_' too),
     * __Host-/__Secure- keys refused unless sent so, at most
     * max_input_nesting_level levels. `$cookie`: the first of a plain name
     * wins ($_COOKIE's rule).
     */
    private function register(array &$vars, string $name, string|int $value, bool $cookie = false): void
    {
        $name = self::variableName($name);
        $open = \strpos($name, '[');
        $base = \strtr($open === false ? $name : \substr($name, 0, $open), ' .', '__');
        if ($base === '') {
            return;
        }
        $target = &$vars;
        $index = $base;
        $top = true;
        if ($open !== false) {
            $at = $open;
            for ($level = 1; ; $level++) {
                if ($level > $this->maxNesting) {
                    $this->dropTooDeep($vars, $base);
                    return;
                }
                $key = self::bracketKey($name, $at);
                if ($key === false) {
                    if ($level === 1) {
                        $index = $base . '_' . \strtr(\substr($name, $open + 1), ' .[', '___');
                    }
                    break;
                }
                if ($index !== null && self::forbidden($index, $name)) {
                    return;
                }
                $target = &self::child($target, $index);
                $top = false;
                $index = $key;
                if (($name[++$at] ?? '') !== '[') {
                    break;
                }
            }
        }
        if ($index === null) {
            $target[] = $value;
        } elseif (!self::forbidden($index, $name) && !($cookie && $top && \array_key_exists($index, $target))) {
            $target[$index] = $value;
        }
    }

    /** A variable's name as PHP takes it: without its leading spaces, and up to a NUL (where PHP's C string ends). */
    private static function variableName(string $name): string
    {
        $name = \ltrim($name, ' ');
        $nul = \strpos($name, "\0");
        return $nul === false ? $name : \substr($name, 0, $nul);
    }

    /**
     * The key between the '[' at `$at` and its ']' (`$at` moved to the
     * ']'): null for "[]" (or "[ ]": one blank after '[' is let pass),
     * which appends; false for a '[' never closed.
     */
    private static function bracketKey(string $name, int &$at): string|null|false
    {
        $start = ++$at;
        if ($at < \strlen($name) && \str_contains(self::SPACE, $name[$at])) {
            $at++;
        }
        if (($name[$at] ?? '') === ']') {
            return null;
        }
        $close = \strpos($name, ']', $at);
        if ($close === false) {
            return false;
        }
        $at = $close;
        return \substr($name, $start, $close - $start);
    }

    /** The array one level down in `$parent`, under `$index` (null: a new one appended), made there if what is there is no array. */
    private static function &child(array &$parent, ?string $index): array
    {
        if ($index === null) {
            $parent[] = [];
            return $parent[\array_key_last($parent)];
        }
        if (!\is_array($parent[$index] ?? null)) {
            $parent[$index] = [];
        }
        return $parent[$index];
    }

    /** A variable nested deeper than max_input_nesting_level: PHP drops all of it (what its base name holds). */
    private function dropTooDeep(array &$vars, string $base): void
    {
        unset($vars[$base]);
        // (PHP says so only where it does not display errors.)
        \ini_get('display_errors') || $this->warn("PHP Request Startup: Input variable nesting level exceeded {$this->maxNesting}. To increase the limit change max_input_nesting_level in php.ini.");
    }
}
