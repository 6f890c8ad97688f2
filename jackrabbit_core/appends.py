"""Adds: seqs, idempotency keys, confirmations and producer accounting (protocol §3.1, §6.8,
§7.1).

An add gets the next seq of its queue and goes into the journal's filling batch; its producer
hears ``added`` once that batch is durable, never before. A repeated idempotency key is answered
with the first message's seq and stores nothing: a key whose add is still in flight is found
here, a key already durable by asking the store (``FindKey``), which may answer later. While
that question is open, the adds behind it on the same queue wait, so a queue's seqs follow the
order its adds arrived in.

Each producer's unconfirmed adds are counted, in number and in bytes; the server stops reading
from a producer that has too many (``flooding``) until it is back under half (``calm``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .actions import FindKey
from .envelope import Add
from .journal import Durable, Journal
from .metrics import Counters
from .records import Req, StoredMessage
from .storage import QueueRecord
from .voices import Answer, Speech, Voice

__all__ = ["Appends"]


@dataclass(slots=True)
class _Waiting:
    """An add whose answer waits for a batch to be durable."""

    conn: int
    req: Req
    voice: Voice
    size: int
    message: StoredMessage
    duplicate: bool


class _Tail:
    """The append end of one queue."""

    __slots__ = ("blocked", "durable_seq", "keys", "lookup", "next_seq")

    def __init__(self, last_seq: int) -> None:
        self.next_seq = last_seq + 1
        #: The highest seq known durable: where ``next_seq`` goes back to after a failed write.
        self.durable_seq = last_seq
        #: Keys of adds not yet durable, with the message and the batch holding it.
        self.keys: dict[str, tuple[StoredMessage, int]] = {}
        #: The ``FindKey`` ticket this queue waits for, and the adds that arrived since.
        self.lookup: int | None = None
        self.blocked: deque[tuple[int, Add, Voice]] = deque()


class _Producer:
    """One connection's unconfirmed adds."""

    __slots__ = ("adds", "bytes")

    def __init__(self) -> None:
        self.adds = 0
        self.bytes = 0


