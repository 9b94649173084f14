<?php
// Runs ordinary PHP scripts one request at a time, the way php-fpm runs
// them: $_SERVER, $_GET, $_POST, $_COOKIE, $_FILES and $_REQUEST filled in,
// php://input giving the body, header() and http_response_code() deciding the
// response, echo writing its body. Where requests come from and where their
// responses go is a request source's business (TaskSource.php: tasks from
// the Node front; ConnectionSource.php: HTTP connections the front hands
// over); runtime.php runs the loop. ScriptPath.php picks the script,
// RequestGlobals.php fills the superglobals but $_SERVER, CliSapi.php
// makes php-cli keep header() calls and send on flush(), RequestEnd.php
// does what PHP does when a request ends, Leftovers.php takes away what
// the script left in the worker.

declare(strict_types=1);

namespace Folk\AppServer;

use Folk\Worker;

final class Runtime
{
    /** The script to include for the current request (read by the loop in runtime.php). */
    public string $script = '';
    /** What a script leaves in the worker, taken away when it ends. */
    public readonly Leftovers $leftovers;

    private Worker $worker;
    /** Where the requests come from (serveFrom()). */
    private TaskSource|ConnectionSource $source;
    /** Sends the response of the request being served; null between requests. */
    private $answer = null;
    /** Sends part of it while the script runs (it flushed), if the request source can; see collect(). */
    private $stream = null;
    /** Sends it whole while the script runs on (fastcgi_finish_request()), if the request source can. */
    private $early = null;
    /** fastcgi_finish_request() answered the request: what the script writes from now on is dropped. */
    private bool $answeredEarly = false;
    /** The runtime of this process: for the loop in runtime.php, and fastcgi_finish_request(). */
    private static ?self $current = null;
    /** Output a script flushed through our buffer (ob_flush, flush of its own buffers), or wrote past it (written()). */
    private string $flushed = '';
    /** Our buffer (collect()) is there, at the bottom; a script may end it, as php-fpm's output_buffering. */
    private bool $collecting = false;
    /** $_GET, $_POST, $_COOKIE, $_FILES, $_REQUEST, $_ENV, php://input and what goes with them. */
    private RequestGlobals $globals;
    /** What PHP does at the end of a request: shutdown functions, handlers, ini settings. */
    private RequestEnd $requestEnd;
    /** shutdown(), registered as a shutdown function (again after each request's run of them). */
    private \Closure $onShutdown;
    /** Shutdown functions are running between two requests, not because the process ends. */
    private bool $betweenRequests = false;
    /** Times shutdown() was called while they ran: twice means PHP runs them again at its end (see shutdown()). */
    private int $calledBetween = 0;
    /** finish() is called from the output handler, where PHP allows no ob_*() call. */
    private bool $inHandler = false;
    /** shutdown() has put itself after the shutdown functions the script registered. */
    private bool $deferred = false;
    private array $base;
    private string $root;
    private ScriptPath $scripts;
    /** php-cli's SAPI, hooked to keep header() calls and send on flush(). */
    private CliSapi $sapi;
    /** The client of the answer being streamed is gone. */
    private bool $clientGone = false;
    /** The process is ending (exit, a fatal error): the answer says so, see finish(). */
    private bool $ending = false;

