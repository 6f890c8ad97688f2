"""Tiny producer and consumer programs run as subprocesses by the durability and failover
scenarios, so that a whole client *process* can be killed, or several can load the server.

Run as a file (it imports only ``websockets`` and ``msgpack``, not the suite or the project)::

    python agents.py produce --url wss://127.0.0.1:PORT/queues/q --ca ca.pem --tag p1
    python agents.py consume --url wss://127.0.0.1:PORT/queues/q --ca ca.pem --prefetch 10

``produce`` pipelines adds (``--window`` in flight) with data ``TAG-N`` and ``req`` N, and
prints ``confirmed N SEQ`` for each ``added`` until the connection ends. ``consume`` sends
``take``, prints ``subscribed ROLE`` and then ``message SEQ REDELIVERED`` per delivery, and never
acks. Every line is flushed at once: the parent reads them to know what the server confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys

import msgpack
from websockets.asyncio.client import connect


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def produce(url: str, ctx: ssl.SSLContext, tag: str, window: int, count: int) -> None:
    async with connect(url, ssl=ctx, compression=None, proxy=None, max_size=None) as ws:
        _say("connected")
        slots = asyncio.Semaphore(window)

        async def sender() -> None:
            for n in range(1, count + 1):
                await slots.acquire()
                request = {"command": "add", "data": f"{tag}-{n}".encode(), "req": n}
                await ws.send(msgpack.packb(request, use_bin_type=True))

        task = asyncio.create_task(sender())
        confirmed = 0
        try:
            async for frame in ws:
                event = msgpack.unpackb(frame, raw=False, strict_map_key=False)
                if event.get("event") == "added":
                    _say(f"confirmed {event['req']} {event['seq']}")
                    slots.release()
                    confirmed += 1
                    if confirmed == count:
                        break
                else:
                    _say(f"unexpected {event!r}")
        finally:
            task.cancel()


async def consume(url: str, ctx: ssl.SSLContext, prefetch: int) -> None:
    async with connect(url, ssl=ctx, compression=None, proxy=None, max_size=None) as ws:
        await ws.send(msgpack.packb({"command": "take", "prefetch": prefetch}))
        async for frame in ws:
            event = msgpack.unpackb(frame, raw=False, strict_map_key=False)
            kind = event.get("event")
            if kind == "subscribed":
                _say(f"subscribed {event['role']}")
            elif kind == "message":
                _say(f"message {event['seq']} {event['redelivered']}")
            else:
                _say(f"event {kind}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("verb", choices=("produce", "consume"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--tag", default="p")
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--count", type=int, default=10**9)
    parser.add_argument("--prefetch", type=int, default=1000)
    ns = parser.parse_args()
    ctx = ssl.create_default_context(cafile=ns.ca)
    try:
        if ns.verb == "produce":
            asyncio.run(produce(ns.url, ctx, ns.tag, ns.window, ns.count))
        else:
            asyncio.run(consume(ns.url, ctx, ns.prefetch))
    except (OSError, EOFError) as exc:
        _say(f"ended {type(exc).__name__}")
    except Exception as exc:  # the server went away mid-run: that is the point
        _say(f"ended {type(exc).__name__}")
    _say("done")


if __name__ == "__main__":
    main()
