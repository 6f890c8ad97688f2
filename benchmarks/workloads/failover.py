"""Workload 4: the active consumer's process is SIGKILLed while a producer sends at a fixed
rate; a standby consumer (joined second) takes over.

Both consumers report each delivery as it arrives, and how many deliveries each ack covered,
straight to a pipe that outlives the kill. From that and the producer's confirmations:

- **first**: kill to the standby's first delivery after it;
- **all**: kill to the standby's last delivery of a message the killed one had received
  (the last redelivery), or ``first`` if there was none;
- **lost**: confirmed messages that no consumer ever received (must be 0);
- **redelivered**: messages received more than once (by both, or twice by the standby);
- **in doubt** (a note): received by the killed consumer after its last reported ack and
  never redelivered: its ack was on the way when the kill came (at most one ack batch);
  a broker that dropped unacknowledged messages would show up here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..fleet import Fleet
from ..payload import Stamp, key
from .common import Target

FAILOVER_ACK_EVERY = 50


@dataclass(frozen=True, slots=True)
class FailoverRun:
    first_ms: float | None
    all_ms: float | None
    lost: int
    redelivered: int
    doubt: int
    notes: tuple[str, ...]


async def run_once(target: Target) -> FailoverRun:
    plan = target.plan
    queue = target.queue("failover")
    await target.prepare(queue, ack_wait=plan.w4_redelivery_s)
    count = int(plan.w4_rate * plan.w4_seconds)
    notes: list[str] = []
    consumer_opts = {"claim_idle_ms": int(plan.w4_redelivery_s * 1000)}
    # acks every FAILOVER_ACK_EVERY messages and not on pauses, so the kill finds some
    # deliveries unacknowledged and the redelivery path is measured too
    acking = {"ack_every": FAILOVER_ACK_EVERY, "idle_flush": 10.0}
    async with Fleet() as fleet:
        killed = await fleet.spawn("consumer A", target.spec(
            queue, "consumer", receipts=True, duration=plan.w4_seconds + 60,
            options=consumer_opts, **acking))
        ready_a = await killed.wait_ready(60)
        standby = await fleet.spawn("consumer B", target.spec(
            queue, "consumer", receipts=True, duration=plan.w4_seconds + 60,
            options=consumer_opts, **acking))
        ready_b = await standby.wait_ready(60)
        if ready_a.get("role") == "active" and ready_b.get("role") != "standby":
            notes.append(f"second consumer joined as {ready_b.get('role')}")
        producer = await fleet.spawn("producer", target.spec(
            queue, "producer", count=count, size=100, window=plan.window,
            rate=plan.w4_rate, duration=plan.w4_seconds * 2 + 5, drain=30))
        await producer.wait_ready(60)
        producer.send({"type": "go"})
        await asyncio.sleep(plan.w4_kill_at)
        if not killed.running:
            raise RuntimeError("consumer A had already exited before the kill")
        t_kill = time.monotonic_ns()
        killed.kill()
        out = await producer.result(plan.w4_seconds * 2 + 60)
        idle = min(plan.idle_end, 3.0) + plan.w4_redelivery_s
        standby.send({"type": "expect", "n": 1 << 62, "idle": idle})
        got = await standby.result(idle + 60)
        await killed.eof()
    confirmed = {key(Stamp(0, 0, i)) for i in range(out["confirmed"])}
    a_keys = set(killed.recv_keys)
    b_keys = set(standby.recv_keys)
    lost = len(confirmed - a_keys - b_keys)
    both = a_keys & b_keys
    redelivered = len(both) + (len(standby.recv_keys) - len(b_keys))
    after = [t for t in standby.recv_times if t > t_kill]
    first_ms = (min(after) - t_kill) / 1e6 if after else None
    redelivery_times = [t for k, t in zip(standby.recv_keys, standby.recv_times, strict=True)
                        if k in both and t > t_kill]
    all_ms = (max(redelivery_times) - t_kill) / 1e6 if redelivery_times else first_ms
    doubt = _in_doubt(killed.recv_keys, killed.acked_upto, b_keys)
    if got["errors"]:
        notes.append("standby: " + "; ".join(got["errors"])[:120])
    if doubt:
        notes.append(f"{doubt} in doubt (ack in flight at the kill)")
    if out["failed"]:
        notes.append(f"{out['failed']} adds refused")
    return FailoverRun(first_ms, all_ms, lost, redelivered, doubt, tuple(notes))


def _in_doubt(a_keys: list[int], acked_upto: int, b_keys: set[int]) -> int:
    """Messages the killed consumer received after its last confirmed ack and which the
    standby never got: their ack was in flight when the kill came."""
    return sum(1 for k in a_keys[acked_upto:] if k not in b_keys)
