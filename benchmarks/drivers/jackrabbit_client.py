"""jackrabbit through the project's own ``jackrabbit_asyncio.Client``: the second row, to
show what the client library costs next to the lean driver (:mod:`.jackrabbit_ws`).

Pipelining with the library means one ``add`` task per message, each awaiting its own
confirmation; the consumer acks through ``Message.ack()`` (cumulative)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
from typing import Any

from . import base


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _connect(endpoint: dict[str, Any], queue: str) -> Any:
    client_class = importlib.import_module("jackrabbit_asyncio").Client
    return await _maybe(client_class.connect(endpoint["url"], queue, ca=endpoint["ca"]))


async def prepare(endpoint: dict[str, Any], queue: str, options: dict[str, Any]) -> None:
    """Queues are made on first use: nothing to do."""


class Producer(base.Producer):
    async def connect(self) -> None:
        self.client = await _connect(self.endpoint, self.queue)
        self._tasks: set[asyncio.Task[Any]] = set()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self.fail("cancelled")
        elif (exc := task.exception()) is not None:
            self.fail(repr(exc))
        else:
            self.confirm()

    async def publish(self, payload: bytes) -> None:
        task = asyncio.create_task(self.client.add(payload))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await _maybe(self.client.close())


class Consumer(base.Consumer):
    _last: Any = None
    _acked: Any = None

    async def subscribe(self) -> None:
        self.client = await _connect(self.endpoint, self.queue)
        self._messages = await _maybe(self.client.take(self.prefetch))
        self.role = str(getattr(self.client, "role", None) or "subscribed")
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self._messages:
                self._last = message
                self.on_message(message.data, bool(message.redelivered))
        except Exception as exc:
            self.error(repr(exc))
        finally:
            self.closed.set()

    async def ack_all(self) -> None:
        last = self._last
        if last is not None and last is not self._acked:
            self._acked = last
            await _maybe(last.ack())

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(Exception):
            await _maybe(self.client.close())
