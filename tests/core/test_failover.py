"""The failover state machine, rule by rule (see the docstring of ``jackrabbit_core.failover``).

Each test is a small scenario: drive a ``Queue``, drain its outputs, compare.
"""

from __future__ import annotations

import pytest

from jackrabbit_core.exceptions import InvalidState
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

A, B, C = 1, 2, 3


def drain(q: Queue) -> list[Output]:
    return q.outputs()


def active_queue(
    *, last_seq: int = 0, prefetch: int = 10, **kwargs: int | float
) -> Queue:
    """A queue whose consumer A is active at epoch 1, announced, outputs drained."""
    q = Queue("q", last_seq=last_seq, **kwargs)  # type: ignore[arg-type]
    q.take(A, prefetch=prefetch)
    q.epoch_durable(q.epoch)
    drain(q)
    return q


def with_standby(q: Queue, *consumers: int) -> Queue:
    for consumer in consumers:
        q.take(consumer, prefetch=10)
    drain(q)
    return q


# -- 6.2 consumer line -----------------------------------------------------------------------


def test_first_take_becomes_active_at_a_new_epoch_announced_once_durable() -> None:
    q = Queue("q", last_seq=3)
    q.take(A, prefetch=10, req=7)
    assert drain(q) == [PersistEpoch(1)]
    assert q.active == A and q.epoch == 1 and q.line == (A,)
    q.epoch_durable(1)
    assert drain(q) == [Subscribed(A, "active", 1, 7), Deliver(A, 1, 3, 0)]


def test_standby_take_is_answered_at_once_and_gets_nothing() -> None:
    q = active_queue(last_seq=2)
    q.take(B, prefetch=10, req="x")
    assert drain(q) == [Subscribed(B, "standby", None, "x")]
    q.appended(5)
    assert drain(q) == [Deliver(A, 3, 5, 2)]
    assert q.line == (A, B)


def test_taking_twice_is_refused() -> None:
    q = with_standby(active_queue(), B)
    q.take(A, prefetch=10, req=1)
    q.take(B, prefetch=10, req=2)
    assert drain(q) == [
        Refused(A, "bad_request", "already subscribed", 1),
        Refused(B, "bad_request", "already subscribed", 2),
    ]
    assert q.line == (A, B)


def test_a_consumer_that_comes_back_joins_the_end() -> None:
    q = with_standby(active_queue(), B, C)
    q.leave(B)
    q.take(B, prefetch=10)
    assert q.line == (A, C, B)


def test_leave_of_unknown_consumer_is_a_noop() -> None:
    q = active_queue(last_seq=1)
    q.leave(99)
    assert drain(q) == [] and q.line == (A,)


def test_leave_of_a_standby_changes_no_epoch() -> None:
    q = with_standby(active_queue(), B)
    q.leave(B)
    assert drain(q) == [] and q.epoch == 1 and q.line == (A,)


def test_last_consumer_leaving_empties_the_line() -> None:
    q = active_queue(last_seq=3, prefetch=2)
    assert q.delivered == 2
    q.leave(A)
    assert q.line == () and q.active is None and q.delivered == q.acked == 0
    q.take(B, prefetch=10)
    q.epoch_durable(2)
    assert drain(q) == [PersistEpoch(2), Subscribed(B, "active", 2, None), Deliver(B, 1, 3, 2)]


# -- delivery and 6.3 prefetch ---------------------------------------------------------------


def test_deliveries_start_after_the_cursor_and_only_durable_messages() -> None:
    q = Queue("q", last_seq=5, acked=3)
    q.take(A, prefetch=10)
    q.epoch_durable(1)
    assert drain(q)[-1] == Deliver(A, 4, 5, 3)  # not redelivered: high_water starts at acked
    q.appended(5)
    assert drain(q) == []
    q.appended(6)
    assert drain(q) == [Deliver(A, 6, 6, 5)]


