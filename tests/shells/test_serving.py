"""What every shell does around the core, on an in-process server: heartbeats, the slots,
handshakes that do not finish, and the shutdown (protocol §9)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from jackrabbit_core.client import Closed, Opened, Subscribed

from ..support import HOST, WAIT
from .conftest import Start
from .wire import Peer, tls_socket

pytestmark = pytest.mark.timeout(60)

HEARTBEAT = 0.2


def _silent_consumer(port: int, ca: str, queue: str) -> Peer:
    """A consumer that takes and then never answers anything (no pongs)."""
    peer = Peer.opened(port, ca, f"/queues/{queue}")
    peer.protocol.take(10)
    peer.flush()
    peer.wait_for(lambda e: isinstance(e, Subscribed))
    return peer


def test_silent_peers_are_dropped_and_live_ones_stay(start: Start) -> None:
    """An active consumer silent for two heartbeat intervals is dropped and the standby
    promoted with its delivery redelivered; a second silent peer goes the same way, while the
    live clients, who answer every ping, outlive all those heartbeats."""
    server = start(heartbeat=HEARTBEAT)
    silent = _silent_consumer(server.port, server.ca, "hb")
    standby = server.client("hb")
    messages = standby.take()
    assert standby.role == "standby"
    producer = server.client("hb")
    assert producer.add(b"for the silent one") == 1
    elapsed = silent.wait_dropped()
    assert 2 * HEARTBEAT <= elapsed < 2 * HEARTBEAT + 10
    silent.close()
    first = next(messages)
    assert (first.seq, first.redelivered, standby.role) == (1, True, "active")
    again = Peer.opened(server.port, server.ca)
    assert 2 * HEARTBEAT <= again.wait_dropped() < 2 * HEARTBEAT + 10
    again.close()
    assert standby.close_code is None and producer.close_code is None
    assert producer.add(b"still here") == 2
    assert next(messages).seq == 2
    standby.close()
    producer.close()


def test_connections_over_the_limit_get_503_until_one_leaves(start: Start) -> None:
    server = start(max_connections=2)
    peers = [Peer.opened(server.port, server.ca) for _ in range(2)]
    third = Peer(server.port, server.ca)
    assert third.closed().code == 503
    third.close()
    peers[0].close()
    # Once one leaves, a new one gets in (the core forgets the first when its EOF arrives).
    deadline = time.monotonic() + WAIT
    while True:
        fourth = Peer(server.port, server.ca)
        event = fourth.wait_for(lambda e: isinstance(e, Opened | Closed))[-1]
        if isinstance(event, Opened):
            break
        fourth.close()
        assert time.monotonic() < deadline, "the slot was never given back"
    for peer in (peers[1], fourth):
        peer.close()


def test_handshakes_that_do_not_finish_are_dropped(start: Start) -> None:
    """Connections silent, or stuck halfway through a ClientHello, are closed once the
    handshake timeout (shorter here than the TLS timeout) is over; nothing is left of them,
    and the server still accepts."""
    server = start(handshake_timeout=0.3)
    before = threading.active_count()
    started = time.monotonic()  # before the accepts, from which the server counts
    silent = [socket.create_connection((HOST, server.port), timeout=WAIT) for _ in range(4)]
    silent[0].sendall(b"\x16\x03\x01\x00\xff\x01")  # the start of a ClientHello
    for sock in silent:
        with sock:
            assert sock.recv(1) == b""  # closed by the server
    assert 0.3 <= time.monotonic() - started < WAIT
    assert threading.active_count() <= before
    tls_socket(server.port, server.ca).close()


def test_shutdown_closes_clients_with_1001_and_ends_every_thread(start: Start) -> None:
    """A client that answers the close frame but keeps its socket open does not hold the
    shutdown; one that never answers it, and a consumer that stopped reading behind 1.6 MB of
    deliveries, are dropped once they stall; every thread the server started ends."""
    before = threading.active_count()
    server = start()
    with server.client() as producer:
        for _ in range(100):
            producer.add(bytes(16 * 1024))
    answering = Peer.opened(server.port, server.ca)
    mute = Peer.opened(server.port, server.ca)
    stuck = Peer.opened(server.port, server.ca, rcvbuf=4096)
    stuck.protocol.take(1000)
    stuck.flush()
    stopper = threading.Thread(target=server.stop)
    started = time.monotonic()
    stopper.start()
    assert answering.closed().code == 1001  # our protocol answers the close
    assert mute.sock.recv(4)[:1] == b"\x88"  # a close frame it will not answer
    stopper.join(WAIT)
    assert time.monotonic() - started < 2.0  # far inside the 5 s bound
    assert threading.active_count() == before
    for peer in (answering, mute, stuck):
        peer.close()
