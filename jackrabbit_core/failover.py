"""One queue's consumer line: who is active, what it is sent, what it acked, who takes over.

A sans-I/O state machine. It knows sequence numbers, not bytes: it decides *which seqs go to
which consumer* and says so as data (``Deliver``, ``PersistCursor`` ...). The caller fetches
the message bodies, encodes them, persists what it is told to persist, and reports back what
became durable. It reads no clock (``now`` is an argument) and touches no store.

The rules, in plain words (section numbers are ``docs/protocol.md``'s):

1. **Consumer line (§6.2).** Consumers join the line in the order of their ``take``. The first
   is *active*; the others are *standbys* and are sent nothing. A consumer that takes twice is
   refused (``bad_request``). A consumer that comes back joins the end of the line.
2. **What is delivered.** Only durable messages (seq <= ``last_seq``), in seq order, starting
   after the ``acked`` cursor. ``delivered`` is the highest seq sent to the current active.
   Nothing is sent while the active's transport is not writable (``set_writable``).
3. **Prefetch (§6.3).** At most ``prefetch`` unacknowledged messages are in flight:
   ``delivered - acked <= prefetch``.
4. **Acks (§6.4)** are cumulative and come from the active only. ``ack(seq)`` with
   ``acked < seq <= delivered`` moves the cursor (``PersistCursor``); ``seq <= acked`` is a
   harmless repeat; ``seq < 1`` or ``seq > delivered`` is ``bad_ack``; from a standby
   ``not_active``; from a consumer not in the line ``not_subscribed``.
5. **Promotion and redelivery (§6.5).** When the active leaves (disconnect, reset, heartbeat
   timeout) whatever it held unacknowledged becomes undelivered again (``delivered := acked``)
   and the earliest standby is promoted: it gets those messages first, in order, flagged
   ``redelivered``, then new ones. A seq is ``redelivered`` exactly when it is at or below
   ``high_water``, the highest seq ever delivered by this process (it starts at ``acked``:
   delivery state before a restart is not persisted).
6. **Planned handover (§6.6).** The active may ask to hand over. It must have a standby behind
   it (else ``no_standby``) and not be handing over already (else ``bad_request``). It is then
   sent nothing more; once it has acked all it holds, or ``handover_timeout`` seconds later,
   the earliest standby becomes active (getting whatever is still unacknowledged, redelivered)
   and the old active goes to the end of the line and hears ``Demoted``. If by then every
   standby has left, the handover is cancelled: deliveries resume and the request is refused
   with ``no_standby`` as soon as the last standby leaves. If the consumer handing over
   leaves, it is a normal promotion.
7. **Epochs (§6.7).** Every change of active consumer adds one to ``epoch`` and asks for it to
   be persisted (``PersistEpoch``) at once. Nobody hears of the new epoch (``Subscribed``
   active, ``Promoted``, ``Demoted``) and the new active is sent nothing until the caller
   reports ``epoch_durable()``: an epoch a consumer fences its side effects with must survive
   a crash. A standby's ``take`` is answered at once, without an epoch.
8. **Auto-ack (§8.3)** is not this module's business: a consumer of the original 0.0.3
   dialect cannot ack, so the caller acks on its behalf once the bytes of its deliveries are
   written to its socket. Until then they are in flight like any other (prefetch applies),
   and a failover redelivers them.
9. **Pacing.** One call sends at most ``window`` messages; when more are ready ``wants_pump``
   is true and the caller should call ``pump()`` soon (after its write buffers had a chance
   to push back through ``set_writable``).

Hence the invariant: at any instant at most one consumer holds unacknowledged deliveries (a
consumer demoted by a handover timeout holds nothing any more; its acks get ``not_active``).

How to drive it: call the verbs below; after **every** call drain ``outputs()`` and carry them
out in order, then call ``pump()`` soon if ``wants_pump``, and arm a timer at
``next_deadline()`` that calls ``handle_timer(now)``. Peer mistakes become ``Refused``
outputs; only caller mistakes raise ``InvalidState``. Every event costs O(1) (the line is an
ordered dict; ranges of seqs are sent as one ``Deliver``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from . import codes
from .codes import ErrorCode
from .exceptions import InvalidState
from .records import Req

__all__ = [
    "ConsumerId",
    "Deliver",
    "Demoted",
    "Output",
    "PersistCursor",
    "PersistEpoch",
    "Promoted",
    "Queue",
    "Refused",
    "Subscribed",
]

#: The caller's id for a consumer (the server uses the connection id).
ConsumerId = int


# -- outputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The reply to ``take``: ``role`` in the line, and the epoch when it is the active."""

    consumer: ConsumerId
    role: Literal["active", "standby"]
    epoch: int | None
    req: Req