def test_prefetch_bounds_what_is_in_flight() -> None:
    q = active_queue(last_seq=10, prefetch=3)
    q.appended(10)
    assert q.delivered == 3 and q.in_flight == 3
    q.ack(A, 2)
    assert drain(q) == [PersistCursor(2), Deliver(A, 4, 5, 3)]
    assert q.in_flight == 3 and not q.wants_pump


def test_not_writable_pauses_and_writable_resumes() -> None:
    q = active_queue(last_seq=1)
    q.set_writable(A, False)
    q.appended(4)
    assert drain(q) == []
    q.set_writable(A, True)
    assert drain(q) == [Deliver(A, 2, 4, 1)]


def test_set_writable_of_unknown_consumer_is_a_noop() -> None:
    q = active_queue()
    q.set_writable(99, False)
    q.appended(1)
    assert drain(q) == [Deliver(A, 1, 1, 0)]


def test_a_standby_not_writable_when_promoted_waits() -> None:
    q = with_standby(active_queue(last_seq=2), B)
    q.set_writable(B, False)
    q.leave(A)
    q.epoch_durable(2)
    assert drain(q) == [PersistEpoch(2), Promoted(B, 2)]
    q.set_writable(B, True)
    assert drain(q) == [Deliver(B, 1, 2, 2)]


def test_window_paces_a_large_backlog() -> None:
    q = active_queue(last_seq=25, prefetch=100, window=10)
    assert q.delivered == 10 and q.wants_pump
    q.pump()
    assert drain(q) == [Deliver(A, 11, 20, 10)] and q.wants_pump
    q.pump()
    assert drain(q) == [Deliver(A, 21, 25, 20)] and not q.wants_pump


def test_contiguous_deliveries_not_yet_drained_are_merged() -> None:
    q = active_queue(last_seq=25, prefetch=100, window=10)
    q.pump()
    q.pump()
    assert drain(q) == [Deliver(A, 11, 25, 10)]


def test_merged_deliveries_keep_the_redelivered_flags() -> None:
    q = Queue("q", last_seq=30, window=3)
    q.take(A, prefetch=100)
    q.set_writable(A, False)
    q.epoch_durable(1)
    q.set_writable(A, True)
    q.pump()
    assert drain(q)[-1] == Deliver(A, 1, 6, 0)
    q.leave(A)
    q.take(B, prefetch=100)
    q.epoch_durable(2)
    assert drain(q)[-1] == Deliver(B, 1, 3, 3)
    q.pump()
    q.pump()  # 4..6 redelivered, 7..9 new: one range
    assert drain(q) == [Deliver(B, 4, 9, 6)]


# -- 6.4 acks --------------------------------------------------------------------------------


def test_acks_are_cumulative_and_repeats_are_harmless() -> None:
    q = active_queue(last_seq=5)
    q.ack(A, 3)
    assert drain(q) == [PersistCursor(3)] and q.acked == 3
    q.ack(A, 2)
    q.ack(A, 3)
    assert drain(q) == [] and q.acked == 3


@pytest.mark.parametrize("seq", [0, -1, 6])
def test_acks_outside_what_was_delivered_are_bad_ack(seq: int) -> None:
    q = active_queue(last_seq=5)
    q.ack(A, seq, req=4)
    (refused,) = drain(q)
    assert isinstance(refused, Refused) and (refused.code, refused.req) == ("bad_ack", 4)
    assert q.acked == 0


def test_ack_from_a_standby_or_a_stranger() -> None:
    q = with_standby(active_queue(last_seq=5), B)
    q.ack(B, 1, req=1)
    q.ack(C, 1, req=2)
    assert [(r.consumer, r.code, r.req) for r in drain(q) if isinstance(r, Refused)] == [
        (B, "not_active", 1),
        (C, "not_subscribed", 2),
    ]
    assert q.acked == 0


def test_ack_before_any_delivery_is_bad_ack() -> None:
    q = Queue("q", last_seq=3)
    q.take(A, prefetch=10)  # epoch not durable yet: nothing sent
    drain(q)
    q.ack(A, 1)
    assert [o.code for o in drain(q) if isinstance(o, Refused)] == ["bad_ack"]


# -- 6.5 promotion & redelivery --------------------------------------------------------------


