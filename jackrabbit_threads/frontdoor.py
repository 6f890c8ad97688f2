"""The front door: accepting connections and running their TLS handshakes, all on one thread.

Who gets in, and which handshake makes room for a newcomer, is ``jackrabbit_host.admission``'s
(the policy both shells share, protocol §9); this module does the sockets. Before its
handshake is done a peer holds no thread (a thread per handshake let a thousand silent sockets
take every slot) and no TLS state until its first bytes arrive (about 45 KB once begun).
Handshakes run non-blocking over memory buffers (``tls.TLSStream.advance``) as their bytes
arrive, on the thread that accepts; its selector watches the listeners, every pending socket
and a wake-up socket for ``stop()``. When the door says every handshake is moving, the
listeners are left alone (newcomers wait in the kernel's backlog) until one ends or stalls.

A finished handshake is handed to ``ready(sock, tls, address)`` (the server starts its reader
there); the core then answers HTTP 503 to those beyond ``--max-connections``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Final

from jackrabbit_host.admission import Door
from jackrabbit_host.limits import ACCEPT_BATCH

from .tls import TLSStream

__all__ = ["Address", "FrontDoor"]

log = logging.getLogger("jackrabbit.threads")

#: Bytes asked of a socket per ``recv`` during a handshake (a ClientHello is a few hundred).
RECV_SIZE: Final = 16 * 1024

#: What the selector's ``data`` is for the two sockets that are not handshakes.
_LISTENER: Final = "listener"
_WAKE: Final = "wake"

#: What ``socket.accept`` returns as the peer's address (its shape depends on the family).
Address = Any


class _Pending:
    """One accepted socket whose handshake is not done."""

    __slots__ = ("address", "done", "heard_at", "live", "out", "sock", "tls")

    def __init__(self, sock: socket.socket, address: Address) -> None:
        self.sock = sock
        self.address = address
        #: When bytes last came from the peer (None: it has sent nothing).
        self.heard_at: float | None = None
        #: Made on the first bytes: a silent peer costs no TLS state.
        self.tls: TLSStream | None = None
        #: Handshake bytes the socket did not take yet.
        self.out = b""
        #: The handshake is complete (handed over once ``out`` is sent).
        self.done = False
        #: Still pending (not dropped, not handed over).
        self.live = True


class FrontDoor:
    """Accepts on ``listeners`` and handshakes until ``stop()``; see the module docstring.

    ``held()`` is how many connections were handed over and are still open; ``slots`` and
    ``timeout`` are the admission's (``jackrabbit_host.limits.slots`` and ``tls_timeout``).
    """

    def __init__(
        self,
        listeners: list[socket.socket],
        context: ssl.SSLContext,
        *,
        slots: int,
        timeout: float,
        held: Callable[[], int],
        ready: Callable[[socket.socket, TLSStream, Address], None],
    ) -> None:
        self._listeners = listeners
        self._context = context
        self._held = held
        self._ready = ready
        self._door: Door[_Pending] = Door(log, slots=slots, timeout=timeout)
        self._selector = selectors.DefaultSelector()
        self._listening = False
        #: When to listen again after a pause (``inf``: not paused).
        self._resume_at = math.inf
        # Stopping: a flag and a wake-up socket, both safe to touch from a signal handler.
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    @property
    def pending(self) -> int:
        """Handshakes in progress."""
        return len(self._door)

    def stop(self) -> None:
        """Make ``run`` return; safe in a signal handler and from any thread."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def run(self) -> None:
        """Accept and handshake until ``stop()``; then ``close()``."""
        selector = self._selector
        door = self._door
        try:
            selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
            self._listen()
            while not self._stopping:
                expiry = door.next_deadline()
                wake_at = min(math.inf if expiry is None else expiry, self._resume_at)
                timeout = None if wake_at == math.inf else max(0.0, wake_at - time.monotonic())
                for key, events in selector.select(timeout):
                    data = key.data
                    if data is _LISTENER:
                        self._accept_some(key.fileobj)  # type: ignore[arg-type]
                    elif data is _WAKE:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    elif data.live:
                        self._turn(data, events)
                now = time.monotonic()
                for pending in door.expired(now):
                    self._drop(pending, "the TLS handshake timed out")
                if now >= self._resume_at:
                    self._listen()
        finally:
            self.close()

    def close(self) -> None:
        """Close the listeners and every pending handshake."""
        for pending in self._door.handshakes():
            self._drop(pending, "shutting down")
        self._selector.close()
        for listener in self._listeners:
            listener.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- accepting ------------------------------------------------------------------------

    def _listen(self) -> None:
        self._resume_at = math.inf
        if not self._listening:
            self._listening = True
            for listener in self._listeners:
                self._selector.register(listener, selectors.EVENT_READ, _LISTENER)

    def _pause(self, until: float) -> None:
        """Stop accepting until ``until`` or until a pending handshake ends."""
        if self._listening:
            self._listening = False
            for listener in self._listeners:
                self._selector.unregister(listener)
        self._resume_at = until

    def _accept_some(self, listener: socket.socket) -> None:
        door = self._door
        for _ in range(ACCEPT_BATCH):
            now = time.monotonic()
            wait = door.make_room(self._held(), now, self._last_look, self._make_room_drop)
            if wait is not None:
                self._pause(wait)
                return
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                failed = door.accept_failed(exc, now)
                if isinstance(failed, float):
                    self._pause(failed)
                    return
                self._drop(failed, "out of file descriptors")
                continue
            if door.full(self._held()):
                sock.close()
                door.refuse(now)
            else:
                self._admit(sock, address, now)

    def _last_look(self, pending: _Pending) -> None:
        self._turn(pending, selectors.EVENT_READ)

    def _make_room_drop(self, pending: _Pending) -> None:
        self._drop(pending, "making room for a new connection")

    def _admit(self, sock: socket.socket, address: Address, now: float) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = _Pending(sock, address)
        self._door.add(pending, now)
        self._selector.register(sock, selectors.EVENT_READ, pending)

    # -- handshaking ----------------------------------------------------------------------

    def _turn(self, pending: _Pending, events: int) -> None:
        """``_advance``, where a surprise drops the one connection, not the front door."""
        try:
            self._advance(pending, events)
        except Exception:
            log.exception("a TLS handshake failed unexpectedly")
            if pending.live:
                self._drop(pending, "an unexpected error")

    def _advance(self, pending: _Pending, events: int) -> None:
        """The socket is readable or writable: move its handshake on."""
        if events & selectors.EVENT_READ:
            try:
                data = pending.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError as exc:
                self._drop(pending, f"recv failed: {exc}")
                return
            if data == b"":
                self._drop(pending, "closed during the TLS handshake")
                return
            if data is not None and not self._feed(pending, data):
                return
        if pending.out:
            self._send(pending)
        elif pending.done:
            self._hand_over(pending)

    def _feed(self, pending: _Pending, data: bytes) -> bool:
        """Give the handshake ``data``; False if that ended it."""
        pending.heard_at = time.monotonic()
        tls = pending.tls
        if tls is None:
            tls = pending.tls = TLSStream(pending.sock, self._context, server_side=True)
        try:
            pending.done = tls.advance(data)
        except (ssl.SSLError, ValueError) as exc:
            # Garbage, plain HTTP, a scanner: not worth more than a debug line.
            self._drop(pending, f"TLS handshake failed: {exc}")
            return False
        pending.out += tls.encrypt(b"")
        return True

    def _send(self, pending: _Pending) -> None:
        """Send the handshake's bytes; hand it over once they are out and it is done."""
        try:
            sent = pending.sock.send(pending.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._drop(pending, f"send failed: {exc}")
            return
        pending.out = pending.out[sent:]
        if pending.out:
            events = selectors.EVENT_READ | selectors.EVENT_WRITE
            self._selector.modify(pending.sock, events, pending)
        elif pending.done:
            self._hand_over(pending)
        else:
            self._selector.modify(pending.sock, selectors.EVENT_READ, pending)

    def _hand_over(self, pending: _Pending) -> None:
        tls = pending.tls
        assert tls is not None
        self._forget(pending)
        self._ready(pending.sock, tls, pending.address)

    # -- dropping -------------------------------------------------------------------------

    def _drop(self, pending: _Pending, reason: str) -> None:
        log.debug("dropping a connection from %s: %s", pending.address, reason)
        self._forget(pending)
        pending.sock.close()

    def _forget(self, pending: _Pending) -> None:
        """No longer pending; room for a new connection, so listen again if paused."""
        if not pending.live:
            return
        pending.live = False
        self._door.discard(pending)
        self._selector.unregister(pending.sock)
        if not self._listening and not self._stopping:
            self._resume_at = 0.0
