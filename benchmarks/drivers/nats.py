"""NATS JetStream through ``nats-py``: a file-storage stream per queue, pipelined acked
publishes (``publish_async``), and a durable push consumer with explicit acks delivered to a
queue group (JetStream 2.9 has no single active consumer: group members share messages)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType

from . import base

GROUP = "bench"


def _names(queue: str) -> tuple[str, str, str]:
    stream = queue.replace(".", "_")
    return stream, f"q.{stream}", f"deliver.{stream}"


async def _connect(endpoint: dict[str, Any]) -> Client:
    return await nats.connect(endpoint["url"], connect_timeout=10, max_reconnect_attempts=0,
                              allow_reconnect=False)


async def prepare(endpoint: dict[str, Any], queue: str, options: dict[str, Any]) -> None:
    stream, subject, deliver = _names(queue)
    nc = await _connect(endpoint)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject], storage=StorageType.FILE)
        if options.get("consumer", True):
            await js.add_consumer(
                stream,
                ConsumerConfig(
                    durable_name=GROUP,
                    deliver_subject=deliver,
                    deliver_group=GROUP,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.EXPLICIT,
                    max_ack_pending=int(options.get("prefetch", 1000)),
                    ack_wait=float(options.get("ack_wait", 30.0)),
                ),
            )
    finally:
        await nc.close()


class Producer(base.Producer):
    nc: Client

    async def connect(self) -> None:
        self.nc = await _connect(self.endpoint)
        self.js = self.nc.jetstream(publish_async_max_pending=1 << 20)
        self._subject = _names(self.queue)[1]

    def _done(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self.fail("cancelled")
        elif (exc := fut.exception()) is not None:
            self.fail(repr(exc))
        else:
            self.confirm()

    async def publish(self, payload: bytes) -> None:
        fut = await self.js.publish_async(self._subject, payload)
        fut.add_done_callback(self._done)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.close()


class Consumer(base.Consumer):
    nc: Client

    async def subscribe(self) -> None:
        stream, subject, _ = _names(self.queue)
        self.nc = await _connect(self.endpoint)
        js = self.nc.jetstream()
        self._pending: list[str] = []
        self.sub = await js.subscribe(
            subject, queue=GROUP, durable=GROUP, stream=stream, manual_ack=True,
            cb=self._on_msg, pending_msgs_limit=1 << 20, pending_bytes_limit=1 << 30,
        )

    async def _on_msg(self, msg: Msg) -> None:
        assert msg.reply
        self._pending.append(msg.reply)
        # the reply subject carries the delivery count:
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> (v1), or with
        # <domain>.<account hash> after ACK (v2)
        tokens = msg.reply.split(".")
        delivered = tokens[4] if len(tokens) == 9 else tokens[6] if len(tokens) >= 11 else "1"
        self.on_message(msg.data, delivered != "1")

    async def ack_all(self) -> None:
        pending, self._pending = self._pending, []
        publish = self.nc.publish
        for reply in pending:
            await publish(reply, b"+ACK")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.close()
