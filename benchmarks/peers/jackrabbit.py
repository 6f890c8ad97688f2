"""jackrabbit itself: either shell, started with ``--dev`` certificates on a free port, from
this checkout or from another source tree (an A/B run's exported git ref)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from ..install import Need
from ..procs import LOOPBACK, ServerProcess, free_port
from .base import Peer

Shell = Literal["asyncio", "threads"]
ROOT = Path(__file__).resolve().parents[2]


class Jackrabbit(Peer):
    driver = "jackrabbit_ws"
    durability = (
        "RocksDB, `--fsync always`: each group-committed batch is written with a synced "
        "WriteBatch before its adds are confirmed"
    )
    need = Need(modules=(("websockets", "websockets>=13"), ("msgpack", "msgpack")))

    def __init__(self, shell: Shell, name: str | None = None, driver: str | None = None,
                 profile_to: Path | None = None, root: Path = ROOT) -> None:
        super().__init__()
        self.shell = shell
        self.name = name or f"jackrabbit {shell}"
        if driver:
            self.driver = driver
        self.profile_to = profile_to
        self.root = root  # the source tree the server runs from

    def fresh(self) -> Jackrabbit:
        """Another server of the same shell and source, not started (each memory row gets
        its own, so no row inherits another's freed memory)."""
        return Jackrabbit(self.shell, self.name, root=self.root)

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
        # The server's source tree first on the path, wherever the benchmark was started
        # from; this checkout next (for benchmarks.profiled).
        env["PYTHONPATH"] = os.pathsep.join(
            dict.fromkeys([str(self.root), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]))
        self.server = ServerProcess(self.name.replace(" ", "-").replace("@", "-at-"), argv,
                                    workdir, env)
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
