"""Durability across crashes and restarts (CONTRACT §1, §2).

- ``added`` is sent only once the message is durable (``--fsync always``, the default), so
  a SIGKILL loses no confirmed add: after a restart on the same ``--db`` every confirmed add
  is there exactly once, in order, seqs without gaps, and the next add continues the seq.
- Messages past the acked cursor are delivered again after a restart (at-least-once).
- Epochs survive restarts, so fencing tokens never repeat.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable

import pytest

from .client import Client
from .conftest import Spawner
from .harness import Agent

PRODUCERS = 3
#: Confirmations each producer must have before the server is killed.
BEFORE_KILL = 150


def test_sigkill_under_load_loses_no_confirmed_add(
    spawn: Spawner, connect: Callable[..., Client], queue: str
) -> None:
    """Three producer processes pipeline adds (50 in flight each); the server is SIGKILLed
    mid-stream and restarted. Every confirmed add is stored once, at the seq it was given;
    seqs run 1..N with no gap; each producer's messages are in the order it sent them; the
    next add gets N+1."""
    server = spawn()
    url = server.queue_url(queue)
    agents = [
        Agent("produce", url, server.ca, "--tag", f"p{i}", "--window", "50")
        for i in range(PRODUCERS)
    ]
    try:
        for agent in agents:
            agent.wait_for(f"confirmed {BEFORE_KILL} ", timeout=60)
        server.kill()
        outputs = [agent.finish(timeout=10) for agent in agents]
    finally:
        for agent in agents:
            agent.kill()
    confirmed: dict[int, bytes] = {}
    for i, lines in enumerate(outputs):
        for line in lines:
            match = re.fullmatch(r"confirmed (\d+) (\d+)", line)
            if match:
                n, seq = int(match.group(1)), int(match.group(2))
                assert seq not in confirmed, f"seq {seq} confirmed twice"
                confirmed[seq] = f"p{i}-{n}".encode()
    assert len(confirmed) >= PRODUCERS * BEFORE_KILL

    server.start()
    sentinel = connect(server, queue).add(b"sentinel")["seq"]
    consumer = connect(server, queue)
    consumer.take(prefetch=1000)
    stored: list[tuple[int, bytes]] = []
    while len(stored) < sentinel:
        chunk = consumer.messages(min(500, sentinel - len(stored)), timeout=10)
        stored += [(m["seq"], m["data"]) for m in chunk]
        consumer.ack(chunk[-1]["seq"])
    assert stored[-1][1] == b"sentinel", stored[-3:]
    consumer.expect_quiet()
    seqs = [seq for seq, _ in stored]
    assert seqs == list(range(1, sentinel + 1)), "seqs must run 1..N with no gap or repeat"
    by_seq = dict(stored)
    lost = {seq: data for seq, data in confirmed.items() if by_seq.get(seq) != data}
    assert not lost, f"confirmed adds missing or changed after SIGKILL: {sorted(lost)[:10]}"
    datas = [data for _, data in stored[:-1]]
    assert len(datas) == len(set(datas)), "a message was stored twice"
    for i in range(PRODUCERS):
        ns = [int(d.split(b"-")[1]) for d in datas if d.startswith(b"p%d-" % i)]
        assert ns == sorted(ns), f"producer p{i}'s messages are out of order"
    assert max(confirmed) < sentinel


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_unacked_messages_return_after_restart(
    spawn: Spawner, connect: Callable[..., Client], queue: str, how: str
) -> None:
    """Delivered but unacked messages are delivered again after a restart, in order; with a
    crash, acked ones may come back too (at-least-once), but nothing after them is skipped."""
    server = spawn()
    producer = connect(server, queue)
    for n in range(1, 6):
        producer.add(b"m%d" % n)
    consumer = connect(server, queue)
    consumer.take(prefetch=10)
    assert [m["seq"] for m in consumer.messages(5)] == [1, 2, 3, 4, 5]
    consumer.ack(2)
    # The reply proves the ack was processed (the delivery of m6 may come first).
    consumer.send({"command": "add", "data": b"m6", "req": "fence"})
    assert consumer.until("added", req="fence")[0]["seq"] == 6
    if how == "SIGKILL":
        server.kill()
    else:
        assert server.stop(signal.SIGTERM) == 0
    server.start()
    again = connect(server, queue)
    again.take(prefetch=10)
    first = again.expect("message")
    start = first["seq"]
    if how == "SIGTERM":
        assert start == 3, f"after a clean stop delivery resumes after the ack: {first!r}"
    assert 1 <= start <= 3, first
    rest = again.messages(6 - start)
    assert [m["seq"] for m in [first, *rest]] == list(range(start, 7))
    assert [m["data"] for m in [first, *rest]] == [b"m%d" % n for n in range(start, 7)]
    assert all(isinstance(m["redelivered"], bool) for m in [first, *rest])


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_epochs_survive_restart(
    spawn: Spawner, connect: Callable[..., Client], queue: str, how: str
) -> None:
    """The epoch after a restart is higher than any announced before it."""
    server = spawn()
    a, b = connect(server, queue), connect(server, queue)
    e1 = a.take()["epoch"]
    b.take(role="standby")
    a.close()
    e2 = b.expect("active", timeout=5)["epoch"]
    assert e2 > e1
    if how == "SIGKILL":
        server.kill()
    else:
        assert server.stop(signal.SIGTERM) == 0
    server.start()
    e3 = connect(server, queue).take(role="active")["epoch"]
    assert e3 > e2, (e1, e2, e3)
