"""The RocksDB store against a real database in a temporary directory: layout, reads, recovery,
errors, a SIGKILL in the middle of fsynced writes, and random batches read back exactly."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jackrabbit_host.rocks as store_module
from jackrabbit_core.exceptions import InvalidState, StoreError
from jackrabbit_core.records import StoredMessage
from jackrabbit_core.storage import Batch, QueueRecord
from jackrabbit_host.rocks import RocksStore as Store

#: The directory that holds the ``jackrabbit_core`` package, for child processes.
PACKAGE_ROOT = str(Path(os.path.abspath(store_module.__file__)).parents[1])
ALL = 1 << 62  # a limit / max_bytes that never binds


def msg(seq: int, data: bytes | None = None, created_at: int | None = None) -> StoredMessage:
    """A message whose id, timestamp and data are derived from its seq unless given."""
    return StoredMessage(
        seq=seq,
        id=seq.to_bytes(16, "big"),
        created_at=1_700_000_000_000 + seq if created_at is None else created_at,
        data=f"data-{seq}".encode() if data is None else data,
    )


def write(store: Store, queue: str, *seqs: int) -> None:
    batch = Batch()
    for seq in seqs:
        batch.add_message(queue, msg(seq))
    store.write(batch)


def get(store: Store, queue: str, seq: int) -> StoredMessage | None:
    """The message at ``seq``, read the way the core asks for one."""
    found = store.read(queue, seq, 1, ALL)
    return found[0] if found else None


def key_seq(store: Store, queue: str, key: str) -> int | None:
    found = store.find_key(queue, key)
    return None if found is None else found.seq


def seqs(messages: list[StoredMessage]) -> list[int]:
    return [m.seq for m in messages]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(str(tmp_path / "db"), fsync=False)
    yield s
    s.close()


# Round trips and reads


@pytest.mark.parametrize("fsync", [False, True])
def test_round_trip(tmp_path: Path, fsync: bool) -> None:
    s = Store.open(str(tmp_path / "db"), fsync=fsync)
    try:
        messages = [msg(1, b""), msg(2, b"\x00\xff" * 100), msg(3, b"x" * 100_000, 0)]
        batch = Batch()
        for m in messages:
            batch.add_message("orders", m)
        s.write(batch)
        assert s.read("orders", 1, 10, ALL) == messages
        assert [get(s, "orders", n) for n in (1, 2, 3)] == messages
        assert get(s, "orders", 4) is None
        assert get(s, "other", 1) is None
    finally:
        s.close()


def test_read_windows_and_limits(store: Store) -> None:
    write(store, "q", *range(1, 11))
    assert seqs(store.read("q", 1, 100, ALL)) == list(range(1, 11))
    assert seqs(store.read("q", 4, 3, ALL)) == [4, 5, 6]
    assert seqs(store.read("q", 9, 5, ALL)) == [9, 10]
    assert seqs(store.read("q", 10, 1, ALL)) == [10]
    assert store.read("q", 11, 5, ALL) == []
    assert store.read("q", 1, 0, ALL) == []
    assert store.read("q", 0, 5, ALL) == []  # seqs start at 1
    assert store.read("q", -1, 5, ALL) == []
    assert store.read("missing", 1, 5, ALL) == []


def test_read_max_bytes(store: Store) -> None:
    batch = Batch()
    for seq in range(1, 6):
        batch.add_message("q", msg(seq, bytes(10)))
    batch.add_message("big", msg(1, bytes(1000)))
    batch.add_message("big", msg(2, bytes(1)))
    store.write(batch)
    assert seqs(store.read("q", 1, 100, max_bytes=25)) == [1, 2, 3]  # stops once 30 >= 25
    assert seqs(store.read("q", 1, 100, max_bytes=30)) == [1, 2, 3]
    assert seqs(store.read("q", 1, 100, max_bytes=31)) == [1, 2, 3, 4]
    assert seqs(store.read("q", 2, 2, max_bytes=1000)) == [2, 3]  # limit binds first
    assert seqs(store.read("q", 1, 100, max_bytes=1)) == [1]
    assert seqs(store.read("q", 1, 100, max_bytes=0)) == [1]  # always at least one
    assert seqs(store.read("big", 1, 100, max_bytes=500)) == [1]


def test_read_stops_at_a_gap(store: Store) -> None:
    write(store, "q", 1, 2, 4, 5)
    assert seqs(store.read("q", 1, 10, ALL)) == [1, 2]
    assert store.read("q", 3, 10, ALL) == []
    assert seqs(store.read("q", 4, 10, ALL)) == [4, 5]


def test_order_across_byte_boundaries(store: Store) -> None:
    numbers = [*range(250, 262), *range(65_530, 65_542), *range(2**32 - 3, 2**32 + 3)]
    batch = Batch()
    for seq in reversed(numbers):  # written out of order: the key order must sort them
        batch.add_message("q", msg(seq))
    store.write(batch)
    assert seqs(store.read("q", 250, ALL, ALL)) == list(range(250, 262))
    assert seqs(store.read("q", 255, 2, ALL)) == [255, 256]
    assert seqs(store.read("q", 65_535, 2, ALL)) == [65_535, 65_536]
    assert seqs(store.read("q", 2**32 - 1, 2, ALL)) == [2**32 - 1, 2**32]
    assert get(store, "q", 256) == msg(256)
    assert store.recover() == [QueueRecord("q", last_seq=2**32 + 2, acked=0, epoch=0)]


def test_queues_whose_names_are_prefixes_do_not_interleave(store: Store) -> None:
    names = ["q", "q1", "q.", "a", "a.b", "a-b", "a0"]
    batch = Batch()
    for i, name in enumerate(names):
        for seq in range(1, i + 3):
            batch.add_message(name, msg(seq, name.encode() + b"/%d" % seq), key=f"k{seq}")
        batch.set_cursor(name, i + 1)
        batch.set_epoch(name, 100 + i)
    store.write(batch)
    for i, name in enumerate(names):
        got = store.read(name, 1, ALL, ALL)
        assert [m.data for m in got] == [name.encode() + b"/%d" % s for s in range(1, i + 3)]
        assert key_seq(store, name, f"k{i + 2}") == i + 2
        assert key_seq(store, name, f"k{i + 3}") is None
    assert store.recover() == sorted(
        [
            QueueRecord(name, last_seq=i + 2, acked=i + 1, epoch=100 + i)
            for i, name in enumerate(names)
        ],
        key=lambda record: record.name,
    )


def test_reads_while_a_thread_writes(tmp_path: Path) -> None:
    s = Store.open(str(tmp_path / "db"), fsync=True)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for n in range(100):
                write(s, "q", *range(10 * n + 1, 10 * n + 11))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while thread.is_alive():
            got = s.read("q", 1, ALL, ALL)
            assert got == [msg(n) for n in range(1, len(got) + 1)]
            assert len(got) % 10 == 0  # a batch is seen whole or not at all
    finally:
        thread.join(timeout=30)
    assert not errors
    assert seqs(s.read("q", 1, ALL, ALL)) == list(range(1, 1001))
    s.close()


# Recovery


def test_recover_after_close_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = Store.open(path, fsync=True)
    assert s.recover() == []
    batch = Batch()
    for seq in range(1, 6):
        batch.add_message("orders", msg(seq))
    batch.set_cursor("orders", 3)
    batch.set_epoch("orders", 7)
    batch.set_epoch("only-epoch", 2)
    batch.set_cursor("only-cursor", 9)
    s.write(batch)
    write(s, "orders", 6, 7)
    s.close()

    s = Store.open(path, fsync=True)
    try:
        assert s.recover() == [
            QueueRecord("only-cursor", last_seq=0, acked=9, epoch=0),
            QueueRecord("only-epoch", last_seq=0, acked=0, epoch=2),
            QueueRecord("orders", last_seq=7, acked=3, epoch=7),
        ]
        assert s.read("orders", 1, ALL, ALL) == [msg(n) for n in range(1, 8)]
    finally:
        s.close()


def test_cursor_and_epoch_last_call_wins(store: Store) -> None:
    batch = Batch()
    batch.set_cursor("q", 5)
    batch.set_epoch("q", 3)
    batch.set_cursor("q", 4)
    batch.set_epoch("q", 8)
    store.write(batch)
    assert store.recover() == [QueueRecord("q", last_seq=0, acked=4, epoch=8)]
    batch = Batch()
    batch.set_cursor("q", 10)
    store.write(batch)
    assert store.recover() == [QueueRecord("q", last_seq=0, acked=10, epoch=8)]


def test_lookup_key(store: Store) -> None:
    batch = Batch()
    batch.add_message("q", msg(1), key="order-1")
    batch.add_message("q", msg(2))
    batch.add_message("q", msg(3), key="ключ\x00with nul")
    batch.add_message("q1", msg(1), key="order-1-elsewhere")
    store.write(batch)
    assert key_seq(store, "q", "order-1") == 1
    assert key_seq(store, "q", "ключ\x00with nul") == 3
    assert key_seq(store, "q", "ключ") is None
    assert key_seq(store, "q", "") is None
    assert key_seq(store, "q1", "order-1") is None
    assert key_seq(store, "q1", "order-1-elsewhere") == 1
    assert key_seq(store, "missing", "order-1") is None


# Batch


def test_batch_holds_plain_values() -> None:
    batch = Batch()
    assert not batch
    batch.add_message("q", msg(1), key="k")
    batch.set_cursor("q", 1)
    batch.set_cursor("q", 2)  # the last call wins
    batch.set_epoch("q", 3)
    assert batch
    assert batch.messages == [("q", msg(1), "k")]
    assert (batch.cursors, batch.epochs) == ({"q": 2}, {"q": 3})


def test_empty_batch_writes_nothing(store: Store) -> None:
    store.write(Batch())
    assert store.recover() == []


@pytest.mark.parametrize(
    "fill",
    [
        lambda b: b.add_message("bad\x00name", msg(1)),
        lambda b: b.add_message("q", StoredMessage(1, b"short", 0, b"")),
        lambda b: b.add_message("q", StoredMessage(-1, bytes(16), 0, b"")),
        lambda b: b.set_cursor("q", 2**64),
        lambda b: b.set_epoch("q", -1),
    ],
)
def test_misuse_is_invalid_state_and_writes_nothing(store: Store, fill: Any) -> None:
    batch = Batch()
    fill(batch)
    with pytest.raises(InvalidState):
        store.write(batch)
    assert store.recover() == []


# Errors


def assert_one_line(error: pytest.ExceptionInfo[StoreError], *words: str) -> str:
    text = str(error.value)
    assert "\n" not in text
    for word in words:
        assert word in text
    return text


def test_open_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("not a database")
    with pytest.raises(StoreError) as error:
        Store.open(str(path), fsync=True)
    assert_one_line(error, str(path), "is a file")
    with pytest.raises(StoreError) as error:
        Store.open(str(path / "db"), fsync=True)
    assert_one_line(error, str(path / "db"), "not a directory")


def test_open_twice_in_this_process(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = Store.open(path, fsync=True)
    try:
        with pytest.raises(StoreError) as error:
            Store.open(path, fsync=True)
        assert_one_line(error, path, "already open")
    finally:
        s.close()
    Store.open(path, fsync=True).close()  # free again once closed


def test_open_while_another_process_has_it(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = Store.open(path, fsync=True)
    try:
        child = textwrap.dedent(
            """
            import sys
            from jackrabbit_core.exceptions import StoreError
            from jackrabbit_host.rocks import RocksStore as Store
            try:
                Store.open(sys.argv[1], fsync=True)
            except StoreError as exc:
                print(exc)
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", child, path],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=PACKAGE_ROOT,
            env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 1
        assert "another process" in lines[0]
        assert path in lines[0]
    finally:
        s.close()


