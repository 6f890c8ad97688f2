"""``python -m benchmarks [--quick] [--systems ...] [--ab REF]``: parse the command line, run
a :class:`~benchmarks.session.Session`, write the report and the chart.

A system ``asyncio@REF`` or ``threads@REF`` is that shell from git ref ``REF`` of this
repository (exported to the run's temporary directory), run as one more system in the same
interleaved rounds; ``--ab REF`` adds such a twin for each shell chosen.

Exit status: 0 when every jackrabbit step produced its figures, 1 otherwise (a missing or
failing peer is reported but does not fail the run), 2 for bad arguments, 130 if
interrupted (servers stopped and temporary files removed all the same).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import chart, checkout, report, shellsteps
from .install import Installer
from .plan import FULL, QUICK, Plan
from .progress import Progress
from .session import ALL_SYSTEMS, SHELLS, Session, make_entries, split_system

HERE = Path(__file__).resolve().parent
QUICK_SYSTEMS = SHELLS


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="jackrabbit beside RabbitMQ, NATS JetStream and Redis Streams, one run.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run, 2-3 minutes: jackrabbit only, small counts")
    parser.add_argument("--systems", default=None,
                        help=f"comma-separated subset of {','.join(ALL_SYSTEMS)}, and "
                        "asyncio@REF / threads@REF for a shell at git ref REF (default: all;"
                        f" with --quick or --ab: {','.join(QUICK_SYSTEMS)})")
    parser.add_argument("--ab", metavar="REF", default=None,
                        help="A/B: add each chosen shell at git ref REF (e.g. main) to the "
                        "same interleaved rounds, and report this checkout against it")
    parser.add_argument("--no-install", action="store_true",
                        help="never run apt-get or pip; report what is missing instead")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile step")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="where the report and chart go (default %(default)s)")
    ns = parser.parse_args(argv)
    chosen = (ns.systems.split(",") if ns.systems else
              list(QUICK_SYSTEMS if ns.quick or ns.ab else ALL_SYSTEMS))
    chosen = [c.strip() for c in chosen if c.strip()]
    if ns.ab:
        for shell in [c for c in chosen if c in SHELLS]:
            twin = f"{shell}@{ns.ab}"
            if twin not in chosen:
                chosen.insert(chosen.index(shell) + 1, twin)
    unknown = [c for c in chosen if not _known(c)]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(ALL_SYSTEMS)}, asyncio@REF, threads@REF")
    ns.chosen = list(dict.fromkeys(chosen))
    return ns


def _known(choice: str) -> bool:
    name, ref = split_system(choice)
    return name in SHELLS and bool(ref) if ref is not None else name in ALL_SYSTEMS


def export_refs(chosen: list[str], workroot: Path, session: Session) -> dict[str, Path]:
    """Export every git ref named by an ``@REF`` system; note which commit each one is."""
    sources: dict[str, Path] = {}
    for choice in chosen:
        ref = split_system(choice)[1]
        if ref is None or ref in sources:
            continue
        dest = workroot / f"src-{len(sources)}"
        commit = checkout.export(ref, dest)
        sources[ref] = dest
        session.results.run_notes.append(
            f"`@{ref}` is commit {commit[:12]} (git archive of {ref}), run from "
            "a copy in the run's temporary directory with this checkout's Python packages")
    return sources


def _load() -> str:
    """The 1-minute load average: other work on a shared machine skews every figure."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def _machine_note(plan: Plan) -> str:
    return (f"{plan.name} run on {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} "
            f"cores, Python {platform.python_version()}, Linux {platform.release()}; "
            "all systems started at once, then workloads 1-3 went round them in turn "
            f"({plan.w1_rounds}, {plan.w2_rounds} and {plan.w3_rounds} rounds, the order "
            "rotating each round; every figure is the median of a system's rounds, its spread "
            "the lowest and highest round); failover, backlog and the memory rows one system "
            "at a time; load generators in separate processes on the same cores; load "
            f"average at the start {_load()}")


async def run(ns: argparse.Namespace) -> int:
    plan = QUICK if ns.quick else FULL
    progress = Progress()
    workroot = Path(tempfile.mkdtemp(prefix="jr-bench-"))
    session = Session(plan, progress, workroot)
    session.results.run_notes.append(_machine_note(plan))
    if plan.quick:
        session.results.run_notes.append(
            f"--quick: small counts (backlog {plan.w5_backlog:,} messages instead of "
            f"{FULL.w5_backlog:,}, {plan.idle_conns} idle and {plan.pretls_conns} pre-TLS "
            "connections, one failover run); figures are a smoke test, not a measurement")
    installer = Installer(allowed=not ns.no_install, say=progress.say)
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, lambda: main and main.cancel())
    try:
        progress.say(f"{plan.name} run: {', '.join(ns.chosen)}; work dir {workroot}")
        try:
            entries = make_entries(ns.chosen, export_refs(ns.chosen, workroot, session))
        except checkout.CheckoutError as exc:
            progress.say(f"A/B: {exc}")
            return 2
        await shellsteps.measure_limits(session)
        try:
            await session.start_all(entries, installer)
            await session.throughput_rounds()
            await session.latency_rounds()
            await session.per_system()
        finally:
            await session.stop_all(entries)
        await shellsteps.connection_memory(session, session.entries)
        shells = [c for c in ns.chosen if c in SHELLS]
        if shells and not ns.no_profile:
            await shellsteps.profiles(session, shells)
        if not plan.quick:
            await shellsteps.measure_limits(session)  # a ceiling: the better of two tries
        session.results.run_notes.append(f"load average at the end {_load()}")
        shellsteps.limits_block(session)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    return write_outputs(session, ns.out, plan, ab=any("@" in c for c in ns.chosen))


def write_outputs(session: Session, out: Path, plan: Plan, ab: bool = False) -> int:
    stem = ("quick" if plan.quick else "latest") if not ab else \
        ("ab-quick" if plan.quick else "ab")
    title = f"jackrabbit benchmark ({plan.name} run)"
    text = report.render(session.results, title)
    png = None
    try:
        png = chart.draw(session.results, out / f"{stem}.png", title)
    except Exception as exc:  # the tables matter more than the picture
        session.progress.say(f"chart not drawn: {type(exc).__name__}: {exc}")
    if png is not None:
        text += f"\n![throughput and latency]({png.name})\n"
    else:
        text += "\n(no chart: matplotlib missing or nothing to draw)\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text)
    readme = HERE / "README.md"
    if (stem == "latest" and out.resolve() == (HERE / "results").resolve()
            and readme.exists()):
        # the README shows the latest full run (its image path relative to the README)
        body = report.demote_headings(text, 2).replace("](latest.png)",
                                                       "](results/latest.png)")
        readme.write_text(report.splice(readme.read_text(), body))
    print(text)
    session.progress.say(f"report written to {out / (stem + '.md')}"
                         + (f", chart to {png}" if png else ""))
    if session.failures:
        session.progress.say("jackrabbit steps that failed:")
        for f in session.failures:
            session.progress.say(f"  {f.splitlines()[0]}")
        return 1
    return 0


class _QuietReap(logging.Filter):
    """Drop asyncio's "Unknown child process pid N" warning: an agent's exit was reaped by
    ``subprocess`` on the transport's close before the watcher thread's ``waitpid`` got it.
    Harmless here: results come from the agents' output, never from their exit codes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unknown child process pid")


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(sys.argv[1:] if argv is None else argv)
    logging.getLogger("asyncio").addFilter(_QuietReap())
    try:
        return asyncio.run(run(ns))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; servers stopped, temporary files removed", file=sys.stderr)
        return 130
