"""Markdown out of :class:`~benchmarks.results.Results`: one table per workload (medians of
the rounds with their spread, ratios to jackrabbit asyncio), the targets issue 11 set (each
met or missed by how much), and for an A/B run each shell against its twin round by round.

Pure functions of the results; the chart lives in :mod:`benchmarks.chart`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .results import BASELINE, SECTIONS, Better, Results, Section
from .stats import Spread, paired


def fmt(value: float | None, digits: int = 3) -> str:
    """A figure for a table: thousands separators, ``digits`` significant digits, ``—`` if
    missing. ``digits=0`` shows an integer count."""
    if value is None:
        return "—"
    if digits == 0:
        return f"{round(value):,}"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{round(value):,}"
    value = float(f"{value:.{digits}g}")  # rounded first: 9.9999 shows as 10.0, not 10.00
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


def fmt_spread(sp: Spread | None, digits: int = 3) -> str:
    """``low-high`` of a figure's rounds; ``—`` if it has fewer than two."""
    if sp is None or sp.n < 2:
        return "—"
    return f"{fmt(sp.low, digits)}-{fmt(sp.high, digits)}"


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
        if m.spread:
            header.append("spread (min-max)")
            align.append("--:")
        if m.better != "none" and m.ratio:
            header.append("x jr-asyncio")
            align.append("--:")
    header.append("notes")
    align.append("---")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for system in systems:
        row = [system]
        rounds = 0
        for m in section.metrics:
            value = results.get(section.key, m.key, system)
            row.append(fmt(value, m.digits))
            sp = results.spread(section.key, m.key, system)
            rounds = max(rounds, sp.n if sp else 0)
            if m.spread:
                row.append(fmt_spread(sp, m.digits))
            if m.better != "none" and m.ratio:
                base = results.get(section.key, m.key, BASELINE)
                row.append(fmt_ratio(ratio(value, base)))
        notes = results.notes.get((section.key, system), [])
        if rounds:
            notes = [f"{rounds} round{'s' if rounds > 1 else ''}", *notes]
        row.append("; ".join(notes))
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
    return "\n".join(lines)


def _has_row(results: Results, section: Section, system: str) -> bool:
    if (section.key, system) in results.notes:
        return True
    return any(results.get(section.key, m.key, system) is not None for m in section.metrics)


@dataclass(frozen=True, slots=True)
class Target:
    """One target, checked against this run."""

    key: str  # a short stable id
    name: str
    measured: str
    met: bool | None  # None: could not be checked (a figure is missing)
    miss: str = ""  # by how much it was missed


NATS = "NATS JetStream"
RABBIT = "RabbitMQ"
THREADS = "jackrabbit threads"
THROUGHPUT_ROWS = (("w1", "1p 100 B"), ("w2_100", "4p 100 B"), ("w2_1k", "4p 1 KiB"),
                   ("w2_64k", "4p 64 KiB"))
FLAT_MIB = 5.0  # "flat": the second half of the backlog grows RSS by at most this


def _short(value: float, bound: float, better: Better, need: str) -> str:
    """How far ``value`` is from ``bound`` when the target is missed."""
    if better == "higher":
        return f"{100 * (1 - value / bound):.0f}% short{need}" if bound else "short"
    return f"{100 * (value / bound - 1):.0f}% over{need}" if bound else "over"


def _vs(key: str, name: str, mine: float | None, theirs: float | None, factor: float,
        better: Better, unit: str, who: str) -> Target:
    """``mine`` against ``factor`` times ``theirs`` (``who``'s figure)."""
    r = ratio(mine, theirs)
    if r is None or mine is None or theirs is None:
        return Target(key, name, f"{fmt(mine)} vs {fmt(theirs)} {unit} ({who}: "
                      f"{'not in this run' if theirs is None else 'measured'})", None)
    measured = f"{fmt_ratio(r)} ({fmt(mine)} vs {fmt(theirs)} {unit})"
    met = r >= factor if better == "higher" else r <= factor
    sign = ">=" if better == "higher" else "<="
    need = f": needs {sign} {fmt(factor * theirs)} {unit}"
    return Target(key, name, measured, met, "" if met else _short(r, factor, better, need))