@dataclass(frozen=True, slots=True)
class Promoted:
    """A standby became the active consumer at ``epoch`` (the v1 ``active`` event)."""

    consumer: ConsumerId
    epoch: int


@dataclass(frozen=True, slots=True)
class Demoted:
    """The consumer that handed over is now the last standby (the v1 ``standby`` event)."""

    consumer: ConsumerId
    epoch: int


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send seqs ``first`` to ``last`` (inclusive, in order) to ``consumer``.

    A seq at or below ``redelivered_through`` has ``redelivered: true``; the value is never
    below ``first - 1``, so ``redelivered_through < first`` means none is.
    """

    consumer: ConsumerId
    first: int
    last: int
    redelivered_through: int


@dataclass(frozen=True, slots=True)
class PersistEpoch:
    """Write the queue's epoch; report it with ``Queue.epoch_durable(epoch)`` once durable."""

    epoch: int


@dataclass(frozen=True, slots=True)
class PersistCursor:
    """Write the queue's acked cursor (no report back is needed)."""

    acked: int


@dataclass(frozen=True, slots=True)
class Refused:
    """A request of ``consumer`` was refused; answer with an ``error`` (or a close)."""

    consumer: ConsumerId
    code: ErrorCode
    message: str
    req: Req


Output = Subscribed | Promoted | Demoted | Deliver | PersistEpoch | PersistCursor | Refused


# -- state --------------------------------------------------------------------------------


class _Consumer:
    """What the line remembers of one consumer."""

    __slots__ = ("id", "prefetch", "writable")

    def __init__(self, consumer: ConsumerId, prefetch: int) -> None:
        self.id = consumer
        self.prefetch = prefetch
        self.writable = True


class _Handover:
    """A planned handover under way (rule 6)."""

    __slots__ = ("deadline", "req")

    def __init__(self, deadline: float, req: Req) -> None:
        self.deadline = deadline
        self.req = req


