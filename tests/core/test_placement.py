"""Cluster mode in memory (protocol §10): the core serves only the queues the host adopted for
it, relays the rest, and releases a queue (closing its connections) when its lease ends."""

from __future__ import annotations

from jackrabbit_core import ClusterStatus, Locate, Relay
from jackrabbit_core.client import Added, Closed, Delivery, Opened, Subscribed
from jackrabbit_core.storage import QueueRecord

from .world import Peer, World

DSN = "postgresql://unused"
LEASE = 5.0


def clustered(**config: object) -> World:
    return World(cluster=DSN, **config)  # type: ignore[arg-type]


def asked(world: World) -> list[Locate | Relay | ClusterStatus]:
    out, world.asked = world.asked, []
    return out


def adopt(world: World, queue: str, last_seq: int = 0, acked: int = 0, epoch: int = 0) -> None:
    world.server.adopt(QueueRecord(queue, last_seq, acked, epoch), world.now + LEASE, world.now)
    world.run()


def served(world: World, queue: str = "q") -> Peer:
    """A client of ``queue`` once the host adopted it."""
    peer = world.peer(f"/queues/{queue}")
    if asked(world) == [Locate(queue)]:
        adopt(world, queue)
    assert world.take_events(peer) == [Opened()]
    return peer


def test_an_upgrade_waits_for_its_queue_to_be_adopted_and_asks_once() -> None:
    world = clustered()
    first, second = world.peer("/queues/q"), world.peer("/queues/q")
    assert asked(world) == [Locate("q")]  # one question for both
    assert world.take_events(first) == world.take_events(second) == []
    # The stored state: the next seq follows it, the first active gets epoch + 1.
    adopt(world, "q", last_seq=7, acked=7, epoch=3)
    assert world.take_events(first) == world.take_events(second) == [Opened()]
    first.protocol.add(b"x")
    world.flush(first)
    assert [e.seq for e in world.take_events(first) if isinstance(e, Added)] == [8]
    second.protocol.take()
    world.flush(second)
    events = world.take_events(second)
    assert Subscribed("active", 4, 1) in events
    assert [e.seq for e in events if isinstance(e, Delivery)] == [8]
    world.close()


def test_a_queue_served_elsewhere_is_relayed_with_the_bytes_after_the_request() -> None:
    world = clustered()
    peer = world.peer("/queues/q")
    world.server.receive_data(peer.conn, b"early", world.now)
    world.run()
    assert asked(world) == [Locate("q")]
    world.server.located("q", "node-b", "wss://10.0.0.2:443", world.now)
    world.run()
    (relay,) = asked(world)
    assert isinstance(relay, Relay)
    assert (relay.conn, relay.node, relay.address, relay.early) == (
        peer.conn,
        "node-b",
        "wss://10.0.0.2:443",
        b"early",
    )
    assert relay.request.target == "/queues/q"
    assert not peer.closed_by_server  # the transport is the shell's now, not closed
    world.server.receive_data(peer.conn, b"ignored", world.now)  # the core forgot it
    world.run()
    assert world.server.open_connections == 1  # it counts until the relay ends
    world.server.receive_eof(peer.conn, world.now)
    assert world.server.open_connections == 0
    world.close()


def test_relayed_connections_count_against_max_connections() -> None:
    world = clustered(max_connections=2)
    relayed = world.peer("/queues/q")
    world.server.located("q", "node-b", "wss://10.0.0.2:443", world.now)
    world.run()
    world.peer("/queues/r")  # waiting for r: the second of two
    third = world.raw_peer()
    assert world.send_raw(third, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 503 "
    )
    world.server.receive_eof(relayed.conn, world.now)  # the relay ended: room again
    fourth = world.raw_peer()
    assert world.send_raw(fourth, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 200 "
    )
    world.close()


RELAYED_UPGRADE = (
    b"GET /queues/q HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\nSec-WebSocket-Version: 13\r\n"
    b"Jackrabbit-Relay: proof\r\n\r\n"
)


def test_a_relayed_upgrade_is_never_relayed_again() -> None:
    world = clustered()
    conn = world.raw_peer()
    assert world.send_raw(conn, RELAYED_UPGRADE) == b""
    assert asked(world) == [Locate("q")]  # it may still take the queue itself
    world.server.located("q", "node-c", "wss://10.0.0.3:443", world.now)
    world.run()
    assert asked(world) == []
    assert bytes(world.peers[conn].raw).startswith(b"HTTP/1.1 503 ")
    assert world.peers[conn].closed_by_server
    world.close()


