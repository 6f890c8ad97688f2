"""The original jackrabbit 0.0.3 wire format (CONTRACT §3), which must keep working.

- ``{"command": {0: nil}, "data": BIN}`` (or ``[{0: nil}, BIN]``) is Add; ``{1: nil}`` is Take.
- An original consumer's deliveries are maps with exactly the keys ``command`` ({1: nil}),
  ``id`` (16 bytes), ``created_at`` (seconds), ``published`` (false), ``published_at`` (0),
  ``data``, in this order; it never receives ``added``, ``subscribed``, ``error`` or ``active``.
- An original Take joins the same line as v1 ``take``; a message written to an original
  consumer counts as acknowledged.
- A refused original request closes the connection with 1007 or 1008 and a reason.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from .client import Client, unpack, unpack_pairs
from .harness import Target

ADD, TAKE = {0: None}, {1: None}
PROMOTION = 5.0


def original_add(data: bytes, form: str = "map") -> Any:
    return {"command": ADD, "data": data} if form == "map" else [ADD, data]


def original_take(form: str = "map") -> Any:
    return {"command": TAKE, "data": b""} if form == "map" else [TAKE, b""]


def expect_delivery(client: Client, data: bytes, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame is an original-format delivery of ``data``, keys exactly in order."""
    raw = client.recv_bytes(timeout)
    pairs = unpack_pairs(raw)
    keys = [k for k, _ in pairs] if isinstance(pairs, list) else pairs
    assert keys == ["command", "id", "created_at", "published", "published_at", "data"], (
        f"not an original delivery (keys in order): {unpack(raw)!r}"
    )
    fields = dict(pairs)
    assert fields["command"] == [(1, None)], fields
    assert isinstance(fields["id"], bytes) and len(fields["id"]) == 16, fields
    assert isinstance(fields["created_at"], int), fields
    assert fields["published"] is False and fields["published_at"] == 0, fields
    assert fields["data"] == data, fields
    return fields


@pytest.mark.parametrize("form", ["map", "array"])
def test_original_add_is_stored_silently(
    server: Target, connect: Callable[..., Client], queue: str, form: str
) -> None:
    """An original Add stores the message and sends nothing back; v1 sees it normally."""
    producer = connect(server, queue)
    producer.send(original_add(b"from 0.0.3", form))
    consumer = connect(server, queue)
    consumer.take()
    message = consumer.expect("message", seq=1, data=b"from 0.0.3", redelivered=False)
    assert isinstance(message["id"], str)
    producer.expect_quiet()


