"""The two roles every driver plays, and the bookkeeping they share.

A producer counts confirmations (``confirm``/``fail``) as they arrive so the agent can keep
at most ``window`` unconfirmed messages in flight. A consumer hands each delivery to
``on_message(data, redelivered)`` and, when asked, acknowledges everything delivered so far
(``ack_all``), cumulatively where the system allows it.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

OnMessage = Callable[[bytes, bool], None]


class Producer(ABC):
    def __init__(self, endpoint: dict[str, Any], queue: str, options: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.queue = queue
        self.options = options
        self.confirmed = 0
        self.failed = 0
        self.last_confirm_ns = 0
        self.errors: list[str] = []
        self._progress = asyncio.Event()

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def publish(self, payload: bytes) -> None:
        """Send one message; its confirmation arrives later through :meth:`confirm`."""

    @abstractmethod
    async def close(self) -> None: ...

    def confirm(self, n: int = 1) -> None:
        self.confirmed += n
        self.last_confirm_ns = time.monotonic_ns()
        self._progress.set()

    def fail(self, reason: str, n: int = 1) -> None:
        self.failed += n
        if len(self.errors) < 5:
            self.errors.append(reason)
        self._progress.set()

    async def wait_below(self, sent: int, window: int) -> None:
        """Return once fewer than ``window`` of ``sent`` messages await confirmation."""
        while sent - self.confirmed - self.failed >= window:
            self._progress.clear()
            await self._progress.wait()

    async def drain(self, sent: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until all ``sent`` messages are confirmed or failed."""
        try:
            await asyncio.wait_for(self.wait_below(sent, 1), timeout)
        except TimeoutError:
            return False
        return True


class Consumer(ABC):
    def __init__(self, endpoint: dict[str, Any], queue: str, prefetch: int,
                 options: dict[str, Any], on_message: OnMessage) -> None:
        self.endpoint = endpoint
        self.queue = queue
        self.prefetch = prefetch
        self.options = options
        self.on_message = on_message
        self.role = "shared"
        self.errors: list[str] = []
        self.closed = asyncio.Event()  # set if the server ends the subscription

    @abstractmethod
    async def subscribe(self) -> None:
        """Connect and join the queue's consumers; return once subscribed (``self.role``
        then says ``active``, ``standby`` or ``shared``)."""

    @abstractmethod
    async def ack_all(self) -> None:
        """Acknowledge every message delivered so far."""

    @abstractmethod
    async def close(self) -> None: ...

    def error(self, reason: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(reason)
