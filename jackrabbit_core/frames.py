"""WebSocket frames after the upgrade, in bulk: client frames read and unmasked, server frames
written (RFC 6455 §5; protocol §2).

This is the hot path of every request a client sends, so it is written for it: a frame is
taken from the buffer only once it is whole, and unmasked once, in one call, by the fastest
unmasker available (the host may pass in a C one; ``unmask`` below is the pure-Python one).
A frame's length is known from its header, so a frame larger than a message may be is refused
before any of its body is read or kept.

``wsproto`` stays the reference: the tests run both parsers over the same bytes, split at
random, and require the same frames and the same failures (``tests/core/test_frames.py``).
The same rules apply: frames from a client are masked, no reserved bit is set (no extension is
ever negotiated), a control frame is final and at most 125 bytes, lengths use the fewest bytes,
a continuation continues a message and a new message does not interrupt one, and a close frame
carries no code, or a code a peer may send with a UTF-8 reason.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from .codes import CLOSE_INVALID_PAYLOAD, CLOSE_PROTOCOL_ERROR

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "FrameError",
    "FrameReader",
    "TooBig",
    "Unmasker",
    "binary_header",
    "close_frame",
    "control_frame",
    "unmask",
]

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
_OPCODES: Final = frozenset((CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))

#: Close codes a peer may send (RFC 6455 §7.4): the defined ones that are not local-only,
#: and the ranges for libraries and applications. Others fail the connection with 1002.
_PEER_CLOSE_CODES: Final = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013)
)
#: The code reported for a close frame without one (RFC 6455 §7.1.5).
NO_STATUS: Final = 1005

_HEADER_16: Final = struct.Struct("!BBH")
_HEADER_64: Final = struct.Struct("!BBQ")
_LENGTH_16: Final = struct.Struct("!H")
_LENGTH_64: Final = struct.Struct("!Q")

#: ``unmask(payload, mask)``: the payload (any bytes-like object) XORed with the 4-byte mask
#: repeated, as new ``bytes``.
Unmasker = Callable[[bytes | memoryview, bytes], bytes]


def unmask(payload: bytes | memoryview, mask: bytes) -> bytes:
    """The payload XORed with the 4-byte mask repeated (RFC 6455 §5.3), in pure Python: one
    XOR of two big integers, so the loop over the bytes runs in C."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * ((size + 3) >> 2))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