def test_a_failed_locate_is_503_and_the_next_upgrade_asks_again() -> None:
    world = clustered()
    conn = world.raw_peer()
    world.send_raw(conn, RELAYED_UPGRADE)
    assert asked(world) == [Locate("q")]
    world.server.locate_failed("q", "database down", world.now)
    world.run()
    assert bytes(world.peers[conn].raw).startswith(b"HTTP/1.1 503 ")
    world.peer("/queues/q")
    assert asked(world) == [Locate("q")]
    world.close()


def test_the_lease_ends_every_queue_unless_renewed() -> None:
    world = clustered()
    producer, consumer = served(world), served(world)
    consumer.protocol.take()
    world.flush(consumer)
    world.tick(LEASE - 1)
    world.server.renewed(world.now + LEASE, world.now)
    world.tick(LEASE - 1)
    assert not any(isinstance(e, Closed) for e in world.take_events(producer))
    world.tick(1.5)  # past the renewed deadline: released
    for peer in (producer, consumer):
        closed = [e for e in world.take_events(peer) if isinstance(e, Closed)]
        assert [e.code for e in closed] == [1012], closed
        assert "lease expired" in closed[0].reason
    # Nothing is served here any more: the next client waits for the host again.
    world.peer("/queues/q")
    assert asked(world) == [Locate("q")]
    world.close()


def test_a_late_timer_does_not_let_a_request_through_after_the_lease() -> None:
    """A node waking from a pause acts on nothing before it has released its queues."""
    world = clustered(auto_write=False)
    producer = served(world)
    world.now += LEASE + 1  # paused: the timer has not fired yet
    producer.protocol.add(b"late")
    world.flush(producer)
    assert world.held == []  # nothing asked of the store
    assert [e.code for e in world.take_events(producer) if isinstance(e, Closed)] == [1012]
    world.close()


def test_a_queue_released_while_its_write_is_out_is_not_asked_for_until_it_is_decided() -> None:
    world = clustered(auto_write=False)
    producer = served(world)
    producer.protocol.add(b"a")
    world.flush(producer)
    assert len(world.held) == 1  # the write for q is out with the store
    world.server.release("q", "fenced", world.now)
    world.run()
    assert [e.code for e in world.take_events(producer) if isinstance(e, Closed)] == [1012]
    world.peer("/queues/q")
    assert asked(world) == []  # draining: a new lease must not start under the old write
    world.release()  # decided (written): what it made durable for q is left out
    assert asked(world) == [Locate("q")]
    assert not any(isinstance(e, Added) for e in world.take_events(producer))
    world.close()


def test_a_failed_write_does_not_carry_a_released_queues_cursor_into_the_next() -> None:
    world = clustered(auto_write=False)
    other = served(world, "r")
    consumer = served(world)
    consumer.protocol.take()
    world.flush(consumer)
    (batch,) = world.held
    assert batch.epochs == {"q": 1}
    world.server.release("q", "fenced", world.now)
    world.held.clear()
    world.server.batch_failed("fenced", world.now)
    world.run()
    other.protocol.add(b"r1")
    world.flush(other)
    world.tick(1.0)  # past the write back-off
    (batch,) = world.held
    assert batch.queues() == {"r"}
    world.close()


def test_api_cluster_asks_the_host_once_for_the_requests_that_wait() -> None:
    world = clustered()
    first, second = world.raw_peer(), world.raw_peer()
    request = b"GET /api/cluster HTTP/1.1\r\nHost: x\r\n\r\n"
    world.send_raw(first, request)
    world.send_raw(second, request)
    (status,) = asked(world)
    assert isinstance(status, ClusterStatus)
    world.server.cluster_status(status.ticket, b'{"nodes": []}', world.now)
    world.run()
    for conn in (first, second):
        raw = bytes(world.peers[conn].raw)
        assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b'{"nodes": []}'), raw
    third = world.raw_peer()
    world.send_raw(third, request)
    (status,) = asked(world)
    assert isinstance(status, ClusterStatus)
    world.server.cluster_status(status.ticket, None, world.now)
    world.run()
    assert bytes(world.peers[third].raw).startswith(b"HTTP/1.1 503 ")
    world.close()


def test_alone_a_node_serves_every_queue_and_has_no_cluster_endpoint() -> None:
    world = World()
    peer = world.peer("/queues/q")
    assert world.take_events(peer) == [Opened()] and asked(world) == []
    conn = world.raw_peer()
    assert world.send_raw(conn, b"GET /api/cluster HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 404 "
    )
    world.close()
