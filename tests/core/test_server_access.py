"""Access control in the facade (protocol §11): upgrades admitted or refused, each command
checked, /metrics for admins, refusals counted and audited, reloads that revoke, and slowed
addresses, all with in-memory peers and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgpack
import pytest

from jackrabbit_core.access import AccessPolicy, Denial, Grant, Principal, token_digest
from jackrabbit_core.client import (
    Added,
    ClientProtocol,
    Closed,
    Opened,
    RoleChanged,
    ServerError,
    Subscribed,
)
from jackrabbit_core.exceptions import InvalidState
from jackrabbit_core.penalties import FIRST_DELAY, FREE_FAILURES, MAX_DELAY, MAX_HELD

from .world import Peer, World

PRODUCER, CONSUMER, ADMIN = b"producer-token", b"consumer-token", b"admin-token"


def grants(*texts: str) -> tuple[Grant, ...]:
    return tuple(Grant.parse(t) for t in texts)


def policy(
    producer: Sequence[str] = ("produce:orders",),
    consumer: Sequence[str] = ("consume:orders", "produce:orders"),
    anonymous: Sequence[str] = ("produce:legacy",),
) -> AccessPolicy:
    return AccessPolicy(
        [
            Principal("producer", grants(*producer), token_digest(PRODUCER)),
            Principal("consumer", grants(*consumer), token_digest(CONSUMER)),
            Principal("admin", grants("admin:orders"), token_digest(ADMIN)),
            Principal("edge", grants("produce:*", "consume:orders"), subject="CN=edge,O=Example"),
        ],
        grants(*anonymous),
    )


def upgrade(world: World, path: str, headers: bytes = b"", address: str = "127.0.0.1") -> bytes:
    """A raw upgrade request with extra ``headers``; the head of the server's answer."""
    conn = world.raw_peer(address)
    request = (
        b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
    ) % (path.encode(), headers)
    return world.send_raw(conn, request).split(b"\r\n\r\n", 1)[0].lower()


@pytest.fixture
def denials() -> list[Denial]:
    return []


@pytest.fixture
def world(denials: list[Denial]) -> Iterator[World]:
    w = World(access=policy(), audit=denials.append)
    yield w
    w.close()


def connect(
    world: World,
    queue: str,
    token: bytes | None = None,
    *,
    address: str = "127.0.0.1",
    subject: str | None = None,
) -> Peer:
    """A client of ``queue`` (with ``token`` as ``Authorization: Bearer``)."""
    client = ClientProtocol(
        "localhost", f"/queues/{queue}", token=None if token is None else token.decode()
    )
    return world.peer(protocol=client, address=address, subject=subject)


def revoked(peer: Peer) -> bool:
    return Closed(1008, "access revoked") in peer.events


def opened(peer: Peer) -> bool:
    return any(isinstance(e, Opened) for e in peer.events)


def status(peer: Peer) -> int:
    """The HTTP status the upgrade was answered with."""
    return int(bytes(peer.raw).split(b" ", 2)[1])


def response_head(peer: Peer) -> bytes:
    return bytes(peer.raw).split(b"\r\n\r\n", 1)[0].lower()


def http(world: World, target: str, headers: bytes = b"", address: str = "127.0.0.1") -> bytes:
    """A plain GET of ``target``; the whole answer."""
    conn = world.raw_peer(address)
    world.send_raw(conn, b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (target.encode(), headers))
    world.tick(0.001)  # /metrics is rendered on the next turn
    return bytes(world.peers[conn].raw)


# -- upgrades (protocol §11.4) ----------------------------------------------------------------


def test_a_token_in_a_header_or_a_subprotocol_admits_and_is_never_echoed(world: World) -> None:
    assert opened(connect(world, "orders", PRODUCER))
    offered = b"jackrabbit.v1, jackrabbit.bearer." + PRODUCER
    head = upgrade(world, "/queues/orders", b"Sec-WebSocket-Protocol: %s\r\n" % offered)
    assert head.startswith(b"http/1.1 101 ")
    assert head.endswith(b"\r\nsec-websocket-protocol: jackrabbit.v1")
    assert PRODUCER not in head


