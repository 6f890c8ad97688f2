"""Static checks run by the test command: ``mypy --strict`` and ``ruff`` stay clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )


def test_mypy_strict_on_core_and_shells() -> None:
    result = _run(
        "mypy",
        "--strict",
        "jackrabbit_core",
        "jackrabbit_asyncio",
        "jackrabbit_threads",
        "jackrabbit_host",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_clean() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
