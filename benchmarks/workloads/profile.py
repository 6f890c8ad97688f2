"""Workload 6a: where a jackrabbit server's time goes. The server runs under
:mod:`benchmarks.profiled` (cProfile, all threads) while workload 1 drives it; the summary
lists the functions with the most self time as a share of the *busy* time (time blocked in
poll/select, lock waits, sleeps, accept and blocking reads is counted as idle and left out),
the same by layer of the stack, and jackrabbit's own functions by cumulative time."""

from __future__ import annotations

import os
import pstats
from dataclasses import dataclass
from pathlib import Path

IDLE_MARKERS = (
    "'poll' of 'select.",
    "'select' of 'select.",
    "select.select",
    "'acquire' of '_thread.",
    "time.sleep",
    "'accept' of '_socket",
    "'control' of 'select.",
    "'get' of '_queue.SimpleQueue'",
)
BLOCKING_READS = ("'recv' of '_socket", "'recv_into' of '_socket", "'read' of '_ssl.")

Key = tuple[str, int, str]


@dataclass(frozen=True, slots=True)
class Hotspot:
    label: str
    self_pct: float
    cum_pct: float
    calls: int


LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # (layer, markers in the file path or built-in's name); the first match wins
    ("TLS (ssl)", ("_ssl.", "/ssl.py", "sslproto.py", "jackrabbit_threads/tls.py")),
    ("socket I/O", ("_socket.", "'sendall'", "'recv'", "selector_events.py")),
    ("RocksDB (rocksdict)", ("Rdict", "WriteBatch", "rocksdict")),
    ("msgpack", ("msgpack",)),
    ("wsproto / h11", ("wsproto/", "h11/")),
    ("jackrabbit core", ("jackrabbit_core/",)),
    ("jackrabbit shell", ("jackrabbit_asyncio/", "jackrabbit_threads/")),
    ("asyncio event loop", ("asyncio/",)),
    ("threads, queues, locks", ("threading.py", "queue.py", "_thread.", "_queue.")),
)


def layer(key: Key) -> str:
    """Which layer of the stack a profiled function belongs to."""
    text = f"{key[0]} {key[2]}"
    for name, markers in LAYERS:
        if any(m in text for m in markers):
            return name
    return "other"


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    busy_s: float
    idle_s: float
    layers: tuple[tuple[str, float], ...]  # (layer, self % of busy), largest first
    top_self: tuple[Hotspot, ...]
    top_own_cum: tuple[Hotspot, ...]  # jackrabbit's own functions by cumulative time
    syncs: tuple[tuple[str, int, float], ...] = ()  # (RocksDB call, calls, mean ms)