def test_no_credentials_401_bad_token_401_no_grant_403(world: World, denials: list[Denial]) -> None:
    nobody = connect(world, "orders")
    assert status(nobody) == 401
    assert b'www-authenticate: bearer realm="jackrabbit"' in response_head(nobody)
    guess = connect(world, "orders", b"guess")
    assert status(guess) == 401
    assert b'error="invalid_token"' in response_head(guess)
    stranger = connect(world, "billing", PRODUCER)
    assert status(stranger) == 403
    assert [(d.reason, d.principal, d.queue) for d in denials] == [
        ("no_credentials", None, "orders"),
        ("invalid_credentials", None, "orders"),
        ("no_grant", "producer", "billing"),
    ]
    assert all(b"guess" not in repr(d).encode() for d in denials)


def test_anonymous_grants_admit_original_clients_on_their_queues(world: World) -> None:
    assert opened(connect(world, "legacy"))
    assert status(connect(world, "orders")) == 401


def test_a_verified_certificate_s_subject_names_its_principal(world: World) -> None:
    assert opened(connect(world, "anything", subject="CN=edge,O=Example"))
    assert status(connect(world, "anything", subject="CN=other,O=Example")) == 401


def test_a_token_in_the_query_string_is_never_accepted(world: World) -> None:
    head = upgrade(world, f"/queues/orders?token={PRODUCER.decode()}")
    assert head.startswith(b"http/1.1 401 ")


# -- per-command checks (protocol §11.5) ------------------------------------------------------


def test_a_v1_command_without_its_grant_is_forbidden_and_the_connection_stays(
    world: World, denials: list[Denial]
) -> None:
    producer = connect(world, "orders", PRODUCER)
    producer.protocol.take()
    world.flush(producer)
    (error,) = [e for e in producer.events if isinstance(e, ServerError)]
    assert (error.code, error.req) == ("forbidden", 1)
    producer.protocol.add(b"still here")
    world.flush(producer)
    assert any(isinstance(e, Added) for e in producer.events)
    assert denials[-1].reason == "forbidden" and denials[-1].principal == "producer"


def test_naming_a_queue_creates_it_only_with_produce_or_consume_on_it(world: World) -> None:
    """protocol §11.5: an admin (or reader) connection's refused commands leave no queue."""
    admin = b"Authorization: Bearer %s\r\n" % ADMIN
    peer = connect(world, "orders", ADMIN)
    peer.protocol.take()
    peer.protocol.add(b"x")
    world.flush(peer)
    assert [e.code for e in peer.events if isinstance(e, ServerError)] == ["forbidden"] * 2
    assert b'queue="orders"' not in http(world, "/metrics", admin)
    consumer = connect(world, "orders", CONSUMER)
    consumer.protocol.take()
    world.flush(consumer)
    assert b'queue="orders"' in http(world, "/metrics", admin)


def test_an_original_command_without_its_grant_closes_with_1008(world: World) -> None:
    peer = connect(world, "legacy")
    world.server.receive_data(
        peer.conn, _original_frame({"command": {1: None}, "data": b""}), world.now
    )
    world.run()
    assert Closed(1008, "consume is not allowed on queue legacy") in peer.events


