<?php
// The connections a PHP worker holds in direct mode, and where each stands:
// read from (a request to serve), being written to (an answer the client
// has not taken whole), lingering (refused), or idle between two requests.
// ConnectionSource.php runs the loop over them and speaks with the front;
// Answers.php writes the answers; Connection.php is one connection. The
// scoreboard's line between requests lists the connections being written
// to, so it changes here, with that set.

declare(strict_types=1);

namespace Folk\AppServer;

final class Connections
{
    /** After refusing a request, read and drop what the client still sends for this long (seconds), so it sees the answer: nginx's lingering_timeout. */
    private const LINGER = 5;

    /** Answer with "Connection: close" and close idle connections (the server is stopping). */
    public bool $draining = false;

    /** @var array<int, Connection> by the front's id */
    private array $conns = [];
    /** @var array<int, int> socket object id => connection id */
    private array $ids = [];
    /** @var array<int, true> connections with bytes of a request buffered, served in turn (each once, however many reads brought them) */
    private array $ready = [];
    /**
     * @var array<int, true> connections this worker has read bytes of that
     * it has not answered yet (or is refusing): it keeps those. The front
     * may move any other while this worker is busy (the scoreboard lists
     * these), which is why bytes are read from a connection only in
     * ConnectionSource::wait() and after, once the front's messages are in.
     */
    private array $holding = [];
    /**
     * @var array<int, true> connections whose answer the client has not
     * taken whole yet: the rest is written as it reads (flush()), the next
     * request waits, and this worker serves the others meanwhile.
     */
    private array $writing = [];
    /** @var list<int> closed since the front was last told */
    private array $closed = [];

    /** $idleTimeout: seconds a keep-alive connection may wait for its next request; $headerTimeout: seconds a request head may take. */
    public function __construct(private Scoreboard $board, private float $idleTimeout, private float $headerTimeout)
    {
    }

    public function add(Connection $conn): void
    {
        $this->conns[$conn->id] = $conn;
        $this->ids[\spl_object_id($conn->socket)] = $conn->id;
        if (!$conn->reader->idle()) {
            $this->queue($conn->id);
        }
    }

    public function get(int $id): ?Connection
    {
        return $this->conns[$id] ?? null;
    }

    /** The id of a connection select() returned, or null (closed or dropped meanwhile). */
    public function idOf(\Socket $socket): ?int
    {
        return $this->ids[\spl_object_id($socket)] ?? null;
    }

    /**
     * select() found these sockets readable at $when: their connections'
     * ids (not those dropped or closed by a message read just now), each
     * marked as not idle (closeIdle()).
     * @return list<int>
     */
    public function readable(array $sockets, float $when): array
    {
        $found = [];
        foreach ($sockets as $socket) {
            $id = $this->ids[\spl_object_id($socket)] ?? null;
            if ($id !== null) {
                $this->conns[$id]->seen = $when;
                $found[] = $id;
            }
        }
        return $found;
    }

    /** @return array{list<\Socket>, list<\Socket>} the sockets to select() for reading and for writing: a connection still being written to is read only after (its next request waits) */
    public function sockets(): array
    {
        $read = $write = [];
        foreach ($this->conns as $id => $conn) {
            isset($this->writing[$id]) ? $write[] = $conn->socket : $read[] = $conn->socket;
        }
        return [$read, $write];
    }

    /** This worker keeps this connection (it has read bytes of a request on it): the front moves it nowhere. */
    public function hold(int $id): void
    {
        $this->holding[$id] = true;
    }

    /** Bytes of a request came on this connection: this worker keeps it, and serves it in turn. */
    public function queue(int $id): void
    {
        $this->holding[$id] = true;
        $this->ready[$id] = true;
    }

    /** The next connection with bytes of a request to serve, or null. */
    public function nextReady(): ?int
    {
        while ($this->ready !== []) {
            $id = \array_key_first($this->ready);
            unset($this->ready[$id]);
            if (isset($this->conns[$id])) {
                return $id;
            }
        }
        return null;
    }

    /**
     * Its answer is out (Answers::written()): the connection goes on with
     * its next request if that is already here (pipelined), or waits idle.
     */
    public function answered(int $id): void
    {
        if ($this->conns[$id]->reader->idle()) {
            unset($this->holding[$id]);
        } else {
            $this->queue($id);
        }
    }

    /**
     * Whether a connection's answer is still being written; the scoreboard's
     * line between requests lists those (the front closes them, rather than
     * hand them on, if this worker dies), so the two change together.
     */
    public function setWriting(int $id, bool $writing): void
    {
        if ($writing === isset($this->writing[$id])) {
            return;
        }
        if ($writing) {
            $this->writing[$id] = true;
        } else {
            unset($this->writing[$id]);
        }
        $this->board->held($this->kept());
    }