def _bound(key: str, name: str, value: float | None, bound: float, better: Better, unit: str,
           measured: str | None = None) -> Target:
    """``value`` against a fixed ``bound``."""
    text = measured if measured is not None else f"{fmt(value)} {unit}"
    if value is None:
        return Target(key, name, text, None)
    met = value >= bound if better == "higher" else value <= bound
    return Target(key, name, text, met, "" if met else _short(value, bound, better, ""))


def targets(results: Results) -> list[Target]:
    """Issue 11's targets for jackrabbit asyncio (then issue 9's memory checks), each from
    the medians of this run."""
    get, jr = results.get, BASELINE
    out = [
        _vs(f"cpu_{key}", f"server CPU per message, {label}, <= 1.3x NATS JetStream's",
            get(section, "cpu_server", jr), get(section, "cpu_server", NATS), 1.3, "lower",
            "µs/msg", NATS)
        for section, key, label in (("w1", "1p", "1 producer 100 B"),
                                    ("w2_100", "4p", "4 producers 100 B"))
    ]
    e2e = get("w1", "e2e", jr)
    out += [
        _vs("e2e_nats", "end to end, 1 producer, >= 1.2x NATS JetStream", e2e,
            get("w1", "e2e", NATS), 1.2, "higher", "msg/s", NATS),
        _vs("e2e_rabbit", "end to end, 1 producer, >= 1.5x RabbitMQ", e2e,
            get("w1", "e2e", RABBIT), 1.5, "higher", "msg/s", RABBIT),
        _vs("4p_vs_1p", "4 producers delivered >= 0.95x 1 producer (100 B)",
            get("w2_100", "e2e", jr), e2e, 0.95, "higher", "msg/s", "1 producer"),
        _vs("64k", "64 KiB delivered MB/s >= RabbitMQ's", get("w2_64k", "mbps", jr),
            get("w2_64k", "mbps", RABBIT), 1.0, "higher", "MB/s", RABBIT),
        _bound("p50", "p50 at 1,000 msg/s <= 0.8 ms", get("w3", "p50", jr), 0.8, "lower",
               "ms"),
        _bound("p99", "p99 at 1,000 msg/s <= 2 ms", get("w3", "p99", jr), 2.0, "lower", "ms"),
        _bound("idle_rss", "idle RSS <= 36 MiB", get("w5", "idle", jr), 36, "lower", "MiB"),
    ]
    out += [_peak_target(results), _flat_target(results), _threads_target(results)]
    out += [
        _bound("idle_conn", "(issue 9) an idle TLS connection costs a few tens of KiB "
               "(<= 64 KiB)", get("w6", "idle_conn", jr), 64, "lower", "KiB"),
        _bound("pretls_left", "(issue 9) memory comes back after pre-TLS connections close "
               "(<= 5 MiB left)", get("w6", "pretls_left", jr), 5, "lower", "MiB"),
    ]
    out += [_bound(f"{mix}_flat", f"(issue 9) a client that never reads, sending {mix}: RSS "
                   "flat over its second half (<= 2 MiB)", get("w6", f"{mix}_late", jr), 2,
                   "lower", "MiB")
            for mix in ("pings", "adds")]
    return out


def _peak_target(results: Results) -> Target:
    peaks = {label: v for label, key in (("workloads 1-3", "busy"),
                                         ("backlog fill", "fill_peak"),
                                         ("with the backlog", "backlog"))
             if (v := results.get("w5", key, BASELINE)) is not None}
    measured = ", ".join(f"{k} {fmt(v)}" for k, v in peaks.items()) + " MiB" if peaks else "—"
    return _bound("peak_rss", "peak RSS under every workload <= 90 MiB",
                  max(peaks.values()) if peaks else None, 90, "lower", "MiB", measured)


def _flat_target(results: Results) -> Target:
    half = results.get("w5", "half", BASELINE)
    full = results.get("w5", "backlog", BASELINE)
    n = results.get("w5", "backlog_n", BASELINE)
    growth = full - half if full is not None and half is not None else None
    measured = (f"{fmt(half)} MiB at half, {fmt(full)} MiB full: {growth:+.1f} MiB"
                if growth is not None else "—")
    return _bound("flat_backlog", f"RSS flat at a {fmt(n, 0)}-message backlog (the second "
                  f"half adds <= {FLAT_MIB:.0f} MiB)", growth, FLAT_MIB, "lower", "MiB",
                  measured)