def _original_frame(request: object) -> bytes:
    payload: bytes = msgpack.packb(request)
    return bytes([0x82, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


# -- /metrics (protocol §11.4) ----------------------------------------------------------------


def test_metrics_need_an_admin_grant(world: World) -> None:
    assert http(world, "/metrics").startswith(b"HTTP/1.1 401 ")
    producer = b"Authorization: Bearer %s\r\n" % PRODUCER
    assert http(world, "/metrics", producer).startswith(b"HTTP/1.1 403 ")
    answer = http(world, "/metrics", b"Authorization: Bearer %s\r\n" % ADMIN)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b'jackrabbit_auth_failures_total{reason="no_credentials"} 1' in answer
    assert b'jackrabbit_auth_failures_total{reason="no_grant"} 1' in answer
    assert http(world, "/healthz").startswith(b"HTTP/1.1 200 ")


# -- reloads (protocol §11.9) -----------------------------------------------------------------


def test_a_reload_closes_the_connections_that_lost_a_grant_they_use(
    world: World, denials: list[Denial]
) -> None:
    producer = connect(world, "orders", PRODUCER)
    producer.protocol.add(b"one")
    world.flush(producer)
    active = connect(world, "orders", CONSUMER)
    active.protocol.take()
    world.flush(active)
    standby = connect(world, "orders", subject="CN=edge,O=Example")  # produces, never did
    idle = connect(world, "orders", ADMIN)
    # the producer loses its token, the consumer only produce (which it never used), the
    # admin its only grant on the queue
    world.server.set_access(
        AccessPolicy(
            [
                Principal("consumer", grants("consume:orders"), token_digest(CONSUMER)),
                Principal("edge", grants("produce:*"), subject="CN=edge,O=Example"),
            ]
        ),
        world.now,
    )
    world.run()
    assert [revoked(p) for p in (producer, active, standby, idle)] == [True, False, False, True]
    assert [(d.reason, d.principal) for d in denials] == [
        ("revoked", "producer"),
        ("revoked", "admin"),
    ]
    # the consumer carries on, and may no longer add
    active.protocol.add(b"x")
    world.flush(active)
    assert isinstance(active.events[-1], ServerError) and active.events[-1].code == "forbidden"


def test_a_consumer_losing_consume_is_closed_and_its_standby_promoted(world: World) -> None:
    active = connect(world, "orders", CONSUMER)
    active.protocol.take()
    world.flush(active)
    standby = connect(world, "orders", subject="CN=edge,O=Example")
    standby.protocol.take()
    world.flush(standby)
    world.server.set_access(policy(consumer=("consume:other",)), world.now)
    world.run()
    assert revoked(active) and revoked(standby) is False
    assert standby.events[-1] == RoleChanged("active", 2)  # the failover happened
    assert status(connect(world, "orders", CONSUMER)) == 403  # new connections: new policy


def test_set_access_needs_a_server_started_with_a_policy() -> None:
    w = World()
    try:
        with pytest.raises(InvalidState):
            w.server.set_access(policy(), w.now)
    finally:
        w.close()


# -- slowed addresses (protocol §11.7) --------------------------------------------------------


def test_repeated_invalid_tokens_slow_that_address_and_no_other(world: World) -> None:
    for _ in range(FREE_FAILURES):
        assert status(connect(world, "orders", b"guess", address="10.0.0.9")) == 401
    held = connect(world, "orders", PRODUCER, address="10.0.0.9")
    assert held.raw == b""  # not answered yet, even with a good token
    assert opened(connect(world, "orders", PRODUCER, address="10.0.0.8"))  # others at once
    world.tick(FIRST_DELAY * 0.9)
    assert held.raw == b""
    world.tick(FIRST_DELAY * 0.2)
    assert opened(held)
    assert any(isinstance(e, Added | Subscribed) for e in held.events) is False


def test_an_address_being_slowed_has_few_requests_waiting_and_more_get_429(world: World) -> None:
    for _ in range(FREE_FAILURES):
        connect(world, "orders", b"guess", address="10.0.0.9")
    waiting = [connect(world, "orders", b"guess", address="10.0.0.9") for _ in range(MAX_HELD)]
    assert all(p.raw == b"" for p in waiting)
    assert status(connect(world, "orders", b"guess", address="10.0.0.9")) == 429
    world.tick(FIRST_DELAY * 1.1)
    assert [status(p) for p in waiting] == [401] * MAX_HELD


def test_a_held_connection_that_times_out_is_not_answered_twice() -> None:
    world = World(access=policy(), handshake_timeout=3.0)
    try:
        for _ in range(FREE_FAILURES + 4):  # held up to 2 s each
            guess = connect(world, "orders", b"guess", address="10.0.0.9")
            world.tick(2.5)
            assert status(guess) == 401
        held = connect(world, "orders", PRODUCER, address="10.0.0.9")  # held 4 s
        world.tick(3.5)
        assert status(held) == 408  # the handshake timeout came first
        world.tick(MAX_DELAY)
        assert bytes(held.raw).count(b"HTTP/1.1") == 1
    finally:
        world.close()


# -- origins (protocol §11.8) -----------------------------------------------------------------


def test_an_upgrade_from_a_page_of_another_origin_is_403() -> None:
    w = World(allow_origins=("https://app.example.com",))
    try:
        page = upgrade(w, "/queues/q", b"Origin: https://evil.example\r\n")
        assert page.startswith(b"http/1.1 403 ")
        allowed = upgrade(w, "/queues/q", b"Origin: https://APP.example.com\r\n")
        assert allowed.startswith(b"http/1.1 101 ")
        assert opened(w.peer("/queues/q"))  # no Origin: not a browser
    finally:
        w.close()
