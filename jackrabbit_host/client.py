"""What both shells' ``Client`` classes share outside the sans-I/O core.

The core's ``ClientProtocol`` decides (request matching, cumulative acks, roles, what fails on
a loss, when to reconnect); ``ClientBase`` holds it with what the user passed to ``connect``
(``ClientOptions``) and turns its events into the few things a runtime does differently: wake
the waiter of a request (an asyncio future, a thread's lock), wake the reader of deliveries,
and react to the connection opening or closing. ``jackrabbit_asyncio.Client`` and
``jackrabbit_threads.Client`` subclass it and add the transport, the timers and the waiting.
"""

from __future__ import annotations

import collections
import logging
import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypedDict, TypeVar

from jackrabbit_core.client import (
    Added,
    ClientEvent,
    Closed,
    Delivery,
    Endpoint,
    Failed,
    Opened,
    Role,
    RoleChanged,
    ServerError,
    Subscribed,
)
from jackrabbit_core.client_errors import ClientError

log = logging.getLogger("jackrabbit.client")

#: The events that answer a request successfully, as a waiter receives them.
Reply = Added | Subscribed | RoleChanged


class ClientOptions(TypedDict, total=False):
    """The keyword arguments of both runtimes' ``Client.connect``."""

    #: A CA file to trust (e.g. the ``--dev`` CA). Neither it nor ``ssl``: the system's CAs.
    ca: str | None
    #: A complete client ``ssl.SSLContext``, instead of ``ca``.
    ssl: ssl_module.SSLContext | None
    #: Reconnect when the connection is lost (0.1 s doubling to 5 s between failed attempts),
    #: and take again if this client is a consumer.
    reconnect: bool
    #: Called as ``on_role(role, epoch)`` whenever the role changes (promotion, handover,
    #: and each ``take`` answered, again after a reconnection).
    on_role: Callable[[Role, int | None], None] | None
    #: A bearer token, sent as ``Authorization: Bearer TOKEN`` on the upgrade (never in the
    #: URL); the server answers 401 or 403 (``AccessDenied``) if it does not do.
    token: str | None


@dataclass(slots=True, eq=False)
class Message:
    """A delivered message; each runtime's subclass adds ``ack()``. Acks are cumulative:
    acking one acknowledges every earlier message too. Treat it as read-only.

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
    _client: ClientBase[Any] = field(repr=False)
    #: The connection it came on: an ack for one that is gone is dropped.
    _generation: int = field(repr=False)


W = TypeVar("W")


class ClientBase(Generic[W]):
    """A client's protocol, options and deliveries; ``W`` is the runtime's waiter type."""

    #: The runtime's ``Message`` subclass (with its ``ack``).
    message_type: ClassVar[type[Message]] = Message
    #: Seconds allowed for TCP connect, TLS and the WebSocket upgrade.
    connect_timeout: ClassVar[float] = 10.0
    #: Seconds ``close()`` waits for the server's half of the close handshake.
    close_timeout: ClassVar[float] = 5.0
    #: Queued outgoing bytes past which a new request waits for them to be written.
    high_water: ClassVar[int] = 1024 * 1024

    def __init__(self, url: str, queue: str | None, options: ClientOptions) -> None:
        endpoint = Endpoint.parse(url, queue)
        self.url = url
        self.queue = endpoint.queue
        self._endpoint = endpoint
        context = options.get("ssl")
        if context is None:
            context = ssl_module.create_default_context(cafile=options.get("ca"))
        self._context = context
        #: Called as ``on_role(role, epoch)`` whenever the role changes.
        self.on_role = options.get("on_role")
        self._protocol = endpoint.protocol(
            token=options.get("token"), reconnect=options.get("reconnect", False)
        )
        #: What waits for each request's answer, by ``req`` (a handover's is shared).
        self._waiting: dict[int, W] = {}
        #: Delivered messages not yet read; dropped when the connection is lost and the
        #: client reconnects (their acks could not reach the server: it delivers them again).
        self._deliveries: collections.deque[Message] = collections.deque()

    @property
    def reconnect(self) -> bool:
        """Whether the client reconnects when the connection is lost."""
        return self._protocol.reconnects

    @property
    def role(self) -> Role | None:
        """``"active"`` or ``"standby"`` once ``take`` was answered; None before, and while
        reconnecting."""
        return self._protocol.role

    @property
    def epoch(self) -> int | None:
        """The queue's epoch while this consumer is active (protocol §4.2)."""
        return self._protocol.epoch

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code of the last connection once it ended (1001: the server
        shut down; 1006: it broke; an HTTP status: the upgrade was refused), else None."""
        return self._protocol.close_code

    @property
    def close_reason(self) -> str:
        """The reason that came with ``close_code``."""
        return self._protocol.close_reason

    # -- what the runtime implements ------------------------------------------------------

    def _wake(self, waiter: W, outcome: Reply | ClientError) -> None:
        """Settle ``waiter`` with its request's reply or error (once; later calls ignored)."""
        raise NotImplementedError

    def _wake_reader(self) -> None:
        """A message was delivered, or there will be no more: wake whoever waits for one."""
        raise NotImplementedError

    def _ack(self, seq: int, generation: int) -> None:
        """``Message.ack``: acknowledge through ``seq`` on connection ``generation``."""
        raise NotImplementedError

    def _opened(self) -> None:
        """The current connection's upgrade was accepted."""

    def _closed(self) -> None:
        """The current connection is over (``self._protocol.error()`` says why)."""

    # -- events ---------------------------------------------------------------------------

    def _handle(self, events: list[ClientEvent]) -> None:
        """Carry out what the protocol reported: wake waiters, queue deliveries, call
        ``on_role``."""
        for event in events:
            if isinstance(event, Delivery):
                self._deliveries.append(
                    self.message_type(
                        event.seq,
                        event.id,
                        event.created_at,
                        event.data,
                        event.redelivered,
                        self,
                        self._protocol.generation,
                    )
                )
                self._wake_reader()
            elif isinstance(event, Added):
                self._settle(event.req, event)
            elif isinstance(event, Subscribed | RoleChanged):
                self._settle(event.req, event)
                self._role_changed(event.role, event.epoch)
            elif isinstance(event, ServerError):
                if not self._settle(event.req, event.error()):
                    log.warning("server error: %s", event.error())
            elif isinstance(event, Failed):
                self._settle(event.req, event.error())
            elif isinstance(event, Opened):
                self._opened()
            elif isinstance(event, Closed):
                self._lost(event)

    def _settle(self, req: int | str | None, outcome: Reply | ClientError) -> bool:
        waiter = self._waiting.pop(req, None) if isinstance(req, int) else None
        if waiter is None:
            return False
        self._wake(waiter, outcome)
        return True

    def _lost(self, closed: Closed) -> None:
        if self._protocol.ended:
            log.info("connection to %s ended: %s", self.url, self._protocol.error())
        else:
            self._deliveries.clear()
            log.info("connection to %s lost (%s): reconnecting", self.url, closed.code)
        self._closed()
        self._wake_reader()

    def _attempt_failed(self, exc: BaseException) -> None:
        """A reconnection attempt failed (the protocol decides when the next one is)."""
        log.info("reconnecting to %s failed: %s", self.url, exc)

    def _role_changed(self, role: Role, epoch: int | None) -> None:
        callback = self.on_role
        if callback is not None:
            try:
                callback(role, epoch)
            except Exception:
                log.exception("on_role callback failed")
