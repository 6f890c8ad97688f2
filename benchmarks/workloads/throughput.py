"""Workloads 1 and 2: N producers and one consumer at full speed, pipelined confirms.

Figures: confirmed adds/s (all producers' confirmations over the time from the first send to
the last confirmation) and end-to-end delivered+acked msg/s (the consumer's deliveries over
the time from the first send to the last delivery; it acks cumulatively every
``plan.ack_every`` messages and whenever the stream pauses for 2 ms).

CPU: the server's whole process tree from ``/proc`` just before the producers start and
just after the consumer's result, and each agent's own from ``go`` to its result; each
divided by the messages delivered. The server's figure does not depend on how fast the
Python load generators are, so it is the steadiest figure of a run on a shared machine.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..fleet import Fleet
from ..procs import cpu_seconds
from ..stats import rate
from .common import Target, watch


@dataclass(frozen=True, slots=True)
class Throughput:
    adds_per_s: float
    e2e_per_s: float
    confirmed: int
    delivered: int
    seconds: float
    notes: tuple[str, ...]
    cpu_server_s: float = 0.0
    cpu_producers_s: float = 0.0
    cpu_consumer_s: float = 0.0


async def run(target: Target, label: str, producers: int, size: int, count_each: int,
              seconds: float) -> Throughput:
    plan = target.plan
    queue = target.queue(label)
    await target.prepare(queue)
    notes: list[str] = []
    async with Fleet() as fleet:
        consumer = await fleet.spawn("consumer", target.spec(
            queue, "consumer", ack_every=plan.ack_every,
            duration=seconds + 90))
        makers = [
            await fleet.spawn(f"producer{i}", target.spec(
                queue, "producer", producer_id=i, count=count_each, size=size,
                window=plan.window, duration=seconds, drain=60))
            for i in range(producers)
        ]
        # all start at once; producers send only after "go", once everyone is connected
        for agent in (consumer, *makers):
            await agent.wait_ready(60)
        server_cpu0 = cpu_seconds(target.pid)
        for agent in (consumer, *makers):
            agent.send({"type": "go"})
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(target.progress, label, [*makers, consumer], stop))
        try:
            outs = [await p.result(seconds + 120) for p in makers]
            confirmed = sum(o["confirmed"] for o in outs)
            consumer.send({"type": "expect", "n": confirmed, "idle": plan.idle_end})
            got = await consumer.result(plan.idle_end + 90)
            server_cpu = cpu_seconds(target.pid) - server_cpu0
        finally:
            stop.set()
            await watcher
    first = min(o["first_ns"] for o in outs)
    last_confirm = max(o["last_ns"] for o in outs)
    failed = sum(o["failed"] for o in outs)
    if failed:
        errs = {e for o in outs for e in o["errors"]}
        notes.append(f"{failed} adds refused ({'; '.join(sorted(errs))[:120]})")
    if any(o["timed_out"] for o in outs):
        notes.append(f"time-bound: {confirmed:,} of {count_each * producers:,} sent in "
                     f"{seconds:.0f} s")
    if got["unique"] < confirmed:
        notes.append(f"consumer got {got['unique']:,} of {confirmed:,} ({got['stopped_by']})")
    if got["errors"]:
        notes.append("consumer: " + "; ".join(got["errors"])[:120])
    e2e_seconds = (got["last_ns"] - first) / 1e9 if got["last_ns"] else 0
    return Throughput(
        adds_per_s=rate(confirmed, (last_confirm - first) / 1e9),
        e2e_per_s=rate(got["count"], e2e_seconds),
        confirmed=confirmed,
        delivered=got["count"],
        seconds=e2e_seconds,
        notes=tuple(notes),
        cpu_server_s=server_cpu,
        cpu_producers_s=sum(float(o.get("cpu_s", 0.0)) for o in outs),
        cpu_consumer_s=float(got.get("cpu_s", 0.0)),
    )
