"""One client connection: one HTTP/1.1 request, then (after an upgrade) WebSocket frames.

A ``Connection`` turns the bytes a peer sends into a few high-level events (an HTTP request,
an upgrade request, a complete binary message, the end of the connection) and turns the
server's decisions back into bytes. It knows nothing of queues: the server facade routes
requests and answers them through ``respond``, ``accept``, ``send_message`` and ``close``.

The request head is read by ``http1`` up to an exact cap, and an upgrade request is checked
there before the facade sees it, so an ``UpgradeRequest`` is always well formed (protocol §1.3).
Frame-level rules live here, once (protocol §2): binary messages only (a text frame closes with
1003), messages reassembled up to ``max_message_bytes`` and ``max_frames`` frames (beyond
either, 1009) and finished within ``message_timeout`` seconds (else 1008), pings answered, the
close handshake run. Whatever a peer sends, ``receive_data`` never raises: bad input becomes an
HTTP error status or a close frame with a code and a reason.

What an idle connection holds is kept small, for it is multiplied by every open connection: no
``h11`` object outlives the request head it parses, an upgraded connection keeps only a
``frames.FrameReader`` (whose buffer exists only while bytes wait in it), and an unfinished
message is one ``bytearray``, not one object per fragment.

After every call the caller must collect ``data_to_send()`` and, once ``transport_done`` is
true and the data is written, close the transport. The facade's timer sweep must call
``check_timeouts(now)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from . import codes, http1
from .exceptions import InvalidState
from .frames import (
    CLOSE,
    NO_STATUS,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameReader,
    TooBig,
    Unmasker,
    binary_header,
    close_frame,
    control_frame,
)
from .http1 import MAX_HEAD_BYTES, Headers, HttpError

#: A message may have this many frames, or one per ``FRAME_BYTES`` of the size cap if that is
#: more (protocol §2.2): enough for any client that fragments at a few KiB, and a bound on the
#: work an endless run of tiny or empty fragments can cause.
MIN_MAX_FRAMES: Final = 1024
FRAME_BYTES: Final = 4096
#: A message must be finished this many seconds after its first frame, or the time its size
#: cap takes at ``SLOWEST_BYTES_PER_SECOND`` if that is longer (protocol §2.2).
MIN_MESSAGE_SECONDS: Final = 10.0
SLOWEST_BYTES_PER_SECOND: Final = 64 * 1024


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
    #: Its headers (names lowercased), for the endpoints that need credentials (§10.4).
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A well-formed WebSocket upgrade request; answer it with ``accept`` or ``respond``.

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


class _Unfinished:
    """A fragmented message being reassembled: its bytes so far, in one buffer."""

    __slots__ = ("data", "frames", "started")

    def __init__(self, started: float) -> None:
        self.data = bytearray()
        #: Frames that have ended so far (empty ones too).
        self.frames = 0
        self.started = started


class Connection:
    """The protocol state of one peer, from the first byte to the close."""

    __slots__ = (
        "_frames",
        "_in",
        "_message",
        "_out",
        "_request",
        "_unmasker",
        "disconnected",
        "id",
        "last_seen",
        "max_message_bytes",
        "opened_at",
        "phase",
    )

    def __init__(
        self,
        conn_id: int,
        now: float,
        *,
        max_message_bytes: int,
        unmasker: Unmasker | None = None,
    ) -> None:
        self.id = conn_id
        self.opened_at = now
        #: When a byte last came from the peer, before our close (heartbeat deadlines, §9).
        self.last_seen = now
        self.max_message_bytes = max_message_bytes
        self.phase = Phase.HTTP
        #: True once ``Disconnected`` has been reported, so it is reported once.
        self.disconnected = False
        #: Before the request: the head so far. After an upgrade request: bytes that came
        #: after its head (frames), fed to the frame parser once it is accepted.
        self._in: bytearray | None = None
        #: The request waiting for ``respond`` or ``accept``.
        self._request: HttpRequest | UpgradeRequest | None = None
        #: The frame reader, once upgraded and until the close handshake ends.
        self._frames: FrameReader | None = None
        #: Unmasks client frames (a C one from the host when there is one).
        self._unmasker = unmasker
        self._message: _Unfinished | None = None
        self._out: list[bytes | bytearray] = []

    @property
    def max_frames(self) -> int:
        """Most frames one message may have (protocol §2.2)."""
        return max(MIN_MAX_FRAMES, self.max_message_bytes // FRAME_BYTES)

    @property
    def message_timeout(self) -> float:
        """Seconds a message may take from its first frame to its last (protocol §2.2)."""
        return max(MIN_MESSAGE_SECONDS, self.max_message_bytes / SLOWEST_BYTES_PER_SECOND)

    # -- output ---------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes to write to the transport now (empty if none)."""
        out, self._out = self._out, []
        return b"".join(out)

    @property
    def transport_done(self) -> bool:
        """True when, after writing ``data_to_send()``, the transport should be closed."""
        return self.phase is Phase.CLOSED or (self.phase is Phase.CLOSING and self._frames is None)

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[ConnectionEvent]:
        """Feed bytes from the peer; return what they mean. Never raises for bad input.

        A request event is answered with ``respond`` or ``accept``, at once or later: bytes fed
        meanwhile are kept for the upgrade, or ignored after a plain request (``_early``).
        """
        if self.phase is not Phase.CLOSING:
            # After our close frame only the peer's echo matters: whatever else it sends does
            # not keep the connection, so the heartbeat timeout ends an unanswered close.
            self.last_seen = now
        if self.phase is Phase.HTTP:
            return self._receive_http(data)
        frames = self._frames
        if frames is not None and self.phase in (Phase.OPEN, Phase.CLOSING):
            frames.feed(data)
            return self._ws_events(frames, now)
        return []

    def receive_eof(self) -> list[ConnectionEvent]:
        """The transport ended (peer closed, reset, or the shell dropped it)."""
        return self._lost(1006, "connection lost")

    def check_timeouts(self, now: float) -> list[ConnectionEvent]:
        """Close a connection whose message is not finished in time (protocol §2.2).

        The facade's timer sweep calls this for every connection; it returns ``Disconnected``
        when it closed this one.
        """
        message = self._message
        if message is None or now - message.started < self.message_timeout:
            return []
        return self.close(codes.CLOSE_POLICY_VIOLATION, "message not finished in time")

    def _lost(self, code: int, reason: str) -> list[ConnectionEvent]:
        self._in = self._request = self._frames = self._message = None
        self.phase = Phase.CLOSED
        return self._report(code, reason)

    def _report(self, code: int, reason: str) -> list[ConnectionEvent]:
        if self.disconnected:
            return []
        self.disconnected = True
        return [Disconnected(code, reason)]

    # -- HTTP -----------------------------------------------------------------------------

    def _receive_http(self, data: bytes) -> list[ConnectionEvent]:
        if self._request is not None:
            return self._early(data)
        held = self._in
        if held is None:
            held = self._in = bytearray()
        scanned = len(held)
        held += data
        end = http1.head_end(held, scanned)
        if http1.too_large(len(held), end):
            return self._refuse(HttpError(431, f"request head over {MAX_HEAD_BYTES} bytes"))
        if end is None:
            return []
        request = http1.parse_head(bytes(held[:end]))
        del held[:end]
        if isinstance(request, HttpError):
            return self._refuse(request)
        target = request.target.decode("ascii", "replace")
        headers = tuple(request.headers)
        if not http1.is_upgrade(headers):
            self._in = None  # a body is never read (protocol §1.2)
            method = request.method.decode("ascii", "replace")
            self._request = HttpRequest(method, target, headers)
            return [self._request]
        malformed = http1.check_upgrade(request)
        if malformed is not None:
            return self._refuse(malformed)
        if not held:
            self._in = None
        self._request = UpgradeRequest(target, headers, _subprotocols(headers))
        return [self._request]

    def _early(self, data: bytes) -> list[ConnectionEvent]:
        """Bytes that came while the request waits for its answer, which the server may give
        later (a ``/metrics`` body, where the queue is served: protocol §10.2; a slowed-down
        address: §11.7). A plain request's are never read (§1.2); an upgrade's are held for
        after it (frames, or relayed), up to ``MAX_HEAD_BYTES``: a client has no business
        sending more before it is answered, and is refused with 400 if it does."""
        if isinstance(self._request, HttpRequest):
            return []
        held = self._in
        if held is None:
            held = self._in = bytearray()
        if len(held) + len(data) > MAX_HEAD_BYTES:
            return self._refuse(HttpError(400, "too much data before the upgrade was answered"))
        held += data
        return []

    def detach(self) -> bytes:
        """Give the transport up: it is relayed to another node (protocol §10.3). Returns what
        the peer sent after its upgrade request; the connection is over for the core, and no
        event reports it. Only while an upgrade request waits for its answer."""
        if self.phase is not Phase.HTTP or not isinstance(self._request, UpgradeRequest):
            raise InvalidState("detach() answers a pending upgrade request only")
        early = bytes(self._in or b"")
        self._in = self._request = None
        self.phase = Phase.CLOSED
        self.disconnected = True
        return early

    def _refuse(self, error: HttpError) -> list[ConnectionEvent]:
        self.respond(error.status, f"{error.reason}\n".encode(), headers=error.headers)
        return self._report(codes.CLOSE_PROTOCOL_ERROR, "bad HTTP request")

    def respond(
        self,
        status: int,
        body: bytes = b"",
        content_type: bytes = b"text/plain; charset=utf-8",
        headers: Headers = (),
    ) -> None:
        """Answer the HTTP request with ``status`` and ``body``, then close (protocol §1.2).

        The answer to a ``HEAD`` request has the headers of the body, not the body.
        """
        if self.phase is not Phase.HTTP:
            raise InvalidState(f"cannot send an HTTP response in phase {self.phase.value}")
        request = self._request
        head_only = isinstance(request, HttpRequest) and request.method == "HEAD"
        response_headers = (
            (b"content-type", content_type),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
            *headers,
        )
        self._out.append(http1.response(status, response_headers, b"" if head_only else body))
        self._in = self._request = None
        self.phase = Phase.CLOSING

    def accept(
        self, request: UpgradeRequest, subprotocol: str | None = None
    ) -> list[ConnectionEvent]:
        """Complete the upgrade; return events from frames that arrived with the request."""
        if self.phase is not Phase.HTTP or self._request is not request:
            raise InvalidState("accept() answers the pending upgrade request only")
        if subprotocol is not None and subprotocol not in request.subprotocols:
            raise InvalidState(f"subprotocol {subprotocol!r} was not offered")
        self._out.append(http1.switching_protocols(request.headers, subprotocol))
        frames = self._frames = FrameReader(self.max_message_bytes, self._unmasker)
        self._request = None
        self.phase = Phase.OPEN
        trailing, self._in = self._in, None
        if not trailing:
            return []
        frames.feed(bytes(trailing))
        return self._ws_events(frames, self.last_seen)

    # -- WebSocket ------------------------------------------------------------------------

    def _ws_events(self, frames: FrameReader, now: float) -> list[ConnectionEvent]:
        events: list[ConnectionEvent] = []
        try:
            while (frame := frames.next_frame()) is not None:
                opcode, fin, payload = frame
                if self.phase is not Phase.OPEN and opcode != CLOSE:
                    continue  # closing: only the peer's close frame matters now
                if isinstance(payload, tuple):  # a close frame: its code and reason
                    events.extend(self._peer_closed(*payload))
                    break
                if opcode == PING:
                    self._out.append(control_frame(PONG, payload))
                elif opcode == TEXT:
                    reason = "text frames are not accepted"
                    events.extend(self.close(codes.CLOSE_UNSUPPORTED_DATA, reason))
                elif opcode != PONG:  # binary, or its continuation
                    events.extend(self._data(fin, payload, now))
                # A pong needs nothing: last_seen already moved, any byte proves the peer alive.
        except TooBig:
            reason = f"too_large: message over {self.max_message_bytes} bytes"
            events.extend(self.close(codes.CLOSE_TOO_BIG, reason))
        except FrameError as exc:
            events.extend(self._broken(exc))
        return events

    def _data(self, fin: bool, payload: bytes, now: float) -> list[ConnectionEvent]:
        """Reassemble a binary message (protocol §2.2); the message once it is finished.

        The frame reader has checked the message's size from each frame's header.
        """
        message = self._message
        if message is None:
            if fin:
                return [MessageReceived(payload)]  # a whole message at once: the usual case
            message = self._message = _Unfinished(now)
        message.data += payload
        message.frames += 1
        if message.frames > self.max_frames:
            reason = f"too_large: message in over {self.max_frames} frames"
            return self.close(codes.CLOSE_TOO_BIG, reason)
        if not fin:
            return []
        self._message = None
        return [MessageReceived(bytes(message.data))]

    def _peer_closed(self, code: int, reason: str) -> list[ConnectionEvent]:
        if self.phase is Phase.OPEN:
            # Echo the close (RFC 6455 §5.5.1); the exchange is then over.
            echo = control_frame(CLOSE) if code == NO_STATUS else close_frame(code, reason)
            self._out.append(echo)
        return self._lost(code, reason)

    def _broken(self, exc: FrameError) -> list[ConnectionEvent]:
        """The peer broke RFC 6455: say why in a close frame, then drop the transport."""
        if self.phase is Phase.OPEN:
            self._out.append(close_frame(exc.code, str(exc)))
        return self._lost(exc.code, "protocol error")

    def send_message(self, payload: bytes) -> None:
        """Send one binary message; silently dropped once the connection is closing."""
        if self._frames is not None and self.phase is Phase.OPEN:
            out = self._out
            size = len(payload)
            if size < 126:  # small: one short bytes object is cheaper than two list items
                out.append(bytes((0x82, size)) + payload)
            else:  # large: the payload goes out as it is, after its header
                out.append(binary_header(size))
                out.append(payload)

    def ping(self) -> None:
        """Send a heartbeat ping (protocol §2.3)."""
        if self._frames is not None and self.phase is Phase.OPEN:
            self._out.append(control_frame(PING))

    def close(self, code: int, reason: str) -> list[ConnectionEvent]:
        """Start the close handshake with ``code`` and ``reason`` (protocol §2.4).

        No message is sent after this; the peer's echo, or the heartbeat timeout, ends it.
        Returns ``Disconnected`` unless it was already reported, so the caller cleans up in
        one place whoever closed. Before an upgrade, answers HTTP 503 (shutting down) or 408.
        """
        self._message = None
        if self._frames is not None and self.phase is Phase.OPEN:
            self._out.append(close_frame(code, reason))
            self.phase = Phase.CLOSING
        elif self.phase is Phase.HTTP:
            self.respond(503 if code == codes.CLOSE_GOING_AWAY else 408, b"closing\n")
        return self._report(code, reason)

    def abort(self) -> list[ConnectionEvent]:
        """Give up on the peer (timeout): the transport should be closed at once."""
        return self._lost(1006, "timed out")


def _subprotocols(headers: Headers) -> tuple[str, ...]:
    found: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            found.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    return tuple(found)
