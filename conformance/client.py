"""Test clients: a v1/original client on the ``websockets`` package, and a raw one.

``Client`` drives a ``websockets.asyncio`` connection (not the project's own client) from
ordinary blocking test code: every connection lives on one background event loop, so pings
are answered all the time, as a real client's would be, and each TLS socket is touched by
that one thread only. (``websockets.sync`` reads and writes one ``ssl.SSLSocket`` from two
threads, which now and then loses the opening request under TLS 1.3: about one handshake in
500 then times out, against any server.) It packs requests with ``msgpack``, unpacks events,
and turns every wait into a bounded read.

``RawWebSocket`` speaks RFC 6455 by hand over an ``ssl`` socket for what a well-behaved
library will not do: stop answering pings, drop the socket without a close frame, send broken
frames. ``http()`` sends one plain HTTPS request. Every read takes a timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Coroutine, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .harness import Target

#: Default bound on any single wait for the server.
TIMEOUT = 5.0
#: How long "nothing more arrives" is watched for. A bounded read, never a sleep.
QUIET = 0.3

Event = dict[Any, Any]
_T = TypeVar("_T")


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def unpack_pairs(data: bytes) -> Any:
    """Decode keeping every map as a list of ``(key, value)`` pairs in wire order."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False, object_pairs_hook=list)


class Closed(Exception):
    """The server closed the connection (``code`` 1006 when no close frame came)."""

    def __init__(self, code: int, reason: str, before: list[bytes]) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason
        #: Messages that arrived before the close.
        self.before = before


