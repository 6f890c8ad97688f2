"""Counters the server keeps, and their Prometheus text form for ``GET /metrics`` (§1.2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .access import REASONS


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
    relayed: int = 0
    #: Requests and commands refused by access control, by reason (protocol §11.6).
    auth_failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))


class QueueState(Protocol):
    """What the exposition reads of a queue (``failover.Queue`` has it)."""

    @property
    def last_seq(self) -> int: ...
    @property
    def acked(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def line(self) -> tuple[int, ...]: ...
    @property
    def epoch(self) -> int: ...


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
    ("relayed", "Connections relayed to the node serving their queue (cluster mode)."),
)

_GAUGES = (
    ("depth", "Messages stored and not yet acknowledged."),
    ("in_flight", "Messages delivered to the active consumer and not yet acknowledged."),
    ("consumers", "Consumers in the queue's line, active and standby."),
    ("epoch", "Changes of the queue's active consumer, ever."),
    ("last_seq", "Highest durable sequence number."),
)


class Exposition:
    """The Prometheus text exposition (format 0.0.4), rendered a slice of queues at a time.

    With tens of thousands of queues the per-queue series run to megabytes; rendering them in
    one go would stall every other connection for tens of milliseconds. The server calls
    ``step`` once per turn until it returns the body, so a scrape costs each turn about the
    same as a few deliveries (protocol §1.2). Gauges are read when their queue's turn comes;
    counters and totals when the exposition starts.
    """

    __slots__ = ("_head", "_next", "_queues", "_samples")

    def __init__(
        self, counters: Counters, open_connections: int, queues: Sequence[tuple[str, QueueState]]
    ) -> None:
        lines: list[str] = []
        for name, help_text in _COUNTERS:
            metric = f"jackrabbit_{name}_total"
            lines += [
                f"# HELP {metric} {help_text}",
                f"# TYPE {metric} counter",
                f"{metric} {getattr(counters, name)}",
            ]
        metric = "jackrabbit_auth_failures_total"
        lines += [
            f"# HELP {metric} Requests and commands refused by access control, by reason.",
            f"# TYPE {metric} counter",
            *(f'{metric}{{reason="{r}"}} {n}' for r, n in counters.auth_failures.items()),
        ]
        lines += [
            "# HELP jackrabbit_open_connections Connections open now.",
            "# TYPE jackrabbit_open_connections gauge",
            f"jackrabbit_open_connections {open_connections}",
            "# HELP jackrabbit_queues Queues known to the server.",
            "# TYPE jackrabbit_queues gauge",
            f"jackrabbit_queues {len(queues)}",
        ]
        self._head = lines
        self._queues = queues
        self._next = 0
        #: One list of sample lines per gauge of ``_GAUGES``.
        self._samples: list[list[str]] = [[] for _ in _GAUGES]

    def step(self, queues: int) -> bytes | None:
        """Render the next ``queues`` queues; the whole body once the last one is done."""
        depth, in_flight, consumers, epoch, last_seq = self._samples
        end = min(len(self._queues), self._next + queues)
        for name, queue in self._queues[self._next : end]:
            label = f'{{queue="{name}"}} '
            depth.append(f"jackrabbit_queue_depth{label}{queue.last_seq - queue.acked}")
            in_flight.append(f"jackrabbit_queue_in_flight{label}{queue.in_flight}")
            consumers.append(f"jackrabbit_queue_consumers{label}{len(queue.line)}")
            epoch.append(f"jackrabbit_queue_epoch{label}{queue.epoch}")
            last_seq.append(f"jackrabbit_queue_last_seq{label}{queue.last_seq}")
        self._next = end
        if end < len(self._queues):
            return None
        lines = self._head
        for (name, help_text), samples in zip(_GAUGES, self._samples, strict=True):
            metric = f"jackrabbit_queue_{name}"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge", *samples]
        return ("\n".join(lines) + "\n").encode()
