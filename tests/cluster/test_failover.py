"""A node dies under load (protocol §10.4): produce on node A, consume on nodes B and C, SIGKILL
A, the queue's owner, while messages flow. Then: no confirmed add lost, every consumer session
sees seqs in strict order, at most one consumer is active at any instant, the epoch grows, and
the time from the kill to the new active consumer's first message is reported."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.harness import Certificates, ServerProcess

from .load import Consumer, Delivery, Producer
from .nodes import LEASE, cluster_status, node

#: Messages produced in all, and after how many confirmed the owner is killed.
COUNT, KILL_AFTER = 600, 200
#: Bound on the whole run.
DEADLINE = 60.0


@pytest.fixture
def three(dsn: str, tmp_path: Path, certs: Certificates) -> Iterator[list[ServerProcess]]:
    nodes = [
        node("asyncio", "a", dsn, tmp_path, certs),
        node("threads", "b", dsn, tmp_path, certs),
        node("asyncio", "c", dsn, tmp_path, certs),
    ]
    yield nodes
    for server in nodes:
        server.kill()


def test_sigkill_of_the_owner_under_load_loses_nothing(
    three: list[ServerProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = three
    context = ssl.create_default_context(cafile=str(a.ca))
    queue = "/queues/load"
    producer = Producer([a.url(queue), b.url(queue), c.url(queue)], context, COUNT)
    consumers = [Consumer("b", b.url(queue), context), Consumer("c", c.url(queue), context)]

    async def scenario() -> float:
        stop = asyncio.Event()
        producing = asyncio.create_task(producer.run())
        # The producer's first add makes A, the node it reached, take the queue.
        await _until(lambda: len(producer.confirmed) >= 1)
        consuming = [asyncio.create_task(c.run(stop)) for c in consumers]
        await _until(lambda: len(producer.confirmed) >= KILL_AFTER)
        await _until(lambda: any(c.deliveries for c in consumers))
        assert {n["name"]: n["queues"] for n in cluster_status(b)["nodes"]}["a"] == ["load"]
        killed_at = time.monotonic()
        a.kill()  # SIGKILL, while adds and deliveries flow
        await asyncio.wait_for(producing, DEADLINE)
        confirmed = set(producer.confirmed.values())
        await _until(lambda: confirmed <= {d.seq for c in consumers for d in c.deliveries})
        stop.set()
        await asyncio.gather(*consuming)
        return killed_at

    killed_at = asyncio.run(asyncio.wait_for(scenario(), DEADLINE + 30))
    deliveries = sorted((d for c in consumers for d in c.deliveries), key=lambda d: d.at)
    tenures = sorted((t for c in consumers for t in c.tenures), key=lambda t: t.start)

    # No confirmed add lost: each key's message is delivered at the seq it was confirmed with.
    by_seq = {d.seq: d.data for d in deliveries}
    assert len(producer.confirmed) == COUNT
    for key, seq in producer.confirmed.items():
        assert by_seq.get(seq) == key.encode(), (key, seq)
    # Strict order: within a consumer session, seqs go up one at a time.
    sessions: dict[tuple[str, int], list[Delivery]] = {}
    for d in deliveries:
        sessions.setdefault((d.consumer, d.session), []).append(d)
    for got in sessions.values():
        seqs = [d.seq for d in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    # At most one active consumer at any instant, each with its own, growing epoch.
    for before, after in itertools.pairwise(tenures):
        assert before.end <= after.start, (before, after)
        assert before.epoch < after.epoch, (before, after)
    old = [t for t in tenures if t.start < killed_at]
    new = [t for t in tenures if t.start > killed_at]
    assert old and new and new[0].epoch > old[-1].epoch
    # The new active got everything unacknowledged again, from the cursor on.
    first_new = next(d for d in deliveries if d.at > killed_at and d.epoch == new[0].epoch)
    last_old = max((d.seq for d in deliveries if d.at < killed_at), default=0)
    assert first_new.seq <= last_old + 1
    takeover = first_new.at - killed_at
    with capsys.disabled():
        print(
            f"\n[cluster] SIGKILL of the owner: new active's first message after {takeover:.2f}s "
            f"(lease {LEASE}s); {COUNT} adds, {producer.reconnects} producer reconnect(s), "
            f"{len(deliveries)} deliveries, epochs {[t.epoch for t in tenures]}"
        )
    assert takeover < LEASE + 10


async def _until(check: object, timeout: float = DEADLINE) -> None:
    """Poll ``check()`` until true; fail after ``timeout`` seconds."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        await asyncio.sleep(0.02)
