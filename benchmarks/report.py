"""Markdown out of :class:`~benchmarks.results.Results`: one table per workload, ratios to
jackrabbit asyncio, and the targets the issue set, each marked met or missed by how much.

Pure functions of the results; the chart lives in :mod:`benchmarks.chart`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .results import BASELINE, SECTIONS, Results, Section


def fmt(value: float | None, digits: int = 3) -> str:
    """A figure for a table: thousands separators, ``digits`` significant digits, ``—`` if
    missing. ``digits=0`` shows an integer count."""
    if value is None:
        return "—"
    if digits == 0:
        return f"{round(value):,}"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** (digits - 1):
        return f"{round(value):,}"
    decimals = digits - 1 - math.floor(math.log10(magnitude))
    return f"{value:.{decimals}f}"


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base``, or ``None`` when either is missing or the base is 0."""
    if value is None or base is None or base == 0:
        return None
    return value / base


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    if r >= 100:
        return f"{r:,.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    return f"{r:.2f}x"


def section_table(results: Results, section: Section) -> str:
    """The Markdown table for one workload (empty string if nothing was measured)."""
    systems = [s for s in results.systems if _has_row(results, section, s)]
    if not systems:
        return ""
    header = ["system"]
    align = ["---"]
    for m in section.metrics:
        header.append(m.title)
        align.append("--:")
        if m.better != "none":
            header.append("x jr-asyncio")
            align.append("--:")
    header.append("notes")
    align.append("---")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for system in systems:
        row = [system]
        for m in section.metrics:
            value = results.get(section.key, m.key, system)
            row.append(fmt(value, m.digits))
            if m.better != "none":
                base = results.get(section.key, m.key, BASELINE)
                row.append(fmt_ratio(ratio(value, base)))
        row.append("; ".join(results.notes.get((section.key, system), [])))
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
    return "\n".join(lines)


def _has_row(results: Results, section: Section, system: str) -> bool:
    if (section.key, system) in results.notes:
        return True
    return any(results.get(section.key, m.key, system) is not None for m in section.metrics)


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue, checked against this run."""

    name: str
    measured: str
    met: bool | None  # None: could not be checked (a figure is missing)


def targets(results: Results) -> list[Target]:
    """The issue's targets, each from figures of this run."""
    out: list[Target] = []
    jr = results.get("w1", "e2e", BASELINE)
    rabbit = results.get("w1", "e2e", "RabbitMQ")
    nats = results.get("w1", "e2e", "NATS JetStream")
    r = ratio(jr, rabbit)
    out.append(
        Target(
            "e2e throughput (1p1c 100 B) >= 5x RabbitMQ",
            f"{fmt_ratio(r)} ({fmt(jr)} vs {fmt(rabbit)} msg/s)",
            None if r is None else r >= 5,
        )
    )
    r = ratio(jr, nats)
    out.append(
        Target(
            "e2e throughput (1p1c 100 B) >= NATS JetStream",
            f"{fmt_ratio(r)} ({fmt(jr)} vs {fmt(nats)} msg/s)",
            None if r is None else r >= 1,
        )
    )
    jr_p99 = results.get("w3", "p99", BASELINE)
    peers = {
        s: v
        for s in results.systems
        if not s.startswith("jackrabbit") and (v := results.get("w3", "p99", s)) is not None
    }
    if peers and jr_p99 is not None:
        best_name, best = min(peers.items(), key=lambda kv: kv[1])
        out.append(
            Target(
                "p99 latency at 1,000 msg/s <= best peer's",
                f"{fmt(jr_p99)} ms vs {fmt(best)} ms ({best_name})",
                jr_p99 <= best,
            )
        )
    else:
        out.append(Target("p99 latency at 1,000 msg/s <= best peer's", "no peer measured", None))
    jr_fo = results.get("w4", "first", BASELINE)
    rabbit_fo = results.get("w4", "first", "RabbitMQ")
    lost = results.get("w4", "lost", BASELINE)
    out.append(
        Target(
            "failover <= RabbitMQ's, zero loss",
            f"{fmt(jr_fo)} ms vs {fmt(rabbit_fo)} ms, lost {fmt(lost, 0)}",
            None
            if jr_fo is None or rabbit_fo is None or lost is None
            else (jr_fo <= rabbit_fo and lost == 0),
        )
    )
    threads = results.get("w1", "e2e", "jackrabbit threads")
    r = ratio(threads, jr)
    out.append(
        Target(
            "threads shell >= 0.5x asyncio shell (1p1c e2e)",
            f"{fmt_ratio(r)} ({fmt(threads)} vs {fmt(jr)} msg/s)",
            None if r is None else r >= 0.5,
        )
    )
    return out


def targets_table(results: Results) -> str:
    lines = ["| target | this run | met? |", "|---|---|---|"]
    for t in targets(results):
        verdict = {True: "yes", False: "**no**", None: "not measured"}[t.met]
        lines.append(f"| {t.name} | {t.measured} | {verdict} |")
    return "\n".join(lines)


def render(results: Results, title: str = "Benchmark results") -> str:
    """The whole Markdown report."""
    parts = [f"# {title}", ""]
    if results.run_notes:
        parts += [*(f"- {n}" for n in results.run_notes), ""]
    parts += ["## Targets", "", targets_table(results), ""]
    for section in SECTIONS:
        table = section_table(results, section)
        if table:
            parts += [f"## {section.title}", "", table, ""]
    for block_title, body in results.blocks:
        parts += [f"## {block_title}", "", body.rstrip(), ""]
    if results.durability:
        parts += ["## Durability of each system in this run", ""]
        parts += [f"- **{name}**: {text}" for name, text in results.durability.items()]
        parts.append("")
    return "\n".join(parts)


START_MARK = "<!-- latest-run -->"
END_MARK = "<!-- /latest-run -->"


def splice(document: str, body: str) -> str:
    """``document`` with the text between the latest-run markers replaced by ``body``
    (unchanged if the markers are missing)."""
    start = document.find(START_MARK)
    end = document.find(END_MARK)
    if start < 0 or end < start:
        return document
    return document[: start + len(START_MARK)] + "\n" + body.strip() + "\n" + document[end:]


def demote_headings(markdown: str, levels: int = 1) -> str:
    """Every Markdown heading ``levels`` deeper (to nest a report inside a README)."""
    return "\n".join("#" * levels + line if line.startswith("#") else line
                     for line in markdown.splitlines())
