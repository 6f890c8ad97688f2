"""What a ``ClientProtocol`` reports: the server's events (protocol §4) as small typed values,
plus what the client itself concludes (a request that will get no answer).

Every event that ends a request carries that request's ``req``: ``Added`` (an ``add``),
``Subscribed`` (a ``take``), ``RoleChanged`` with ``req`` set (the ``standby`` that completes a
``handover``, protocol §4.4), ``ServerError`` (any request the server refused) and ``Failed``
(a request whose connection was lost, or that the closed client never sent). A runtime keeps
one waiter per ``req`` and wakes it with the event, or with ``error()`` of a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgpack

from .client_errors import ClientError, client_error

Role = Literal["active", "standby"]


@dataclass(frozen=True, slots=True)
class Opened:
    """The server accepted the WebSocket upgrade: requests flow."""


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

    role: Role
    epoch: int | None
    #: The ``req`` of the ``take`` this answers.
    req: int | str | None = None


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """This consumer was promoted (``active``, §4.3) or handed over (``standby``, §4.4)."""

    role: Role
    epoch: int
    #: The ``req`` of the ``handover`` this completes (None: it answers no request).
    req: int | None = None


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

    def error(self) -> ClientError:
        """The exception its request raises."""
        return client_error(self.code, self.message)


@dataclass(frozen=True, slots=True)
class Failed:
    """Request ``req`` will get no answer: it was sent on a connection that was lost (for an
    ``add``, whether it was stored is unknown), or the client closed before sending it.
    ``code`` is a ``ConnectionLost`` or ``AccessDenied`` code."""

    req: int
    code: str
    message: str

    def error(self) -> ClientError:
        """The exception its request raises (a fresh one: many requests may fail at once)."""
        return client_error(self.code, self.message)


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over: the server closed it, refused the upgrade (``code`` is then
    the HTTP status), or it broke. ``ClientProtocol.error`` says what it means for requests."""

    code: int
    reason: str


ClientEvent = Opened | Added | Subscribed | RoleChanged | Delivery | ServerError | Failed | Closed


def decode_event(payload: bytes) -> ClientEvent:
    """One server event (protocol §4); an unreadable one becomes a ``ServerError``."""
    try:
        event = msgpack.unpackb(payload, raw=False)
        kind = event["event"]
        if kind == "message":
            return Delivery(
                event["seq"], event["id"], event["created_at"], event["data"], event["redelivered"]
            )
        req = event.get("req")
        if not isinstance(req, int | str):  # echoed as the client sent it (protocol §3.5)
            req = None
        if kind == "added":
            if not isinstance(req, int):
                raise TypeError("added without an integer req")
            return Added(
                req,
                event["seq"],
                event["id"],
                event["created_at"],
                bool(event.get("duplicate", False)),
            )
        if kind == "subscribed":
            return Subscribed(event["role"], event.get("epoch"), req)
        if kind in ("active", "standby"):
            return RoleChanged(kind, event["epoch"])
        if kind == "error":
            return ServerError(event["code"], event["message"], req)
    except (ValueError, KeyError, TypeError, AttributeError, msgpack.UnpackException):
        pass
    return ServerError("bad_event", f"unreadable event from server: {payload[:60]!r}", None)
