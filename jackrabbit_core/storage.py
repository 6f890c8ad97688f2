"""What the core needs of a store, as an interface and plain values (protocol §7).

The core never calls a store. It asks for what it needs as actions (``WriteBatch``,
``ReadMessages``, ``FindKey`` in ``actions.py``) and is told later how they ended
(``Server.batch_written`` / ``batch_failed``, ``Server.read_done`` / ``read_failed``). A shell
carries them out with a ``Store``: the embedded RocksDB adapter answers a read at once, a
networked store later; the core cannot tell the difference and does not care.

An adapter implements ``Store``. Its promises, which the core relies on:

- ``write(batch)`` is atomic: after a crash a batch is there whole or not at all. It is
  durable on return (per the adapter's fsync policy). It runs on one writer at a time.
- Reads may run while a write is under way and see a batch whole or not at all. They may see
  a batch that is written but not yet reported durable: the core only asks for messages it
  has been told are durable.
- ``recover()`` runs once, before the core exists; the records it returns are what the core
  starts from.
- Failures raise ``StoreError`` with a one-line message.
- ``answers_at_once`` says whether a read takes microseconds (an embedded store: the shell
  answers it on the spot) or a network round trip (the shell runs it on a worker and reports
  it later, so the event loop never waits on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .records import StoredMessage

__all__ = ["Batch", "QueueRecord", "Store"]


@dataclass(frozen=True, slots=True)
class QueueRecord:
    """What the store knows about one queue at start-up (``Store.recover``)."""

    name: str
    #: The highest stored seq of the queue, 0 if it holds no message.
    last_seq: int
    #: The cursor: every seq <= acked is acknowledged (0 if never set).
    acked: int
    #: The queue's epoch, 0 if never set.
    epoch: int


class Batch:
    """Writes to make durable together: messages with their idempotency keys, in the order
    appended, and the last cursor and epoch set per queue. Plain values; the adapter encodes
    them in its own layout."""

    __slots__ = ("cursors", "epochs", "messages")

    def __init__(self) -> None:
        #: ``(queue, message, idempotency key or None)`` in the order appended.
        self.messages: list[tuple[str, StoredMessage, str | None]] = []
        #: The acked cursor per queue: every seq <= it is acknowledged.
        self.cursors: dict[str, int] = {}
        #: The epoch per queue.
        self.epochs: dict[str, int] = {}

    def add_message(self, queue: str, message: StoredMessage, key: str | None = None) -> None:
        """Store ``message`` in ``queue``; with ``key``, index it under that key too."""
        self.messages.append((queue, message, key))

    def set_cursor(self, queue: str, acked: int) -> None:
        """Every seq <= ``acked`` of ``queue`` is acknowledged (the last call wins)."""
        self.cursors[queue] = acked

    def set_epoch(self, queue: str, epoch: int) -> None:
        """The epoch of ``queue`` (the last call wins)."""
        self.epochs[queue] = epoch

    def queues(self) -> set[str]:
        """Every queue the batch writes something for."""
        return {queue for queue, _, _ in self.messages} | self.cursors.keys() | self.epochs.keys()

    def drop(self, queues: set[str]) -> None:
        """Write nothing for ``queues`` after all (their node no longer serves them)."""
        self.messages = [entry for entry in self.messages if entry[0] not in queues]
        for queue in queues:
            self.cursors.pop(queue, None)
            self.epochs.pop(queue, None)

    def __bool__(self) -> bool:
        """Whether there is anything to write at all."""
        return bool(self.messages or self.cursors or self.epochs)

    def __repr__(self) -> str:
        return (
            f"<Batch messages={len(self.messages)} cursors={len(self.cursors)} "
            f"epochs={len(self.epochs)}>"
        )


class Store(Protocol):
    """A durable log of every queue's messages, cursor and epoch (see the module docstring)."""

    @property
    def answers_at_once(self) -> bool:
        """Whether reads take microseconds, so the shell may answer them where asked."""
        ...

    def recover(self) -> list[QueueRecord]:
        """Every queue ever written, with its last seq, cursor and epoch."""
        ...

    def read(self, queue: str, first: int, limit: int, max_bytes: int) -> list[StoredMessage]:
        """Consecutive stored messages of ``queue`` from seq ``first`` on: at most ``limit``,
        stopping once their data reaches ``max_bytes`` (at least one when ``first`` is
        stored), ending before the first seq that is not stored; empty if ``first`` is not."""
        ...

    def find_key(self, queue: str, key: str) -> StoredMessage | None:
        """The message stored under idempotency ``key`` in ``queue``, or None."""
        ...

    def write(self, batch: Batch) -> None:
        """Write ``batch`` atomically; durable on return (see the module docstring)."""
        ...

    def close(self) -> None:
        """Release the store; calling it again does nothing."""
        ...
