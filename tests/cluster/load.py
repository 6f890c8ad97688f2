"""Clients for the cluster's failover tests: a producer and consumers that reconnect, written
with the ``websockets`` asyncio client (not ours), recording everything they see with times.

Every wait is bounded: a connection attempt by ``OPEN_TIMEOUT``, a whole run by its caller's
deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect

OPEN_TIMEOUT = 5.0
#: Pause between reconnection attempts.
RETRY = 0.1


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj)


def unpack(data: bytes | str) -> Any:
    assert isinstance(data, bytes), data
    return msgpack.unpackb(data, raw=False)


async def open_ws(url: str, context: ssl.SSLContext) -> ClientConnection:
    return await connect(
        url, ssl=context, open_timeout=OPEN_TIMEOUT, close_timeout=1, max_size=None,
        compression=None, proxy=None, ping_interval=None,
    )  # fmt: skip


@dataclass
class Producer:
    """Adds ``count`` messages with idempotency keys, ``window`` in flight, through the first
    of ``urls`` that answers; after a lost connection, the next one, resending what was not
    confirmed (a repeated key is answered with the first seq)."""

    urls: list[str]
    context: ssl.SSLContext
    count: int
    window: int = 20
    #: key -> seq, for every confirmed add.
    confirmed: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0

    async def run(self) -> None:
        unconfirmed = [f"k{i}" for i in range(self.count)]
        turn = 0
        while unconfirmed:
            url = self.urls[turn % len(self.urls)]
            turn += 1
            try:
                ws = await open_ws(url, self.context)
            except Exception:
                await asyncio.sleep(RETRY)
                continue
            try:
                await self._session(ws, unconfirmed)
            except Exception:
                self.reconnects += 1
                await asyncio.sleep(RETRY)
            finally:
                await ws.close()
            unconfirmed = [key for key in unconfirmed if key not in self.confirmed]

    async def _session(self, ws: ClientConnection, keys: list[str]) -> None:
        in_flight: dict[int, str] = {}
        todo = list(keys)
        req = 0
        while todo or in_flight:
            while todo and len(in_flight) < self.window:
                key = todo.pop(0)
                req += 1
                in_flight[req] = key
                await ws.send(pack({"command": "add", "data": key.encode(), "key": key,
                                    "req": req}))  # fmt: skip
            event = unpack(await asyncio.wait_for(ws.recv(), 10))
            assert event.get("event") == "added", event
            self.confirmed[in_flight.pop(event["req"])] = event["seq"]


@dataclass
class Delivery:
    consumer: str
    session: int
    epoch: int
    seq: int
    data: bytes
    redelivered: bool
    at: float


@dataclass
class Tenure:
    """One consumer session's time as the active consumer."""

    consumer: str
    session: int
    epoch: int
    start: float
    end: float = float("inf")


@dataclass
class Consumer:
    """Takes from one node, acks every message, reconnects after a lost connection."""

    name: str
    url: str
    context: ssl.SSLContext
    prefetch: int = 50
    deliveries: list[Delivery] = field(default_factory=list)
    tenures: list[Tenure] = field(default_factory=list)
    sessions: int = 0
    #: The highest seq received and not acked yet.
    unacked: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                ws = await open_ws(self.url, self.context)
            except Exception:
                await asyncio.sleep(RETRY)
                continue
            self.sessions += 1
            tenure: Tenure | None = None
            try:
                await ws.send(pack({"command": "take", "prefetch": self.prefetch}))
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        raw = await asyncio.wait_for(ws.recv(), 0.2)
                        tenure = self._event(unpack(raw), tenure)
                        await self._ack(ws)
            except Exception:
                await asyncio.sleep(RETRY)
            finally:
                if tenure is not None:
                    tenure.end = time.monotonic()
                await ws.close()

    def _event(self, event: dict[str, Any], tenure: Tenure | None) -> Tenure | None:
        kind = event.get("event")
        now = time.monotonic()
        if (kind == "subscribed" and event["role"] == "active") or kind == "active":
            tenure = Tenure(self.name, self.sessions, event["epoch"], now)
            self.tenures.append(tenure)
        elif kind == "message":
            assert tenure is not None, event
            self.deliveries.append(Delivery(self.name, self.sessions, tenure.epoch, event["seq"],
                                            event["data"], event["redelivered"], now))  # fmt: skip
            self.unacked = event["seq"]
        return tenure

    async def _ack(self, ws: ClientConnection) -> None:
        if self.unacked:
            seq, self.unacked = self.unacked, 0
            await ws.send(pack({"command": "ack", "seq": seq}))
