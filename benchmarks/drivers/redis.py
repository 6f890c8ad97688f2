"""Redis Streams through ``redis.asyncio``: pipelined XADD (each pipeline's reply comes after
the AOF fsync), XREADGROUP for a consumer group, XACK in batches, and XAUTOCLAIM to take over
a crashed consumer's pending entries (Redis has no single active consumer either)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from . import base

GROUP = "bench"
FIELD = b"d"


def _client(endpoint: dict[str, Any]) -> aioredis.Redis:
    return aioredis.Redis(host=endpoint["host"], port=endpoint["port"], socket_timeout=60)


async def prepare(endpoint: dict[str, Any], queue: str, options: dict[str, Any]) -> None:
    r = _client(endpoint)
    try:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await r.xgroup_create(queue, GROUP, id="0", mkstream=True)
    finally:
        await r.aclose()


class Producer(base.Producer):
    async def connect(self) -> None:
        self.r = _client(self.endpoint)
        await self.r.ping()
        self._buffer: list[bytes] = []
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, payload: bytes) -> None:
        self._buffer.append(payload)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        # One pipeline in flight; what arrives meanwhile forms the next one (group commit).
        while self._buffer:
            batch, self._buffer = self._buffer, []
            pipe = self.r.pipeline(transaction=False)
            for payload in batch:
                pipe.xadd(self.queue, {FIELD: payload})
            try:
                await pipe.execute()
            except Exception as exc:
                self.fail(repr(exc), len(batch))
            else:
                self.confirm(len(batch))

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flusher, 10)
        await self.r.aclose()


class Consumer(base.Consumer):
    async def subscribe(self) -> None:
        self.r = _client(self.endpoint)
        self.name = f"c{os.getpid()}"
        self._pending: list[bytes] = []
        await self.r.ping()
        self._tasks = [asyncio.create_task(self._read())]
        claim_ms = self.options.get("claim_idle_ms")
        if claim_ms:
            self._tasks.append(asyncio.create_task(self._claim(int(claim_ms))))

    async def _read(self) -> None:
        try:
            while True:
                got: Any = await self.r.xreadgroup(GROUP, self.name, {self.queue: ">"},
                                              count=self.prefetch, block=200)
                for _stream, entries in got or ():
                    for entry_id, fields in entries:
                        self._pending.append(entry_id)
                        self.on_message(fields[FIELD], False)
        except Exception as exc:
            self.error(repr(exc))
            self.closed.set()

    async def _claim(self, idle_ms: int) -> None:
        """Take over entries another consumer left unacknowledged for ``idle_ms``."""
        while True:
            await asyncio.sleep(min(0.1, idle_ms / 4000))
            start = "0-0"
            while True:
                reply = await self.r.xautoclaim(self.queue, GROUP, self.name, idle_ms,
                                                start_id=start, count=1000)
                start, entries = reply[0], reply[1]
                for entry_id, fields in entries:
                    if fields is None:
                        continue
                    self._pending.append(entry_id)
                    self.on_message(fields[FIELD], True)
                if start in (b"0-0", "0-0"):
                    break

    async def ack_all(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await self.r.xack(self.queue, GROUP, *pending)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.r.aclose()
