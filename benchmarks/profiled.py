"""Run a module as ``__main__`` under cProfile, every thread included.

``python -m benchmarks.profiled OUT MODULE [ARGS...]`` profiles the main thread and each
thread started afterwards (each gets its own profiler, merged at the end) and writes the
merged ``pstats`` file to ``OUT`` when the module exits, also when it exits through
SIGTERM/SIGINT handled by the module itself or, failing that, by this wrapper.
"""

from __future__ import annotations

import cProfile
import pstats
import runpy
import signal
import sys
import threading
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_original = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]


def _profiled_bootstrap(self: threading.Thread) -> None:
    prof = cProfile.Profile()
    with _lock:
        _profiles.append(prof)
    prof.enable()
    try:
        _original(self)
    finally:
        prof.disable()


def _exit(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    out, module, *args = sys.argv[1:]
    threading.Thread._bootstrap_inner = _profiled_bootstrap  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, _exit)
    sys.argv = [module, *args]
    main_prof = cProfile.Profile()
    code: Any = 0
    main_prof.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    finally:
        main_prof.disable()
        stats = pstats.Stats(main_prof)
        with _lock:
            others = list(_profiles)
        for prof in others:
            try:
                stats.add(prof)
            except Exception as exc:  # a profiler with nothing in it
                print(f"profiled: skipped a thread's profile: {exc}", file=sys.stderr)
        stats.dump_stats(out)
        print(f"profiled: {len(others) + 1} thread profiles written to {out}", file=sys.stderr)
    return code if isinstance(code, int) else 1


if __name__ == "__main__":
    raise SystemExit(main())
