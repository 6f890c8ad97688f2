"""RabbitMQ from Debian's ``rabbitmq-server``, run as a private node.

Its own epmd (our child, on a free loopback port), node name, cookie (``HOME``), mnesia and
log directories, config file and an empty plugin list, all under the work directory; the
AMQP listener and the Erlang distribution port bound to 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..install import Need
from ..procs import LOOPBACK, ServerProcess, free_port, wait_port
from .base import Peer, debian_version

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class RabbitMQ(Peer):
    name = "RabbitMQ"
    driver = "rabbitmq"
    durability = (
        "durable classic queue with `x-single-active-consumer`, persistent messages "
        "(delivery_mode 2), publisher confirms (RabbitMQ confirms a persistent message once it "
        "is fsynced, in batches), manual acks, prefetch as jackrabbit's"
    )
    need = Need(binary=SERVER, debian="rabbitmq-server", modules=(("pika", "pika>=1.3"),))

    def version(self) -> str:
        return debian_version("rabbitmq-server")

    async def start(self, workdir: Path) -> dict[str, Any]:
        workdir.mkdir(parents=True, exist_ok=True)
        port, dist, epmd_port = free_port(), free_port(), free_port()
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = {LOOPBACK}:{port}\n"
            "loopback_users = none\n"
            "log.console = true\n"
            "log.file = false\n"
        )
        (workdir / "enabled_plugins").write_text("[].\n")
        (workdir / "rabbitmq-env.conf").write_text("")
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": f"bench{port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(workdir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(workdir / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
            "RABBITMQ_LOGS": "-",
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "ERL_EPMD_PORT": str(epmd_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        epmd = ServerProcess("epmd", ["epmd", "-address", LOOPBACK, "-port", str(epmd_port)],
                             workdir, env)
        await epmd.start()
        self.extra.append(epmd)
        await wait_port(epmd_port, 10)
        self.server = ServerProcess("rabbitmq", [SERVER], workdir, env)
        await self.server.start()
        await self.server.wait_for(r"Server startup complete", 120)
        await wait_port(port, 10)
        return {"host": LOOPBACK, "port": port}
