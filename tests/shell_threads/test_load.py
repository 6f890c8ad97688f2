"""Many connections, slow consumers and churn: the shell's threads stay bounded."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from jackrabbit_core.client import Opened, Subscribed

from .conftest import WAIT, Running, settle_threads
from .wire import HOST, Peer


def test_200_concurrent_connections(running: Running) -> None:
    barrier = threading.Barrier(200, timeout=WAIT)

    def one(i: int) -> int:
        with running.client() as client:
            barrier.wait()  # all 200 are connected at once
            return client.add(str(i).encode())

    with ThreadPoolExecutor(200) as pool:
        seqs = list(pool.map(one, range(200)))
    assert sorted(seqs) == list(range(1, 201))


def test_a_consumer_that_stops_reading_does_not_stall_producers(running: Running) -> None:
    payload = b"x" * 16384
    with running.client() as producer, ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: producer.add(payload), range(2000)))  # a 32 MB backlog
        stuck = Peer(running.port, running.ca, rcvbuf=4096)
        stuck.wait_for(lambda e: isinstance(e, Opened))
        stuck.protocol.take(5000)
        stuck.flush()
        stuck.wait_for(lambda e: isinstance(e, Subscribed))
        # From here on the consumer reads nothing; its deliveries pile up on the server.
        worst = 0.0
        deadline = time.monotonic() + 2.0
        count = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            producer.add(b"still flowing")
            worst = max(worst, time.monotonic() - started)
            count += 1
        assert count > 20
        assert worst < 1.0
        stuck.close()


def test_no_thread_leak_after_1000_connections(running: Running) -> None:
    """Clean closes, abrupt drops and sockets that never speak TLS, four at a time."""
    context = ssl.create_default_context(cafile=running.ca)
    with running.client(ssl=context):
        pass
    baseline = settle_threads(threading.active_count())

    def cycle(i: int) -> None:
        if i % 4 == 3:
            socket.create_connection((HOST, running.port), timeout=WAIT).close()
            return
        client = running.client(ssl=context)
        if i % 4 == 2:
            client._link.abort()  # type: ignore[union-attr]  # vanish without a close frame
        client.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(cycle, range(1000)))
    assert settle_threads(baseline) <= baseline
    with running.client(ssl=context) as client:  # and it still serves
        assert client.add(b"after") >= 1
