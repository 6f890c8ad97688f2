"""The client side of protocol v1, sans I/O: the logic both shells' ``Client`` classes share.

A ``ClientProtocol`` lives as long as a client, across its connections (as ``websockets`` has
one ``ClientProtocol`` under both of its runtimes). It speaks the WebSocket handshake
(``wsproto``), encodes requests, decodes events (``client_events``) and keeps what is pending:

- **Matching.** Each request gets its ``req`` here, and the event that ends it carries it,
  including the ``standby`` that completes a ``handover`` (sent without one, protocol §4.4).
- **Cumulative acks** (protocol §6.4). ``ack()`` only raises a mark; the mark leaves as one
  ``ack`` of the highest seq, before any later request and at the latest with the next
  ``data_to_send()``. An ack for a connection that is gone is dropped: the server redelivers.
- **Roles.** ``role`` and ``epoch`` follow ``subscribed``, ``active`` and ``standby``; both are
  None while there is no open connection.
- **Losses.** When a connection ends, each request sent on it and not answered is ``Failed``
  with ``ConnectionLost`` (for an add: unknown, it may be stored). Requests made while no
  connection is open wait here and leave on the next one. With ``reconnect``, ``next_attempt``
  says when to connect again (at once after a connection that was open, then 0.1 s doubling to
  5 s while attempts fail), and a consumer takes again on the new connection, joining the end
  of the line (protocol §6.5). An upgrade answered 401 or 403 ends the client with
  ``AccessDenied``: the same credentials will not do better next time.

How a runtime drives it (a shell moves bytes, sleeps and wakes waiters; it decides nothing):

1. Open a TLS connection to the endpoint and write ``data_to_send()`` (the upgrade request);
   if the connection cannot be made, call ``transport_failed(reason)``.
2. Feed what it reads to ``receive_data()`` (``None`` once the transport ended). After any
   call, write ``data_to_send()`` and handle ``events_received()``; requests (``add``,
   ``take``, ``handover``) return the ``req`` that the event ending them will carry, and
   raise the client's ``ClientError`` once it is over (``ended``).
3. On ``Closed``, close the transport. ``next_attempt(now)`` is then the time at which to call
   ``reconnect()`` and go back to 1, or None: the client is over.
"""

from __future__ import annotations

import contextlib
import enum
import re
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, Literal

import msgpack
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import ProtocolError as WSProtocolError

from .client_errors import (
    CLOSED,
    FORBIDDEN,
    REFUSED,
    UNAUTHORIZED,
    ClientError,
    client_error,
)
from .client_events import Added as Added
from .client_events import ClientEvent as ClientEvent
from .client_events import Closed as Closed
from .client_events import Delivery as Delivery
from .client_events import Failed as Failed
from .client_events import Opened as Opened
from .client_events import Role as Role
from .client_events import RoleChanged as RoleChanged
from .client_events import ServerError as ServerError
from .client_events import Subscribed as Subscribed
from .client_events import decode_event
from .codes import CLOSE_NORMAL
from .exceptions import InvalidState
from .routes import DEFAULT_QUEUE, QUEUE_NAME, QUEUE_PREFIX, queue_for

#: Reconnection back-off, seconds: the delay after the first failed attempt, and the largest.
RETRY_FIRST: Final = 0.1
RETRY_MAX: Final = 5.0
#: Bytes of a refused upgrade's body kept for the error message.
REFUSAL_BODY: Final = 200
#: What a bearer token may hold (visible ASCII, RFC 6750's ``b64token`` and more): anything
#: else could not travel in a header, or would split it.
TOKEN: Final = re.compile(r"[\x21-\x7e]+")

#: What a pending request is; ``retake`` is the ``take`` sent again after a reconnection,
#: which no caller waits for.
Kind = Literal["add", "take", "handover", "retake"]


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

    def protocol(self, *, token: str | None = None, reconnect: bool = False) -> ClientProtocol:
        """A client protocol for this endpoint, its first connection starting."""
        return ClientProtocol(self.authority, self.path, token=token, reconnect=reconnect)


