"""Both runtimes' ``Client`` over real TLS, against a real server (and raw TLS servers where the
server's side must be fixed): one scenario, both clients (``runtime`` is parametrized)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

import jackrabbit_asyncio
import jackrabbit_threads
from jackrabbit_core.client_errors import AccessDenied, ClientError, ConnectionLost
from jackrabbit_host.cli import AddCommand, TakeCommand

from ..support import WAIT
from .conftest import MakeDoorman, Runtime, Start

pytestmark = pytest.mark.timeout(90)


def eventually(predicate: Callable[[], bool]) -> None:
    """Wait (at most ``WAIT``) for state that no event announces."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_both_runtimes_raise_the_same_exception_types() -> None:
    for shell in (jackrabbit_asyncio, jackrabbit_threads):
        assert shell.ClientError is ClientError
        assert shell.ConnectionLost is ConnectionLost
        assert shell.AccessDenied is AccessDenied
    assert issubclass(ConnectionLost, ConnectionError) and issubclass(AccessDenied, ClientError)


def test_concurrent_adds_are_pipelined(runtime: Runtime, start: Start) -> None:
    server = start()
    one = runtime.connect(server.url, "pipe", ca=server.ca)
    two = runtime.connect(server.url, "pipe", ca=server.ca, token="ignored-without-auth")
    seqs = one.add_all([b"a%d" % i for i in range(1000)]) + two.add_all([b"b"] * 500)
    assert sorted(seqs) == list(range(1, 1501))
    # The same key many times in flight together: one message.
    assert one.add_all([b"k"] * 20, key="once") == [1501] * 20
    assert two.add(b"k", key="once") == 1501
    assert two.add(b"next") == 1502
    one.close()
    two.close()


def test_take_and_ack_end_to_end(runtime: Runtime, start: Start) -> None:
    server = start()
    producer = runtime.connect(server.url, "work", ca=server.ca)
    sent = [b"message %d" % i for i in range(25)]
    for data in sent:
        producer.add(data)
    consumer = runtime.connect(server.url, "work", ca=server.ca)
    messages = consumer.take(prefetch=10)
    assert consumer.role == "active" and consumer.epoch is not None
    got = []
    for message in messages:
        got.append(message)
        message.ack()
        if len(got) == len(sent):
            break
    assert [m.data for m in got] == sent
    assert [m.seq for m in got] == list(range(1, 26))
    assert not any(m.redelivered for m in got)
    consumer.close()
    # Everything was acked: a new consumer sees only what comes next.
    again = runtime.connect(server.url, "work", ca=server.ca)
    fresh = again.take()
    producer.add(b"fresh")
    first = next(fresh)
    assert (first.seq, first.data, first.redelivered) == (26, b"fresh", False)
    again.close()
    producer.close()


def test_failover_and_handover(runtime: Runtime, start: Start) -> None:
    server = start()
    roles: list[tuple[str, int | None]] = []
    a = runtime.connect(server.url, "fo", ca=server.ca)
    b = runtime.connect(server.url, "fo", ca=server.ca, on_role=lambda *r: roles.append(r))
    c = runtime.connect(server.url, "fo", ca=server.ca)
    a_messages = a.take(prefetch=100)
    b_messages = b.take(prefetch=100)
    c.take(prefetch=100)
    assert (a.role, b.role, c.role) == ("active", "standby", "standby")
    assert roles == [("standby", None)]
    producer = runtime.connect(server.url, "fo", ca=server.ca)
    for i in range(5):
        producer.add(b"%d" % i)
    held = [next(a_messages) for _ in range(5)]
    held[1].ack()  # 1 and 2 are done; 3..5 are in a's hands
    a.close()  # a goes away: b is promoted and gets 3..5 again
    redelivered = [next(b_messages) for _ in range(3)]
    assert [(m.seq, m.redelivered) for m in redelivered] == [(3, True), (4, True), (5, True)]
    assert b.role == "active" and roles[-1] == ("active", b.epoch)
    # A planned handover: b acks what it holds, then hands over to c.
    redelivered[-1].ack()
    epoch = b.handover()
    assert (b.role, b.epoch, roles[-1]) == ("standby", epoch, ("standby", epoch))
    eventually(lambda: c.role == "active")
    with pytest.raises(ClientError) as refused:
        b.handover()  # not active any more
    assert type(refused.value) is ClientError and refused.value.code == "not_active"
    for client in (b, c, producer):
        client.close()


def test_a_refused_request_leaves_the_connection_open(runtime: Runtime, start: Start) -> None:
    server = start()
    alone = runtime.connect(server.url, "solo", ca=server.ca)
    alone.take()
    with pytest.raises(ClientError) as refused:
        alone.handover()
    assert refused.value.code == "no_standby"
    assert alone.add(b"still open") == 1
    alone.close()
    with pytest.raises(ConnectionLost) as closed:
        alone.add(b"closed")
    assert closed.value.code == "closed"


def test_upgrade_refused_and_unreachable(runtime: Runtime, start: Start) -> None:
    server = start(max_connections=1)
    first = runtime.connect(server.url, ca=server.ca)
    with pytest.raises(ConnectionLost) as refused:
        runtime.connect(server.url, ca=server.ca)  # over --max-connections: HTTP 503
    assert refused.value.code == "refused" and "HTTP 503" in refused.value.message
    first.close()
    server.stop()
    with pytest.raises(OSError):
        runtime.connect(server.url, ca=server.ca)


