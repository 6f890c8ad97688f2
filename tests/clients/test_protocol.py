"""The client logic, in memory: ``ClientProtocol`` against the core ``Server`` (``World``: a
fake clock, an in-memory store), and against a bare ``wsproto`` server where the bytes
themselves are the point (the ``Authorization`` header, one coalesced ack, a refused upgrade).
No sockets, no sleeps: a test that reconnects attaches the same protocol to a new connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    RejectConnection,
    RejectData,
    Request,
)

from jackrabbit_core.client import (
    RETRY_FIRST,
    RETRY_MAX,
    Added,
    ClientEvent,
    ClientProtocol,
    Closed,
    Delivery,
    Failed,
    Opened,
    Phase,
    RoleChanged,
    ServerError,
    Subscribed,
)
from jackrabbit_core.client_errors import AccessDenied, ClientError, ConnectionLost
from jackrabbit_core.exceptions import InvalidState

from ..core.world import Peer, World


@pytest.fixture
def world() -> Iterator[World]:
    """The core server on an in-memory store, auto-answering writes and reads."""
    with contextlib.closing(World()) as in_memory:
        yield in_memory


def attach(world: World, protocol: ClientProtocol) -> Peer:
    """Connect ``protocol``'s current connection attempt to the world's server."""
    conn = world.server.connect(world.now)
    peer = Peer(conn, protocol)
    world.peers[conn] = peer
    world.flush(peer)  # the upgrade
    world.flush(peer)  # what the protocol sends once it is open
    return peer


def lose(world: World, peer: Peer) -> None:
    """The connection breaks: both sides see the transport end."""
    world.drop(peer)
    peer.protocol.receive_data(None)
    peer.events += peer.protocol.events_received()


def reconnect(world: World, peer: Peer) -> Peer:
    """Start the protocol's next attempt and attach it (the old ``peer`` is dead)."""
    peer.protocol.reconnect()
    again = attach(world, peer.protocol)
    again.events = peer.events + again.events
    return again


def line(world: World, *protocols: ClientProtocol) -> list[Peer]:
    """Attach each protocol and make it take, in order: the first is active."""
    peers = [attach(world, protocol) for protocol in protocols]
    for peer in peers:
        peer.protocol.take()
        world.flush(peer)
    return peers


def failed(events: list[ClientEvent]) -> dict[int, ClientError]:
    return {e.req: e.error() for e in events if isinstance(e, Failed)}


class WireServer:
    """A bare ``wsproto`` server for one client connection: what the client sent, decoded,
    and canned answers."""

    def __init__(self, protocol: ClientProtocol) -> None:
        self.protocol = protocol
        self.ws = WSConnection(ConnectionType.SERVER)
        self.ws.receive_data(protocol.data_to_send())
        (self.request,) = self.ws.events()
        assert isinstance(self.request, Request)

    def accept(self) -> list[ClientEvent]:
        return self._answer(self.ws.send(AcceptConnection()))

    def refuse(self, status: int, body: bytes) -> list[ClientEvent]:
        headers = [(b"content-length", str(len(body)).encode())]
        head = self.ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        return self._answer(head + self.ws.send(RejectData(data=body)))

    def send(self, event: dict[str, Any]) -> list[ClientEvent]:
        return self._answer(self.ws.send(BytesMessage(data=msgpack.packb(event))))

    def received(self) -> list[dict[str, Any]]:
        """The requests the client has written since the last call."""
        self.ws.receive_data(self.protocol.data_to_send())
        return [msgpack.unpackb(e.data) for e in self.ws.events() if isinstance(e, BytesMessage)]

    def _answer(self, data: bytes) -> list[ClientEvent]:
        self.protocol.receive_data(data)
        return self.protocol.events_received()


def opened_wire(**options: Any) -> WireServer:
    server = WireServer(ClientProtocol("h:1", "/queues/q", **options))
    assert server.accept() == [Opened()]
    return server


# -- matching ------------------------------------------------------------------------------


