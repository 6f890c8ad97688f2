"""An in-memory store that implements the core's ``Store`` interface, for the core's tests.

It keeps what a batch writes in dictionaries and answers reads exactly as the interface says
(``jackrabbit_core.storage``); the RocksDB adapter is tested against the same promises in
``tests/host``. A test can make the next writes or reads fail, as a full or broken disk would.
"""

from __future__ import annotations

from jackrabbit_core import StoreError
from jackrabbit_core.records import StoredMessage
from jackrabbit_core.storage import Batch, QueueRecord


class MemoryStore:
    """Every queue's messages, keys, cursor and epoch in dictionaries."""

    answers_at_once = True

    def __init__(self) -> None:
        self.messages: dict[str, dict[int, StoredMessage]] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.cursors: dict[str, int] = {}
        self.epochs: dict[str, int] = {}
        #: Set to a reason to make reads fail with it.
        self.failing_reads: str | None = None
        self.reads = 0

    def recover(self) -> list[QueueRecord]:
        names = sorted({*self.messages, *self.cursors, *self.epochs})
        return [
            QueueRecord(
                name,
                max(self.messages.get(name, {0: None})),  # type: ignore[dict-item]
                self.cursors.get(name, 0),
                self.epochs.get(name, 0),
            )
            for name in names
        ]

    def read(self, queue: str, first: int, limit: int, max_bytes: int) -> list[StoredMessage]:
        self._reading()
        stored = self.messages.get(queue, {})
        out: list[StoredMessage] = []
        total = 0
        seq = first
        while seq in stored and len(out) < limit and (not out or total < max_bytes):
            out.append(stored[seq])
            total += len(stored[seq].data)
            seq += 1
        return out

    def find_key(self, queue: str, key: str) -> StoredMessage | None:
        self._reading()
        seq = self.keys.get((queue, key))
        return None if seq is None else self.messages[queue][seq]

    def write(self, batch: Batch) -> None:
        for queue, message, key in batch.messages:
            self.messages.setdefault(queue, {})[message.seq] = message
            if key is not None:
                self.keys[(queue, key)] = message.seq
        self.cursors.update(batch.cursors)
        self.epochs.update(batch.epochs)

    def close(self) -> None:
        pass

    def _reading(self) -> None:
        self.reads += 1
        if self.failing_reads is not None:
            raise StoreError(self.failing_reads)
