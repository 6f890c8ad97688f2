"""Redis Streams from Debian's ``redis-server``: AOF with ``appendfsync always``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..install import Need
from ..procs import LOOPBACK, ServerProcess, free_port, wait_port
from .base import Peer, debian_version


class RedisStreams(Peer):
    name = "Redis Streams"
    driver = "redis"
    durability = (
        "a stream per queue, `appendonly yes` + `appendfsync always` (the AOF is fsynced "
        "before replies to each event-loop round of commands), no RDB snapshots; consumer "
        "group with XACK; a crashed consumer's pending entries are taken over with XAUTOCLAIM"
    )
    need = Need(binary="redis-server", debian="redis-server",
                modules=(("redis", "redis>=5"),))

    def version(self) -> str:
        return debian_version("redis-server")

    async def start(self, workdir: Path) -> dict[str, Any]:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = workdir / "redis.conf"
        conf.write_text(
            f"bind {LOOPBACK}\n"
            f"port {port}\n"
            "protected-mode yes\n"
            "daemonize no\n"
            f'dir "{workdir}"\n'
            'save ""\n'
            "appendonly yes\n"
            "appendfsync always\n"
            'logfile ""\n'
        )
        self.server = ServerProcess("redis", ["redis-server", str(conf)], workdir)
        await self.server.start()
        await self.server.wait_for(r"Ready to accept connections", 30)
        await wait_port(port, 10)
        return {"host": LOOPBACK, "port": port}