def test_pipelined_adds_are_answered_by_their_req() -> None:
    world = World(auto_write=False)
    peer = attach(world, ClientProtocol("localhost"))
    protocol = peer.protocol
    reqs = [protocol.add(b"a"), protocol.add(b"b", key="k"), protocol.add(b"c", key="k")]
    world.flush(peer)
    assert world.take_events(peer) == [Opened()]  # nothing answered before it is durable
    while world.held:
        world.release()
    added = {e.req: e for e in world.take_events(peer) if isinstance(e, Added)}
    assert sorted(added) == reqs == [1, 2, 3]
    assert (added[1].seq, added[2].seq, added[3].seq, added[3].duplicate) == (1, 2, 2, True)
    world.close()


def test_a_refusal_names_the_request_it_refuses(world: World) -> None:
    peer = attach(world, ClientProtocol("localhost"))
    req = peer.protocol.handover()  # never took
    world.flush(peer)
    (refused,) = world.take_events(peer)[1:]
    assert isinstance(refused, ServerError) and refused.req == req
    error = refused.error()
    assert type(error) is ClientError and error.code == "not_subscribed"
    assert peer.protocol.handover() != req  # that one is over: a new handover is a new request


def test_handover_is_answered_by_the_standby_event_with_its_req(world: World) -> None:
    main, spare = line(world, ClientProtocol("localhost"), ClientProtocol("localhost"))
    assert main.protocol.role == "active" and spare.protocol.role == "standby"
    req = main.protocol.handover()
    assert main.protocol.handover() == req  # one under way: the same request, not another
    world.flush(main)
    events = world.take_events(main)
    assert events[-1] == RoleChanged("standby", 2, req)
    assert (main.protocol.role, main.protocol.epoch) == ("standby", 2)
    assert RoleChanged("active", 2) in world.take_events(spare)  # a promotion answers nothing
    assert spare.protocol.epoch == 2


def test_a_cancelled_handover_is_refused_by_req(world: World) -> None:
    main, spare = line(world, ClientProtocol("localhost"), ClientProtocol("localhost"))
    producer = attach(world, ClientProtocol("localhost"))
    producer.protocol.add(b"held")
    world.flush(producer)
    req = main.protocol.handover()  # waits for the ack of "held"
    world.flush(main)
    world.drop(spare)  # the only standby leaves: cancelled
    refused = world.take_events(main)[-1]
    assert isinstance(refused, ServerError) and (refused.code, refused.req) == ("no_standby", req)
    assert main.protocol.handover() != req


# -- acks ------------------------------------------------------------------------------------


def test_acks_coalesce_into_one_ack_of_the_highest_seq(world: World) -> None:
    producer = attach(world, ClientProtocol("localhost"))
    consumer = attach(world, ClientProtocol("localhost"))
    consumer.protocol.take(prefetch=10)
    world.flush(consumer)
    for i in range(5):
        producer.protocol.add(b"%d" % i)
    world.flush(producer)
    world.tick(0.0)
    delivered = [e.seq for e in world.take_events(consumer) if isinstance(e, Delivery)]
    assert delivered == [1, 2, 3, 4, 5]
    for seq in (2, 4, 3, 1):
        consumer.protocol.ack(seq)
    world.flush(consumer)
    assert world.server.counters.acks == 1
    consumer.protocol.ack(3)  # below what was sent: nothing to say
    assert not consumer.protocol.wants_write
    world.drop(consumer)
    again = attach(world, ClientProtocol("localhost"))
    again.protocol.take()
    world.flush(again)
    redelivered = [
        (e.seq, e.redelivered) for e in world.take_events(again) if isinstance(e, Delivery)
    ]
    assert redelivered == [(5, True)]  # the one ack covered 1 to 4


def test_a_pending_ack_leaves_before_any_later_request() -> None:
    server = opened_wire()
    protocol = server.protocol
    protocol.take()
    protocol.ack(7)
    protocol.ack(9)
    protocol.add(b"x")
    protocol.ack(11)
    assert server.received() == [
        {"command": "take", "req": 1},
        {"command": "ack", "seq": 9},
        {"command": "add", "data": b"x", "req": 2},
        {"command": "ack", "seq": 11},
    ]


