"""The steps only jackrabbit gets, run after the side-by-side part of a run:

- the memory rows of issue 9 (:mod:`.workloads.connections`), each on a fresh server of each
  jackrabbit row (A/B twins included), one server at a time;
- each shell of this checkout under cProfile while workload 1 drives it;
- the limits measured with no server (rocksdict, TLS, wsproto), and their table.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from . import report
from .peers import Jackrabbit
from .session import Entry, Session, bind
from .workloads import connections, profile, throughput
from .workloads.common import Target

T = TypeVar("T")
HERE = Path(__file__).resolve().parent


async def _on_fresh(session: Session, peer: Jackrabbit, slug: str,
                    fn: Callable[[Target], Awaitable[T]]) -> T:
    """``fn`` against a freshly started server like ``peer``, stopped afterwards."""
    server = peer.fresh()
    try:
        endpoint = await asyncio.wait_for(server.start(session.workroot / slug), 120)
        return await fn(Target(server.name, server.driver, endpoint, server.pid, session.plan,
                               session.progress))
    finally:
        await server.stop()


async def connection_memory(session: Session, entries: list[Entry]) -> None:
    """Issue 9's memory rows for every jackrabbit server among ``entries``."""
    plan, res = session.plan, session.results
    seen: set[int] = set()
    for entry in entries:
        peer = entry.peer
        if not isinstance(peer, Jackrabbit) or id(peer) in seen:
            continue
        seen.add(id(peer))
        name = entry.name
        slug = name.replace(" ", "-").replace("@", "-at-")
        idle = await session.step(
            name, "w6", f"memory: {plan.idle_conns:,} idle TLS connections on a fresh server",
            bind(_on_fresh, session, peer, f"{slug}-idle", connections.idle),
            plan.conn_open_s + 180)
        if idle is not None:
            res.put("w6", "idle_conn", name, idle.per_conn_kib)
            res.put("w6", "idle_n", name, idle.opened)
            for n in idle.notes:
                res.note("w6", name, f"idle: {n}")
            session.progress.say(f"  {name}: {idle.per_conn_kib:,.1f} KiB per idle connection "
                                 f"({idle.opened:,} open)")
        pre = await session.step(
            name, "w6", f"memory: {plan.pretls_conns:,} pre-TLS connections on a fresh server",
            bind(_on_fresh, session, peer, f"{slug}-pretls", connections.pre_tls),
            plan.conn_open_s + 180)
        if pre is not None:
            res.put("w6", "pretls_conn", name, pre.per_conn_kib)
            res.put("w6", "pretls_n", name, pre.opened)
            if pre.left_mib is not None:
                res.put("w6", "pretls_left", name, pre.left_mib)
            for n in pre.notes:
                res.note("w6", name, f"pre-TLS: {n}")
            session.progress.say(f"  {name}: {pre.per_conn_kib:,.1f} KiB per pre-TLS "
                                 f"connection ({pre.opened:,} open), {pre.left_mib or 0:,.1f} "
                                 "MiB left after they closed")
        for mix in ("pings", "adds"):
            deaf = await session.step(
                name, "w6", f"memory: a client that never reads, sending {mix} for "
                f"{plan.deaf_seconds:.0f} s, on a fresh server",
                bind(_on_fresh, session, peer, f"{slug}-deaf-{mix}",
                     partial(connections.non_reader, mix=mix)),
                plan.deaf_seconds + 180)
            if deaf is None:
                continue
            res.put("w6", f"{mix}_growth", name, deaf.growth_mib)
            res.put("w6", f"{mix}_sent", name, deaf.sent_mb)
            if deaf.late_growth_mib is not None:
                res.put("w6", f"{mix}_late", name, deaf.late_growth_mib)
            for n in deaf.notes:
                res.note("w6", name, f"non-reader ({mix}): {n}")
            session.progress.say(f"  {name}: RSS +{deaf.growth_mib:,.1f} MiB while a "
                                 f"non-reader sent {deaf.sent_mb:,.1f} MB of {mix}")


