"""What the core asks a shell to do: side effects as data (STYLE practice 1).

The shell drains ``Server.actions()`` after every call into the core and carries these out in
order. They are the only way the core reaches the outside world.
"""

from __future__ import annotations

from dataclasses import dataclass

from .connection import UpgradeRequest
from .storage import Batch


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` to connection ``conn``'s transport."""

    conn: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """Close ``conn``'s transport once everything sent before it is written.

    The core has forgotten the connection: later calls naming it are ignored.
    """

    conn: int


@dataclass(frozen=True, slots=True)
class PauseReading:
    """Stop reading from ``conn``: its unconfirmed adds piled up (backpressure)."""

    conn: int


@dataclass(frozen=True, slots=True)
class ResumeReading:
    """Read from ``conn`` again."""

    conn: int


@dataclass(frozen=True, slots=True)
class WatchFlush:
    """Call ``Server.flushed(conn, sent, now)`` once the bytes handed to ``conn`` so far are
    written to its socket (at once if they already are), ``sent`` being how many bytes of
    ``Send`` data for ``conn`` have been written in all. A report that covers less than was
    handed is allowed; the core then waits for a later one, so report again when the buffer
    empties (protocol §8.3)."""

    conn: int


@dataclass(frozen=True, slots=True)
class ReadMessages:
    """Read messages ``first``.. of ``queue`` with ``Store.read(queue, first, limit,
    max_bytes)``, then call ``Server.read_done(ticket, messages, now)`` (or ``read_failed``).
    Answer at once or later: the core does not wait (protocol §7.3)."""

    ticket: int
    queue: str
    first: int
    limit: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class FindKey:
    """Look up idempotency ``key`` of ``queue`` with ``Store.find_key``, then call
    ``Server.read_done(ticket, [message] or [], now)`` (or ``read_failed``) (protocol §6.8)."""

    ticket: int
    queue: str
    key: str


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """Persist ``batch`` with ``Store.write`` off the event loop, then call
    ``Server.batch_written()`` (or ``Server.batch_failed()``).

    At most one is outstanding at a time: the next one fills while this one syncs
    (group commit, protocol §7.1).
    """

    batch: Batch


@dataclass(frozen=True, slots=True)
class Locate:
    """Cluster mode (protocol §10.2): find the node that serves ``queue``, taking it for this
    node if none does. Answer with ``Server.adopt(record, lease_until, now)`` (this node holds
    it now; ``record`` read in the transaction that took it), ``Server.located(queue, node,
    address, now)`` (another live node serves it) or ``Server.locate_failed(queue, reason,
    now)``. Every ``Locate`` must be answered, later, in one of these three ways."""

    queue: str


@dataclass(frozen=True, slots=True)
class Relay:
    """Cluster mode (protocol §10.3): connection ``conn`` is the shell's from now on. Its
    upgrade ``request`` is for a queue that node ``node`` serves at ``address``
    (``wss://HOST:PORT``): open TLS to it, send the request with this node's relay proof,
    then ``early`` (what the peer sent after its request), and pipe bytes both ways until
    either side ends, then report the end with ``Server.receive_eof(conn, now)``: until then
    the connection counts against --max-connections. The core has forgotten everything else
    about ``conn``: other calls naming it are ignored."""

    conn: int
    node: str
    address: str
    request: UpgradeRequest
    early: bytes


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """Cluster mode (protocol §10.5): describe the cluster for ``GET /api/cluster``, then call
    ``Server.cluster_status(ticket, body, now)`` with the JSON body (None if it failed)."""

    ticket: int


Action = (
    Send | CloseTransport | PauseReading | ResumeReading | WatchFlush | ReadMessages | FindKey
    | WriteBatch | Locate | Relay | ClusterStatus
)