class Queue:
    """The consumer line, deliveries, acks and failover of one queue (see the module doc)."""

    __slots__ = (
        "_acked",
        "_active",
        "_announce",
        "_delivered",
        "_durable_epoch",
        "_epoch",
        "_handover",
        "_handover_timeout",
        "_high_water",
        "_last_seq",
        "_name",
        "_out",
        "_standbys",
        "_wants_pump",
        "_window",
    )

    def __init__(
        self,
        name: str,
        *,
        last_seq: int = 0,
        acked: int = 0,
        epoch: int = 0,
        handover_timeout: float = 30.0,
        window: int = 1000,
    ) -> None:
        """Start with the persisted state: ``last_seq`` durable messages, the ``acked``
        cursor and the ``epoch`` (all read back from the store, hence durable)."""
        if not 0 <= acked <= last_seq:
            raise InvalidState(f"need 0 <= acked <= last_seq, got {acked} and {last_seq}")
        if epoch < 0:
            raise InvalidState(f"epoch must be >= 0, got {epoch}")
        if not handover_timeout >= 0:
            raise InvalidState(f"handover_timeout must be >= 0, got {handover_timeout}")
        if window < 1:
            raise InvalidState(f"window must be >= 1, got {window}")
        self._name = name
        self._last_seq = last_seq
        self._acked = acked
        self._delivered = acked
        self._high_water = acked
        self._epoch = epoch
        self._durable_epoch = epoch
        self._handover_timeout = handover_timeout
        self._window = window
        self._active: _Consumer | None = None
        #: The standbys in line order (a dict keeps insertion order and removes in O(1)).
        self._standbys: dict[ConsumerId, _Consumer] = {}
        self._handover: _Handover | None = None
        #: Announcements waiting for their epoch to be durable, in epoch order (rule 7).
        self._announce: deque[tuple[int, Subscribed | Promoted | Demoted]] = deque()
        self._wants_pump = False
        self._out: list[Output] = []

    # -- read-only state ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def last_seq(self) -> int:
        """The highest durable seq."""
        return self._last_seq

    @property
    def window(self) -> int:
        """Most messages one call sends (rule 9); the caller may size it to the messages."""
        return self._window

    @window.setter
    def window(self, window: int) -> None:
        if window < 1:
            raise InvalidState(f"window must be >= 1, got {window}")
        self._window = window

    @property
    def acked(self) -> int:
        """Every seq at or below this is done."""
        return self._acked

    @property
    def epoch(self) -> int:
        """Changes of active consumer so far (the latest, maybe not yet durable)."""
        return self._epoch

    @property
    def delivered(self) -> int:
        """The highest seq sent to the current active (``acked`` when none is in flight)."""
        return self._delivered

    @property
    def high_water(self) -> int:
        """The highest seq ever delivered by this object; seqs up to it are redeliveries."""
        return self._high_water

    @property
    def line(self) -> tuple[ConsumerId, ...]:
        """The consumers in line order; the first is the active one."""
        if self._active is None:
            return ()
        return (self._active.id, *self._standbys)

    @property
    def active(self) -> ConsumerId | None:
        return None if self._active is None else self._active.id

    @property
    def in_flight(self) -> int:
        """Messages delivered to the active and not yet acknowledged."""
        return self._delivered - self._acked

    @property
    def handing_over(self) -> bool:
        return self._handover is not None

    @property
    def wants_pump(self) -> bool:
        """More messages are ready than one call sends: call ``pump()`` soon."""
        return self._wants_pump

    # -- inputs -------------------------------------------------------------------------

    def take(self, consumer: ConsumerId, *, prefetch: int, req: Req = None) -> None:
        """``consumer`` joins the end of the line (rule 1).

        In an empty line it becomes active at a new epoch; its ``Subscribed`` waits for
        ``epoch_durable``. A standby gets its ``Subscribed`` at once.
        """
        if prefetch < 1:
            raise InvalidState(f"prefetch must be >= 1, got {prefetch}")
        if self._in_line(consumer):
            self._refuse(consumer, codes.BAD_REQUEST, "already subscribed", req)
            return
        entry = _Consumer(consumer, prefetch)
        if self._active is None:
            self._active = entry
            self._new_epoch(Subscribed(consumer, "active", self._epoch + 1, req))
        else:
            self._standbys[consumer] = entry
            self._out.append(Subscribed(consumer, "standby", None, req))
        self._pump()

    def ack(self, consumer: ConsumerId, seq: int, req: Req = None) -> None:
        """``consumer`` acknowledges every delivered seq up to ``seq`` (rule 4)."""
        active = self._active
        if active is None or active.id != consumer:
            if consumer in self._standbys:
                self._refuse(consumer, codes.NOT_ACTIVE, "only the active consumer acks", req)
            else:
                self._refuse(consumer, codes.NOT_SUBSCRIBED, "take before you ack", req)
        elif seq < 1 or seq > self._delivered:
            self._refuse(
                consumer,
                codes.BAD_ACK,
                f"seq {seq} was not delivered (delivered through {self._delivered})",
                req,
            )
        elif seq > self._acked:
            self._acked = seq
            self._out.append(PersistCursor(seq))
            if self._handover is not None and self._acked == self._delivered:
                self._switch()
        self._pump()

    def handover(self, consumer: ConsumerId, now: float, req: Req = None) -> None:
        """The active ``consumer`` asks to hand over to the next standby (rule 6).

        The switch happens once it has acked all it holds, or at ``next_deadline()``.
        """
        active = self._active
        if active is None or active.id != consumer:
            if consumer in self._standbys:
                self._refuse(consumer, codes.NOT_ACTIVE, "only the active consumer hands over", req)
            else:
                self._refuse(consumer, codes.NOT_SUBSCRIBED, "take before you hand over", req)
        elif self._handover is not None:
            self._refuse(consumer, codes.BAD_REQUEST, "a handover is already under way", req)
        elif not self._standbys:
            self._refuse(consumer, codes.NO_STANDBY, "no standby to hand over to", req)
        else:
            self._handover = _Handover(now + self._handover_timeout, req)
            if self._acked == self._delivered:
                self._switch()
        self._pump()

    def leave(self, consumer: ConsumerId) -> None:
        """``consumer`` is gone (closed, reset, timed out); unknown ids are ignored (rule 5)."""
        active = self._active
        if active is not None and active.id == consumer:
            self._handover = None
            self._delivered = self._acked
            self._active = None
            if self._standbys:
                self._promote_first()
        elif self._standbys.pop(consumer, None) is None:
            return
        elif self._handover is not None and not self._standbys:
            self._switch()  # nobody left to hand over to: cancel now, not at the deadline
        if self._announce:
            self._announce = deque(a for a in self._announce if a[1].consumer != consumer)
        self._pump()

    def appended(self, last_seq: int) -> None:
        """Messages through ``last_seq`` are durable and may be delivered."""
        if last_seq < self._last_seq:
            raise InvalidState(f"last_seq went back from {self._last_seq} to {last_seq}")
        self._last_seq = last_seq
        self._pump()

    def epoch_durable(self, epoch: int) -> None:
        """The ``PersistEpoch(epoch)`` asked for is durable: announce it and deliver (rule 7).

        A report older than one already made is ignored.
        """
        if not 0 <= epoch <= self._epoch:
            raise InvalidState(f"epoch {epoch} was never issued (current {self._epoch})")
        if epoch > self._durable_epoch:
            self._durable_epoch = epoch
        announce = self._announce
        while announce and announce[0][0] <= self._durable_epoch:
            self._out.append(announce.popleft()[1])
        self._pump()

    def set_writable(self, consumer: ConsumerId, writable: bool) -> None:
        """``consumer``'s transport can (not) take more: deliveries pause and resume."""
        active = self._active
        if active is not None and active.id == consumer:
            active.writable = writable
        else:
            entry = self._standbys.get(consumer)
            if entry is None:
                return
            entry.writable = writable
        self._pump()

    def pump(self) -> None:
        """Deliver what can be delivered now (call it soon after ``wants_pump``)."""
        self._pump()

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must be called: a handover's timeout, if one is running."""
        return None if self._handover is None else self._handover.deadline

    def handle_timer(self, now: float) -> None:
        """Time passed: a handover past its deadline switches now (rule 6)."""
        if self._handover is not None and now >= self._handover.deadline:
            self._switch()
        self._pump()

    def outputs(self) -> list[Output]:
        """What to carry out, in order, since the last call."""
        out, self._out = self._out, []
        return out

    # -- internals ----------------------------------------------------------------------

    def _in_line(self, consumer: ConsumerId) -> bool:
        active = self._active
        return (active is not None and active.id == consumer) or consumer in self._standbys

    def _refuse(self, consumer: ConsumerId, code: ErrorCode, message: str, req: Req) -> None:
        self._out.append(Refused(consumer, code, message, req))

    def _new_epoch(self, *announce: Subscribed | Promoted | Demoted) -> None:
        """The active changed: persist a new epoch, announce once durable (rule 7)."""
        self._epoch += 1
        self._out.append(PersistEpoch(self._epoch))
        for output in announce:
            self._announce.append((self._epoch, output))

    def _promote_first(self) -> None:
        first = next(iter(self._standbys))
        self._active = self._standbys.pop(first)
        self._new_epoch(Promoted(first, self._epoch + 1))

    def _switch(self) -> None:
        """End the handover under way: the next standby takes over, or it is cancelled."""
        handover, self._handover = self._handover, None
        old = self._active
        if handover is None or old is None:
            raise InvalidState("no handover under way")  # unreachable: callers check
        if not self._standbys:
            message = "every standby left; handover cancelled"
            self._refuse(old.id, codes.NO_STANDBY, message, handover.req)
            return
        self._delivered = self._acked  # what it still holds is void, sent again to the next
        first = next(iter(self._standbys))
        self._active = self._standbys.pop(first)
        self._standbys[old.id] = old
        self._new_epoch(Demoted(old.id, self._epoch + 1), Promoted(first, self._epoch + 1))

    def _pump(self) -> None:
        """Send the active what rules 2, 3 and 9 allow."""
        self._wants_pump = False
        active = self._active
        if (
            active is None
            or not active.writable
            or self._handover is not None
            or self._durable_epoch < self._epoch
        ):
            return
        first = self._delivered + 1
        last = min(self._last_seq, self._delivered + self._window, self._acked + active.prefetch)
        if last < first:
            return
        redelivered_through = min(self._high_water, last)
        self._delivered = last
        if last > self._high_water:
            self._high_water = last
        out = self._out
        previous = out[-1] if out else None
        if (
            isinstance(previous, Deliver)
            and previous.consumer == active.id
            and previous.last == first - 1
        ):
            # Redeliveries come first: if this range has any, all of the previous one were.
            if redelivered_through < first:
                redelivered_through = previous.redelivered_through
            out[-1] = Deliver(active.id, previous.first, last, redelivered_through)
        else:
            out.append(Deliver(active.id, first, last, redelivered_through))
        self._wants_pump = last < self._last_seq and self._delivered < self._acked + active.prefetch
