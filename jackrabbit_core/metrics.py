"""Counters the server keeps, and their Prometheus text form for ``GET /metrics`` (§1.2)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class Counters:
    """Monotonic totals since the server started."""

    adds: int = 0
    duplicates: int = 0
    acks: int = 0
    deliveries: int = 0
    redeliveries: int = 0
    failovers: int = 0
    handovers: int = 0
    connections: int = 0
    batches: int = 0


@dataclass(frozen=True, slots=True)
class QueueGauge:
    """One queue's state at the moment of the scrape."""

    name: str
    depth: int
    in_flight: int
    consumers: int
    epoch: int
    last_seq: int


_COUNTERS = (
    ("adds", "Messages stored (duplicates excluded)."),
    ("duplicates", "Adds answered as duplicates of an idempotency key."),
    ("acks", "Ack requests accepted."),
    ("deliveries", "Messages sent to consumers, redeliveries included."),
    ("redeliveries", "Messages sent again after a failover."),
    ("failovers", "Active consumers replaced after a disconnect or timeout."),
    ("handovers", "Planned handovers completed."),
    ("connections", "Connections accepted."),
    ("batches", "Write batches made durable."),
)

_GAUGES = (
    ("depth", "Messages stored and not yet acknowledged."),
    ("in_flight", "Messages delivered to the active consumer and not yet acknowledged."),
    ("consumers", "Consumers in the queue's line, active and standby."),
    ("epoch", "Changes of the queue's active consumer, ever."),
    ("last_seq", "Highest durable sequence number."),
)


def render(counters: Counters, open_connections: int, queues: Iterable[QueueGauge]) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of everything the server counts."""
    lines: list[str] = []
    for name, help_text in _COUNTERS:
        metric = f"jackrabbit_{name}_total"
        lines += [
            f"# HELP {metric} {help_text}",
            f"# TYPE {metric} counter",
            f"{metric} {getattr(counters, name)}",
        ]
    lines += [
        "# HELP jackrabbit_open_connections Connections open now.",
        "# TYPE jackrabbit_open_connections gauge",
        f"jackrabbit_open_connections {open_connections}",
    ]
    snapshot = list(queues)
    lines += [
        "# HELP jackrabbit_queues Queues known to the server.",
        "# TYPE jackrabbit_queues gauge",
        f"jackrabbit_queues {len(snapshot)}",
    ]
    for name, help_text in _GAUGES:
        metric = f"jackrabbit_queue_{name}"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        lines += [f'{metric}{{queue="{q.name}"}} {getattr(q, name)}' for q in snapshot]
    return ("\n".join(lines) + "\n").encode()
