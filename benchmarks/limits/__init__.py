"""The ceilings measured in the same run, to say how far each shell is from them: raw
``rocksdict`` batched synced writes, raw TLS loopback throughput, ``wsproto`` frame parsing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    value: float
    unit: str
    detail: str = ""
    compare: bool = True  # whether a shell's msg/s is compared against this one