def test_open_a_corrupt_database(tmp_path: Path) -> None:
    path = tmp_path / "db"
    write_and_close = Store.open(str(path), fsync=True)
    write(write_and_close, "q", 1)
    write_and_close.close()
    (path / "CURRENT").write_text("MANIFEST-999999\n")
    with pytest.raises(StoreError) as error:
        Store.open(str(path), fsync=True)
    assert_one_line(error, str(path))
    (path / "CURRENT").write_bytes(b"\xff\x00garbage")
    with pytest.raises(StoreError) as error:
        Store.open(str(path), fsync=True)
    assert_one_line(error, str(path), "corrupt")


def test_closed_store(tmp_path: Path) -> None:
    s = Store.open(str(tmp_path / "db"), fsync=True)
    s.close()
    s.close()  # idempotent
    batch = Batch()
    batch.add_message("q", msg(1))
    for call in (
        lambda: s.write(batch),
        lambda: s.read("q", 1, 1, ALL),
        lambda: s.find_key("q", "k"),
        s.recover,
    ):
        with pytest.raises(StoreError) as error:
            call()
        assert_one_line(error, "closed")


def test_rocksdb_failure_becomes_store_error(tmp_path: Path) -> None:
    s = Store.open(str(tmp_path / "db"), fsync=True)
    db = s._db
    assert db is not None
    db.close()  # pull the database out from under the store
    batch = Batch()
    batch.add_message("q", msg(1))
    with pytest.raises(StoreError) as error:
        s.write(batch)
    assert_one_line(error, "cannot write")
    with pytest.raises(StoreError):
        s.read("q", 1, 1, ALL)
    with pytest.raises(StoreError):
        s.recover()


