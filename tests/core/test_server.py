"""The server facade end to end, in memory: peers, a fake clock and a real store."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import msgpack
import pytest

from jackrabbit_core.client import (
    Added,
    Closed,
    Delivery,
    Opened,
    RoleChanged,
    ServerError,
    Subscribed,
)
from jackrabbit_core.frames import binary_header
from jackrabbit_core.front import MAX_SCRAPES
from jackrabbit_core.journal import CURSOR_DELAY, RETRY_FIRST, RETRY_MAX
from jackrabbit_core.voices import V1

from .memstore import MemoryStore
from .world import Peer, World


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.close()


def opened(world: World, path: str = "/") -> Peer:
    peer = world.peer(path)
    assert world.take_events(peer) == [Opened()]
    return peer


def add(world: World, peer: Peer, data: bytes, key: str | None = None) -> Added:
    peer.protocol.add(data, key)
    world.flush(peer)
    (event,) = world.take_events(peer)
    assert isinstance(event, Added), event
    return event


def test_adds_are_numbered_from_one_and_confirmed_after_the_batch() -> None:
    world = World(auto_write=False)
    producer = opened(world)
    producer.protocol.add(b"a")
    producer.protocol.add(b"b")
    world.flush(producer)
    assert world.take_events(producer) == []  # nothing confirmed before it is durable
    world.release()
    events = world.take_events(producer)
    assert [(e.seq, e.req) for e in events if isinstance(e, Added)] == [(1, 1), (2, 2)]
    world.close()


def test_group_commit_one_batch_in_flight_the_next_fills() -> None:
    world = World(auto_write=False)
    producer = opened(world)
    producer.protocol.add(b"1")
    world.flush(producer)
    assert len(world.held) == 1
    for i in range(5):
        producer.protocol.add(b"%d" % i)
    world.flush(producer)
    assert len(world.held) == 1  # the next batch waits for the first to be durable
    world.release()
    assert len(world.held) == 1 and len(world.held[0].messages) == 5
    world.release()
    assert [e.seq for e in world.take_events(producer) if isinstance(e, Added)] == list(range(1, 7))
    world.close()


def test_delivery_ack_and_failover_redelivers_in_order(world: World) -> None:
    producer, main, spare = opened(world), opened(world), opened(world)
    main.protocol.take(prefetch=10)
    world.flush(main)
    spare.protocol.take()
    world.flush(spare)
    assert world.take_events(main) == [Subscribed("active", 1, 1)]
    assert world.take_events(spare) == [Subscribed("standby", None, 1)]
    for i in range(4):
        add(world, producer, b"m%d" % i)
    got = [e for e in world.take_events(main) if isinstance(e, Delivery)]
    assert [(d.seq, d.data, d.redelivered) for d in got] == [
        (1, b"m0", False),
        (2, b"m1", False),
        (3, b"m2", False),
        (4, b"m3", False),
    ]
    main.protocol.ack(2)
    world.flush(main)
    world.drop(main)
    events = world.take_events(spare)
    assert events[0] == RoleChanged("active", 2)
    assert [(d.seq, d.redelivered) for d in events[1:] if isinstance(d, Delivery)] == [
        (3, True),
        (4, True),
    ]
    add(world, producer, b"new")
    (fresh,) = world.take_events(spare)
    assert isinstance(fresh, Delivery) and (fresh.seq, fresh.redelivered) == (5, False)


def test_idempotent_key_in_flight_and_after_restart() -> None:
    db = MemoryStore()
    world = World(db)
    producer = opened(world)
    first = add(world, producer, b"x", key="k1")
    again = add(world, producer, b"y", key="k1")
    assert again.duplicate and (again.seq, again.id) == (first.seq, first.id)
    world.close()
    world = World(db)
    producer = opened(world)
    after = add(world, producer, b"z", key="k1")
    assert after.duplicate and after.seq == first.seq
    assert add(world, producer, b"w").seq == first.seq + 1
    world.close()


def test_epoch_and_cursor_survive_restart() -> None:
    db = MemoryStore()
    world = World(db)
    producer, consumer = opened(world), opened(world)
    for i in range(3):
        add(world, producer, b"%d" % i)
    consumer.protocol.take()
    world.flush(consumer)
    events = world.take_events(consumer)
    assert events[0] == Subscribed("active", 1, 1)
    consumer.protocol.ack(2)
    world.flush(consumer)
    world.tick(CURSOR_DELAY)  # a cursor alone is written after a short wait
    world.close()
    world = World(db)
    consumer = opened(world)
    consumer.protocol.take()
    world.flush(consumer)
    events = world.take_events(consumer)
    assert events[0] == Subscribed("active", 2, 1)
    assert [d.seq for d in events if isinstance(d, Delivery)] == [3]
    world.close()


def test_original_dialect_add_take_gets_exact_delivery(world: World) -> None:
    producer, consumer = opened(world), opened(world)
    world.send_frame(consumer, {"command": {1: None}, "data": b""})
    world.send_frame(producer, [{0: None}, b"hello"])
    assert world.take_events(producer) == []  # an original client hears nothing back
    # The whole delivery, built by hand from CONTRACT §3: exactly these keys in this order,
    # the id's 16 raw bytes, created_at in seconds (the world's ids count from 1, its clock
    # from 1,700,000,000,000 ms).
    delivery = msgpack.packb(
        {
            "command": {1: None},
            "id": (1).to_bytes(16, "big"),
            "created_at": 1_700_000_000,
            "published": False,
            "published_at": 0,
            "data": b"hello",
        }
    )
    assert consumer.raw.endswith(binary_header(len(delivery)) + delivery)


def original_consumer(world: World) -> Peer:
    consumer = opened(world)
    world.send_frame(consumer, {"command": {1: None}, "data": b""})
    return consumer


def original_seqs(peer: Peer) -> list[int]:
    """The seqs (the world's ids count them) of the original-format deliveries in ``raw``."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    found = []
    for frame in _frames(bytes(peer.raw)):
        unpacker.feed(frame)
        for obj in unpacker:
            if isinstance(obj, dict) and obj.get("command") == {1: None}:
                found.append(int.from_bytes(obj["id"], "big"))
    return found


def _frames(raw: bytes) -> list[bytes]:
    """Payloads of the unmasked server frames after the 101 response."""
    pos = raw.index(b"\r\n\r\n") + 4
    out = []
    while pos < len(raw):
        size, pos = raw[pos + 1] & 0x7F, pos + 2
        if size == 126:
            size, pos = int.from_bytes(raw[pos : pos + 2], "big"), pos + 2
        elif size == 127:
            size, pos = int.from_bytes(raw[pos : pos + 8], "big"), pos + 8
        out.append(raw[pos : pos + size])
        pos += size
    return out


def test_original_deliveries_count_as_acked_only_once_written() -> None:
    """Issue 9.5: an original consumer's deliveries are acked when the shell reports their
    bytes written to the socket, not when they are handed to it; a failover redelivers
    whatever was still in the server's buffer."""
    world = World(auto_flush=False)
    producer = opened(world)
    main = original_consumer(world)
    spare = opened(world)
    spare.protocol.take()
    world.flush(spare)
    for i in range(5):
        world.send_frame(producer, [{0: None}, b"m%d" % i])
    assert original_seqs(main) == [1, 2, 3, 4, 5]
    assert main.conn in world.watched
    written = len(main.raw)
    world.send_frame(producer, [{0: None}, b"m5"])  # handed, not yet written
    world.report_flushed(main, written)  # the shell has written only the first five
    world.drop(main)
    redelivered = [e for e in world.take_events(spare) if isinstance(e, Delivery)]
    assert [(d.seq, d.redelivered) for d in redelivered] == [(6, True)]
    world.close()


def test_original_deliveries_are_bounded_by_prefetch_until_written() -> None:
    world = World(auto_flush=False)
    producer = opened(world)
    for i in range(1200):
        producer.protocol._send({"command": "add", "data": b"%d" % i})
    world.flush(producer)
    main = original_consumer(world)
    world.tick(0.0)
    assert len(original_seqs(main)) == 1000  # the default prefetch: nothing more unwritten
    world.report_flushed(main)
    world.tick(0.0)
    assert original_seqs(main) == list(range(1, 1201))
    world.close()


def test_v1_errors_keep_the_connection_open(world: World) -> None:
    peer = opened(world)
    world.send_frame(peer, {"command": "nope", "req": 7})
    world.send_frame(peer, {"command": "ack", "seq": 1})
    world.send_frame(peer, {"command": "add"})
    events = world.take_events(peer)
    assert [(e.code, e.req) for e in events if isinstance(e, ServerError)] == [
        ("unknown_command", 7),
        ("not_subscribed", None),
        ("bad_request", None),
    ]
    assert add(world, peer, b"still fine").seq == 1


def test_original_refusal_closes_with_policy_code(world: World) -> None:
    peer = opened(world)
    world.send_frame(peer, {"command": {0: None}, "data": b"x"})
    world.send_frame(peer, {"command": {7: None}, "data": b""})
    (event,) = world.take_events(peer)
    assert isinstance(event, Closed) and event.code == 1008


def test_heartbeat_pings_then_drops_a_silent_peer_and_promotes(world: World) -> None:
    main, spare = opened(world), opened(world)
    main.protocol.take()
    world.flush(main)
    spare.protocol.take()
    world.flush(spare)
    world.take_events(main)
    world.take_events(spare)
    heartbeat = world.config.heartbeat
    # The spare answers pings (its protocol queues pongs); the main one stays silent.
    for _ in range(6):
        world.tick(heartbeat / 2)
        world.flush(spare)
    assert main.closed_by_server
    assert RoleChanged("active", 2) in world.take_events(spare)


def test_handover_switches_without_redelivery(world: World) -> None:
    producer, main, spare = opened(world), opened(world), opened(world)
    main.protocol.take()
    world.flush(main)
    spare.protocol.take()
    world.flush(spare)
    add(world, producer, b"one")
    world.take_events(main)
    world.take_events(spare)
    main.protocol.handover()
    world.flush(main)
    add(world, producer, b"two")  # held back from main: it is handing over
    assert not [e for e in world.take_events(main) if isinstance(e, Delivery)]
    main.protocol.ack(1)
    world.flush(main)
    assert world.take_events(main) == [RoleChanged("standby", 2, 2)]  # answers handover req 2
    events = world.take_events(spare)
    assert events[0] == RoleChanged("active", 2)
    assert [(d.seq, d.redelivered) for d in events[1:] if isinstance(d, Delivery)] == [(2, False)]


def test_text_frame_closes_1003_and_oversize_1009() -> None:
    world = World(max_message_bytes=64)
    text_peer, big_peer = opened(world), opened(world)
    from wsproto.events import BytesMessage, TextMessage

    text_peer.protocol._out.append(text_peer.protocol._ws.send(TextMessage(data="hi")))
    world.flush(text_peer)
    assert world.take_events(text_peer)[-1].code == 1003  # type: ignore[union-attr]
    big_peer.protocol._out.append(big_peer.protocol._ws.send(BytesMessage(data=b"x" * 65)))
    world.flush(big_peer)
    assert world.take_events(big_peer)[-1].code == 1009  # type: ignore[union-attr]
    world.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n", b"405"),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),
        (
            b"GET /queues/bad!name HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
            b"404",
        ),
        (
            b"GET /queues/ok HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n",
            b"400",
        ),
        (b"\x16\x03\x01garbage\r\n\r\n", b"400"),
    ],
)
def test_http_routing(world: World, request_bytes: bytes, status: bytes) -> None:
    conn = world.raw_peer()
    world.send_raw(conn, request_bytes)
    world.tick(0.0)  # /metrics is answered on the next turn
    reply = bytes(world.peers[conn].raw)
    assert reply.split(b" ", 2)[1] == status, reply
    assert world.peers[conn].closed_by_server


