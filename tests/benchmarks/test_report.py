"""The Markdown report: number formats, ratios to jackrabbit asyncio, and the targets."""

from __future__ import annotations

import cProfile
import pstats

import pytest

from benchmarks import report
from benchmarks.results import BASELINE, SECTION_BY_KEY, Results
from benchmarks.workloads import profile


def test_fmt_significant_digits_and_missing() -> None:
    assert report.fmt(None) == "—"
    assert report.fmt(123456.7) == "123,457"
    assert report.fmt(2.345) == "2.35"
    assert report.fmt(0.01234) == "0.0123"
    assert report.fmt(45.66) == "45.7"
    assert report.fmt(0) == "0"
    assert report.fmt(7.0, 0) == "7"


def test_ratio_and_its_format() -> None:
    assert report.ratio(10, 5) == 2
    assert report.ratio(None, 5) is None
    assert report.ratio(3, 0) is None
    assert report.fmt_ratio(0.1834) == "0.18x"
    assert report.fmt_ratio(12.34) == "12.3x"
    assert report.fmt_ratio(None) == "—"


def _results() -> Results:
    res = Results()
    for name in (BASELINE, "jackrabbit threads", "RabbitMQ", "NATS JetStream"):
        res.add_system(name, "durable")
    res.put("w1", "e2e", BASELINE, 30_000)
    res.put("w1", "adds", BASELINE, 32_000)
    res.put("w1", "e2e", "jackrabbit threads", 12_000)
    res.put("w1", "e2e", "RabbitMQ", 6_000)
    res.put("w1", "e2e", "NATS JetStream", 15_000)
    res.put("w3", "p99", BASELINE, 1.5)
    res.put("w3", "p99", "NATS JetStream", 2.0)
    res.put("w3", "p99", "RabbitMQ", 9.0)
    res.put("w4", "first", BASELINE, 3.0)
    res.put("w4", "first", "RabbitMQ", 8.0)
    res.put("w4", "lost", BASELINE, 0)
    res.note("w1", "RabbitMQ", "a note | with a pipe")
    return res


def test_section_table_rows_ratios_and_notes() -> None:
    table = report.section_table(_results(), SECTION_BY_KEY["w1"])
    lines = table.splitlines()
    assert lines[0].startswith("| system | confirmed adds/s | x jr-asyncio |")
    rabbit = next(line for line in lines if line.startswith("| RabbitMQ"))
    assert "| 6,000 | 0.20x |" in rabbit
    assert "a note / with a pipe" in rabbit  # a pipe would break the table
    baseline = next(line for line in lines if line.startswith(f"| {BASELINE}"))
    assert "| 30,000 | 1.00x |" in baseline


def test_empty_section_renders_nothing() -> None:
    assert report.section_table(_results(), SECTION_BY_KEY["w2_64k"]) == ""


def test_targets_met_and_missed() -> None:
    verdicts = {t.name: t.met for t in report.targets(_results())}
    assert verdicts["e2e throughput (1p1c 100 B) >= 5x RabbitMQ"] is True
    assert verdicts["e2e throughput (1p1c 100 B) >= NATS JetStream"] is True
    assert verdicts["p99 latency at 1,000 msg/s <= best peer's"] is True
    assert verdicts["failover <= RabbitMQ's, zero loss"] is True
    assert verdicts["threads shell >= 0.5x asyncio shell (1p1c e2e)"] is False


def test_targets_without_peers_are_not_measured() -> None:
    res = Results()
    res.add_system(BASELINE, "durable")
    res.put("w1", "e2e", BASELINE, 1)
    assert all(t.met is None for t in report.targets(res))


def test_render_has_every_part() -> None:
    text = report.render(_results(), "title")
    assert text.startswith("# title")
    assert "## Targets" in text and "## 1. Throughput" in text
    assert "## Durability of each system in this run" in text


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(KeyError):
        Results().put("w1", "nope", BASELINE, 1)


def _busy(n: int) -> int:
    return sum(i * i for i in range(n))


def test_profile_summary_names_the_hot_function() -> None:
    prof = cProfile.Profile()
    prof.enable()
    _busy(200_000)
    prof.disable()
    summary = profile.summarize(pstats.Stats(prof), own=("tests/benchmarks",))
    assert any("_busy" in h.label or "genexpr" in h.label for h in summary.top_self)
    assert sum(h.self_pct for h in summary.top_self) <= 100.0 + 1e-6
    assert "| function (by self time) |" in profile.markdown(summary, "t")


def test_splice_replaces_between_markers_only() -> None:
    doc = f"intro\n{report.START_MARK}\nold\n{report.END_MARK}\noutro\n"
    out = report.splice(doc, "new table")
    assert out == f"intro\n{report.START_MARK}\nnew table\n{report.END_MARK}\noutro\n"
    assert report.splice("no markers", "x") == "no markers"


def test_demote_headings() -> None:
    assert report.demote_headings("# a\ntext\n## b", 2) == "### a\ntext\n#### b"