    public function isWriting(int $id): bool
    {
        return isset($this->writing[$id]);
    }

    /** @return list<int> the connections whose answer is still being written */
    public function writingIds(): array
    {
        return \array_keys($this->writing);
    }

    /** @return list<int> the connections this worker keeps (keeps()), for the scoreboard */
    public function kept(): array
    {
        return \array_keys($this->holding + $this->writing);
    }

    public function close(int $id): void
    {
        $conn = $this->conns[$id];
        unset($this->conns[$id], $this->ids[\spl_object_id($conn->socket)], $this->holding[$id]);
        $this->setWriting($id, false);
        // The front still holds a copy of the connection: shutdown ends it
        // for the client now, not when the front closes that copy.
        $conn->close(true);
        $this->closed[] = $id;
    }

    /** @return list<int> the connections closed since the last call, for the front */
    public function takeClosed(): array
    {
        [$closed, $this->closed] = [$this->closed, []];
        return $closed;
    }

    /**
     * Close connections idle past idleTimeout (at once when draining), those
     * whose request head has not come whole within headerTimeout, those
     * whose body has not moved for headerTimeout, and those whose client
     * stopped reading an answer (idleTimeout without progress).
     */
    public function closeIdle(): void
    {
        $now = \microtime(true);
        $idle = $now - ($this->draining ? 0 : $this->idleTimeout);
        foreach ($this->conns as $id => $conn) {
            if ($conn->lingering) {
                $over = $conn->seen < $now - self::LINGER;
            } elseif (isset($this->writing[$id])) {
                $over = $conn->seen < $now - $this->idleTimeout;
            } elseif ($conn->reader->idle()) {
                $over = $conn->seen < $idle;
            } elseif ($conn->reader->readingBody()) {
                $over = $conn->seen < $now - $this->headerTimeout; // between two reads, as nginx's client_body_timeout
            } else {
                $over = $conn->begun < $now - $this->headerTimeout;
            }
            if ($over) {
                $this->close($id);
            }
        }
    }

    /**
     * The front moves connections away from this worker while it is busy
     * with a slow request: close our copies of those we hold nothing of.
     * @return list<int> those (the front hands them on)
     */
    public function drop(array $ids): array
    {
        $dropped = [];
        foreach ($ids as $id) {
            if (isset($this->conns[$id]) && !$this->keeps($id)) {
                $this->letGo($id);
                $dropped[] = $id;
            }
        }
        return $dropped;
    }

    /** Close our copy of a connection that lives on elsewhere (the front has its own), without a word to the front. */
    public function letGo(int $id): void
    {
        $conn = $this->conns[$id];
        unset($this->conns[$id], $this->ids[\spl_object_id($conn->socket)], $this->holding[$id], $this->ready[$id]);
        $this->setWriting($id, false);
        $conn->close(false);
    }

    /**
     * The front has connections waiting because this worker holds its
     * worker-connections: close idle keep-alive connections, the longest
     * idle first, until it holds at most $keep (as nginx reuses idle
     * connections when it runs out). Only connections between two requests:
     * answered at least once, nothing of a next request read or waiting in
     * the kernel. The front asks again while connections wait (none may be
     * idle when it asks), and a repeated ask closes no more.
     */
    public function trim(int $keep): void
    {
        $count = \count($this->conns) - $keep;
        $idle = [];
        foreach ($this->conns as $id => $conn) {
            if ($conn->answered && !$this->keeps($id) && $conn->reader->idle()) {
                $idle[$id] = $conn->seen;
            }
        }
        \asort($idle);
        foreach (\array_keys($idle) as $id) {
            if ($count <= 0) {
                break;
            }
            if (!$this->conns[$id]->hasInput()) { // else a request (or the client's close) came: it is read as usual
                $this->close($id);
                $count--;
            }
        }
    }

    /**
     * Close our copies of every connection: this worker ends.
     * @return list<array{int, string}> each one's id and the bytes of a request read from it (base64), for the front to hand on
     */
    public function releaseAll(): array
    {
        $list = [];
        foreach ($this->conns as $id => $conn) {
            $list[] = [$id, \base64_encode($conn->reader->buffered())];
            $conn->close(false);
        }
        $this->conns = $this->ids = $this->ready = $this->holding = [];
        return $list;
    }

    /**
     * Whether this worker must keep a connection: it has read bytes of a
     * request on it, or is still writing an answer to it. The front moves
     * or trims only the others.
     */
    private function keeps(int $id): bool
    {
        return isset($this->holding[$id]) || isset($this->writing[$id]);
    }
}
