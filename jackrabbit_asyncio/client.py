"""The asyncio client: protocol v1 over one TLS connection, pipelined.

It drives ``jackrabbit_core.client.ClientProtocol`` (the sans-I/O client) from an
``asyncio.Protocol``; ``jackrabbit_threads.Client`` is its blocking twin::

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

Reconnecting (``reconnect=True``): when the connection is lost, the client reconnects with
exponential back-off (``RETRY_FIRST`` doubling up to ``RETRY_MAX`` seconds, until ``close()``)
and, if it was a consumer, sends ``take`` again: it joins the *end* of the consumer line (the
server has promoted the next standby meanwhile). Adds that were waiting for their reply fail
with ``ConnectionLost`` (a ``ConnectionError``): such a message may or may not have been
stored. To retry without risking a duplicate, give each message an idempotency ``key``: a
repeated key is answered with the first message's seq and stores nothing new. Adds made while
the client is reconnecting wait for the new connection. Deliveries not yet read from the
iterator when the connection drops are discarded (their acks could not reach the server
anyway); the server delivers them again, ``redelivered=True``, to whichever consumer is active.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl as ssl_module
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, cast

from jackrabbit_core.client import (
    Added,
    ClientEvent,
    ClientProtocol,
    Closed,
    Delivery,
    Endpoint,
    Opened,
    RoleChanged,
    ServerError,
    Subscribed,
)
from jackrabbit_core.codes import CLOSE_NORMAL

__all__ = ["Client", "ClientError", "ConnectionLost", "Message", "Role", "Subscription"]

log = logging.getLogger("jackrabbit.asyncio.client")

Role = Literal["active", "standby"]

#: Seconds allowed for TCP connect, TLS and the WebSocket upgrade.
CONNECT_TIMEOUT: Final = 10.0
#: Seconds ``close()`` waits for the server's half of the close handshake.
CLOSE_TIMEOUT: Final = 5.0
#: Reconnection back-off, seconds: first and largest delay.
RETRY_FIRST: Final = 0.1
RETRY_MAX: Final = 5.0
#: The client's outgoing buffer limits: past ``HIGH_WATER`` bytes new requests wait.
HIGH_WATER: Final = 1024 * 1024
LOW_WATER: Final = 256 * 1024
#: Requests queued in one turn of the loop past which they are written at once.
EAGER_WRITE: Final = 64


class ClientError(Exception):
    """A request was refused: ``code`` is the protocol's error code (``not_active``,
    ``no_standby``, ``too_large``...), ``message`` the server's explanation."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectionLost(ClientError, ConnectionError):
    """The connection is gone (or was never made): ``code`` is ``"closed"`` or ``"refused"``.

    For a pending ``add`` this means *unknown*: the message may or may not be stored (see the
    module docstring on idempotency keys).
    """


@dataclass(slots=True, eq=False)
class Message:
    """A delivered message; ``await ack()`` once it is handled (acks are cumulative: acking
    it acknowledges every earlier message too). Treat it as read-only.

    (Not ``frozen``: a frozen dataclass's ``__init__`` costs 2 us against 0.3 us, measured,
    on a path that handles every delivery.)
    """

    seq: int
    #: The message's UUID.
    id: str
    #: When the server accepted it, Unix time in milliseconds.
    created_at: int
    data: bytes
    #: True when an earlier consumer was sent this message and did not ack it.
    redelivered: bool
    _link: _Link = field(repr=False, compare=False)

    async def ack(self) -> None:
        """Acknowledge this message and every earlier one (protocol §3.3).

        Does nothing if the connection it came on is gone: the server delivers it again.
        """
        self._link.ack(self.seq)


class Subscription:
    """What ``Client.take()`` returns: ``await`` it to wait for the server's answer (the
    client's ``role`` is then set), or iterate it with ``async for`` to get the messages
    (iterating sends the ``take`` first if it was not awaited). The iteration ends when the
    connection closes for good (``close()``, or a loss without ``reconnect``)."""

    def __init__(self, client: Client, prefetch: int) -> None:
        self._client = client
        self.prefetch = prefetch
        self._answer: asyncio.Future[Subscribed] | None = None

    def __await__(self) -> Generator[Any, None, Subscription]:
        return self._start().__await__()

    async def _start(self) -> Subscription:
        if self._answer is None:
            link = await self._client._ready()
            self._answer = self._client._send_take(link, self.prefetch)
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
            if client._ended:
                raise StopAsyncIteration
            waiter = client._loop.create_future()
            client._delivery_waiter = waiter
            try:
                await waiter
            finally:
                client._delivery_waiter = None
        return deliveries.popleft()