# A crash in the middle of fsynced writes

CRASH_CHILD = textwrap.dedent(
    """
    import sys
    from jackrabbit_core.records import StoredMessage
    from jackrabbit_core.storage import Batch
    from jackrabbit_host.rocks import RocksStore as Store

    store = Store.open(sys.argv[1], fsync=True)
    seq = 0
    for n in range(50_000):
        batch = Batch()
        for _ in range(1 + n % 7):
            seq += 1
            data = b"%d:" % seq + bytes(seq % 200)
            batch.add_message("crash", StoredMessage(seq, seq.to_bytes(16, "big"), seq, data))
        batch.set_cursor("crash", seq // 2)
        store.write(batch)
        sys.stdout.write(f"{seq}\\n")
        sys.stdout.flush()
    """
)


def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=PACKAGE_ROOT,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
    )
    assert proc.stdout is not None and proc.stderr is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + 30
    try:
        # Kill it once it has confirmed a few hundred batches: mid-stream, at a random point.
        while out.count(b"\n") < 300:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the writer confirmed too few batches in time"
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break  # the child ended on its own
                out += chunk
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    out += proc.stdout.read()  # what it printed before the kill also counts
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, stderr
    printed = [int(line) for line in out.split(b"\n")[:-1]]  # a cut-off last line is no promise
    assert len(printed) >= 300, stderr
    assert printed == sorted(set(printed))

    s = Store.open(path, fsync=True)
    try:
        [record] = s.recover()
        assert record.name == "crash"
        assert record.last_seq >= printed[-1]
        assert record.acked == record.last_seq // 2  # the cursor went in the same batch
        got = s.read("crash", 1, ALL, ALL)
        assert seqs(got) == list(range(1, record.last_seq + 1))
        for m in got:
            assert m.data == b"%d:" % m.seq + bytes(m.seq % 200)
            assert m.id == m.seq.to_bytes(16, "big")
            assert m.created_at == m.seq
    finally:
        s.close()