class Appends:
    """Every queue's append end and every producer's unconfirmed adds (see the module doc).

    Call the verbs, then drain ``outputs()``: ``Answer`` (tell a connection something; its
    producer accounting changed) and ``FindKey`` (ask the store, report with ``found``).
    """

    __slots__ = (
        "_batch_keys",
        "_clock_ms",
        "_counters",
        "_journal",
        "_lookups",
        "_max_adds",
        "_max_bytes",
        "_new_id",
        "_out",
        "_producers",
        "_tails",
        "_tickets",
        "_waiting",
    )

    def __init__(
        self,
        journal: Journal,
        counters: Counters,
        records: Iterable[QueueRecord],
        *,
        new_id: Callable[[], bytes],
        clock_ms: Callable[[], int],
        tickets: Callable[[], int],
        max_pending_adds: int,
        max_pending_bytes: int,
    ) -> None:
        self._journal = journal
        self._counters = counters
        self._new_id = new_id
        self._clock_ms = clock_ms
        self._tickets = tickets
        self._max_adds = max_pending_adds
        self._max_bytes = max_pending_bytes
        self._tails = {record.name: _Tail(record.last_seq) for record in records}
        self._producers: dict[int, _Producer] = {}
        #: Answers waiting for a batch, by batch number.
        self._waiting: dict[int, list[_Waiting]] = {}
        #: The keys each batch holds, by batch number.
        self._batch_keys: dict[int, list[tuple[_Tail, str]]] = {}
        self._lookups: dict[int, tuple[_Tail, str, int, Add, Voice]] = {}
        self._out: list[Answer | FindKey] = []

    def outputs(self) -> list[Answer | FindKey]:
        """What to carry out, in order, since the last call."""
        out, self._out = self._out, []
        return out

    # -- producers --------------------------------------------------------------------------

    def flooding(self, conn: int) -> bool:
        """``conn`` has as many unconfirmed adds (or bytes) as it may: stop reading it."""
        producer = self._producers.get(conn)
        return producer is not None and (
            producer.adds >= self._max_adds or producer.bytes >= self._max_bytes
        )

    def calm(self, conn: int) -> bool:
        """``conn`` is back under half its limits: read it again."""
        producer = self._producers.get(conn)
        return producer is None or (
            producer.adds < self._max_adds // 2 and producer.bytes < self._max_bytes // 2
        )

    def forget(self, conn: int) -> None:
        """``conn`` is gone: its adds are still stored, nobody hears of them."""
        self._producers.pop(conn, None)

    # -- queues (cluster mode, protocol §10) --------------------------------------------------

    def adopt(self, record: QueueRecord) -> None:
        """Serve ``record``'s queue from its stored state: its next seq follows ``last_seq``."""
        self._tails[record.name] = _Tail(record.last_seq)

    def release(self, queues: set[str]) -> None:
        """Forget ``queues``: their connections are being closed, nobody hears of their adds,
        and a key lookup still out for them is ignored when it comes back."""
        for queue in queues:
            self._tails.pop(queue, None)
        for ticket in [t for t, lookup in self._lookups.items() if lookup[1] in queues]:
            del self._lookups[ticket]

    # -- adds -------------------------------------------------------------------------------

    def add(self, conn: int, queue: str, add: Add, voice: Voice) -> None:
        """Append ``add`` to ``queue`` for ``conn``, who is answered in ``voice``."""
        producer = self._producers.get(conn)
        if producer is None:
            producer = self._producers[conn] = _Producer()
        producer.adds += 1
        producer.bytes += len(add.data)
        tail = self._tails.get(queue)
        if tail is None:
            tail = self._tails[queue] = _Tail(0)
        if tail.lookup is None:
            self._append(tail, queue, conn, add, voice)
        else:
            tail.blocked.append((conn, add, voice))

    def found(self, ticket: int, message: StoredMessage | None) -> None:
        """The store's answer to ``FindKey`` ``ticket``: the message under that key, or None."""
        lookup = self._lookups.pop(ticket, None)
        if lookup is None:
            return  # its queue was released meanwhile
        tail, queue, conn, add, voice = lookup
        tail.lookup = None
        if message is None:
            self._store(tail, queue, conn, add, voice)
        else:
            self._counters.duplicates += 1
            self._answer(conn, len(add.data), voice.added(message, True, add.req))
        self._unblock(tail, queue)

    def lookup_failed(self, ticket: int, reason: str) -> None:
        """``FindKey`` ``ticket`` failed: that add is refused as unavailable, the rest go on."""
        lookup = self._lookups.pop(ticket, None)
        if lookup is None:
            return
        tail, queue, conn, add, voice = lookup
        tail.lookup = None
        self._answer(conn, len(add.data), voice.unavailable(reason, add.req))
        self._unblock(tail, queue)

    def written(self, durable: Durable) -> None:
        """A batch is durable: answer the adds that waited for it."""
        self._settle_keys(durable.number)
        for queue, messages in durable.messages.items():
            self._tails[queue].durable_seq = messages[-1].seq
        for waiting in self._waiting.pop(durable.number, ()):
            speech = waiting.voice.added(waiting.message, waiting.duplicate, waiting.req)
            self._answer(waiting.conn, waiting.size, speech)

    def failed(self, numbers: Iterable[int], reason: str) -> None:
        """Batches ``numbers`` failed: their adds are refused (maybe stored: retry with a key)
        and each queue's next seq goes back to what is known durable."""
        for number in numbers:
            self._settle_keys(number)
            for waiting in self._waiting.pop(number, ()):
                speech = waiting.voice.unavailable(reason, waiting.req)
                self._answer(waiting.conn, waiting.size, speech)
        for tail in self._tails.values():
            tail.next_seq = tail.durable_seq + 1

    # -- internals --------------------------------------------------------------------------

    def _append(self, tail: _Tail, queue: str, conn: int, add: Add, voice: Voice) -> None:
        key = add.key
        if key is None:
            self._store(tail, queue, conn, add, voice)
            return
        in_flight = tail.keys.get(key)
        if in_flight is not None:
            message, number = in_flight
            self._counters.duplicates += 1
            self._wait(number, _Waiting(conn, add.req, voice, len(add.data), message, True))
            return
        ticket = self._tickets()
        tail.lookup = ticket
        self._lookups[ticket] = (tail, queue, conn, add, voice)
        self._out.append(FindKey(ticket, queue, key))

    def _unblock(self, tail: _Tail, queue: str) -> None:
        blocked = tail.blocked
        while blocked and tail.lookup is None:
            conn, add, voice = blocked.popleft()
            self._append(tail, queue, conn, add, voice)

    def _store(self, tail: _Tail, queue: str, conn: int, add: Add, voice: Voice) -> None:
        message = StoredMessage(tail.next_seq, self._new_id(), self._clock_ms(), add.data)
        tail.next_seq += 1
        number = self._journal.append(queue, message, add.key)
        if add.key is not None:
            tail.keys[add.key] = (message, number)
            keys = self._batch_keys.get(number)
            if keys is None:
                self._batch_keys[number] = [(tail, add.key)]
            else:
                keys.append((tail, add.key))
        self._counters.adds += 1
        self._wait(number, _Waiting(conn, add.req, voice, len(add.data), message, False))

    def _wait(self, number: int, waiting: _Waiting) -> None:
        found = self._waiting.get(number)
        if found is None:
            self._waiting[number] = [waiting]
        else:
            found.append(waiting)

    def _settle_keys(self, number: int) -> None:
        """Batch ``number`` is decided: its keys are no longer in flight."""
        for tail, key in self._batch_keys.pop(number, ()):
            held = tail.keys.get(key)
            if held is not None and held[1] == number:
                del tail.keys[key]

    def _answer(self, conn: int, size: int, speech: Speech) -> None:
        producer = self._producers.get(conn)
        if producer is None:
            return
        producer.adds -= 1
        producer.bytes -= size
        self._out.append(Answer(conn, speech))
