"""jackrabbit itself: either shell, started with ``--dev`` certificates on a free port."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from ..install import Need
from ..procs import LOOPBACK, ServerProcess, free_port
from .base import Peer

Shell = Literal["asyncio", "threads"]


class Jackrabbit(Peer):
    driver = "jackrabbit_ws"
    durability = (
        "RocksDB, `--fsync always`: each group-committed batch is written with a synced "
        "WriteBatch before its adds are confirmed"
    )
    need = Need(modules=(("websockets", "websockets>=13"), ("msgpack", "msgpack")))

    def __init__(self, shell: Shell, name: str | None = None, driver: str | None = None,
                 profile_to: Path | None = None) -> None:
        super().__init__()
        self.shell = shell
        self.name = name or f"jackrabbit {shell}"
        if driver:
            self.driver = driver
        self.profile_to = profile_to

    async def start(self, workdir: Path) -> dict[str, Any]:
        db = workdir / "db"
        port = free_port()
        module = f"jackrabbit_{self.shell}"
        flags = ["--host", LOOPBACK, "--port", str(port), "--db", str(db), "--dev",
                 "--fsync", "always"]
        if self.profile_to is not None:
            argv = [sys.executable, "-m", "benchmarks.profiled", str(self.profile_to),
                    module, *flags]
        else:
            argv = [sys.executable, "-m", module, *flags]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # The repo root on the path, wherever the benchmark was started from.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                    else "")
        self.server = ServerProcess(self.name.replace(" ", "-"), argv, workdir, env)
        await self.server.start()
        match = await self.server.wait_for(r"jackrabbit listening on wss://([^\s]+):(\d+)", 60)
        real_port = int(match.group(2))
        ca = db / "dev-certs" / "ca.pem"
        try:
            printed = await self.server.wait_for(r"dev CA certificate: (\S+)", 10)
        except RuntimeError:
            pass  # fall back on where --dev keeps it
        else:
            ca = Path(printed.group(1))
            if not ca.is_absolute():
                ca = workdir / ca
        return {"url": f"wss://{LOOPBACK}:{real_port}", "ca": str(ca)}

    async def stop(self) -> None:
        if self.server is not None:
            code = await self.server.stop(timeout=30)
            if code not in (0, None):
                self.stop_note = f"exit code {code} on SIGTERM"
