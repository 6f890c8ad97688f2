"""HTTP and framing abuse (protocol §1.2, §1.3, §2.2): exact answers, nothing smuggled.

- ``HEAD /healthz`` and ``HEAD /metrics`` answer one status line with the headers of ``GET``
  (``Content-Length`` included) and no body.
- A request head of 16,384 bytes (request line through the blank line) is read; one byte more
  is answered 431.
- An upgrade request that carries a body (``Transfer-Encoding``, or a ``Content-Length`` other
  than 0) is refused 400, and the frames in that body are never executed; an HTTP/1.0
  upgrade is 400; a ``Sec-WebSocket-Version`` other than 13 is 426 with
  ``Sec-WebSocket-Version: 13``; a ``Sec-WebSocket-Key`` that is not the base64 of 16 bytes
  is 400.
- A message may have 1024 frames (at the default size cap), empty continuation frames
  included; one more closes with 1009 and a ``too_large`` reason. A message not finished
  16 seconds after its first frame closes with 1008, however busy its sender keeps it.

Every request here is written by hand over TLS: ``http()`` adds ``Connection: close``, which
alone would make an upgrade malformed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from .client import (
    OP_BINARY,
    OP_CONT,
    TIMEOUT,
    Client,
    Closed,
    RawWebSocket,
    encode_frame,
    pack,
    tls_socket,
)
from .harness import Target

#: protocol §1.2: the largest request head read.
MAX_HEAD_BYTES = 16 * 1024
#: protocol §2.2, at the default --max-message-bytes of 1 MiB.
MAX_FRAMES = 1024
MESSAGE_TIMEOUT = 16.0


def _exchange(server: Target, request: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send raw bytes over TLS; everything the server sends until it closes."""
    with tls_socket(server, timeout) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + timeout
        received = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"server did not close within {timeout}s: {received!r}")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except (ConnectionError, ssl.SSLError):  # a reset or a cut TLS: closed all the same
                return received
            except TimeoutError:
                continue
            if not chunk:
                return received
            received += chunk


def _parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = response.partition(b"\r\n\r\n")
    assert sep, f"no complete response head: {response!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {n.strip().lower(): v.strip() for n, _, v in (h.partition(":") for h in lines)}
    return int(status_line.split(" ")[1]), fields, body


