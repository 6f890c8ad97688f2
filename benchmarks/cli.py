"""``python -m benchmarks [--quick] [--systems ...]``: parse the command line, run a
:class:`~benchmarks.session.Session`, write the report and the chart.

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

from . import chart, report
from .install import Installer
from .plan import FULL, QUICK, Plan
from .progress import Progress
from .session import ALL_SYSTEMS, Session, make_entries

HERE = Path(__file__).resolve().parent
QUICK_SYSTEMS = ("asyncio", "threads")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="jackrabbit beside RabbitMQ, NATS JetStream and Redis Streams, one run.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run under 2 minutes: jackrabbit only, small counts")
    parser.add_argument("--systems", default=None,
                        help=f"comma-separated subset of {','.join(ALL_SYSTEMS)} (default: all;"
                        f" with --quick: {','.join(QUICK_SYSTEMS)})")
    parser.add_argument("--no-install", action="store_true",
                        help="never run apt-get or pip; report what is missing instead")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile step")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="where the report and chart go (default %(default)s)")
    ns = parser.parse_args(argv)
    chosen = (ns.systems.split(",") if ns.systems else
              list(QUICK_SYSTEMS if ns.quick else ALL_SYSTEMS))
    chosen = [c.strip() for c in chosen if c.strip()]
    unknown = [c for c in chosen if c not in ALL_SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(ALL_SYSTEMS)}")
    ns.chosen = chosen
    return ns


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
            f"({plan.w1_rounds}, {plan.w2_rounds} and {plan.w3_rounds} rounds, best run "
            "kept); failover and backlog one system at a time; load generators in separate "
            f"processes on the same cores; load average at the start {_load()}")


async def run(ns: argparse.Namespace) -> int:
    plan = QUICK if ns.quick else FULL
    progress = Progress()
    workroot = Path(tempfile.mkdtemp(prefix="jr-bench-"))
    session = Session(plan, progress, workroot)
    session.results.run_notes.append(_machine_note(plan))
    if plan.quick:
        session.results.run_notes.append(
            f"--quick: small counts (backlog {plan.w5_backlog:,} messages instead of "
            f"{FULL.w5_backlog:,}, one run of each step); figures are a smoke test, "
            "not a measurement")
    installer = Installer(allowed=not ns.no_install, say=progress.say)
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, lambda: main and main.cancel())
    entries = make_entries(ns.chosen)
    try:
        progress.say(f"{plan.name} run: {', '.join(ns.chosen)}; work dir {workroot}")
        await session.measure_limits()
        try:
            await session.start_all(entries, installer)
            await session.throughput_rounds()
            await session.latency_rounds()
            await session.per_system()
        finally:
            await session.stop_all(entries)
        shells = [c for c in ns.chosen if c in ("asyncio", "threads")]
        if shells and not ns.no_profile:
            await session.profiles(shells)
        if not plan.quick:
            await session.measure_limits()  # again: a ceiling is the better of the two tries
        session.results.run_notes.append(f"load average at the end {_load()}")
        session.limits_block()
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    return write_outputs(session, ns.out, plan)


def write_outputs(session: Session, out: Path, plan: Plan) -> int:
    stem = "quick" if plan.quick else "latest"
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
    if not plan.quick and out.resolve() == (HERE / "results").resolve() and readme.exists():
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
