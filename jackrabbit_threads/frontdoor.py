"""The front door: accepting connections and running their TLS handshakes, all on one thread.

Before its TLS handshake is done a peer has proved nothing, so what it can make the server
hold is kept small and bounded: no thread (a thread per handshake let a thousand silent
sockets take every slot), no TLS state until its first bytes arrive, and at most
``PENDING_LIMIT`` handshakes at a time (about 45 KB of TLS state each once begun).
Handshakes run non-blocking over memory buffers (``tls.TLSStream.advance``) as their bytes
arrive, on the thread that accepts; its selector watches the listener, every pending socket
and a wake-up socket for ``stop()``.

The rules:

- Every connection counts from accept on: the pending handshakes plus the connections already
  handed over (``held()``) never exceed ``slots``. When no handshake is pending and all slots
  are serving, a new connection is closed at once.
- A new connection over either bound makes room by dropping a pending handshake: the oldest
  whose peer has sent nothing (after one last look), else the one that has waited longest
  for its peer if that is over ``PEER_STALL``. Silent sockets thus cannot push out a client
  that is busy handshaking. If every handshake is moving, accepting pauses and new
  connections wait in the kernel's backlog, which costs us nothing, until one is done.
- A handshake not done ``timeout`` seconds after the accept is dropped.
- A finished handshake is handed to ``ready(sock, tls, address)`` (the server starts its
  reader there); the core then answers HTTP 503 to those beyond ``--max-connections``.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import math
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Final

from .tls import TLSStream

__all__ = ["PENDING_LIMIT", "Address", "FrontDoor"]

log = logging.getLogger("jackrabbit.threads")

#: Most TLS handshakes in progress at once.
PENDING_LIMIT: Final = 128
#: Seconds a begun handshake may wait for its peer before a new connection may take its place.
PEER_STALL: Final = 1.0
#: Connections accepted per wake-up before the pending handshakes get a turn.
ACCEPT_BATCH: Final = 64
#: Bytes asked of a socket per ``recv`` during a handshake (a ClientHello is a few hundred).
RECV_SIZE: Final = 16 * 1024
#: Seconds between checks for handshakes past their time.
EXPIRY_STEP: Final = 0.1
#: Seconds accepting pauses after ``accept`` failed (out of file descriptors).
ACCEPT_PAUSE: Final = 0.05
#: Seconds between two log lines about refused connections or failed accepts.
LOG_EVERY: Final = 10.0

#: What the selector's ``data`` is for the two sockets that are not handshakes.
_LISTENER: Final = "listener"
_WAKE: Final = "wake"

#: What ``socket.accept`` returns as the peer's address (its shape depends on the family).
Address = Any


class _Pending:
    """One accepted socket whose handshake is not done."""

    __slots__ = ("address", "deadline", "done", "heard", "live", "out", "sock", "tls")

    def __init__(self, sock: socket.socket, address: Address, now: float, timeout: float) -> None:
        self.sock = sock
        self.address = address
        self.deadline = now + timeout
        #: When bytes last came from the peer.
        self.heard = now
        #: Made on the first bytes: a silent peer costs no TLS state.
        self.tls: TLSStream | None = None
        #: Handshake bytes the socket did not take yet.
        self.out = b""
        #: The handshake is complete (handed over once ``out`` is sent).
        self.done = False
        #: Still pending (not dropped, not handed over).
        self.live = True


class FrontDoor:
    """Accepts on ``listener`` and handshakes until ``stop()``; see the module docstring.

    ``held()`` is how many connections were handed over and are still open.
    """

    def __init__(
        self,
        listener: socket.socket,
        context: ssl.SSLContext,
        *,
        slots: int,
        timeout: float,
        held: Callable[[], int],
        ready: Callable[[socket.socket, TLSStream, Address], None],
    ) -> None:
        self._listener = listener
        self._context = context
        self._slots = slots
        self._timeout = timeout
        self._held = held
        self._ready = ready
        #: Pending handshakes by socket: peers that sent nothing yet, oldest first ...
        self._silent: collections.OrderedDict[socket.socket, _Pending] = (
            collections.OrderedDict()
        )
        #: ... and peers whose handshake has begun, the one heard from longest ago first.
        self._started: collections.OrderedDict[socket.socket, _Pending] = (
            collections.OrderedDict()
        )
        self._selector = selectors.DefaultSelector()
        self._next_expiry = math.inf
        self._listening = False
        #: When to listen again after a pause (``inf``: not paused).
        self._resume_at = math.inf
        self._refused = 0
        self._refusals_logged = -LOG_EVERY
        self._failures_logged = -LOG_EVERY
        # Stopping: a flag and a wake-up socket, both safe to touch from a signal handler.
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    @property
    def pending(self) -> int:
        """Handshakes in progress."""
        return len(self._silent) + len(self._started)

    def stop(self) -> None:
        """Make ``run`` return; safe in a signal handler and from any thread."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def run(self) -> None:
        """Accept and handshake until ``stop()``; then ``close()``."""
        selector = self._selector
        try:
            selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
            self._listen()
            while not self._stopping:
                wake_at = min(self._next_expiry, self._resume_at)
                timeout = None if wake_at == math.inf else max(0.0, wake_at - time.monotonic())
                for key, events in selector.select(timeout):
                    data = key.data
                    if data is _LISTENER:
                        self._accept_some()
                    elif data is _WAKE:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    elif data.live:
                        self._turn(data, events)
                now = time.monotonic()
                if now >= self._next_expiry:
                    self._expire(now)
                if now >= self._resume_at:
                    self._listen()
        finally:
            self.close()

    def close(self) -> None:
        """Close the listener and every pending handshake."""
        for pending in [*self._silent.values(), *self._started.values()]:
            self._drop(pending, "shutting down")
        self._selector.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- accepting ------------------------------------------------------------------------

    def _listen(self) -> None:
        self._resume_at = math.inf
        if not self._listening:
            self._listening = True
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)

    def _pause(self, until: float) -> None:
        """Stop accepting until ``until`` or until a pending handshake ends."""
        if self._listening:
            self._listening = False
            self._selector.unregister(self._listener)
        self._resume_at = until

    def _accept_some(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self._make_room():
                return
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors, most likely: listen again once some are free.
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self.pending:
                    self._drop(self._oldest(), "out of file descriptors")
                    continue
                now = time.monotonic()
                if now - self._failures_logged >= LOG_EVERY:
                    log.warning("accept failed: %s", exc)
                    self._failures_logged = now
                self._pause(now + ACCEPT_PAUSE)
                return
            if self.pending + self._held() >= self._slots:
                self._refuse(sock)
            else:
                self._admit(sock, address)

    def _make_room(self) -> bool:
        """Drop pending handshakes until one more fits; False (and accepting is paused) if
        every one is moving. True also when all slots are serving: the next is refused."""
        while self.pending and self.pending >= min(PENDING_LIMIT, self._slots - self._held()):
            if self._silent:
                oldest = next(iter(self._silent.values()))
                self._turn(oldest, selectors.EVENT_READ)  # one last look
                if oldest.live and oldest.tls is None:
                    self._drop(oldest, "making room for a new connection")
                continue
            oldest = next(iter(self._started.values()))
            now = time.monotonic()
            if now - oldest.heard < PEER_STALL:
                self._pause(oldest.heard + PEER_STALL)
                return False
            self._drop(oldest, "making room for a new connection")
        return True

    def _oldest(self) -> _Pending:
        """The pending handshake to drop first (there must be one)."""
        return next(iter((self._silent or self._started).values()))

    def _admit(self, sock: socket.socket, address: Address) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = _Pending(sock, address, time.monotonic(), self._timeout)
        self._next_expiry = min(self._next_expiry, pending.deadline)
        self._silent[sock] = pending
        self._selector.register(sock, selectors.EVENT_READ, pending)

    def _refuse(self, sock: socket.socket) -> None:
        """Close ``sock`` at once; say so now and then, not once per socket."""
        sock.close()
        self._refused += 1
        now = time.monotonic()
        if now - self._refusals_logged >= LOG_EVERY:
            log.warning(
                "refused %d connection(s): all %d slots are serving", self._refused, self._slots
            )
            self._refusals_logged, self._refused = now, 0

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
        sock = pending.sock
        tls = pending.tls
        if tls is None:
            tls = pending.tls = TLSStream(sock, self._context, server_side=True)
            del self._silent[sock]
        else:
            del self._started[sock]
        self._started[sock] = pending  # heard from just now: last in line
        pending.heard = time.monotonic()
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

    def _expire(self, now: float) -> None:
        """Drop the handshakes past their deadline; look again in ``EXPIRY_STEP`` at least."""
        next_expiry = math.inf
        for pending in [*self._silent.values(), *self._started.values()]:
            if pending.deadline <= now:
                self._drop(pending, "the TLS handshake timed out")
            else:
                next_expiry = min(next_expiry, pending.deadline)
        self._next_expiry = max(next_expiry, now + EXPIRY_STEP) if self.pending else math.inf

    def _drop(self, pending: _Pending, reason: str) -> None:
        log.debug("dropping a connection from %s: %s", pending.address, reason)
        self._forget(pending)
        pending.sock.close()

    def _forget(self, pending: _Pending) -> None:
        """No longer pending; room for a new connection, so listen again if paused."""
        pending.live = False
        self._selector.unregister(pending.sock)
        (self._started if pending.tls is not None else self._silent).pop(pending.sock, None)
        if not self._listening and not self._stopping:
            self._resume_at = 0.0
