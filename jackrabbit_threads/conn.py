"""The shell's side of one connection the core knows: its socket, TLS and outgoing bytes.

Three threads touch a ``Conn``: its reader (which owns it), whoever holds the core lock (which
appends the core's bytes to ``out``) and the writer (``writer.Writer``, which empties ``out``
onto the socket). ``lock`` guards the fields the first two and the writer share; the fields
after them are the writer's alone.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading

from .relay import Link
from .tls import TLSStream


class Conn:
    """One established connection; made by its reader thread once the core has an id for it."""

    __slots__ = (
        "blocked",
        "broken",
        "buffered",
        "closing",
        "done",
        "id",
        "lock",
        "out",
        "paused",
        "progress",
        "queued",
        "readable",
        "relay",
        "shut",
        "sock",
        "throttled",
        "tls",
        "tls_pending",
        "watching",
        "wire",
        "wire_size",
        "written",
    )

    def __init__(self, conn_id: int, sock: socket.socket, tls: TLSStream, now: float) -> None:
        self.id = conn_id
        self.sock = sock
        self.tls = tls
        self.lock = threading.Lock()
        #: The reader waits on it while reading is paused.
        self.readable = threading.Condition(self.lock)
        # -- guarded by ``lock`` --
        #: Plaintext for the writer, in the order the core produced it.
        self.out: collections.deque[bytes] = collections.deque()
        #: Bytes handed to this connection and not yet written to the socket ...
        self.buffered = 0
        #: ... and those written, in all.
        self.written = 0
        #: The core asked to hear as they are written (``WatchFlush``).
        self.watching = False
        #: The core was told this connection is not writable.
        self.throttled = False
        #: The core asked to stop reading (``PauseReading``).
        self.paused = False
        #: TLS itself has bytes to send (seen by the reader).
        self.tls_pending = False
        #: ``CloseTransport`` came: flush, then shut the socket; the core forgot it.
        self.closing = False
        #: The socket failed or was shut by force: nothing more to read or write.
        self.broken = False
        #: The reader thread has finished with the connection.
        self.done = False
        #: When bytes last moved either way (a shutdown drops connections that stall).
        self.progress = now
        #: Cluster mode: the link its bytes are piped to, once relayed (protocol §10.3).
        self.relay: Link | None = None
        # -- the writer's own --
        #: Waiting in the writer's queue.
        self.queued = False
        #: Registered with the writer's selector, waiting for room in the socket buffer.
        self.blocked = False
        #: Encrypted bytes taken from ``out`` and not yet all sent ...
        self.wire: memoryview | None = None
        #: ... and how many plaintext bytes they carry.
        self.wire_size = 0
        #: Our side is closed: ``close_notify`` and a TCP FIN have been sent.
        self.shut = False

    def kill(self) -> None:
        """Shut the socket now, both ways, and wake the reader (it then ends)."""
        with self.lock:
            self.broken = True
            self.readable.notify()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
