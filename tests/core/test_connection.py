"""One ``Connection`` on its own: the request head, the upgrade checks, fragmented messages.

No server and no sockets: bytes in, events and bytes out, time passed in (protocol §1.2, §1.3,
§2.2).
"""

from __future__ import annotations

import base64
import gc
import struct
import tracemalloc
from collections.abc import Callable

import pytest
from wsproto.utilities import generate_accept_token

from jackrabbit_core.connection import (
    MAX_HEAD_BYTES,
    Connection,
    ConnectionEvent,
    Disconnected,
    HttpRequest,
    MessageReceived,
    Phase,
    UpgradeRequest,
)
from jackrabbit_core.exceptions import InvalidState

KEY = base64.b64encode(bytes(range(16)))
MIB = 1024 * 1024


def upgrade_head(extra: bytes = b"", *, version: bytes = b"1.1", key: bytes = KEY) -> bytes:
    return (
        b"GET /queues/q HTTP/" + version + b"\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A client frame, masked with the all-zero key (RFC 6455 §5.3 wants it masked)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 0x10000:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    return head + b"\0\0\0\0" + payload


BINARY, CONT, TEXT, CLOSE, PING = 2, 0, 1, 8, 9


def fresh(max_message_bytes: int = MIB) -> Connection:
    return Connection(1, 0.0, max_message_bytes=max_message_bytes)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def refused(data: bytes) -> tuple[int, bytes]:
    """Feed a request that must be refused; its status and the whole response."""
    conn = fresh()
    events = conn.receive_data(data, 0.0)
    assert [type(e) for e in events] == [Disconnected], events
    response = conn.data_to_send()
    assert conn.transport_done
    return status_of(response), response


def upgraded(max_message_bytes: int = MIB, now: float = 0.0) -> Connection:
    conn = fresh(max_message_bytes)
    (request,) = conn.receive_data(upgrade_head(), now)
    assert isinstance(request, UpgradeRequest)
    assert conn.accept(request) == []
    assert conn.data_to_send().startswith(b"HTTP/1.1 101 ")
    return conn


def close_frame_of(data: bytes) -> tuple[int, str]:
    """The code and reason of the server's close frame at the end of ``data``."""
    start = data.rfind(b"\x88")
    assert start >= 0, data
    size = data[start + 1]
    payload = data[start + 2 : start + 2 + size]
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


# -- HTTP: HEAD, the head cap ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_head_is_answered_with_the_headers_of_get_and_no_body(method: str) -> None:
    conn = fresh()
    (request,) = conn.receive_data(f"{method} /healthz HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 0)
    assert request == HttpRequest(method, "/healthz", ((b"host", b"x"),))
    conn.respond(200, b"ok\n")
    response = conn.data_to_send()
    head, _, body = response.partition(b"\r\n\r\n")
    assert response.count(b"HTTP/1.1") == 1, response
    assert b"content-length: 3" in head.lower()
    assert body == (b"" if method == "HEAD" else b"ok\n")
    assert conn.transport_done


def _head_of(size: int, line_end: bytes = b"\r\n") -> bytes:
    """A GET request head of exactly ``size`` bytes (padded with one long header)."""
    start = b"GET /healthz HTTP/1.1" + line_end + b"Host: x" + line_end + b"X-Pad: "
    tail = line_end + line_end
    return start + b"a" * (size - len(start) - len(tail)) + tail


@pytest.mark.parametrize("line_end", [b"\r\n", b"\n"], ids=["crlf", "bare-lf"])
@pytest.mark.parametrize("chunk", [None, 1, 1000], ids=["whole", "bytewise", "chunks"])
def test_the_head_cap_is_exact(line_end: bytes, chunk: int | None) -> None:
    """protocol §1.2: a head of 16,384 bytes (request line through the blank line) is read,
    one byte more is 431, however the bytes are cut."""
    for size, expected in ((MAX_HEAD_BYTES, None), (MAX_HEAD_BYTES + 1, 431)):
        data = _head_of(size, line_end)
        assert len(data) == size
        conn = fresh()
        events: list[ConnectionEvent] = []
        step = chunk or len(data)
        for i in range(0, len(data), step):
            events += conn.receive_data(data[i : i + step], 0.0)
        if expected is None:
            assert [(e.method, e.target) for e in events if isinstance(e, HttpRequest)] == [
                ("GET", "/healthz")
            ]
            assert len(events) == 1
        else:
            assert [type(e) for e in events] == [Disconnected]
            assert status_of(conn.data_to_send()) == 431


def test_a_head_without_end_is_refused_as_soon_as_it_passes_the_cap() -> None:
    conn = fresh()
    start = b"GET /healthz HTTP/1.1\r\nX: "
    assert conn.receive_data(start + b"a" * (MAX_HEAD_BYTES - len(start) - 1), 0.0) == []
    assert conn.receive_data(b"a", 0.0) == []  # 16,384 bytes held, no end yet
    events = conn.receive_data(b"a", 0.0)
    assert [type(e) for e in events] == [Disconnected]
    assert status_of(conn.data_to_send()) == 431


def test_a_request_body_is_never_read() -> None:
    """A plain request's body is ignored: answered and closed, nothing parsed from it."""
    conn = fresh()
    body = frame(BINARY, b"x")
    data = b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    assert conn.receive_data(data, 0.0) == [
        HttpRequest("POST", "/healthz", ((b"host", b"x"), (b"content-length", b"%d" % len(body))))
    ]
    conn.respond(405, b"no\n")
    assert conn.receive_data(b"more", 0.0) == []
    assert conn.transport_done


def test_bytes_after_a_plain_request_waiting_for_its_answer_are_never_read() -> None:
    """A ``/metrics`` scrape waits for its body across turns; what its peer sends meanwhile
    is ignored, and the answer still goes out."""
    conn = fresh()
    conn.receive_data(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    assert conn.receive_data(b"GET /other HTTP/1.1\r\n\r\n", 0.0) == []
    conn.respond(200, b"ok\n")
    assert status_of(conn.data_to_send()) == 200


def test_frames_sent_while_an_upgrade_waits_are_read_once_it_is_accepted() -> None:
    """An upgrade may wait for where its queue is served (protocol §10.2): early frames are
    held for after it."""
    conn = fresh()
    (request,) = conn.receive_data(upgrade_head(), 0.0)
    assert isinstance(request, UpgradeRequest)
    assert conn.receive_data(frame(BINARY, b"early"), 0.0) == []
    assert conn.accept(request) == [MessageReceived(b"early")]


def test_too_much_data_while_an_upgrade_waits_is_refused_400() -> None:
    conn = fresh()
    conn.receive_data(upgrade_head(), 0.0)
    assert conn.receive_data(b"x" * MAX_HEAD_BYTES, 0.0) == []
    assert [type(e) for e in conn.receive_data(b"x", 0.0)] == [Disconnected]
    assert status_of(conn.data_to_send()) == 400
    assert conn.transport_done


def test_detach_hands_over_the_bytes_after_the_request_and_ends_the_connection() -> None:
    """A relayed connection (protocol §10.3): the core gives the transport up, silently."""
    conn = fresh()
    conn.receive_data(upgrade_head() + b"abc", 0.0)
    conn.receive_data(b"def", 0.0)
    assert conn.detach() == b"abcdef"
    assert conn.phase is Phase.CLOSED
    assert conn.data_to_send() == b""
    assert conn.receive_eof() == []  # nothing more is reported


def test_detach_without_a_waiting_upgrade_is_a_caller_bug() -> None:
    conn = fresh()
    conn.receive_data(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    with pytest.raises(InvalidState):
        conn.detach()


# -- the upgrade request (protocol §1.3) ------------------------------------------------------


def test_a_valid_upgrade_is_accepted_with_the_rfc_6455_accept_token() -> None:
    conn = fresh()
    (request,) = conn.receive_data(upgrade_head(b"Sec-WebSocket-Protocol: a, b\r\n"), 0.0)
    assert isinstance(request, UpgradeRequest) and request.subprotocols == ("a", "b")
    conn.accept(request, "b")
    response = conn.data_to_send()
    assert status_of(response) == 101
    assert b"sec-websocket-accept: " + generate_accept_token(KEY) + b"\r\n" in response
    assert b"sec-websocket-protocol: b\r\n" in response
    assert conn.phase is Phase.OPEN


def test_frames_sent_with_the_upgrade_are_read_once_it_is_accepted() -> None:
    conn = fresh()
    (request,) = conn.receive_data(upgrade_head(b"Content-Length: 0\r\n") + frame(2, b"hi"), 0)
    assert isinstance(request, UpgradeRequest)
    assert conn.accept(request) == [MessageReceived(b"hi")]


SMUGGLED = frame(BINARY, b"smuggled")


@pytest.mark.parametrize(
    ("request_bytes", "status", "why"),
    [
        (
            upgrade_head(b"Content-Length: %d\r\n" % len(SMUGGLED)) + SMUGGLED,
            400,
            b"Content-Length",
        ),
        (
            upgrade_head(b"Transfer-Encoding: chunked\r\n")
            + b"%x\r\n" % len(SMUGGLED)
            + SMUGGLED
            + b"\r\n0\r\n\r\n",
            400,
            b"Transfer-Encoding",
        ),
        (upgrade_head(version=b"1.0"), 400, b"HTTP/1.1"),
        (upgrade_head().replace(b"GET", b"POST", 1), 400, b"GET"),
        (upgrade_head().replace(b"Connection: Upgrade", b"Connection: close"), 400, b"Upgrade"),
        (upgrade_head().replace(b"Version: 13", b"Version: 8"), 426, b"13"),
        (upgrade_head().replace(b"Sec-WebSocket-Version: 13\r\n", b""), 400, b"13"),
        (upgrade_head(key=b"not-a-key"), 400, b"Key"),
        (upgrade_head(key=base64.b64encode(bytes(15))), 400, b"Key"),
        (upgrade_head(key=base64.b64encode(bytes(17))), 400, b"Key"),
        (upgrade_head(key=KEY[:-2] + b"!="), 400, b"Key"),
        (upgrade_head(b"Sec-WebSocket-Key: " + KEY + b"\r\n"), 400, b"Key"),
        (upgrade_head().replace(b"Host: x\r\n", b""), 400, b"Host"),
    ],
    ids=[
        "content-length-body", "transfer-encoding", "http-1.0", "post", "no-connection-upgrade",
        "version-8", "no-version", "key-not-base64", "key-15-bytes", "key-17-bytes",
        "key-bad-char", "two-keys", "no-host",
    ],
)  # fmt: skip
def test_a_malformed_upgrade_is_refused_before_the_server_sees_it(
    request_bytes: bytes, status: int, why: bytes
) -> None:
    """RFC 6455 §4.1/§4.4, protocol §1.3: 400 (426 for another version, with
    ``Sec-WebSocket-Version: 13``), a reason in the body, and nothing after the head read."""
    got, response = refused(request_bytes)
    assert got == status, response
    head, _, body = response.partition(b"\r\n\r\n")
    assert why in body, body
    if why == b"13":
        assert b"\r\nsec-websocket-version: 13" in head
    assert b"smuggled" not in response


# -- fragmented messages (protocol §2.2) ----------------------------------------------------


def test_a_fragmented_message_is_reassembled_and_empty_fragments_count_as_frames() -> None:
    conn = upgraded()
    data = frame(BINARY, b"a", fin=False)
    data += frame(CONT, b"", fin=False) * 1000
    data += frame(PING, b"p")  # control frames between fragments are not counted
    data += frame(CONT, b"bc", fin=False) * 22
    data += frame(CONT, b"z", fin=True)  # frame 1024
    events = conn.receive_data(data, 0.0)
    assert events == [MessageReceived(b"a" + b"bc" * 22 + b"z")]
    assert conn.data_to_send() == b"\x8a\x01p"  # the pong
    assert conn.receive_data(frame(BINARY, b"next"), 0.0) == [MessageReceived(b"next")]


@pytest.mark.parametrize(
    ("max_message_bytes", "frames"), [(MIB, 1024), (8 * MIB, 2048)], ids=["1MiB", "8MiB"]
)
def test_a_message_in_too_many_frames_closes_1009(max_message_bytes: int, frames: int) -> None:
    """At most 1024 frames per message, or one per 4 KiB of the cap; empty ones count."""
    conn = upgraded(max_message_bytes)
    assert conn.max_frames == frames
    data = frame(BINARY, b"", fin=False) + frame(CONT, b"", fin=False) * (frames - 1)
    assert conn.receive_data(data, 0.0) == []
    events = conn.receive_data(frame(CONT, b"", fin=False), 0.0)
    assert events == [Disconnected(1009, f"too_large: message in over {frames} frames")]
    assert close_frame_of(conn.data_to_send()) == (1009, events[0].reason)  # type: ignore[union-attr]
    assert conn.receive_data(frame(CONT, b"x", fin=True) * 10, 0.0) == []


def test_one_frame_arriving_in_pieces_is_one_frame() -> None:
    """``wsproto`` hands a frame over as its bytes arrive; only frame ends are counted."""
    conn = upgraded()
    data = frame(BINARY, b"x" * 3000)
    events: list[ConnectionEvent] = []
    for i in range(len(data)):
        events += conn.receive_data(data[i : i + 1], 0.0)
    assert events == [MessageReceived(b"x" * 3000)]


def test_the_size_cap_counts_all_fragments() -> None:
    conn = upgraded(max_message_bytes=1000)
    data = frame(BINARY, b"x" * 600, fin=False) + frame(CONT, b"x" * 401, fin=True)
    events = conn.receive_data(data, 0.0)
    assert events == [Disconnected(1009, "too_large: message over 1000 bytes")]


@pytest.mark.parametrize(
    ("max_message_bytes", "timeout"), [(MIB, 16.0), (64 * 1024, 10.0), (8 * MIB, 128.0)]
)
def test_an_unfinished_message_closes_1008_after_its_time(
    max_message_bytes: int, timeout: float
) -> None:
    """A message must be finished within 10 s of its first frame, or the time its cap takes
    at 64 KiB/s if that is longer (16 s at 1 MiB); any traffic in between does not help."""
    conn = upgraded(max_message_bytes, now=100.0)
    assert conn.message_timeout == timeout
    assert conn.check_timeouts(200.0) == []  # nothing unfinished
    conn.receive_data(frame(BINARY, b"a", fin=False), 100.0)
    conn.receive_data(frame(CONT, b"b", fin=False) + frame(PING), 100.0 + timeout - 1)
    conn.data_to_send()
    assert conn.check_timeouts(100.0 + timeout - 0.01) == []
    events = conn.check_timeouts(100.0 + timeout)
    assert events == [Disconnected(1008, "message not finished in time")]
    assert close_frame_of(conn.data_to_send()) == (1008, "message not finished in time")
    assert conn.phase is Phase.CLOSING
    assert conn.receive_data(frame(CLOSE, struct.pack("!H", 1000)), 200.0) == []
    assert conn.transport_done


def test_a_finished_message_leaves_no_deadline() -> None:
    conn = upgraded(now=0.0)
    conn.receive_data(frame(BINARY, b"a", fin=False) + frame(CONT, b"b"), 0.0)
    assert conn.check_timeouts(1000.0) == []


def test_fragments_are_held_in_one_buffer_not_one_object_each() -> None:
    """1,000 one-byte fragments cost about their bytes (the old list of ``bytes`` objects cost
    about 50 times that)."""
    conns = [upgraded() for _ in range(20)]
    data = frame(BINARY, b"x", fin=False) + frame(CONT, b"x", fin=False) * 999

    def feed() -> None:
        for conn in conns:
            assert conn.receive_data(data, 0.0) == []

    held = _traced(feed)
    assert held < 20 * 1000 * 4, f"{held / 20:.0f} bytes held for 1,000 bytes of fragments"


# -- the close handshake, pings, broken frames ------------------------------------------------


def test_ping_is_answered_and_the_peers_close_is_echoed() -> None:
    conn = upgraded()
    assert conn.receive_data(frame(PING, b"hb"), 0.0) == []
    assert conn.data_to_send() == b"\x8a\x02hb"
    events = conn.receive_data(frame(CLOSE, struct.pack("!H", 1000) + b"bye"), 0.0)
    assert events == [Disconnected(1000, "bye")]
    assert close_frame_of(conn.data_to_send()) == (1000, "bye")
    assert conn.transport_done


def test_a_text_frame_closes_1003() -> None:
    conn = upgraded()
    events = conn.receive_data(frame(TEXT, b"hi"), 0.0)
    assert events == [Disconnected(1003, "text frames are not accepted")]


@pytest.mark.parametrize(
    "data",
    [bytes([0x82, 0x01]) + b"x", frame(CONT, b"x"), frame(PING, b"", fin=False)],
    ids=["unmasked", "orphan-continuation", "fragmented-ping"],
)
def test_a_broken_frame_closes_1002_and_drops_the_transport(data: bytes) -> None:
    conn = upgraded()
    events = conn.receive_data(data, 0.0)
    assert events == [Disconnected(1002, "protocol error")]
    assert close_frame_of(conn.data_to_send())[0] == 1002
    assert conn.transport_done


# -- what a connection holds ----------------------------------------------------------------


def _traced(build: Callable[[], object]) -> int:
    """Bytes allocated by ``build`` and still held afterwards (``tracemalloc``)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del kept
    return held


@pytest.mark.parametrize(("stage", "bound"), [("fresh", 1000), ("upgraded", 3000)])
def test_an_idle_connection_holds_little(stage: str, bound: int) -> None:
    """Issue 9 item 2, the core's share: no ``h11`` object kept, only ``wsproto``'s frame
    parser once upgraded (measured about 200 and 1,050 bytes; the bounds are generous)."""
    count = 1000

    def build() -> list[Connection]:
        conns = [fresh() if stage == "fresh" else upgraded() for _ in range(count)]
        for conn in conns:
            conn.data_to_send()
        return conns

    per_connection = _traced(build) / count
    assert per_connection < bound, f"{per_connection:.0f} bytes per {stage} connection"
