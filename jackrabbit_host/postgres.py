"""The cluster's store: every queue's messages, cursor, epoch and lease in PostgreSQL
(protocol §10; ``docs/cluster.md``).

``PgStore`` implements the core's ``jackrabbit_core.storage.Store`` interface, and holds every
other SQL statement of cluster mode (the node registry and the queues' leases, which
``jackrabbit_host.cluster`` drives). It is the only module that imports ``psycopg``.

Schema
------
Created at the first start, under an advisory lock so nodes starting together do not race:

=========================  =====================================================================
table                      rows
=========================  =====================================================================
``jackrabbit_nodes``       one per node: ``name``, ``incarnation`` (random per process),
                           ``advertise`` (``wss://HOST:PORT``), ``lease_until``
``jackrabbit_queues``      one per queue: ``owner`` (a node name or NULL), ``generation``,
                           ``last_seq``, ``acked`` (the cursor), ``epoch``
``jackrabbit_messages``    ``(queue, seq)`` -> ``id``, ``created_at`` (Unix ms), ``data``
``jackrabbit_keys``        ``(queue, key)`` -> ``seq``: idempotency keys
``jackrabbit_cluster``     one row: the cluster ``secret`` relays prove themselves with
=========================  =====================================================================

Leases and fencing
------------------
A node holds every queue whose ``owner`` is its name for as long as its own row's
``lease_until`` is in the future (by the database's clock); renewing is one ``UPDATE`` of one
row, however many queues it serves. Taking a queue (``acquire``) locks the queue's row, checks
that its owner is nobody, this node, or a node whose lease is over, and adds one to its
``generation``, in the same transaction that renews this node's lease and reads the queue's
state. Every batch a node writes updates each of its queues' rows only where ``owner`` and
``generation`` are still the ones it took: if any is not (another node took the queue), the
whole transaction rolls back and ``write`` raises ``Fenced``. Row locks order the two: a
takeover either waits for a write and then reads what it wrote, or makes it fail. So a node
that lost a queue (paused, cut off) can never write to it again, whatever the clocks say.

Every thread that uses the store (the writer, the readers, the lease keeper) gets its own
connection, made on first use and made again after a failure.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, NoReturn

import psycopg

from jackrabbit_core.exceptions import StoreError
from jackrabbit_core.records import StoredMessage
from jackrabbit_core.storage import Batch, QueueRecord

__all__ = ["Acquired", "Fenced", "LeaseLost", "Node", "Owned", "PgStore"]

#: Seconds a connection attempt, and any statement, may take before it fails.
CONNECT_TIMEOUT: Final = 5
STATEMENT_TIMEOUT_MS: Final = 10_000
#: Any fixed number: the advisory lock nodes take while they create the schema.
_SCHEMA_LOCK: Final = 0x6A61636B

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS jackrabbit_nodes (
    name text PRIMARY KEY,
    incarnation text NOT NULL,
    advertise text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS jackrabbit_queues (
    name text PRIMARY KEY,
    owner text,
    generation bigint NOT NULL DEFAULT 0,
    last_seq bigint NOT NULL DEFAULT 0,
    acked bigint NOT NULL DEFAULT 0,
    epoch bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jackrabbit_queues_owner ON jackrabbit_queues (owner);
CREATE TABLE IF NOT EXISTS jackrabbit_messages (
    queue text NOT NULL,
    seq bigint NOT NULL,
    id bytea NOT NULL,
    created_at bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (queue, seq)
);
CREATE TABLE IF NOT EXISTS jackrabbit_keys (
    queue text NOT NULL,
    key text NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (queue, key)
);
CREATE TABLE IF NOT EXISTS jackrabbit_cluster (
    id integer PRIMARY KEY CHECK (id = 1),
    secret bytea NOT NULL
);
"""

_FENCE: Final = """
UPDATE jackrabbit_queues AS q
   SET last_seq = coalesce(v.last_seq, q.last_seq),
       acked = coalesce(v.acked, q.acked),
       epoch = coalesce(v.epoch, q.epoch)
  FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])
       AS v(name, generation, last_seq, acked, epoch)
 WHERE q.name = v.name AND q.owner = %s AND q.generation = v.generation
RETURNING q.name
"""

