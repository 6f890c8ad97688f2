"""What a run measured: figures per (workload, metric, system), plus notes and free text.

The catalogue below names every workload table and its columns once; the workloads fill
values in, the report and chart read them out. A figure measured in several interleaved
rounds is kept round by round (:meth:`Results.add_round`): its value is the median of its
rounds, and the report shows their spread beside it. A missing value is shown as such, with
the reason recorded as a note, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from .stats import Spread, median, spread

BASELINE: Final = "jackrabbit asyncio"

Better = Literal["higher", "lower", "none"]
Key = tuple[str, str, str]  # (section, metric, system)


@dataclass(frozen=True, slots=True)
class Metric:
    """One column of a workload table (two or three when it has a spread and a ratio)."""

    key: str
    title: str
    better: Better = "higher"
    digits: int = 3  # significant digits shown
    spread: bool = False  # measured in rounds: show the lowest and highest round beside it
    ratio: bool = True  # show "x jr-asyncio" (never when ``better`` is "none")


@dataclass(frozen=True, slots=True)
class Section:
    """One workload table."""

    key: str
    title: str
    metrics: tuple[Metric, ...]


_RATE = (
    Metric("adds", "confirmed adds/s (median)"),
    Metric("e2e", "delivered+acked msg/s (median)", spread=True),
)
_CPU = (
    Metric("cpu_server", "server CPU µs/msg (median)", "lower", spread=True),
    Metric("cpu_producers", "producers' CPU µs/msg", "lower", ratio=False),
    Metric("cpu_consumer", "consumer's CPU µs/msg", "lower", ratio=False),
    Metric("server_share", "server's % of all CPU", "none", 2),
)
CPU_METRICS: Final = tuple(m.key for m in _CPU)

SECTIONS: Final[tuple[Section, ...]] = (
    Section("w1", "1. Throughput: 1 producer, 1 consumer, 100 B", (*_RATE, *_CPU)),
    Section("w2_100", "2a. Throughput: 4 producers, 1 consumer, 100 B", (*_RATE, *_CPU)),
    Section("w2_1k", "2b. Throughput: 4 producers, 1 consumer, 1 KiB", (*_RATE, *_CPU)),
    Section(
        "w2_64k",
        "2c. Throughput: 4 producers, 1 consumer, 64 KiB",
        (*_RATE, Metric("mbps", "delivered MB/s (median)"), *_CPU),
    ),
    Section(
        "w3",
        "3. Latency at a fixed 1,000 msg/s (end to end, ms)",
        (
            Metric("p50", "p50 ms (median)", "lower", spread=True),
            Metric("p99", "p99 ms (median)", "lower", spread=True),
            Metric("max", "max ms (median)", "lower"),
            Metric("cpu_server", "server CPU µs/msg (median)", "lower"),
        ),
    ),
    Section(
        "w4",
        "4. Failover: active consumer SIGKILLed mid-stream",
        (
            Metric("first", "kill to standby's 1st msg, ms (median)", "lower"),
            Metric("first_max", "same, worst run, ms", "lower"),
            Metric("all", "kill to last redelivery, ms (median)", "lower"),
            Metric("lost", "lost", "none", 0),
            Metric("redelivered", "redelivered", "none", 0),
        ),
    ),
    Section(
        "w5",
        "5. Memory: server RSS (MiB)",
        (
            Metric("idle", "idle MiB", "lower"),
            Metric("busy", "peak under workloads 1-3, MiB", "lower"),
            Metric("fill_peak", "peak while the backlog fills, MiB", "lower"),
            Metric("half", "with half the backlog, MiB", "lower", ratio=False),
            Metric("backlog", "with the whole backlog, MiB", "lower"),
            Metric("backlog_n", "backlog msgs", "none", 0),
            Metric("fill", "backlog fill adds/s"),
        ),
    ),
    Section(
        "w6",
        "5b. Memory per connection and under a client that never reads (a fresh server each)",
        (
            Metric("idle_conn", "per idle TLS connection, KiB", "lower"),
            Metric("idle_n", "idle connections", "none", 0),
            Metric("pretls_conn", "per pre-TLS connection, KiB", "lower"),
            Metric("pretls_n", "pre-TLS connections", "none", 0),
            Metric("pretls_left", "left after they closed, MiB", "lower", ratio=False),
            Metric("pings_growth", "growth under a non-reader sending pings, MiB", "lower"),
            Metric("pings_late", "of which in its second half", "lower", ratio=False),
            Metric("pings_sent", "it sent, MB", "none"),
            Metric("adds_growth", "growth under a non-reader sending adds, MiB", "lower"),
            Metric("adds_late", "of which in its second half", "lower", ratio=False),
            Metric("adds_sent", "it sent, MB", "none"),
        ),
    ),
)

SECTION_BY_KEY: Final = {s.key: s for s in SECTIONS}


@dataclass
class Results:
    """Everything one run found, in the order systems were listed."""

    systems: list[str] = field(default_factory=list)
    values: dict[Key, float] = field(default_factory=dict)
    rounds: dict[Key, dict[int, float]] = field(default_factory=dict)
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    run_notes: list[str] = field(default_factory=list)
    durability: dict[str, str] = field(default_factory=dict)
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (title, markdown)

    def add_system(self, name: str, durability: str) -> None:
        if name not in self.systems:
            self.systems.append(name)
        self.durability[name] = durability

    def put(self, section: str, metric: str, system: str, value: float) -> None:
        """One figure, measured once (or already summarized by the caller)."""
        self.values[_check(section, metric, system)] = value

    def add_round(self, section: str, metric: str, system: str, round_no: int,
                  value: float) -> None:
        """The figure of one round; the figure shown becomes the median of the rounds."""
        key = _check(section, metric, system)
        runs = self.rounds.setdefault(key, {})
        runs[round_no] = value
        self.values[key] = median(list(runs.values()))

    def get(self, section: str, metric: str, system: str) -> float | None:
        return self.values.get((section, metric, system))

    def spread(self, section: str, metric: str, system: str) -> Spread | None:
        """The rounds of a figure measured in rounds (``None`` for a one-off figure)."""
        runs = self.rounds.get((section, metric, system))
        return spread(list(runs.values())) if runs else None

    def by_round(self, section: str, metric: str, system: str) -> dict[int, float]:
        return dict(self.rounds.get((section, metric, system), {}))

    def note(self, section: str, system: str, text: str) -> None:
        self.notes.setdefault((section, system), []).append(text)


def _check(section: str, metric: str, system: str) -> Key:
    if section not in SECTION_BY_KEY:
        raise KeyError(f"unknown section {section!r}")
    if metric not in {m.key for m in SECTION_BY_KEY[section].metrics}:
        raise KeyError(f"unknown metric {metric!r} in {section!r}")
    return (section, metric, system)
