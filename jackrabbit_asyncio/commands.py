"""The terminal commands ``add`` and ``take`` (``python -m jackrabbit_asyncio add|take``).

``add`` sends its arguments (or, without any, each line of stdin) and prints each message's
seq once it is durable; stdin lines are pipelined (up to ``PIPELINE`` in flight) and their
seqs printed in input order. ``take`` joins the consumer line, prints each message as
``SEQ<TAB>DATA`` (UTF-8, undecodable bytes replaced) and acks it, until ``--count`` messages
or Ctrl-C; if the server goes away first it raises ``ConnectionLost`` (the command ends
with status 1 and one line saying so).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import sys
import threading
from typing import Final, TextIO

from jackrabbit_host.cli import AddCommand, TakeCommand, take_ended
from jackrabbit_host.tls import client_context

from .client import Client, ConnectionLost

#: Adds in flight at once when reading stdin.
PIPELINE: Final = 64


async def run_add(
    command: AddCommand, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Send the messages; print each seq. Returns the exit status."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    context = client_context(command.ca)
    async with await Client.connect(
        command.url, command.queue, ssl=context, token=command.token
    ) as client:
        if command.messages:
            for text in command.messages:
                seq = await client.add(text.encode(), key=command.key)
                print(seq, file=stdout, flush=True)
            return 0
        lines: asyncio.Queue[str | None] = asyncio.Queue(PIPELINE)
        loop = asyncio.get_running_loop()
        # A daemon thread reads stdin: a slow typist must not stall the loop (heartbeats), and
        # Ctrl-C must not wait for a pending readline().
        threading.Thread(
            target=_read_lines, args=(stdin, loop, lines), name="jackrabbit-stdin", daemon=True
        ).start()
        window: collections.deque[asyncio.Task[int]] = collections.deque()
        try:
            while (line := await lines.get()) is not None:
                data = line.rstrip("\r\n").encode()
                window.append(asyncio.ensure_future(client.add(data)))
                while window and (len(window) >= PIPELINE or window[0].done()):
                    print(await window.popleft(), file=stdout, flush=True)
            while window:
                print(await window.popleft(), file=stdout, flush=True)
        finally:
            for task in window:
                task.cancel()
    return 0


def _read_lines(
    stdin: TextIO, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]
) -> None:
    """On a thread: put each stdin line on ``lines``, then None."""
    try:
        for line in stdin:
            asyncio.run_coroutine_threadsafe(lines.put(line), loop).result()
        asyncio.run_coroutine_threadsafe(lines.put(None), loop).result()
    except (RuntimeError, concurrent.futures.CancelledError):
        pass  # the loop is gone: the command is over


async def run_take(command: TakeCommand, stdout: TextIO | None = None) -> int:
    """Print and ack messages until ``--count`` of them (or forever). Returns the exit status;
    raises ``ConnectionLost`` if the server ends the connection first."""
    stdout = sys.stdout if stdout is None else stdout
    if command.count is not None and command.count <= 0:
        return 0
    context = client_context(command.ca)
    async with await Client.connect(
        command.url, command.queue, ssl=context, token=command.token
    ) as client:
        seen = 0
        async for message in client.take(command.prefetch):
            text = message.data.decode("utf-8", "replace")
            print(f"{message.seq}\t{text}", file=stdout, flush=True)
            await message.ack()
            seen += 1
            if command.count is not None and seen >= command.count:
                return 0
        ended = take_ended(client.url, client.close_code, client.close_reason)
        raise ConnectionLost("closed", ended)