_READ: Final = """
SELECT seq, id, created_at, data FROM (
    SELECT seq, id, created_at, data,
           sum(octet_length(data)) OVER (ORDER BY seq) - octet_length(data) AS before
      FROM jackrabbit_messages
     WHERE queue = %s AND seq >= %s AND seq < %s
) AS m
 WHERE before < %s
 ORDER BY seq
"""

_RENEW: Final = """
UPDATE jackrabbit_nodes SET lease_until = now() + %s * interval '1 second'
 WHERE name = %s AND incarnation = %s AND lease_until > now()
RETURNING 1
"""


class Fenced(StoreError):
    """A write was refused: this node no longer holds ``queues`` (another node took them)."""

    def __init__(self, queues: set[str]) -> None:
        names = ", ".join(sorted(queues)[:5])
        super().__init__(f"fenced off: queue(s) {names} taken over by another node")
        self.queues = queues


class LeaseLost(StoreError):
    """This node's lease was over when it tried to renew it."""


@dataclass(frozen=True, slots=True)
class Acquired:
    """``acquire`` took the queue: its stored state."""

    record: QueueRecord
    generation: int


@dataclass(frozen=True, slots=True)
class Owned:
    """``acquire`` found the queue served by live node ``node`` at ``advertise``."""

    node: str
    advertise: str