def _upgrade(server: Target, path: str, extra: str = "", *, version: str = "1.1") -> bytes:
    """A well-formed upgrade request head, with ``extra`` header lines."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/{version}\r\nHost: {server.host}:{server.port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {key}\r\n{extra}\r\n"
    ).encode()


# -- HEAD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_head_answers_headers_without_a_body(server: Target, path: str) -> None:
    """One status line, ``Content-Length`` as for ``GET``, and not a byte after the head."""
    request = f"HEAD {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n\r\n".encode()
    response = _exchange(server, request)
    assert response.count(b"HTTP/1.") == 1, response
    status, fields, body = _parse(response)
    assert status == 200, response
    assert int(fields.get("content-length", "0")) > 0, fields
    assert body == b"", response
    if path == "/healthz":
        get = f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n\r\n".encode()
        _, get_fields, get_body = _parse(_exchange(server, get))
        assert fields["content-length"] == get_fields["content-length"] == str(len(get_body))


# -- the head cap -------------------------------------------------------------------------------


def _head_of(server: Target, size: int, *, ended: bool = True) -> bytes:
    """A ``GET /healthz`` head of ``size`` bytes (without its blank line unless ``ended``)."""
    start = f"GET /healthz HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nX-Pad: ".encode()
    end = b"\r\n\r\n" if ended else b""
    return start + b"a" * (size - len(start) - len(end)) + end


@pytest.mark.parametrize(
    ("size", "ended", "status"),
    [
        (MAX_HEAD_BYTES, True, 200),
        (MAX_HEAD_BYTES + 1, True, 431),
        (MAX_HEAD_BYTES + 1, False, 431),
    ],
    ids=["16384", "16385", "16385-unended"],
)
def test_the_head_cap_is_exact(server: Target, size: int, ended: bool, status: int) -> None:
    """A head of 16,384 bytes is read; at 16,385 bytes it is answered 431, whether or not it
    has ended (the server does not wait for the rest of a head already too long)."""
    request = _head_of(server, size, ended=ended)
    assert len(request) == size
    got, _, body = _parse(_exchange(server, request))
    assert got == status, body


# -- malformed upgrades ---------------------------------------------------------------------------


def _add_frame(data: bytes) -> bytes:
    return encode_frame(OP_BINARY, pack({"command": "add", "data": data}))


@pytest.mark.parametrize("framing", ["content-length", "transfer-encoding"])
def test_an_upgrade_with_a_body_is_refused_and_never_executed(
    server: Target, connect: Callable[..., Client], queue: str, framing: str
) -> None:
    """Request smuggling: the frames in the body are not read, so nothing is stored."""
    body = _add_frame(b"smuggled") * 3
    if framing == "content-length":
        request = _upgrade(server, f"/queues/{queue}", f"Content-Length: {len(body)}\r\n") + body
    else:
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        request = _upgrade(server, f"/queues/{queue}", "Transfer-Encoding: chunked\r\n") + chunked
    status, _, reason = _parse(_exchange(server, request))
    assert status == 400, reason
    assert connect(server, queue).add(b"after")["seq"] == 1  # nothing was stored before


def test_an_upgrade_with_content_length_0_is_accepted(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """An empty body is no body: the upgrade goes through and frames after it are read."""
    with tls_socket(server) as sock:
        sock.sendall(_upgrade(server, f"/queues/{queue}", "Content-Length: 0\r\n"))
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            assert chunk, raw
            raw += chunk
        assert raw.startswith(b"HTTP/1.1 101 "), raw
        ws = RawWebSocket(sock, raw.partition(b"\r\n\r\n")[2])
        ws.sock.sendall(_add_frame(b"ok"))
        assert ws.expect("added")["seq"] == 1


def test_an_http_1_0_upgrade_is_400(server: Target, queue: str) -> None:
    """RFC 6455 §4.1: the upgrade needs HTTP/1.1."""
    status, _, reason = _parse(
        _exchange(server, _upgrade(server, f"/queues/{queue}", version="1.0"))
    )
    assert status == 400, reason


def test_a_wrong_version_is_426_naming_version_13(server: Target, queue: str) -> None:
    """RFC 6455 §4.4: a 426 says which version the server speaks."""
    request = _upgrade(server, f"/queues/{queue}").replace(b"Version: 13", b"Version: 8")
    status, fields, reason = _parse(_exchange(server, request))
    assert status == 426, reason
    assert fields.get("sec-websocket-version") == "13", fields


@pytest.mark.parametrize(
    "key",
    [
        "not-a-key",
        base64.b64encode(bytes(15)).decode(),
        base64.b64encode(bytes(17)).decode(),
        base64.b64encode(bytes(16)).decode().rstrip("="),
        "!" * 22 + "==",
    ],
    ids=["not-base64", "15-bytes", "17-bytes", "no-padding", "bad-characters"],
)
def test_an_invalid_key_is_400(server: Target, queue: str, key: str) -> None:
    """RFC 6455 §4.1: ``Sec-WebSocket-Key`` is the base64 of 16 bytes."""
    request = _upgrade(server, f"/queues/{queue}")
    start = request.index(b"Sec-WebSocket-Key: ") + len(b"Sec-WebSocket-Key: ")
    end = request.index(b"\r\n", start)
    request = request[:start] + key.encode() + request[end:]
    status, _, reason = _parse(_exchange(server, request))
    assert status == 400, reason


# -- fragmented messages ------------------------------------------------------------------------


def _in_frames(payload: bytes, count: int) -> bytes:
    """``payload`` as one message of ``count`` frames, all but the first and last empty."""
    first = encode_frame(OP_BINARY, payload[:1], fin=False)
    empty = encode_frame(OP_CONT, b"", fin=False) * (count - 2)
    return first + empty + encode_frame(OP_CONT, payload[1:], fin=True)


def test_a_message_in_1024_frames_is_read(server: Target, queue: str) -> None:
    ws = RawWebSocket.connect(server, f"/queues/{queue}")
    try:
        ws.sock.sendall(_in_frames(pack({"command": "add", "data": b"fragmented"}), MAX_FRAMES))
        assert ws.expect("added")["seq"] == 1
    finally:
        ws.abort()


@pytest.mark.parametrize("frames", [MAX_FRAMES + 1, 20_000], ids=["1025", "20000"])
def test_a_message_in_too_many_frames_closes_1009(
    server: Target, connect: Callable[..., Client], queue: str, frames: int
) -> None:
    """One frame over the bound, or an endless run of empty continuations: 1009, and the
    server carries on."""
    ws = RawWebSocket.connect(server, f"/queues/{queue}")
    try:
        with contextlib.suppress(OSError):  # the server may close before all is sent
            ws.sock.sendall(_in_frames(pack({"command": "add", "data": b"x"}), frames))
        with pytest.raises(Closed) as closed:
            ws.recv_message()
    finally:
        ws.abort()
    assert closed.value.code == 1009, closed.value
    assert closed.value.reason.startswith("too_large"), closed.value
    assert connect(server, queue).add(b"after")["seq"] == 1


# -- a message that never finishes --------------------------------------------------------------


def _trickle(ws: RawWebSocket, started: float) -> tuple[Closed, float] | Exception:
    """Send one more byte of the unfinished message every second until the server closes;
    the close and when it came (seconds after the first frame)."""
    deadline = started + MESSAGE_TIMEOUT + 10
    try:
        while time.monotonic() < deadline:
            try:
                ws.recv_message(timeout=1.0)
            except TimeoutError:
                ws.send_frame(OP_CONT, b"\x00", fin=False)
                continue
            except Closed as closed:
                return closed, time.monotonic() - started
            return AssertionError("a message arrived on a connection that sent none")
        return AssertionError(f"still open {MESSAGE_TIMEOUT + 10}s after the first frame")
    except Exception as exc:  # reported by the scenario below
        return exc


@pytest.fixture(scope="module", autouse=True)
def unfinished(server: Target) -> Iterator[Future[tuple[Closed, float] | Exception]]:
    """A peer that starts a message when the module starts and keeps adding a byte to it every
    second, so that the time limit runs while the other scenarios do."""
    ws = RawWebSocket.connect(server, f"/queues/unfinished-{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    ws.send_frame(OP_BINARY, b"\x82", fin=False)
    with ThreadPoolExecutor(1, thread_name_prefix="trickle") as pool:
        yield pool.submit(_trickle, ws, started)
        with contextlib.suppress(OSError):
            ws.sock.shutdown(socket.SHUT_RDWR)  # ends the thread's read if the test failed
    ws.abort()


def test_an_unfinished_message_closes_1008_in_time(
    unfinished: Future[tuple[Closed, float] | Exception],
) -> None:
    """16 s after its first frame (at the default 1 MiB cap) the message is given up: 1008,
    although its sender was never silent."""
    outcome = unfinished.result(timeout=MESSAGE_TIMEOUT + 15)
    if isinstance(outcome, Exception):
        raise outcome
    closed, after = outcome
    assert (closed.code, closed.reason) == (1008, "message not finished in time"), closed
    assert MESSAGE_TIMEOUT <= after <= MESSAGE_TIMEOUT + 5, after