class Phase(enum.Enum):
    """Where the current connection is. ``CLOSED`` is also where a client waits between a
    loss and its next attempt, and where it stays once ``ended``."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class ClientProtocol:
    """One client's protocol state, across its connections. Never raises for what the server
    sends; see the module docstring for how to drive it."""

    def __init__(
        self, host: str, path: str = "/", *, token: str | None = None, reconnect: bool = False
    ) -> None:
        """Start the first connection to ``path`` on ``host`` (the ``Host`` header's value).

        ``token`` goes in ``Authorization: Bearer`` on every upgrade (protocol §1.4), never in
        the URL; a token that cannot travel in a header is a ``ValueError`` (which does not
        repeat it). With ``reconnect``, a lost connection is followed by another.
        """
        if token is not None:
            check_token(token)
        self._host = host
        self._path = path
        self._headers = [] if token is None else [(b"Authorization", b"Bearer " + token.encode())]
        #: Connect again after a loss (the ``reconnect`` argument).
        self.reconnects = reconnect
        #: Which connection this is: 1 for the first, one more on each ``reconnect()``.
        self.generation = 0
        self.phase = Phase.CONNECTING
        #: True once no connection will follow: ``close()``, a loss without ``reconnect``, or
        #: credentials refused. Requests then raise.
        self.ended = False
        #: ``active``/``standby`` once ``take`` is answered, with the queue's epoch (§4.2).
        self.role: Role | None = None
        self.epoch: int | None = None
        #: The last connection's close code (the HTTP status of a refused upgrade) and reason,
        #: once it ended; None while it lasts.
        self.close_code: int | None = None
        self.close_reason = ""
        self._next_req = 1
        #: Requests sent on this connection and not answered yet.
        self._pending: dict[int, Kind] = {}
        #: Requests made while no connection was open, in order.
        self._unsent: list[tuple[Kind, int, dict[str, Any]]] = []
        self._handover: int | None = None  # the req of the handover under way
        self._took = False  # a take was sent: take again after a reconnection
        self._prefetch: int | None = None
        self._ack = 0  # the highest seq acked and not sent yet (0: none)
        self._acked = 0  # the highest seq sent in an ack on this connection
        self._delay = 0.0  # the back-off before the next attempt
        #: Why the last connection ended, then why the client is over: an error code, a message.
        self._why = (CLOSED, "the connection is not open yet")
        self._final = self._why
        self._events: list[ClientEvent] = []
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._start()

    def _start(self) -> None:
        """Begin a connection: a fresh WebSocket handshake, the upgrade request queued."""
        self.generation += 1
        self.phase = Phase.CONNECTING
        self.close_code, self.close_reason = None, ""
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._fragments: list[bytes] = []
        self._refusal: int | None = None  # the status of a refused upgrade, body still coming
        self._refusal_body = bytearray()
        self._out, self._out_bytes = [], 0  # bytes for the last connection are void
        request = Request(host=self._host, target=self._path, extra_headers=self._headers)
        self._write(self._ws.send(request))

    # -- output ---------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write to the transport now (the pending ack first)."""
        if self._ack:
            self._send_ack()
        out = self._out
        if not out:
            return b""
        self._out, self._out_bytes = [], 0
        return out[0] if len(out) == 1 else b"".join(out)

    @property
    def wants_write(self) -> bool:
        """Whether ``data_to_send()`` has something."""
        return bool(self._out) or self._ack > 0

    @property
    def buffered(self) -> int:
        """Bytes queued for ``data_to_send()`` (a runtime's high-water mark looks at it)."""
        return self._out_bytes

    def events_received(self) -> list[ClientEvent]:
        """What happened since the last call: the server's events, matched to requests."""
        events, self._events = self._events, []
        return events

    # -- requests (protocol §3) -----------------------------------------------------------

    def add(self, data: bytes, key: str | None = None) -> int:
        """Add ``data`` (with an idempotency ``key``, §6.8); returns the ``req`` its
        ``Added`` (or ``ServerError``, ``Failed``) will carry."""
        request: dict[str, Any] = {"command": "add", "data": data}
        if key is not None:
            request["key"] = key
        return self._request("add", request)

    def take(self, prefetch: int | None = None) -> int:
        """Join the queue's consumer line (§3.2); answered by ``Subscribed``. After a
        reconnection the protocol sends it again by itself."""
        self._prefetch = prefetch
        return self._request("take", _take(prefetch))

    def ack(self, seq: int, generation: int | None = None) -> None:
        """Acknowledge every message up to ``seq`` (cumulative, §3.3), on connection
        ``generation`` (None: the current one); dropped if that connection is not open."""
        if (
            self.phase is Phase.OPEN
            and (generation is None or generation == self.generation)
            and seq > self._ack
            and seq > self._acked
        ):
            self._ack = seq

    def handover(self) -> int:
        """Ask for a planned switch to the next standby (§3.4); answered by ``RoleChanged``
        (``standby``) with this ``req``. While one is under way, returns its ``req``."""
        if self._handover is None:
            self._handover = self._request("handover", {"command": "handover"})
        return self._handover

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """End the client: no reconnection; requests not sent yet fail at once, those sent
        when the connection ends. Starts the close handshake if the connection is open (the
        pending ack first); while it connects, the runtime should drop the transport."""
        if not self.ended:
            self._end((CLOSED, "the client is closed"))
        if self.phase is Phase.OPEN:
            if self._ack:
                self._send_ack()
            self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
            self.phase = Phase.CLOSING

    def _request(self, kind: Kind, request: dict[str, Any]) -> int:
        phase = self.phase
        if phase is Phase.CLOSING or self.ended:
            raise client_error(*self._final)
        req = self._next_req
        self._next_req = req + 1
        request["req"] = req
        if phase is Phase.OPEN:
            self._dispatch(kind, req, request)
        else:
            self._unsent.append((kind, req, request))
        return req

    def _dispatch(self, kind: Kind, req: int, request: dict[str, Any]) -> None:
        self._pending[req] = kind
        if kind == "take":
            self._took = True
        self._send(request)

    def _send(self, request: dict[str, Any]) -> None:
        if self._ack:
            self._send_ack()
        self._write(self._ws.send(BytesMessage(data=msgpack.packb(request))))

    def _send_ack(self) -> None:
        seq, self._ack = self._ack, 0
        self._acked = seq
        self._write(self._ws.send(BytesMessage(data=msgpack.packb({"command": "ack", "seq": seq}))))

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes | None) -> None:
        """Feed bytes from the server; ``None`` means the transport ended."""
        if self.phase is Phase.CLOSED:
            return
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                self._on(event)
        except WSProtocolError as exc:
            self._finish(1002, f"protocol error: {exc}")
        if data is None:
            if self._refusal is not None:
                self._refused()
            self._finish(1006, "connection lost")

    def transport_failed(self, reason: str) -> None:
        """The transport broke, or could not be made (TCP, TLS, a timeout): ``reason`` says
        which, for the close reason and the error."""
        self._finish(1006, reason)

    def _on(self, event: object) -> None:
        if isinstance(event, BytesMessage):
            if event.message_finished and not self._fragments:
                self._on_event(decode_event(bytes(event.data)))
                return
            self._fragments.append(bytes(event.data))
            if event.message_finished:
                payload = b"".join(self._fragments)
                self._fragments.clear()
                self._on_event(decode_event(payload))
        elif isinstance(event, AcceptConnection):
            self._opened()
        elif isinstance(event, RejectConnection):
            self._refusal = event.status_code
            if not event.has_body:
                self._refused()
        elif isinstance(event, RejectData):
            room = REFUSAL_BODY - len(self._refusal_body)
            self._refusal_body += bytes(event.data[: max(room, 0)])
            if event.body_finished:
                self._refused()
        elif isinstance(event, TextMessage):
            self._events.append(ServerError("bad_event", "text frame from server", None))
        elif isinstance(event, Ping):
            self._write(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            with contextlib.suppress(WSProtocolError):  # the echo of our own close
                self._write(self._ws.send(event.response()))
            self._finish(event.code, event.reason or "")

    def _on_event(self, event: ClientEvent) -> None:
        """A server event: settle the request it answers, follow the role."""
        if isinstance(event, Delivery):
            pass
        elif isinstance(event, Added):
            self._pending.pop(event.req, None)
        elif isinstance(event, Subscribed):
            if isinstance(event.req, int):
                self._pending.pop(event.req, None)
            self.role, self.epoch = event.role, event.epoch
        elif isinstance(event, RoleChanged):
            self.role, self.epoch = event.role, event.epoch
            handover = self._handover
            if event.role == "standby" and handover is not None and handover in self._pending:
                del self._pending[handover]
                self._handover = None
                event = RoleChanged("standby", event.epoch, handover)
        elif isinstance(event, ServerError):
            req = event.req
            if isinstance(req, int) and self._pending.pop(req, None) == "handover":
                self._handover = None
        self._events.append(event)

    def _opened(self) -> None:
        self.phase = Phase.OPEN
        self._events.append(Opened())
        if self.ended:  # closed while this connection was being made
            self.close()
            return
        if self._took:
            req = self._next_req
            self._next_req = req + 1
            self._dispatch("retake", req, {**_take(self._prefetch), "req": req})
        unsent, self._unsent = self._unsent, []
        for kind, req, request in unsent:
            self._dispatch(kind, req, request)

    def _refused(self) -> None:
        """The upgrade was answered with an HTTP status (its body read, or cut off)."""
        status, self._refusal = self._refusal or 0, None
        text = " ".join(self._refusal_body.decode("utf-8", "replace").split())
        try:
            phrase = f" {HTTPStatus(status).phrase}"
        except ValueError:
            phrase = ""
        detail = f"HTTP {status}{phrase}" + (f": {text}" if text else "")
        code = {401: UNAUTHORIZED, 403: FORBIDDEN}.get(status, REFUSED)
        why = (code, f"the server refused the connection with {detail}")
        self._finish(status, f"upgrade refused with HTTP {status}", why)

    # -- losses and reconnections -----------------------------------------------------------

    def _finish(self, code: int, reason: str, why: tuple[str, str] | None = None) -> None:
        """The connection is over: fail what was sent on it, decide what comes next."""
        if self.phase is Phase.CLOSED:
            return
        opened = self.phase is not Phase.CONNECTING
        self.phase = Phase.CLOSED
        self.close_code, self.close_reason = code, reason
        self.role = self.epoch = None
        self._ack = self._acked = 0
        if why is None:
            why = self._final if self.ended else (CLOSED, _lost(code, reason))
        self._why = why
        pending, self._pending = self._pending, {}
        if self._handover in pending:
            self._handover = None
        for req, kind in pending.items():
            if kind != "retake":
                self._events.append(Failed(req, *why))
        if not self.ended:
            if not self.reconnects or why[0] in (UNAUTHORIZED, FORBIDDEN):
                self._end(why)
            else:
                self._delay = 0.0 if opened else max(RETRY_FIRST, min(self._delay * 2, RETRY_MAX))
        self._events.append(Closed(code, reason))

    def _end(self, why: tuple[str, str]) -> None:
        """No connection will follow: requests not sent yet fail, later ones raise."""
        self.ended = True
        self._final = why
        unsent, self._unsent = self._unsent, []
        for _kind, req, _request in unsent:
            self._events.append(Failed(req, *why))
        self._handover = None

    def error(self) -> ClientError:
        """Why the last connection ended (a fresh exception): what a runtime raises when a
        connection it opens does not open."""
        return client_error(*self._why)

    def next_attempt(self, now: float) -> float | None:
        """When to call ``reconnect()``, once a connection (or an attempt) has ended at
        ``now``; None when the client is over instead."""
        if self.ended or self.phase is not Phase.CLOSED:
            return None
        return now + self._delay

    def reconnect(self) -> None:
        """Start the next connection: the upgrade request is queued. Once it opens, a
        consumer takes again, then the requests made meanwhile leave."""
        if self.ended or self.phase is not Phase.CLOSED:
            raise InvalidState(f"reconnect() while {self.phase.value}, ended={self.ended}")
        self._start()


def check_token(token: str) -> None:
    """Raise ``ValueError`` (without repeating it) if ``token`` cannot be a bearer token."""
    if not token:
        raise ValueError("the token is empty")
    if not TOKEN.fullmatch(token):
        raise ValueError("a token is visible ASCII characters, with no spaces")


def _take(prefetch: int | None) -> dict[str, Any]:
    request: dict[str, Any] = {"command": "take"}
    if prefetch is not None:
        request["prefetch"] = prefetch
    return request


def _lost(code: int, reason: str) -> str:
    if code == 1006:
        return f"the connection was lost ({reason})"
    return f"the server closed the connection (close code {code}{': ' + reason if reason else ''})"
