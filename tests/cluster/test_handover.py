"""A planned stop (protocol §10.4): SIGTERM hands the node's queues over at once, without the
other nodes waiting for its lease to end."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from conformance.client import Client
from conformance.harness import Certificates

from .nodes import node

#: Long enough that a takeover within a few seconds cannot be the lease running out.
LONG_LEASE = "30"


def test_sigterm_hands_the_queues_over_at_once(
    dsn: str, tmp_path: Path, certs: Certificates
) -> None:
    a = node("asyncio", "a", dsn, tmp_path, certs, "--lease", LONG_LEASE)
    b = node("threads", "b", dsn, tmp_path, certs, "--lease", LONG_LEASE)
    try:
        with Client.open(a, "jobs") as producer:
            for i in range(3):
                producer.add(b"job%d" % i)
        consumer = Client.open(b, "jobs")  # relayed to a
        assert consumer.take()["epoch"] == 1
        assert [m["seq"] for m in consumer.messages(3)] == [1, 2, 3]
        consumer.ack(1)
        # Acks have no answer: a request after it that does (a second take, refused) shows
        # that a has read the ack, so its shutdown writes the cursor.
        consumer.send({"command": "take", "req": "sync"})
        assert consumer.expect("error", req="sync")["code"] == "bad_request"
        stopped = time.monotonic()
        a.send_signal(signal.SIGTERM)
        assert a.wait(15) == 0
        assert consumer.expect_close().code == 1001  # a's own close, through the relay
        consumer.close()
        with Client.open(b, "jobs") as again:  # b takes the queue now, not in 30 s
            subscribed = again.take()
            assert (subscribed["role"], subscribed["epoch"]) == ("active", 2)
            redelivered = again.messages(2)
            assert [(m["seq"], m["data"]) for m in redelivered] == [(2, b"job1"), (3, b"job2")]
        assert time.monotonic() - stopped < 10
    finally:
        a.kill()
        b.kill()
