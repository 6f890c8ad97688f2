"""Bad input of every kind (CONTRACT §1, §2): refused precisely, and nothing else harmed.

- A text frame closes with 1003; a message over ``--max-message-bytes`` closes with 1009;
  each close carries a reason. These are the only closes for bad v1 input.
- Anything else a v1 client sends that is not a valid request (not MessagePack, truncated,
  deeply nested, not a map, wrong types, unknown command) is answered by an ``error`` event
  (``bad_request`` or ``unknown_command``) and the connection stays usable.
- Broken transports (garbage instead of TLS, plain HTTP on the TLS port, handshakes that
  stall at any stage, invalid frames) cost only their own connection.

Each scenario stores witness messages first and checks afterwards that the server still
serves and that every stored message is still there.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest

from .client import (
    OP_BINARY,
    OP_CONT,
    TIMEOUT,
    Client,
    Closed,
    RawWebSocket,
    pack,
    tls_socket,
)
from .conftest import Spawner
from .harness import Target

WITNESSES = [b"w1", b"w2", b"w3"]


def store_witnesses(server: Target, connect: Callable[..., Client], queue: str) -> None:
    producer = connect(server, queue + "-w")
    for data in WITNESSES:
        producer.add(data)


@pytest.fixture(scope="module", autouse=True)
def module_witnesses(server: Target) -> str:
    """A queue filled when the module starts, checked by its last scenario."""
    queue = f"witness-{uuid.uuid4().hex[:8]}"
    with Client.open(server, queue + "-w") as producer:  # the queue check_witnesses reads
        for data in WITNESSES:
            producer.add(data)
    return queue


def check_witnesses(server: Target, connect: Callable[..., Client], queue: str) -> None:
    """The server still upgrades, confirms adds and delivers all it stored."""
    consumer = connect(server, queue + "-w")
    consumer.take()
    assert [m["data"] for m in consumer.messages(len(WITNESSES))] == WITNESSES
    assert connect(server, queue + "-after").add(b"ok")["seq"] == 1


# -- v1 requests that are refused with an error event -----------------------------------------

ADD = {"command": "add", "data": b"x"}
ADD_HEAD = b"\x82\xa7command\xa3add\xa4data"  # {"command": "add", "data": <what follows>}
NESTED_ARRAYS = b"\x91" * 100_000 + b"\xc0"
NESTED_MAPS = b"\x81\xa1k" * 50_000 + b"\xc0"

NOT_REQUESTS: dict[str, bytes] = {
    "empty frame": b"",
    "never-used byte 0xc1": b"\xc1",
    "truncated map": pack(ADD)[:-2],
    "truncated header": b"\xdf\x00\x00",
    "deeply nested maps": NESTED_MAPS,
    "deeply nested value in add": ADD_HEAD + NESTED_ARRAYS,
    "trailing bytes": pack(ADD) + pack(ADD),
    "top-level int": pack(42),
    "top-level string": pack("add"),
    "top-level nil": pack(None),
    "top-level binary": pack(b"add"),
    "top-level float": pack(1.5),
    # protocol.md §2.1: declared lengths beyond the message, extension types, bad UTF-8.
    "huge declared bin": ADD_HEAD + b"\xc6\x7f\xff\xff\xff",
    "huge declared map": b"\xdf\x7f\xff\xff\xff",
    "huge declared str": b"\x82\xa7command\xdb\x7f\xff\xff\xffadd",
    "extension type": pack({"command": "add", "data": b"x", "extra": msgpack.ExtType(5, b"e")}),
    "invalid utf-8 key": b"\x83\xa7command\xa3add\xa4data\xc4\x01x\xa3key\xa2\xff\xfe",
}
WRONG_TYPES: dict[str, Any] = {
    "no command": {"data": b"x"},
    "command is int": {"command": 5, "data": b"x"},
    "command is binary": {"command": b"add", "data": b"x"},
    "command is nil": {"command": None},
    "add without data": {"command": "add"},
    "add data is str": {"command": "add", "data": "text"},
    "add data is int": {"command": "add", "data": 1},
    "add key is int": {"command": "add", "data": b"x", "key": 7},
    "add key is binary": {"command": "add", "data": b"x", "key": b"k"},
    "take prefetch is str": {"command": "take", "prefetch": "ten"},
    "take prefetch is float": {"command": "take", "prefetch": 2.5},
    "take prefetch is zero": {"command": "take", "prefetch": 0},
    "take prefetch is negative": {"command": "take", "prefetch": -1},
    "ack without seq": {"command": "ack"},
    "ack seq is str": {"command": "ack", "seq": "1"},
    "req is float": {"command": "add", "data": b"x", "req": 1.5},
    "req is list": {"command": "add", "data": b"x", "req": [1]},
    "req is map": {"command": "add", "data": b"x", "req": {"a": 1}},
    "map with int keys": {1: "add"},
    "key is empty": {"command": "add", "data": b"x", "key": ""},
    "key over 1024 chars": {"command": "add", "data": b"x", "key": "k" * 1025},
    "prefetch over 100000": {"command": "take", "prefetch": 100_001},
    "req over 256 chars": {"command": "add", "data": b"x", "req": "r" * 257},
    "prefetch is bool": {"command": "take", "prefetch": True},
    "seq is bool": {"command": "ack", "seq": True},
}


def _assert_refused(client: Client, code: str, req: Any = None) -> dict[Any, Any]:
    error = client.expect("error", code=code)
    assert isinstance(error.get("message"), str), error
    if req is not None:
        assert error.get("req") == req, error
    expected = {"event", "code", "message"} | ({"req"} if "req" in error else set())
    assert set(error) == expected, error
    return error


@pytest.mark.parametrize("payload", list(NOT_REQUESTS.values()), ids=list(NOT_REQUESTS))
def test_undecodable_frame_is_bad_request(
    server: Target, connect: Callable[..., Client], queue: str, payload: bytes
) -> None:
    """A binary frame that is not one MessagePack map: ``bad_request``, connection usable.
    (The witnesses of ``test_nothing_stored_was_lost`` cover these.)"""
    client = connect(server, queue)
    client.send_bytes(payload)
    _assert_refused(client, "bad_request")
    assert client.add(b"after", req=1)["req"] == 1


def test_deeply_nested_array_is_refused(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """100,000 nested arrays (a top-level array, which protocol.md §8.1 reads as the
    original format): refused, by ``bad_request`` or by a 1007 close; the server survives."""
    store_witnesses(server, connect, queue)
    client = connect(server, queue)
    client.send_bytes(NESTED_ARRAYS)
    try:
        event = client.recv()
    except Closed as closed:
        assert closed.code == 1007, (closed.code, closed.reason)
    else:
        assert event.get("event") == "error" and event.get("code") == "bad_request", event
    check_witnesses(server, connect, queue)


@pytest.mark.parametrize("request_", list(WRONG_TYPES.values()), ids=list(WRONG_TYPES))
def test_wrong_types_are_bad_request(
    server: Target, connect: Callable[..., Client], queue: str, request_: dict[Any, Any]
) -> None:
    """A map that is not a valid request: ``bad_request``, connection usable."""
    client = connect(server, queue)
    client.send(request_)
    _assert_refused(client, "bad_request")
    assert client.add(b"after", req="r")["req"] == "r"


def test_second_take_is_bad_request(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """protocol.md §6.2: a second ``take`` on one connection is ``bad_request``; the first
    subscription goes on."""
    client = connect(server, queue)
    client.take(role="active")
    client.send({"command": "take", "req": 2})
    _assert_refused(client, "bad_request", req=2)
    client.send({"command": "add", "data": b"still subscribed"})
    events = sorted((client.recv(), client.recv()), key=lambda e: str(e["event"]))
    assert [e["event"] for e in events] == ["added", "message"], events
    assert events[1]["data"] == b"still subscribed"


def test_unknown_keys_and_nil_optionals(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """protocol.md §3.5: unknown keys are ignored, and NIL for ``key``, ``req`` or
    ``prefetch`` means the key is absent."""
    client = connect(server, queue)
    reply = client.add(b"x", extra=[1, {"a": None}], flag=True)
    assert reply["seq"] == 1
    client.send({"command": "add", "data": b"y", "key": None, "req": None})
    reply = client.expect("added", seq=2)
    assert "req" not in reply and "duplicate" not in reply
    client.send({"command": "take", "prefetch": None, "future": "field"})
    assert client.expect("subscribed")["role"] == "active"


def test_bad_request_echoes_a_valid_req(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """A refused request that carries a valid ``req`` gets it back in the error."""
    client = connect(server, queue)
    client.send({"command": "add", "req": 11})
    _assert_refused(client, "bad_request", req=11)
    client.send({"command": "add", "data": "not bin", "req": "s"})
    _assert_refused(client, "bad_request", req="s")


@pytest.mark.parametrize("command", ["purge", "ADD", "", "add ", "takes"])
def test_unknown_command(
    server: Target, connect: Callable[..., Client], queue: str, command: str
) -> None:
    """A string command that is not one of the four: ``unknown_command``, req echoed."""
    client = connect(server, queue)
    client.send({"command": command, "data": b"x", "req": 3})
    _assert_refused(client, "unknown_command", req=3)
    assert client.add(b"after")["seq"] == 1


def test_many_errors_then_normal_work(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """A burst of bad frames on one connection, each answered, then normal adds and takes."""
    client = connect(server, queue)
    bad = [*NOT_REQUESTS.values()]
    for payload in bad:
        client.send_bytes(payload)
    codes = [client.expect("error")["code"] for _ in bad]
    assert set(codes) == {"bad_request"}
    client.add(b"fine")
    client.take()
    assert client.expect("message")["data"] == b"fine"


# -- closes ------------------------------------------------------------------------------------


def test_text_frame_closes_1003(server: Target, connect: Callable[..., Client], queue: str) -> None:
    """A text frame closes the connection with 1003 and a reason; nothing before it."""
    store_witnesses(server, connect, queue)
    client = connect(server, queue)
    client.send_text('{"command": "add"}')
    closed = client.expect_close()
    assert closed.code == 1003 and closed.reason, (closed.code, closed.reason)
    check_witnesses(server, connect, queue)


def test_text_frame_from_original_client_closes_1003(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """The text-frame rule holds whatever the connection spoke before."""
    client = connect(server, queue)
    client.send({"command": {1: None}, "data": b""})
    client.send_text("hello")
    assert client.expect_close().code == 1003


def _exact_add(size: int) -> bytes:
    """An ``add`` request of exactly ``size`` bytes."""
    overhead = len(pack({"command": "add", "data": b""}))
    for data_len in range(size - overhead, 0, -1):
        frame = pack({"command": "add", "data": b"x" * data_len})
        if len(frame) == size:
            return frame
    raise ValueError(size)


def test_oversize_closes_1009(spawn: Spawner, connect: Callable[..., Client], queue: str) -> None:
    """With ``--max-message-bytes 1024`` a 1024-byte message is accepted and a 1025-byte
    one (single frame, or fragments adding up) closes with 1009 and a reason, in v1 and in
    the original format; stored messages and the server survive."""
    server = spawn("--max-message-bytes", "1024")
    store_witnesses(server, connect, queue)
    client = connect(server, queue)
    client.send_bytes(_exact_add(1024))
    assert client.expect("added")["seq"] == 1
    client.send_bytes(_exact_add(1025))
    closed = client.expect_close()
    assert closed.code == 1009 and closed.reason, (closed.code, closed.reason)

    fragmented = connect(server, queue)
    frame = _exact_add(1500)
    fragmented.send_bytes([frame[:500], frame[500:1000], frame[1000:]])
    assert fragmented.expect_close().code == 1009

    raw = RawWebSocket.connect(server, f"/queues/{queue}")
    raw.send_frame(OP_BINARY, b"\x00" * 600, fin=False)
    raw.send_frame(OP_CONT, b"\x00" * 600, fin=True)
    with pytest.raises(Exception) as info:
        raw.recv_message()
    assert getattr(info.value, "code", None) == 1009, info.value
    raw.abort()

    original = connect(server, queue)
    original.send({"command": {0: None}, "data": b"y" * 2000})
    assert original.expect_close().code == 1009
    check_witnesses(server, connect, queue)
    assert connect(server, queue).add(b"z" * 900)["seq"] == 2


def test_default_limit_is_one_mib(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Without ``--max-message-bytes`` the limit is 1 MiB: 1,048,576 bytes are accepted,
    1,048,577 close with 1009."""
    client = connect(server, queue)
    client.send_bytes(_exact_add(1024 * 1024))
    assert client.expect("added")["seq"] == 1
    client.send_bytes(_exact_add(1024 * 1024 + 1))
    assert client.expect_close().code == 1009


