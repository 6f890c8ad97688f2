"""The listening sockets, and who gets in: every connection counts from its accept on.

What an unauthenticated peer can make the server hold is bounded here, before any TLS:

- At most ``capacity`` connections are held in all (``--max-connections`` plus ``SPARE``: the
  spare ones finish TLS so the core can answer them HTTP 503, protocol §1.2, rather than being
  dropped without a word).
- At most ``MAX_HANDSHAKES`` of them may be in the TLS handshake, each for at most
  ``TLS_TIMEOUT`` seconds. A new connection over either bound displaces the oldest handshake
  that has not sent a byte yet, or else the oldest handshake; only when every held connection
  is past its handshake is the new one closed at once. So silent connections, however many,
  cannot keep a real client out: its ClientHello, sent at once, makes it outlive them, and the
  backlog is drained quickly because each turn of the loop accepts up to ``ACCEPT_BATCH``.
- Before its first byte a connection costs its socket and a ``Link`` (no TLS state, no
  buffer); the TLS state of a handshake in progress is some tens of KB (OpenSSL's).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Final

from .link import Link

log = logging.getLogger("jackrabbit.asyncio")

#: Connections beyond ``--max-connections`` still let through TLS, to be answered 503.
SPARE: Final = 16
#: Connections that may be in the TLS handshake at once.
MAX_HANDSHAKES: Final = 128
#: Seconds a connection has to finish the TLS handshake (or the whole handshake timeout,
#: protocol §9, if that is shorter).
TLS_TIMEOUT: Final = 5.0
#: Connections accepted per listening socket per turn of the loop.
ACCEPT_BATCH: Final = 128
#: Seconds accepting pauses when the process is out of file descriptors or memory.
ACCEPT_RETRY: Final = 1.0
#: Pending connections the kernel may queue for us.
BACKLOG: Final = 1024


def listen(host: str, port: int) -> list[socket.socket]:
    """Non-blocking listening sockets for every address ``host`` resolves to, all on one
    port (the first one's, when ``port`` is 0); an address family the host cannot open (IPv6
    switched off) is skipped. Raises ``OSError``."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    unusable: OSError | None = None
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                unusable = exc
                continue
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(listeners) > 1:
                address = (address[0], listeners[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        if not listeners:
            raise unusable or OSError(f"no address to listen on for {host!r}")
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


class Acceptor:
    """Accepts connections on ``listeners`` and admits them (see the module docstring);
    ``new_link(sock, now)`` makes the ``Link`` of an admitted socket."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listeners: list[socket.socket],
        new_link: Callable[[socket.socket, float], Link],
        *,
        capacity: int,
        tls_timeout: float = TLS_TIMEOUT,
    ) -> None:
        self._loop = loop
        self.listeners = listeners
        self._new_link = new_link
        self._capacity = capacity
        self._tls_timeout = tls_timeout
        #: Every connection held, in any phase.
        self.links: set[Link] = set()
        #: Those in the TLS handshake, oldest first.
        self._handshakes: dict[Link, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._retry: asyncio.TimerHandle | None = None

    @property
    def handshakes(self) -> int:
        return len(self._handshakes)

    def start(self) -> None:
        for listener in self.listeners:
            self._loop.add_reader(listener, self._accept, listener)

    def close(self) -> None:
        """Stop accepting and close the listening sockets; drop every handshake."""
        for listener in self.listeners:
            self._loop.remove_reader(listener)
            listener.close()
        for handle in (self._timer, self._retry):
            if handle is not None:
                handle.cancel()
        self._timer = self._retry = None
        for link in list(self._handshakes):
            self._drop(link)

    def established(self, link: Link) -> None:
        """``link`` finished its TLS handshake."""
        self._handshakes.pop(link, None)

    def discard(self, link: Link) -> None:
        """``link`` is gone."""
        self._handshakes.pop(link, None)
        self.links.discard(link)

    def _accept(self, listener: socket.socket) -> None:
        now = self._loop.time()
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # out of file descriptors or memory, most likely
                log.warning("cannot accept connections for %.0fs: %s", ACCEPT_RETRY, exc)
                self._pause_accepting()
                return
            self._admit(sock, now)

    def _admit(self, sock: socket.socket, now: float) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = self._new_link(sock, now)
        self.links.add(link)
        self._handshakes[link] = None
        link.start()  # a real client's ClientHello is usually there already: now it has spoken
        while len(self._handshakes) > MAX_HANDSHAKES or len(self.links) > self._capacity:
            victim = self._victim()
            if victim is None:
                break
            self._drop(victim)
        self._arm()

    def _victim(self) -> Link | None:
        """The handshake to drop for a newcomer: the oldest silent one, else the oldest (the
        newcomer itself when every other connection is past its handshake)."""
        for link in self._handshakes:
            if not link.heard:
                return link
        return next(iter(self._handshakes), None)

    def _drop(self, link: Link) -> None:
        self._handshakes.pop(link, None)
        self.links.discard(link)
        link.abort()

    def _arm(self) -> None:
        if self._timer is None and self._handshakes:
            oldest = next(iter(self._handshakes))
            self._timer = self._loop.call_at(oldest.accepted_at + self._tls_timeout, self._expire)

    def _expire(self) -> None:
        """Drop the handshakes older than the TLS timeout (they are in accept order)."""
        self._timer = None
        now = self._loop.time()
        while self._handshakes:
            oldest = next(iter(self._handshakes))
            if oldest.accepted_at + self._tls_timeout > now:
                break
            self._drop(oldest)
        self._arm()

    def _pause_accepting(self) -> None:
        for listener in self.listeners:
            self._loop.remove_reader(listener)
        self._retry = self._loop.call_later(ACCEPT_RETRY, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._retry = None
        self.start()