def test_reconnect_after_the_server_restarts(runtime: Runtime, start: Start) -> None:
    first = start()
    roles: list[str] = []
    producer = runtime.connect(first.url, "rq", ca=first.ca, reconnect=True)
    consumer = runtime.connect(
        first.url, "rq", ca=first.ca, reconnect=True, on_role=lambda role, _: roles.append(role)
    )
    messages = consumer.take(prefetch=10)
    for i in range(3):
        producer.add(b"%d" % i)
    seen = [next(messages) for _ in range(3)]
    seen[0].ack()  # 2 and 3 stay unacknowledged across the restart
    core = first.server._core
    eventually(lambda: core.counters.acks == 1 and core.idle)
    first.stop()
    eventually(lambda: consumer.role is None)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(producer.add, b"after")  # waits for the reconnection
        time.sleep(0.05)
        assert not pending.done()
        second = start(port=first.port)
        assert pending.result(WAIT) == 4
    again = [next(messages) for _ in range(3)]
    assert [m.seq for m in again] == [2, 3, 4]  # the unacked ones again, then the new one
    seen[1].ack()  # from the old connection: dropped, no error
    again[-1].ack()
    assert consumer.role == "active" and roles == ["active", "active"]
    producer.close()
    consumer.close()
    second.stop()


def test_refused_credentials_end_the_reconnecting(
    runtime: Runtime, start: Start, doorman: MakeDoorman
) -> None:
    server = start()
    client = runtime.connect(server.url, "rq", ca=server.ca, reconnect=True, token="old")
    messages = client.take()
    server.stop()
    eventually(lambda: client.role is None)  # the loss is seen: requests now wait
    door = doorman(401, "token revoked", port=server.port)  # where the server was
    with pytest.raises(AccessDenied) as denied:
        client.add(b"made while reconnecting")
    assert denied.value.code == "unauthorized" and "token revoked" in denied.value.message
    assert list(messages) == []  # the iteration ends: the client is over
    assert door.header(0, b"authorization") == b"Bearer old"
    with pytest.raises(AccessDenied):
        client.add(b"later")
    client.close()


def test_pending_requests_fail_when_the_connection_is_lost(
    runtime: Runtime, doorman: MakeDoorman
) -> None:
    door = doorman(101, "")  # accepts the upgrade, then never answers
    client = runtime.connect(door.url, ca=door.ca)
    with ThreadPoolExecutor(1) as pool:
        adds = pool.submit(client.add_all, [b"x" * 1000] * 50)
        eventually(lambda: door.received > 20 * 1000)  # 20 frames and more, unanswered
        client.abort()
        with pytest.raises(ConnectionLost) as lost:
            adds.result(WAIT)
    assert lost.value.code == "closed" and "lost" in lost.value.message
    with pytest.raises(ConnectionLost):
        client.add(b"after")  # no reconnect: the client is over
    client.close()


@pytest.mark.parametrize(("status", "code"), [(401, "unauthorized"), (403, "forbidden")])
def test_refused_credentials_are_an_access_denied_error(
    runtime: Runtime, doorman: MakeDoorman, status: int, code: str
) -> None:
    door = doorman(status, "no grant for this queue")
    with pytest.raises(AccessDenied) as denied:
        runtime.connect(f"{door.url}/queues/orders", ca=door.ca, token="t0ken")
    assert denied.value.code == code
    phrase = {401: "Unauthorized", 403: "Forbidden"}[status]
    assert denied.value.message == (
        f"the server refused the connection with HTTP {status} {phrase}: no grant for this queue"
    )
    assert "t0ken" not in str(denied.value)
    request_line = door.heads[0].split(b"\r\n", 1)[0]
    assert request_line == b"GET /queues/orders HTTP/1.1"  # never in the URL
    assert door.header(0, b"authorization") == b"Bearer t0ken"


def test_no_token_no_header(runtime: Runtime, doorman: MakeDoorman) -> None:
    door = doorman(401, "credentials needed")
    with pytest.raises(AccessDenied):
        runtime.connect(door.url, ca=door.ca)
    assert door.header(0, b"authorization") is None


def test_terminal_commands(runtime: Runtime, start: Start) -> None:
    server = start()
    out = io.StringIO()
    add = AddCommand(server.url, "cli", server.ca, ("one", "two"), None, token="tok")
    assert runtime.run_add(add, None, out) == 0
    piped = AddCommand(server.url, "cli", server.ca, (), None)
    lines = io.StringIO("".join(f"line {i}\n" for i in range(100)))
    assert runtime.run_add(piped, lines, out) == 0
    printed = out.getvalue().split()
    # In input order; the threads runtime's adds race each other, so their seqs may not.
    assert printed[:2] == ["1", "2"] and sorted(map(int, printed)) == list(range(1, 103))
    runtime.connect(server.url, "cli", ca=server.ca).add(b"\xff bytes")
    taken = io.StringIO()
    take = TakeCommand(server.url, "cli", server.ca, prefetch=10, count=103, token="tok")
    assert runtime.run_take(take, taken) == 0
    seqs, texts = zip(*(line.split("\t") for line in taken.getvalue().splitlines()), strict=True)
    assert list(map(int, seqs)) == list(range(1, 104))
    assert texts[:2] == ("one", "two") and texts[-1] == "\ufffd bytes"
    assert sorted(texts[2:-1]) == sorted(f"line {i}" for i in range(100))