@pytest.mark.parametrize("form", ["map", "array"])
def test_original_take_gets_original_deliveries(
    server: Target, connect: Callable[..., Client], queue: str, form: str
) -> None:
    """An original Take receives deliveries (and nothing else) in the original format: the
    id as the UUID's 16 bytes, created_at in seconds, matching what the producer was told."""
    producer = connect(server, queue)
    before = time.time()
    first = producer.add(b"one")
    consumer = connect(server, queue)
    consumer.send(original_take(form))
    fields = expect_delivery(consumer, b"one")  # no subscribed map before it
    assert fields["id"] == uuid.UUID(first["id"]).bytes
    assert abs(fields["created_at"] - first["created_at"] // 1000) <= 1, (fields, first)
    assert before - 60 <= fields["created_at"] <= time.time() + 60
    producer.add(b"two")
    expect_delivery(consumer, b"two")
    consumer.expect_quiet()


def test_original_and_v1_share_a_queue(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Original and v1 producers feed one queue; a v1 consumer, then an original standby
    promoted after it (getting the unacked rest, originally formatted), then a v1 standby
    promoted after the original one (which had acked all by receiving it)."""
    old_producer = connect(server, queue)
    new_producer = connect(server, queue)
    v1 = connect(server, queue)
    v1.take(prefetch=10)
    old = connect(server, queue)
    old.send(original_take())
    old_producer.send(original_add(b"m1"))
    assert v1.expect("message")["data"] == b"m1"
    new_producer.add(b"m2")
    assert v1.expect("message")["data"] == b"m2"
    old_producer.send(original_add(b"m3", "array"))
    got = v1.expect("message")
    assert (got["seq"], got["data"]) == (3, b"m3")
    old.expect_quiet()  # standby: nothing until promoted, and no "subscribed"
    later = connect(server, queue)
    later.take(role="standby")
    v1.ack(2)
    v1.close()
    expect_delivery(old, b"m3", timeout=PROMOTION)  # no "active" map: straight to messages
    new_producer.add(b"m4")
    expect_delivery(old, b"m4")
    old.close()  # the original client leaves: what it was sent counts as acked
    later.expect("active", timeout=PROMOTION)
    new_producer.add(b"m5")
    message = later.expect("message")
    assert (message["seq"], message["data"], message["redelivered"]) == (5, b"m5", False)
    old_producer.expect_quiet()


#: Refused original requests and their close code. The contract allows 1007 (undecodable)
#: or 1008 (not allowed); protocol.md §8.1 says which: a bad shape is 1007, a well-formed
#: request with a value not allowed (an unknown variant index) is 1008.
REFUSED: dict[str, tuple[Any, int]] = {
    "unknown variant": ({"command": {9: None}, "data": b""}, 1008),
    "array unknown variant": ([{7: None}, b""], 1008),
    "variant map two entries": ({"command": {0: None, 1: None}, "data": b"x"}, 1007),
    "variant value not nil": ({"command": {0: 1}, "data": b"x"}, 1007),
    "variant key not int": ({"command": {"0": None}, "data": b"x"}, 1007),
    "add data not binary": ({"command": {0: None}, "data": "text"}, 1007),
    "add without data": ({"command": {0: None}}, 1007),
    "array too short": ([{0: None}], 1007),
    "array too long": ([{0: None}, b"x", b"y"], 1007),
    "array first not a variant": ([0, b"x"], 1007),
}


@pytest.mark.parametrize(("request_", "code"), list(REFUSED.values()), ids=list(REFUSED))
def test_refused_original_request_closes(
    server: Target, connect: Callable[..., Client], queue: str, request_: Any, code: int
) -> None:
    """A refused original-format request closes with 1007 or 1008 (the one protocol.md §8.1
    names) and a reason, and never produces an ``error`` map; the server goes on serving."""
    client = connect(server, queue)
    client.send(request_)
    closed = client.expect_close()
    assert closed.code in (1007, 1008), (closed.code, closed.reason)
    assert closed.reason, "a close for bad input carries a reason"
    assert not closed.before, [unpack(b) for b in closed.before]
    assert closed.code == code, f"protocol.md §8.1 says {code}: {closed.code} {closed.reason!r}"
    assert connect(server, queue).add(b"still serving")["seq"] == 1


def test_original_take_without_data(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """protocol.md §8.1: a map-form Take may leave out ``data``."""
    connect(server, queue).add(b"x")
    consumer = connect(server, queue)
    consumer.send({"command": TAKE})
    expect_delivery(consumer, b"x")


def test_v1_request_on_original_connection_closes_1008(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """protocol.md §8.4: a connection's dialect is fixed by its first valid request; a valid
    v1 request on an original connection closes it with 1008."""
    client = connect(server, queue)
    client.send(original_add(b"first"))
    client.send({"command": "add", "data": b"second", "req": 1})
    closed = client.expect_close()
    assert closed.code == 1008 and not closed.before, (closed.code, closed.before)


def test_original_request_on_v1_connection_is_bad_request(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """protocol.md §8.4: on a v1 connection a valid original request gets ``bad_request``
    (the client reads v1) and the connection stays."""
    client = connect(server, queue)
    client.add(b"first")
    client.send(original_add(b"second"))
    client.expect("error", code="bad_request")
    assert client.add(b"third")["seq"] == 2


def test_original_consumer_garbage_closes_not_errors(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Once a connection spoke the original format, an undecodable frame closes it (1007)
    instead of producing an ``error`` map it could not read."""
    client = connect(server, queue)
    client.send(original_take())
    client.send_bytes(b"\xc1")
    closed = client.expect_close()
    assert closed.code == 1007, (closed.code, closed.reason)
    for frame in closed.before:
        event = unpack(frame)
        assert not (isinstance(event, dict) and "event" in event), event


def test_original_producer_never_hears_back(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Many original Adds get no reply at all, and all are stored, in order."""
    producer = connect(server, queue)
    for n in range(20):
        producer.send(original_add(b"o%d" % n, "map" if n % 2 else "array"))
    consumer = connect(server, queue)
    consumer.take()
    assert [m["data"] for m in consumer.messages(20)] == [b"o%d" % n for n in range(20)]
    producer.expect_quiet()
