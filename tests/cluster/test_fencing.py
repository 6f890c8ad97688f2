"""A paused owner (protocol §10.4): SIGSTOP the node serving a queue until another node takes
it over, then SIGCONT. The woken node must not confirm or store anything more for the queue:
its lease ran out on its own clock, so it releases the queue before it acts on the adds that
waited in its socket (and the database would fence off a write it still tried:
``test_postgres.py``)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from conformance.client import Client, unpack
from conformance.harness import Certificates, ServerProcess

from .nodes import cluster_status, node


def test_a_paused_owner_that_wakes_up_writes_nothing(
    dsn: str, tmp_path: Path, certs: Certificates
) -> None:
    a = node("asyncio", "a", dsn, tmp_path, certs)
    b = node("threads", "b", dsn, tmp_path, certs)
    try:
        early = Client.open(a, "paused")
        assert [early.add(b"m%d" % i)["seq"] for i in range(3)] == [1, 2, 3]
        a.send_signal(signal.SIGSTOP)
        for i in range(3):  # they wait in a's socket while it sleeps
            early.send({"command": "add", "data": b"late%d" % i, "req": 100 + i})
        _until(lambda: not _alive(b)["a"])  # a's lease ran out (by the database's clock)
        taker = Client.open(b, "paused")  # so b takes the queue
        assert taker.add(b"b0")["seq"] == 4
        a.send_signal(signal.SIGCONT)
        closed = early.expect_close(timeout=15)
        answers = [unpack(raw) for raw in closed.before]
        assert not [e for e in answers if e.get("event") == "added"], answers
        assert closed.code == 1012, closed  # released before acting on what waited
        with Client.open(b, "paused") as consumer:
            consumer.take(prefetch=10)
            got = consumer.messages(4)
            assert [(m["seq"], m["data"]) for m in got] == [
                (1, b"m0"), (2, b"m1"), (3, b"m2"), (4, b"b0"),
            ]  # fmt: skip
            consumer.expect_quiet()  # and nothing of what a read after it woke
        taker.close()
    finally:
        a.send_signal(signal.SIGCONT)
        a.kill()
        b.kill()


def _alive(target: ServerProcess) -> dict[str, bool]:
    return {n["name"]: n["alive"] for n in cluster_status(target)["nodes"]}


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not true within {timeout}s"
        time.sleep(0.05)
