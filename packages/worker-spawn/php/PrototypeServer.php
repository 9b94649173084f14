<?php
/**
 * The prototype process of a WorkerPool with `prototype` (see README.md,
 * "Prototype workers"): it has loaded the application once and forks ready
 * workers from itself on request. prototype.php runs it; nothing else should.
 *
 * Its control socket (fd 4, SOCK_SEQPACKET) carries JSON messages:
 *
 *   supervisor -> prototype
 *     {"type":"fork","id":N} + SCM_RIGHTS [task, control]  fork a worker on these two sockets
 *     {"type":"held","pid":P}      the supervisor holds a pidfd for P: P may be reaped
 *     {"type":"abandon","pid":P}   the supervisor could not take P: SIGKILL and reap it
 *     {"type":"retire"}            fork no more; exit once every worker is reaped
 *   prototype -> supervisor
 *     {"type":"ready","pid":P}     preload has run
 *     {"type":"forked","id":N,"pid":P} / {"type":"forkError","id":N,"message":...}
 *     {"type":"exit","pid":P,"status":S,"rusage":{...}}   P was reaped (waitpid status S)
 *
 * A forked worker stays unreaped (a zombie at worst) until its "held": the
 * supervisor opens its pidfd first, so the pid cannot be reused under it.
 * SIGTERM (the prototype's PR_SET_PDEATHSIG: the supervisor died) SIGKILLs
 * every worker and exits, so no worker outlives the supervisor.
 */

declare(strict_types=1);

namespace Folk;

require_once __DIR__ . '/Worker.php';

final class PrototypeServer
{
    private const FDS_PER_FORK = 2;

    /** @var array<int, bool> pid => whether the supervisor holds its pidfd (it may be reaped) */
    private array $children = [];
    private bool $retiring = false;

    private function __construct(private \Socket $control)
    {
    }

    public static function fromEnv(): self
    {
        foreach (['sockets', 'pcntl', 'posix'] as $ext) {
            if (!\extension_loaded($ext)) {
                WorkerConnection::die("a prototype needs the PHP $ext extension (ext-$ext)");
            }
        }
        $fd = WorkerConnection::envInt('FOLK_CONTROL_FD');
        if ($fd === null) {
            WorkerConnection::die('FOLK_CONTROL_FD is not set: a prototype is started by a WorkerPool with `prototype`');
        }
        return new self(WorkerConnection::importFd($fd));
    }

    /**
     * Serve fork requests. Returns [task, control] in each forked worker (the
     * caller then runs the worker script), null in the prototype once it is
     * to exit (the supervisor closed the socket, or retired it).
     *
     * @return array{0: \Socket, 1: \Socket}|null
     */
    public function serve(): ?array
    {
        \pcntl_async_signals(true);
        // Without SA_RESTART: the signal must end the wait in recvmsg, since
        // PHP runs the handler only once the syscall has returned.
        \pcntl_signal(\SIGCHLD, fn () => $this->reap(), false);
        \pcntl_signal(\SIGTERM, fn () => $this->killAllAndExit(), false);
        $this->send(['type' => 'ready', 'pid' => \getmypid()]);
        while (!$this->retiring || $this->children !== []) {
            $msg = [
                'name' => [],
                'buffer_size' => 4096,
                'controllen' => \socket_cmsg_space(\SOL_SOCKET, \SCM_RIGHTS, self::FDS_PER_FORK + 1),
            ];
            $n = @\socket_recvmsg($this->control, $msg, \MSG_CMSG_CLOEXEC);
            if ($n === false) {
                $err = \socket_last_error();
                \socket_clear_error();
                if ($err === \SOCKET_EINTR) {
                    continue; // SIGCHLD: reaped in the handler
                }
                $this->killAllAndExit(); // the supervisor cannot be reached: as at EOF below
            }
            $fds = [];
            foreach ($msg['control'] ?? [] as $cmsg) {
                if ($cmsg['level'] === \SOL_SOCKET && $cmsg['type'] === \SCM_RIGHTS) {
                    \array_push($fds, ...$cmsg['data']);
                }
            }
            $body = $msg['iov'][0] ?? '';
            if ($n === 0 && $body === '' && $fds === []) {
                // EOF: the supervisor is gone. Its pdeathsig SIGTERM is on its
                // way, but the kernel closes a dying process's files before it
                // signals, so this may come first: the workers go either way
                // (a busy one would not notice its own sockets' EOF).
                $this->killAllAndExit();
            }
            $message = \json_decode($body, true);
            $type = \is_array($message) ? ($message['type'] ?? null) : null;
            if ($type === 'fork') {
                $sockets = $this->fork((int) ($message['id'] ?? 0), $fds);
                if ($sockets !== null) {
                    return $sockets; // in the new worker
                }
                continue;
            }
            Internal\ControlChannel::closeAll($fds);
            $pid = \is_array($message) ? (int) ($message['pid'] ?? 0) : 0;
            if ($type === 'held' && isset($this->children[$pid])) {
                $this->children[$pid] = true;
                $this->reap();
            } elseif ($type === 'abandon' && isset($this->children[$pid])) {
                \posix_kill($pid, \SIGKILL);
                $this->children[$pid] = true;
                $this->reap();
            } elseif ($type === 'retire') {
                $this->retiring = true;
            }
        }
        return null;
    }