def test_promotion_redelivers_the_unacked_in_order_then_new() -> None:
    q = with_standby(active_queue(last_seq=4), B)
    q.ack(A, 2)
    drain(q)
    q.leave(A)
    assert drain(q) == [PersistEpoch(2)]  # nothing before the epoch is durable
    assert q.active == B and q.delivered == 2 and q.in_flight == 0
    q.appended(5)
    assert drain(q) == []
    q.epoch_durable(2)
    assert drain(q) == [Promoted(B, 2), Deliver(B, 3, 5, 4)]


def test_redeliveries_respect_prefetch_and_flags_follow_high_water() -> None:
    q = active_queue(last_seq=6, prefetch=4)
    q.take(B, prefetch=4)
    q.leave(A)
    q.epoch_durable(2)
    assert drain(q)[-1] == Deliver(B, 1, 4, 4)
    q.ack(B, 1)
    assert drain(q) == [PersistCursor(1), Deliver(B, 5, 5, 4)]
    q.ack(B, 5)
    assert drain(q) == [PersistCursor(5), Deliver(B, 6, 6, 5)]


def test_handing_the_line_down_several_times() -> None:
    q = with_standby(active_queue(last_seq=3), B, C)
    q.leave(A)
    q.leave(B)  # promoted but never announced: its announcement is dropped
    q.epoch_durable(3)
    assert drain(q) == [PersistEpoch(2), PersistEpoch(3), Promoted(C, 3), Deliver(C, 1, 3, 3)]


def test_an_older_epoch_durable_does_not_announce_a_newer_one() -> None:
    q = with_standby(active_queue(last_seq=3), B, C)
    q.leave(A)
    q.leave(B)
    drain(q)
    q.epoch_durable(2)
    assert drain(q) == []
    q.epoch_durable(3)
    assert drain(q)[0] == Promoted(C, 3)


# -- 6.6 planned handover --------------------------------------------------------------------


def test_handover_waits_for_acks_then_switches() -> None:
    q = with_standby(active_queue(last_seq=3), B)
    q.handover(A, now=100.0, req=9)
    assert q.handing_over and q.next_deadline() == 130.0
    q.appended(4)
    assert drain(q) == []  # no new deliveries while handing over
    q.ack(A, 2)
    assert drain(q) == [PersistCursor(2)]
    q.ack(A, 3)
    assert drain(q) == [PersistCursor(3), PersistEpoch(2)]
    assert q.line == (B, A) and not q.handing_over and q.next_deadline() is None
    q.ack(A, 3)
    assert [o.code for o in drain(q) if isinstance(o, Refused)] == ["not_active"]
    q.epoch_durable(2)
    assert drain(q) == [Demoted(A, 2), Promoted(B, 2), Deliver(B, 4, 4, 3)]


def test_handover_with_nothing_in_flight_switches_at_once() -> None:
    q = with_standby(active_queue(), B, C)
    q.handover(A, now=0.0)
    assert drain(q) == [PersistEpoch(2)]
    assert q.line == (B, C, A)


def test_handover_timeout_voids_the_old_actives_deliveries() -> None:
    q = with_standby(active_queue(last_seq=3, handover_timeout=5.0), B)
    q.ack(A, 1)
    q.handover(A, now=10.0)
    drain(q)
    q.handle_timer(14.9)
    assert drain(q) == [] and q.active == A
    q.handle_timer(15.0)
    assert drain(q) == [PersistEpoch(2)]
    assert q.active == B and q.delivered == 1
    q.ack(A, 3)  # too late: it is a standby now
    assert [o.code for o in drain(q) if isinstance(o, Refused)] == ["not_active"]
    q.epoch_durable(2)
    assert drain(q) == [Demoted(A, 2), Promoted(B, 2), Deliver(B, 2, 3, 3)]


