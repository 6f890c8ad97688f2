"""Reads the core asks for, carried out the same way by both shells.

An embedded store (RocksDB) answers in microseconds, so a read is answered on the spot, where
the core asked. A networked store (PostgreSQL, cluster mode) takes a round trip of a
millisecond or more: the read runs on one of ``WORKERS`` threads and its answer is handed back
with the shell's ``post``, which calls the core on the event loop or under the core lock. The
core takes either the same way (``Server.read_done``, protocol §7.3); it keeps at most one read
out per queue, so the workers never reorder a queue's reads.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from typing import Final

from jackrabbit_core import FindKey, ReadMessages, Server, Store, StoreError
from jackrabbit_core.records import StoredMessage

__all__ = ["WORKERS", "Reader", "answer"]

log = logging.getLogger("jackrabbit.store")

#: Threads running a networked store's reads (each with its own connection).
WORKERS: Final = 4

#: A core call to run where the core may be called: ``call(server, now)``.
CoreCall = Callable[[Server, float], None]


def _read(store: Store, read: ReadMessages | FindKey) -> list[StoredMessage]:
    if isinstance(read, ReadMessages):
        return store.read(read.queue, read.first, read.limit, read.max_bytes)
    found = store.find_key(read.queue, read.key)
    return [] if found is None else [found]


def answer(store: Store, read: ReadMessages | FindKey, server: Server, now: float) -> None:
    """Carry out ``read`` at once and report how it ended to ``server``."""
    try:
        messages = _read(store, read)
    except StoreError as exc:
        log.error("%s", exc)
        server.read_failed(read.ticket, str(exc), now)
    else:
        server.read_done(read.ticket, messages, now)


class Reader:
    """Carries out reads for one server: on the spot, or on workers (module docstring)."""

    __slots__ = ("_pool", "_post", "_store")

    def __init__(self, store: Store, post: Callable[[CoreCall], None]) -> None:
        self._store = store
        self._post = post
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def carry_out(self, read: ReadMessages | FindKey, server: Server, now: float) -> bool:
        """Carry out ``read``; True if it was answered now (the shell then drains the core's
        actions again), False if the answer will be posted."""
        if self._store.answers_at_once:
            answer(self._store, read, server, now)
            return True
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(WORKERS, "jackrabbit-read")
        self._pool.submit(self._work, read)
        return False

    def _work(self, read: ReadMessages | FindKey) -> None:
        try:
            messages = _read(self._store, read)
        except StoreError as exc:
            log.error("%s", exc)
            reason = str(exc)
            self._post(lambda server, now: server.read_failed(read.ticket, reason, now))
        except Exception as exc:  # a bug in the store must not lose the answer
            log.exception("store read failed")
            reason = f"store read failed: {exc}"
            self._post(lambda server, now: server.read_failed(read.ticket, reason, now))
        else:
            self._post(lambda server, now: server.read_done(read.ticket, messages, now))

    def close(self) -> None:
        """Stop the workers once the reads under way are done."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