    public function __construct(Worker $worker)
    {
        $this->worker = $worker;
        $root = \getenv('FOLK_APP_ROOT') ?: \getcwd();
        $real = \realpath($root);
        if ($real === false || !\is_dir($real)) {
            $worker->reportError("document root $root is not a directory", true);
            \fwrite(\STDERR, "app server: document root $root is not a directory\n");
            exit(78);
        }
        $this->root = $real;
        $index = (string) \getenv('FOLK_APP_INDEX');
        $this->scripts = new ScriptPath($real, $index === '' ? null : '/' . \ltrim($index, '/'));
        // What php-fpm behind nginx puts in every request's $_SERVER (with
        // clear_env, its default, the environment is only USER and HOME,
        // from the pool user's passwd entry: here the worker's).
        $account = \function_exists('posix_getpwuid') ? (\posix_getpwuid(\posix_geteuid()) ?: []) : [];
        $this->base = \array_filter([
            'USER' => $account['name'] ?? (\getenv('USER') ?: null),
            'HOME' => $account['dir'] ?? (\getenv('HOME') ?: null),
            'GATEWAY_INTERFACE' => 'CGI/1.1',
            'SERVER_SOFTWARE' => 'folk-app-server',
            'DOCUMENT_ROOT' => $this->root,
            'REDIRECT_STATUS' => '200',
        ], fn ($v) => $v !== null);
        // php-cli flushes after every write that no buffer holds; php-fpm's
        // php.ini does not (and a script may end the buffer it starts with).
        \ini_set('implicit_flush', '0');
        $sapi = CliSapi::hook($this->flushOutput(...), $this->written(...));
        if ($sapi === null) {
            // Without it every header() call is dropped, a redirect's
            // Location and a session's cookie too (a 302 with nowhere to go).
            $message = 'PHP FFI is not available, and without it php-cli drops every header() call: enable ffi (ffi.enable=preload, the default) or install the ffi extension';
            $worker->reportError($message, true);
            \fwrite(\STDERR, "app server: $message\n");
            exit(78);
        }
        $this->sapi = $sapi;
        $this->globals = new RequestGlobals();
        $this->requestEnd = RequestEnd::make();
        if (!ScriptExit::install()) {
            $worker->reportError('exit() cannot be caught on this PHP (its UnwindExit class entry is not as expected): each exit() in a script ends its worker, which is replaced');
        }
        $this->leftovers = new Leftovers($this->uncaught(...));
        self::$current = $this;
        $this->startCollecting();
        $this->onShutdown = $this->shutdown(...);
        \register_shutdown_function($this->onShutdown);
    }

    /** flush(): what a script's buffers passed down to ours goes to the client now (its own open buffers keep theirs, as under php-fpm). */
    private function flushOutput(): void
    {
        if ($this->sapi->aborting()) {
            return;
        }
        if ($this->stream !== null && $this->collecting && \ob_get_level() === 1) {
            @\ob_flush(); // (collect() sends it)
        } elseif ($this->stream !== null && !$this->collecting && \ob_get_level() === 0) {
            $this->sendFlushed();
        }
        if ($this->clientGone && !\ignore_user_abort()) {
            $this->sapi->abortScript();
        }
    }

    /**
     * The buffer every request writes into, at the bottom, as php-fpm's
     * output_buffering: a script may end it (a download script's
     * `while (ob_get_level()) ob_end_clean();`), and what it writes after
     * reaches written() instead, through php-cli's unbuffered write.
     */
    private function startCollecting(): void
    {
        // (Not removable where PHP's record that headers were sent cannot be undone.)
        $removable = $this->sapi->canForgetHeadersSent() ? \PHP_OUTPUT_HANDLER_REMOVABLE : 0;
        \ob_start([$this, 'collect'], 0, \PHP_OUTPUT_HANDLER_CLEANABLE | \PHP_OUTPUT_HANDLER_FLUSHABLE | $removable);
        $this->collecting = true;
    }