async def profiles(session: Session, shells: list[str]) -> None:
    """Each shell of this checkout under cProfile while workload 1 drives it."""
    plan = session.plan
    for shell in shells:
        name = f"jackrabbit {shell}"
        out = session.workroot / f"profile-{shell}.pstats"
        peer = Jackrabbit(shell, name=name, profile_to=out)  # type: ignore[arg-type]
        workdir = session.workroot / f"profile-{shell}"

        async def go(peer: Jackrabbit = peer, workdir: Path = workdir) -> float:
            try:
                endpoint = await peer.start(workdir)
                target = Target(peer.name, peer.driver, endpoint, peer.pid, plan,
                                session.progress)
                got = await throughput.run(target, "profile", 1, 100, plan.profile_count,
                                           plan.w1_seconds)
                return got.e2e_per_s
            finally:
                await peer.stop()

        e2e = await session.step(f"{name} under cProfile", "profile",
                                 "workload 1 with the server under cProfile", go,
                                 plan.w1_seconds * 3 + 200)
        if e2e is None:
            continue
        if not out.exists():
            session.results.blocks.append((f"Profile: {name}", "no profile was written "
                                           "(the server did not exit cleanly on SIGTERM)"))
            session.failures.append(f"{name}: no profile written")
            continue
        summary = profile.summarize(profile.load(out), root=str(HERE.parent))
        body = profile.markdown(summary, f"{name}, workload 1 ({plan.profile_count:,}"
                                f" msgs), {e2e:,.0f} msg/s end to end under the profiler")
        suffix = "-quick" if plan.quick else ""
        kept = HERE / "results" / f"profile-{shell}{suffix}.pstats"
        with contextlib.suppress(OSError):
            shutil.copyfile(out, kept)
        body += f"\n\nThe raw profile: `benchmarks/results/{kept.name}` (open with pstats)."
        session.results.blocks.append((f"6. Where the time goes: {name} (cProfile)", body))


async def measure_limits(session: Session) -> None:
    """The ceilings with no server running; each kept as the best of its tries."""
    from .limits import frames, rocks, tls

    secs = session.plan.limit_seconds
    session.progress.system = "limits"
    for label, fn in (("rocksdict batched synced writes", lambda: rocks.measure(secs)),
                      ("raw TLS loopback", lambda: tls.measure(secs)),
                      ("wsproto frame parsing", lambda: frames.measure(secs))):
        session.progress.say(f"{label} ...")
        try:
            found = await asyncio.wait_for(asyncio.to_thread(fn), 60 + secs * 10)
        except Exception as exc:
            session.progress.say(f"{label} FAILED: {type(exc).__name__}: {exc}")
            session.results.run_notes.append(f"limit '{label}' not measured: {exc}")
            continue
        for limit in found:
            session.progress.say(f"  {limit.name}: {limit.value:,.0f} {limit.unit}")
            best = session.limits.get(limit.name)
            if best is None or limit.value > best.value:
                session.limits[limit.name] = limit
    session.progress.system = ""


def limits_block(session: Session) -> None:
    """The limits table, first among the report's free-text blocks."""
    if not session.limits:
        return
    shells = [s for s in ("jackrabbit asyncio", "jackrabbit threads")
              if session.results.get("w1", "e2e", s) is not None]
    head = "| limit | measured | | " + " | ".join(
        f"{s} (1p1c e2e, median) as % of it" for s in shells) + " |"
    lines = [head, "|---|--:|---|" + "--:|" * len(shells)]
    for limit in session.limits.values():
        cells = [limit.name, report.fmt(limit.value),
                 limit.unit + (f" ({limit.detail})" if limit.detail else "")]
        for s in shells:
            e2e = session.results.get("w1", "e2e", s)
            cells.append(f"{100 * e2e / limit.value:.0f}%" if limit.compare and e2e else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Each message costs the server at least one frame parsed (the add), "
              "two frames written (the confirmation and the delivery) and a share of a "
              "synced batch; so a shell's end-to-end rate can reach at most about a third "
              "of the TLS record rate and the wsproto parse rate, and the rocksdict "
              "figure bounds the durable add rate."]
    tries = "one try" if session.plan.quick else "the better of a try before and one after " \
        "the systems"
    session.results.blocks.insert(0, (f"6. Limits measured in this run (no server; {tries})",
                                      "\n".join(lines)))
