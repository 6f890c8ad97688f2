"""Relayed connections on the event loop (protocol §10.3): the client's TLS transport piped to
a TLS link with the node that serves its queue.

The core hands a connection over with a ``Relay`` action. Its transport gets a new protocol
here (``transport.set_protocol``), the link is opened, and from then on bytes go both ways
untouched; each side's write buffer pauses the other side's reading, so a slow peer on either
end holds at most a buffer's worth. When either side ends, so does the other. If the owner
cannot be reached, the client gets ``503`` and retries (``jackrabbit_host.relay``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from jackrabbit_host.relay import CONNECT_TIMEOUT, UNREACHABLE, address_of

__all__ = ["Pipe"]

log = logging.getLogger("jackrabbit.relay")


class Pipe:
    """One relayed client and its link to the owner."""

    __slots__ = ("_done", "_ended", "client", "link")

    def __init__(self, client: asyncio.Transport, done: Callable[[Pipe], None]) -> None:
        self.client = client
        self.link: asyncio.Transport | None = None
        self._done = done
        self._ended = False

    async def run(
        self, head: bytes, address: str, context: ssl.SSLContext, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Take the client's transport over, open the link, send ``head`` on it and pipe."""
        client = self.client
        client.set_protocol(_ClientSide(self))
        client.pause_reading()  # until the link is up: nothing to send the bytes to
        try:
            host, port = address_of(address)
            link, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _LinkSide(self), host, port, ssl=context, server_hostname=host
                ),
                CONNECT_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ValueError) as exc:
            log.warning("cannot relay to %s: %s", address, exc)
            if not client.is_closing():
                client.write(UNREACHABLE)
            self.end()
            return
        if self._ended:
            link.abort()
            return
        self.link = link
        link.write(head)
        client.resume_reading()

    def end(self) -> None:
        """Close both sides (once everything written so far is sent)."""
        if self._ended:
            return
        self._ended = True
        self.client.close()
        if self.link is not None:
            self.link.close()
        self._done(self)

    def abort(self) -> None:
        """Drop both sides now (shutdown)."""
        self.client.abort()
        if self.link is not None:
            self.link.abort()
        self.end()


class _ClientSide(asyncio.Protocol):
    """The client's transport once relayed: what it sends goes to the link."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe

    def data_received(self, data: bytes) -> None:
        link = self._pipe.link
        if link is not None and not link.is_closing():
            link.write(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._pipe.end()

    def pause_writing(self) -> None:
        link = self._pipe.link
        if link is not None and not link.is_closing():
            link.pause_reading()

    def resume_writing(self) -> None:
        link = self._pipe.link
        if link is not None and not link.is_closing():
            link.resume_reading()


class _LinkSide(asyncio.Protocol):
    """The link to the owner: what it sends goes to the client."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe

    def data_received(self, data: bytes) -> None:
        client = self._pipe.client
        if not client.is_closing():
            client.write(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._pipe.end()

    def pause_writing(self) -> None:
        if not self._pipe.client.is_closing():
            self._pipe.client.pause_reading()

    def resume_writing(self) -> None:
        if not self._pipe.client.is_closing():
            self._pipe.client.resume_reading()
