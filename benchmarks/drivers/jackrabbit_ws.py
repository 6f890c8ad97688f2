"""jackrabbit over protocol v1, lean: the ``websockets`` client plus ``msgpack``, nothing of
the project's own client library, so the figures are the server's and not our client's."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from . import base

_pack = msgpack.Packer().pack
_ACK_HEAD = {"command": "ack"}


async def prepare(endpoint: dict[str, Any], queue: str, options: dict[str, Any]) -> None:
    """Queues are made on first use: nothing to do."""


async def open_ws(endpoint: dict[str, Any], queue: str) -> ClientConnection:
    ctx = ssl.create_default_context(cafile=endpoint["ca"])
    path = "/" if queue == "default" else f"/queues/{queue}"
    return await connect(
        endpoint["url"] + path,
        ssl=ctx,
        compression=None,
        proxy=None,
        ping_interval=None,
        max_size=4 * 1024 * 1024,
        max_queue=1024,
        open_timeout=30,
        close_timeout=5,
    )


class Producer(base.Producer):
    ws: ClientConnection
    _reader: asyncio.Task[None]

    async def connect(self) -> None:
        self.ws = await open_ws(self.endpoint, self.queue)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        unpack = msgpack.unpackb
        try:
            async for raw in self.ws:
                event = unpack(raw)
                kind = event.get("event")
                if kind == "added":
                    self.confirm()
                elif kind == "error":
                    self.fail(f"{event.get('code')}: {event.get('message')}")
        except ConnectionClosed as exc:
            self.errors.append(f"connection closed: {exc}")
        finally:
            self._progress.set()

    async def publish(self, payload: bytes) -> None:
        await self.ws.send(_pack({"command": "add", "data": payload}))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()


class Consumer(base.Consumer):
    ws: ClientConnection
    _reader: asyncio.Task[None]
    _last_seq = 0
    _acked_seq = 0

    async def subscribe(self) -> None:
        self.ws = await open_ws(self.endpoint, self.queue)
        await self.ws.send(_pack({"command": "take", "prefetch": self.prefetch}))
        while True:
            event = msgpack.unpackb(await self.ws.recv())
            if event.get("event") == "subscribed":
                self.role = event["role"]
                break
            if event.get("event") == "error":
                raise RuntimeError(f"take refused: {event}")
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        unpack = msgpack.unpackb
        on_message = self.on_message
        try:
            async for raw in self.ws:
                event = unpack(raw)
                kind = event.get("event")
                if kind == "message":
                    self._last_seq = event["seq"]
                    on_message(event["data"], event.get("redelivered", False))
                elif kind == "active":
                    self.role = "active"
                elif kind == "error":
                    self.error(f"{event.get('code')}: {event.get('message')}")
        except ConnectionClosed as exc:
            self.error(f"connection closed: {exc}")
        finally:
            self.closed.set()

    async def ack_all(self) -> None:
        seq = self._last_seq
        if seq > self._acked_seq:
            self._acked_seq = seq
            await self.ws.send(_pack({"command": "ack", "seq": seq}))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
