"""The PNG: throughput (left) and latency (right) side by side, one bar group per system."""

from __future__ import annotations

from pathlib import Path

from .results import Results

THROUGHPUT = (("w1", "1p1c 100 B"), ("w2_100", "4p1c 100 B"), ("w2_1k", "4p1c 1 KiB"))
LATENCY = (("p50", "p50"), ("p99", "p99"))


def draw(results: Results, path: Path, title: str) -> Path | None:
    """Write the chart to ``path``; ``None`` if nothing to draw or matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    systems = [s for s in results.systems
               if any(results.get(k, "e2e", s) is not None for k, _ in THROUGHPUT)
               or results.get("w3", "p99", s) is not None]
    if not systems:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.8))
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        xs = [j + i * width for j in range(len(THROUGHPUT))]
        ys = [results.get(k, "e2e", system) or 0 for k, _ in THROUGHPUT]
        bars = left.bar(xs, ys, width, label=system)
        left.bar_label(bars, labels=[f"{y / 1000:.1f}k" if y else "" for y in ys],
                       fontsize=7, rotation=90, padding=2)
        xs = [j + i * width for j in range(len(LATENCY))]
        ys = [results.get("w3", k, system) or 0 for k, _ in LATENCY]
        bars = right.bar(xs, ys, width, label=system)
        right.bar_label(bars, labels=[f"{y:.2f}" if y else "" for y in ys], fontsize=7,
                        rotation=90, padding=2)
    offset = width * (len(systems) - 1) / 2
    left.set_xticks([j + offset for j in range(len(THROUGHPUT))], [t for _, t in THROUGHPUT])
    left.set_ylabel("delivered + acked msg/s (higher is better)")
    left.set_title("End-to-end throughput")
    left.margins(y=0.18)
    right.set_xticks([j + offset for j in range(len(LATENCY))], [t for _, t in LATENCY])
    right.set_ylabel("ms (lower is better)")
    right.set_title("End-to-end latency at 1,000 msg/s")
    right.margins(y=0.18)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(systems), 3), fontsize=9,
               frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