    /**
     * The output buffer's handler: keep what a script flushes, drop what it
     * cleans. A flush (ob_flush(), or flush() through flushOutput()) sends
     * what was kept when the request source can stream it.
     */
    public function collect(string $buffer, int $phase): string
    {
        $final = ($phase & \PHP_OUTPUT_HANDLER_FINAL) !== 0;
        if ($final && \count(\debug_backtrace(\DEBUG_BACKTRACE_IGNORE_ARGS, 2)) > 1) {
            // A script ended it (ob_end_clean(), ob_get_clean(), ob_end_flush()):
            // the process is not ending, and neither is the request.
            $this->collecting = false;
            $final = false;
        }
        if (($phase & \PHP_OUTPUT_HANDLER_CLEAN) === 0) {
            if (!$this->answeredEarly) {
                $this->flushed .= $buffer;
            }
            if ($final && $this->answer !== null) {
                // The process is ending inside a request (exit in a
                // shutdown function, a fatal error there): answer it now.
                $this->ending = true;
                $this->inHandler = true;
                $this->finish();
            } elseif (($phase & \PHP_OUTPUT_HANDLER_FLUSH) !== 0) {
                $this->sendFlushed();
            }
        }
        if ($final) {
            $this->sapi->unhook(); // (the request is ending: see CliSapi::unhook())
        }
        return '';
    }

    /** Output that no buffer holds: the script ended ours (see startCollecting()). */
    private function written(string $bytes): void
    {
        if (!$this->answeredEarly) {
            $this->flushed .= $bytes;
        }
    }

    /** What the script flushed goes to the client now, when the request source can stream it. */
    private function sendFlushed(): void
    {
        if ($this->stream === null || $this->flushed === '') {
            return;
        }
        [$status, $lines] = $this->head();
        $sent = ($this->stream)($status, $lines, $this->flushed);
        if ($sent !== false) {
            $this->flushed = '';
        }
        $this->clientGone = $sent === null;
    }

    /** Where the requests come from: the front (TaskSource), or connections (ConnectionSource, direct mode). */
    public function serveFrom(TaskSource|ConnectionSource $source): void
    {
        $this->source = $source;
    }

    /**
     * The next request with a script to run, begun (see begin()): false
     * when the worker is to end. Requests that need no script (a 404) are
     * answered here.
     */
    public function next(): bool
    {
        while (($request = $this->source->next()) !== null) {
            if ($this->begin(...$request)) {
                return true;
            }
            $this->answered();
        }
        return false;
    }

    /**
     * Set up PHP's request state for a request: $vars are its CGI
     * variables (what nginx's fastcgi_params give), $answer($status,
     * $headerLines, $body, $ending) sends the response, and
     * $stream($status, $headerLines, $part), if given, sends part of it
     * when the script flushes (false: not sent, it stays in the body), and
     * $early($status, $headerLines, $body) sends it whole when the script
     * calls fastcgi_finish_request(). False when it was answered here (no
     * script to run: a 404).
     */
    public function begin(array $vars, string $body, callable $answer, ?callable $stream = null, ?callable $early = null): bool
    {
        $this->answer = $answer;
        $this->stream = $stream;
        $this->early = $early;
        $server = \array_replace($this->base, $vars);
        $this->startRequest();

        $found = $this->scripts->resolve($server['REQUEST_URI'] ?? '/');
        if ($found === null) {
            \http_response_code(404);
            \header('Content-Type: text/plain; charset=UTF-8');
            echo "File not found.\n";
            return false;
        }
        [$scriptName, $pathInfo] = $found;
        $server['SCRIPT_NAME'] = $scriptName;
        $server['SCRIPT_FILENAME'] = $this->root . $scriptName;
        $server['DOCUMENT_URI'] = $scriptName . $pathInfo; // nginx's $document_uri: the path, normalized
        $server['PATH_INFO'] = $pathInfo; // (no PATH_TRANSLATED: Debian's nginx sends none, and php-fpm then makes none)
        $server['PHP_SELF'] = $scriptName . $pathInfo;
        $now = \microtime(true);
        $server['REQUEST_TIME_FLOAT'] = $now;
        $server['REQUEST_TIME'] = (int) $now;
        $this->script = $server['SCRIPT_FILENAME'];

        $_SERVER = $server;
        $this->globals->fill($server, $body);

        // php-fpm runs a script in its own directory; every time, since the
        // last script may have left it (chdir()).
        @\chdir(\dirname($this->script));
        return true;
    }

