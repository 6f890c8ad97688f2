"""Accepting connections on the event loop: every connection counts from its accept on.

Who gets in, and which handshake makes room for a newcomer, is ``jackrabbit_host.admission``'s
(the policy both shells share, protocol §9); this module does the sockets. Before its first
byte a connection costs its socket and a ``Link`` (no TLS state, no buffer); the TLS state of
a handshake in progress is some tens of KB (OpenSSL's). A newcomer's ``Link`` reads at once,
so a real client's ClientHello, usually there already, makes it count as talking. When the
door says every handshake is moving, the listeners are left alone (newcomers wait in the
kernel's backlog) until one ends or stalls.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from jackrabbit_host.admission import Door
from jackrabbit_host.limits import ACCEPT_BATCH

from .link import Link

log = logging.getLogger("jackrabbit.asyncio")


class Acceptor:
    """Accepts connections on ``listeners`` and admits them (see the module docstring);
    ``new_link(sock, now)`` makes the ``Link`` of an admitted socket. ``slots`` and
    ``timeout`` are the admission's (``jackrabbit_host.limits.slots`` and ``tls_timeout``)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listeners: list[socket.socket],
        new_link: Callable[[socket.socket, float], Link],
        *,
        slots: int,
        timeout: float,
    ) -> None:
        self._loop = loop
        self.listeners = listeners
        self._new_link = new_link
        self._door: Door[Link] = Door(log, slots=slots, timeout=timeout)
        #: Every connection held, in any phase.
        self.links: set[Link] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        #: Accepting is paused (``_pause``) until this handle fires or a handshake ends.
        self._paused: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def handshakes(self) -> int:
        return len(self._door)

    def start(self) -> None:
        for listener in self.listeners:
            self._loop.add_reader(listener, self._accept, listener)

    def close(self) -> None:
        """Stop accepting and close the listening sockets; drop every handshake."""
        self._closed = True
        if self._paused is None:
            for listener in self.listeners:
                self._loop.remove_reader(listener)
        for listener in self.listeners:
            listener.close()
        for handle in (self._timer, self._paused):
            if handle is not None:
                handle.cancel()
        self._timer = self._paused = None
        for link in self._door.handshakes():
            self._drop(link)

    def established(self, link: Link) -> None:
        """``link`` finished its TLS handshake."""
        self._ended(link)

    def discard(self, link: Link) -> None:
        """``link`` is gone."""
        self._ended(link)
        self.links.discard(link)

    def _ended(self, link: Link) -> None:
        """``link`` is no longer in its handshake: room for a newcomer if accepting waits."""
        self._door.discard(link)
        if self._paused is not None:
            self._resume()

    def _accept(self, listener: socket.socket) -> None:
        door = self._door
        for _ in range(ACCEPT_BATCH):
            now = self._loop.time()
            held = len(self.links) - len(door)
            wait = door.make_room(held, now, Link.look, self._drop)
            if wait is not None:
                self._pause(wait)
                return
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # out of file descriptors or memory, most likely
                failed = door.accept_failed(exc, now)
                if isinstance(failed, float):
                    self._pause(failed)
                    return
                self._drop(failed)
                continue
            if door.full(held):
                sock.close()
                door.refuse(now)
                continue
            self._admit(sock, now)

    def _admit(self, sock: socket.socket, now: float) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = self._new_link(sock, now)
        self.links.add(link)
        self._door.add(link, now)
        self._arm()
        link.start()

    def _drop(self, link: Link) -> None:
        self._door.discard(link)
        self.links.discard(link)
        link.abort()

    def _arm(self) -> None:
        """Have ``_expire`` run when the oldest handshake runs out of time."""
        deadline = self._door.next_deadline()
        if deadline == self._deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._deadline = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = self._deadline = None
        for link in self._door.expired(self._loop.time()):
            self._drop(link)
        self._arm()

    def _pause(self, until: float) -> None:
        """Stop accepting until ``until`` or until a handshake ends."""
        if self._paused is None:
            for listener in self.listeners:
                self._loop.remove_reader(listener)
        else:
            self._paused.cancel()
        self._paused = self._loop.call_at(until, self._resume)

    def _resume(self) -> None:
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
            if not self._closed:
                self.start()
