"""The terminal commands ``add`` and ``take`` (``python -m jackrabbit_threads add|take``).

``add`` sends its arguments (or, without any, each line of stdin) and prints each message's
seq once it is durable; stdin lines are pipelined (up to ``PIPELINE`` in flight, through as
many threads) and their seqs printed in input order. ``take`` joins the consumer line, prints
each message as ``SEQ<TAB>DATA`` (UTF-8, undecodable bytes replaced) and acks it, until
``--count`` messages or Ctrl-C; if the server goes away first it raises ``ConnectionLost``
(the command ends with status 1 and one line saying so).
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final, TextIO

from jackrabbit_host.cli import AddCommand, TakeCommand, take_ended
from jackrabbit_host.tls import client_context

from .client import Client, ConnectionLost

#: Adds in flight at once when reading stdin.
PIPELINE: Final = 64


def run_add(command: AddCommand, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Send the messages; print each seq. Returns the exit status."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    context = client_context(command.ca)
    with Client.connect(command.url, command.queue, ssl=context, token=command.token) as client:
        if command.messages:
            for text in command.messages:
                print(client.add(text.encode(), key=command.key), file=stdout, flush=True)
            return 0
        for seq in _pipelined(client, _lines(stdin)):
            print(seq, file=stdout, flush=True)
    return 0


def _lines(stdin: TextIO) -> Iterator[bytes]:
    for line in stdin:
        yield line.rstrip("\r\n").encode()


def _pipelined(client: Client, messages: Iterable[bytes]) -> Iterator[int]:
    """Each message's seq, in order, with up to ``PIPELINE`` adds in flight."""
    window: collections.deque[Future[int]] = collections.deque()
    with ThreadPoolExecutor(PIPELINE, thread_name_prefix="jackrabbit-add") as pool:
        for data in messages:
            window.append(pool.submit(client.add, data))
            if len(window) >= PIPELINE:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def run_take(command: TakeCommand, stdout: TextIO | None = None) -> int:
    """Print and ack messages until ``--count`` of them (or forever). Returns the exit status;
    raises ``ConnectionLost`` if the server ends the connection first."""
    stdout = sys.stdout if stdout is None else stdout
    if command.count is not None and command.count <= 0:
        return 0
    context = client_context(command.ca)
    with Client.connect(command.url, command.queue, ssl=context, token=command.token) as client:
        for seen, message in enumerate(client.take(command.prefetch), 1):
            text = message.data.decode("utf-8", "replace")
            print(f"{message.seq}\t{text}", file=stdout, flush=True)
            message.ack()
            if command.count is not None and seen >= command.count:
                return 0
        ended = take_ended(client.url, client.close_code, client.close_reason)
        raise ConnectionLost("closed", ended)
