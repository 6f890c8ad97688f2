"""RabbitMQ through ``pika``'s asyncio adapter: publisher confirms, manual cumulative acks,
a durable queue with ``x-single-active-consumer``, persistent messages."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import pika  # type: ignore[import-untyped]
from pika.adapters.asyncio_connection import AsyncioConnection  # type: ignore[import-untyped]
from pika.channel import Channel  # type: ignore[import-untyped]
from pika.spec import Basic  # type: ignore[import-untyped]

from . import base

PERSISTENT = pika.BasicProperties(delivery_mode=2)
QUEUE_ARGS = {"x-single-active-consumer": True}


def _resolve(fut: asyncio.Future[Any]) -> Any:
    """A pika callback that completes ``fut`` with its argument (once)."""

    def callback(value: Any) -> None:
        if not fut.done():
            fut.set_result(value)

    return callback


async def _open(endpoint: dict[str, Any]) -> tuple[AsyncioConnection, Channel]:
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[AsyncioConnection] = loop.create_future()

    def on_error(_conn: Any, exc: BaseException | str) -> None:
        if not opened.done():
            opened.set_exception(RuntimeError(f"cannot connect to RabbitMQ: {exc}"))

    params = pika.ConnectionParameters(
        host=endpoint["host"], port=endpoint["port"], heartbeat=60,
        connection_attempts=3, retry_delay=0.5,
    )
    conn = AsyncioConnection(
        params,
        on_open_callback=_resolve(opened),
        on_open_error_callback=on_error,
        custom_ioloop=loop,
    )
    await asyncio.wait_for(opened, 30)
    channel_f: asyncio.Future[Channel] = loop.create_future()
    conn.channel(on_open_callback=channel_f.set_result)
    return conn, await asyncio.wait_for(channel_f, 30)


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a pika call that reports completion through ``callback=``."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fn(*args, callback=_resolve(fut), **kwargs)
    return await asyncio.wait_for(fut, 30)


async def _declare(channel: Channel, queue: str) -> None:
    await _call(channel.queue_declare, queue=queue, durable=True, arguments=QUEUE_ARGS)


async def prepare(endpoint: dict[str, Any], queue: str, options: dict[str, Any]) -> None:
    conn, channel = await _open(endpoint)
    await _declare(channel, queue)
    conn.close()
    await asyncio.sleep(0)


class Producer(base.Producer):
    conn: AsyncioConnection
    channel: Channel

    async def connect(self) -> None:
        self.conn, self.channel = await _open(self.endpoint)
        await _declare(self.channel, self.queue)
        self._outstanding: collections.deque[int] = collections.deque()
        self._tag = 0
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.channel.confirm_delivery(ack_nack_callback=self._on_confirm,
                                      callback=_resolve(fut))
        await asyncio.wait_for(fut, 30)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag, multiple = method.delivery_tag, method.multiple
        ok = isinstance(method, Basic.Ack)
        out = self._outstanding
        n = 0
        if multiple:
            while out and out[0] <= tag:
                out.popleft()
                n += 1
        elif out and out[0] == tag:
            out.popleft()
            n = 1
        else:
            with contextlib.suppress(ValueError):
                out.remove(tag)
                n = 1
        if ok:
            self.confirm(n)
        else:
            self.fail("nack", n)

    async def publish(self, payload: bytes) -> None:
        self.channel.basic_publish("", self.queue, payload, PERSISTENT)
        self._tag += 1
        self._outstanding.append(self._tag)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        await asyncio.sleep(0.05)


class Consumer(base.Consumer):
    conn: AsyncioConnection
    channel: Channel
    _last_tag = 0
    _acked_tag = 0

    async def subscribe(self) -> None:
        self.conn, self.channel = await _open(self.endpoint)
        await _declare(self.channel, self.queue)
        await _call(self.channel.basic_qos, prefetch_count=self.prefetch)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.channel.basic_consume(
            self.queue, self._on_delivery, auto_ack=False,
            callback=_resolve(fut),
        )
        await asyncio.wait_for(fut, 30)
        self.channel.add_on_close_callback(lambda *_: self.closed.set())
        self.role = "registered"  # single active consumer: the first registered is active

    def _on_delivery(self, _ch: Channel, method: Basic.Deliver, _props: Any,
                     body: bytes) -> None:
        self._last_tag = method.delivery_tag
        self.on_message(body, bool(method.redelivered))

    async def ack_all(self) -> None:
        tag = self._last_tag
        if tag > self._acked_tag:
            self._acked_tag = tag
            self.channel.basic_ack(delivery_tag=tag, multiple=True)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        await asyncio.sleep(0.05)