def label(key: Key, root: str = "") -> str:
    """``path:line(function)`` with the repository or site-packages prefix cut off."""
    path, line, func = key
    if path == "~":
        return func
    for marker in ("site-packages/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("lib/"):
                path = path.split("/", 1)[1] if "/" in path else path
            break
    else:
        if root and path.startswith(root):
            path = os.path.relpath(path, root)
    return f"{path}:{line}({func})"


STARTUP_MARKERS = ("builtins.compile", "builtins.exec", "marshal.loads", "<frozen ",
                   "_imp.", "importlib")
BLOCKED_CALL_S = 0.001  # a socket/TLS read averaging more than this was mostly waiting


def _is_idle(key: Key, calls: int, self_s: float) -> bool:
    """Not the hot path: imports at start-up; and waiting rather than working: poll/select,
    lock waits, sleeps, accept, and reads that
    took over 1 ms per call on average (blocking reads of a thread-per-connection server;
    an event loop's non-blocking reads take microseconds)."""
    if any(m in key[0] or m in key[2] for m in STARTUP_MARKERS):
        return True  # start-up (imports), not the hot path
    if key[0] != "~":
        return False
    if "flush_wal" in key[2]:
        return True  # the fsync: the writer thread waits for the disk (reported apart)
    if any(m in key[2] for m in IDLE_MARKERS):
        return True
    return any(m in key[2] for m in BLOCKING_READS) and self_s > BLOCKED_CALL_S * max(calls, 1)


def summarize(stats: pstats.Stats, root: str = "", own: tuple[str, ...] = ("jackrabbit_",),
              top: int = 15) -> ProfileSummary:
    """The hot spots in ``stats`` (a merged cProfile of the server)."""
    table: dict[Key, tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    idle = sum(v[2] for k, v in table.items() if _is_idle(k, v[1], v[2]))
    total = sum(v[2] for v in table.values())
    busy = max(total - idle, 1e-9)
    rows = [(k, v) for k, v in table.items() if not _is_idle(k, v[1], v[2])]
    by_self = sorted(rows, key=lambda kv: kv[1][2], reverse=True)[:top]
    mine = [kv for kv in rows
            if any(f"/{o}" in kv[0][0] for o in own) and kv[0][2] != "<module>"]
    by_cum = sorted(mine, key=lambda kv: kv[1][3], reverse=True)[:top]

    def spot(kv: tuple[Key, tuple[int, int, float, float, object]]) -> Hotspot:
        k, (_cc, nc, tt, ct, _callers) = kv
        return Hotspot(label(k, root), 100 * tt / busy, min(100 * ct / busy, 100.0), nc)

    per_layer: dict[str, float] = {}
    for k, v in rows:
        per_layer[layer(k)] = per_layer.get(layer(k), 0.0) + v[2]
    layers = tuple(sorted(((name, 100 * t / busy) for name, t in per_layer.items()),
                          key=lambda nt: nt[1], reverse=True))
    syncs = tuple((k[2], v[1], 1000 * v[2] / max(v[1], 1)) for k, v in table.items()
                  if k[0] == "~" and "Rdict" in k[2] and ("flush_wal" in k[2]
                                                         or "'write'" in k[2]))
    return ProfileSummary(busy, idle, layers, tuple(spot(kv) for kv in by_self),
                          tuple(spot(kv) for kv in by_cum), syncs)


def markdown(summary: ProfileSummary, title: str) -> str:
    lines = [
        f"**{title}**: busy {summary.busy_s:.2f} s of profiled thread time, left out: "
        f"{summary.idle_s:.2f} s waiting (poll, locks, sleep, blocking reads, fsync) or "
        "importing modules at start-up.",
        "",
        "Self time by layer: " + ", ".join(f"{name} {pct:.0f}%" for name, pct in summary.layers
                                           if pct >= 0.5) + ".",
        "",
        "| function (by self time) | self % of busy | cumulative % | calls |",
        "|---|--:|--:|--:|",
    ]
    lines += [f"| `{h.label}` | {h.self_pct:.1f} | {h.cum_pct:.1f} | {h.calls:,} |"
              for h in summary.top_self]
    for name, calls, mean_ms in summary.syncs:
        what = ("the WAL fsync, counted as waiting above" if "flush_wal" in name
                else "the batch write")
        lines += ["", f"RocksDB `{name}` ({what}): {calls:,} calls, {mean_ms:.2f} ms each on "
                      "average, wall time in the writer thread, including the wait to get the "
                      "GIL back afterwards (Python's switch interval is 5 ms)."]
    lines += ["", "cProfile does not see a `with lock:` block's wait for the lock: that "
                  "wait shows as self time of the function holding the `with`. Cumulative "
                  "time of a thread's loop function includes its idle waits."]
    if summary.top_own_cum:
        lines += ["", "| jackrabbit function (by cumulative time) | cumulative % | self % | "
                      "calls |", "|---|--:|--:|--:|"]
        lines += [f"| `{h.label}` | {h.cum_pct:.1f} | {h.self_pct:.1f} | {h.calls:,} |"
                  for h in summary.top_own_cum]
    return "\n".join(lines)


def load(path: Path) -> pstats.Stats:
    return pstats.Stats(str(path))
