"""One client connection: HTTP/1.1 until an upgrade, then WebSocket frames.

A ``Connection`` turns the bytes a peer sends into a few high-level events (an HTTP request,
an upgrade request, a complete binary message, the end of the connection) and turns the
server's decisions back into bytes. It knows nothing of queues: the server facade routes
requests and answers them through ``respond``, ``accept``, ``send_message`` and ``close``.

Frame-level rules live here, once (``docs/protocol.md`` §2): binary messages only (a text
frame closes with 1003), messages reassembled up to ``max_message_bytes`` (beyond it, 1009),
pings answered, the close handshake run. Whatever a peer sends, ``receive_data`` never raises:
bad input becomes an HTTP error status or a close frame with a code and a reason.

After every call the caller must collect ``data_to_send()`` and, once ``transport_done`` is
true and the data is written, close the transport.
"""

from __future__ import annotations

import contextlib
import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import h11
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.handshake import H11Handshake
from wsproto.utilities import ProtocolError as WSProtocolError
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from . import codes
from .exceptions import InvalidState

Headers = tuple[tuple[bytes, bytes], ...]

#: Largest HTTP request head accepted (h11 answers 431 beyond it, protocol §1.2).
MAX_HEAD_BYTES = 16 * 1024


class Phase(enum.Enum):
    """Where a connection is in its life."""

    HTTP = "http"  #: reading a request
    OPEN = "open"  #: WebSocket frames flow both ways
    CLOSING = "closing"  #: a close frame was sent or the HTTP response is out; nothing more
    CLOSED = "closed"  #: the transport is gone


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A plain HTTP request (not an upgrade); answer it with ``respond``."""

    method: str
    target: str


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A WebSocket upgrade request; answer it with ``accept`` or ``respond``.

    This is where authentication plugs in (protocol §1.4): the headers and offered
    subprotocols are all here for an authenticator to read before the server accepts.
    """

    target: str
    headers: Headers
    subprotocols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A complete binary WebSocket message."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The WebSocket or HTTP exchange is over: the peer closed, vanished or was closed."""

    code: int
    reason: str


ConnectionEvent = HttpRequest | UpgradeRequest | MessageReceived | Disconnected