class FrameError(Exception):
    """The peer broke RFC 6455: close with ``code`` (1002, or 1007 for a bad close reason)."""

    def __init__(self, reason: str, code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.code = code


class TooBig(Exception):
    """A data frame would take its message past ``max_message_bytes`` (protocol §2.2): close
    with 1009. Known from the frame's header, so its body is never read."""

    def __init__(self, size: int) -> None:
        super().__init__(f"a message of {size} bytes")
        self.size = size


class FrameReader:
    """Client frames in, whole and unmasked (see the module docstring).

    ``feed`` the bytes as they come, then call ``next_frame`` until it returns None. A frame
    is ``(opcode, fin, payload)``; a close frame's payload is its code and reason,
    ``(code, reason)`` (1005 and ``""`` when it had none). ``FrameError`` means the stream is
    broken: close with its code and read no more; so does ``TooBig``.
    """

    __slots__ = ("_buffer", "_message", "_offset", "_unmask", "max_message_bytes")

    def __init__(self, max_message_bytes: int, unmasker: Unmasker | None = None) -> None:
        self.max_message_bytes = max_message_bytes
        self._unmask = unmask if unmasker is None else unmasker
        #: What the peer sent that is not read yet, from ``_offset`` on: the bytes as fed while
        #: they hold whole frames (no copy), a ``bytearray`` once a frame spans two feeds.
        self._buffer: bytes | bytearray | None = None
        self._offset = 0
        #: Bytes of the message whose continuation frames are awaited; None between messages.
        self._message: int | None = None

    def feed(self, data: bytes) -> None:
        """Bytes from the peer, in order."""
        buffer = self._buffer
        if buffer is None:
            self._buffer, self._offset = data, 0
        elif isinstance(buffer, bytearray) and not self._offset:
            buffer += data
        else:
            rest = bytearray(buffer[self._offset :])
            rest += data
            self._buffer, self._offset = rest, 0

    def next_frame(self) -> tuple[int, bool, bytes | tuple[int, str]] | None:
        """The next whole frame, or None until more bytes come."""
        buffer = self._buffer
        if buffer is None:
            return None
        at = self._offset
        size = len(buffer) - at
        if size < 2:
            return None
        first, second = buffer[at], buffer[at + 1]
        fin = bool(first & 0x80)
        opcode = first & 0x0F
        if opcode not in _OPCODES:
            raise FrameError(f"Invalid opcode {opcode:#x}")
        control = opcode >= CLOSE
        if control and not fin:
            raise FrameError("Invalid attempt to fragment control frame")
        length = second & 0x7F
        if control and length > 125:
            raise FrameError("Control frame with payload len > 125")
        start = 2
        if length == 126:
            if size < 4:
                return None
            (length,) = _LENGTH_16.unpack_from(buffer, at + 2)
            if length <= 125:
                raise FrameError("Payload length used 2 bytes when 1 would have sufficed")
            start = 4
        elif length == 127:
            if size < 10:
                return None
            (length,) = _LENGTH_64.unpack_from(buffer, at + 2)
            if length <= 0xFFFF:
                raise FrameError("Payload length used 8 bytes when 2 would have sufficed")
            if length >> 63:
                raise FrameError("8-byte payload length with non-zero MSB")
            start = 10
        if first & 0x70:
            raise FrameError("Reserved bit set unexpectedly")
        if not second & 0x80:
            raise FrameError("server received unexpected unmasked frame")
        if not control:
            self._check_message(opcode, length)
        if size < start + 4 + length:
            return None
        start += at
        end = start + 4 + length
        mask = bytes(buffer[start : start + 4])
        with memoryview(buffer) as view:  # unmasked straight from the buffer: one copy
            payload = self._unmask(view[start + 4 : end], mask)
        if end == len(buffer):
            self._buffer = None
        else:
            self._offset = end
        if opcode == CLOSE:
            return opcode, fin, _close_payload(payload)
        if not control:
            self._message = None if fin else (self._message or 0) + length
        return opcode, fin, payload

    def _check_message(self, opcode: int, length: int) -> None:
        """Continuation rules, and the message's size known from the frame's header."""
        so_far = self._message
        if so_far is None:
            if opcode == CONTINUATION:
                raise FrameError("unexpected CONTINUATION")
            so_far = 0
        elif opcode != CONTINUATION:
            raise FrameError(f"expected CONTINUATION, got {opcode:#x}")
        if so_far + length > self.max_message_bytes:
            self._buffer = None
            raise TooBig(so_far + length)


def _close_payload(payload: bytes) -> tuple[int, str]:
    """A close frame's code and reason (RFC 6455 §5.5.1, §7.4)."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise FrameError("CLOSE with 1 byte payload")
    (code,) = _LENGTH_16.unpack_from(payload)
    if code not in _PEER_CLOSE_CODES and not 3000 <= code <= 4999:
        raise FrameError("CLOSE with invalid code")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"Error decoding CLOSE reason: {exc}", CLOSE_INVALID_PAYLOAD) from None
    return code, reason


# -- server frames (never masked, never fragmented) -----------------------------------------


def binary_header(size: int) -> bytes:
    """The header of one final binary frame of ``size`` bytes: what every server message is
    (two to ten fixed bytes; the payload follows it unchanged, never copied onto it)."""
    if size < 126:
        return bytes((0x82, size))
    if size < 0x10000:
        return _HEADER_16.pack(0x82, 126, size)
    return _HEADER_64.pack(0x82, 127, size)


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A ping, pong or close frame (its payload at most 125 bytes)."""
    return bytes((0x80 | opcode, len(payload))) + payload


def close_frame(code: int, reason: str) -> bytes:
    """A close frame with ``code`` and ``reason``, the reason cut to fit 125 bytes at a
    character boundary (RFC 6455 §5.5)."""
    encoded = reason.encode("utf-8")[:123]
    while encoded:
        try:
            encoded.decode("utf-8")
            break
        except UnicodeDecodeError:
            encoded = encoded[:-1]
    return control_frame(CLOSE, _LENGTH_16.pack(code) + encoded)