def test_an_ack_for_a_connection_that_is_gone_is_dropped() -> None:
    protocol = ClientProtocol("h:1", reconnect=True)
    server = WireServer(protocol)
    server.accept()
    first = protocol.generation
    protocol.receive_data(None)
    protocol.ack(5, first)  # while down
    protocol.reconnect()
    server = WireServer(protocol)
    server.accept()
    protocol.ack(6, first)  # on the new connection, for a message of the old one
    assert server.received() == []
    protocol.ack(6, protocol.generation)
    assert server.received() == [{"command": "ack", "seq": 6}]


# -- losses and reconnections ------------------------------------------------------------------


def test_a_loss_fails_what_was_sent_and_keeps_what_was_not() -> None:
    world = World(auto_write=False)
    peer = attach(world, ClientProtocol("localhost", reconnect=True))
    protocol = peer.protocol
    sent = protocol.add(b"in flight")
    world.flush(peer)
    lose(world, peer)  # before the answer: stored or not, the client cannot know
    world.release()
    assert list(failed(peer.events)) == [sent]
    error = failed(peer.events)[sent]
    assert isinstance(error, ConnectionLost) and isinstance(error, ConnectionError)
    assert (error.code, protocol.role, protocol.phase) == ("closed", None, Phase.CLOSED)
    later = protocol.add(b"made while down")  # waits in the protocol
    assert not protocol.ended
    peer = reconnect(world, peer)
    world.release()
    added = [e for e in world.take_events(peer) if isinstance(e, Added)]
    assert [(e.req, e.seq) for e in added] == [(later, 2)]  # it left on the new connection
    world.close()


def test_a_consumer_takes_again_after_a_reconnection(world: World) -> None:
    main, spare = line(world, ClientProtocol("localhost", reconnect=True), ClientProtocol("x"))
    assert world.take_events(main)[-1] == Subscribed("active", 1, 1)  # its take: req 1
    lose(world, main)
    assert main.protocol.role is None
    assert RoleChanged("active", 2) in world.take_events(spare)
    main = reconnect(world, main)
    retake = world.take_events(main)[-1]
    # Taken again by the protocol itself (no caller waits for that req): the end of the line.
    assert isinstance(retake, Subscribed) and retake.req not in (None, 1)
    assert (main.protocol.role, retake.role) == ("standby", "standby")


def test_without_reconnect_a_loss_ends_the_client(world: World) -> None:
    peer = attach(world, ClientProtocol("localhost"))
    protocol = peer.protocol
    lose(world, peer)
    assert protocol.ended and protocol.next_attempt(5.0) is None
    with pytest.raises(ConnectionLost) as lost:
        protocol.add(b"too late")
    assert lost.value.code == "closed" and "lost" in lost.value.message
    with pytest.raises(InvalidState):
        protocol.reconnect()


def test_close_fails_requests_not_sent_at_once_and_sent_ones_at_the_end(world: World) -> None:
    peer = attach(world, ClientProtocol("localhost", reconnect=True))
    protocol = peer.protocol
    sent = protocol.add(b"sent")
    lose(world, peer)
    unsent = protocol.add(b"waiting for the next connection")
    protocol.close()
    assert list(failed(protocol.events_received())) == [unsent]
    assert protocol.ended and protocol.next_attempt(0.0) is None
    assert list(failed(peer.events)) == [sent]
    with pytest.raises(ConnectionLost, match="the client is closed"):
        protocol.take()


def test_close_while_open_sends_the_pending_ack_then_the_close_frame() -> None:
    server = opened_wire()
    protocol = server.protocol
    req = protocol.add(b"x")
    protocol.ack(3)
    protocol.close()
    assert protocol.phase is Phase.CLOSING
    assert server.received() == [
        {"command": "add", "data": b"x", "req": req},
        {"command": "ack", "seq": 3},
    ]
    with pytest.raises(ConnectionLost):
        protocol.add(b"after close")
    protocol.receive_data(None)  # the server never answered the close: the add is unknown
    (lost,) = failed(protocol.events_received()).values()
    assert isinstance(lost, ConnectionLost) and lost.message == "the client is closed"


