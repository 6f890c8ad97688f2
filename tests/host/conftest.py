"""Fixtures for what both shells' programs do the same way (``jackrabbit_host`` and the
command line): each test runs once per shell, as ``python -m jackrabbit_<shell>``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support import Certs, Programs, write_certs

SHELLS = ("jackrabbit_asyncio", "jackrabbit_threads")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return write_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=SHELLS, ids=lambda module: module.removeprefix("jackrabbit_"))
def shell(request: pytest.FixtureRequest) -> str:
    """The module run with ``python -m``."""
    return str(request.param)


@pytest.fixture
def programs(shell: str, tmp_path: Path) -> Iterator[Programs]:
    started = Programs(shell, tmp_path)
    yield started
    started.kill_all()


def one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The one stderr line of a failed command (no traceback), checking its status."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == status, result.stderr
    return lines[0]
