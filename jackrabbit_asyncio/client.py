"""The asyncio client: protocol v1 over one TLS connection, pipelined.

The logic is the core's ``ClientProtocol`` (matching replies to requests, cumulative acks,
roles, what fails when the connection is lost, when to reconnect); this module moves its bytes
with an ``asyncio.Protocol``, sleeps its back-off and wakes futures. ``jackrabbit_threads.Client``
is its blocking twin::

    async with await Client.connect("wss://127.0.0.1:8443", ca="tmp/dev-certs/ca.pem") as client:
        seq = await client.add(b"hello")
        async for message in client.take():
            print(message.seq, message.data)
            await message.ack()

Pipelining: ``add`` may be called from any number of tasks at once. Each call queues its frame
and waits for the reply that carries its ``req``; the frames queued during one turn of the
event loop leave in one ``transport.write`` (one TLS record run, one ``send``). Acks are
cumulative, so several ``ack()`` calls in one turn are sent as one ack of the highest seq
(always before any request queued after them).

Reconnecting (``reconnect=True``): when the connection is lost, the client reconnects (at once,
then with back-off: 0.1 s doubling up to 5 s, until ``close()``) and, if it was a consumer,
sends ``take`` again: it joins the *end* of the consumer line (the server has promoted the
next standby meanwhile). Adds that were waiting for their reply fail with ``ConnectionLost``
(a ``ConnectionError``): such a message may or may not have been stored. To retry without
risking a duplicate, give each message an idempotency ``key``: a repeated key is answered with
the first message's seq and stores nothing new. Adds made while the client is reconnecting
leave on the new connection. Deliveries not yet read from the iterator when the connection
drops are discarded (their acks could not reach the server anyway); the server delivers them
again, ``redelivered=True``, to whichever consumer is active. An upgrade answered 401 or 403
(``AccessDenied``) ends the reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from typing import Any, Final, Unpack, cast

from jackrabbit_core.client import Added, Phase, Role, RoleChanged
from jackrabbit_core.client_errors import AccessDenied, ClientError, ConnectionLost
from jackrabbit_host.client import ClientBase, ClientOptions, Reply
from jackrabbit_host.client import Message as BaseMessage

__all__ = [
    "AccessDenied",
    "Client",
    "ClientError",
    "ConnectionLost",
    "Message",
    "Role",
    "Subscription",
]

#: The transport's low-water mark: writing resumes below it (``Client.high_water`` pauses).
LOW_WATER: Final = 256 * 1024
#: Requests queued in one turn of the loop past which they are written at once.
EAGER_WRITE: Final = 64


class Message(BaseMessage):
    """A delivered message; ``await ack()`` once it is handled."""

    __slots__ = ()

    async def ack(self) -> None:
        """Acknowledge this message and every earlier one (protocol §3.3).

        Does nothing if the connection it came on is gone: the server delivers it again.
        """
        self._client._ack(self.seq, self._generation)


class Subscription:
    """What ``Client.take()`` returns: ``await`` it to wait for the server's answer (the
    client's ``role`` is then set), or iterate it with ``async for`` to get the messages
    (iterating sends the ``take`` first if it was not awaited). The iteration ends when the
    connection closes for good (``close()``, or a loss without ``reconnect``)."""

    def __init__(self, client: Client, prefetch: int) -> None:
        self._client = client
        self.prefetch = prefetch
        self._answer: asyncio.Future[Reply] | None = None

    def __await__(self) -> Generator[Any, None, Subscription]:
        return self._start().__await__()

    async def _start(self) -> Subscription:
        if self._answer is None:
            client = self._client
            self._answer = client._request(client._protocol.take(self.prefetch))
        await self._answer
        return self

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        client = self._client
        if self._answer is None:
            await self._start()
        deliveries = client._deliveries
        while not deliveries:
            if client._protocol.ended:
                raise StopAsyncIteration
            waiter = client._loop.create_future()
            client._reader = waiter
            try:
                await waiter
            finally:
                client._reader = None
        return cast(Message, deliveries.popleft())


class _Link(asyncio.Protocol):
    """One TLS connection: one ``generation`` of the client's protocol."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.generation = client._protocol.generation
        self.transport: asyncio.Transport | None = None
        #: Resolved when the upgrade is accepted, failed when it is refused.
        self.opened: asyncio.Future[None] = client._loop.create_future()
        self.lost: asyncio.Future[None] = client._loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(self.client.high_water, LOW_WATER)
        self.client._flush()  # the upgrade request

    def data_received(self, data: bytes) -> None:
        self.client._receive(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._receive(self, None)
        self.writable.set()  # wake requests waiting for a drain
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Client(ClientBase[asyncio.Future[Reply]]):
    """A connection to one queue of a jackrabbit server. Make one with ``await
    Client.connect(...)``; see the module docstring for pipelining and reconnecting."""

    message_type = Message

    def __init__(self, url: str, queue: str | None = None, **options: Unpack[ClientOptions]):
        """Set up, without connecting: use ``connect``."""
        super().__init__(url, queue, options)
        self._loop = asyncio.get_running_loop()
        self._link: _Link | None = None
        self._subscription: Subscription | None = None
        self._reader: asyncio.Future[None] | None = None  # the iteration waiting for a message
        self._queued = 0  # requests queued since the last write
        self._flush_scheduled = False
        self._reconnector: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, url: str, queue: str | None = None, **options: Unpack[ClientOptions]
    ) -> Client:
        """Connect to ``queue`` at ``url`` (``wss://HOST:PORT``; a ``/queues/NAME`` path names
        the queue too: giving both is an error unless they agree, neither means ``default``).
        The options (``ca``, ``ssl``, ``reconnect``, ``on_role``, ``token``) are described in
        ``jackrabbit_host.client.ClientOptions``.

        Raises ``ValueError`` for a URL, queue name or token that cannot be used, ``OSError``
        if the server cannot be reached (``TimeoutError`` after ``connect_timeout`` seconds),
        ``ssl.SSLError`` for a certificate problem, ``AccessDenied`` if the server refuses the
        credentials (HTTP 401: ``unauthorized``, 403: ``forbidden``) and ``ConnectionLost``
        (code ``refused``) if it refuses the upgrade otherwise (404 bad queue name, 503 full...).
        """
        client = cls(url, queue, **options)
        await client._open()
        if client.reconnect:
            client._reconnector = client._loop.create_task(client._stay_connected())
        return client

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- requests -------------------------------------------------------------------------

    async def add(self, data: bytes, key: str | None = None) -> int:
        """Append ``data`` to the queue; returns its seq once it is durable (protocol §3.1).

        With ``key``, a repeat of that key returns the first message's seq and stores nothing.
        Safe to call from many tasks at once (the adds are pipelined). Raises ``ClientError``
        if the server refuses it, ``ConnectionLost`` if the connection is lost first.
        """
        link = self._link
        if link is not None and not link.writable.is_set():
            await link.writable.wait()
        reply = await self._request(self._protocol.add(data, key))
        assert isinstance(reply, Added)
        return reply.seq

    def take(self, prefetch: int = 1000) -> Subscription:
        """Join the queue's consumer line (protocol §3.2); ``prefetch`` bounds the messages
        delivered and not yet acked. Await the result to wait for the answer, iterate it for
        the messages. A client takes once: calling again returns the same subscription."""
        if self._subscription is None:
            self._subscription = Subscription(self, prefetch)
        return self._subscription

    async def handover(self) -> int:
        """Hand the queue over to the next standby (protocol §3.4) and wait until it is done:
        this consumer is then a standby; returns the new epoch. Raises ``ClientError``
        (``no_standby`` when nobody waits, ``not_active``).

        The switch happens once every message this consumer holds is acked, or after the
        server's ``--handover-timeout``: keep acking while this waits.
        """
        reply = await self._request(self._protocol.handover())
        assert isinstance(reply, RoleChanged)
        return reply.epoch

    async def close(self) -> None:
        """Close the connection (code 1000), waiting briefly for the server's answer. Pending
        requests fail with ``ConnectionLost``; a ``take`` iteration ends."""
        protocol = self._protocol
        protocol.close()
        reconnector = self._reconnector
        if reconnector is not None:
            reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconnector
        self._flush()  # the pending ack, then the close frame
        self._handle(protocol.events_received())
        link = self._link
        if link is not None and link.transport is not None and not link.lost.done():
            if protocol.phase is Phase.CONNECTING:
                link.abort()
            try:
                await asyncio.wait_for(asyncio.shield(link.lost), self.close_timeout)
            except TimeoutError:
                link.abort()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(link.lost), self.close_timeout)
        self._wake_reader()

    # -- moving bytes ---------------------------------------------------------------------

    def _request(self, req: int) -> asyncio.Future[Reply]:
        """The future answering ``req`` (a new request's frame is queued: write it soon)."""
        future = self._waiting.get(req)
        if future is None:
            future = self._waiting[req] = self._loop.create_future()
        self._queued += 1
        if self._queued >= EAGER_WRITE:
            self._flush()  # the server starts on a burst while the rest is still being made
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def _ack(self, seq: int, generation: int) -> None:
        self._protocol.ack(seq, generation)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write everything the protocol has for the current connection, in one write."""
        self._flush_scheduled = False
        self._queued = 0
        link = self._link
        if link is None or link.generation != self._protocol.generation:
            return
        transport = link.transport
        if transport is not None and not transport.is_closing():
            data = self._protocol.data_to_send()
            if data:
                transport.write(data)

    def _receive(self, link: _Link, data: bytes | None) -> None:
        """Bytes (or the end, ``None``) from ``link``'s transport."""
        protocol = self._protocol
        if link.generation != protocol.generation:
            return  # a connection already given up
        protocol.receive_data(data)
        self._flush()  # pongs, the close echo, and whatever requests were queued
        self._handle(protocol.events_received())

    # -- connecting -----------------------------------------------------------------------

    async def _open(self) -> None:
        """Connect, handshake and upgrade the protocol's current connection attempt."""
        endpoint = self._endpoint
        link = self._link = _Link(self)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._loop.create_connection(
                    lambda: link,
                    endpoint.host,
                    endpoint.port,
                    ssl=self._context,
                    server_hostname=endpoint.host,
                    ssl_handshake_timeout=self.connect_timeout,
                )
                await link.opened
        except BaseException as exc:
            link.abort()
            self._protocol.transport_failed(str(exc) or type(exc).__name__)
            self._handle(self._protocol.events_received())
            raise

    async def _stay_connected(self) -> None:
        """With ``reconnect``: after each loss, connect again when the protocol says, until
        it says the client is over."""
        protocol, loop = self._protocol, self._loop
        while (link := self._link) is not None:
            await link.lost
            while (when := protocol.next_attempt(loop.time())) is not None:
                await asyncio.sleep(when - loop.time())
                protocol.reconnect()
                try:
                    await self._open()
                    break
                except (OSError, ClientError) as exc:  # TimeoutError, SSLError: OSErrors
                    self._attempt_failed(exc)
            else:
                return

    # -- what ClientBase asks of a runtime ------------------------------------------------

    def _wake(self, waiter: asyncio.Future[Reply], outcome: Reply | ClientError) -> None:
        if not waiter.done():
            if isinstance(outcome, ClientError):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _opened(self) -> None:
        link = self._link
        if link is not None and not link.opened.done():
            link.opened.set_result(None)

    def _closed(self) -> None:
        link = self._link
        if link is None:
            return
        if not link.opened.done():
            link.opened.set_exception(self._protocol.error())
            link.opened.exception()  # retrieved: ``_open`` may have stopped waiting for it
        transport = link.transport
        if transport is not None and not transport.is_closing():
            transport.close()  # the close handshake is over (or the server refused)
