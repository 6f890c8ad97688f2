"""An in-process server over real TLS: the client, failover, HTTP, and odd peers."""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jackrabbit_core.client import Closed, Opened
from jackrabbit_threads import ClientError, ConnectionLost

from .conftest import WAIT, Running, Starter, settle_threads
from .wire import HOST, Peer, http, tls_socket


def test_add_take_ack(running: Running) -> None:
    with running.client("jobs") as producer:
        assert [producer.add(f"m{i}".encode()) for i in range(3)] == [1, 2, 3]
    with running.client("jobs") as consumer:
        messages = consumer.take(prefetch=10)
        assert consumer.role == "active"
        first = next(messages)
        assert (first.seq, first.data, first.redelivered) == (1, b"m0", False)
        first.ack()
    with running.client("jobs") as consumer:
        messages = consumer.take(prefetch=10)
        assert [next(messages).seq for _ in range(2)] == [2, 3]


def test_adds_pipelined_from_threads(running: Running) -> None:
    with running.client() as client, ThreadPoolExecutor(16) as pool:
        seqs = list(pool.map(lambda i: client.add(str(i).encode()), range(500)))
    assert sorted(seqs) == list(range(1, 501))


def test_idempotent_key(running: Running) -> None:
    with running.client() as client:
        first = client.add(b"x", key="k1")
        assert client.add(b"other", key="k1") == first
        assert client.add(b"y") == first + 1


def test_failover_redelivers_to_the_standby(running: Running) -> None:
    with running.client() as producer:
        for i in range(5):
            producer.add(str(i).encode())
    active = running.client()
    roles: list[tuple[str, int | None]] = []
    promoted = threading.Event()
    standby = running.client()

    def on_role(role: str, epoch: int | None) -> None:
        roles.append((role, epoch))
        if role == "active":
            promoted.set()

    standby.on_role = on_role
    try:
        delivered = active.take(prefetch=10)
        assert active.role == "active"
        held = [next(delivered) for _ in range(5)]
        held[1].ack()
        waiting = standby.take(prefetch=10)
        assert standby.role == "standby"
        active.close()
        assert promoted.wait(WAIT)
        assert [role for role, _ in roles] == ["standby", "active"]
        again = [next(waiting) for _ in range(3)]
        assert [(m.seq, m.redelivered) for m in again] == [(3, True), (4, True), (5, True)]
    finally:
        standby.close()


def test_handover_without_standby_is_refused(running: Running) -> None:
    with running.client() as client:
        client.take()
        with pytest.raises(ClientError) as info:
            client.handover()
        assert info.value.code == "no_standby"


def test_handover_switches_roles(running: Running) -> None:
    with running.client() as producer:
        producer.add(b"one")
    first, second = running.client(), running.client()
    promoted = threading.Event()
    second.on_role = lambda role, epoch: promoted.set() if role == "active" else None
    try:
        held = next(first.take())
        second.take()
        held.ack()
        epoch = first.handover()
        assert first.role == "standby"
        assert promoted.wait(WAIT)
        assert second.role == "active" and second.epoch == epoch
    finally:
        first.close()
        second.close()


def test_healthz_and_unknown_path(running: Running) -> None:
    ok = http(running.port, running.ca, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")
    missing = http(running.port, running.ca, b"GET /nope HTTP/1.1\r\nhost: x\r\n\r\n")
    assert missing.startswith(b"HTTP/1.1 4")


def test_garbage_and_plain_http_are_dropped_quietly(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for payload in (b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", b"\x00\xff" * 100):
        with socket.create_connection((HOST, running.port), timeout=WAIT) as sock:
            sock.sendall(payload)
            while sock.recv(4096):
                pass
    # The server logged nothing worse than debug (they never got a connection number) ...
    server_records = [r for r in caplog.records if r.name == "jackrabbit.threads"]
    assert not [r for r in server_records if r.levelno >= logging.INFO]
    # ... and still serves.
    with running.client() as client:
        assert client.add(b"after") == 1


def test_max_connections_refuses_the_next_with_503(start: Starter) -> None:
    running = start(max_connections=2)
    peers = [Peer(running.port, running.ca) for _ in range(2)]
    for peer in peers:
        peer.wait_for(lambda e: isinstance(e, Opened))
    third = Peer(running.port, running.ca)
    assert third.closed().code == 503
    third.close()
    peers[0].close()
    # Once one leaves, a new one gets in (the core forgets the first when its EOF arrives).
    fourth = None
    for _ in range(100):
        fourth = Peer(running.port, running.ca)
        event = fourth.wait_for(lambda e: isinstance(e, Opened | Closed))[-1]
        if isinstance(event, Opened):
            break
        fourth.close()
    assert fourth is not None and isinstance(event, Opened)
    for peer in (peers[1], fourth):
        peer.close()


def test_shutdown_closes_clients_with_1001_and_joins_threads(start: Starter) -> None:
    before = threading.active_count()
    running = start()
    peer = Peer(running.port, running.ca)
    peer.wait_for(lambda e: isinstance(e, Opened))
    stopper = threading.Thread(target=running.stop)
    stopper.start()
    assert peer.closed().code == 1001
    peer.close()
    stopper.join(WAIT)
    assert threading.active_count() == before


def test_handshake_timeout_frees_the_thread(start: Starter) -> None:
    running = start(handshake_timeout=0.3)
    before = threading.active_count()
    silent = [socket.create_connection((HOST, running.port), timeout=WAIT) for _ in range(5)]
    for sock in silent:
        assert sock.recv(1) == b""  # the server hung up on a client that never spoke TLS
        sock.close()
    assert settle_threads(before) <= before
    tls_socket(running.port, running.ca).close()  # and it still accepts


def test_reconnect_after_a_server_restart(start: Starter) -> None:
    first = start()
    client = first.client(reconnect=True)
    try:
        assert client.add(b"before") == 1
        first.stop()
        second = start(port=first.port, db=str(first.server.config.db))
        deadline = time.monotonic() + WAIT
        while True:  # an add caught by the loss fails; later ones wait for the reconnection
            try:
                assert client.add(b"after") == 2
                break
            except ConnectionLost:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        second.stop()
    finally:
        client.close()


def test_connections_are_logged_at_info(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """``JACKRABBIT_LOG=info`` shows each connection come and go, as in the asyncio shell."""
    caplog.set_level(logging.INFO, logger="jackrabbit.threads")
    with running.client() as client:
        client.add(b"x")
    deadline = time.monotonic() + WAIT
    while not any(r.getMessage().endswith(" closed") for r in caplog.records):
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "jackrabbit.threads"]
    assert lines[0].startswith("connection 1 from ('127.0.0.1', ")
    assert lines[-1] == "connection 1 closed"
