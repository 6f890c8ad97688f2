"""Percentiles and rates: the only arithmetic the report relies on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by the nearest-rank method.

    Nearest rank always returns an observed value, so ``percentile(v, 100) == max(v)`` and a
    p99 over fewer than 100 samples is the maximum. Raises ``ValueError`` on no values.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0-100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 when nothing was timed."""
    return count / seconds if seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """End-to-end latency figures in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def summarize_latencies(samples_ns: Sequence[int]) -> LatencySummary:
    """p50, p99 and max of latencies given in nanoseconds."""
    ms = [s / 1e6 for s in samples_ns]
    return LatencySummary(
        count=len(ms),
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms),
    )


def median(values: Sequence[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count)."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