# Random batches read back exactly

QUEUES = ["q", "q1", "a", "a.b"]
ADD = st.tuples(
    st.just("add"),
    st.sampled_from(QUEUES),
    st.binary(max_size=40),
    st.none() | st.text(max_size=6),
    st.integers(0, 2**64 - 1),
)
CURSOR = st.tuples(st.just("cursor"), st.sampled_from(QUEUES), st.integers(0, 2**64 - 1))
EPOCH = st.tuples(st.just("epoch"), st.sampled_from(QUEUES), st.integers(0, 2**64 - 1))
BATCHES = st.lists(st.lists(st.one_of(ADD, ADD, CURSOR, EPOCH), max_size=25), max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=BATCHES, data=st.data())
def test_random_batches_read_back_exactly(
    batches: list[list[tuple[object, ...]]], data: st.DataObject
) -> None:
    last: dict[str, int] = {}
    messages: dict[str, list[StoredMessage]] = {}
    keys: dict[tuple[str, str], int] = {}
    cursors: dict[str, int] = {}
    epochs: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "db")
        s = Store.open(path, fsync=False)
        try:
            for ops in batches:
                batch = Batch()
                for op in ops:
                    kind, queue = op[0], op[1]
                    assert isinstance(queue, str)
                    last.setdefault(queue, 0)
                    if kind == "add":
                        _, _, payload, key, created_at = op
                        assert isinstance(payload, bytes) and isinstance(created_at, int)
                        assert key is None or isinstance(key, str)
                        last[queue] += 1
                        m = msg(last[queue], payload, created_at)
                        messages.setdefault(queue, []).append(m)
                        batch.add_message(queue, m, key)
                        if key is not None:
                            keys[queue, key] = m.seq
                    elif kind == "cursor":
                        assert isinstance(op[2], int)
                        batch.set_cursor(queue, op[2])
                        cursors[queue] = op[2]
                    else:
                        assert isinstance(op[2], int)
                        batch.set_epoch(queue, op[2])
                        epochs[queue] = op[2]
                assert len(batch.messages) == sum(op[0] == "add" for op in ops)
                assert bool(batch) == bool(ops)
                s.write(batch)
            s.close()
            s = Store.open(path, fsync=False)

            assert s.recover() == [
                QueueRecord(q, last[q], cursors.get(q, 0), epochs.get(q, 0)) for q in sorted(last)
            ]
            for queue in QUEUES:
                stored = messages.get(queue, [])
                assert s.read(queue, 1, ALL, ALL) == stored
                for m in stored:
                    assert get(s, queue, m.seq) == m
                assert get(s, queue, len(stored) + 1) is None
                if stored:
                    first = data.draw(st.integers(1, len(stored)), label="first")
                    limit = data.draw(st.integers(1, len(stored)), label="limit")
                    assert s.read(queue, first, limit, ALL) == stored[first - 1 : first - 1 + limit]
            for (queue, key), seq in keys.items():
                assert key_seq(s, queue, key) == seq
        finally:
            s.close()
