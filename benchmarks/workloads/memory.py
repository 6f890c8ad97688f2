"""Workload 5: the server's resident memory (its whole process tree), idle, at its peak while
workloads 1-3 run, and while a large backlog of unconsumed 100-byte messages fills: its peak,
with half the backlog and with all of it (flat means the second half costs next to
nothing: RocksDB keeps the messages on disk, not the process)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from ..fleet import Fleet
from ..procs import rss_bytes
from ..stats import rate
from .common import Target, watch

MIB = 1024 * 1024


class RssSampler:
    """Samples a process tree's RSS every ``every`` seconds while in use; keeps the peak and
    calls ``on_sample`` after each reading."""

    def __init__(self, pid: int, every: float = 0.2,
                 on_sample: Callable[[], None] | None = None) -> None:
        self.pid = pid
        self.every = every
        self.peak = 0
        self.on_sample = on_sample
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pid))
            if self.on_sample is not None:
                self.on_sample()
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss_bytes(self.pid))


@dataclass(frozen=True, slots=True)
class Backlog:
    messages: int
    rss_mib: float
    fill_per_s: float
    notes: tuple[str, ...]
    half_mib: float | None = None  # RSS when the producers had confirmed half of it
    peak_mib: float = 0.0  # highest RSS while it filled


async def backlog(target: Target, producers: int = 2) -> Backlog:
    """Fill a fresh queue with ``plan.w5_backlog`` messages (no consumer), then measure."""
    plan = target.plan
    queue = target.queue("backlog")
    await target.prepare(queue, consumer=False)
    each = plan.w5_backlog // producers
    notes: list[str] = []
    async with Fleet() as fleet:
        makers = [
            await fleet.spawn(f"producer{i}", target.spec(
                queue, "producer", producer_id=i, count=each, size=100,
                window=plan.window * 2, duration=plan.w5_seconds, drain=60))
            for i in range(producers)
        ]
        for p in makers:
            await p.wait_ready(60)
        for p in makers:
            p.send({"type": "go"})
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(target.progress, "backlog fill", makers, stop, 10))
        half: list[int] = []

        def at_half() -> None:
            if not half and sum(p.progress for p in makers) >= plan.w5_backlog // 2:
                half.append(rss_bytes(target.pid))

        sampler = RssSampler(target.pid, on_sample=at_half)
        try:
            async with sampler:
                outs = [await p.result(plan.w5_seconds + 120) for p in makers]
        finally:
            stop.set()
            await watcher
    total = sum(o["confirmed"] for o in outs)
    seconds = (max(o["last_ns"] for o in outs) - min(o["first_ns"] for o in outs)) / 1e9
    if total < each * producers:
        notes.append(f"time-bound: {total:,} of {each * producers:,} in {plan.w5_seconds:.0f} s")
    await asyncio.sleep(2)  # let the server settle (flushes, compactions)
    return Backlog(total, rss_bytes(target.pid) / MIB, rate(total, seconds), tuple(notes),
                   half[0] / MIB if half else None, sampler.peak / MIB)
