"""Failover and handover (CONTRACT §2): who is active, and what the next active receives.

- When the active consumer goes (clean close, socket dropped without a close frame, its
  process killed, or silent for two heartbeat intervals) the earliest standby gets ``active``
  with a higher ``epoch`` and receives every unacknowledged message again, in order,
  ``redelivered: true``, before new ones (``redelivered: false``).
- A consumer that comes back joins the end of the line.
- ``handover`` (planned): the sender gets no new deliveries; once it has acked what it
  holds (or after ``--handover-timeout``) the next standby gets ``active`` and the sender
  ``standby``, and becomes the last standby. Nothing is redelivered when all was acked.
  With nobody waiting it is refused with ``no_standby``.
- At any instant at most one consumer holds unacknowledged deliveries.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest

from .client import Client, RawWebSocket
from .conftest import Spawner
from .harness import Agent, Target

#: How long promotion may take after the active consumer is gone.
PROMOTION = 5.0


def _fill(client: Client, count: int) -> None:
    for n in range(count):
        client.send({"command": "add", "data": b"m%d" % (n + 1)})
    for _ in range(count):
        client.expect("added")


def _check_takeover(
    standby: Client | RawWebSocket,
    old_epoch: int,
    producer: Client,
    unacked: list[int],
    next_seq: int,
) -> int:
    """The standby is promoted, gets ``unacked`` again (in order, redelivered) and then the
    next new message (not redelivered). Returns the new epoch."""
    active = standby.expect("active", timeout=PROMOTION)
    assert isinstance(active["epoch"], int) and active["epoch"] > old_epoch, (old_epoch, active)
    assert set(active) == {"event", "epoch"}, active
    again = [standby.expect("message") for _ in unacked]
    assert [m["seq"] for m in again] == unacked
    assert all(m["redelivered"] is True for m in again), again
    assert [m["data"] for m in again] == [b"m%d" % s for s in unacked]
    producer.add(b"m%d" % next_seq)
    fresh = standby.expect("message")
    assert (fresh["seq"], fresh["redelivered"]) == (next_seq, False), fresh
    return int(active["epoch"])


def test_failover_on_clean_close(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """The active closes with a close frame: the standby gets the unacked messages first."""
    producer = connect(server, queue)
    _fill(producer, 5)
    a = connect(server, queue)
    epoch = a.take(prefetch=10)["epoch"]
    assert [m["seq"] for m in a.messages(5)] == [1, 2, 3, 4, 5]
    a.ack(2)
    b = connect(server, queue)
    b.take(role="standby")
    a.close()
    _check_takeover(b, epoch, producer, [3, 4, 5], 6)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_failover_on_abrupt_close(
    server: Target, connect: Callable[..., Client], queue: str, reset: bool
) -> None:
    """The active's socket is dropped with no close frame (FIN, or RST): same takeover."""
    producer = connect(server, queue)
    _fill(producer, 4)
    a = RawWebSocket.connect(server, f"/queues/{queue}")
    a.send({"command": "take", "prefetch": 10})
    epoch = a.expect("subscribed", role="active")["epoch"]
    assert [a.expect("message")["seq"] for _ in range(4)] == [1, 2, 3, 4]
    a.send({"command": "ack", "seq": 1})
    b = connect(server, queue)
    b.take(role="standby")
    a.abort(reset=reset)
    _check_takeover(b, epoch, producer, [2, 3, 4], 5)


