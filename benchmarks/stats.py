"""Percentiles, medians, spreads and rates: the only arithmetic the report relies on.

Every throughput and latency figure of a run is the *median* of its interleaved rounds,
shown with its *spread* (the lowest and highest round): on a shared machine one round can be
disturbed, and a best-of-N figure would hide how much the rounds disagreed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def per_message_us(cpu_seconds: float, messages: int) -> float | None:
    """CPU microseconds per message, or ``None`` when no message went through."""
    return cpu_seconds * 1e6 / messages if messages > 0 else None


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


@dataclass(frozen=True, slots=True)
class Spread:
    """The rounds of one figure: how many, their median, lowest and highest."""

    n: int
    median: float
    low: float
    high: float

    @property
    def relative(self) -> float:
        """``(high - low) / median``: 0.2 means the rounds spanned 20% of the median."""
        return (self.high - self.low) / self.median if self.median else 0.0


def spread(values: Sequence[float]) -> Spread:
    """The :class:`Spread` of ``values`` (raises ``ValueError`` on no values)."""
    if not values:
        raise ValueError("spread of no values")
    return Spread(len(values), median(values), min(values), max(values))


@dataclass(frozen=True, slots=True)
class Paired:
    """A/B over interleaved rounds: ``a / b`` within each round both ran in."""

    ratios: tuple[float, ...]
    spread: Spread
    a_higher: int  # rounds in which a's figure was above b's


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Paired | None:
    """Per-round ratios of ``a`` to ``b`` (both keyed by round number), over the rounds both
    have with a non-zero ``b``; ``None`` if there is none. Two systems that ran in the same
    round met the same disturbances, so the ratio within a round is steadier than the ratio
    of two medians."""
    common = sorted(r for r in a.keys() & b.keys() if b[r])
    if not common:
        return None
    ratios = tuple(a[r] / b[r] for r in common)
    return Paired(ratios, spread(ratios), sum(1 for q in ratios if q > 1))
