"""Workload 5b (issue 9's memory rows, jackrabbit only): what connections cost a server.

Each figure comes from a freshly started server (the caller's job), so no row inherits the
memory another row's traffic left free inside the process:

- **idle**: ``count`` upgraded WebSocket connections that send nothing: RSS delta / count;
- **pre-TLS**: ``count`` TCP connections that never start TLS: RSS delta / count, measured
  within the handshake timeout (protocol §9), and the RSS left once they are closed;
- **non-reader**: one upgraded consumer connection (it sent ``take``) that sends for a
  bounded time and never reads the answers, either pings and bad requests (the server holds
  nothing for it but answers) or adds (answers, and the messages it stores until
  backpressure stops it reading): how much the server's RSS grew, and how much of that in
  the second half of the time (bounded memory levels off; a leak keeps climbing).

RSS is the server's whole process tree, read once it has settled (:func:`settle_rss`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..fleet import Agent, Fleet
from ..procs import rss_bytes
from .common import Target
from .memory import RssSampler

KIB = 1024
MIB = 1024 * 1024
SETTLE_S = 4.0  # longest wait for RSS to settle; pre-TLS connections stay under 10 s


async def settle_rss(pid: int, timeout: float = SETTLE_S, every: float = 0.25) -> int:
    """The RSS of ``pid``'s tree once three readings in a row agree within 64 KiB, or the
    last reading when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    readings = [rss_bytes(pid)]
    while time.monotonic() < deadline:
        await asyncio.sleep(every)
        readings.append(rss_bytes(pid))
        last = readings[-3:]
        if len(last) == 3 and max(last) - min(last) <= 64 * KIB:
            break
    return readings[-1]


@dataclass(frozen=True, slots=True)
class PerConnection:
    opened: int
    per_conn_kib: float
    left_mib: float | None  # RSS above the baseline once they closed (pre-TLS only)
    notes: tuple[str, ...]


async def _hold(target: Target, role: str, count: int, measure_after_close: bool
                ) -> PerConnection:
    plan = target.plan
    queue = target.queue(role)
    notes: list[str] = []
    before = await settle_rss(target.pid)
    async with Fleet() as fleet:
        holder: Agent = await fleet.spawn(f"{role} holder", {
            "role": role, "endpoint": target.endpoint, "queue": queue, "count": count,
            "open_seconds": plan.conn_open_s, "hold": plan.conn_open_s + 60})
        ready = await holder.wait_ready(plan.conn_open_s + 60)
        held = await settle_rss(target.pid)
        holder.send({"type": "close"})
        out = await holder.result(60)
    opened = int(ready["opened"])
    if ready["failed"]:
        notes.append(f"{ready['failed']} of {count} did not open ("
                     f"{'; '.join(ready['errors'])[:120]})")
    if out["closed_by_server"]:
        notes.append(f"the server closed {out['closed_by_server']} of them while held")
    left = None
    if measure_after_close:
        left = (await settle_rss(target.pid) - before) / MIB
    if not opened:
        raise RuntimeError("no connection opened: " + "; ".join(notes))
    return PerConnection(opened, (held - before) / opened / KIB, left, tuple(notes))


async def idle(target: Target) -> PerConnection:
    return await _hold(target, "idle", target.plan.idle_conns, False)


async def pre_tls(target: Target) -> PerConnection:
    return await _hold(target, "pretls", target.plan.pretls_conns, True)


@dataclass(frozen=True, slots=True)
class NonReader:
    growth_mib: float  # RSS at the end minus before
    late_growth_mib: float | None  # RSS at the end minus RSS half-way through
    sent_mb: float
    notes: tuple[str, ...]


async def non_reader(target: Target, mix: str) -> NonReader:
    """``mix``: ``"pings"`` (pings and bad requests) or ``"adds"``."""
    plan = target.plan
    notes: list[str] = []
    before = await settle_rss(target.pid)
    async with Fleet() as fleet:
        deaf = await fleet.spawn("non-reader", {
            "role": "deaf", "endpoint": target.endpoint, "queue": target.queue("deaf"),
            "seconds": plan.deaf_seconds, "mix": mix})
        await deaf.wait_ready(60)
        halfway: list[int] = []
        t_half = time.monotonic() + plan.deaf_seconds / 2

        def at_half() -> None:
            if not halfway and time.monotonic() >= t_half:
                halfway.append(rss_bytes(target.pid))

        sampler = RssSampler(target.pid, on_sample=at_half)
        async with sampler:
            deaf.send({"type": "go"})
            out = await deaf.message("sent", plan.deaf_seconds + 60)
        end = rss_bytes(target.pid)  # the connection is still open
        deaf.send({"type": "close"})
        await deaf.result(60)
    if out["closed_after_s"] is not None:
        notes.append(f"the server closed it after {out['closed_after_s']:.1f} s")
    if out["blocked_s"]:
        notes.append(f"its sends waited on the server {out['blocked_s']:.1f} of "
                     f"{out['seconds']:.1f} s")
    return NonReader((end - before) / MIB, (end - halfway[0]) / MIB if halfway else None,
                     out["sent_bytes"] / 1e6, tuple(notes))