def scrape(world: World) -> bytes:
    conn = world.raw_peer()
    reply = world.send_raw(conn, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    world.tick(0.0)
    return reply + bytes(world.peers[conn].raw[len(reply) :])


def test_metrics_count_adds(world: World) -> None:
    producer = opened(world)
    add(world, producer, b"a")
    text = scrape(world).decode()
    assert text.startswith("HTTP/1.1 200")
    assert "jackrabbit_adds_total 1" in text
    assert 'jackrabbit_queue_last_seq{queue="default"} 1' in text


def test_a_scrape_of_many_queues_is_rendered_a_slice_per_turn(world: World) -> None:
    """Issue 9.10: 10,000 queues are 2 MB of series; each turn renders ``SCRAPE_STEP`` queues,
    so the other connections are served between slices, and concurrent scrapes share it."""
    producer = opened(world, "/queues/q-0")
    for i in range(2500):
        world.server._deliveries.take(-1, f"q-{i}", 1, None, V1)  # a queue per name
    scrapers = [world.raw_peer() for _ in range(2)]
    for conn in scrapers:
        assert world.send_raw(conn, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    turns = 0
    while not world.peers[scrapers[0]].raw:
        assert add(world, producer, b"served between slices").seq == turns + 1
        world.server.handle_timer(world.now)
        world.run()
        turns += 1
    assert turns == 3  # 2,500 queues, 1,000 a turn
    bodies = [bytes(world.peers[conn].raw).split(b"\r\n\r\n", 1)[1] for conn in scrapers]
    assert bodies[0] == bodies[1]
    assert bodies[0].count(b"jackrabbit_queue_epoch{") == 2500
    assert b'jackrabbit_queue_last_seq{queue="q-0"} 1' in bodies[0]  # read at its turn


def test_scrapes_waiting_at_once_are_bounded(world: World) -> None:
    replies = []
    for _ in range(MAX_SCRAPES + 1):
        conn = world.raw_peer()
        replies.append(world.send_raw(conn, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert replies[:-1] == [b""] * MAX_SCRAPES
    assert replies[-1].startswith(b"HTTP/1.1 503")


def test_max_connections_answers_503() -> None:
    world = World(max_connections=1)
    first = world.raw_peer()
    second = world.raw_peer()
    reply = world.send_raw(second, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 503"), reply
    assert world.send_raw(first, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 200"
    )
    world.close()


def test_handshake_timeout_frees_the_connection(world: World) -> None:
    conn = world.raw_peer()
    world.send_raw(conn, b"GET / HTTP/1.1\r\n")
    world.tick(world.config.handshake_timeout + world.config.heartbeat)
    assert world.peers[conn].closed_by_server
    assert world.server.open_connections == 0


def test_shutdown_closes_clients_with_1001(world: World) -> None:
    peer = opened(world)
    world.server.shutdown(world.now)
    world.run()
    (event,) = world.take_events(peer)
    assert isinstance(event, Closed) and event.code == 1001


def test_producer_backpressure_pauses_and_resumes_reading() -> None:
    world = World(auto_write=False, max_pending_adds=4)
    producer = opened(world)
    for i in range(5):
        producer.protocol.add(b"%d" % i)
    world.flush(producer)
    assert producer.paused
    world.release()
    assert not producer.paused
    world.close()


def test_the_budget_bounds_the_bytes_a_producer_has_in_flight() -> None:
    """At the smallest budget a producer may have 512 KiB of adds not yet durable: the fourth
    128 KiB add stops its connection being read, until the batches are written."""
    world = World(auto_write=False, memory_budget=8 * 1024 * 1024)
    producer = opened(world)
    for _ in range(3):
        producer.protocol.add(bytes(128 * 1024))
    world.flush(producer)
    assert not producer.paused
    producer.protocol.add(bytes(128 * 1024))
    world.flush(producer)
    assert producer.paused
    while world.held:
        world.release()
    assert not producer.paused
    world.close()


def test_a_producer_that_does_not_read_is_not_read_either(world: World) -> None:
    producer = opened(world)
    world.server.set_writable(producer.conn, False, world.now)
    world.run()
    assert producer.paused
    world.server.set_writable(producer.conn, True, world.now)
    world.run()
    assert not producer.paused


def test_a_failed_write_refuses_its_adds_and_serving_goes_on() -> None:
    world = World(auto_write=False)
    producer = opened(world)
    producer.protocol.add(b"lost")
    world.flush(producer)
    world.held.pop(0)
    world.server.batch_failed("disk full", world.now)
    world.run()
    (refused,) = world.take_events(producer)
    assert isinstance(refused, ServerError) and (refused.code, refused.req) == ("unavailable", 1)
    producer.protocol.add(b"kept")
    world.flush(producer)
    assert world.held == []  # the next write waits for the back-off
    world.tick(RETRY_FIRST)
    world.release()
    (added,) = world.take_events(producer)
    assert isinstance(added, Added) and added.seq == 1
    world.close()


def test_a_failing_disk_is_retried_with_back_off_not_in_a_loop() -> None:
    """A standby promoted while the disk is full needs its epoch written: the write is
    retried after 0.05 s, 0.1 s, 0.2 s ... up to 2 s, not as fast as it fails (issue 9.6)."""
    world = World(auto_write=False, heartbeat=60.0)
    consumer = opened(world)
    consumer.protocol.take()
    world.flush(consumer)
    attempts: list[float] = []
    start = world.now
    while world.now - start < 10.0:
        if world.held:
            world.held.pop(0)
            attempts.append(world.now - start)
            world.server.batch_failed("disk full", world.now)
            world.run()
        world.tick(0.01)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]  # seen at the 0.01 s tick after
    assert gaps[:6] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6], abs=0.011)
    assert gaps[6:] == pytest.approx([2.0] * len(gaps[6:]), abs=0.011)
    world.tick(RETRY_MAX)
    world.release()  # the disk is back: the epoch is written, the consumer hears of it
    assert world.take_events(consumer)[-1] == Subscribed("active", 1, 1)
    world.close()


def test_large_messages_are_paced_a_few_per_pump(world: World) -> None:
    producer, consumer = opened(world), opened(world)
    for _ in range(10):
        add(world, producer, b"x" * 900_000)
    consumer.protocol.take(prefetch=100)
    world.flush(consumer)
    first = [e for e in world.take_events(consumer) if isinstance(e, Delivery)]
    assert len(first) == 4  # about 4 MiB per pump, then the write buffer may push back
    world.tick(0.0)
    rest = [e for e in world.take_events(consumer) if isinstance(e, Delivery)]
    assert [d.seq for d in first + rest] == list(range(1, 11))


def test_a_cursor_rides_with_the_next_adds_or_goes_alone_after_a_while() -> None:
    """An ack does not cost a write of its own that the next add would wait behind: the
    cursor goes with the next batch of messages, or alone after ``CURSOR_DELAY``."""
    world = World(auto_write=False)
    producer, consumer = opened(world), opened(world)
    consumer.protocol.take()
    world.flush(consumer)
    world.release()  # the epoch
    producer.protocol.add(b"a")
    world.flush(producer)
    world.release()
    consumer.protocol.ack(1)
    world.flush(consumer)
    assert world.held == []  # the cursor waits for company
    producer.protocol.add(b"b")
    world.flush(producer)
    (batch,) = world.held
    assert (len(batch.messages), batch.cursors) == (1, {"default": 1})
    world.release()
    consumer.protocol.ack(2)
    world.flush(consumer)
    world.tick(CURSOR_DELAY / 2)
    assert world.held == []
    world.tick(CURSOR_DELAY / 2)
    (alone,) = world.held
    assert (alone.messages, alone.cursors) == ([], {"default": 2})
    world.close()


def test_shutdown_writes_a_waiting_cursor_at_once() -> None:
    world = World(auto_write=False)
    producer, consumer = opened(world), opened(world)
    consumer.protocol.take()
    world.flush(consumer)
    world.release()
    add_held = producer.protocol.add(b"a")
    world.flush(producer)
    world.release()
    assert add_held == 1
    consumer.protocol.ack(1)
    world.flush(consumer)
    assert world.held == [] and not world.server.idle
    world.server.shutdown(world.now)
    world.run()
    (batch,) = world.held
    assert batch.cursors == {"default": 1}
    world.release()
    assert world.server.idle
