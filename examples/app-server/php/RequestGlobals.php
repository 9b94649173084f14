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
    /** How PHP decodes request data, within the ini's limits. */
    private FormData $form;
    // From the worker's ini, read once (PHP_INI_PERDIR settings: a script's
    // ini_set() cannot change them): which of $_GET, $_POST and $_COOKIE
    // PHP fills (variables_order), whether it reads a POST body at all
    // (enable_post_data_reading), and $_REQUEST's sources in order
    // (request_order, or variables_order where it is not set: G, P, C).
    private bool $get;
    private bool $post;
    private bool $cookie;
    private bool $readPost;
    /** @var list<'G'|'P'|'C'> */
    private array $requestOrder = [];

    public function __construct()
    {
        // PHP_SAPI is "cli"; Laravel would take every request for a console
        // command without this (Laravel Octane sets it too).
        $this->env = $_ENV + ['APP_RUNNING_IN_CONSOLE' => 'false'];
        $this->uploaded = UploadedFiles::hook();
        $this->sessionId = SessionId::make();
        $this->form = new FormData();
        $variables = \strtoupper((string) \ini_get('variables_order'));
        $this->get = \str_contains($variables, 'G');
        $this->post = \str_contains($variables, 'P');
        $this->cookie = \str_contains($variables, 'C');
        $this->readPost = (bool) \ini_get('enable_post_data_reading');
        // (ini_get() says '' for both an empty request_order and none: ini_get_all() tells them apart.)
        $order = \strtoupper(\ini_get_all(null, false)['request_order'] ?? $variables);
        for ($i = 0, $length = \strlen($order); $i < $length; $i++) {
            if (\str_contains('GPC', $order[$i]) && !\in_array($order[$i], $this->requestOrder, true)) {
                $this->requestOrder[] = $order[$i];
            }
        }
    }

    /**
     * Fill them in for a request whose CGI variables are $server, in the
     * order PHP does (so that its last warning, if any, is PHP's last):
     * a POST body over post_max_size, $_GET, $_POST and $_FILES, $_COOKIE.
     */
    public function fill(array $server, string $body): void
    {
        $this->server = $server;
        if (isset($server['HTTP_AUTHORIZATION'])) {
            $this->authorization($server['HTTP_AUTHORIZATION']);
        }
        $input = $body;
        $read = $this->readPost && ($server['REQUEST_METHOD'] ?? '') === 'POST';
        if ($read) {
            $contentType = $server['CONTENT_TYPE'] ?? ''; // (nginx always sends one, empty when the request had none)
            $length = ($server['CONTENT_LENGTH'] ?? '') !== '' ? (int) $server['CONTENT_LENGTH'] : \strlen($body);
            // The media type as PHP matches it: in lower case, up to ';', ',' or ' '.
            $type = \strtolower(\substr($contentType, 0, \strcspn($contentType, ';, ')));
            $multipart = $type === 'multipart/form-data';
            // PHP reads any other POST body itself, first, and not one over post_max_size.
            $read = $multipart || !$this->form->overPostMaxSize($length, 'PHP Request Startup: ');
        }
        $_GET = $this->get && ($server['QUERY_STRING'] ?? '') !== '' ? $this->form->query($server['QUERY_STRING']) : [];
        $_POST = [];
        $_FILES = [];
        if ($read && $this->post) {
            if ($multipart) {
                $form = $this->form->multipart($body, $contentType, $length);
                if ($form !== null) {
                    [$_POST, $_FILES, $this->uploads] = $form;
                    $this->uploaded?->register($this->uploads);
                    // As PHP itself does, php://input is empty once it has read a multipart body into $_POST and $_FILES.
                    $input = '';
                }
            } elseif ($type === 'application/x-www-form-urlencoded' && $body !== '') {
                $_POST = $this->form->urlencoded($body);
            }
        }
        $_COOKIE = $this->cookie && isset($server['HTTP_COOKIE']) ? $this->form->cookies($server['HTTP_COOKIE']) : [];
        $this->sessionId->begin();
        $_REQUEST = $this->request();
        $_ENV = $this->env;
        PhpStream::$input = $input;
        // On every request (0.1 us), not once: a script that unregistered
        // php://, or gave it back to PHP's own wrapper, would have taken
        // php://input (and php://memory) from every later request.
        PhpStream::install();
    }

    /**
     * $_REQUEST as PHP builds it: $_GET, $_POST and $_COOKIE in
     * request_order, each merged into what is there (php_autoglobal_merge():
     * keys kept as they are, numeric ones too, a later value replacing an
     * earlier one, but arrays on both sides merged in the same way).
     */
    private function request(): array
    {
        $request = [];
        foreach ($this->requestOrder as $source) {
            $vars = match ($source) {
                'G' => $_GET,
                'P' => $_POST,
                'C' => $_COOKIE,
            };
            if ($request === []) {
                $request = $vars;
            } elseif ($vars !== []) {
                self::merge($request, $vars);
            }
        }
        return $request;
    }

    private static function merge(array &$into, array $from): void
    {
        foreach ($from as $key => $value) {
            if (\is_array($value) && \is_array($into[$key] ?? null)) {
                self::merge($into[$key], $value);
            } else {
                $into[$key] = $value;
            }
        }
    }

    /**
     * What an Authorization header adds to $_SERVER. PHP
     * (php_handle_auth_data()): "Basic " (in any case) and base64 (decoded
     * as base64_decode() does, skipping what is not base64) holding
     * user:password, split at the first ':' (each read up to a NUL), gives
     * PHP_AUTH_USER, and PHP_AUTH_PW unless the password is empty;
     * otherwise "Digest " (in any case) gives PHP_AUTH_DIGEST, the rest.
     * PHP adds them after the web server's variables, before REQUEST_TIME.
     * PHP sets no AUTH_TYPE (nginx sends none). And nginx's REMOTE_USER
     * ($remote_user): the user of Basic credentials that are strict base64
     * up to any '=', with a ':' after a user that is not empty.
     */
    private function authorization(string $header): void
    {
        $auth = [];
        if (\strncasecmp($header, 'Basic ', 6) === 0) {
            $decoded = \base64_decode(\substr($header, 6));
            $credentials = \strstr($decoded . "\0", "\0", true);
            $colon = \strpos($credentials, ':');
            if ($colon !== false) {
                $auth['PHP_AUTH_USER'] = \substr($credentials, 0, $colon);
                if ($colon + 1 < \strlen($credentials)) {
                    $auth['PHP_AUTH_PW'] = \substr($credentials, $colon + 1);
                }
            }
            $encoded = \ltrim(\substr($header, 6), ' ');
            $encoded = \substr($encoded, 0, \strcspn($encoded, '='));
            if ($encoded !== '' && \strlen($encoded) % 4 !== 1
                && \strspn($encoded, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') === \strlen($encoded)
                && \array_key_exists('REMOTE_USER', $_SERVER)) {
                $user = (string) \base64_decode($encoded);
                $colon = \strpos($user, ':');
                if ($colon !== false && $colon > 0) {
                    $_SERVER['REMOTE_USER'] = \strstr(\substr($user, 0, $colon) . "\0", "\0", true);
                }
            }
        }
        if ($auth === [] && \strncasecmp($header, 'Digest ', 7) === 0) {
            $auth['PHP_AUTH_DIGEST'] = \substr($header, 7);
        }
        if ($auth !== []) {
            $time = \array_intersect_key($_SERVER, ['REQUEST_TIME_FLOAT' => true, 'REQUEST_TIME' => true]);
            unset($_SERVER['REQUEST_TIME_FLOAT'], $_SERVER['REQUEST_TIME']);
            $_SERVER = $_SERVER + $auth + $time;
        }
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
