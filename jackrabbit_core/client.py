"""The client side of protocol v1, sans I/O: what both shells' ``Client`` classes drive.

``ClientProtocol`` speaks the WebSocket handshake (``wsproto``), encodes requests and decodes
the server's events into small typed classes. A runtime opens the TLS connection, writes
``data_to_send()`` after every call, feeds what it reads to ``receive_data()`` and handles
``events_received()``; pipelining is a matter of matching ``req`` ids, which are allocated
here so the two runtimes cannot disagree.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import ProtocolError as WSProtocolError

from .codes import CLOSE_NORMAL
from .routes import DEFAULT_QUEUE, QUEUE_NAME, QUEUE_PREFIX, queue_for


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a client connects: what a ``wss://`` URL and a queue name come to."""

    host: str
    port: int
    #: The upgrade path naming the queue (protocol §1.3).
    path: str

    @classmethod
    def parse(cls, url: str, queue: str | None = None) -> Endpoint:
        """The endpoint of ``url`` (``wss://HOST[:PORT][/queues/NAME]``) for ``queue``.

        The queue is named by the URL's path (``/queues/NAME``, protocol §1.3) or by
        ``queue``; naming it both ways is fine when they agree and an error when they do not
        (neither wins silently). Named neither way (a path of ``/`` or none), it is
        ``default``. Raises ``ValueError`` with a one-line message for another scheme than
        ``wss``, no host, a bad port, a path that names no queue, an invalid queue name, or
        a conflict.
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "wss":
            why = "jackrabbit speaks only TLS; " if parts.scheme in ("ws", "http", "https") else ""
            raise ValueError(
                f"not a wss:// URL: {url!r} ({why}expected wss://HOST[:PORT][/queues/NAME])"
            )
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise ValueError(f"bad port in URL {url!r}") from None
        if not host:
            raise ValueError(f"no host in URL {url!r}")
        path = parts.path or "/"
        named = None if path == "/" else queue_for(path)
        if path != "/" and named is None:
            raise ValueError(
                f"the path of {url!r} names no queue (expected / or /queues/NAME, protocol §1.3)"
            )
        if queue is not None:
            if not QUEUE_NAME.fullmatch(queue):
                raise ValueError(f"invalid queue name {queue!r} (protocol §1.3)")
            if named is not None and named != queue:
                raise ValueError(
                    f"queue {queue!r} conflicts with the URL's path {path!r}: name one"
                )
        name = named or queue or DEFAULT_QUEUE
        return cls(host, port or 443, "/" if name == DEFAULT_QUEUE else QUEUE_PREFIX + name)

    @property
    def queue(self) -> str:
        """The queue's name."""
        return queue_for(self.path) or DEFAULT_QUEUE

    @property
    def authority(self) -> str:
        """The ``Host`` header's value."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def protocol(self) -> ClientProtocol:
        """A fresh client protocol for one connection to this endpoint."""
        return ClientProtocol(self.authority, self.path)


@dataclass(frozen=True, slots=True)
class Opened:
    """The server accepted the WebSocket upgrade."""


@dataclass(frozen=True, slots=True)
class Added:
    """An add is durable (protocol §4.1)."""

    req: int
    seq: int
    id: str
    created_at: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The reply to ``take`` (protocol §4.2)."""

    role: Literal["active", "standby"]
    epoch: int | None
    #: The ``req`` of the ``take`` this answers.
    req: int | str | None = None


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """This consumer was promoted (``active``) or handed over (``standby``), §4.3, §4.4."""

    role: Literal["active", "standby"]
    epoch: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message delivered to this consumer (protocol §4.5)."""

    seq: int
    id: str
    created_at: int
    data: bytes
    redelivered: bool


@dataclass(frozen=True, slots=True)
class ServerError:
    """A request was refused (protocol §4.6); ``req`` names it when it had one."""

    code: str
    message: str
    req: int | str | None


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over: the server closed it, refused the upgrade, or it broke."""

    code: int
    reason: str


ClientEvent = Opened | Added | Subscribed | RoleChanged | Delivery | ServerError | Closed


