"""Any node serves any queue (protocol §10): the node that took a queue serves it, the others
relay their clients there, whatever the dialect and whichever shell runs either end."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import msgpack
import pytest

from conformance.client import Client
from conformance.harness import Certificates, ServerProcess

from .nodes import cluster_status, node
from .postgres import Postgres


@pytest.fixture(
    scope="module",
    params=[("asyncio", "threads"), ("threads", "asyncio")],
    ids=lambda p: "-".join(p),
)
def two(
    request: pytest.FixtureRequest,
    postgres: Postgres,
    tmp_path_factory: pytest.TempPathFactory,
    certs: Certificates,
) -> Iterator[list[ServerProcess]]:
    """Node ``a`` (the owner in these tests) and node ``b``, one of each shell, shared by the
    tests of this module (each uses queues of its own)."""
    owner, relay = request.param
    dsn = postgres.create(f"relay_{owner}")
    root = tmp_path_factory.mktemp("relay")
    nodes = [node(owner, "a", dsn, root, certs), node(relay, "b", dsn, root, certs)]
    yield nodes
    for server in nodes:
        server.kill()


def test_a_client_of_any_node_reaches_the_queue_where_it_is_served(
    two: list[ServerProcess],
) -> None:
    a, b = two
    with Client.open(a, "orders") as producer:  # a takes the queue
        seqs = [producer.add(b"m%d" % i)["seq"] for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    with Client.open(b, "orders") as consumer:  # relayed to a
        subscribed = consumer.take(prefetch=10)
        assert subscribed["role"] == "active" and subscribed["epoch"] == 1
        got = consumer.messages(5)
        assert [m["seq"] for m in got] == seqs
        assert [m["data"] for m in got] == [b"m%d" % i for i in range(5)]
        consumer.ack(5)
    # An idempotency key is found by the owner, whichever node the retry reaches.
    with Client.open(b, "orders") as first:
        assert first.add(b"k", key="once")["seq"] == 6
    with Client.open(a, "orders") as retry:
        again = retry.add(b"k", key="once")
        assert (again["seq"], again.get("duplicate")) == (6, True)
    served = {n["name"]: (n["queues"], n["alive"]) for n in cluster_status(b)["nodes"]}
    assert "orders" in served["a"][0] and served["a"][1]  # the other tests' queues may be there
    assert served["b"] == ([], True)


def _original_upgrade(target: ServerProcess, queue: str) -> ssl.SSLSocket:
    """A raw TLS connection upgraded to ``queue`` the way a 0.0.3 client does it."""
    sock = socket.create_connection((target.host, target.port), timeout=10)
    tls = target.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1")
    tls.sendall(
        f"GET /queues/{queue} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = tls.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return tls


def _masked(payload: bytes) -> bytes:
    assert len(payload) < 126
    return bytes([0x82, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def test_an_original_client_works_through_a_relay(two: list[ServerProcess]) -> None:
    """A 0.0.3 producer and consumer reached through node b: nothing on the wire differs."""
    a, b = two
    with Client.open(a, "legacy") as owner_side:  # a takes the queue
        owner_side.add(b"first")
    producer = _original_upgrade(b, "legacy")
    producer.sendall(_masked(msgpack.packb({"command": {0: None}, "data": b"second"})))
    consumer = _original_upgrade(b, "legacy")
    consumer.sendall(_masked(msgpack.packb({"command": {1: None}, "data": b""})))
    got: list[bytes] = []
    buffer = b""
    deadline = time.monotonic() + 15
    while len(got) < 2 and time.monotonic() < deadline:
        buffer += consumer.recv(65536)
        while len(buffer) >= 2 and len(buffer) >= 2 + (buffer[1] & 0x7F):
            size = buffer[1] & 0x7F
            assert size < 126
            delivery = msgpack.unpackb(buffer[2 : 2 + size], strict_map_key=False)
            got.append(delivery["data"])
            buffer = buffer[2 + size :]
    assert got == [b"first", b"second"]
    producer.close()
    consumer.close()


def test_a_forged_relay_header_is_refused(two: list[ServerProcess]) -> None:
    """Only a node that knows the cluster's secret may vouch for a client's address."""
    a, _ = two
    sock = socket.create_connection((a.host, a.port), timeout=10)
    with a.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(
            b"GET /queues/q HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"Jackrabbit-Relay: b 1700000000 10.0.0.1:1 00\r\n\r\n"
        )
        assert tls.recv(4096).startswith(b"HTTP/1.1 403 ")
