"""Fixtures for what both shells' programs do the same way (``jackrabbit_host`` and the
command line): each test runs once per shell, as ``python -m jackrabbit_<shell>``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support import Certs, ServerProcess, run_module, write_certs

SHELLS = ("jackrabbit_asyncio", "jackrabbit_threads")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return write_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=SHELLS, ids=lambda module: module.removeprefix("jackrabbit_"))
def shell(request: pytest.FixtureRequest) -> str:
    """The module run with ``python -m``."""
    return str(request.param)


class Programs:
    """Runs the shell's program in ``cwd``: servers (killed at the end) and commands."""

    def __init__(self, shell: str, cwd: Path) -> None:
        self.shell = shell
        self.cwd = cwd
        self.started: list[ServerProcess] = []

    def server(self, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        process = ServerProcess(self.shell, *args, cwd=self.cwd, env=env)
        self.started.append(process)
        return process

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_module(self.shell, *args, cwd=cwd or self.cwd)

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()


@pytest.fixture
def programs(shell: str, tmp_path: Path) -> Iterator[Programs]:
    started = Programs(shell, tmp_path)
    yield started
    started.kill_all()


def server_flags(certs: Certs, db: Path, *extra: str) -> list[str]:
    """Flags for a server on 127.0.0.1, a free port, ``db`` and the test certificates."""
    return [
        "--host", "127.0.0.1", "--port", "0", "--db", str(db),
        "--chain-cert", certs.chain, "--private-key", certs.key, "--fsync", "never", *extra,
    ]  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The one stderr line of a failed command (no traceback), checking its status."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == status, result.stderr
    return lines[0]
