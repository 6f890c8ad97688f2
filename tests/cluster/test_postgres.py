"""The PostgreSQL store against a real server: the ``Store`` promises, leases and fencing."""

from __future__ import annotations

import time

import pytest

from jackrabbit_core import Batch, StoreError
from jackrabbit_core.records import StoredMessage
from jackrabbit_host.cluster import new_node
from jackrabbit_host.postgres import Acquired, Fenced, LeaseLost, Owned, PgStore

LEASE = 30.0


def message(seq: int, data: bytes = b"x") -> StoredMessage:
    return StoredMessage(seq, seq.to_bytes(16, "big"), 1_700_000_000_000 + seq, data)


def joined(dsn: str, name: str, lease: float = LEASE) -> PgStore:
    store = PgStore.open(dsn)
    assert store.register(new_node(name, f"wss://{name}:1"), lease) is None
    return store


def test_what_a_batch_writes_reads_back(dsn: str) -> None:
    store = joined(dsn, "a")
    taken = store.acquire("q", LEASE)
    assert isinstance(taken, Acquired) and taken.record.last_seq == 0
    batch = Batch()
    for seq in (1, 2, 3):
        key = "key2" if seq == 2 else None
        batch.add_message("q", message(seq, str(seq).encode() * 100), key)
    batch.set_cursor("q", 1)
    batch.set_epoch("q", 4)
    store.write(batch)
    assert [m.seq for m in store.read("q", 1, 10, 1 << 20)] == [1, 2, 3]
    assert [m.seq for m in store.read("q", 2, 1, 1 << 20)] == [2]
    assert [m.seq for m in store.read("q", 1, 10, 150)] == [1, 2]  # cut once 150 bytes are in
    assert store.read("q", 4, 10, 1 << 20) == []
    assert store.read("q", 3, 10, 1 << 20) == [message(3, b"3" * 100)]
    assert store.find_key("q", "key2") == message(2, b"2" * 100)
    assert store.find_key("q", "nope") is None
    store.close()  # hands q over: the next node takes it with its state
    other = joined(dsn, "b")
    again = other.acquire("q", LEASE)
    assert isinstance(again, Acquired)
    assert (again.record.last_seq, again.record.acked, again.record.epoch) == (3, 1, 4)
    assert again.generation == taken.generation + 1
    other.close()


def test_a_live_owner_keeps_its_queue_and_a_dead_one_is_fenced_off(dsn: str) -> None:
    first = joined(dsn, "a", lease=0.5)
    fenced: list[set[str]] = []
    first.on_fenced = fenced.append
    assert isinstance(first.acquire("q", 0.5), Acquired)
    second = joined(dsn, "b")
    assert second.acquire("q", LEASE) == Owned("a", "wss://a:1")
    time.sleep(0.7)  # a's lease ends without a renewal
    with pytest.raises(LeaseLost):
        first.renew(0.5)
    assert isinstance(second.acquire("q", LEASE), Acquired)
    stale = Batch()
    stale.add_message("q", message(1))
    with pytest.raises(Fenced) as refused:
        first.write(stale)  # a, paused or cut off, may never write again
    assert refused.value.queues == {"q"} and fenced == [{"q"}]
    assert second.read("q", 1, 10, 1 << 20) == []  # nothing of it was written
    first.close()
    second.close()


def test_a_name_in_use_by_a_live_node_is_not_taken(dsn: str) -> None:
    store = joined(dsn, "a")
    impostor = PgStore.open(dsn)
    left = impostor.register(new_node("a", "wss://elsewhere:1"), LEASE)
    assert left is not None and LEASE - 5 < left <= LEASE
    impostor.close()
    nodes = store.describe()
    assert nodes == [{"name": "a", "advertise": "wss://a:1", "alive": True, "queues": []}]
    store.close()
    after = PgStore.open(dsn)
    assert after.describe() == []  # a planned stop leaves the registry
    after.close()


def test_an_unreachable_database_is_one_line(postgres: object) -> None:
    with pytest.raises(StoreError) as failed:
        PgStore.open("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert "\n" not in str(failed.value) and "cluster database" in str(failed.value)
