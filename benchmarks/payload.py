"""The benchmark's message body: a send timestamp, who sent it, and padding to size.

The timestamp is ``time.monotonic_ns()``, which on Linux is one clock for every process on
the machine, so a consumer in another process can subtract it to get end-to-end latency.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

HEADER: Final = struct.Struct("<QIQ")
HEADER_SIZE: Final = HEADER.size  # 20 bytes


class Stamp(NamedTuple):
    """What a consumer reads back from a payload."""

    sent_ns: int
    producer: int
    number: int


def make(sent_ns: int, producer: int, number: int, size: int) -> bytes:
    """A payload of exactly ``max(size, HEADER_SIZE)`` bytes."""
    head = HEADER.pack(sent_ns, producer, number)
    return head + b"x" * (size - HEADER_SIZE) if size > HEADER_SIZE else head


def read(payload: bytes) -> Stamp:
    """The header of a payload made by :func:`make` (raises ``struct.error`` if too short)."""
    return Stamp(*HEADER.unpack_from(payload))


def key(stamp: Stamp) -> int:
    """A compact unique id for a message: the producer above bit 40, its number below."""
    return (stamp.producer << 40) | stamp.number