class _Loop:
    """One event loop on a daemon thread, shared by every ``Client`` of the process."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        """Run ``coro`` on the loop and wait for it; ``TimeoutError`` after ``timeout``."""
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="clients", daemon=True).start()
                cls._loop = loop
        future = asyncio.run_coroutine_threadsafe(coro, cls._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            if future.done():
                raise  # the coroutine's own TimeoutError
            future.cancel()
            raise TimeoutError(f"no answer from the client loop in {timeout}s") from None


async def _recv(ws: ClientConnection, timeout: float) -> bytes | str:
    # Cancelling websockets' recv() loses nothing (its documented guarantee).
    async with asyncio.timeout(timeout):
        return await ws.recv()


class Client:
    """One WebSocket connection speaking MessagePack, with bounded reads."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    def open(
        cls, target: Target, queue: str | None, *, timeout: float = TIMEOUT, **kwargs: Any
    ) -> Client:
        """Connect to ``queue`` (None: the default queue at ``/``)."""
        options: dict[str, Any] = {
            "ssl": target.ssl_context(),
            "open_timeout": timeout,
            "close_timeout": 2,
            "max_size": None,
            "max_queue": None,
            "compression": None,
            "proxy": None,
        }
        options.update(kwargs)

        async def opening() -> ClientConnection:
            return await connect(target.queue_url(queue), **options)

        return cls(_Loop.run(opening(), timeout + 5))

    # -- sending --------------------------------------------------------------------------

    def send_bytes(self, data: bytes | str | Iterable[bytes]) -> None:
        """Send one message: bytes (binary), str (text), or an iterable (fragments)."""
        _Loop.run(self.ws.send(data), TIMEOUT)

    def send(self, obj: Any) -> None:
        self.send_bytes(pack(obj))

    def send_text(self, text: str) -> None:
        self.send_bytes(text)

    # -- receiving ------------------------------------------------------------------------

    def recv_bytes(self, timeout: float = TIMEOUT) -> bytes:
        """The next message's bytes; ``Closed`` if the server closed, ``TimeoutError``."""
        try:
            data = _Loop.run(_recv(self.ws, timeout), timeout + 5)
        except ConnectionClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
            raise Closed(code, reason, []) from None
        if isinstance(data, str):
            raise AssertionError(f"server sent a text frame: {data!r}")
        return data

    def recv(self, timeout: float = TIMEOUT) -> Event:
        event = unpack(self.recv_bytes(timeout))
        assert isinstance(event, dict), f"not a map: {event!r}"
        return event

    def expect(self, event: str, timeout: float = TIMEOUT, **fields: Any) -> Event:
        """Read the next event, which must be ``event`` with ``fields``."""
        got = self.recv(timeout)
        assert got.get("event") == event, f"expected {event!r} event, got {got!r}"
        for key, value in fields.items():
            assert got.get(key) == value, f"expected {key}={value!r} in {got!r}"
        return got

    def until(
        self, event: str, timeout: float = TIMEOUT, **fields: Any
    ) -> tuple[Event, list[Event]]:
        """Read events until one is ``event`` with ``fields``; it, and the ones before it."""
        before: list[Event] = []
        deadline = time.monotonic() + timeout
        while True:
            got = self.recv(max(deadline - time.monotonic(), 0.001))
            if got.get("event") == event and all(got.get(k) == v for k, v in fields.items()):
                return got, before
            before.append(got)

    def expect_quiet(self, duration: float = QUIET) -> None:
        """Nothing arrives within ``duration`` (pings are not messages)."""
        try:
            data = self.recv_bytes(duration)
        except TimeoutError:
            return
        except Closed as exc:
            raise AssertionError(f"connection closed while expecting quiet: {exc}") from None
        raise AssertionError(f"expected nothing, got {unpack(data)!r}")

    def expect_close(self, timeout: float = TIMEOUT) -> Closed:
        """Wait for the server to close; return the close (with any messages before it)."""
        before: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no close within {timeout}s (got {len(before)} messages)")
            try:
                data = self.recv_bytes(remaining)
            except Closed as closed:
                closed.before = before
                return closed
            except TimeoutError:
                continue
            before.append(data)

    # -- protocol v1 verbs ----------------------------------------------------------------

    def add(self, data: bytes, key: str | None = None, **extra: Any) -> Event:
        """Send ``add`` and return its ``added`` reply."""
        request: dict[str, Any] = {"command": "add", "data": data}
        if key is not None:
            request["key"] = key
        request.update(extra)
        self.send(request)
        return self.expect("added")

    def take(self, prefetch: int | None = None, role: str | None = None) -> Event:
        """Send ``take`` and return the ``subscribed`` reply (checking ``role`` if given)."""
        request: dict[str, Any] = {"command": "take"}
        if prefetch is not None:
            request["prefetch"] = prefetch
        self.send(request)
        reply = self.expect("subscribed")
        if role is not None:
            assert reply["role"] == role, f"expected role {role!r}: {reply!r}"
        return reply

    def ack(self, seq: int) -> None:
        self.send({"command": "ack", "seq": seq})

    def recv_many(self, count: int, timeout: float = TIMEOUT) -> list[Event]:
        """The next ``count`` events, each within ``timeout`` of the one before."""

        async def gather() -> list[bytes | str]:
            return [await _recv(self.ws, timeout) for _ in range(count)]

        try:
            frames = _Loop.run(gather(), timeout * count + 5)
        except ConnectionClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
            raise Closed(code, reason, []) from None
        events = []
        for frame in frames:
            assert isinstance(frame, bytes), f"server sent a text frame: {frame!r}"
            event = unpack(frame)
            assert isinstance(event, dict), f"not a map: {event!r}"
            events.append(event)
        return events

    def messages(self, count: int, timeout: float = TIMEOUT) -> list[Event]:
        """The next ``count`` events, each a ``message``."""
        events = self.recv_many(count, timeout)
        for event in events:
            assert event.get("event") == "message", f"expected a message, got {event!r}"
        return events

    def close(self) -> None:
        """Close normally (close frame, then wait for the server's)."""
        with contextlib.suppress(Exception):
            _Loop.run(self.ws.close(), 5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_uuid(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# -- raw WebSocket ----------------------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes


class RawWebSocket:
    """RFC 6455 by hand over a TLS socket: only what the caller asks, nothing automatic.

    Pings are answered only while ``recv_message`` runs with ``answer_pings`` true; a client
    that stops calling it has gone silent, which is what heartbeat scenarios need.
    """

    def __init__(self, sock: ssl.SSLSocket, buffered: bytes = b"") -> None:
        self.sock = sock
        self._buf = bytearray(buffered)
        self.answer_pings = True
        #: Pings received so far (answered or not).
        self.pings = 0

    @classmethod
    def connect(
        cls, target: Target, path: str, *, timeout: float = TIMEOUT, headers: str | None = None
    ) -> RawWebSocket:
        sock = tls_socket(target, timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        head = (
            headers
            if headers is not None
            else (
                f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            )
        )
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n{head}\r\n".encode()
        )
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {raw!r}")
            raw += chunk
        response, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = response.decode("latin-1").split("\r\n")
        if status_line.split(" ")[1:2] != ["101"]:
            raise ConnectionError(f"upgrade refused: {status_line!r}")
        expected = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        fields = {
            n.strip().lower(): v.strip() for n, _, v in (h.partition(":") for h in header_lines)
        }
        if fields.get("sec-websocket-accept") != expected:
            raise ConnectionError(f"bad Sec-WebSocket-Accept in {response!r}")
        return cls(sock, rest)

    # -- frames ---------------------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        self.sock.sendall(encode_frame(opcode, payload, fin=fin))

    def send(self, obj: Any) -> None:
        self.send_frame(OP_BINARY, pack(obj))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame in time")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no frame in time") from None
            if not chunk:
                raise Closed(1006, "eof", [])
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def recv_frame(self, timeout: float = TIMEOUT) -> Frame:
        deadline = time.monotonic() + timeout
        b0, b1 = self._read(2, deadline)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2, deadline))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8, deadline))
        if b1 & 0x80:
            raise AssertionError("server frames must not be masked (RFC 6455 §5.1)")
        return Frame(bool(b0 & 0x80), b0 & 0x0F, self._read(length, deadline))

    def recv_message(self, timeout: float = TIMEOUT) -> bytes:
        """The next binary message; answers pings; ``Closed`` on a close frame or EOF."""
        deadline = time.monotonic() + timeout
        parts: list[bytes] = []
        while True:
            frame = self.recv_frame(max(deadline - time.monotonic(), 0.001))
            if frame.opcode == OP_PING:
                self.pings += 1
                if self.answer_pings:
                    self.send_frame(OP_PONG, frame.payload)
                continue
            if frame.opcode == OP_PONG:
                continue
            if frame.opcode == OP_CLOSE:
                code = struct.unpack("!H", frame.payload[:2])[0] if frame.payload else 1005
                raise Closed(code, frame.payload[2:].decode("utf-8", "replace"), [])
            if frame.opcode == OP_TEXT:
                raise AssertionError(f"server sent a text frame: {frame.payload!r}")
            parts.append(frame.payload)
            if frame.fin:
                return b"".join(parts)

    def recv(self, timeout: float = TIMEOUT) -> Event:
        event = unpack(self.recv_message(timeout))
        assert isinstance(event, dict), f"not a map: {event!r}"
        return event

    def expect(self, event: str, timeout: float = TIMEOUT, **fields: Any) -> Event:
        got = self.recv(timeout)
        assert got.get("event") == event, f"expected {event!r} event, got {got!r}"
        for key, value in fields.items():
            assert got.get(key) == value, f"expected {key}={value!r} in {got!r}"
        return got

    def abort(self, *, reset: bool = False) -> None:
        """Drop the connection with no close frame (``reset``: send a TCP RST)."""
        if reset:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.sock.close()

    close = abort


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """One client frame (masked, as RFC 6455 §5.3 requires of clients)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def tls_socket(target: Target, timeout: float = TIMEOUT) -> ssl.SSLSocket:
    raw = socket.create_connection((target.host, target.port), timeout=timeout)
    return target.ssl_context().wrap_socket(raw, server_hostname=target.host)


# -- plain HTTPS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def http(
    target: Target,
    path: str,
    *,
    method: str = "GET",
    headers: str = "",
    timeout: float = TIMEOUT,
) -> Response:
    """Send one HTTP/1.1 request over TLS (``headers``: extra raw ``Name: value\\r\\n`` lines)
    and read the response until the server closes or ``Content-Length`` is reached."""
    with tls_socket(target, timeout) as sock:
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            f"{headers}Connection: close\r\n\r\n"
        )
        sock.sendall(request.encode("latin-1"))
        return read_response(sock, timeout)


def read_response(sock: socket.socket, timeout: float = TIMEOUT) -> Response:
    deadline = time.monotonic() + timeout
    raw = b""
    length: int | None = None
    head_end = -1
    while True:
        if head_end < 0:
            head_end = raw.find(b"\r\n\r\n")
            if head_end >= 0:
                for line in raw[:head_end].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
        if length is not None and head_end >= 0 and len(raw) >= head_end + 4 + length:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"incomplete HTTP response: {raw[:200]!r}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, ConnectionError):
            chunk = b""
        if not chunk:
            break
        raw += chunk
    if head_end < 0:
        raise ConnectionError(f"no HTTP response head: {raw[:200]!r}")
    head, body = raw[:head_end], raw[head_end + 4 :]
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {n.strip().lower(): v.strip() for n, _, v in (h.partition(":") for h in lines)}
    return Response(int(status_line.split(" ")[1]), fields, body)
