"""One benchmark run's orchestration: start every system, go round them workload by workload,
then the per-system steps (failover, backlog); :mod:`.shellsteps` has what only jackrabbit
gets (memory per connection, profiles, limits).

Order of a run:

1. the limits (rocksdict, TLS, wsproto) with no server running;
2. start every system (each on its own loopback port, data in its own temp dir); idle RSS;
3. workloads 1, 2 (three payloads) and 3, each in ``plan.*_rounds`` rounds; in a round every
   system runs once, the order rotating round to round; each figure is the median of a
   system's rounds, kept round by round so the report shows the spread (and an A/B run can
   pair rounds);
4. per system: failover runs (workload 4), then the backlog (workload 5), then stop it;
5. each jackrabbit server (A/B twins included) three more times, fresh, for the memory rows;
6. each jackrabbit shell again under cProfile while workload 1 drives it;
7. the limits again (each reported as the better of its two tries).

A step that fails becomes a note in the report and a line on stderr; the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .install import Installer
from .limits import Limit
from .peers import Jackrabbit, NatsJetStream, Peer, RabbitMQ, RedisStreams
from .plan import Plan
from .procs import rss_bytes
from .progress import Progress
from .results import SECTION_BY_KEY, Results
from .stats import median, per_message_us
from .workloads import failover, latency, memory, throughput
from .workloads.common import Target

T = TypeVar("T")
MIB = 1024 * 1024
ALL_SYSTEMS = ("asyncio", "threads", "client", "rabbitmq", "nats", "redis")
SHELLS = ("asyncio", "threads")
W2_SECTIONS = {100: "w2_100", 1024: "w2_1k", 65536: "w2_64k"}


@dataclass
class Entry:
    """A row of the tables: a server (possibly shared with another row), the driver that
    loads it, and which workloads apply."""

    name: str
    peer: Peer
    driver: str
    workloads: tuple[str, ...] = ("w1", "w2", "w3", "w4", "w5")
    target: Target | None = None


def split_system(name: str) -> tuple[str, str | None]:
    """``"asyncio@main"`` -> ``("asyncio", "main")``; ``"nats"`` -> ``("nats", None)``."""
    base, at, ref = name.partition("@")
    return base, (ref if at else None)


def make_entries(chosen: list[str], sources: dict[str, Path] | None = None) -> list[Entry]:
    """The table rows for the chosen systems; ``sources`` maps each git ref of an A/B
    system (``asyncio@REF``) to the directory it was exported to."""
    entries: list[Entry] = []
    shells: dict[str, Jackrabbit] = {}

    def shell(name: str, ref: str | None = None) -> Jackrabbit:
        label = name if ref is None else f"{name}@{ref}"
        if label not in shells:
            if ref is None:
                shells[label] = Jackrabbit(name)  # type: ignore[arg-type]
            else:
                assert sources is not None and ref in sources, f"{ref} was not exported"
                shells[label] = Jackrabbit(name, f"jackrabbit {label}",  # type: ignore[arg-type]
                                           root=sources[ref])
        return shells[label]

    for choice in chosen:
        name, ref = split_system(choice)
        if name in SHELLS:
            peer = shell(name, ref)
            entries.append(Entry(peer.name, peer, peer.driver))
        elif name == "client":
            # the asyncio server again (the same one), driven by the project's own client
            entries.append(Entry("jackrabbit asyncio (project client)", shell("asyncio"),
                                 "jackrabbit_client", workloads=("w1", "w3")))
        else:
            other: Peer = (RabbitMQ() if name == "rabbitmq" else
                           NatsJetStream() if name == "nats" else RedisStreams())
            entries.append(Entry(other.name, other, other.driver))
    return entries


@dataclass
class Session:
    plan: Plan
    progress: Progress
    workroot: Path
    results: Results = field(default_factory=Results)
    failures: list[str] = field(default_factory=list)
    limits: dict[str, Limit] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    peaks: dict[int, int] = field(default_factory=dict)  # id(peer) -> RSS peak, workloads 1-3

    # -- steps ----------------------------------------------------------------------------

    async def step(self, system: str, section: str, what: str,
                   coro: Callable[[], Awaitable[T]], timeout: float) -> T | None:
        """Run one measurement, bounded by ``timeout``; a failure becomes a note in the
        report and a line on stderr, and the run goes on."""
        self.progress.system = system
        self.progress.say(f"{what} ...")
        t0 = time.monotonic()
        try:
            return await asyncio.wait_for(coro(), timeout)
        except Exception as exc:
            text = str(exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {text[0] if text else ''}"
            if isinstance(exc, TimeoutError):
                reason = f"did not finish within {timeout:.0f} s"
            self.progress.say(f"{what} FAILED after {time.monotonic() - t0:.1f} s: {reason}")
            for line in text[1:12]:
                self.progress.say(f"    {line}")
            if section in SECTION_BY_KEY:
                self.results.note(section, system, f"failed: {reason[:160]}")
            else:
                self.results.run_notes.append(f"{system} {what} failed: {reason[:160]}")
            if system.startswith("jackrabbit"):
                self.failures.append(f"{system} {what}: {reason}")
            return None
        finally:
            self.progress.system = ""

    # -- start and stop -------------------------------------------------------------------

    async def start_all(self, entries: list[Entry], installer: Installer) -> None:
        started: dict[int, dict[str, Any] | None] = {}
        for entry in entries:
            self.results.add_system(entry.name, entry.peer.durability)
            peer = entry.peer
            if id(peer) not in started:
                started[id(peer)] = await self._start(peer, installer)
            endpoint = started[id(peer)]
            if endpoint is None:
                self.results.note("w1", entry.name, "not measured: see the notes above")
                continue
            entry.target = Target(entry.name, entry.driver, endpoint, peer.pid, self.plan,
                                  self.progress)
            self.entries.append(entry)

    async def _start(self, peer: Peer, installer: Installer) -> dict[str, Any] | None:
        self.progress.system = peer.name
        try:
            missing = installer.ensure(peer.need)
            if missing:
                text = f"{peer.name} not measured: missing " + ", ".join(missing)
                self.progress.say(text)
                self.results.run_notes.append(text)
                if peer.name.startswith("jackrabbit"):
                    self.failures.append(text)
                return None
            slug = peer.name.replace(" ", "-").replace("@", "-at-")
            self.progress.say("starting server ...")
            try:
                endpoint = await asyncio.wait_for(peer.start(self.workroot / slug), 180)
            except Exception as exc:
                reason = str(exc).strip() or type(exc).__name__
                self.progress.say(f"could not start: {reason}")
                self.results.run_notes.append(
                    f"{peer.name} did not start: {reason.splitlines()[0][:200]}")
                if peer.name.startswith("jackrabbit"):
                    self.failures.append(f"{peer.name} did not start: {reason}")
                await peer.stop()
                return None
            version = peer.version()
            if version:
                self.results.run_notes.append(f"{peer.name} version {version}")
            await asyncio.sleep(1.0)
            idle = rss_bytes(peer.pid) / MIB
            self.results.put("w5", "idle", peer.name, idle)
            self.progress.say(f"ready; idle RSS {idle:.1f} MiB")
            return endpoint
        finally:
            self.progress.system = ""

    async def stop(self, peer: Peer) -> None:
        if peer.stopped:
            return
        peer.stopped = True
        await peer.stop()
        if peer.stop_note:
            self.results.run_notes.append(f"{peer.name}: {peer.stop_note}")
        self.progress.system = peer.name
        self.progress.say("stopped")
        self.progress.system = ""

    async def stop_all(self, entries: list[Entry]) -> None:
        for entry in entries:
            with contextlib.suppress(Exception):
                await self.stop(entry.peer)

    # -- rounds ---------------------------------------------------------------------------

    def _rotation(self, workload: str, round_no: int) -> list[Entry]:
        who = [e for e in self.entries if workload in e.workloads]
        if not who:
            return []
        shift = round_no % len(who)
        return who[shift:] + who[:shift]

    async def _sampled(self, entry: Entry, coro: Callable[[], Awaitable[T]]) -> T:
        """Run ``coro`` while sampling the server's RSS into its workloads-1-3 peak."""
        assert entry.target is not None
        sampler = memory.RssSampler(entry.target.pid)
        try:
            async with sampler:
                return await coro()
        finally:
            key = id(entry.peer)
            self.peaks[key] = max(self.peaks.get(key, 0), sampler.peak)

    async def throughput_rounds(self) -> None:
        plan = self.plan
        cases: list[tuple[str, str, int, int, int, int]] = [
            ("w1", "w1", 1, 100, plan.w1_count, plan.w1_rounds)]
        cases += [("w2", W2_SECTIONS[size], plan.w2_producers, size, count, plan.w2_rounds)
                  for size, count in plan.w2_counts.items()]
        for workload, section, producers, size, count, rounds in cases:
            seconds = plan.w1_seconds if workload == "w1" else plan.w2_seconds
            done: dict[str, int] = {}
            for r in range(rounds):
                for entry in self._rotation(workload, r):
                    assert entry.target is not None
                    what = (f"workload {workload[1]}: {producers} producer"
                            f"{'s' if producers > 1 else ''}, 1 consumer, {size:,} B, round "
                            f"{r + 1} of {rounds}")
                    label = f"{section}-r{r}".replace("_", "-")
                    got = await self.step(
                        entry.name, section, what, bind(
                            self._sampled, entry, bind(throughput.run, entry.target, label,
                                                        producers, size, count, seconds)),
                        seconds * 3 + 200)
                    if got is None:
                        continue
                    done[entry.name] = done.get(entry.name, 0) + 1
                    self._record_throughput(section, entry.name, r, size, got)
            for name, n in done.items():
                if n < rounds:
                    self.results.note(section, name, f"{n} of {rounds} rounds measured")

    def _record_throughput(self, section: str, name: str, r: int, size: int,
                           got: throughput.Throughput) -> None:
        res = self.results
        res.add_round(section, "adds", name, r, got.adds_per_s)
        res.add_round(section, "e2e", name, r, got.e2e_per_s)
        if size == 65536:
            res.add_round(section, "mbps", name, r, got.e2e_per_s * size / 1e6)
        cpus = {"cpu_server": got.cpu_server_s, "cpu_producers": got.cpu_producers_s,
                "cpu_consumer": got.cpu_consumer_s}
        for metric, seconds in cpus.items():
            us = per_message_us(seconds, got.delivered)
            if us is not None:
                res.add_round(section, metric, name, r, us)
        total = sum(cpus.values())
        if total > 0:
            res.add_round(section, "server_share", name, r, 100 * got.cpu_server_s / total)
        for n in got.notes:
            res.note(section, name, f"round {r + 1}: {n}")
        server_us = per_message_us(got.cpu_server_s, got.delivered)
        self.progress.say(
            f"  {name}: {got.adds_per_s:,.0f} confirmed adds/s, {got.e2e_per_s:,.0f} "
            f"delivered+acked msg/s ({got.delivered:,}); server CPU "
            + (f"{server_us:.1f} µs/msg" if server_us is not None else "—")
            + f", clients {got.cpu_producers_s + got.cpu_consumer_s:.2f} s")

    async def latency_rounds(self) -> None:
        plan = self.plan
        for r in range(plan.w3_rounds):
            for entry in self._rotation("w3", r):
                assert entry.target is not None
                got = await self.step(
                    entry.name, "w3", f"workload 3: latency at {plan.w3_rate:,} msg/s, round "
                    f"{r + 1} of {plan.w3_rounds}",
                    bind(self._sampled, entry, bind(latency.run, entry.target)),
                    plan.w3_seconds * 3 + 150)
                if got is None:
                    continue
                s, res = got.summary, self.results
                res.add_round("w3", "p50", entry.name, r, s.p50_ms)
                res.add_round("w3", "p99", entry.name, r, s.p99_ms)
                res.add_round("w3", "max", entry.name, r, s.max_ms)
                if got.cpu_server_us is not None:
                    res.add_round("w3", "cpu_server", entry.name, r, got.cpu_server_us)
                for n in got.notes:
                    res.note("w3", entry.name, f"round {r + 1}: {n}")
                self.progress.say(f"  {entry.name}: p50 {s.p50_ms:.2f} ms, p99 "
                                  f"{s.p99_ms:.2f} ms, max {s.max_ms:.2f} ms "
                                  f"({s.count:,} samples)")
        # the peaks of workloads 1-3 (the latency rounds come last)
        for entry in self.entries:
            if "w5" in entry.workloads and id(entry.peer) in self.peaks:
                self.results.put("w5", "busy", entry.name, self.peaks[id(entry.peer)] / MIB)

    # -- per system -----------------------------------------------------------------------

    async def per_system(self) -> None:
        """Failover, then the backlog, then stop: one system at a time."""
        for entry in self.entries:
            if "w4" in entry.workloads:
                await self._failover(entry)
            if "w5" in entry.workloads:
                await self._backlog(entry)
            # a server shared by several rows stops after its last row
            if not any(e.peer is entry.peer for e in self.entries[self.entries.index(entry)
                                                                    + 1:]):
                await self.stop(entry.peer)

    async def _failover(self, entry: Entry) -> None:
        plan, name, res = self.plan, entry.name, self.results
        assert entry.target is not None
        runs: list[failover.FailoverRun] = []
        for i in range(plan.w4_runs):
            got = await self.step(name, "w4", f"workload 4: failover, run {i + 1} of "
                                  f"{plan.w4_runs}", bind(failover.run_once, entry.target),
                                  plan.w4_seconds * 3 + 150)
            if got is None:
                continue
            runs.append(got)
            first = f"{got.first_ms:.1f} ms" if got.first_ms is not None else "never"
            last = f"{got.all_ms:.1f} ms" if got.all_ms is not None else "—"
            self.progress.say(f"  {name}: standby's first message {first} after the kill, "
                              f"last redelivery {last}; lost {got.lost}, redelivered "
                              f"{got.redelivered}")
        if not runs:
            return
        firsts = [r.first_ms for r in runs if r.first_ms is not None]
        alls = [r.all_ms for r in runs if r.all_ms is not None]
        if firsts:
            res.put("w4", "first", name, median(firsts))
            res.put("w4", "first_max", name, max(firsts))
        if alls:
            res.put("w4", "all", name, median(alls))
        res.put("w4", "lost", name, sum(r.lost for r in runs))
        res.put("w4", "redelivered", name, sum(r.redelivered for r in runs))
        if len(runs) > 1:
            res.note("w4", name, f"{len(runs)} runs; lost and redelivered are totals")
        for r in runs:
            for n in r.notes:
                res.note("w4", name, n)
        if len(firsts) < len(runs):
            res.note("w4", name, "the standby got nothing after the kill in "
                                 f"{len(runs) - len(firsts)} run(s)")

    async def _backlog(self, entry: Entry) -> None:
        assert entry.target is not None
        plan, name = self.plan, entry.name
        got = await self.step(name, "w5", f"workload 5: backlog of {plan.w5_backlog:,} messages",
                              bind(memory.backlog, entry.target), plan.w5_seconds + 300)
        if got is None:
            return
        self.results.put("w5", "backlog", name, got.rss_mib)
        self.results.put("w5", "backlog_n", name, got.messages)
        self.results.put("w5", "fill", name, got.fill_per_s)
        self.results.put("w5", "fill_peak", name, got.peak_mib)
        if got.half_mib is not None:
            self.results.put("w5", "half", name, got.half_mib)
        for n in got.notes:
            self.results.note("w5", name, n)
        self.progress.say(f"  {name}: {got.messages:,} in backlog, RSS {got.rss_mib:.1f} MiB "
                          f"(filled at {got.fill_per_s:,.0f}/s)")


def bind(fn: Callable[..., Awaitable[T]], *args: Any) -> Callable[[], Awaitable[T]]:
    """``fn`` with its arguments fixed now (a lambda in a loop would see the last ones)."""
    return lambda: fn(*args)
