"""Many connections, slow consumers and churn on an in-process server: producers keep
flowing, and nothing is left behind (threads, connections)."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jackrabbit_core.client import Subscribed

from ..support import HOST, WAIT
from .conftest import Start, eventually
from .wire import Peer

pytestmark = pytest.mark.timeout(60)


def test_200_concurrent_connections(start: Start) -> None:
    server = start()
    barrier = threading.Barrier(200, timeout=WAIT)

    def one(i: int) -> int:
        with server.client() as client:
            barrier.wait()  # all 200 are connected at once
            return client.add(str(i).encode())

    with ThreadPoolExecutor(200) as pool:
        seqs = list(pool.map(one, range(200)))
    assert sorted(seqs) == list(range(1, 201))


def test_a_consumer_that_stops_reading_does_not_stall_producers(start: Start) -> None:
    """At the smallest budget (so water marks of 128 KiB), 8 MB of backlog is plenty for a
    consumer that stops reading to fill its buffers; the producer's adds keep coming back
    at once."""
    server = start(memory_budget=8 * 1024 * 1024)
    payload = b"x" * 16384
    with server.client() as producer, ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: producer.add(payload), range(500)))  # an 8 MB backlog
        stuck = Peer.opened(server.port, server.ca, rcvbuf=4096)
        stuck.protocol.take(5000)
        stuck.flush()
        stuck.wait_for(lambda e: isinstance(e, Subscribed))
        # From here on the consumer reads nothing; its deliveries pile up on the server.
        worst = 0.0
        count = 0
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and count < 200:
            started = time.monotonic()
            producer.add(b"still flowing")
            worst = max(worst, time.monotonic() - started)
            count += 1
        assert count == 200
        assert worst < 1.0
        stuck.close()


def test_nothing_is_left_after_400_connections(start: Start) -> None:
    """Clean closes, abrupt drops (a reset, no close frame) and sockets that never speak TLS,
    four at a time: the server's threads come back to what they were, and it still serves."""
    server = start()
    Peer.opened(server.port, server.ca).close()
    baseline = threading.active_count()

    def cycle(i: int) -> None:
        if i % 4 == 3:
            socket.create_connection((HOST, server.port), timeout=WAIT).close()
            return
        peer = Peer.opened(server.port, server.ca)
        if i % 4 == 2:
            peer.abort()  # vanish without a close frame
            return
        peer.protocol.close()
        peer.flush()
        assert peer.closed().code == 1000
        peer.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(cycle, range(400)))
    assert eventually(lambda: threading.active_count() <= baseline)
    with server.client() as client:  # and it still serves
        assert client.add(b"after") >= 1
