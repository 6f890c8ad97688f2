"""Connection rules seen through the server facade: what its sweep and cleanup do with them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jackrabbit_core.client import Closed, Opened, RoleChanged, Subscribed

from .test_connection import BINARY, CONT, frame, upgrade_head
from .world import Peer, World


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.close()


def opened(world: World) -> Peer:
    peer = world.peer()
    assert world.take_events(peer) == [Opened()]
    return peer


def send(world: World, peer: Peer, data: bytes) -> None:
    world.server.receive_data(peer.conn, data, world.now)
    world.run()


def test_the_sweep_closes_a_message_not_finished_in_time(world: World) -> None:
    """protocol §2.2: a peer trickling one fragment every 2 s (never silent long enough for the
    heartbeat to drop it) is closed with 1008 once its message is 16 s old."""
    peer = opened(world)
    send(world, peer, frame(BINARY, b"a", fin=False))
    for _ in range(7):
        world.tick(2.0)
        send(world, peer, frame(CONT, b"b", fin=False))
    assert world.take_events(peer) == []  # 14 s: still open
    world.tick(2.0 + world.config.heartbeat / 4)
    send(world, peer, frame(CONT, b"c", fin=False))
    assert world.take_events(peer) == [Closed(1008, "message not finished in time")]
    world.flush(peer)  # the client echoes the close
    assert peer.closed_by_server
    assert world.server.open_connections == 0


def test_a_consumers_close_frame_promotes_the_standby(world: World) -> None:
    """The peer's close is reported once, so the server forgets the consumer at once."""
    main, spare = opened(world), opened(world)
    main.protocol.take()
    world.flush(main)
    spare.protocol.take()
    world.flush(spare)
    assert world.take_events(main) == [Subscribed("active", 1, 1)]
    world.take_events(spare)
    main.protocol.close()
    world.flush(main)
    assert world.take_events(spare) == [RoleChanged("active", 2)]
    assert main.closed_by_server


def test_a_smuggled_frame_is_never_executed(world: World) -> None:
    """An upgrade carrying an add in a ``Content-Length`` body is refused 400 and stores
    nothing."""
    body = frame(BINARY, b"\x82\xa7command\xa3add\xa4data\xc4\x01x")
    conn = world.raw_peer()
    reply = world.send_raw(conn, upgrade_head(b"Content-Length: %d\r\n" % len(body)) + body)
    assert reply.startswith(b"HTTP/1.1 400 "), reply
    assert world.peers[conn].closed_by_server
    assert world.server.counters.adds == 0


def test_a_peer_that_never_answers_the_close_is_dropped(world: World) -> None:
    """protocol §9: once the server has closed, only the peer's close frame counts; frames it
    keeps sending do not hold the connection past two heartbeat intervals."""
    peer = opened(world)
    send(world, peer, frame(BINARY, b"", fin=False) + frame(CONT, b"", fin=False) * 1024)
    assert world.take_events(peer) == [Closed(1009, "too_large: message in over 1024 frames")]
    for _ in range(6):
        world.tick(2.0)
        send(world, peer, frame(CONT, b"x", fin=False))
    assert peer.closed_by_server
    assert world.server.open_connections == 0