class _Link(asyncio.Protocol):
    """One TLS connection and its ``ClientProtocol``: the state that dies with it."""

    def __init__(self, client: Client, protocol: ClientProtocol) -> None:
        loop = client._loop
        self.client = client
        self.protocol = protocol
        self.transport: asyncio.Transport | None = None
        #: Resolved when the upgrade is accepted, failed when it is refused.
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        #: Requests waiting for their reply, by ``req``.
        self.waiting: dict[int, asyncio.Future[Added]] = {}
        self.take_req: int | None = None
        self.take_answer: asyncio.Future[Subscribed] | None = None
        self.handover_req: int | None = None
        self.handover_answer: asyncio.Future[RoleChanged] | None = None
        #: True from the accepted upgrade until the close handshake starts or the transport
        #: is lost: requests can be sent.
        self.usable = False
        #: The highest seq acked but not yet handed to the protocol (0: none).
        self.ack_pending = 0
        #: Requests queued since the last write.
        self.queued = 0
        self.flush_scheduled = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.close_code: int | None = None
        self.close_reason = ""

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        transport.write(self.protocol.data_to_send())  # the upgrade request

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self.flush()  # pongs, the close echo, and whatever requests were queued
        self.client._handle(self, events)

    def connection_lost(self, exc: Exception | None) -> None:
        protocol = self.protocol
        protocol.receive_data(None)
        self.client._handle(self, protocol.events_received())
        self.usable = False
        self.writable.set()  # wake requests waiting for a drain: they see the loss
        if not self.lost.done():
            self.lost.set_result(None)
        self.client._lost(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # -- output ---------------------------------------------------------------------------

    def add(self, data: bytes, key: str | None) -> int:
        """Queue an add (the hot path of ``request``)."""
        protocol = self.protocol
        if self.ack_pending:
            protocol.ack(self.ack_pending)
            self.ack_pending = 0
        req = protocol.add(data, key)
        self._queued()
        return req

    def request(self, make: Callable[[ClientProtocol], int]) -> int:
        """Queue a request (after any pending ack); it leaves at the end of this loop turn."""
        protocol = self.protocol
        if self.ack_pending:
            protocol.ack(self.ack_pending)
            self.ack_pending = 0
        req = make(protocol)
        self._queued()
        return req

    def _queued(self) -> None:
        """A frame was queued: write at the end of this turn, or now if many are waiting (so
        the server starts on the first of a burst while the rest are still being made)."""
        self.queued += 1
        if self.queued >= EAGER_WRITE:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.client._loop.call_soon(self.flush)

    def ack(self, seq: int) -> None:
        if self is not self.client._link or not self.usable:
            return
        if seq > self.ack_pending:
            self.ack_pending = seq
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.client._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write everything queued, in one ``transport.write``."""
        self.flush_scheduled = False
        self.queued = 0
        protocol = self.protocol
        if self.ack_pending:
            protocol.ack(self.ack_pending)
            self.ack_pending = 0
        data = protocol.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def fail(self, error: ClientError) -> None:
        """Fail everything waiting on this connection."""
        waiting, self.waiting = self.waiting, {}
        for future in (*waiting.values(), self.take_answer, self.handover_answer, self.opened):
            if future is not None and not future.done():
                future.set_exception(error)
        # Nobody may be awaiting these: mark their exceptions as retrieved.
        for future in (self.take_answer, self.handover_answer, self.opened):
            if future is not None and future.done() and not future.cancelled():
                future.exception()


class Client:
    """A connection to one queue of a jackrabbit server. Make one with ``await
    Client.connect(...)``; see the module docstring for pipelining and reconnecting."""

    def __init__(
        self,
        url: str,
        queue: str | None = None,
        *,
        ca: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        reconnect: bool = False,
        on_role: Callable[[Role, int | None], None] | None = None,
    ) -> None:
        """Set up, without connecting: use ``connect``."""
        self._endpoint = Endpoint.parse(url, queue)
        self.url = url
        self.queue = self._endpoint.queue
        self._host = self._endpoint.host
        self._port = self._endpoint.port
        self._context = ssl if ssl is not None else ssl_module.create_default_context(cafile=ca)
        self.reconnect = reconnect
        #: ``"active"`` or ``"standby"`` once ``take`` was answered; None before (and while
        #: reconnecting).
        self.role: Role | None = None
        #: The queue's epoch while this consumer is active (protocol §4.2).
        self.epoch: int | None = None
        #: Called as ``on_role(role, epoch)`` on the event loop whenever the role changes.
        self.on_role = on_role
        self._loop = asyncio.get_running_loop()
        self._link: _Link | None = None
        #: Set while there is a usable connection, and once ``close()`` is called.
        self._connected = asyncio.Event()
        self._subscription: Subscription | None = None
        self._deliveries: collections.deque[Message] = collections.deque()
        self._delivery_waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._closing = False
        self._reconnector: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        queue: str | None = None,
        *,
        ca: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        reconnect: bool = False,
        on_role: Callable[[Role, int | None], None] | None = None,
    ) -> Client:
        """Connect to ``queue`` at ``url`` (``wss://HOST:PORT``; a ``/queues/NAME`` path names
        the queue too: giving both is an error unless they agree, neither means ``default``).
        Raises ``ValueError`` for a URL or queue name that cannot be used.

        ``ca`` is a CA file to trust (e.g. the ``--dev`` CA); ``ssl`` a complete client
        context instead; neither means the system's trust store. Raises ``OSError`` if the
        server cannot be reached (``TimeoutError`` after ``CONNECT_TIMEOUT``), ``ssl.SSLError``
        for a certificate problem, and ``ConnectionLost`` (code ``refused``) if the server
        refuses the WebSocket upgrade (an HTTP status: 404 bad queue name, 503 full...).
        """
        client = cls(url, queue, ca=ca, ssl=ssl, reconnect=reconnect, on_role=on_role)
        await client._open()
        return client

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code of the last connection once it ended (1001: the server
        shut down; 1006: it broke), else None."""
        link = self._link
        return None if link is None else link.close_code

    @property
    def close_reason(self) -> str:
        """The reason that came with ``close_code``."""
        link = self._link
        return "" if link is None else link.close_reason

    # -- requests -------------------------------------------------------------------------

    async def add(self, data: bytes, key: str | None = None) -> int:
        """Append ``data`` to the queue; returns its seq once it is durable (protocol §3.1).

        With ``key``, a repeat of that key returns the first message's seq and stores nothing.
        Safe to call from many tasks at once (the adds are pipelined). Raises ``ClientError``
        if the server refuses it, ``ConnectionLost`` if the connection is lost first.
        """
        link = self._link
        if link is None or not link.usable or not link.writable.is_set():
            link = await self._ready()
        req = link.add(data, key)
        future: asyncio.Future[Added] = self._loop.create_future()
        link.waiting[req] = future
        return (await future).seq

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
        link = await self._ready()
        if link.handover_answer is not None and not link.handover_answer.done():
            return (await link.handover_answer).epoch
        answer: asyncio.Future[RoleChanged] = self._loop.create_future()
        link.handover_req = link.request(lambda protocol: protocol.handover())
        link.handover_answer = answer
        return (await answer).epoch

    async def close(self) -> None:
        """Close the connection (code 1000), waiting briefly for the server's answer. Pending
        requests fail with ``ConnectionLost``; a ``take`` iteration ends."""
        if not self._closing:
            self._closing = True
            self._connected.set()  # wake adds waiting for a reconnection: they now raise
            reconnector = self._reconnector
            if reconnector is not None:
                reconnector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reconnector
        link = self._link
        if link is not None and not link.lost.done():
            if link.usable:
                link.usable = False
                link.flush()  # pending acks first
                link.protocol.close(CLOSE_NORMAL)
                link.flush()
            try:
                await asyncio.wait_for(asyncio.shield(link.lost), CLOSE_TIMEOUT)
            except TimeoutError:
                link.abort()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(link.lost), CLOSE_TIMEOUT)
        self._end()

    # -- connecting -----------------------------------------------------------------------

    async def _open(self) -> _Link:
        """Connect, handshake and upgrade; on return the new connection is current."""
        link = _Link(self, self._endpoint.protocol())
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._loop.create_connection(
                    lambda: link,
                    self._host,
                    self._port,
                    ssl=self._context,
                    server_hostname=self._host,
                    ssl_handshake_timeout=CONNECT_TIMEOUT,
                )
                await link.opened
        except BaseException:
            link.abort()
            raise
        self._link = link
        self._connected.set()
        return link

    async def _ready(self) -> _Link:
        """The current usable connection, waiting for a reconnection or for the write buffer
        to drain; raises ``ConnectionLost`` once there will be none."""
        while True:
            if self._closing:
                raise ConnectionLost("closed", "the client is closed")
            link = self._link
            if link is not None and link.usable:
                if link.writable.is_set():
                    return link
                await link.writable.wait()
                continue
            if not self.reconnect:
                raise ConnectionLost("closed", "the connection is closed")
            self._connected.clear()
            await self._connected.wait()

    def _send_take(self, link: _Link, prefetch: int) -> asyncio.Future[Subscribed]:
        answer: asyncio.Future[Subscribed] = self._loop.create_future()
        answer.add_done_callback(_retrieve)
        link.take_req = link.request(lambda protocol: protocol.take(prefetch))
        link.take_answer = answer
        return answer

    def _lost(self, link: _Link) -> None:
        """``link``'s transport is gone."""
        link.fail(ConnectionLost("closed", "the connection was lost"))
        if link is not self._link:
            return
        self._connected.clear()
        self._set_role(None, None)
        if self._closing or not self.reconnect:
            self._end()
            return
        self._deliveries.clear()  # their acks cannot reach the server: they come again
        log.info("connection to %s lost (%s): reconnecting", self.url, link.close_code)
        self._reconnector = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = RETRY_FIRST
        while not self._closing:
            try:
                link = await self._open()
            except (OSError, ClientError) as exc:  # TimeoutError and ssl.SSLError are OSErrors
                log.info("reconnecting to %s failed: %s", self.url, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            subscription = self._subscription
            if subscription is not None and subscription._answer is not None:
                self._send_take(link, subscription.prefetch)
            return

    def _end(self) -> None:
        """No more deliveries: end the ``take`` iteration."""
        self._ended = True
        self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._delivery_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- events ---------------------------------------------------------------------------

    def _handle(self, link: _Link, events: list[ClientEvent]) -> None:
        for event in events:
            kind = type(event)
            if kind is Delivery:
                delivery = cast(Delivery, event)
                if link is self._link:
                    self._deliveries.append(
                        Message(
                            delivery.seq,
                            delivery.id,
                            delivery.created_at,
                            delivery.data,
                            delivery.redelivered,
                            link,
                        )
                    )
                    self._wake_reader()
            elif kind is Added:
                added = cast(Added, event)
                future = link.waiting.pop(added.req, None)
                if future is not None and not future.done():
                    future.set_result(added)
            elif kind is Subscribed:
                subscribed = cast(Subscribed, event)
                self._set_role(subscribed.role, subscribed.epoch)
                # one take per link, so its answer needs no matching by req
                _settle(link.take_answer, subscribed)
            elif kind is RoleChanged:
                changed = cast(RoleChanged, event)
                self._set_role(changed.role, changed.epoch)
                if changed.role == "standby":
                    _settle(link.handover_answer, changed)
            elif kind is ServerError:
                self._error(link, cast(ServerError, event))
            elif kind is Opened:
                link.usable = True
                _settle(link.opened, None)
            elif kind is Closed:
                closed = cast(Closed, event)
                link.close_code, link.close_reason = closed.code, closed.reason
                link.usable = False
                if not link.opened.done():
                    link.opened.set_exception(ConnectionLost("refused", closed.reason))
                if link is self._link:
                    self._connected.clear()
                transport = link.transport
                if transport is not None and not transport.is_closing():
                    transport.close()  # the close handshake is over (or the server refused)

    def _error(self, link: _Link, error: ServerError) -> None:
        exc = ClientError(error.code, error.message)
        req = error.req
        if isinstance(req, int):
            if req in link.waiting:
                future = link.waiting.pop(req)
                if not future.done():
                    future.set_exception(exc)
                return
            if req == link.take_req and link.take_answer is not None:
                if not link.take_answer.done():
                    link.take_answer.set_exception(exc)
                return
            if req == link.handover_req and link.handover_answer is not None:
                if not link.handover_answer.done():
                    link.handover_answer.set_exception(exc)
                return
        log.warning("server error: %s", exc)

    def _set_role(self, role: Role | None, epoch: int | None) -> None:
        changed = (role, epoch) != (self.role, self.epoch)
        self.role, self.epoch = role, epoch
        callback = self.on_role
        if changed and callback is not None and role is not None:
            try:
                callback(role, epoch)
            except Exception:
                log.exception("on_role callback failed")


def _settle(future: asyncio.Future[Any] | None, result: Any) -> None:
    if future is not None and not future.done():
        future.set_result(result)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (a re-sent ``take`` nobody awaits)."""
    exc = None if future.cancelled() else future.exception()
    if exc is not None and not isinstance(exc, ConnectionLost):
        log.warning("take refused: %s", exc)
