"""Group commit: the batch being filled and the one being written (protocol §7.1).

Every write the core asks of the store goes through here: appended messages, cursors and
epochs. At most one batch is out with the shell at a time; while it is written and fsynced,
the next one fills, so many adds share one fsync. Batches are numbered, so whoever waits on one
(a confirmation, an epoch to announce) can tell which write it waits for.

After a failed write the next one waits ``RETRY_FIRST`` seconds, doubling per failure up to
``RETRY_MAX``: a full disk is retried, and logged, at a bounded rate rather than in a loop.

A batch that would hold nothing but acked cursors waits up to ``CURSOR_DELAY`` seconds for
something else to write: a cursor is an optimization (after a crash, what it had not recorded
is delivered again, which at-least-once allows), so it rides along with the next messages
rather than costing a write and an fsync of its own, one per ack, that the next add would
then have to wait behind (protocol §7.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .exceptions import InvalidState
from .records import StoredMessage
from .storage import Batch

__all__ = ["RETRY_FIRST", "RETRY_MAX", "Durable", "Journal"]

#: Seconds before the write after a failed one; doubled per failure up to ``RETRY_MAX``.
RETRY_FIRST: Final = 0.05
RETRY_MAX: Final = 2.0
#: Seconds a batch of nothing but cursors waits for company.
CURSOR_DELAY: Final = 0.05


@dataclass(frozen=True, slots=True)
class Durable:
    """What a written batch made durable."""

    number: int
    #: The messages appended, per queue, in seq order.
    messages: dict[str, list[StoredMessage]]
    #: The epochs set, per queue.
    epochs: dict[str, int]


class Journal:
    """The filling batch and the writing batch, and the back-off after a failure."""

    __slots__ = (
        "_cursors_due",
        "_filling",
        "_forgotten",
        "_number",
        "_retry_at",
        "_retry_delay",
        "_writing",
    )

    def __init__(self, now: float) -> None:
        self._filling = Batch()
        #: The number of the filling batch; the writing one, if any, is ``_number - 1``.
        self._number = 1
        self._writing: Batch | None = None
        self._retry_at = now
        self._retry_delay = 0.0
        #: Queues forgotten while the writing batch holds writes for them (``forget``).
        self._forgotten: set[str] = set()
        #: When a batch of nothing but cursors goes anyway; None until one waits.
        self._cursors_due: float | None = None

    @property
    def filling(self) -> int:
        """The number of the batch now filling: what a write asked for now will be part of."""
        return self._number

    @property
    def idle(self) -> bool:
        """Nothing is being written or waiting to be."""
        return self._writing is None and not self._filling

    def append(self, queue: str, message: StoredMessage, key: str | None) -> int:
        """Append ``message`` to ``queue`` (indexed under ``key``); returns the batch number."""
        self._filling.add_message(queue, message, key)
        return self._number

    def set_cursor(self, queue: str, acked: int) -> None:
        """Persist ``queue``'s acked cursor with the next batch."""
        self._filling.set_cursor(queue, acked)

    def set_epoch(self, queue: str, epoch: int) -> int:
        """Persist ``queue``'s epoch with the next batch; returns its number."""
        self._filling.set_epoch(queue, epoch)
        return self._number

    def forget(self, queues: set[str]) -> set[str]:
        """Write nothing more for ``queues``: this node stopped serving them (protocol §10.4).

        The filling batch drops them. The batch being written cannot be taken back; it is
        decided by the store (a queue taken over by another node fails it there), and what it
        made durable for these queues is left out of ``written()``. Returns those of
        ``queues`` it holds: they are *draining* until it is decided (``drained``).
        """
        self._filling.drop(queues)
        writing = self._writing
        draining = set() if writing is None else queues & writing.queues()
        self._forgotten |= draining
        return draining

    def drained(self) -> set[str]:
        """The queues ``forget`` left draining, once no batch holding them is being written."""
        if self._writing is not None or not self._forgotten:
            return set()
        drained, self._forgotten = self._forgotten, set()
        return drained

    def next_batch(self, now: float) -> Batch | None:
        """The batch to hand to the shell now, if one may go: none is out, the filling one
        holds something, any back-off is over, and it is not only cursors that may wait."""
        filling = self._filling
        if self._writing is not None or not filling or now < self._retry_at:
            return None
        if not (filling.messages or filling.epochs):
            if self._cursors_due is None:
                self._cursors_due = now + CURSOR_DELAY
            if now < self._cursors_due:
                return None
        self._cursors_due = None
        self._writing, self._filling = filling, Batch()
        self._number += 1
        return self._writing

    def hurry(self) -> None:
        """Let cursors waiting for company go with the next batch handed out (shutdown)."""
        self._cursors_due = self._retry_at

    def deadline(self) -> float | None:
        """When a batch held back (by the back-off, or cursors waiting for company) may go."""
        if self._writing is None and self._filling:
            due = self._cursors_due
            return self._retry_at if due is None or due < self._retry_at else due
        return None

    def written(self) -> Durable:
        """The batch handed out is durable: what it made durable."""
        batch = self._take_writing("written")
        self._retry_delay = 0.0
        messages: dict[str, list[StoredMessage]] = {}
        forgotten = self._forgotten
        for queue, message, _ in batch.messages:
            if queue in forgotten:
                continue
            found = messages.get(queue)
            if found is None:
                messages[queue] = [message]
            else:
                found.append(message)
        epochs = batch.epochs
        if forgotten:
            epochs = {queue: epoch for queue, epoch in epochs.items() if queue not in forgotten}
        return Durable(self._number - 1, messages, epochs)

    def failed(self, now: float) -> tuple[int, int]:
        """The batch handed out failed. It and the filling one are void (their seqs would
        leave a gap); their cursors and epochs go into the next. Returns the two numbers."""
        failed = self._take_writing("failed")
        waiting, self._filling = self._filling, Batch()
        lost = (self._number - 1, self._number)
        self._number += 1
        forgotten = self._forgotten
        for batch in (failed, waiting):
            for queue, acked in batch.cursors.items():
                if queue not in forgotten:
                    self._filling.set_cursor(queue, acked)
            for queue, epoch in batch.epochs.items():
                if queue not in forgotten:
                    self._filling.set_epoch(queue, epoch)
        self._retry_delay = min(RETRY_MAX, max(RETRY_FIRST, 2 * self._retry_delay))
        self._retry_at = now + self._retry_delay
        return lost

    def _take_writing(self, verb: str) -> Batch:
        batch, self._writing = self._writing, None
        if batch is None:
            raise InvalidState(f"batch_{verb}() without a WriteBatch outstanding")
        return batch