def test_back_off_at_once_then_doubling_to_the_cap_while_attempts_fail() -> None:
    protocol = ClientProtocol("h:1", reconnect=True)
    WireServer(protocol).accept()
    protocol.receive_data(None)  # an open connection lost: try again at once
    assert protocol.next_attempt(100.0) == 100.0
    delays = []
    for _ in range(9):
        protocol.reconnect()
        assert protocol.next_attempt(100.0) is None  # an attempt is under way
        protocol.transport_failed("connection refused")
        when = protocol.next_attempt(100.0)
        assert when is not None
        delays.append(round(when - 100.0, 6))
    assert delays == [RETRY_FIRST, 0.2, 0.4, 0.8, 1.6, 3.2, RETRY_MAX, RETRY_MAX, RETRY_MAX]
    assert protocol.close_code == 1006 and protocol.close_reason == "connection refused"
    protocol.reconnect()
    WireServer(protocol).accept()  # it worked: the schedule starts over
    protocol.receive_data(None)
    assert protocol.next_attempt(7.0) == 7.0


def test_a_refused_upgrade_is_retried_unless_the_credentials_were_refused() -> None:
    protocol = ClientProtocol("h:1", reconnect=True)
    events = WireServer(protocol).refuse(503, b"too many connections\r\n")
    assert events == [Closed(503, "upgrade refused with HTTP 503")]
    error = protocol.error()
    assert isinstance(error, ConnectionLost) and error.code == "refused"
    assert error.message == (
        "the server refused the connection with HTTP 503 Service Unavailable: too many connections"
    )
    assert protocol.next_attempt(1.0) == 1.0 + RETRY_FIRST
    protocol.reconnect()
    waiting = protocol.add(b"queued meanwhile")
    events = WireServer(protocol).refuse(401, b"missing or invalid credentials")
    error = protocol.error()
    assert type(error) is AccessDenied and error.code == "unauthorized"
    assert "HTTP 401 Unauthorized: missing or invalid credentials" in error.message
    assert protocol.ended and protocol.next_attempt(1.0) is None
    assert failed(events)[waiting].code == "unauthorized"
    with pytest.raises(AccessDenied):
        protocol.add(b"after")


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "unauthorized", AccessDenied),
        (403, "forbidden", AccessDenied),
        (404, "refused", ConnectionLost),
    ],
)
def test_refused_upgrades_become_client_errors(
    status: int, code: str, kind: type[ClientError]
) -> None:
    protocol = ClientProtocol("h:1")
    WireServer(protocol).refuse(status, b"reason " * 100)
    error = protocol.error()
    assert type(error) is kind and error.code == code and f"HTTP {status}" in error.message
    assert len(error.message) < 300  # a body is cut, not copied whole into the message
    assert protocol.close_code == status


# -- tokens and bad input ----------------------------------------------------------------------


def test_the_token_travels_in_the_authorization_header_only() -> None:
    server = WireServer(ClientProtocol("h:1", "/queues/q", token="s3cret.T0ken-_~+/="))
    request = server.request
    assert isinstance(request, Request) and request.target == "/queues/q"
    assert dict(request.extra_headers)[b"authorization"] == b"Bearer s3cret.T0ken-_~+/="
    bare = WireServer(ClientProtocol("h:1")).request
    assert isinstance(bare, Request) and b"authorization" not in dict(bare.extra_headers)


@pytest.mark.parametrize("token", ["", "two words", "line\r\nX-Injected: 1", "caf\u00e9"])
def test_a_token_that_cannot_be_a_header_is_refused_without_repeating_it(token: str) -> None:
    with pytest.raises(ValueError) as refused:
        ClientProtocol("h:1", token=token)
    assert not token or token not in str(refused.value)


def test_what_the_server_sends_wrongly_never_raises() -> None:
    server = opened_wire()
    req = server.protocol.add(b"x")
    events = server.send({"event": "error", "code": "c", "message": "m", "req": [req]})
    assert events == [ServerError("c", "m", None)]  # an unhashable req is no req
    events = server.send({"event": "added", "req": "x", "seq": 1, "id": "i", "created_at": 0})
    assert isinstance(events[0], ServerError) and events[0].code == "bad_event"
    assert server.send({"event": "standby", "epoch": 3}) == [RoleChanged("standby", 3)]
    (answer,) = server.send({"event": "added", "req": req, "seq": 1, "id": "i", "created_at": 0})
    assert isinstance(answer, Added) and answer.req == req
