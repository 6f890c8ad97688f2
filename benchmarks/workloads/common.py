"""What a workload needs to know about the system it drives, and small shared steps."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..drivers import load
from ..fleet import Agent
from ..plan import Plan
from ..progress import Progress


@dataclass
class Target:
    """One system as the workloads see it: a running server and the driver for it."""

    name: str
    driver: str
    endpoint: dict[str, Any]
    pid: int
    plan: Plan
    progress: Progress
    options: dict[str, Any] = field(default_factory=dict)

    def queue(self, label: str) -> str:
        """A fresh queue name per step, so no step sees another's messages."""
        return f"{label}-{uuid.uuid4().hex[:8]}"

    async def prepare(self, queue: str, **extra: Any) -> None:
        opts = {**self.options, "prefetch": self.plan.prefetch, **extra}
        await asyncio.wait_for(load(self.driver).prepare(self.endpoint, queue, opts), 60)

    def spec(self, queue: str, role: str, **fields: Any) -> dict[str, Any]:
        opts = {**self.options, **fields.pop("options", {})}
        return {"driver": self.driver, "endpoint": self.endpoint, "queue": queue,
                "role": role, "options": opts, "prefetch": self.plan.prefetch, **fields}


async def watch(progress: Progress, label: str, agents: list[Agent], stop: asyncio.Event,
                every: float = 5.0) -> None:
    """Print the agents' counts every ``every`` seconds until ``stop`` is set."""
    while True:
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except TimeoutError:
            counts = ", ".join(f"{a.label} {a.progress:,}" for a in agents)
            progress.say(f"  {label}: {counts}")