_STATUS_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    426: b"Upgrade Required",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class Connection:
    """The protocol state of one peer, from the first byte to the close."""

    __slots__ = (
        "_fragments",
        "_fragments_size",
        "_http",
        "_out",
        "_ws",
        "disconnected",
        "id",
        "last_seen",
        "max_message_bytes",
        "opened_at",
        "phase",
    )

    def __init__(self, conn_id: int, now: float, *, max_message_bytes: int) -> None:
        self.id = conn_id
        self.opened_at = now
        #: When a byte last came from the peer (heartbeat deadlines, protocol §9).
        self.last_seen = now
        self.max_message_bytes = max_message_bytes
        self.phase = Phase.HTTP
        #: True once ``Disconnected`` has been reported, so it is reported once.
        self.disconnected = False
        self._http: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES
        )
        self._ws: WSConnection | None = None
        self._out: list[bytes] = []
        self._fragments: list[bytes] = []
        self._fragments_size = 0

    # -- output ---------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes to write to the transport now (empty if none)."""
        out, self._out = self._out, []
        return b"".join(out)

    @property
    def transport_done(self) -> bool:
        """True when, after writing ``data_to_send()``, the transport should be closed."""
        return self.phase is Phase.CLOSED or (self.phase is Phase.CLOSING and self._ws is None)

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[ConnectionEvent]:
        """Feed bytes from the peer; return what they mean. Never raises for bad input."""
        self.last_seen = now
        if self.phase is Phase.HTTP:
            return self._receive_http(data)
        if self._ws is not None and self.phase in (Phase.OPEN, Phase.CLOSING):
            try:
                self._ws.receive_data(data)
            except WSProtocolError:
                return self._lost(codes.CLOSE_PROTOCOL_ERROR, "protocol error")
            return self._ws_events()
        return []

    def receive_eof(self) -> list[ConnectionEvent]:
        """The transport ended (peer closed, reset, or the shell dropped it)."""
        self._ws = None
        self._http = None
        return self._lost(1006, "connection lost")

    def _lost(self, code: int, reason: str) -> list[ConnectionEvent]:
        self.phase = Phase.CLOSED
        return self._report(code, reason)

    def _report(self, code: int, reason: str) -> list[ConnectionEvent]:
        if self.disconnected:
            return []
        self.disconnected = True
        self._fragments.clear()
        return [Disconnected(code, reason)]

    # -- HTTP -----------------------------------------------------------------------------

    def _receive_http(self, data: bytes) -> list[ConnectionEvent]:
        http = self._http
        if http is None:  # pragma: no cover - phase HTTP always has one
            raise InvalidState("HTTP phase without an h11 connection")
        http.receive_data(data)
        try:
            event = http.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            self.respond(status, f"bad HTTP request: {exc}\n".encode())
            return self._report(codes.CLOSE_PROTOCOL_ERROR, "bad HTTP request")
        if event is h11.NEED_DATA:
            return []
        if not isinstance(event, h11.Request):
            # A request is the only event a server can see first; anything else is a bug
            # in h11's contract, answered as a bad request rather than raised.
            self.respond(400, b"bad HTTP request\n")
            return self._report(codes.CLOSE_PROTOCOL_ERROR, "bad HTTP request")
        target = event.target.decode("ascii", "replace")
        if not _is_upgrade(event.headers):
            return [HttpRequest(event.method.decode("ascii", "replace"), target)]
        return [UpgradeRequest(target, tuple(event.headers), _subprotocols(event.headers))]

    def respond(
        self,
        status: int,
        body: bytes = b"",
        content_type: bytes = b"text/plain; charset=utf-8",
        headers: Headers = (),
    ) -> None:
        """Answer the HTTP request with ``status`` and ``body``, then close (protocol §1.2)."""
        if self.phase is not Phase.HTTP:
            raise InvalidState(f"cannot send an HTTP response in phase {self.phase.value}")
        http = h11.Connection(h11.SERVER) if self._http is None else self._http
        response_headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *headers,
        ]
        reason = _STATUS_REASONS.get(status, b"")
        try:
            self._out.append(
                http.send(h11.Response(status_code=status, headers=response_headers, reason=reason))
                or b""
            )
            if body:
                self._out.append(http.send(h11.Data(data=body)) or b"")
            self._out.append(http.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            # The request was too broken for h11 to frame a response (e.g. it never
            # finished a request line): write the status line by hand, then close.
            self._out.append(
                b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                % (status, reason)
            )
        self._http = None
        self.phase = Phase.CLOSING

    def accept(
        self, request: UpgradeRequest, subprotocol: str | None = None
    ) -> list[ConnectionEvent]:
        """Complete the upgrade; return events from frames that arrived with the request.

        Answers 400 (or 426 for a wrong WebSocket version) and closes instead when the upgrade
        request is malformed (protocol §1.3), in which case ``Disconnected`` is returned.
        """
        http = self._http
        if self.phase is not Phase.HTTP or http is None:
            raise InvalidState(f"cannot accept an upgrade in phase {self.phase.value}")
        handshake = H11Handshake(ConnectionType.SERVER)
        try:
            handshake.initiate_upgrade_connection(list(request.headers), request.target)
            for _ in handshake.events():
                pass
            accepted = handshake.send(AcceptConnection(subprotocol=subprotocol))
        except (WSRemoteProtocolError, WSProtocolError, h11.ProtocolError) as exc:
            hint = getattr(exc, "event_hint", None)
            status = getattr(hint, "status_code", 400)
            self.respond(status, f"bad WebSocket upgrade: {exc}\n".encode())
            return self._report(codes.CLOSE_PROTOCOL_ERROR, "bad WebSocket upgrade")
        ws = handshake.connection
        if ws is None:  # pragma: no cover - wsproto sets it on accept
            raise InvalidState("wsproto accepted without a connection")
        trailing, _ = http.trailing_data
        self._out.append(accepted)
        self._http = None
        self._ws = ws
        self.phase = Phase.OPEN
        if not trailing:
            return []
        ws.receive_data(bytes(trailing))
        return self._ws_events()

    # -- WebSocket ------------------------------------------------------------------------

    def _ws_events(self) -> list[ConnectionEvent]:
        ws = self._ws
        if ws is None:
            return []
        events: list[ConnectionEvent] = []
        for event in ws.events():
            if isinstance(event, BytesMessage):
                if self.phase is not Phase.OPEN:
                    continue
                self._fragments_size += len(event.data)
                if self._fragments_size > self.max_message_bytes:
                    reason = f"too_large: message over {self.max_message_bytes} bytes"
                    events.extend(self.close(codes.CLOSE_TOO_BIG, reason))
                    continue
                message = self._reassemble(event)
                if message is not None:
                    events.append(MessageReceived(message))
            elif isinstance(event, TextMessage):
                if self.phase is Phase.OPEN:
                    reason = "text frames are not accepted"
                    events.extend(self.close(codes.CLOSE_UNSUPPORTED_DATA, reason))
            elif isinstance(event, Ping):
                if self.phase is Phase.OPEN:
                    self._out.append(ws.send(event.response()))
            elif isinstance(event, Pong):
                pass  # last_seen already moved: any byte proves the peer alive
            elif isinstance(event, CloseConnection):
                events.extend(self._peer_closed(event))
                break
        return events

    def _reassemble(self, event: BytesMessage) -> bytes | None:
        """Collect fragments; the whole message once it is finished, else None."""
        if event.message_finished and not self._fragments:
            self._fragments_size = 0
            return bytes(event.data)
        self._fragments.append(bytes(event.data))
        if not event.message_finished:
            return None
        message = b"".join(self._fragments)
        self._fragments.clear()
        self._fragments_size = 0
        return message

    def _peer_closed(self, event: CloseConnection) -> list[ConnectionEvent]:
        ws = self._ws
        if ws is not None and self.phase is Phase.OPEN:
            # Echo the close (RFC 6455 §5.5.1); the exchange is then over.
            with contextlib.suppress(WSProtocolError):
                self._out.append(ws.send(event.response()))
        self._ws = None
        self.phase = Phase.CLOSED
        return self._report(event.code, event.reason or "")

    def send_message(self, payload: bytes) -> None:
        """Send one binary message; silently dropped once the connection is closing."""
        if self._ws is not None and self.phase is Phase.OPEN:
            self._out.append(binary_frame(payload))

    def ping(self) -> None:
        """Send a heartbeat ping (protocol §2.3)."""
        ws = self._ws
        if ws is not None and self.phase is Phase.OPEN:
            self._out.append(ws.send(Ping()))

    def close(self, code: int, reason: str) -> list[ConnectionEvent]:
        """Start the close handshake with ``code`` and ``reason`` (protocol §2.4).

        No message is sent after this; the peer's echo, or the heartbeat timeout, ends it.
        Returns ``Disconnected`` unless it was already reported, so the caller cleans up in
        one place whoever closed. Before an upgrade, answers HTTP 503 (shutting down) or 408.
        """
        ws = self._ws
        if ws is not None and self.phase is Phase.OPEN:
            self._out.append(ws.send(CloseConnection(code=code, reason=reason)))
            self.phase = Phase.CLOSING
        elif self.phase is Phase.HTTP:
            self.respond(503 if code == codes.CLOSE_GOING_AWAY else 408, b"closing\n")
        return self._report(code, reason)

    def abort(self) -> list[ConnectionEvent]:
        """Give up on the peer (timeout): the transport should be closed at once."""
        self._ws = None
        self._http = None
        return self._lost(1006, "timed out")


def binary_frame(payload: bytes) -> bytes:
    """One final, unmasked binary frame (RFC 6455 §5.2): what every server message is.

    The hot path of every delivery and confirmation. A server's frames are never masked and we
    never fragment or compress, so the header is two to ten fixed bytes; building it here costs
    a fraction of ``wsproto``'s general frame writer, which keeps every other frame (control
    frames, the close handshake) and all of the parsing.
    """
    size = len(payload)
    if size < 126:
        return bytes((0x82, size)) + payload
    if size < 0x10000:
        return _HEADER_16.pack(0x82, 126, size) + payload
    return _HEADER_64.pack(0x82, 127, size) + payload


_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def _is_upgrade(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(name == b"upgrade" and value.lower() == b"websocket" for name, value in headers)


def _subprotocols(headers: Sequence[tuple[bytes, bytes]]) -> tuple[str, ...]:
    found: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            found.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    return tuple(found)
