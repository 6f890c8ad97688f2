"""The benchmark's arithmetic: percentiles, medians, spreads, paired rounds, rates,
payload stamps."""

from __future__ import annotations

import pytest

from benchmarks import payload
from benchmarks.stats import (
    median,
    paired,
    per_message_us,
    percentile,
    rate,
    spread,
    summarize_latencies,
)


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_p99_of_few_samples_is_the_max() -> None:
    assert percentile([5, 1, 9, 2], 99) == 9


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_median_even_and_odd() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5


def test_rate_guards_zero_time() -> None:
    assert rate(10, 2) == 5
    assert rate(10, 0) == 0


def test_cpu_per_message_in_microseconds() -> None:
    assert per_message_us(0.5, 10_000) == pytest.approx(50.0)
    assert per_message_us(0.5, 0) is None


def test_spread_is_median_and_extremes_not_the_best_run() -> None:
    sp = spread([22_147, 14_800, 13_800])
    assert (sp.n, sp.median, sp.low, sp.high) == (3, 14_800, 13_800, 22_147)
    assert sp.relative == pytest.approx((22_147 - 13_800) / 14_800)
    assert spread([7.0]).relative == 0
    with pytest.raises(ValueError):
        spread([])


def test_paired_ratios_use_common_rounds_only() -> None:
    a = {0: 110.0, 1: 90.0, 2: 120.0, 3: 50.0}
    b = {0: 100.0, 1: 100.0, 2: 100.0}  # round 3 failed for b
    got = paired(a, b)
    assert got is not None
    assert got.ratios == pytest.approx((1.1, 0.9, 1.2))
    assert got.spread.median == pytest.approx(1.1)
    assert got.a_higher == 2
    assert paired(a, {}) is None
    assert paired({0: 1.0}, {0: 0.0}) is None  # no ratio to a zero


def test_latency_summary_in_ms() -> None:
    summary = summarize_latencies([1_000_000 * i for i in range(1, 201)])
    assert summary.count == 200
    assert summary.p50_ms == 100
    assert summary.p99_ms == 198
    assert summary.max_ms == 200


def test_payload_roundtrip_and_size() -> None:
    body = payload.make(123456789, 3, 42, 100)
    assert len(body) == 100
    stamp = payload.read(body)
    assert stamp == payload.Stamp(123456789, 3, 42)
    assert payload.key(stamp) == (3 << 40) | 42
    assert len(payload.make(1, 0, 0, 5)) == payload.HEADER_SIZE
