"""Relayed connections on the event loop (protocol §10.3): a client's ``Link`` piped to a TLS
connection with the node that serves its queue.

The core hands a connection over with a ``Relay`` action; the server then routes that link's
events here instead of to the core. The connection to the owner is opened, the request sent
with this node's proof, and from then on bytes go both ways untouched: what the client sends is
written to the owner, what the owner sends is written to the client's link. Each side's full
write buffer pauses reading on the other side, so a slow peer on either end holds at most a
buffer's worth. When either side ends, so does the other. If the owner cannot be reached, the
client gets ``503`` and retries (``jackrabbit_host.relay``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from jackrabbit_host.relay import CONNECT_TIMEOUT, UNREACHABLE, address_of

from .link import Link

__all__ = ["Pipe"]

log = logging.getLogger("jackrabbit.relay")


class Pipe:
    """One relayed client link and its connection to the owner."""

    __slots__ = ("_ended", "client", "owner")

    def __init__(self, client: Link) -> None:
        self.client = client
        self.owner: asyncio.Transport | None = None
        self._ended = False

    async def run(
        self, head: bytes, address: str, context: ssl.SSLContext, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Open the connection to the owner at ``address``, send ``head``, then pipe."""
        client = self.client
        client.pause_reading()  # until the owner is reached: nothing to send the bytes to
        try:
            host, port = address_of(address)
            owner, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _OwnerSide(self), host, port, ssl=context, server_hostname=host
                ),
                CONNECT_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ValueError) as exc:
            log.warning("cannot relay to %s: %s", address, exc)
            client.write(UNREACHABLE)
            self.end()
            return
        if self._ended:
            owner.abort()
            return
        self.owner = owner
        owner.write(head)
        client.resume_reading()

    # -- the client's side (the server routes its link's events here) ------------------------

    def from_client(self, data: bytes) -> None:
        owner = self.owner
        if owner is not None and not owner.is_closing():
            owner.write(data)

    def client_writable(self, writable: bool) -> None:
        owner = self.owner
        if owner is not None and not owner.is_closing():
            if writable:
                owner.resume_reading()
            else:
                owner.pause_reading()

    # -- the end -----------------------------------------------------------------------------

    def end(self) -> None:
        """Close both sides, each once what was written to it is sent."""
        if self._ended:
            return
        self._ended = True
        self.client.close()
        if self.owner is not None:
            self.owner.close()

    def abort(self) -> None:
        """Drop both sides now (shutdown)."""
        self._ended = True
        if self.owner is not None:
            self.owner.abort()
        self.client.abort()


class _OwnerSide(asyncio.Protocol):
    """The connection to the owner: what it sends goes to the client's link."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe

    def data_received(self, data: bytes) -> None:
        self._pipe.client.write(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._pipe.end()

    def pause_writing(self) -> None:
        self._pipe.client.pause_reading()

    def resume_writing(self) -> None:
        self._pipe.client.resume_reading()
