<?php
// What a request's script reads besides $_SERVER, filled in as PHP's web
// SAPIs fill it: $_GET, $_POST, $_COOKIE, $_FILES, $_REQUEST, $_ENV and
// php://input, with the session id and uploaded files that go with them,
// and what is left of them taken away after the answer (Runtime.php).

declare(strict_types=1);

namespace Folk\AppServer;

final class RequestGlobals
{
    /**
     * $_ENV as PHP filled it at startup (empty with the usual
     * variables_order "GPCS"), given to each request afresh as php-fpm
     * gives it, with APP_RUNNING_IN_CONSOLE "false" unless it is set.
     * Naming $_ENV in this file also makes PHP create it before the loop
     * notes which globals to keep: made later, when a script first names
     * it, it would be removed after that request, and a file cached by
     * opcache is not compiled again to make it.
     */
    private array $env;
    /** Temporary files of $_FILES, removed after the request. */
    private array $uploads = [];
    /** What lets is_uploaded_file() and move_uploaded_file() accept them (null: FFI or this PHP's layout says no). */
    private ?UploadedFiles $uploaded;
    /** What keeps one request's session id from the next. */
    private SessionId $sessionId;
    /** The CGI variables of the request being served (not $_SERVER, which a script may change). */
    private array $server = [];

    public function __construct()
    {
        // PHP_SAPI is "cli"; Laravel would take every request for a console
        // command without this (Laravel Octane sets it too).
        $this->env = $_ENV + ['APP_RUNNING_IN_CONSOLE' => 'false'];
        $this->uploaded = UploadedFiles::hook();
        $this->sessionId = SessionId::make();
    }

    /** Fill them in for a request whose CGI variables are $server. */
    public function fill(array $server, string $body): void
    {
        $this->server = $server;
        $_GET = [];
        \parse_str($server['QUERY_STRING'] ?? '', $_GET);
        $_COOKIE = isset($server['HTTP_COOKIE']) ? FormData::cookies($server['HTTP_COOKIE']) : [];
        $this->sessionId->begin();
        $_POST = [];
        $_FILES = [];
        $multipart = false;
        if (($server['REQUEST_METHOD'] ?? '') === 'POST' && $body !== '') {
            $type = \strtolower($server['CONTENT_TYPE'] ?? '');
            if (\str_starts_with($type, 'application/x-www-form-urlencoded')) {
                \parse_str($body, $_POST);
            } elseif (\str_starts_with($type, 'multipart/form-data')
                && \preg_match('/boundary=(?:"([^"]+)"|([^\s;]+))/i', $server['CONTENT_TYPE'], $m)) {
                [$_POST, $_FILES, $this->uploads] = FormData::multipart($body, $m[1] !== '' ? $m[1] : $m[2]);
                $this->uploaded?->register($this->uploads);
                $multipart = true;
            }
        }
        $_REQUEST = \array_merge($_GET, $_POST);
        $_ENV = $this->env;
        // As PHP itself does, php://input is empty once it has read a multipart body into $_POST and $_FILES.
        PhpStream::$input = $multipart ? '' : $body;
        // On every request (0.1 us), not once: a script that unregistered
        // php://, or gave it back to PHP's own wrapper, would have taken
        // php://input (and php://memory) from every later request.
        PhpStream::install();
    }

    /**
     * The request's headers, as php-fpm's getallheaders() gives them. It
     * reads nginx's variables last to first, naming them back
     * (headerName()): the headers in reverse order, then
     * Content-Length and Content-Type, which nginx sends first (empty when
     * the request had none). A name seen twice keeps the first place and
     * takes the later value (Content-Type is both CONTENT_TYPE and
     * HTTP_CONTENT_TYPE, with the same value).
     *
     * @return array<string, string>
     */
    public function headers(): array
    {
        $named = [['Content-Type', $this->server['CONTENT_TYPE'] ?? ''], ['Content-Length', $this->server['CONTENT_LENGTH'] ?? '']];
        foreach ($this->server as $name => $value) {
            if (\str_starts_with($name, 'HTTP_')) {
                $named[] = [self::headerName($name), $value];
            }
        }
        $headers = [];
        foreach (\array_reverse($named) as [$name, $value]) {
            $headers[$name] = $value;
        }
        return $headers;
    }

    /**
     * A header's name from its CGI variable, by php-fpm's rule ("HTTP_X_REAL_IP":
     * "X-Real-Ip"): the first letter kept, each "_" a "-" with the letter
     * after it kept, the others in ASCII lower case (not the locale's).
     */
    private static function headerName(string $variable): string
    {
        $name = $variable[5] ?? '';
        for ($i = 6, $length = \strlen($variable); $i < $length; $i++) {
            $c = $variable[$i];
            if ($c === '_') {
                $name .= '-' . ($variable[++$i] ?? '');
            } else {
                $name .= $c >= 'A' && $c <= 'Z' ? \chr(\ord($c) + 32) : $c;
            }
        }
        return $name;
    }

    /** Before the answer goes: the session is written (the client's next request may read it) and its id forgotten. */
    public function closeSession(): void
    {
        if (\session_status() === \PHP_SESSION_ACTIVE) {
            \session_write_close();
        }
        $this->sessionId->forget();
    }

    /** After the answer: the uploaded files the script did not move are removed, and php://input emptied. */
    public function clear(): void
    {
        $this->uploaded?->forget($this->uploads);
        foreach ($this->uploads as $file) {
            @\unlink($file);
        }
        $this->uploads = [];
        $this->server = [];
        PhpStream::$input = '';
    }

    /** The process is ending: PHP's own shutdown must find no upload of ours in its list (see UploadedFiles::forgetAll()). */
    public function processEnding(): void
    {
        $this->uploaded?->forgetAll();
    }
}
