"""How big each step of a run is: the full run and the ``--quick`` smoke run."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Plan:
    quick: bool
    window: int = 1000  # most unconfirmed adds a producer keeps in flight
    prefetch: int = 1000  # most unacknowledged deliveries per consumer (jackrabbit's default)
    ack_every: int = 100  # a consumer acks cumulatively after this many (or when idle 2 ms)
    # Throughput and latency runs go round the systems in turn, ``*_rounds`` times (the
    # order rotates each round), and each system's best run is reported: on a shared
    # machine the best run is the least disturbed one, and interleaving spreads any
    # disturbance over all systems instead of landing on whichever ran at the time.
    w1_rounds: int = 3
    w2_rounds: int = 2
    w3_rounds: int = 2
    w1_count: int = 100_000
    w1_seconds: float = 20
    w2_producers: int = 4
    # payload size -> messages per producer
    w2_counts: dict[int, int] = field(
        default_factory=lambda: {100: 25_000, 1024: 12_500, 65536: 750})
    w2_seconds: float = 20
    w3_rate: int = 1000
    w3_seconds: float = 12
    w3_warmup: int = 50  # first deliveries left out of the percentiles
    w4_rate: int = 1000
    w4_seconds: float = 8
    w4_kill_at: float = 4
    w4_runs: int = 3
    w4_redelivery_s: float = 1.0  # NATS ack_wait / Redis XAUTOCLAIM idle time
    w5_backlog: int = 1_000_000
    w5_seconds: float = 240
    profile_count: int = 100_000
    limit_seconds: float = 2.0
    idle_end: float = 10.0  # a consumer told the total stops after this much silence

    @property
    def name(self) -> str:
        return "quick" if self.quick else "full"


FULL = Plan(quick=False)

QUICK = Plan(
    quick=True,
    w1_rounds=1,
    w2_rounds=1,
    w3_rounds=1,
    w1_count=5_000,
    w1_seconds=5,
    w2_counts={100: 1_500, 1024: 1_000, 65536: 100},
    w2_seconds=5,
    w3_seconds=2,
    w4_seconds=3,
    w4_kill_at=1.5,
    w4_runs=1,
    w5_backlog=20_000,
    w5_seconds=20,
    profile_count=4_000,
    limit_seconds=0.3,
    idle_end=1.5,
)
