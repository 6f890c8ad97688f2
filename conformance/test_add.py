"""Adding messages (CONTRACT §2): confirmation, sequence numbers, idempotency keys, ``req``.

- Each ``add`` is answered by ``added`` with ``seq`` (1, 2, 3... per queue), ``id`` (a UUID)
  and ``created_at`` (Unix milliseconds).
- A repeated ``key`` returns the first message's seq with ``duplicate: true`` and stores
  nothing new, also across a restart.
- A request's ``req`` (int or str) is echoed in its reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .client import Client, is_uuid
from .conftest import Spawner
from .harness import Target

ADDED_KEYS = {"event", "seq", "id", "created_at"}


def test_add_confirms_with_seq_id_and_created_at(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """seq starts at 1 and grows by one; ids are distinct UUIDs; created_at is now, in ms."""
    client = connect(server, queue)
    before = int(time.time() * 1000)
    replies = [client.add(f"m{i}".encode()) for i in range(5)]
    after = int(time.time() * 1000)
    assert [r["seq"] for r in replies] == [1, 2, 3, 4, 5]
    for reply in replies:
        assert set(reply) == ADDED_KEYS, reply
        assert is_uuid(reply["id"]), reply
        # Milliseconds, close to now (a minute of slack for a server on another host).
        assert before - 60_000 <= reply["created_at"] <= after + 60_000, (before, reply, after)
    assert len({r["id"] for r in replies}) == 5


def test_queues_count_separately(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """Each queue has its own sequence."""
    a = connect(server, queue + "-a")
    b = connect(server, queue + "-b")
    assert [a.add(b"1")["seq"], a.add(b"2")["seq"], b.add(b"1")["seq"]] == [1, 2, 1]


def test_pipelined_adds_are_confirmed_in_order(
    server: Target, connect: Callable[..., Client], queue: str
) -> None:
    """100 adds sent without waiting come back as 100 ``added`` with their reqs, seqs 1..100."""
    client = connect(server, queue)
    for n in range(100):
        client.send({"command": "add", "data": b"%d" % n, "req": n})
    replies = client.recv_many(100)
    assert {r["event"] for r in replies} == {"added"}, replies
    assert sorted(r["req"] for r in replies) == list(range(100))
    by_req = {r["req"]: r["seq"] for r in replies}
    # One connection's adds are stored in the order they were sent.
    assert [by_req[n] for n in range(100)] == list(range(1, 101))


def test_req_is_echoed(server: Target, connect: Callable[..., Client], queue: str) -> None:
    """``req`` comes back unchanged, int or str."""
    client = connect(server, queue)
    assert client.add(b"x", req=42)["req"] == 42
    assert client.add(b"x", req="abc-1")["req"] == "abc-1"
    assert client.add(b"x", req=0)["req"] == 0
    assert "req" not in client.add(b"x")


def test_empty_and_binary_data(server: Target, connect: Callable[..., Client], queue: str) -> None:
    """Empty data and every byte value are stored and delivered unchanged."""
    producer = connect(server, queue)
    payloads = [b"", bytes(range(256)), b"\x00" * 1000]
    for payload in payloads:
        producer.add(payload)
    consumer = connect(server, queue)
    consumer.take()
    assert [m["data"] for m in consumer.messages(3)] == payloads


def test_idempotent_add_by_key(server: Target, connect: Callable[..., Client], queue: str) -> None:
    """A repeated key answers the first seq with ``duplicate: true`` and stores nothing new."""
    client = connect(server, queue)
    first = client.add(b"once", key="k-1")
    assert first["seq"] == 1 and "duplicate" not in first
    again = client.add(b"twice?", key="k-1")
    assert again["seq"] == 1 and again["duplicate"] is True
    assert again["id"] == first["id"]
    other = connect(server, queue).add(b"again", key="k-1")  # another connection
    assert other["seq"] == 1 and other["duplicate"] is True
    assert client.add(b"next", key="k-2")["seq"] == 2
    assert client.add(b"plain")["seq"] == 3
    consumer = connect(server, queue)
    consumer.take()
    got = consumer.messages(3)
    assert [(m["seq"], m["data"]) for m in got] == [(1, b"once"), (2, b"next"), (3, b"plain")]
    consumer.expect_quiet()


def test_repeated_key_in_flight(server: Target, connect: Callable[..., Client], queue: str) -> None:
    """The same key sent twice without waiting: one message, two answers with its seq."""
    client = connect(server, queue)
    client.send({"command": "add", "data": b"a", "key": "k", "req": 1})
    client.send({"command": "add", "data": b"b", "key": "k", "req": 2})
    replies = sorted(client.recv_many(2), key=lambda r: int(r["req"]))
    assert [(r["event"], r["seq"]) for r in replies] == [("added", 1), ("added", 1)], replies
    assert [r.get("duplicate") for r in replies] == [None, True], replies
    assert client.add(b"c")["seq"] == 2


def test_keys_are_per_queue(server: Target, connect: Callable[..., Client], queue: str) -> None:
    """The same key in two queues names two messages."""
    a = connect(server, queue + "-a")
    b = connect(server, queue + "-b")
    a.add(b"x")
    assert a.add(b"y", key="same")["seq"] == 2
    reply = b.add(b"y", key="same")
    assert reply["seq"] == 1 and "duplicate" not in reply


def test_idempotent_add_survives_restart(
    spawn: Spawner, connect: Callable[..., Client], queue: str
) -> None:
    """After a restart on the same --db a repeated key is still a duplicate of its first seq."""
    server = spawn()
    first = connect(server, queue).add(b"before", key="order-17")
    connect(server, queue).add(b"plain")
    server.restart()
    client = connect(server, queue)
    again = client.add(b"after", key="order-17")
    assert again["seq"] == first["seq"] and again["duplicate"] is True
    assert again["id"] == first["id"]
    assert client.add(b"new")["seq"] == 3