    /**
     * Fork a worker on the two sockets received. In the child: the
     * sockets; in the prototype: null, once the pid (or the error) is sent.
     *
     * @param list<mixed> $fds
     * @return array{0: \Socket, 1: \Socket}|null
     */
    private function fork(int $id, array $fds): ?array
    {
        if ($this->retiring || \count($fds) !== self::FDS_PER_FORK || !($fds[0] instanceof \Socket) || !($fds[1] instanceof \Socket)) {
            Internal\ControlChannel::closeAll($fds);
            $this->send(['type' => 'forkError', 'id' => $id, 'message' => $this->retiring ? 'the prototype is retiring' : 'a fork request carries a task and a control socket']);
            return null;
        }
        $pid = \pcntl_fork();
        if ($pid === -1) {
            Internal\ControlChannel::closeAll($fds);
            $this->send(['type' => 'forkError', 'id' => $id, 'message' => 'fork failed: ' . \pcntl_strerror(\pcntl_get_last_error())]);
            return null;
        }
        if ($pid === 0) {
            $this->becomeWorker();
            return [$fds[0], $fds[1]];
        }
        $this->children[$pid] = false;
        Internal\ControlChannel::closeAll($fds);
        $this->send(['type' => 'forked', 'id' => $id, 'pid' => $pid]);
        return null;
    }

    /** In the forked child: drop what is the prototype's. */
    private function becomeWorker(): void
    {
        \pcntl_signal(\SIGCHLD, \SIG_DFL);
        \pcntl_signal(\SIGTERM, \SIG_DFL);
        $this->children = [];
        \socket_close($this->control);
        // The prototype's own fds 3 and 4 (its task and control sockets, of
        // which $this->control was a duplicate) are inherited too. PHP cannot
        // close an fd by number; FFI can, where it is enabled (the CLI's
        // default, ffi.enable=preload, allows it). Otherwise they stay open,
        // unused, in the worker.
        if (\extension_loaded('ffi')) {
            try {
                $libc = \FFI::cdef('int close(int fd);');
                $libc->close(3);
                $libc->close(4);
            } catch (\Throwable) {
            }
        }
    }

    /** Reap every held child that has exited, and report each. */
    private function reap(): void
    {
        foreach ($this->children as $pid => $held) {
            if (!$held) {
                continue; // a zombie until the supervisor holds its pidfd
            }
            $status = 0;
            $rusage = [];
            $r = \pcntl_waitpid($pid, $status, \WNOHANG, $rusage);
            if ($r === $pid || $r === -1) {
                unset($this->children[$pid]);
                if ($r === $pid) {
                    $this->send(['type' => 'exit', 'pid' => $pid, 'status' => $status, 'rusage' => $rusage]);
                }
            }
        }
    }

    private function killAllAndExit(): never
    {
        foreach (\array_keys($this->children) as $pid) {
            \posix_kill($pid, \SIGKILL);
        }
        exit(0);
    }

    private function send(array $message): void
    {
        $body = (string) \json_encode($message, \JSON_UNESCAPED_SLASHES);
        @\socket_send($this->control, $body, \strlen($body), 0);
    }
}
