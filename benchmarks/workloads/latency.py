"""Workload 3: one producer paced at a fixed rate, one consumer acking each message; the
end-to-end latency of every delivery (consumer's clock minus the send time in the payload),
and the server's CPU time per delivered message at that rate."""

from __future__ import annotations

from dataclasses import dataclass

from ..fleet import Fleet
from ..procs import cpu_seconds
from ..stats import LatencySummary, per_message_us, summarize_latencies
from .common import Target


@dataclass(frozen=True, slots=True)
class LatencyRun:
    summary: LatencySummary
    cpu_server_us: float | None
    notes: tuple[str, ...]


async def run(target: Target) -> LatencyRun:
    plan = target.plan
    queue = target.queue("latency")
    await target.prepare(queue)
    count = int(plan.w3_rate * plan.w3_seconds)
    notes: list[str] = []
    async with Fleet() as fleet:
        consumer = await fleet.spawn("consumer", target.spec(
            queue, "consumer", ack_every=1, latency=True, duration=plan.w3_seconds + 60))
        await consumer.wait_ready(60)
        producer = await fleet.spawn("producer", target.spec(
            queue, "producer", count=count, size=100, window=plan.window,
            rate=plan.w3_rate, duration=plan.w3_seconds * 2 + 5, drain=30))
        await producer.wait_ready(60)
        cpu0 = cpu_seconds(target.pid)
        for agent in (consumer, producer):
            agent.send({"type": "go"})
        out = await producer.result(plan.w3_seconds * 2 + 60)
        consumer.send({"type": "expect", "n": out["confirmed"], "idle": plan.idle_end})
        got = await consumer.result(plan.idle_end + 60)
        cpu = cpu_seconds(target.pid) - cpu0
    samples = got["latencies"][plan.w3_warmup:] or got["latencies"]
    if not samples:
        raise RuntimeError("no message was delivered")
    if out["timed_out"]:
        notes.append(f"producer kept only {out['sent']:,} of {count:,} in time")
    if got["unique"] < out["confirmed"]:
        notes.append(f"consumer got {got['unique']:,} of {out['confirmed']:,}")
    return LatencyRun(summarize_latencies(samples), per_message_us(cpu, got["count"]),
                      tuple(notes))
