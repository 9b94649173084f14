<?php
/**
 * @internal Part of the folk PHP worker library; loaded by ../Worker.php,
 * which is the file to require. Not an API: it may change in any release.
 */

declare(strict_types=1);

namespace Folk\Internal;

use Folk\WorkerException;

/**
 * @internal The control socket (fd 4, SOCK_SEQPACKET): JSON datagrams both
 * ways, descriptors in with SCM_RIGHTS (PROTOCOL.md). Keeps whether the
 * worker is stopping, which either socket can decide, and the descriptors
 * received before any handler was registered.
 */
final class ControlChannel
{
    private const CONTROL_MAX = 65536;
    private const MAX_FDS_PER_MESSAGE = 64;
    /** Longest error report sent whole; see reportError(). */
    private const REPORT_MAX = 8192;

    /** True once the supervisor asked this worker to stop or went away (from either socket). */
    public bool $stopping = false;
    /** @var list<callable(array, string, mixed): void> */
    private array $fdHandlers = [];
    /** @var list<array{tag: string, fds: array, meta: mixed}> fds received with no handler registered */
    private array $pendingFds = [];
    /** @var list<callable(array, array): void> */
    private array $messageHandlers = [];
    /** @var list<array{0: array, 1: array}> messages of the caller's own types received with no handler registered */
    private array $pendingMessages = [];

    public function __construct(private \Socket $control)
    {
    }

    /** One of the library's own messages (ready, error reports); dropped if it cannot be sent (the supervisor is gone: the worker winds down). */
    public function send(array $message): void
    {
        $body = \json_encode($message, \JSON_INVALID_UTF8_SUBSTITUTE | \JSON_UNESCAPED_SLASHES);
        if ($this->transmit((string) $body, []) !== 0) {
            $this->stopping = true;
        }
    }

    /**
     * Send one datagram of the caller's, with $fds (\Socket objects and
     * stream resources) attached. False when the supervisor is gone (EPIPE,
     * ECONNRESET: the worker is stopping, and there is nobody to tell);
     * throws for any other failure.
     */
    public function sendBody(string $body, array $fds): bool
    {
        $err = $this->transmit($body, $fds);
        if ($err === 0) {
            return true;
        }
        if ($err === \SOCKET_EPIPE || $err === \SOCKET_ECONNRESET || $err === \SOCKET_ENOTCONN) {
            $this->stopping = true;
            return false;
        }
        throw new WorkerException('sending a control message failed: ' . \socket_strerror($err));
    }

    /** sendmsg(2) $body with $fds attached, again if a signal interrupts it: 0, or the errno it failed with. */
    private function transmit(string $body, array $fds): int
    {
        while (true) {
            if ($fds === []) {
                $sent = @\socket_send($this->control, $body, \strlen($body), 0);
            } else {
                $sent = @\socket_sendmsg($this->control, [
                    'iov' => [$body],
                    'control' => [['level' => \SOL_SOCKET, 'type' => \SCM_RIGHTS, 'data' => $fds]],
                ], 0);
            }
            if ($sent !== false) {
                return 0;
            }
            // socket_sendmsg records its errno only in the global last error, socket_send in both.
            $err = \socket_last_error();
            \socket_clear_error();
            \socket_clear_error($this->control);
            if ($err !== \SOCKET_EINTR) {
                return $err === 0 ? \SOCKET_EPIPE : $err;
            }
        }
    }

    public function reportError(string $message, bool $fatal): void
    {
        // A control datagram is at most 64 KiB (PROTOCOL.md) and the supervisor
        // drops the control socket on a larger one. 8 KiB of message stays
        // under that even if JSON escapes every byte (6 bytes each).
        if (\strlen($message) > self::REPORT_MAX) {
            $message = \substr($message, 0, self::REPORT_MAX) . \sprintf('... (%d bytes cut)', \strlen($message) - self::REPORT_MAX);
        }
        $this->send(['type' => 'error', 'message' => $message, 'fatal' => $fatal]);
    }

    /** Add a handler for received descriptors, and give it those that came before any. */
    public function onFds(callable $handler): void
    {
        $this->fdHandlers[] = $handler;
        $pending = $this->pendingFds;
        $this->pendingFds = [];
        foreach ($pending as $entry) {
            $handler($entry['fds'], $entry['tag'], $entry['meta']);
        }
    }

    /** Add a handler for messages of the caller's own types, and give it those that came before any. */
    public function onMessage(callable $handler): void
    {
        $this->messageHandlers[] = $handler;
        $pending = $this->pendingMessages;
        $this->pendingMessages = [];
        foreach ($pending as [$message, $fds]) {
            $handler($message, $fds);
        }
    }

