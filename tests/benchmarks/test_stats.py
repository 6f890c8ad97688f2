"""The benchmark's arithmetic: percentiles, medians, rates, payload stamps."""

from __future__ import annotations

import pytest

from benchmarks import payload
from benchmarks.stats import median, percentile, rate, summarize_latencies


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
