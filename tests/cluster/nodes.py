"""Nodes of a test cluster: ``python -m jackrabbit_SHELL --cluster DSN`` subprocesses on
127.0.0.1 (the conformance harness's ``ServerProcess``), one PostgreSQL database."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from conformance.harness import Certificates, ServerProcess

#: The lease the test nodes hold their queues with (``--lease``): short, so a takeover after a
#: SIGKILL is quick.
LEASE = 1.0


def node(
    shell: str, name: str, dsn: str, root: Path, certs: Certificates, *extra: str
) -> ServerProcess:
    """A started node named ``name``."""
    server = ServerProcess(
        shell,
        root / name,
        certs,
        args=["--cluster", dsn, "--node-name", name, "--lease", str(LEASE), *extra],
    )
    return server.start()


def cluster_status(target: ServerProcess) -> dict[str, Any]:
    """``GET /api/cluster`` of ``target``, decoded."""
    context = ssl.create_default_context(cafile=str(target.ca))
    with urllib.request.urlopen(target.url("/api/cluster").replace("wss:", "https:"),
                                context=context, timeout=10) as answer:  # fmt: skip
        assert answer.status == 200
        body: dict[str, Any] = json.loads(answer.read())
    return body
