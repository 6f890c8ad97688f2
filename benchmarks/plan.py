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
    # order rotates each round), and each figure is the median of a system's rounds, shown
    # with their spread: interleaving spreads any disturbance of a shared machine over all
    # systems instead of landing on whichever ran at the time. More, shorter rounds than a
    # best-of-N run had, for about the same total time.
    w1_rounds: int = 5
    w2_rounds: int = 3
    w3_rounds: int = 3
    w1_count: int = 50_000
    w1_seconds: float = 20
    w2_producers: int = 4
    # payload size -> messages per producer
    w2_counts: dict[int, int] = field(
        default_factory=lambda: {100: 12_500, 1024: 6_000, 65536: 400})
    w2_seconds: float = 20
    w3_rate: int = 1000
    w3_seconds: float = 8
    w3_warmup: int = 50  # first deliveries left out of the percentiles
    w4_rate: int = 1000
    w4_seconds: float = 8
    w4_kill_at: float = 4
    w4_runs: int = 3
    w4_redelivery_s: float = 1.0  # NATS ack_wait / Redis XAUTOCLAIM idle time
    w5_backlog: int = 1_000_000
    w5_seconds: float = 240
    # Memory rows of issue 9 (jackrabbit only, a fresh server each)
    idle_conns: int = 500  # upgraded connections left idle
    pretls_conns: int = 1000  # TCP connections that never start TLS
    conn_open_s: float = 20  # longest time to open them
    deaf_seconds: float = 10  # a client that never reads sends for this long
    profile_count: int = 100_000
    limit_seconds: float = 2.0
    idle_end: float = 10.0  # a consumer told the total stops after this much silence

    @property
    def name(self) -> str:
        return "quick" if self.quick else "full"


FULL = Plan(quick=False)

QUICK = Plan(
    quick=True,
    w1_rounds=3,
    w2_rounds=3,
    w3_rounds=3,
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
    idle_conns=200,
    pretls_conns=300,
    deaf_seconds=3,
    profile_count=4_000,
    limit_seconds=0.3,
    idle_end=1.5,
)
