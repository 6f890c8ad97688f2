"""Any node serves any queue (protocol §10): the node that took a queue serves it, the others
relay their clients there; both dialects, both shells."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.client import Client
from conformance.harness import Certificates, ServerProcess

from .nodes import cluster_status, node


@pytest.fixture
def two(dsn: str, tmp_path: Path, certs: Certificates) -> Iterator[list[ServerProcess]]:
    nodes = [node("asyncio", "a", dsn, tmp_path, certs), node("threads", "b", dsn, tmp_path, certs)]
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
    status = cluster_status(b)
    served = {n["name"]: n["queues"] for n in status["nodes"]}
    assert served == {"a": ["orders"], "b": []}