def test_handover_refusals() -> None:
    q = active_queue(last_seq=1)
    q.handover(A, now=0.0, req=1)
    q.handover(C, now=0.0, req=2)
    q.take(B, prefetch=10)
    q.handover(B, now=0.0, req=3)
    q.handover(A, now=0.0, req=4)  # accepted: A holds 1 unacked
    q.handover(A, now=0.0, req=5)
    assert [(r.consumer, r.code, r.req) for r in drain(q) if isinstance(r, Refused)] == [
        (A, "no_standby", 1),
        (C, "not_subscribed", 2),
        (B, "not_active", 3),
        (A, "bad_request", 5),
    ]
    assert q.handing_over


def test_handover_cancelled_as_soon_as_every_standby_left() -> None:
    q = with_standby(active_queue(last_seq=1), B)
    q.handover(A, now=0.0, req="h")
    q.appended(2)
    assert drain(q) == []  # handing over: nothing new
    q.leave(B)
    assert drain(q) == [
        Refused(A, "no_standby", "every standby left; handover cancelled", "h"),
        Deliver(A, 2, 2, 1),
    ]
    assert not q.handing_over and q.active == A and q.epoch == 1
    assert q.next_deadline() is None and q.delivered == 2  # it keeps what it holds


def test_the_consumer_handing_over_leaves() -> None:
    q = with_standby(active_queue(last_seq=2), B)
    q.handover(A, now=0.0)
    q.leave(A)
    assert not q.handing_over and q.next_deadline() is None
    q.epoch_durable(2)
    assert drain(q) == [PersistEpoch(2), Promoted(B, 2), Deliver(B, 1, 2, 2)]


# -- 6.7 epochs ------------------------------------------------------------------------------


def test_epochs_continue_from_the_persisted_one() -> None:
    q = Queue("q", epoch=41)
    q.take(A, prefetch=1)
    assert drain(q) == [PersistEpoch(42)]
    q.epoch_durable(42)
    assert drain(q) == [Subscribed(A, "active", 42, None)]


def test_the_persisted_epoch_counts_as_durable() -> None:
    q = Queue("q", epoch=3, last_seq=1)
    with pytest.raises(InvalidState):
        q.epoch_durable(4)
    q.take(A, prefetch=1)
    q.epoch_durable(3)  # stale report: no announcement, no delivery
    assert drain(q) == [PersistEpoch(4)]


def test_a_take_reply_is_kept_through_a_quick_handover() -> None:
    q = Queue("q")
    q.take(A, prefetch=1, req=1)
    q.take(B, prefetch=1, req=2)
    q.handover(A, now=0.0, req=3)
    q.epoch_durable(2)
    assert drain(q) == [
        PersistEpoch(1),
        Subscribed(B, "standby", None, 2),
        PersistEpoch(2),
        Subscribed(A, "active", 1, 1),
        Demoted(A, 2),
        Promoted(B, 2),
    ]


# -- 9 pacing ---------------------------------------------------------------------------------


def test_deliveries_are_paced_by_the_window() -> None:
    q = Queue("q", last_seq=2500, window=1000)
    q.take(A, prefetch=5000)
    q.epoch_durable(1)
    assert drain(q)[-1:] == [Deliver(A, 1, 1000, 0)]
    assert q.wants_pump
    q.pump()
    q.pump()
    assert drain(q) == [
        # one Deliver: ranges that follow each other merge; none redelivered
        Deliver(A, 1001, 2500, 1000),
    ]
    assert not q.wants_pump


# -- caller misuse ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"acked": 2, "last_seq": 1},
        {"acked": -1},
        {"epoch": -1},
        {"window": 0},
        {"handover_timeout": -1.0},
    ],
)
def test_bad_construction_raises(kwargs: dict[str, int | float]) -> None:
    with pytest.raises(InvalidState):
        Queue("q", **kwargs)  # type: ignore[arg-type]


def test_caller_misuse_raises_invalid_state() -> None:
    q = Queue("q", last_seq=5)
    with pytest.raises(InvalidState):
        q.appended(4)
    with pytest.raises(InvalidState):
        q.epoch_durable(-1)
    with pytest.raises(InvalidState):
        q.take(A, prefetch=0)
    assert isinstance(InvalidState("x"), AssertionError)