    /** Block until descriptors tagged $tag arrive; null if the worker stops first. */
    public function waitFds(string $tag): ?array
    {
        while (true) {
            foreach ($this->pendingFds as $i => $entry) {
                if ($entry['tag'] === $tag) {
                    \array_splice($this->pendingFds, $i, 1);
                    return $entry['fds'];
                }
            }
            if ($this->stopping) {
                return null;
            }
            $this->read();
        }
    }

    /**
     * Handle every control message already waiting, without blocking: those
     * after a stop too (a message the supervisor sent is not left unread
     * because a stop came first; read() says false at the end of the socket).
     */
    public function drain(): void
    {
        while ($this->read(\MSG_DONTWAIT)) {
        }
    }

    /** Read and handle one control message; false when none was waiting (or the socket is done). */
    private function read(int $flags = 0): bool
    {
        $msg = [
            'name' => [],
            'buffer_size' => self::CONTROL_MAX,
            'controllen' => \socket_cmsg_space(\SOL_SOCKET, \SCM_RIGHTS, self::MAX_FDS_PER_MESSAGE),
        ];
        // MSG_CMSG_CLOEXEC: descriptors handed to us must not leak into programs this worker runs.
        $n = @\socket_recvmsg($this->control, $msg, \MSG_CMSG_CLOEXEC | $flags);
        if ($n === false) {
            // socket_recvmsg records its errno only in the global last error, not the socket's.
            $err = \socket_last_error();
            \socket_clear_error();
            if ($err === \SOCKET_EINTR) {
                return true;
            }
            if ($err === \SOCKET_EAGAIN) {
                return false;
            }
            $this->stopping = true; // the supervisor is unreachable; finish up
            return false;
        }
        $body = $msg['iov'][0] ?? '';
        if ($n === 0 && $body === '' && empty($msg['control'])) {
            $this->stopping = true; // EOF: the supervisor closed the control socket or died
            return false;
        }
        $fds = [];
        foreach ($msg['control'] ?? [] as $cmsg) {
            if ($cmsg['level'] === \SOL_SOCKET && $cmsg['type'] === \SCM_RIGHTS) {
                foreach ($cmsg['data'] as $fd) {
                    $fds[] = $fd;
                }
            }
        }
        $this->handle($body, $fds, (($msg['flags'] ?? 0) & \MSG_CTRUNC) !== 0);
        return true;
    }

    /** Act on one control message: $fds came with it, $truncated if some were dropped. */
    private function handle(string $body, array $fds, bool $truncated): void
    {
        $message = \json_decode($body, true);
        // A string type or none: compared loosely, {"type": true} would be a "stop".
        if (!\is_array($message) || !\is_string($message['type'] ?? null)) {
            self::closeAll($fds);
            $this->reportError('unreadable control message: ' . \substr($body, 0, 200), false);
            return;
        }
        match ($message['type']) {
            'stop' => $this->stopping = true,
            'fds' => $this->receivedFds($message, $fds, $truncated),
            'ready', 'error' => self::closeAll($fds), // the worker's own types: no supervisor sends them
            default => $this->receivedMessage($message, $fds, $truncated),
        };
    }

    /** An `fds` message: to the onFds() handlers, or kept until there is one. */
    private function receivedFds(array $message, array $fds, bool $truncated): void
    {
        if ($truncated) {
            $this->reportError('control message carried more descriptors than fit; some were dropped', false);
        }
        $tag = (string) ($message['tag'] ?? '');
        $meta = $message['meta'] ?? null;
        if ($this->fdHandlers === []) {
            $this->pendingFds[] = ['tag' => $tag, 'fds' => $fds, 'meta' => $meta];
            return;
        }
        foreach ($this->fdHandlers as $handler) {
            $handler($fds, $tag, $meta);
        }
    }

    /** A message of the caller's own type: to the onMessage() handlers, or kept until there is one. */
    private function receivedMessage(array $message, array $fds, bool $truncated): void
    {
        if ($truncated) {
            $this->reportError('control message carried more descriptors than fit; some were dropped', false);
        }
        if ($this->messageHandlers === []) {
            $this->pendingMessages[] = [$message, $fds];
            return;
        }
        foreach ($this->messageHandlers as $handler) {
            $handler($message, $fds);
        }
    }

    /**
     * Close descriptors nobody will take (\Socket objects and streams, as received).
     *
     * @param list<mixed> $fds
     */
    public static function closeAll(array $fds): void
    {
        foreach ($fds as $fd) {
            if ($fd instanceof \Socket) {
                \socket_close($fd);
            } elseif (\is_resource($fd)) {
                \fclose($fd);
            }
        }
    }
}
