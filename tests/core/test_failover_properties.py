"""Random interleavings against the failover rules (``jackrabbit_core.failover``'s docstring).

A ``RuleBasedStateMachine`` drives one ``Queue`` with appends, takes, acks (valid and not),
handovers, leaves, writability changes, epoch reports and timer ticks. It keeps its own small
model (the line, the cursor, what was sent, what is durable) and reads every output as a
consumer and a store would, checking:

* at most one consumer holds unacknowledged deliveries, and only an announced active one;
* a delivery goes to the announced active, writable consumer and starts right after what it
  holds (or the cursor): first deliveries come in seq order, without gaps or duplicates;
* ``redelivered`` is true exactly on seqs delivered before;
* prefetch is never exceeded, nor ``window`` per call;
* epochs grow by one, are announced only once durable, announcements never go back;
* refusals carry the right code, every ``take`` is answered;
* nothing that can be delivered is left waiting without ``wants_pump``;
* at the end, with one always-acking consumer, every durable message gets acked.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from jackrabbit_core.failover import (
    Deliver,
    Demoted,
    Output,
    PersistCursor,
    PersistEpoch,
    Promoted,
    Queue,
    Refused,
    Subscribed,
)

CONSUMERS = st.integers(min_value=0, max_value=3)
WINDOW = 4
HANDOVER_TIMEOUT = 10.0
LAST_CONSUMER = 99


class FailoverMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.q = Queue("q")
        self.now = 0.0
        self.req = 0
        # the model
        self.line: list[int] = []
        self.prefetch: dict[int, int] = {}
        self.writable: dict[int, bool] = {}
        self.last_seq = 0
        self.acked = 0
        self.delivered = 0  # highest seq sent to the current active
        self.high_water = 0
        self.first_deliveries: list[int] = []
        self.holder: int | None = None  # who holds unacked deliveries
        self.issued = 0  # latest epoch asked to persist
        self.durable = 0  # latest epoch reported durable
        self.announced_active: int | None = None  # announced at the latest epoch
        self.last_announced = 0
        self.handover_req: int | None = None
        self.deadline = 0.0
        self.unanswered_takes: dict[int, int] = {}  # req -> consumer
        self.prompt_store = False

    # -- driving --------------------------------------------------------------------------

    def next_req(self) -> int:
        self.req += 1
        return self.req

    def check(
        self,
        outputs: list[Output],
        *,
        req: int | None = None,
        refused: str | None = None,
        switching: bool = False,
        calls: int = 1,
    ) -> None:
        """Read the outputs of ``calls`` calls as consumers and the store would."""
        delivered_now = 0
        seen_refusal = False
        for output in outputs:
            if isinstance(output, PersistEpoch):
                assert output.epoch == self.issued + 1, "epochs grow by one"
                self.issued = output.epoch
                self.announced_active = None
                self.holder = None  # whatever it held is void: it will be redelivered
                self.delivered = self.acked
                if switching:  # a planned handover finished
                    assert self.handover_req is not None
                    assert len(self.line) >= 2
                    self.line.append(self.line.pop(0))
                    self.handover_req = None
            elif isinstance(output, Subscribed | Promoted | Demoted):
                if isinstance(output, Subscribed) and output.role == "standby":
                    assert output.epoch is None
                    assert output.consumer in self.line[1:]
                else:
                    assert output.epoch is not None
                    assert output.epoch <= self.durable, "announced only once durable"
                    assert output.epoch >= self.last_announced, "announcements go forward"
                    self.last_announced = output.epoch
                    if not isinstance(output, Demoted) and output.epoch == self.issued:
                        assert output.consumer == self.line[0]
                        self.announced_active = output.consumer
                if isinstance(output, Subscribed):
                    assert isinstance(output.req, int)
                    assert self.unanswered_takes.pop(output.req) == output.consumer
            elif isinstance(output, Deliver):
                c = output.consumer
                assert c == self.announced_active, "only the announced active gets messages"
                assert self.writable[c]
                assert self.handover_req is None
                assert self.holder in (None, c), "two consumers holding unacked deliveries"
                assert output.first == self.delivered + 1, "in order, no gap, no duplicate"
                assert output.first <= output.last <= self.last_seq
                # redelivered exactly on seqs delivered before
                flagged = max(output.first - 1, min(output.redelivered_through, output.last))
                expected = max(output.first - 1, min(self.high_water, output.last))
                assert flagged == expected
                for seq in range(max(self.high_water + 1, output.first), output.last + 1):
                    self.first_deliveries.append(seq)
                self.high_water = max(self.high_water, output.last)
                self.delivered = output.last
                self.holder = c
                delivered_now += output.last - output.first + 1
                assert self.delivered - self.acked <= self.prefetch[c], "prefetch"
            elif isinstance(output, PersistCursor):
                assert self.acked < output.acked <= self.delivered
                self.acked = output.acked
                if self.acked == self.delivered:
                    self.holder = None
            else:
                assert isinstance(output, Refused)
                if output.req == self.handover_req and output.req != req:
                    # a handover cancelled at switch time: every standby left
                    assert output.code == "no_standby" and self.line[1:] == []
                    self.handover_req = None
                else:
                    assert output.req == req and output.code == refused
                    assert not seen_refusal
                    seen_refusal = True
        assert seen_refusal == (refused is not None)
        assert delivered_now <= WINDOW * calls
        if self.prompt_store and self.durable < self.issued:
            self._epoch_durable(self.issued)

    # -- the machine's state matches the model ----------------------------------------------

    @invariant()
    def state_matches(self) -> None:
        q = self.q
        assert q.line == tuple(self.line)
        assert q.acked == self.acked and q.delivered == self.delivered
        assert q.last_seq == self.last_seq and q.high_water == self.high_water
        assert q.epoch == self.issued
        assert q.handing_over == (self.handover_req is not None)
        if q.in_flight:
            assert q.active == self.holder
        if self.handover_req is not None:
            assert q.next_deadline() == self.deadline
            assert self.acked < self.delivered and self.now < self.deadline
        else:
            assert q.next_deadline() is None

    @invariant()
    def nothing_deliverable_waits_unnoticed(self) -> None:
        if not self.line:
            assert not self.q.wants_pump
            return
        c = self.line[0]
        room = self.delivered - self.acked < self.prefetch[c]
        deliverable = (
            self.announced_active == c
            and self.writable[c]
            and self.handover_req is None
            and self.delivered < self.last_seq
            and room
        )
        assert self.q.wants_pump == deliverable

    # -- rules ----------------------------------------------------------------------------

    @initialize(
        last_seq=st.integers(0, 12),
        acked=st.integers(0, 12),
        epoch=st.integers(0, 3),
        prompt_store=st.booleans(),
        consumers=st.lists(st.integers(1, 8), max_size=3),
    )
    def start(
        self,
        last_seq: int,
        acked: int,
        epoch: int,
        prompt_store: bool,
        consumers: list[int],
    ) -> None:
        """A queue as read back from the store, and the ``consumers`` that take at once.
        With ``prompt_store`` every new epoch is reported durable right after the call that
        made it (a fast disk)."""
        acked = min(acked, last_seq)
        self.prompt_store = prompt_store
        self.q = Queue(
            "q",
            last_seq=last_seq,
            acked=acked,
            epoch=epoch,
            handover_timeout=HANDOVER_TIMEOUT,
            window=WINDOW,
        )
        self.last_seq = last_seq
        self.acked = self.delivered = self.high_water = acked
        self.issued = self.durable = self.last_announced = epoch
        self.first_deliveries = list(range(1, acked + 1))
        for c, prefetch in enumerate(consumers):
            self._take(c, prefetch)

    @rule(n=st.integers(0, 8))
    def append(self, n: int) -> None:
        self.last_seq += n
        self.q.appended(self.last_seq)
        self.check(self.q.outputs())

    @rule(n=st.integers(1, 3))
    def append_a_few(self, n: int) -> None:  # appends are common: a second rule weighs them
        self.append(n)

    @rule(c=CONSUMERS, prefetch=st.integers(1, 8))
    def take(self, c: int, prefetch: int) -> None:
        self._take(c, prefetch)

    def _take(self, c: int, prefetch: int) -> None:
        req = self.next_req()
        self.q.take(c, prefetch=prefetch, req=req)
        if c in self.line:
            self.check(self.q.outputs(), req=req, refused="bad_request")
            return
        self.line.append(c)
        self.prefetch[c], self.writable[c] = prefetch, True
        self.unanswered_takes[req] = c
        outputs = self.q.outputs()
        if len(self.line) == 1:
            assert isinstance(outputs[0], PersistEpoch)
        else:
            assert outputs[0] == Subscribed(c, "standby", None, req)  # answered at once
        self.check(outputs)

    @precondition(lambda self: self.line and self.delivered > self.acked)
    @rule(data=st.data())
    def ack_some_of_what_it_holds(self, data: st.DataObject) -> None:
        self._ack(self.line[0], data.draw(st.integers(self.acked + 1, self.delivered)))

    @rule(c=CONSUMERS, seq=st.integers(-1, 12))
    def ack_anything(self, c: int, seq: int) -> None:
        self._ack(c, seq)

    def _ack(self, c: int, seq: int) -> None:
        req = self.next_req()
        if c not in self.line:
            refused: str | None = "not_subscribed"
        elif c != self.line[0]:
            refused = "not_active"
        elif seq < 1 or seq > self.delivered:
            refused = "bad_ack"
        else:
            refused = None
        self.q.ack(c, seq, req=req)
        self.check(self.q.outputs(), req=req, refused=refused, switching=True)
        if refused is None:
            assert self.acked >= seq

    @precondition(lambda self: self.line)
    @rule()
    def handover_by_the_active(self) -> None:
        self.handover(self.line[0])

    @rule(c=CONSUMERS)
    def handover(self, c: int) -> None:
        req = self.next_req()
        if c not in self.line:
            refused: str | None = "not_subscribed"
        elif c != self.line[0]:
            refused = "not_active"
        elif self.handover_req is not None:
            refused = "bad_request"
        elif len(self.line) == 1:
            refused = "no_standby"
        else:
            refused = None
            self.handover_req = req
            self.deadline = self.now + HANDOVER_TIMEOUT
        self.q.handover(c, self.now, req=req)
        self.check(self.q.outputs(), req=req, refused=refused, switching=True)

    @precondition(lambda self: self.line)
    @rule()
    def active_leaves(self) -> None:
        self._leave(self.line[0])

    @rule(c=CONSUMERS)
    def leave(self, c: int) -> None:
        self._leave(c)

    def _leave(self, c: int) -> None:
        if c in self.line:
            if c == self.line[0]:
                self.handover_req = None
                self.holder = None
                self.delivered = self.acked
                self.announced_active = None
            self.line.remove(c)
            self.unanswered_takes = {r: who for r, who in self.unanswered_takes.items() if who != c}
        self.q.leave(c)
        self.check(self.q.outputs())

    @rule(c=CONSUMERS, writable=st.booleans())
    def set_writable(self, c: int, writable: bool) -> None:
        if c in self.line:
            self.writable[c] = writable
        self.q.set_writable(c, writable)
        self.check(self.q.outputs())

    @precondition(lambda self: self.issued > self.durable)
    @rule(data=st.data())
    def epoch_durable(self, data: st.DataObject) -> None:
        self._epoch_durable(data.draw(st.integers(self.durable - 1, self.issued)))

    def _epoch_durable(self, epoch: int) -> None:
        epoch = max(epoch, 0)
        self.durable = max(self.durable, epoch)
        self.q.epoch_durable(epoch)
        self.check(self.q.outputs())

    @rule(dt=st.sampled_from([0.0, 0.5, 3.0, 9.99, 10.0, 25.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.q.handle_timer(self.now)
        self.check(self.q.outputs(), switching=True)

    @precondition(
        lambda self: (
            len(self.line) > 1 and self.delivered > self.acked and self.handover_req is None
        )
    )
    @rule()
    def handover_while_holding(self) -> None:  # the handovers that have to wait
        self.handover(self.line[0])

    @precondition(lambda self: self.handover_req is not None)
    @rule(early=st.booleans())
    def tick_to_the_handover_deadline(self, early: bool) -> None:
        self.now = self.deadline - (0.001 if early else 0.0)
        self.tick(0.0)

    @precondition(lambda self: self.handover_req is not None)
    @rule()
    def the_consumer_handing_over_acks_all(self) -> None:
        self._ack(self.line[0], self.delivered)

    @precondition(lambda self: self.handover_req is not None)
    @rule()
    def the_consumer_handing_over_leaves(self) -> None:
        self._leave(self.line[0])

    @rule()
    def pump(self) -> None:
        self.q.pump()
        self.check(self.q.outputs())

    @rule(n=st.integers(1, 2 * WINDOW))
    def append_and_pump_then_drain(self, n: int) -> None:  # contiguous deliveries merge
        self.last_seq += n
        self.q.appended(self.last_seq)
        self.q.pump()
        self.check(self.q.outputs(), calls=2)

    # -- the end: everything durable gets delivered and acked ----------------------------------

    def teardown(self) -> None:
        q = self.q
        if not self.line:
            self._take(LAST_CONSUMER, 3)
        for _ in range(10 * self.last_seq + 20):
            if self.acked == self.last_seq and self.durable == self.issued:
                break
            if self.durable < self.issued:
                self._epoch_durable(self.issued)
            active = self.line[0]
            if not self.writable[active]:
                self.set_writable(active, True)
            if self.delivered > self.acked:
                self._ack(active, self.delivered)
            if q.handing_over:
                self.tick(HANDOVER_TIMEOUT)
            if q.wants_pump:
                self.pump()
            self.state_matches()
            self.nothing_deliverable_waits_unnoticed()
        assert self.acked == self.last_seq, "every durable message is delivered and acked"
        assert self.first_deliveries == list(range(1, self.last_seq + 1))
        assert not self.unanswered_takes, "every take is answered"


FailoverMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFailover = FailoverMachine.TestCase