    /**
     * What PHP gives each request fresh when it starts, and php-cli only
     * once: no headers but its own, status 200, no last error, its own
     * peak memory and max_execution_time, an empty output buffer.
     */
    private function startRequest(): void
    {
        \header_remove();
        \http_response_code(200);
        \error_clear_last();
        if (\function_exists('memory_reset_peak_usage')) {
            \memory_reset_peak_usage(); // (PHP 8.2+)
        }
        $limit = (int) \ini_get('max_execution_time');
        if ($limit > 0) {
            \set_time_limit($limit); // (PHP's timer started with the worker: start it again)
        }
        if (!$this->collecting) {
            // The last script ended ours; a buffer opened since, between
            // requests, holds nothing of this one.
            while (\ob_get_level() > 0 && @\ob_end_clean()) {
            }
            $this->startCollecting();
        }
        if (\ob_get_level() === 1 && \ob_get_length() > 0) {
            \ob_clean(); // output from between requests (see Leftovers::afterAnswer()): never another client's
        }
        $this->flushed = '';
        $this->clientGone = false;
        if (\ini_get('expose_php')) {
            \header('X-Powered-By: PHP/' . \PHP_VERSION);
        }
    }

    /**
     * An exception the script did not catch: to the handler it set with
     * set_exception_handler(), as PHP does, or else uncaught(). One the
     * handler throws is uncaught(), as PHP makes it a fatal error.
     */
    public function scriptThrew(\Throwable $e): void
    {
        $handler = \set_exception_handler(null); // (only to read it: put back at once)
        \restore_exception_handler();
        if ($handler === null) {
            $this->uncaught($e);
            return;
        }
        try {
            $handler($e);
        } catch (ScriptExited) {
            ScriptExit::endIfFatal();
        } catch (\Throwable $again) {
            $this->uncaught($again);
        }
    }

    /** An exception nothing caught: logged as PHP logs it, and a 500 unless the script chose a status. */
    public function uncaught(\Throwable $e): void
    {
        \error_log('PHP Fatal error:  Uncaught ' . $e . "\n  thrown in " . $e->getFile() . ' on line ' . $e->getLine());
        if (\http_response_code() === 200) {
            \http_response_code(500);
        }
    }

    /**
     * The script is done: the shutdown functions it registered run now,
     * before its answer goes, so their output and headers count (php-fpm
     * runs them there too), and are dropped (RequestEnd). Then its globals
     * go (Leftovers::forgetGlobals()), its error and exception handlers
     * after them, and the answer goes (finish()).
     */
    public function scriptEnded(): void
    {
        $this->betweenRequests = true;
        $this->calledBetween = 0;
        try {
            $thrown = $this->requestEnd->runShutdownFunctions($this->onShutdown);
        } finally {
            $this->betweenRequests = false; // (not after an exit() ScriptExit could not catch, or a fatal error: PHP runs no finally then, see shutdown())
        }
        if ($thrown instanceof \Throwable) {
            $this->uncaught($thrown);
        }
        $this->leftovers->forgetGlobals();
        $this->answered();
    }

    /** The request's answer goes, and what it left behind goes too. */
    private function answered(): void
    {
        $this->finish();
        $this->leftovers->afterAnswer($this->script);
    }

    /** Send the response of the current request and forget the request. */
    public function finish(): void
    {
        $answer = $this->answer;
        if ($answer === null) {
            return;
        }
        $this->answer = null;
        $this->stream = $this->early = null;
        $body = '';
        try {
            // Script code may run in both: the callbacks of output buffers
            // it left open, a session save handler's write().
            $body = $this->takeOutput();
            $this->globals->closeSession();
        } catch (ScriptExited) {
            ScriptExit::endIfFatal();
        } catch (\Throwable $e) {
            $this->uncaught($e);
        }
        if ($this->answeredEarly) {
            $this->answeredEarly = false;
            $body = ''; // (answered already: $answer knows)
        }
        [$status, $lines] = $this->head();
        if (!$this->collecting) {
            $this->sapi->forgetHeadersSent(); // (what it wrote past our buffer made PHP mark them sent)
        }
        \header_remove();
        $answer($status, $lines, $body, $this->ending);
        $this->globals->clear();
        $this->requestEnd->restore();
    }

