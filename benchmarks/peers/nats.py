"""NATS JetStream from Debian's ``nats-server``: ``-js`` with file storage in the work dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..install import Need
from ..procs import LOOPBACK, ServerProcess, free_port, wait_port
from .base import Peer, debian_version


class NatsJetStream(Peer):
    name = "NATS JetStream"
    driver = "nats"
    durability = (
        "JetStream stream with file storage, acked publishes (the ack means the server wrote "
        "the message to its file; 2.9 does not fsync each write: it syncs on its own "
        "schedule), a durable explicit-ack consumer with max_ack_pending as jackrabbit's "
        "prefetch"
    )
    need = Need(binary="nats-server", debian="nats-server", modules=(("nats", "nats-py>=2.6"),))

    def version(self) -> str:
        return debian_version("nats-server")

    async def start(self, workdir: Path) -> dict[str, Any]:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = workdir / "nats.conf"
        conf.write_text(
            f'listen: "{LOOPBACK}:{port}"\n'
            "max_payload: 1048576\n"
            # a consumer may hold prefetch x 64 KiB unacked: don't cut it off as slow
            "max_pending: 1073741824\n"
            "jetstream {\n"
            f'  store_dir: "{workdir / "js"}"\n'
            "  max_memory_store: 1073741824\n"
            "  max_file_store: 21474836480\n"
            "}\n"
        )
        self.server = ServerProcess("nats", ["nats-server", "-c", str(conf)], workdir)
        await self.server.start()
        await self.server.wait_for(r"Server is ready", 30)
        await wait_port(port, 10)
        return {"url": f"nats://{LOOPBACK}:{port}"}