class ClientProtocol:
    """One client connection's protocol state. Never raises for what the server sends."""

    def __init__(self, host: str, path: str = "/") -> None:
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._out: list[bytes] = [self._ws.send(Request(host=host, target=path))]
        self._events: list[ClientEvent] = []
        self._next_req = 1
        self._fragments: list[bytes] = []
        self.closed = False

    def data_to_send(self) -> bytes:
        """Bytes to write to the transport now."""
        out, self._out = self._out, []
        return b"".join(out)

    def events_received(self) -> list[ClientEvent]:
        """What the server said since the last call."""
        events, self._events = self._events, []
        return events

    # -- requests (protocol §3) ------------------------------------------------------------

    def add(self, data: bytes, key: str | None = None) -> int:
        """Queue an add; returns the ``req`` its ``Added`` (or ``ServerError``) will carry."""
        req = self._req()
        request: dict[str, Any] = {"command": "add", "data": data, "req": req}
        if key is not None:
            request["key"] = key
        self._send(request)
        return req

    def take(self, prefetch: int | None = None) -> int:
        """Join the queue's consumer line."""
        req = self._req()
        request: dict[str, Any] = {"command": "take", "req": req}
        if prefetch is not None:
            request["prefetch"] = prefetch
        self._send(request)
        return req

    def ack(self, seq: int) -> None:
        """Acknowledge every delivered message up to ``seq`` (cumulative, §3.3)."""
        self._send({"command": "ack", "seq": seq})

    def handover(self) -> int:
        """Ask for a planned switch to the next standby (§3.4)."""
        req = self._req()
        self._send({"command": "handover", "req": req})
        return req

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the close handshake."""
        if not self.closed:
            with contextlib.suppress(WSProtocolError):
                self._out.append(self._ws.send(CloseConnection(code=code, reason=reason)))

    def _req(self) -> int:
        req = self._next_req
        self._next_req += 1
        return req

    def _send(self, request: dict[str, Any]) -> None:
        if self.closed:
            return
        with contextlib.suppress(WSProtocolError):
            self._out.append(self._ws.send(BytesMessage(data=msgpack.packb(request))))

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes | None) -> None:
        """Feed bytes from the server; ``None`` means the transport ended."""
        if self.closed:
            return
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                self._on(event)
        except WSProtocolError as exc:
            self._finish(1002, f"protocol error: {exc}")
        if data is None:
            self._finish(1006, "connection lost")

    def _on(self, event: object) -> None:
        if isinstance(event, AcceptConnection):
            self._events.append(Opened())
        elif isinstance(event, RejectConnection):
            self._finish(event.status_code, f"upgrade refused with HTTP {event.status_code}")
        elif isinstance(event, BytesMessage):
            self._fragments.append(bytes(event.data))
            if event.message_finished:
                payload = b"".join(self._fragments)
                self._fragments.clear()
                self._events.append(_decode_event(payload))
        elif isinstance(event, TextMessage):
            self._events.append(ServerError("bad_event", "text frame from server", None))
        elif isinstance(event, Ping):
            self._out.append(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            with contextlib.suppress(WSProtocolError):
                self._out.append(self._ws.send(event.response()))
            self._finish(event.code, event.reason or "")

    def _finish(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._events.append(Closed(code, reason))


def _decode_event(payload: bytes) -> ClientEvent:
    """One server event (protocol §4); an unreadable one becomes a ``ServerError``."""
    try:
        event = msgpack.unpackb(payload, raw=False)
        kind = event["event"]
        if kind == "message":
            return Delivery(
                event["seq"], event["id"], event["created_at"], event["data"], event["redelivered"]
            )
        if kind == "added":
            return Added(
                event["req"],
                event["seq"],
                event["id"],
                event["created_at"],
                bool(event.get("duplicate", False)),
            )
        if kind == "subscribed":
            return Subscribed(event["role"], event.get("epoch"), event.get("req"))
        if kind in ("active", "standby"):
            return RoleChanged(kind, event["epoch"])
        if kind == "error":
            return ServerError(event["code"], event["message"], event.get("req"))
    except (ValueError, KeyError, TypeError, msgpack.UnpackException):
        pass
    return ServerError("bad_event", f"unreadable event from server: {payload[:60]!r}", None)
