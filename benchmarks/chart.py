"""The PNG: end-to-end throughput, server CPU per message and latency side by side, one bar
group per system; each bar is the median of the rounds, its whisker the lowest and highest
round."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .results import Results

Figures = tuple[tuple[str, str, str], ...]  # (section, metric, label under the group)

THROUGHPUT: Figures = (("w1", "e2e", "1p1c 100 B"), ("w2_100", "e2e", "4p1c 100 B"),
                       ("w2_1k", "e2e", "4p1c 1 KiB"))
CPU: Figures = (("w1", "cpu_server", "1p1c 100 B"), ("w2_100", "cpu_server", "4p1c 100 B"),
                ("w2_1k", "cpu_server", "4p1c 1 KiB"))
LATENCY: Figures = (("w3", "p50", "p50"), ("w3", "p99", "p99"))


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    ylabel: str
    figures: Figures
    label: Callable[[float], str]  # the text above a bar


PANELS = (
    Panel("End-to-end throughput", "delivered + acked msg/s (higher is better)", THROUGHPUT,
          lambda y: f"{y / 1000:.1f}k"),
    Panel("Server CPU per message", "µs of server CPU per message (lower is better)", CPU,
          lambda y: f"{y:.0f}"),
    Panel("End-to-end latency at 1,000 msg/s", "ms (lower is better)", LATENCY,
          lambda y: f"{y:.2f}"),
)


def draw(results: Results, path: Path, title: str) -> Path | None:
    """Write the chart to ``path``; ``None`` if nothing to draw or matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    systems = [s for s in results.systems
               if any(results.get(sec, met, s) is not None
                      for panel in PANELS for sec, met, _ in panel.figures)]
    if not systems:
        return None
    fig, axes = plt.subplots(1, len(PANELS), figsize=(18, 5.8))
    width = 0.8 / len(systems)
    offset = width * (len(systems) - 1) / 2
    for ax, panel in zip(axes, PANELS, strict=True):
        for i, system in enumerate(systems):
            xs = [j + i * width for j in range(len(panel.figures))]
            ys = [results.get(sec, met, system) or 0 for sec, met, _ in panel.figures]
            bars = ax.bar(xs, ys, width, label=system,
                          yerr=_whiskers(results, panel.figures, system),
                          error_kw={"elinewidth": 0.8, "capsize": 2})
            ax.bar_label(bars, labels=[panel.label(y) if y else "" for y in ys], fontsize=7,
                         rotation=90, padding=2)
        ax.set_xticks([j + offset for j in range(len(panel.figures))],
                      [label for _, _, label in panel.figures])
        ax.set_ylabel(panel.ylabel + ", median of rounds")
        ax.set_title(panel.title)
        ax.margins(y=0.18)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(systems), 4), fontsize=9,
               frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _whiskers(results: Results, figures: Figures, system: str) -> list[list[float]]:
    """matplotlib's ``yerr`` rows (below, above the median) from each figure's spread."""
    below: list[float] = []
    above: list[float] = []
    for section, metric, _ in figures:
        sp = results.spread(section, metric, system)
        below.append(sp.median - sp.low if sp else 0.0)
        above.append(sp.high - sp.median if sp else 0.0)
    return [below, above]
