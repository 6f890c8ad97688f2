"""Which queue an upgrade path names, and which plain HTTP paths exist (protocol §1.2, §1.3)."""

from __future__ import annotations

import re
from typing import Final

#: A queue's name (protocol §1.3).
QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
DEFAULT_QUEUE: Final = "default"
QUEUE_PREFIX: Final = "/queues/"
HEALTH_PATH: Final = "/healthz"
METRICS_PATH: Final = "/metrics"
#: The cluster's nodes and the queues each serves (cluster mode, protocol §10.5).
CLUSTER_PATH: Final = "/api/cluster"


def path_of(target: str) -> str:
    """The path of a request target, without its query string."""
    return target.split("?", 1)[0]


def queue_for(target: str) -> str | None:
    """The queue an upgrade to ``target`` subscribes to, or None if it names none."""
    path = path_of(target)
    if path == "/":
        return DEFAULT_QUEUE
    if path.startswith(QUEUE_PREFIX):
        name = path[len(QUEUE_PREFIX) :]
        if QUEUE_NAME.fullmatch(name):
            return name
    return None
