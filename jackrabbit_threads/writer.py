"""The writer: one thread that puts every connection's outgoing bytes on its socket.

A thread per connection just to write cost about 16 KB of stack for each idle connection;
one thread writing to non-blocking sockets costs nothing per connection and still never
waits on a slow reader. For each connection it is woken for (``wake``) it takes up to
``WRITE_SIZE`` bytes of plaintext from ``Conn.out``, encrypts them and ``send``\\ s what the
socket buffer takes. When a socket is full the rest waits in ``Conn.wire`` and the socket is
registered with the selector until it has room; meanwhile the other connections go on. A
connection with more to write goes to the back of the queue, so one fast consumer cannot
starve the others. Once a connection's plaintext is all written, ``sent(conn, size)`` tells
the server (which then lowers ``Conn.buffered``).

After ``CloseTransport`` (``Conn.closing``) and the last bytes, it sends TLS's
``close_notify`` and a TCP FIN. It also closes the sockets of connections whose reader has
ended (``retire``): the selector may still hold them, and a socket closed under a selector
could reappear, reused, as another connection's.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Final

from .conn import Conn

__all__ = ["WRITE_SIZE", "Writer"]

log = logging.getLogger("jackrabbit.threads")

#: Plaintext bytes encrypted and sent per connection per turn.
WRITE_SIZE: Final = 256 * 1024


class Writer:
    """The writer thread and its queue; see the module docstring.

    ``sent(conn, size)`` is called on the writer thread, without locks, each time ``size``
    bytes of ``conn``'s plaintext have all been handed to the kernel.
    """

    def __init__(self, sent: Callable[[Conn, int], None]) -> None:
        self._sent = sent
        self._lock = threading.Lock()
        self._ready: collections.deque[Conn] = collections.deque()
        self._retired: list[Conn] = []
        #: In (or about to enter) ``select`` with nothing queued: ``wake`` must ring.
        self._asleep = False
        self._stopping = False
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="jackrabbit-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self, conn: Conn) -> None:
        """``conn`` has something to write: bytes in ``out``, TLS's own, or its close."""
        with self._lock:
            if conn.queued:
                return
            conn.queued = True
            self._ready.append(conn)
            ring, self._asleep = self._asleep, False
        if ring:
            self._ring()

    def retire(self, conn: Conn) -> None:
        """``conn``'s reader has ended: forget it and close its socket."""
        with self._lock:
            self._retired.append(conn)
            ring, self._asleep = self._asleep, False
        if ring:
            self._ring()

    def stop(self, timeout: float) -> bool:
        """Close what was retired, end the thread (waiting at most ``timeout``); True if it
        ended. Sockets never retired are left to their owners."""
        with self._lock:
            self._stopping = True
        self._ring()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        return True

    def _ring(self) -> None:
        with contextlib.suppress(OSError):  # full (it will wake anyway) or closed
            self._wake_w.send(b"x")

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        selector = self._selector
        while True:
            with self._lock:
                work, self._ready = self._ready, collections.deque()
                retired, self._retired = self._retired, []
                for conn in work:
                    conn.queued = False
            for conn in retired:
                self._close(conn)
            for conn in work:
                self._turn(conn)
            with self._lock:
                if self._stopping and not self._retired:
                    return
                idle = not (self._ready or self._retired)
                self._asleep = idle
            events = selector.select(None if idle else 0)
            with self._lock:
                self._asleep = False
            for key, _ in events:
                conn = key.data
                if conn is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                selector.unregister(conn.sock)
                conn.blocked = False
                self._turn(conn)

    def _turn(self, conn: Conn) -> None:
        """``conn``'s turn: write what it has; a surprise ends it, not the writer."""
        try:
            self._flush(conn)
        except Exception:
            log.exception("connection %d: the writer failed", conn.id)
            conn.kill()

    def _flush(self, conn: Conn) -> None:
        """Send ``conn``'s bytes until its socket is full or ``WRITE_SIZE`` went out."""
        sock = conn.sock
        budget = WRITE_SIZE
        while budget > 0:
            wire = conn.wire
            if wire is None:
                wire = self._next(conn)
                if wire is None:
                    return
            try:
                sent = sock.send(wire)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                log.debug("connection %d: write failed: %s", conn.id, exc)
                conn.kill()  # the reader then reports the end to the core
                return
            if sent:
                conn.progress = time.monotonic()
            if sent < len(wire):
                conn.wire = wire[sent:]
                self._wait_for_room(conn)
                return
            conn.wire = None
            if conn.wire_size:
                budget -= conn.wire_size
                self._sent(conn, conn.wire_size)
                conn.wire_size = 0
            if conn.shut:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                return
        if conn.out or conn.closing:
            self.wake(conn)  # more to write: after the others

    def _next(self, conn: Conn) -> memoryview | None:
        """The next encrypted bytes to send for ``conn``, or None if it has nothing to say."""
        with conn.lock:
            if conn.broken or conn.shut:
                return None
            chunks: list[bytes] = []
            size = 0
            out = conn.out
            while out and size < WRITE_SIZE:
                chunk = out.popleft()
                chunks.append(chunk)
                size += len(chunk)
            tls_pending, conn.tls_pending = conn.tls_pending, False
            closing = conn.closing and not out
        if chunks:
            wire = conn.tls.encrypt(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        elif tls_pending:
            wire = conn.tls.encrypt(b"")
        elif closing:
            # The core sends nothing after CloseTransport: all is written.
            wire = conn.tls.close_notify()
            conn.shut = True
        else:
            return None
        conn.wire_size = size
        return memoryview(wire)

    def _wait_for_room(self, conn: Conn) -> None:
        """Come back to ``conn`` when its socket has room."""
        if not conn.blocked:
            conn.blocked = True
            self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)

    def _close(self, conn: Conn) -> None:
        """Close a retired connection's socket; nothing is written to it any more."""
        conn.shut = True
        conn.wire = None
        if conn.blocked:
            conn.blocked = False
            self._selector.unregister(conn.sock)
        conn.sock.close()