    /**
     * fastcgi_finish_request(), as php-fpm has it: the answer goes now,
     * whole, and the script runs on; what it writes from now on is dropped.
     * False if there is no request, it was answered already, or the
     * request source cannot (--direct off).
     */
    public function finishEarly(): bool
    {
        if ($this->answer === null || $this->early === null || $this->answeredEarly) {
            return false;
        }
        $body = $this->takeOutput();
        [$status, $lines] = $this->head();
        $this->stream = null;
        $this->answeredEarly = true;
        ($this->early)($status, $lines, $body);
        return true;
    }

    /** The headers of the request being served, as getallheaders() gives them ([] between requests). */
    public function requestHeaders(): array
    {
        return $this->globals->headers();
    }

    /** The runtime of this process (null before it is made). */
    public static function current(): ?self
    {
        return self::$current;
    }

    /** What the script wrote and did not send yet: buffers it left open pass their output down to ours, which is emptied. */
    private function takeOutput(): string
    {
        if ($this->inHandler) {
            // (Called from collect(): the buffer's contents are in $flushed, and PHP allows no ob_*() call there.)
            [$body, $this->flushed] = [$this->flushed, ''];
            return $body;
        }
        $level = \ob_get_level();
        $ours = $this->collecting ? 1 : 0;
        while ($level > $ours && @\ob_end_flush()) {
            $level--;
        }
        $body = $this->flushed . (string) \ob_get_contents();
        $this->flushed = '';
        if (\ob_get_level() >= 1) {
            \ob_clean();
        }
        return $body;
    }

    /**
     * The status and header lines the script set, with PHP's default
     * Content-Type when it set none.
     *
     * @return array{int, list<string>}
     */
    private function head(): array
    {
        $status = \http_response_code();
        $status = $status === false ? 200 : $status;
        $lines = \headers_list();
        $typed = false;
        foreach ($lines as $line) {
            $typed = $typed || \strncasecmp($line, 'content-type:', 13) === 0;
        }
        $mime = (string) \ini_get('default_mimetype');
        if (!$typed && $mime !== '' && $status !== 304) { // (PHP sends no default type with a 304)
            $charset = (string) \ini_get('default_charset');
            $lines[] = 'Content-Type: ' . $mime . ($charset !== '' && \strncasecmp($mime, 'text/', 5) === 0 ? "; charset=$charset" : '');
        }
        return [$status, $lines];
    }

    /**
     * A fatal error inside a script (or an exit() ScriptExit could not
     * catch): answer the request before the process ends, after the
     * shutdown functions the script registered (the first call puts this
     * one after them). Nothing between requests.
     */
    public function shutdown(): void
    {
        if ($this->betweenRequests && ++$this->calledBetween === 1) {
            return; // first in the list the script's shutdown functions run from, between requests
        }
        if ($this->betweenRequests) {
            // One of them ended the process (a fatal error, or an exit()
            // ScriptExit could not catch), and PHP runs the list again from
            // its start, this function first. Answer now, and stop it
            // there: those before it ran once already.
            $this->betweenRequests = false;
            $this->ending = true;
            $this->finish();
            exit();
        }
        if (!$this->deferred) {
            $this->deferred = true;
            \register_shutdown_function($this->onShutdown);
            return;
        }
        $this->sapi->unhook(); // (the last of the shutdown functions: see CliSapi::unhook())
        $this->globals->processEnding();
        if ($this->answer === null) {
            return;
        }
        $error = \error_get_last();
        if ($error !== null && ($error['type'] & ScriptExit::FATAL) !== 0
            && \http_response_code() === 200) {
            \http_response_code(500);
        }
        $this->ending = true;
        $this->finish();
    }
}
