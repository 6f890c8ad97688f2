"""An agent's two pipes to the orchestrator: JSON lines out on stdout (written straight to
the pipe, so what an agent reported survives its SIGKILL) and in on stdin."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any


def emit(obj: dict[str, Any]) -> None:
    """One JSON line to the orchestrator."""
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    view = memoryview(data)
    while view:
        written = os.write(1, view)
        view = view[written:]


async def stdin_lines() -> asyncio.StreamReader:
    """The orchestrator's lines (call once per process)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def wait_for_line(reader: asyncio.StreamReader, kind: str, timeout: float) -> None:
    """Wait (at most ``timeout`` seconds) for a line of type ``kind``, skipping others."""
    async def wait() -> None:
        while True:
            line = await reader.readline()
            if not line:
                raise RuntimeError(f"orchestrator went away before {kind}")
            if json.loads(line).get("type") == kind:
                return

    await asyncio.wait_for(wait(), timeout)
