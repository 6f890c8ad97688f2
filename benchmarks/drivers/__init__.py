"""One client adapter per system, run inside the agent processes.

Each module defines ``Producer``, ``Consumer`` (subclasses of :mod:`.base`'s) and
``prepare(endpoint, queue, options)``, which the orchestrator awaits once before a workload
to create the queue (stream, consumer group) so no early message is dropped.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def load(name: str) -> ModuleType:
    """The driver module ``benchmarks.drivers.<name>``."""
    return importlib.import_module(f"{__name__}.{name}")