def _threads_target(results: Results) -> Target:
    name = "threads >= 0.8x asyncio on every throughput row (end to end)"
    ratios = {label: r for section, label in THROUGHPUT_ROWS
              if (r := ratio(results.get(section, "e2e", THREADS),
                             results.get(section, "e2e", BASELINE))) is not None}
    if not ratios:
        return Target("threads", name, "—", None)
    measured = ", ".join(f"{label} {fmt_ratio(r)}" for label, r in ratios.items())
    label, lowest = min(ratios.items(), key=lambda kv: kv[1])
    if lowest >= 0.8:
        return Target("threads", name, measured, True)
    return Target("threads", name, measured, False,
                  f"{label} {_short(lowest, 0.8, 'higher', '')}")


def targets_table(results: Results) -> str:
    lines = ["| target | this run (medians) | met? |", "|---|---|---|"]
    for t in targets(results):
        verdict = {True: "yes", False: f"**no**: {t.miss}" if t.miss else "**no**",
                   None: "not measured"}[t.met]
        lines.append(f"| {t.name} | {t.measured} | {verdict} |")
    return "\n".join(lines)


AB_FIGURES = (
    *((section, "e2e", f"{label}: delivered+acked msg/s") for section, label in THROUGHPUT_ROWS),
    *((section, "cpu_server", f"{label}: server CPU µs/msg") for section, label in
      THROUGHPUT_ROWS),
    ("w3", "p50", "latency p50 ms"),
    ("w3", "p99", "latency p99 ms"),
    ("w3", "cpu_server", "server CPU µs/msg at 1,000 msg/s"),
    ("w4", "first", "failover: kill to standby's 1st msg, ms"),
    ("w5", "idle", "idle RSS MiB"),
    ("w5", "busy", "peak RSS under workloads 1-3, MiB"),
    ("w5", "backlog", "RSS with the backlog, MiB"),
    ("w6", "idle_conn", "KiB per idle TLS connection"),
    ("w6", "pretls_conn", "KiB per pre-TLS connection"),
    ("w6", "pings_growth", "MiB growth under a non-reader sending pings"),
    ("w6", "adds_growth", "MiB growth under a non-reader sending adds"),
)


def ab_pairs(results: Results) -> list[tuple[str, str]]:
    """(system, its twin at a git ref) for every ``X@REF`` row whose ``X`` is in the run."""
    return [(base, s) for s in results.systems if "@" in s
            and (base := s.split("@", 1)[0]) in results.systems]


def ab_table(results: Results, a: str, b: str) -> str:
    """``a`` against ``b``: for figures measured in rounds, the ratio within each round
    (both ran in it, so it met the same disturbances), else the ratio of the two figures."""
    lines = [f"| figure | A: {a} | B: {b} | A / B, median of rounds | min-max | rounds A "
             "was higher |", "|---|--:|--:|--:|--:|--:|"]
    for section, metric, label in AB_FIGURES:
        va, vb = results.get(section, metric, a), results.get(section, metric, b)
        if va is None and vb is None:
            continue
        pair = paired(results.by_round(section, metric, a),
                      results.by_round(section, metric, b))
        if pair is not None and pair.spread.n > 1:
            cells = [fmt_ratio(pair.spread.median),
                     f"{fmt_ratio(pair.spread.low)}-{fmt_ratio(pair.spread.high)}",
                     f"{pair.a_higher} of {pair.spread.n}"]
        else:
            cells = [fmt_ratio(ratio(va, vb)), "—", "—"]
        lines.append(f"| {label} | {fmt(va)} | {fmt(vb)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(results: Results, title: str = "Benchmark results") -> str:
    """The whole Markdown report."""
    parts = [f"# {title}", ""]
    if results.run_notes:
        parts += [*(f"- {n}" for n in results.run_notes), ""]
    parts += ["## Targets (issue 11)", "", targets_table(results), ""]
    for a, b in ab_pairs(results):
        parts += [f"## A/B: {a} against {b}", "", ab_table(results, a, b), "",
                  "Higher is better for msg/s, lower for CPU, latency, failover time and "
                  "memory. The per-round ratios pair runs that went one after the other; "
                  "a change is a regression only when the ratio is worse in most rounds "
                  "and beyond the spread between rounds.", ""]
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
