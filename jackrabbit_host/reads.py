"""Reads the core asks for, carried out the same way by both shells."""

from __future__ import annotations

import logging

from jackrabbit_core import FindKey, ReadMessages, Server, Store, StoreError

log = logging.getLogger("jackrabbit.store")


def answer(store: Store, read: ReadMessages | FindKey, server: Server, now: float) -> None:
    """Carry out ``read`` at once and report how it ended to ``server``.

    A RocksDB read takes microseconds, so the shells answer on the spot, where the core asked;
    the core would take a later answer just the same (``Server.read_done``).
    """
    try:
        if isinstance(read, ReadMessages):
            messages = store.read(read.queue, read.first, read.limit, read.max_bytes)
        else:
            found = store.find_key(read.queue, read.key)
            messages = [] if found is None else [found]
    except StoreError as exc:
        log.error("%s", exc)
        server.read_failed(read.ticket, str(exc), now)
    else:
        server.read_done(read.ticket, messages, now)
