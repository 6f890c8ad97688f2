"""One benchmark run's orchestration: start every system, go round them workload by workload,
then the per-system steps (failover, backlog), the profiles and the limits.

Order of a run:

1. the limits (rocksdict, TLS, wsproto) with no server running;
2. start every system (each on its own loopback port, data in its own temp dir); idle RSS;
3. workloads 1, 2 (three payloads) and 3, each in ``plan.*_rounds`` rounds; in a round every
   system runs once, the order rotating round to round; the best run of each is reported;
4. per system: failover runs (workload 4), then the backlog (workload 5), then stop it;
5. each jackrabbit shell again under cProfile while workload 1 drives it;
6. the limits again (each reported as the better of its two tries).

A step that fails becomes a note in the report and a line on stderr; the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import report
from .install import Installer
from .limits import Limit
from .peers import Jackrabbit, NatsJetStream, Peer, RabbitMQ, RedisStreams
from .plan import Plan
from .procs import rss_bytes
from .progress import Progress
from .results import SECTION_BY_KEY, Results
from .stats import LatencySummary, median
from .workloads import failover, latency, memory, profile, throughput
from .workloads.common import Target

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024
ALL_SYSTEMS = ("asyncio", "threads", "client", "rabbitmq", "nats", "redis")
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
    busy_peak: int = 0  # RSS peak seen during its workload-2 runs


def make_entries(chosen: list[str]) -> list[Entry]:
    entries: list[Entry] = []
    shells: dict[str, Jackrabbit] = {}

    def shell(name: str) -> Jackrabbit:
        if name not in shells:
            shells[name] = Jackrabbit(name)  # type: ignore[arg-type]
        return shells[name]

    for name in chosen:
        if name in ("asyncio", "threads"):
            peer = shell(name)
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
            slug = peer.name.replace(" ", "-")
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

    async def throughput_rounds(self) -> None:
        plan = self.plan
        cases: list[tuple[str, str, int, int, int, int]] = [
            ("w1", "w1", 1, 100, plan.w1_count, plan.w1_rounds)]
        cases += [("w2", W2_SECTIONS[size], plan.w2_producers, size, count, plan.w2_rounds)
                  for size, count in plan.w2_counts.items()]
        for workload, section, producers, size, count, rounds in cases:
            runs: dict[str, list[throughput.Throughput]] = {}
            seconds = plan.w1_seconds if workload == "w1" else plan.w2_seconds
            for r in range(rounds):
                for entry in self._rotation(workload, r):
                    assert entry.target is not None
                    what = (f"workload {workload[1]}: {producers} producer"
                            f"{'s' if producers > 1 else ''}, 1 consumer, {size:,} B, round "
                            f"{r + 1} of {rounds}")
                    sampler = memory.RssSampler(entry.target.pid)
                    async with sampler:
                        got = await self.step(
                            entry.name, section, what,
                            _bind(throughput.run, entry.target, f"{section}-r{r}".replace(
                                "_", "-"), producers, size, count, seconds),
                            seconds * 3 + 200)
                    if workload == "w2":
                        entry.busy_peak = max(entry.busy_peak, sampler.peak)
                    if got is not None:
                        runs.setdefault(entry.name, []).append(got)
                        self.progress.say(
                            f"  {entry.name}: {got.adds_per_s:,.0f} confirmed adds/s, "
                            f"{got.e2e_per_s:,.0f} delivered+acked msg/s ({got.delivered:,})")
            for name, got_runs in runs.items():
                best = max(got_runs, key=lambda t: t.e2e_per_s)
                self.results.put(section, "adds", name, best.adds_per_s)
                self.results.put(section, "e2e", name, best.e2e_per_s)
                if size == 65536:
                    self.results.put(section, "mbps", name, best.e2e_per_s * size / 1e6)
                for n in best.notes:
                    self.results.note(section, name, n)
                if len(got_runs) > 1:
                    spread = ", ".join(f"{t.e2e_per_s / 1000:.1f}k" for t in got_runs)
                    self.results.note(section, name, f"best of {len(got_runs)} (e2e {spread})")
        for entry in self.entries:
            if "w2" in entry.workloads and "w5" in entry.workloads and entry.busy_peak:
                self.results.put("w5", "busy", entry.name, entry.busy_peak / MIB)

    async def latency_rounds(self) -> None:
        plan = self.plan
        runs: dict[str, list[tuple[LatencySummary, list[str]]]] = {}
        for r in range(plan.w3_rounds):
            for entry in self._rotation("w3", r):
                assert entry.target is not None
                got = await self.step(
                    entry.name, "w3", f"workload 3: latency at {plan.w3_rate:,} msg/s, round "
                    f"{r + 1} of {plan.w3_rounds}", _bind(latency.run, entry.target),
                    plan.w3_seconds * 3 + 150)
                if got is not None:
                    runs.setdefault(entry.name, []).append(got)
                    s = got[0]
                    self.progress.say(f"  {entry.name}: p50 {s.p50_ms:.2f} ms, p99 "
                                      f"{s.p99_ms:.2f} ms, max {s.max_ms:.2f} ms "
                                      f"({s.count:,} samples)")
        for name, got_runs in runs.items():
            summary, notes = min(got_runs, key=lambda sn: sn[0].p99_ms)
            self.results.put("w3", "p50", name, summary.p50_ms)
            self.results.put("w3", "p99", name, summary.p99_ms)
            self.results.put("w3", "max", name, summary.max_ms)
            for n in notes:
                self.results.note("w3", name, n)
            if len(got_runs) > 1:
                spread = ", ".join(f"{s.p99_ms:.2f}" for s, _ in got_runs)
                self.results.note("w3", name, f"run with the lowest p99 of {len(got_runs)} "
                                              f"(p99s {spread} ms)")

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
                                  f"{plan.w4_runs}", _bind(failover.run_once, entry.target),
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
                              _bind(memory.backlog, entry.target), plan.w5_seconds + 300)
        if got is None:
            return
        self.results.put("w5", "backlog", name, got.rss_mib)
        self.results.put("w5", "backlog_n", name, got.messages)
        self.results.put("w5", "fill", name, got.fill_per_s)
        for n in got.notes:
            self.results.note("w5", name, n)
        self.progress.say(f"  {name}: {got.messages:,} in backlog, RSS {got.rss_mib:.1f} MiB "
                          f"(filled at {got.fill_per_s:,.0f}/s)")

    # -- jackrabbit only ------------------------------------------------------------------

    async def profiles(self, shells: list[str]) -> None:
        for shell in shells:
            name = f"jackrabbit {shell}"
            out = self.workroot / f"profile-{shell}.pstats"
            peer = Jackrabbit(shell, name=name, profile_to=out)  # type: ignore[arg-type]
            workdir = self.workroot / f"profile-{shell}"

            async def go(peer: Jackrabbit = peer, workdir: Path = workdir) -> float:
                try:
                    endpoint = await peer.start(workdir)
                    target = Target(peer.name, peer.driver, endpoint, peer.pid, self.plan,
                                    self.progress)
                    got = await throughput.run(target, "profile", 1, 100,
                                               self.plan.profile_count, self.plan.w1_seconds)
                    return got.e2e_per_s
                finally:
                    await peer.stop()

            e2e = await self.step(f"{name} under cProfile", "profile",
                                  "workload 1 with the server under cProfile", go,
                                  self.plan.w1_seconds * 3 + 200)
            if e2e is None:
                continue
            if not out.exists():
                self.results.blocks.append((f"Profile: {name}", "no profile was written "
                                            "(the server did not exit cleanly on SIGTERM)"))
                self.failures.append(f"{name}: no profile written")
                continue
            summary = profile.summarize(profile.load(out), root=str(HERE.parent))
            body = profile.markdown(summary, f"{name}, workload 1 ({self.plan.profile_count:,}"
                                    f" msgs), {e2e:,.0f} msg/s end to end under the profiler")
            suffix = "-quick" if self.plan.quick else ""
            kept = HERE / "results" / f"profile-{shell}{suffix}.pstats"
            with contextlib.suppress(OSError):
                shutil.copyfile(out, kept)
            body += f"\n\nThe raw profile: `benchmarks/results/{kept.name}` (open with pstats)."
            self.results.blocks.append((f"6. Where the time goes: {name} (cProfile)", body))

    async def measure_limits(self) -> None:
        from .limits import frames, rocks, tls

        secs = self.plan.limit_seconds
        self.progress.system = "limits"
        for label, fn in (("rocksdict batched synced writes", lambda: rocks.measure(secs)),
                          ("raw TLS loopback", lambda: tls.measure(secs)),
                          ("wsproto frame parsing", lambda: frames.measure(secs))):
            self.progress.say(f"{label} ...")
            try:
                found = await asyncio.wait_for(asyncio.to_thread(fn), 60 + secs * 10)
            except Exception as exc:
                self.progress.say(f"{label} FAILED: {type(exc).__name__}: {exc}")
                self.results.run_notes.append(f"limit '{label}' not measured: {exc}")
                continue
            for limit in found:
                self.progress.say(f"  {limit.name}: {limit.value:,.0f} {limit.unit}")
                best = self.limits.get(limit.name)
                if best is None or limit.value > best.value:
                    self.limits[limit.name] = limit
        self.progress.system = ""

    def limits_block(self) -> None:
        if not self.limits:
            return
        shells = [s for s in ("jackrabbit asyncio", "jackrabbit threads")
                  if self.results.get("w1", "e2e", s) is not None]
        head = "| limit | measured | | " + " | ".join(
            f"{s} (1p1c e2e) as % of it" for s in shells) + " |"
        lines = [head, "|---|--:|---|" + "--:|" * len(shells)]
        for limit in self.limits.values():
            cells = [limit.name, report.fmt(limit.value),
                     limit.unit + (f" ({limit.detail})" if limit.detail else "")]
            for s in shells:
                e2e = self.results.get("w1", "e2e", s)
                cells.append(f"{100 * e2e / limit.value:.0f}%" if limit.compare and e2e
                             else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Each message costs the server at least one frame parsed (the add), "
                  "two frames written (the confirmation and the delivery) and a share of a "
                  "synced batch; so a shell's end-to-end rate can reach at most about a third "
                  "of the TLS record rate and the wsproto parse rate, and the rocksdict "
                  "figure bounds the durable add rate."]
        tries = "one try" if self.plan.quick else "the better of a try before and one after " \
            "the systems"
        self.results.blocks.insert(0, (f"6. Limits measured in this run (no server; {tries})",
                                       "\n".join(lines)))


def _bind(fn: Callable[..., Awaitable[T]], *args: Any) -> Callable[[], Awaitable[T]]:
    """``fn`` with its arguments fixed now (a lambda in a loop would see the last ones)."""
    return lambda: fn(*args)
