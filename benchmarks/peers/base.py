"""What every peer offers the orchestrator."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from ..install import Need
from ..procs import ServerProcess


class Peer(ABC):
    """A server under test. ``start`` returns the endpoint (a JSON-able dict) its driver
    connects to; ``stop`` ends everything it started."""

    name: str  # shown in tables
    driver: str  # module name under benchmarks.drivers
    durability: str  # one line for the README/report
    need: Need

    def __init__(self) -> None:
        self.server: ServerProcess | None = None
        self.extra: list[ServerProcess] = []
        self.stopped = False
        self.stop_note = ""  # what went wrong when stopping, if anything

    @abstractmethod
    async def start(self, workdir: Path) -> dict[str, Any]: ...

    @property
    def pid(self) -> int:
        """The process whose tree's RSS counts as this server's memory."""
        assert self.server is not None, "not started"
        return self.server.pid

    def version(self) -> str:
        return ""

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        for proc in reversed(self.extra):
            await proc.stop(timeout=5)


def debian_version(package: str) -> str:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()