def test_stalled_upgrade_request_does_not_block_others(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """A client that opens TLS and sends half a request line waits alone."""
    sock = tls_socket(server)
    try:
        sock.sendall(b"GET /queues/x HT")
        with connect(server, queue) as client:
            client.add(b"meanwhile")
    finally:
        sock.close()


def _client_hello() -> bytes:
    """The first flight of a TLS handshake, made without a network."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("stage", ["tcp-only", "half-client-hello", "half-frame"])
def test_stalled_handshake_does_not_block_others(
    server: Target, connect: Callable[..., Client], queue: str, stage: str
) -> None:
    """Connections stuck at any stage of the handshake (TCP open and silent, half a TLS
    ClientHello, an upgraded socket with half a frame) do not hold up anyone else."""
    stalled: list[socket.socket | RawWebSocket] = []
    try:
        for _ in range(5):
            if stage == "half-frame":
                ws = RawWebSocket.connect(server, f"/queues/{queue}")
                ws.sock.sendall(b"\x82\xfe\x01")  # a masked binary frame header, cut short
                stalled.append(ws)
                continue
            sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
            if stage == "half-client-hello":
                hello = _client_hello()
                sock.sendall(hello[: len(hello) // 2])
            stalled.append(sock)
        store_witnesses(server, connect, queue)
        check_witnesses(server, connect, queue)
    finally:
        for item in stalled:
            item.close()


def _closes_soon(sock: socket.socket, timeout: float = TIMEOUT) -> bytes:
    """Read until the server closes the connection; what it sent before."""
    sock.settimeout(timeout)
    received = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return received
            received += chunk
    except (ConnectionError, ssl.SSLError):  # a reset, or TLS cut short: closed all the same
        return received
    except TimeoutError:
        raise AssertionError(f"server did not close within {timeout}s: {received[:80]!r}") from None


@pytest.mark.parametrize(
    "garbage",
    [b"\x00" * 64, b"hello there\r\n\r\n", b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"],
    ids=["zeros", "text", "bogus-record"],
)
def test_garbage_before_tls(
    server: Target, connect: Callable[..., Client], queue: str, garbage: bytes
) -> None:
    """Bytes that are not a TLS handshake: the server drops that connection, serves others."""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(garbage)
        _closes_soon(sock)
    store_witnesses(server, connect, queue)
    check_witnesses(server, connect, queue)


def test_plain_http_on_tls_port(server: Target, connect: Callable[..., Client], queue: str) -> None:
    """Plain HTTP to the TLS port is not served (no 200) and the connection ends."""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = _closes_soon(sock)
    assert b" 200 " not in answer.split(b"\r\n", 1)[0], answer[:80]
    store_witnesses(server, connect, queue)
    check_witnesses(server, connect, queue)


@pytest.mark.parametrize(
    "frame",
    [
        bytes([0x82, 0x03]) + b"abc",  # unmasked client frame
        bytes([0x83, 0x80]) + b"\x00\x00\x00\x00",  # reserved opcode 3
        bytes([0xC2, 0x80]) + b"\x00\x00\x00\x00",  # RSV1 without an extension
        bytes([0x80, 0x80]) + b"\x00\x00\x00\x00",  # continuation with nothing to continue
        bytes([0x09, 0x80]) + b"\x00\x00\x00\x00",  # fragmented ping
    ],
    ids=["unmasked", "reserved-opcode", "rsv1", "orphan-continuation", "fragmented-control"],
)
def test_invalid_frames_cost_only_their_connection(
    server: Target, connect: Callable[..., Client], queue: str, frame: bytes
) -> None:
    """A frame that breaks RFC 6455 ends that connection (a close frame or EOF)."""
    store_witnesses(server, connect, queue)
    ws = RawWebSocket.connect(server, f"/queues/{queue}")
    ws.sock.sendall(frame)
    with pytest.raises(Exception) as info:
        ws.recv_message()
    assert not isinstance(info.value, (TimeoutError, AssertionError)), info.value
    ws.abort()
    check_witnesses(server, connect, queue)


def test_max_connections_503(spawn: Spawner, connect: Callable[..., Client], queue: str) -> None:
    """With ``--max-connections 2`` a third connection is refused with HTTP 503; once one
    closes, a new one is accepted."""
    server = spawn("--max-connections", "2")
    first, second = connect(server, queue), connect(server, queue)
    first.add(b"1")
    second.add(b"2")
    with pytest.raises(ConnectionError, match=r"'HTTP/1\.[01] 503"):
        RawWebSocket.connect(server, f"/queues/{queue}")
    first.close()
    # The server notices the close on its own schedule: retry (bounded) until admitted.
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            third = connect(server, queue)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
    assert third.add(b"3")["seq"] == 3


# -- the handshake timeout (protocol.md §9) ----------------------------------------------------

#: protocol.md §9: an HTTP request not complete within 10 seconds is dropped.
HANDSHAKE_TIMEOUT = 10.0


@pytest.fixture(scope="module", autouse=True)
def early_stalls(server: Target) -> Iterator[list[tuple[str, float, socket.socket]]]:
    """Connections stalled at three stages, opened when the module starts so that the
    handshake timeout runs while the other scenarios do."""
    opened: list[tuple[str, float, socket.socket]] = []
    plain = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    opened.append(("tcp-only", time.monotonic(), plain))
    half = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    hello = _client_hello()
    half.sendall(hello[: len(hello) // 2])
    opened.append(("half-client-hello", time.monotonic(), half))
    tls = tls_socket(server)
    tls.sendall(b"GET /queues/stalled HTTP/1.1\r\nHost: x\r\n")
    opened.append(("half-http-request", time.monotonic(), tls))
    yield opened
    for _, _, sock in opened:
        sock.close()


def test_stalled_handshakes_are_dropped(
    early_stalls: list[tuple[str, float, socket.socket]],
) -> None:
    """protocol.md §9: a connection whose request is not complete within 10 seconds is
    dropped, whether it stalled before TLS, inside the TLS handshake or inside HTTP."""
    kept = []
    for stage, opened_at, sock in early_stalls:
        remaining = opened_at + HANDSHAKE_TIMEOUT + 3.0 - time.monotonic()
        try:
            _closes_soon(sock, max(remaining, 0.5))
        except AssertionError:
            kept.append(stage)
    assert not kept, f"still open {HANDSHAKE_TIMEOUT + 3}s after opening: {kept}"


def test_nothing_stored_was_lost(
    server: Target, connect: Callable[..., Client], module_witnesses: str
) -> None:
    """After every kind of bad input above, the messages stored before it are all there."""
    check_witnesses(server, connect, module_witnesses)
