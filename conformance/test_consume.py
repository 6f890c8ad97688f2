"""Taking messages (CONTRACT §2): roles, deliveries, prefetch, cumulative acks, refusals.

- ``take`` joins the queue's line: the first is ``active`` (with an ``epoch``), later ones
  ``standby`` (no ``epoch``) and receive nothing.
- The active consumer gets every message in seq order, with the same id and created_at
  the producer was told, ``redelivered: false``.
- ``prefetch`` is the most unacknowledged messages in flight, exactly (default 1000).
- ``ack`` is cumulative: every delivered message with seq <= the acked seq is done.
- Refusals are ``error`` events and the connection stays usable.
"""

from __future__ import annotations

from collections.abc import Callable

from .client import Client
from .harness import Target

MESSAGE_KEYS = {"event", "seq", "id", "created_at", "data", "redelivered"}


def _fill(client: Client, count: int, start: int = 1) -> list[dict[str, object]]:
    """Pipeline ``count`` adds with data ``b"m<n>"`` and return their replies in seq order."""
    for n in range(start, start + count):
        client.send({"command": "add", "data": b"m%d" % n})
    replies = client.recv_many(count)
    assert {r["event"] for r in replies} == {"added"}
    return sorted(replies, key=lambda r: int(r["seq"]))


def test_first_take_is_active_then_standby(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """The first consumer is active with an int epoch; the next is standby without one."""
    a, b = connect(server, queue), connect(server, queue)
    first = a.take()
    assert first["role"] == "active" and isinstance(first["epoch"], int), first
    assert set(first) == {"event", "role", "epoch"}, first
    second = b.take()
    assert second == {"event": "subscribed", "role": "standby"}, second
    connect(server, queue).add(b"only for a")
    assert a.expect("message")["data"] == b"only for a"
    b.expect_quiet()


def test_backlog_then_live_deliveries(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Messages stored before ``take`` come first, then new ones, all in seq order, with the
    ids and creation times the producer was given."""
    producer = connect(server, queue)
    added = _fill(producer, 3)
    consumer = connect(server, queue)
    consumer.take()
    added += [producer.add(b"m4"), producer.add(b"m5")]
    got = consumer.messages(5)
    for reply, message in zip(added, got, strict=True):
        assert set(message) == MESSAGE_KEYS, message
        assert message["seq"] == reply["seq"]
        assert message["id"] == reply["id"]
        assert message["created_at"] == reply["created_at"]
        assert message["redelivered"] is False
    assert [m["data"] for m in got] == [b"m1", b"m2", b"m3", b"m4", b"m5"]


def test_prefetch_is_honoured_exactly(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """With prefetch=3 exactly 3 messages are in flight: each ack lets exactly that many more
    through, stored or newly added."""
    producer = connect(server, queue)
    _fill(producer, 6)
    consumer = connect(server, queue)
    consumer.take(prefetch=3)
    assert [m["seq"] for m in consumer.messages(3)] == [1, 2, 3]
    consumer.expect_quiet()
    consumer.ack(1)
    assert consumer.expect("message")["seq"] == 4
    consumer.expect_quiet()
    consumer.ack(4)  # cumulative: 2, 3 and 4 are done
    assert [m["seq"] for m in consumer.messages(2)] == [5, 6]
    producer.add(b"m7")
    assert consumer.expect("message")["seq"] == 7
    producer.add(b"m8")
    consumer.expect_quiet()  # 5, 6, 7 in flight
    consumer.ack(7)
    assert consumer.expect("message")["seq"] == 8


def test_prefetch_one(server: Target, connect: Callable[..., Client], queue: str) -> None:
    """prefetch=1 is one message at a time."""
    producer = connect(server, queue)
    _fill(producer, 3)
    consumer = connect(server, queue)
    consumer.take(prefetch=1)
    for seq in (1, 2, 3):
        assert consumer.expect("message")["seq"] == seq
        consumer.expect_quiet(0.15)
        consumer.ack(seq)


def test_default_prefetch_is_1000(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Without ``prefetch`` 1000 messages are in flight, not one more."""
    producer = connect(server, queue)
    _fill(producer, 1001)
    consumer = connect(server, queue)
    consumer.take()
    got = consumer.messages(1000)
    assert [m["seq"] for m in got] == list(range(1, 1001))
    consumer.expect_quiet()
    consumer.ack(1)
    assert consumer.expect("message")["seq"] == 1001


def test_cumulative_ack(server: Target, connect: Callable[..., Client], queue: str) -> None:
    """Acking seq 3 of 5 in flight finishes 1, 2 and 3: three more come, and on failover
    only 4 and later are delivered again."""
    producer = connect(server, queue)
    _fill(producer, 10)
    a = connect(server, queue)
    a.take(prefetch=5)
    assert [m["seq"] for m in a.messages(5)] == [1, 2, 3, 4, 5]
    a.ack(3)
    assert [m["seq"] for m in a.messages(3)] == [6, 7, 8]
    a.expect_quiet()
    b = connect(server, queue)
    b.take(prefetch=100, role="standby")
    a.close()
    b.expect("active")
    again = b.messages(7)
    assert [m["seq"] for m in again] == [4, 5, 6, 7, 8, 9, 10]
    assert [m["redelivered"] for m in again] == [True] * 5 + [False] * 2


def test_ack_of_everything_then_more(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Acking the last delivered message leaves nothing in flight; new adds flow again."""
    producer = connect(server, queue)
    consumer = connect(server, queue)
    consumer.take(prefetch=2)
    for n in range(1, 6):
        producer.add(b"x")
        assert consumer.expect("message")["seq"] == n
        consumer.ack(n)


# -- refusals ------------------------------------------------------------------------------


def _still_usable(client: Client) -> None:
    reply = client.add(b"after an error", req="usable")
    assert reply["req"] == "usable"


def test_ack_before_take_is_not_subscribed(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """``ack`` from a connection that never took: ``not_subscribed``; the connection stays."""
    client = connect(server, queue)
    client.send({"command": "ack", "seq": 1, "req": 5})
    error = client.expect("error", code="not_subscribed", req=5)
    assert isinstance(error["message"], str) and error["message"]
    _still_usable(client)


def test_handover_before_take_is_not_subscribed(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """``handover`` from a connection that never took: ``not_subscribed``."""
    client = connect(server, queue)
    client.send({"command": "handover"})
    client.expect("error", code="not_subscribed")
    _still_usable(client)


def test_standby_ack_and_handover_are_not_active(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """A standby holds nothing: its ``ack`` and ``handover`` are refused with ``not_active``."""
    a, b = connect(server, queue), connect(server, queue)
    a.take(role="active")
    b.take(role="standby")
    b.send({"command": "ack", "seq": 1})
    b.expect("error", code="not_active")
    b.send({"command": "handover", "req": "h"})
    b.expect("error", code="not_active", req="h")
    _still_usable(b)


def test_ack_beyond_delivered_is_bad_ack(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Acking a seq that was never delivered is ``bad_ack``; deliveries go on unchanged."""
    producer = connect(server, queue)
    _fill(producer, 3)
    consumer = connect(server, queue)
    consumer.take(prefetch=1)
    assert consumer.expect("message")["seq"] == 1
    consumer.send({"command": "ack", "seq": 3})
    consumer.expect("error", code="bad_ack")
    consumer.ack(1)
    assert consumer.expect("message")["seq"] == 2
