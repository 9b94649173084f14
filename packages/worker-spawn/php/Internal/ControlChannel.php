<?php
/**
 * @internal Part of the folk PHP worker library; loaded by ../Worker.php,
 * which is the file to require. Not an API: it may change in any release.
 */

declare(strict_types=1);

namespace Folk\Internal;

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

    public function __construct(private \Socket $control)
    {
    }

    public function send(array $message): void
    {
        $body = \json_encode($message, \JSON_INVALID_UTF8_SUBSTITUTE | \JSON_UNESCAPED_SLASHES);
        if (@\socket_send($this->control, (string) $body, \strlen((string) $body), 0) === false) {
            // EPIPE: the supervisor is gone. Nothing to report to; wind down.
            $this->stopping = true;
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

    /** Handle every control message already waiting, without blocking. */
    public function drain(): void
    {
        while (!$this->stopping && $this->read(\MSG_DONTWAIT)) {
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
        if (!\is_array($message) || !isset($message['type'])) {
            $this->reportError('unreadable control message: ' . \substr($body, 0, 200), false);
            return;
        }
        switch ($message['type']) {
            case 'stop':
                $this->stopping = true;
                break;
            case 'fds':
                if ($truncated) {
                    $this->reportError('control message carried more descriptors than fit; some were dropped', false);
                }
                $tag = (string) ($message['tag'] ?? '');
                $meta = $message['meta'] ?? null;
                if ($this->fdHandlers === []) {
                    $this->pendingFds[] = ['tag' => $tag, 'fds' => $fds, 'meta' => $meta];
                } else {
                    foreach ($this->fdHandlers as $handler) {
                        $handler($fds, $tag, $meta);
                    }
                }
                break;
            default:
                break; // unknown types are ignored so the protocol can grow
        }
    }
}
