"""Deliveries: every queue's consumer line and the bytes it sends (protocol §6, §7.3).

Each queue's ``failover.Queue`` decides which seqs go to which consumer; this part turns those
decisions into frames. Messages of the last durable batch are kept in memory and sent from
there to a consumer that keeps up; anything older (a backlog, redeliveries after a failover) is
read from the store in windows of at most ``READ_WINDOW`` messages, asked for as
``ReadMessages`` and sent when ``read_done`` brings it, so a backlog is never loaded whole and a
store that answers later (over a network) changes nothing here. Deliveries to a consumer leave
in seq order: while a read is out, the ranges behind it wait.

If a read fails, or the store does not have a message it should, the consumer waiting for it
is closed with 1011: the line fails over and the next consumer gets it all again, redelivered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Final

from . import codes, failover
from .actions import ReadMessages
from .journal import Durable, Journal
from .metrics import Counters
from .records import Req, StoredMessage
from .storage import QueueRecord
from .voices import Answer, Frames, Hangup, Voice

__all__ = ["READ_WINDOW", "Deliveries"]

#: Most messages asked of the store in one read (bounds memory per delivery); the most bytes
#: of data in one is the budget's ``read_bytes`` (a read always returns at least one message).
READ_WINDOW: Final = 256
#: How many messages one pump may hand a consumer's transport: about the budget's
#: ``pump_bytes`` of them (then its write buffer gets a chance to push back, ``set_writable``),
#: sized from the messages actually delivered, between these bounds.
MIN_WINDOW, MAX_WINDOW = 4, 1000

Output = Answer | Frames | ReadMessages


class _Slot:
    """A queue: its failover state machine and what this part keeps around it."""

    __slots__ = ("consumers", "machine", "pending", "reading", "recent")

    def __init__(self, machine: failover.Queue) -> None:
        self.machine = machine
        #: The voice of every consumer in the line.
        self.consumers: dict[int, Voice] = {}
        #: The messages of the last durable batch, sent from memory to a caught-up consumer.
        self.recent: list[StoredMessage] = []
        #: Ranges decided but not yet sent, in order; the first may be waiting for a read.
        self.pending: deque[failover.Deliver] = deque()
        #: The ticket of the read out for ``pending[0]``.
        self.reading: int | None = None


class Deliveries:
    """Every queue's consumers and deliveries (see the module docstring).

    Call the verbs, then drain ``outputs()``: ``Answer`` (tell a consumer something),
    ``Frames`` (its deliveries) and ``ReadMessages`` (ask the store; report with ``read_done``
    or ``read_failed``). Call ``handle_timer`` at ``next_deadline()``.
    """

    __slots__ = (
        "_counters",
        "_handover_timeout",
        "_journal",
        "_out",
        "_pump_bytes",
        "_read_bytes",
        "_reads",
        "_slots",
        "_tickets",
        "_timed",
        "_to_pump",
        "_window",
    )

    def __init__(
        self,
        journal: Journal,
        counters: Counters,
        records: Iterable[QueueRecord],
        *,
        handover_timeout: float,
        max_message_bytes: int,
        pump_bytes: int,
        read_bytes: int,
        tickets: Callable[[], int],
    ) -> None:
        self._journal = journal
        self._counters = counters
        self._handover_timeout = handover_timeout
        self._pump_bytes = pump_bytes
        self._read_bytes = read_bytes
        self._window = _window_for(pump_bytes, max_message_bytes)
        self._tickets = tickets
        self._slots: dict[str, _Slot] = {}
        #: Which queue each read out is for.
        self._reads: dict[int, str] = {}
        self._to_pump: set[str] = set()
        self._timed: set[str] = set()
        self._out: list[Output] = []
        for record in records:
            self.adopt(record)

    def outputs(self) -> list[Output]:
        """What to carry out, in order, since the last call."""
        out, self._out = self._out, []
        return out

    def states(self) -> list[tuple[str, failover.Queue]]:
        """Every queue's state machine with its name (read-only use: metrics, admin views)."""
        return [(name, slot.machine) for name, slot in self._slots.items()]

    # -- consumers --------------------------------------------------------------------------

    def take(self, conn: int, queue: str, prefetch: int, req: Req, voice: Voice) -> None:
        """``conn`` joins ``queue``'s consumer line (protocol §6.2)."""
        slot = self._slot(queue)
        slot.consumers.setdefault(conn, voice)
        slot.machine.take(conn, prefetch=prefetch, req=req)
        self._drain(queue, slot)

    def ack(self, conn: int, queue: str, seq: int, req: Req, voice: Voice) -> None:
        """``conn`` acknowledges every delivery up to ``seq`` (protocol §6.4); a refusal is
        said in ``voice`` (it may not be a consumer at all)."""
        slot = self._slot(queue)
        before = slot.machine.acked
        slot.machine.ack(conn, seq, req=req)
        if slot.machine.acked > before:
            self._counters.acks += 1
        self._drain(queue, slot, (conn, voice))

    def written(self, conn: int, queue: str, seq: int) -> None:
        """Deliveries to original-dialect consumer ``conn`` up to ``seq`` reached its socket:
        they count as acknowledged (protocol §8.3)."""
        slot = self._slots[queue]
        slot.machine.ack(conn, seq)
        self._drain(queue, slot)

    def handover(self, conn: int, queue: str, req: Req, voice: Voice, now: float) -> None:
        """``conn`` asks to hand over to the next standby (protocol §6.6); a refusal is said in
        ``voice``."""
        slot = self._slot(queue)
        slot.machine.handover(conn, now, req=req)
        self._drain(queue, slot, (conn, voice))

    def leave(self, conn: int, queue: str) -> None:
        """``conn`` is gone; if it was active the next standby takes over (protocol §6.5)."""
        slot = self._slots.get(queue)
        if slot is None or slot.consumers.pop(conn, None) is None:
            return
        slot.machine.leave(conn)
        self._drain(queue, slot)

    def set_writable(self, conn: int, queue: str, writable: bool) -> None:
        """``conn``'s transport can (not) take more: its deliveries pause and resume."""
        slot = self._slots.get(queue)
        if slot is None or conn not in slot.consumers:
            return
        slot.machine.set_writable(conn, writable)
        self._drain(queue, slot)

    # -- queues (cluster mode, protocol §10) --------------------------------------------------

    def adopt(self, record: QueueRecord) -> None:
        """Serve ``record``'s queue from its stored state, as after a restart (protocol §7.2):
        deliveries start after its cursor, and its first active consumer gets ``epoch + 1``."""
        self._slots[record.name] = self._new_slot(
            record.name, last_seq=record.last_seq, acked=record.acked, epoch=record.epoch
        )

    def release(self, queues: set[str]) -> None:
        """Forget ``queues`` (their consumers are being closed); reads still out for them are
        ignored when they come back."""
        for queue in queues:
            self._slots.pop(queue, None)
        self._to_pump -= queues
        self._timed -= queues
        for ticket in [t for t, name in self._reads.items() if name in queues]:
            del self._reads[ticket]

    # -- the store --------------------------------------------------------------------------

    def durable(self, durable: Durable) -> None:
        """A batch is durable: its messages may be delivered, its epochs announced."""
        for name, messages in durable.messages.items():
            slot = self._slot(name)
            slot.recent = messages
            slot.machine.appended(messages[-1].seq)
        for name, epoch in durable.epochs.items():
            self._slot(name).machine.epoch_durable(epoch)
        for name in dict.fromkeys([*durable.messages, *durable.epochs]):  # each queue once
            self._drain(name, self._slots[name])

    def read_done(self, ticket: int, messages: list[StoredMessage]) -> None:
        """The store's answer to ``ReadMessages`` ``ticket`` (ignored if its queue was
        released meanwhile)."""
        name = self._reads.pop(ticket, None)
        if name is None:
            return
        slot = self._slots[name]
        slot.reading = None
        deliver = slot.pending[0] if slot.pending else None
        if deliver is not None and deliver.consumer == slot.machine.active:
            if not messages or messages[0].seq != deliver.first:
                self._lost(slot, deliver.consumer, f"message {deliver.first} is missing")
                return
            self._frames(slot, deliver, messages)
            through = messages[-1].seq
            if through >= deliver.last:
                slot.pending.popleft()
            else:
                slot.pending[0] = replace(deliver, first=through + 1)
        self._send(name, slot)

    def read_failed(self, ticket: int, reason: str) -> None:
        """``ReadMessages`` ``ticket`` failed: its consumer is closed, the line fails over."""
        name = self._reads.pop(ticket, None)
        if name is None:
            return
        slot = self._slots[name]
        slot.reading = None
        deliver = slot.pending[0] if slot.pending else None
        if deliver is not None and deliver.consumer == slot.machine.active:
            self._lost(slot, deliver.consumer, reason)
        else:
            self._send(name, slot)

    # -- time -------------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Pump queues with more to send, and run handover deadlines."""
        for name in list(self._to_pump):
            self._to_pump.discard(name)
            slot = self._slots[name]
            slot.machine.pump()
            self._drain(name, slot)
        for name in list(self._timed):
            slot = self._slots[name]
            deadline = slot.machine.next_deadline()
            if deadline is not None and deadline <= now:
                slot.machine.handle_timer(now)
                self._drain(name, slot)

    def next_deadline(self, now: float) -> float | None:
        """When ``handle_timer`` must run: ``now`` while queues wait for a pump."""
        if self._to_pump:
            return now
        deadline = None
        for name in self._timed:
            when = self._slots[name].machine.next_deadline()
            if when is not None and (deadline is None or when < deadline):
                deadline = when
        return deadline

    # -- internals --------------------------------------------------------------------------

    def _new_slot(self, name: str, *, last_seq: int = 0, acked: int = 0, epoch: int = 0) -> _Slot:
        machine = failover.Queue(
            name,
            last_seq=last_seq,
            acked=acked,
            epoch=epoch,
            handover_timeout=self._handover_timeout,
            window=self._window,
        )
        return _Slot(machine)

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = self._new_slot(name)
        return slot

    def _drain(self, name: str, slot: _Slot, caller: tuple[int, Voice] | None = None) -> None:
        """Carry out what a queue's state machine decided; ``caller`` is the connection whose
        request this is, which may be refused without being in the line."""
        journal = self._journal
        for output in slot.machine.outputs():
            if isinstance(output, failover.Deliver):
                slot.pending.append(output)
            elif isinstance(output, failover.PersistCursor):
                journal.set_cursor(name, output.acked)
            elif isinstance(output, failover.PersistEpoch):
                journal.set_epoch(name, output.epoch)
            else:
                self._announce(slot, output, caller)
        if slot.pending:
            self._send(name, slot)
        if slot.machine.wants_pump:
            self._to_pump.add(name)
        if slot.machine.next_deadline() is None:
            self._timed.discard(name)
        else:
            self._timed.add(name)

    def _announce(
        self,
        slot: _Slot,
        output: failover.Subscribed | failover.Promoted | failover.Demoted | failover.Refused,
        caller: tuple[int, Voice] | None,
    ) -> None:
        voice = slot.consumers.get(output.consumer)
        if voice is None and caller is not None and caller[0] == output.consumer:
            voice = caller[1]
        if voice is None:
            return
        if isinstance(output, failover.Subscribed):
            speech = voice.subscribed(output.role, output.epoch, output.req)
        elif isinstance(output, failover.Promoted):
            self._counters.failovers += 1
            speech = voice.active(output.epoch)
        elif isinstance(output, failover.Demoted):
            self._counters.handovers += 1
            speech = voice.standby(output.epoch)
        else:
            speech = voice.refused(
                output.code, output.message, output.req, codes.CLOSE_POLICY_VIOLATION
            )
        self._out.append(Answer(output.consumer, speech))

    def _send(self, name: str, slot: _Slot) -> None:
        """Send the pending ranges of the active consumer, from memory or after a read."""
        pending = slot.pending
        while pending and slot.reading is None:
            deliver = pending[0]
            if deliver.consumer != slot.machine.active:
                pending.popleft()  # it left, or handed over: the next active gets them again
                continue
            first, last = deliver.first, deliver.last
            recent = slot.recent
            if recent and recent[0].seq <= first and last <= recent[-1].seq:
                offset = recent[0].seq
                self._frames(slot, deliver, recent[first - offset : last - offset + 1])
                pending.popleft()
                continue
            ticket = self._tickets()
            slot.reading = ticket
            self._reads[ticket] = name
            limit = min(READ_WINDOW, last - first + 1)
            self._out.append(ReadMessages(ticket, name, first, limit, self._read_bytes))

    def _frames(
        self, slot: _Slot, deliver: failover.Deliver, messages: list[StoredMessage]
    ) -> None:
        encode = slot.consumers[deliver.consumer].message
        flagged = deliver.redelivered_through
        payloads = [encode(message, message.seq <= flagged) for message in messages]
        counters = self._counters
        counters.deliveries += len(messages)
        if flagged >= messages[0].seq:
            counters.redeliveries += min(flagged, messages[-1].seq) - messages[0].seq + 1
        self._out.append(Frames(deliver.consumer, payloads, messages[-1].seq))
        size = sum(len(message.data) for message in messages)
        slot.machine.window = _window_for(self._pump_bytes, size // len(messages))

    def _lost(self, slot: _Slot, consumer: int, reason: str) -> None:
        """A delivery cannot be read: close its consumer so the line fails over (1011)."""
        slot.pending.clear()
        text = f"store read failed: {reason}"[:120]
        self._out.append(Answer(consumer, Hangup(codes.CLOSE_INTERNAL_ERROR, text)))


def _window_for(pump_bytes: int, message_bytes: int) -> int:
    """How many messages of about ``message_bytes`` one pump may send (about ``pump_bytes``)."""
    return max(MIN_WINDOW, min(MAX_WINDOW, pump_bytes // max(1, message_bytes + 64)))
