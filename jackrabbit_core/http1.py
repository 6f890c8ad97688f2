"""The one HTTP/1.1 request a connection reads: its head, cut at an exact cap, and the answer.

A connection reads a single request before it is answered and closed, or upgraded to a
WebSocket (protocol §1.2, §1.3). This module finds where the request head ends (holding no more
than ``MAX_HEAD_BYTES`` of it), lets ``h11`` parse it, checks an upgrade request against
RFC 6455 §4.2.1 and writes the responses. A request body is never read: a plain request is
answered and the connection closed, and an upgrade request that announces a body is refused, so
no byte after the head can be taken for something else (request smuggling).

Each check returns an ``HttpError`` (what to answer) rather than raising: bad input from a peer
never raises out of the core.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import h11
from wsproto.utilities import generate_accept_token

Headers = tuple[tuple[bytes, bytes], ...]

#: Largest request head accepted, from the request line through the blank line that ends it,
#: in bytes; a longer one is answered 431 (protocol §1.2).
MAX_HEAD_BYTES: Final = 16 * 1024

#: The blank line that ends a head, as ``h11`` finds it (a bare LF is accepted as a line end).
_HEAD_END = re.compile(rb"\n\r?\n")

_REASONS: Final = {
    101: b"Switching Protocols",
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    426: b"Upgrade Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    503: b"Service Unavailable",
}

#: What a 400 or 426 for a wrong WebSocket version carries (RFC 6455 §4.4).
_VERSION_HEADER: Final = ((b"sec-websocket-version", b"13"),)


@dataclass(frozen=True, slots=True)
class HttpError:
    """A request refused: the status and headers to answer with, and why (the body)."""

    status: int
    reason: str
    headers: Headers = ()


def head_end(buffer: bytes | bytearray, start: int = 0) -> int | None:
    """Where the head in ``buffer`` ends (just past its blank line), or None if not yet.

    ``start`` is how far an earlier call already looked, so that a head arriving a byte at a
    time is scanned once, not once per byte.
    """
    found = _HEAD_END.search(buffer, max(0, start - 2))
    return None if found is None else found.end()


def too_large(buffered: int, end: int | None) -> bool:
    """True when a head is over ``MAX_HEAD_BYTES``: it ends beyond the cap, or ``buffered``
    bytes are held and it has not ended yet."""
    return (end if end is not None else buffered) > MAX_HEAD_BYTES


def parse_head(head: bytes) -> h11.Request | HttpError:
    """The request in one complete head (from ``head_end``), or why it is not valid HTTP."""
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    parser.receive_data(head)
    try:
        event = parser.next_event()
    except h11.RemoteProtocolError as exc:
        return HttpError(exc.error_status_hint, f"bad HTTP request: {exc}")
    if not isinstance(event, h11.Request):
        return HttpError(400, "bad HTTP request")
    return event


def is_upgrade(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """The request asks for a WebSocket (``Upgrade: websocket``)."""
    return any(name == b"upgrade" and value.lower() == b"websocket" for name, value in headers)


def check_upgrade(request: h11.Request) -> HttpError | None:
    """Why an upgrade request is malformed (protocol §1.3), or None when it is well formed.

    RFC 6455 §4.1 wants a ``GET`` in HTTP/1.1 with ``Connection: Upgrade``, version 13 and a
    key that is the base64 of 16 bytes. A body (``Transfer-Encoding``, or a ``Content-Length``
    other than 0) is refused: its bytes would otherwise be read as WebSocket frames.
    """
    if request.http_version != b"1.1":
        return HttpError(400, "a WebSocket upgrade needs HTTP/1.1")
    if request.method != b"GET":
        return HttpError(400, "a WebSocket upgrade must be a GET request")
    headers = request.headers
    if _values(headers, b"transfer-encoding"):
        return HttpError(400, "an upgrade request must not have a body (Transfer-Encoding)")
    if any(value != b"0" for value in _values(headers, b"content-length")):
        return HttpError(400, "an upgrade request must not have a body (Content-Length)")
    tokens = b",".join(_values(headers, b"connection")).split(b",")
    if not any(token.strip().lower() == b"upgrade" for token in tokens):
        return HttpError(400, "an upgrade request needs 'Connection: Upgrade'")
    versions = _values(headers, b"sec-websocket-version")
    if versions != [b"13"]:
        status = 426 if versions else 400
        return HttpError(status, "only Sec-WebSocket-Version 13 is supported", _VERSION_HEADER)
    keys = _values(headers, b"sec-websocket-key")
    if len(keys) != 1 or not _valid_key(keys[0]):
        return HttpError(400, "Sec-WebSocket-Key must be the base64 of 16 bytes")
    return None


def _values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def response(status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    """A whole response: the status line, ``headers`` and ``body`` (empty to answer a HEAD).

    Written here rather than by ``h11`` so that one function serves every case, including a
    request too broken for ``h11`` to have a state to answer from. Every header name and value
    comes from the server, never from a peer.
    """
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b""))]
    lines.extend(b"%s: %s" % (name, value) for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def switching_protocols(request_headers: Headers, subprotocol: str | None) -> bytes:
    """The 101 response accepting a checked upgrade request (RFC 6455 §4.2.2)."""
    (key,) = _values(request_headers, b"sec-websocket-key")
    headers = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", generate_accept_token(key)),
    ]
    if subprotocol is not None:
        headers.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
    return response(101, headers)
