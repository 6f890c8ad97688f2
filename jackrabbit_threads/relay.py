"""Relayed connections on threads (protocol §10.3): the client's connection piped to a TLS link
with the node that serves its queue.

The core hands a connection over with a ``Relay`` action. A ``Link`` thread then connects to
the owner, sends the request with this node's proof, and copies what the owner sends into the
client's outgoing buffer (waiting while that buffer is full); the client's reader thread sends
what the client sends on the link (``send`` blocks while the owner does not read, so the reader
stops reading the client: backpressure both ways, as blocking sockets give it). When either side
ends, so does the other. If the owner cannot be reached, the client gets ``503`` and retries.

The link's TLS runs in a ``TLSStream``, as the server's own connections do: one thread reads
the socket while another writes it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable

from jackrabbit_host.relay import CONNECT_TIMEOUT, UNREACHABLE, address_of

from .tls import RECV_SIZE, TLSStream

__all__ = ["Link"]

log = logging.getLogger("jackrabbit.relay")


class Link:
    """One relayed client's link to the owner of its queue (see the module docstring).

    ``deliver(data)`` puts bytes in the client's outgoing buffer, waiting while it is full,
    and returns False once the client is gone; ``end()`` closes the client's side.
    """

    __slots__ = ("_address", "_closed", "_context", "_deliver", "_end", "_head", "_ready", "_sock",
                 "_tls", "_write_lock")  # fmt: skip

    def __init__(
        self,
        address: str,
        head: bytes,
        context: ssl.SSLContext,
        deliver: Callable[[bytes], bool],
        end: Callable[[], None],
    ) -> None:
        self._address = address
        self._head = head
        self._context = context
        self._deliver = deliver
        self._end = end
        self._sock: socket.socket | None = None
        self._tls: TLSStream | None = None
        #: Set once the link is up (or failed): ``send`` waits for it.
        self._ready = threading.Event()
        self._write_lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        threading.Thread(target=self._run, name="jackrabbit-relay", daemon=True).start()

    def send(self, data: bytes) -> bool:
        """Send what the client sent on to the owner (the client's reader thread calls it);
        False once the link is gone."""
        self._ready.wait(CONNECT_TIMEOUT + 5)
        return self._write(data)

    def close(self) -> None:
        """The client is gone: end the link."""
        self._closed = True
        self._ready.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _write(self, data: bytes) -> bool:
        sock, tls = self._sock, self._tls
        if sock is None or tls is None or self._closed:
            return False
        try:
            with self._write_lock:
                wire = tls.encrypt(data)
                if wire:
                    sock.sendall(wire)
        except OSError:
            return False
        return True

    def _run(self) -> None:
        try:
            self._connect()
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("cannot relay to %s: %s", self._address, exc)
            self._deliver(UNREACHABLE)
            self._ready.set()
            self._end()
            return
        try:
            self._ready.set()
            self._pump()
        finally:
            self.close()
            sock = self._sock
            if sock is not None:
                sock.close()
            self._end()

    def _connect(self) -> None:
        host, port = address_of(self._address)
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = TLSStream(sock, self._context, server_side=False, server_hostname=host)
            tls.handshake(CONNECT_TIMEOUT)
            sock.sendall(tls.encrypt(self._head))
        except BaseException:
            sock.close()
            raise
        self._sock, self._tls = sock, tls
        if self._closed:  # the client left while we connected
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _pump(self) -> None:
        """Copy the owner's bytes to the client until either side ends."""
        sock, tls = self._sock, self._tls
        assert sock is not None and tls is not None
        while not self._closed:
            try:
                raw = sock.recv(RECV_SIZE)
                if not raw:
                    return
                data, to_send = tls.decrypt(raw)
            except (OSError, ssl.SSLError):
                return
            if to_send and not self._write(b""):
                return
            if data and not self._deliver(data):
                return
            if tls.eof:
                return
