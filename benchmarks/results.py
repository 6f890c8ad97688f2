"""What a run measured: figures per (workload, metric, system), plus notes and free text.

The catalogue below names every workload table and its columns once; the workloads fill
values in, the report and chart read them out. A missing value is shown as such, with the
reason recorded as a note, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

BASELINE: Final = "jackrabbit asyncio"

Better = Literal["higher", "lower", "none"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One column of a workload table."""

    key: str
    title: str
    better: Better = "higher"
    digits: int = 3  # significant digits shown


@dataclass(frozen=True, slots=True)
class Section:
    """One workload table."""

    key: str
    title: str
    metrics: tuple[Metric, ...]


_RATE = (
    Metric("adds", "confirmed adds/s"),
    Metric("e2e", "delivered+acked msg/s"),
)

SECTIONS: Final[tuple[Section, ...]] = (
    Section("w1", "1. Throughput: 1 producer, 1 consumer, 100 B", _RATE),
    Section("w2_100", "2a. Throughput: 4 producers, 1 consumer, 100 B", _RATE),
    Section("w2_1k", "2b. Throughput: 4 producers, 1 consumer, 1 KiB", _RATE),
    Section(
        "w2_64k",
        "2c. Throughput: 4 producers, 1 consumer, 64 KiB",
        (*_RATE, Metric("mbps", "delivered MB/s")),
    ),
    Section(
        "w3",
        "3. Latency at a fixed 1,000 msg/s (end to end, ms)",
        (
            Metric("p50", "p50 ms", "lower"),
            Metric("p99", "p99 ms", "lower"),
            Metric("max", "max ms", "lower"),
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
            Metric("busy", "peak under workload 2, MiB", "lower"),
            Metric("backlog", "with backlog, MiB", "lower"),
            Metric("backlog_n", "backlog msgs", "none", 0),
            Metric("fill", "backlog fill adds/s"),
        ),
    ),
)

SECTION_BY_KEY: Final = {s.key: s for s in SECTIONS}


@dataclass
class Results:
    """Everything one run found, in the order systems were listed."""

    systems: list[str] = field(default_factory=list)
    values: dict[tuple[str, str, str], float] = field(default_factory=dict)
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    run_notes: list[str] = field(default_factory=list)
    durability: dict[str, str] = field(default_factory=dict)
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (title, markdown)

    def add_system(self, name: str, durability: str) -> None:
        if name not in self.systems:
            self.systems.append(name)
        self.durability[name] = durability

    def put(self, section: str, metric: str, system: str, value: float) -> None:
        if section not in SECTION_BY_KEY:
            raise KeyError(f"unknown section {section!r}")
        if metric not in {m.key for m in SECTION_BY_KEY[section].metrics}:
            raise KeyError(f"unknown metric {metric!r} in {section!r}")
        self.values[(section, metric, system)] = value

    def get(self, section: str, metric: str, system: str) -> float | None:
        return self.values.get((section, metric, system))

    def note(self, section: str, system: str, text: str) -> None:
        self.notes.setdefault((section, system), []).append(text)
