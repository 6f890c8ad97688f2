"""A load-generator process: one producer or one consumer of one system.

Run as ``python -m benchmarks.agent SPEC_JSON``. It talks JSON lines with the orchestrator
(:mod:`benchmarks.fleet`): on stdout ``ready``, ``progress``, ``recv`` (each delivery, at once, when
receipts are asked for) and ``acked`` (how many deliveries the last ack covered), so a
SIGKILLed consumer's work is known, then ``result`` (or ``error``);
on stdin ``go`` (producers start; a consumer just notes the time), ``expect`` (consumers:
how many to wait for, and how long a silence ends the wait). Every loop is bounded by a count
and by a deadline. Each result carries ``cpu_s``, the CPU time (user + system, all threads)
the agent used from ``go`` to its result, so the report can split the machine's CPU between
the server and its load generators.

The roles ``idle``, ``pretls`` and ``deaf`` hold connections open for the memory rows
instead (:mod:`benchmarks.holders`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import traceback
from typing import Any

from . import payload
from .agentio import emit, stdin_lines, wait_for_line
from .drivers import load
from .drivers.base import Consumer, Producer

PROGRESS_EVERY = 1.0


async def run_producer(spec: dict[str, Any]) -> dict[str, Any]:
    module = load(spec["driver"])
    producer: Producer = module.Producer(spec["endpoint"], spec["queue"], spec.get("options", {}))
    await producer.connect()
    reader = await stdin_lines()
    emit({"type": "ready"})
    await wait_for_line(reader, "go", 120)
    cpu0 = time.process_time()

    count, size, window = int(spec["count"]), int(spec["size"]), int(spec["window"])
    rate = float(spec.get("rate") or 0)
    pid = int(spec.get("producer_id", 0))
    clock = time.monotonic_ns
    start = clock()
    deadline = start + int(float(spec["duration"]) * 1e9)
    interval = int(1e9 / rate) if rate else 0
    next_progress = start + int(PROGRESS_EVERY * 1e9)
    sent = 0
    make = payload.make
    while sent < count:
        now = clock()
        if now > deadline:
            break
        if interval:
            due = start + sent * interval
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
        if sent - producer.confirmed - producer.failed >= window:
            await producer.wait_below(sent, window)
        await producer.publish(make(clock(), pid, sent, size))
        sent += 1
        if now > next_progress:
            emit({"type": "progress", "n": producer.confirmed})
            next_progress = now + int(PROGRESS_EVERY * 1e9)
    drained = await producer.drain(sent, float(spec.get("drain", 60)))
    end = clock()
    await producer.close()
    return {
        "type": "result",
        "sent": sent,
        "confirmed": producer.confirmed,
        "failed": producer.failed,
        "drained": drained,
        "first_ns": start,
        "last_ns": producer.last_confirm_ns or end,
        "timed_out": sent < count,
        "errors": producer.errors,
        "cpu_s": time.process_time() - cpu0,
    }


class _Tally:
    """What a consumer saw."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.latency = bool(spec.get("latency"))
        self.receipts = bool(spec.get("receipts"))
        self.count = 0
        self.redelivered = 0
        self.first_ns = 0
        self.last_ns = 0
        self.latencies: list[int] = []
        self.seen: set[int] = set()
        self.pending = 0
        self.bad = 0

    def on_message(self, data: bytes, redelivered: bool) -> None:
        now = time.monotonic_ns()
        if not self.first_ns:
            self.first_ns = now
        self.last_ns = now
        self.count += 1
        self.pending += 1
        if redelivered:
            self.redelivered += 1
        if self.latency or self.receipts:
            try:
                stamp = payload.read(data)
            except Exception:
                self.bad += 1
                return
            if self.latency:
                self.latencies.append(now - stamp.sent_ns)
            if self.receipts:
                k = payload.key(stamp)
                self.seen.add(k)
                # reported at once, in delivery order, so a SIGKILL loses none of it
                emit({"type": "recv", "keys": [k], "t": [now]})

    @property
    def unique(self) -> int:
        return len(self.seen) if self.receipts else self.count


async def run_consumer(spec: dict[str, Any]) -> dict[str, Any]:
    module = load(spec["driver"])
    tally = _Tally(spec)
    wake = asyncio.Event()
    ack_every = int(spec.get("ack_every", 100))

    def on_message(data: bytes, redelivered: bool) -> None:
        tally.on_message(data, redelivered)
        if tally.pending >= ack_every:
            wake.set()

    consumer: Consumer = module.Consumer(spec["endpoint"], spec["queue"], int(spec["prefetch"]),
                                         spec.get("options", {}), on_message)
    await consumer.subscribe()
    reader = await stdin_lines()
    emit({"type": "ready", "role": consumer.role})

    async def acker() -> None:
        while True:
            await wake.wait()
            wake.clear()
            if not tally.pending:
                continue
            tally.pending = 0
            covered = tally.count  # ack_all covers every delivery so far, and no more
            await consumer.ack_all()
            if tally.receipts:
                emit({"type": "acked", "n": covered})

    expect: dict[str, Any] = {}
    cpu0 = [time.process_time()]  # reset at "go", when the producers start

    async def control() -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            msg = json.loads(line)
            if msg.get("type") == "expect":
                expect.update(msg)
            elif msg.get("type") == "go":
                cpu0[0] = time.process_time()

    ack_task = asyncio.create_task(acker())
    control_task = asyncio.create_task(control())
    clock = time.monotonic_ns
    deadline = clock() + int(float(spec["duration"]) * 1e9)
    idle_flush_ns = int(float(spec.get("idle_flush", 0.002)) * 1e9)
    next_progress = clock()
    stopped_by = "deadline"
    try:
        while clock() < deadline:
            await asyncio.sleep(0.002)
            now = clock()
            if tally.pending and now - tally.last_ns >= idle_flush_ns:
                wake.set()
            if now >= next_progress:
                emit({"type": "progress", "n": tally.count})
                next_progress = now + int(PROGRESS_EVERY * 1e9)
            if consumer.closed.is_set():
                stopped_by = "closed by server"
                break
            if expect:
                if tally.unique >= int(expect.get("n", 1 << 62)):
                    stopped_by = "count"
                    break
                since = max(tally.last_ns, int(expect.get("at_ns", 0)))
                if now - since > float(expect.get("idle", 3)) * 1e9:
                    stopped_by = "idle"
                    break
        # final acks
        wake.set()
        await asyncio.sleep(0.05)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.ack_all(), 5)
    finally:
        ack_task.cancel()
        control_task.cancel()
        await consumer.close()
    result: dict[str, Any] = {
        "type": "result",
        "count": tally.count,
        "unique": tally.unique,
        "redelivered": tally.redelivered,
        "first_ns": tally.first_ns,
        "last_ns": tally.last_ns,
        "stopped_by": stopped_by,
        "role": consumer.role,
        "bad": tally.bad,
        "errors": consumer.errors,
        "cpu_s": time.process_time() - cpu0[0],
    }
    if tally.latency:
        result["latencies"] = tally.latencies
    return result


async def main_async(spec: dict[str, Any]) -> None:
    from . import holders

    runners = {"producer": run_producer, "consumer": run_consumer, **holders.ROLES}
    emit(await runners[spec["role"]](spec))


def main() -> int:
    spec = json.loads(sys.argv[1])
    try:
        asyncio.run(main_async(spec))
    except BaseException as exc:  # report, never die silently
        emit({"type": "error", "message": f"{type(exc).__name__}: {exc}",
              "trace": traceback.format_exc()[-2000:]})
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
