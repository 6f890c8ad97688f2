"""The bulk frame reader against ``wsproto``, the reference: the same bytes, split anywhere,
give the same frames and the same failures; the unmaskers agree; server frames are byte for
byte what ``wsproto`` writes."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from jackrabbit_core import frames
from jackrabbit_core.frames import (
    FrameError,
    FrameReader,
    TooBig,
    Unmasker,
    binary_header,
    close_frame,
    control_frame,
    unmask,
)
from jackrabbit_host.speedups import c_unmasker

C_UNMASK = c_unmasker()
UNMASKERS: list[tuple[str, Unmasker | None]] = [("python", None)]
if C_UNMASK is not None:
    UNMASKERS.append(("c", C_UNMASK))

Event = tuple[str, object]


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    mask: bytes = b"\x01\x02\x03\x04",
    rsv: int = 0,
    masked: bool = True,
    length_bytes: int | None = None,
) -> bytes:
    """A client frame as a peer might send it, right or wrong."""
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if masked else 0
    natural = 0 if size < 126 else 2 if size < 65536 else 8
    width = natural if length_bytes is None or length_bytes < natural else length_bytes
    if width == 0:
        head += bytes([bit | size])
    elif width == 2:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    return head + mask + unmask(payload, mask)


def reference(stream: bytes, cuts: list[int]) -> list[Event]:
    """What wsproto makes of ``stream`` fed in pieces: whole frames, then maybe a failure."""
    parser = FrameProtocol(client=False, extensions=[])
    events: list[Event] = []
    pending = bytearray()
    try:
        for piece in _pieces(stream, cuts):
            parser.receive_bytes(piece)
            for frame in parser.received_frames():
                if frame.opcode is Opcode.CLOSE:
                    code, reason = frame.payload  # type: ignore[misc]
                    events.append(("close", (int(code), reason)))
                    return events
                assert isinstance(frame.payload, bytes | bytearray | str)
                data = frame.payload
                pending += data.encode() if isinstance(data, str) else data
                if frame.frame_finished:
                    opcode = frame.opcode
                    name = (
                        "ping"
                        if opcode is Opcode.PING
                        else "pong"
                        if opcode is Opcode.PONG
                        else "data"
                    )
                    events.append((name, (bytes(pending), frame.message_finished)))
                    pending.clear()
    except ParseFailed as exc:
        events.append(("fail", int(exc.code)))
    return events


def ours(stream: bytes, cuts: list[int], unmasker: Unmasker | None) -> list[Event]:
    reader = FrameReader(1 << 40, unmasker)
    events: list[Event] = []
    try:
        for piece in _pieces(stream, cuts):
            reader.feed(piece)
            while (frame := reader.next_frame()) is not None:
                opcode, fin, payload = frame
                if opcode == frames.CLOSE:
                    events.append(("close", payload))
                    return events
                assert isinstance(payload, bytes)
                name = (
                    "ping" if opcode == frames.PING else "pong" if opcode == frames.PONG else "data"
                )
                events.append((name, (payload, fin)))
    except FrameError as exc:
        events.append(("fail", exc.code))
    return events


def _pieces(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


# A frame: mostly valid binary/continuation/control frames, now and then broken in one way, so
# that a stream reaches several frames deep before its first failure.
_payloads = st.binary(max_size=300) | st.builds(
    lambda n: bytes(range(256)) * n, st.integers(1, 300)
)
_frame = st.builds(
    client_frame,
    st.sampled_from([0x0, 0x0, 0x2, 0x2, 0x2, 0x2, 0x9, 0xA] * 3 + [0x8, 0x3, 0xB]),
    _payloads,
    fin=st.booleans(),
    mask=st.binary(min_size=4, max_size=4),
    rsv=st.sampled_from([0] * 20 + [1, 4]),
    masked=st.sampled_from([True] * 20 + [False]),
    length_bytes=st.sampled_from([None] * 12 + [0, 2, 8]),
)
_close = st.builds(
    lambda code, reason, mask: client_frame(
        0x8, (struct.pack("!H", code) + reason)[:125] if code >= 0 else b"", mask=mask
    ),
    st.sampled_from([-1, 1000, 1001, 1004, 1005, 1006, 1011, 1014, 1015, 2999, 3000, 4999, 5000]),
    st.sampled_from([b"", b"bye", "ça va".encode(), b"\xff\xfe"]),
    st.binary(min_size=4, max_size=4),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_frame, max_size=8).flatmap(
        lambda fs: st.tuples(
            st.just(fs), st.lists(st.integers(0, 10_000), max_size=6), _close | st.just(b"")
        )
    ),
    st.sampled_from(UNMASKERS),
)
def test_the_reader_agrees_with_wsproto(
    case: tuple[list[bytes], list[int], bytes], which: tuple[str, Unmasker | None]
) -> None:
    parts, cuts, closing = case
    stream = b"".join(parts) + closing
    assert ours(stream, cuts, which[1]) == reference(stream, cuts)


@settings(max_examples=200, deadline=None)
@given(_close, st.lists(st.integers(0, 200), max_size=3))
def test_close_frames_agree_with_wsproto(closing: bytes, cuts: list[int]) -> None:
    assert ours(closing, cuts, None) == reference(closing, cuts)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=5000), st.binary(min_size=4, max_size=4))
def test_unmaskers_agree(payload: bytes, mask: bytes) -> None:
    from wsproto.frame_protocol import XorMaskerSimple

    expected = XorMaskerSimple(mask).process(payload)
    assert unmask(payload, mask) == expected
    if C_UNMASK is not None:
        assert C_UNMASK(payload, mask) == expected


def test_the_c_unmasker_is_found_when_websockets_is_installed() -> None:
    pytest.importorskip("websockets")  # a test dependency, and the `speedups` extra
    assert C_UNMASK is not None


def test_an_oversize_frame_is_refused_from_its_header() -> None:
    reader = FrameReader(1000)
    head = client_frame(0x2, bytes(2000))[:8]  # the header and mask only
    reader.feed(head)
    with pytest.raises(TooBig) as refused:
        reader.next_frame()
    assert refused.value.size == 2000


def test_a_fragmented_message_is_sized_across_frames() -> None:
    reader = FrameReader(1000)
    reader.feed(client_frame(0x2, bytes(600), fin=False))
    assert reader.next_frame() == (0x2, False, bytes(600))
    reader.feed(client_frame(0x0, bytes(400), fin=False)[:8])
    assert reader.next_frame() is None  # 1000 so far: still allowed, body not here yet
    reader = FrameReader(1000)
    reader.feed(client_frame(0x2, bytes(600), fin=False) + client_frame(0x0, bytes(401))[:8])
    assert reader.next_frame() == (0x2, False, bytes(600))
    with pytest.raises(TooBig):
        reader.next_frame()


def test_an_idle_reader_holds_no_buffer() -> None:
    reader = FrameReader(1000)
    reader.feed(client_frame(0x2, b"x"))
    assert reader.next_frame() == (0x2, True, b"x")
    assert reader._buffer is None


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_binary_frames_match_wsproto(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert (binary_header(len(payload)) + payload) == FrameProtocol(
        client=False, extensions=[]
    ).send_data(payload)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: (control_frame(frames.PING), p.ping()),
        lambda p: (control_frame(frames.PONG, b"abc"), p.pong(b"abc")),
        lambda p: (close_frame(1000, ""), p.close(1000, "")),
        lambda p: (close_frame(1008, "timeout"), p.close(1008, "timeout")),
        lambda p: (close_frame(1009, "é" * 100), p.close(1009, "é" * 100)),
        lambda p: (control_frame(frames.CLOSE), p.close()),
    ],
)
def test_control_frames_match_wsproto(make: Callable[[FrameProtocol], tuple[bytes, bytes]]) -> None:
    ours_, theirs = make(FrameProtocol(client=False, extensions=[]))
    assert ours_ == bytes(theirs)