@dataclass(frozen=True, slots=True)
class Node:
    """This node in the registry."""

    name: str
    incarnation: str
    advertise: str


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class PgStore:
    """Every queue of the cluster in one PostgreSQL database (see the module docstring).

    Open it with :meth:`open`. Thread-safe: each thread uses its own connection.
    """

    #: A read is a network round trip: the shells run it on a worker (``Store``).
    answers_at_once = False

    def __init__(self, dsn: str, secret: bytes) -> None:
        """Use :meth:`open` instead."""
        self._dsn = dsn
        #: The cluster's shared secret (``jackrabbit_host.relay``); never logged.
        self.secret = secret
        #: The node this store writes for, once registered (``register``).
        self.node: Node | None = None
        #: The generation of each queue this node took, for fencing its writes.
        self.generations: dict[str, int] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection[tuple[object, ...]]] = []
        self._closed = False
        #: Told which queues a write was fenced off for (the cluster node releases them).
        self.on_fenced: Callable[[set[str]], None] | None = None

    @classmethod
    def open(cls, dsn: str) -> PgStore:
        """Connect, create the schema if needed and read the cluster's secret (making it on
        the first start). Raises ``StoreError`` with one line when the database cannot be
        reached or used."""
        try:
            with _connect(dsn) as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(_SCHEMA)
                conn.execute(
                    "INSERT INTO jackrabbit_cluster (id, secret) VALUES (1, %s) "
                    "ON CONFLICT (id) DO NOTHING",
                    (os.urandom(32),),
                )
                row = conn.execute("SELECT secret FROM jackrabbit_cluster WHERE id = 1").fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"cannot use the cluster database: {_one_line(exc)}") from None
        assert row is not None and isinstance(row[0], bytes)
        return cls(dsn, row[0])

    # -- connections ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _conn(self, action: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """This thread's connection; a database error becomes a one-line ``StoreError`` and
        a broken connection is dropped, to be made again by the next call."""
        if self._closed:
            raise StoreError("the cluster store is closed")
        conn: psycopg.Connection[tuple[object, ...]] | None = getattr(self._local, "conn", None)
        try:
            if conn is None or conn.closed:
                conn = self._local.conn = _connect(self._dsn)
                with self._lock:
                    self._connections.append(conn)
            yield conn
        except StoreError:
            raise
        except psycopg.Error as exc:
            if conn is not None and conn.broken:
                conn.close()
            raise StoreError(f"cannot {action} the cluster database: {_one_line(exc)}") from None

    # -- Store -------------------------------------------------------------------------------

    def recover(self) -> list[QueueRecord]:
        """None: a node of a cluster starts serving nothing, and takes each queue with its
        stored state when a client first asks for it (``acquire``)."""
        return []

    def read(self, queue: str, first: int, limit: int, max_bytes: int) -> list[StoredMessage]:
        """Consecutive stored messages of ``queue`` from ``first`` on (``Store.read``): one
        query, cut at ``max_bytes`` by the database, so only what is returned is sent."""
        if limit <= 0 or first < 1:
            return []
        with self._conn("read") as conn:
            rows = conn.execute(_READ, (queue, first, first + limit, max_bytes)).fetchall()
        out: list[StoredMessage] = []
        for seq, id_, created_at, data in rows:
            if seq != first + len(out):
                break
            out.append(_message(seq, id_, created_at, data))
        return out

    def find_key(self, queue: str, key: str) -> StoredMessage | None:
        """The message stored under idempotency ``key`` in ``queue``, or None."""
        with self._conn("read") as conn:
            row = conn.execute(
                "SELECT m.seq, m.id, m.created_at, m.data FROM jackrabbit_keys k "
                "JOIN jackrabbit_messages m ON m.queue = k.queue AND m.seq = k.seq "
                "WHERE k.queue = %s AND k.key = %s",
                (queue, key),
            ).fetchone()
        return None if row is None else _message(*row)

    def write(self, batch: Batch) -> None:
        """Write ``batch`` in one transaction, fenced by each queue's generation (see the
        module docstring); durable on return as PostgreSQL's ``synchronous_commit`` says.
        Raises ``Fenced`` (nothing written) when this node no longer holds one of its queues.
        """
        if not batch:
            return
        node = self.node
        if node is None:
            raise StoreError("the node is not registered in the cluster")
        last: dict[str, int] = {}
        for queue, message, _ in batch.messages:
            last[queue] = message.seq
        names = sorted(batch.queues())
        missing = {name for name in names if name not in self.generations}
        if missing:  # never taken, or the lease was lost meanwhile
            self._fenced(missing)
        generations = [self.generations[name] for name in names]
        fence = (
            names,
            generations,
            [last.get(name) for name in names],
            [batch.cursors.get(name) for name in names],
            [batch.epochs.get(name) for name in names],
            node.name,
        )
        keys = [(queue, key, message.seq) for queue, message, key in batch.messages if key]
        with self._conn("write to") as conn, conn.transaction():
            held = {row[0] for row in conn.execute(_FENCE, fence)}
            if len(held) != len(names):
                self._fenced(set(names) - held)
            if batch.messages:
                with conn.cursor().copy(
                    "COPY jackrabbit_messages (queue, seq, id, created_at, data) "
                    "FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["text", "int8", "bytea", "int8", "bytea"])
                    for queue, message, _ in batch.messages:
                        copy.write_row(
                            (queue, message.seq, message.id, message.created_at, message.data)
                        )
            if keys:
                conn.execute(
                    "INSERT INTO jackrabbit_keys (queue, key, seq) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])",
                    ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
                )

    def close(self) -> None:
        """Hand this node's queues over at once (a planned stop: other nodes need not wait for
        the lease to end), leave the registry, and close every connection. Call it after the
        last write; calling it again does nothing."""
        if self._closed:
            return
        try:
            if self.node is not None:
                self.leave()
        finally:
            self._closed = True
            with self._lock:
                connections, self._connections = self._connections, []
            for conn in connections:
                conn.close()

    # -- the registry and the leases (``jackrabbit_host.cluster``) ---------------------------

    def register(self, node: Node, lease: float) -> float | None:
        """Enter ``node`` in the registry with a lease of ``lease`` seconds. Returns None, or
        the seconds left of the lease of a live node already using that name."""
        with self._conn("register in") as conn:
            row = conn.execute(
                "INSERT INTO jackrabbit_nodes (name, incarnation, advertise, lease_until) "
                "VALUES (%s, %s, %s, now() + %s * interval '1 second') "
                "ON CONFLICT (name) DO UPDATE SET incarnation = excluded.incarnation, "
                "advertise = excluded.advertise, started_at = now(), "
                "lease_until = excluded.lease_until "
                "WHERE jackrabbit_nodes.lease_until <= now() "
                "OR jackrabbit_nodes.incarnation = excluded.incarnation "
                "RETURNING 1",
                (node.name, node.incarnation, node.advertise, lease),
            ).fetchone()
            if row is not None:
                self.node = node
                return None
            left = conn.execute(
                "SELECT extract(epoch FROM lease_until - now()) FROM jackrabbit_nodes "
                "WHERE name = %s",
                (node.name,),
            ).fetchone()
        return 0.0 if left is None else max(0.0, float(left[0]))  # type: ignore[arg-type]

    def renew(self, lease: float) -> None:
        """Extend this node's lease by ``lease`` seconds from now (the database's clock).
        Raises ``LeaseLost`` when it was over already."""
        node = self._registered()
        with self._conn("renew the lease in") as conn:
            row = conn.execute(_RENEW, (lease, node.name, node.incarnation)).fetchone()
        if row is None:
            raise LeaseLost(f"node {node.name}'s lease was over before it was renewed")

    def acquire(self, queue: str, lease: float) -> Acquired | Owned:
        """Take ``queue`` for this node, renewing its lease, if nobody else holds it; else say
        who does. Raises ``LeaseLost`` when this node's own lease is over."""
        node = self._registered()
        with self._conn("take a queue in") as conn, conn.transaction():
            if conn.execute(_RENEW, (lease, node.name, node.incarnation)).fetchone() is None:
                raise LeaseLost(f"node {node.name}'s lease was over before it took {queue}")
            conn.execute(
                "INSERT INTO jackrabbit_queues (name) VALUES (%s) ON CONFLICT DO NOTHING",
                (queue,),
            )
            # Lock the row first: the next statement then sees every lease renewed before.
            row = conn.execute(
                "SELECT owner FROM jackrabbit_queues WHERE name = %s FOR UPDATE", (queue,)
            ).fetchone()
            owner = None if row is None else row[0]
            if isinstance(owner, str) and owner != node.name:
                live = conn.execute(
                    "SELECT advertise FROM jackrabbit_nodes "
                    "WHERE name = %s AND lease_until > now()",
                    (owner,),
                ).fetchone()
                if live is not None:
                    return Owned(owner, str(live[0]))
            taken = conn.execute(
                "UPDATE jackrabbit_queues SET owner = %s, generation = generation + 1 "
                "WHERE name = %s RETURNING generation, last_seq, acked, epoch",
                (node.name, queue),
            ).fetchone()
        assert taken is not None
        generation, last_seq, acked, epoch = (int(v) for v in taken)  # type: ignore[call-overload]
        self.generations[queue] = generation
        return Acquired(QueueRecord(queue, last_seq, acked, epoch), generation)

    def leave(self) -> None:
        """Give up every queue and leave the registry (a planned stop)."""
        node = self._registered()
        with self._conn("leave") as conn, conn.transaction():
            conn.execute("UPDATE jackrabbit_queues SET owner = NULL WHERE owner = %s", (node.name,))
            conn.execute(
                "DELETE FROM jackrabbit_nodes WHERE name = %s AND incarnation = %s",
                (node.name, node.incarnation),
            )
        self.node = None

    def describe(self) -> list[dict[str, object]]:
        """Every node in the registry: name, address, whether its lease is running, and the
        queues it holds (``GET /api/cluster``)."""
        with self._conn("read") as conn:
            rows = conn.execute(
                "SELECT n.name, n.advertise, n.lease_until > now(), "
                "coalesce(array_agg(q.name ORDER BY q.name) "
                "FILTER (WHERE q.name IS NOT NULL), '{}') "
                "FROM jackrabbit_nodes n LEFT JOIN jackrabbit_queues q ON q.owner = n.name "
                "GROUP BY n.name, n.advertise, n.lease_until ORDER BY n.name"
            ).fetchall()
        return [
            {"name": name, "advertise": advertise, "alive": alive, "queues": list(queues)}  # type: ignore[call-overload]
            for name, advertise, alive, queues in rows
        ]

    def _fenced(self, queues: set[str]) -> NoReturn:
        """A write for ``queues`` may not happen: say so, and fail it (nothing written)."""
        if self.on_fenced is not None:
            self.on_fenced(queues)
        raise Fenced(queues)

    def _registered(self) -> Node:
        node = self.node
        if node is None:
            raise StoreError("the node is not registered in the cluster")
        return node


def _connect(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    """A connection that fails fast: bounded connect and statement times, TCP keepalives so
    a database that vanished is noticed in seconds."""
    return psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT,
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        application_name="jackrabbit",
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
    )


def _message(seq: object, id_: object, created_at: object, data: object) -> StoredMessage:
    if not (
        isinstance(seq, int)
        and isinstance(id_, bytes)
        and isinstance(created_at, int)
        and isinstance(data, bytes)
    ):
        raise StoreError("unexpected types in jackrabbit_messages")
    return StoredMessage(seq, id_, created_at, data)