def test_redeliveries_respect_the_new_prefetch(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """The promoted standby's own prefetch bounds its redeliveries too: with prefetch=2 it
    gets 2 of the 5 unacked, and each ack lets the next ones through, still in order."""
    producer = connect(server, queue)
    _fill(producer, 5)
    a = connect(server, queue)
    a.take(prefetch=10)
    a.messages(5)
    b = connect(server, queue)
    b.take(prefetch=2, role="standby")
    a.close()
    b.expect("active", timeout=PROMOTION)
    assert [(m["seq"], m["redelivered"]) for m in b.messages(2)] == [(1, True), (2, True)]
    b.expect_quiet()
    b.ack(2)
    assert [(m["seq"], m["redelivered"]) for m in b.messages(2)] == [(3, True), (4, True)]
    b.expect_quiet()
    b.ack(3)
    assert [(m["seq"], m["redelivered"]) for m in b.messages(1)] == [(5, True)]


def test_failover_on_killed_consumer_process(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """A consumer *process* is SIGKILLed while holding messages: the standby takes over."""
    producer = connect(server, queue)
    _fill(producer, 5)
    agent = Agent("consume", server.queue_url(queue), server.ca, "--prefetch", "10")
    try:
        agent.wait_for("subscribed active", timeout=10)
        agent.wait_for("message 5 ", timeout=10)
        b = connect(server, queue)
        b.take(role="standby")
        agent.kill()
    finally:
        agent.kill()
    # The agent's epoch is not known here; the standby's is checked to be positive.
    _check_takeover(b, 0, producer, [1, 2, 3, 4, 5], 6)


def test_failover_on_silence(spawn: Spawner, connect: Callable[..., Client], queue: str) -> None:
    """With ``--heartbeat 0.3`` an active consumer that stops answering pings (a raw client
    that stops reading) is dropped, and the standby takes over."""
    server = spawn("--heartbeat", "0.3")
    producer = connect(server, queue)
    _fill(producer, 3)
    a = RawWebSocket.connect(server, f"/queues/{queue}")
    a.send({"command": "take", "prefetch": 10})
    epoch = a.expect("subscribed", role="active")["epoch"]
    assert [a.expect("message")["seq"] for _ in range(3)] == [1, 2, 3]
    # From here on ``a`` reads nothing, so it answers no ping. ``b`` is a websockets client,
    # which answers pings: it must survive the same heartbeats and be promoted.
    b = connect(server, queue)
    b.take(role="standby")
    try:
        _check_takeover(b, epoch, producer, [1, 2, 3], 4)
    finally:
        a.abort()


def test_silent_producer_is_dropped(spawn: Spawner) -> None:
    """With ``--heartbeat 0.3`` the server pings; a connection that never answers is closed
    within a few intervals, while one that answers stays open."""
    server = spawn("--heartbeat", "0.3")
    silent = RawWebSocket.connect(server, "/queues/silence")
    silent.answer_pings = False
    lively = RawWebSocket.connect(server, "/queues/silence")
    # ``lively`` answers pings for as long as it reads; read until ``silent`` is gone.
    silent_gone = False
    deadline = time.monotonic() + PROMOTION
    while time.monotonic() < deadline and not silent_gone:
        with contextlib.suppress(TimeoutError):
            lively.recv_message(timeout=0.05)
        try:
            silent.recv_message(timeout=0.05)
        except TimeoutError:
            pass
        except Exception:  # a close frame or EOF: dropped
            silent_gone = True
    assert silent_gone, "a peer silent for more than two heartbeat intervals was not dropped"
    assert lively.pings >= 1, "the server sent no ping in all that time"
    lively.send({"command": "add", "data": b"alive"})
    assert lively.expect("added", timeout=2)["seq"] == 1
    lively.close()


def test_returning_consumer_waits_at_the_end(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """A, B, C take in that order; A leaves and comes back as A2: the line is B, C, A2."""
    producer = connect(server, queue)
    a, b, c = (connect(server, queue) for _ in range(3))
    a.take(role="active")
    b.take(role="standby")
    c.take(role="standby")
    a.close()
    b.expect("active", timeout=PROMOTION)
    a2 = connect(server, queue)
    a2.take(role="standby")
    b.close()
    c.expect("active", timeout=PROMOTION)
    producer.add(b"for c")
    assert c.expect("message")["data"] == b"for c"
    a2.expect_quiet()
    c.close()
    a2.expect("active", timeout=PROMOTION)


def test_planned_handover_redelivers_nothing(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """The active, holding nothing unacked, hands over: it gets ``standby``, the next gets
    ``active`` with the same new epoch, nothing is redelivered, and the sender is now last."""
    producer = connect(server, queue)
    a, b, c = (connect(server, queue) for _ in range(3))
    epoch = a.take(prefetch=10)["epoch"]
    b.take(role="standby")
    producer.add(b"m1")
    assert a.expect("message")["seq"] == 1
    a.ack(1)
    c.take(role="standby")
    a.send({"command": "handover", "req": 9})
    standby = a.expect("standby", timeout=PROMOTION)
    active = b.expect("active", timeout=PROMOTION)
    assert active["epoch"] > epoch, (epoch, active)
    assert standby["epoch"] == active["epoch"], (standby, active)
    producer.add(b"m2")
    message = b.expect("message")
    assert (message["seq"], message["redelivered"]) == (2, False), message
    a.expect_quiet()
    c.expect_quiet()
    b.close()  # the line is now C, A
    c.expect("active", timeout=PROMOTION)
    a.expect_quiet()


def test_handover_waits_for_acks(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """While the sender holds unacked messages it gets no new ones and nobody else is
    active; its ack completes the switch, and the next active starts after what was acked."""
    producer = connect(server, queue)
    a, b = connect(server, queue), connect(server, queue)
    a.take(prefetch=10)
    b.take(role="standby")
    producer.add(b"m1")
    assert a.expect("message")["seq"] == 1
    a.send({"command": "handover"})
    producer.add(b"m2")
    a.expect_quiet()  # no new deliveries to the one handing over ...
    b.expect_quiet()  # ... and no second active while seq 1 is unacked
    a.ack(1)
    a.expect("standby", timeout=PROMOTION)
    b.expect("active", timeout=PROMOTION)
    message = b.expect("message")
    assert (message["seq"], message["redelivered"]) == (2, False), message


def test_handover_timeout_switches_anyway(
    spawn: Spawner, connect: Callable[..., Client], queue: str
) -> None:
    """With ``--handover-timeout 0.5`` a sender that never acks is switched anyway; its
    unacked messages go to the new active first, ``redelivered: true``."""
    server = spawn("--handover-timeout", "0.5")
    producer = connect(server, queue)
    a, b = connect(server, queue), connect(server, queue)
    epoch = a.take(prefetch=10)["epoch"]
    b.take(role="standby")
    _fill(producer, 2)
    assert [m["seq"] for m in a.messages(2)] == [1, 2]
    a.send({"command": "handover"})
    a.expect("standby", timeout=PROMOTION)
    _check_takeover(b, epoch, producer, [1, 2], 3)


def test_handover_without_standby_is_refused(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Alone in the line, ``handover`` is refused with ``no_standby`` and nothing changes."""
    producer = connect(server, queue)
    a = connect(server, queue)
    a.take()
    a.send({"command": "handover", "req": "h1"})
    error = a.expect("error", code="no_standby", req="h1")
    assert isinstance(error["message"], str)
    producer.add(b"still yours")
    assert a.expect("message")["data"] == b"still yours"


def test_handover_cancelled_when_the_standby_leaves(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """protocol.md §6.6: if every standby leaves before the switch, the handover is cancelled
    with a ``no_standby`` error and deliveries to the sender resume."""
    producer = connect(server, queue)
    a, b = connect(server, queue), connect(server, queue)
    a.take(prefetch=10)
    b.take(role="standby")
    producer.add(b"m1")
    assert a.expect("message")["seq"] == 1
    a.send({"command": "handover", "req": "h"})
    producer.add(b"m2")
    a.expect_quiet()
    b.close()
    a.expect("error", code="no_standby", timeout=PROMOTION)
    message = a.expect("message")
    assert (message["seq"], message["redelivered"]) == (2, False), message


def test_epochs_increase_with_each_change(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Every change of the active consumer (failover or handover) raises the epoch."""
    a, b, c = (connect(server, queue) for _ in range(3))
    e1 = a.take()["epoch"]
    b.take(role="standby")
    c.take(role="standby")
    a.close()
    e2 = b.expect("active", timeout=PROMOTION)["epoch"]
    b.send({"command": "handover"})
    e3 = c.expect("active", timeout=PROMOTION)["epoch"]
    assert b.expect("standby", timeout=PROMOTION)["epoch"] == e3
    c.close()
    e4 = b.expect("active", timeout=PROMOTION)["epoch"]
    # "epoch counts the changes of a queue's active consumer": one per change.
    assert (e2, e3, e4) == (e1 + 1, e1 + 2, e1 + 3), (e1, e2, e3, e4)
    b.close()
    e5 = connect(server, queue).take(role="active")["epoch"]
    assert e5 > e4, (e4, e5)
