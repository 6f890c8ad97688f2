"""The embedded store: every queue's messages, cursor and epoch in one RocksDB directory.

``RocksStore`` implements the core's ``jackrabbit_core.storage.Store`` interface; it is the only
module that imports ``rocksdict``. Both shells use it the same way: ``write`` on their single
writer thread (the next batch fills while one is fsynced: group commit), reads wherever the
core asks for them; a RocksDB read takes microseconds, so a shell answers it at once.

Durability
----------
With ``fsync=True`` a batch is written to the write-ahead log without sync and then
``flush_wal(True)`` syncs the log before ``write`` returns. A synced write holds the GIL through
the fsync: measured here, a CPU-bound thread kept about half its
speed next to a writer thread doing synced writes, and 90-100% with write + ``flush_wal``. The
price is that after each fsync the writer waits for the GIL, up to the interpreter's switch
interval (5 ms) when another thread is busy: about 160 batches/s then, 600 with
``sys.setswitchinterval(0.001)``. Group commit makes each batch carry more, not more batches.
With ``fsync=False`` the batch is in the OS page cache on return: it survives the process being
killed, not the machine losing power.

Key layout
----------
The database is opened in raw mode, so keys and values are plain bytes that any RocksDB tool can
read. ``NAME`` is the queue name in UTF-8; queue names never contain NUL (they match
``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``), so ``NAME + b"\\x00"`` cannot be a prefix of another
queue's keys, and queue ``q``'s messages never interleave with queue ``q1``'s. Integers are
8 bytes big-endian, so byte order is numeric order and a queue's messages read back in seq order.

=======================================  ===============================================
key                                      value
=======================================  ===============================================
``b"m" NAME b"\\x00" SEQ``               ``ID`` (16 bytes) ``CREATED_AT`` (8, unix ms) data
``b"c" NAME``                            acked: every seq <= acked is acknowledged (8)
``b"e" NAME``                            epoch (8)
``b"k" NAME b"\\x00" KEY``               seq stored under that idempotency key (8);
                                         ``KEY`` is the producer's key in UTF-8
``b"q" NAME``                            ``b""``: the registry of queues, written by every
                                         batch that mentions the queue
=======================================  ===============================================

Messages are never deleted, so any range of a queue can be read back (for replay); reads seek
to a key and iterate, and :meth:`RocksStore.recover` finds a queue's last seq with one reverse seek,
so neither depends on how many messages a queue holds.
"""

from __future__ import annotations

import os
from typing import Final

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

from jackrabbit_core.config import Budget
from jackrabbit_core.exceptions import InvalidState, StoreError
from jackrabbit_core.records import StoredMessage
from jackrabbit_core.storage import Batch, QueueRecord

__all__ = ["RocksStore"]

_MIB: Final = 1024 * 1024

_MESSAGE: Final = b"m"
_CURSOR: Final = b"c"
_EPOCH: Final = b"e"
_KEY: Final = b"k"
_QUEUE: Final = b"q"
_QUEUE_END: Final = b"r"  # the exclusive upper bound of the registry's keys
_SEP: Final = b"\x00"
#: One past the separator: ``NAME + _SEP_END`` is the exclusive upper bound of ``NAME + _SEP...``.
_SEP_END: Final = b"\x01"

_ID_LEN: Final = 16
_HEADER_LEN: Final = _ID_LEN + 8
_MAX_U64: Final = (1 << 64) - 1
_LAST_SEQ_BYTES: Final = _MAX_U64.to_bytes(8, "big")


def _name(queue: str) -> bytes:
    """The queue name as it appears in keys; a NUL would break the key layout."""
    name = queue.encode()
    if _SEP in name:
        raise InvalidState(f"queue name contains NUL: {queue!r}")
    return name


def _u64(value: int, what: str) -> bytes:
    """``value`` as 8 bytes big-endian; out of range is a bug in the caller."""
    if not 0 <= value <= _MAX_U64:
        raise InvalidState(f"{what} out of range 0..2**64-1: {value!r}")
    return value.to_bytes(8, "big")


def _message_value(message: StoredMessage) -> bytes:
    if len(message.id) != _ID_LEN:
        raise InvalidState(f"message id must be {_ID_LEN} bytes, got {len(message.id)}")
    return message.id + _u64(message.created_at, "created_at") + message.data


def _decode_message(seq: int, value: bytes) -> StoredMessage:
    if len(value) < _HEADER_LEN:
        raise StoreError(f"corrupt message record (seq {seq}, {len(value)} bytes)")
    return StoredMessage(
        seq=seq,
        id=value[:_ID_LEN],
        created_at=int.from_bytes(value[_ID_LEN:_HEADER_LEN], "big"),
        data=value[_HEADER_LEN:],
    )


def _decode_u64(value: bytes, what: str) -> int:
    if len(value) != 8:
        raise StoreError(f"corrupt {what} record ({len(value)} bytes instead of 8)")
    return int.from_bytes(value, "big")


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line, for messages a user reads in a terminal or a log."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _options(budget: Budget) -> Options:
    """RocksDB options for an append-mostly log, keeping the store's memory to the budget's
    ``write_buffers`` and ``block_cache`` shares (about 20 MB at the default 64 MiB).

    Measured with a million 100-byte messages written flat out and read back: the process peaked
    at about 47 MB RSS, of which 25 MB is Python with ``rocksdict`` loaded (16 MiB buffers, an
    8 MiB cache and filters on every level peaked near 78 MB). The memtables share a 16 MiB
    budget instead of two 64 MiB buffers (an 8 MiB write buffer still absorbs some 50,000 small
    messages between flushes). Index and filter blocks live in a 4 MiB block cache instead of
    growing with the number of table files, and 16 KiB data blocks keep the index small enough
    to stay cached. Bloom filters make the lookup of a new idempotency key cheap, but none is
    built for the last level: building it in a large compaction cost about 15 MB, and a miss
    there is one index search and one block read (under 10 us measured).
    """
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(budget.write_buffer)
    opts.set_max_write_buffer_number(2)
    opts.set_db_write_buffer_size(budget.write_buffers)
    opts.set_compression_type(DBCompressionType.lz4())
    opts.set_level_compaction_dynamic_level_bytes(True)
    opts.set_optimize_filters_for_hits(True)
    # Smooth out table-file writeback instead of one large fsync per file.
    opts.set_bytes_per_sync(_MIB)
    opts.set_max_open_files(512)
    # RocksDB's own info LOG: keep a few small files, not one per start forever.
    opts.set_keep_log_file_num(4)
    opts.set_max_log_file_size(4 * _MIB)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(budget.block_cache))
    table.set_block_size(16 * 1024)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_bloom_filter(10, False)  # a full filter per file, not one per block
    opts.set_block_based_table_factory(table)
    return opts


def _open_error(path: str, exc: BaseException) -> StoreError:
    """A one-line message for a failed open that a user can act on."""
    text = _one_line(exc)
    lowered = text.lower()
    if "lock" in lowered:
        if "current process" in lowered:
            reason = "it is already open in this process"
        else:
            reason = "another process has it open (its LOCK file is held)"
    elif lowered.startswith("corruption"):
        reason = f"the database is corrupt: {text}"
    else:
        reason = text
    return StoreError(f"cannot open the store at {path!r}: {reason}")


def make_private_dir(path: str) -> None:
    """Make directory ``path`` (and its parents) unless it exists; a new one is 0700.

    Messages are stored in the clear, so only their user may enter the directory, whatever
    the umask (``makedirs`` filters its mode through it, hence the ``chmod``). The files
    RocksDB creates in it get their mode from the umask, which the server programs set to 077
    (``jackrabbit_host.files``). An existing directory keeps the mode its owner gave it.
    """
    if os.path.isdir(path):
        return
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


class RocksStore:
    """One RocksDB directory holding every queue (see the module docstring for the layout).

    Open it with :meth:`open`. :meth:`write` is for the shell's writer thread; the read methods
    may run concurrently on another thread. Close it once the writer thread has stopped.
    """

    __slots__ = ("_db", "_fsync", "_path", "_write_options")

    #: A read takes microseconds: the shells answer it where the core asks (``Store``).
    answers_at_once = True

    def __init__(self, db: Rdict, path: str, fsync: bool) -> None:
        """Wrap an open database; use :meth:`open` instead."""
        self._db: Rdict | None = db
        self._path = path
        self._fsync = fsync
        self._write_options = WriteOptions()  # sync stays False: see write()

    @classmethod
    def open(cls, path: str, *, fsync: bool, budget: Budget | None = None) -> RocksStore:
        """Open (creating if needed) the store in directory ``path``.

        With ``fsync`` every :meth:`write` is durable on return. Its memory is the store's
        share of ``budget`` (default: the default ``--memory-budget``). Raises ``StoreError`` with a
        one-line message when the directory cannot be created or written, is locked by another
        process (or already open in this one), holds a corrupt database, or is a file. The
        directory, if it makes it, is private to the user (0700; see ``make_private_dir``).
        """
        try:
            make_private_dir(path)
        except FileExistsError:
            raise StoreError(
                f"cannot open the store at {path!r}: it is a file, not a directory"
            ) from None
        except NotADirectoryError:
            raise StoreError(
                f"cannot open the store at {path!r}: part of the path is a file, not a directory"
            ) from None
        except OSError as exc:
            reason = exc.strerror or _one_line(exc)
            raise StoreError(f"cannot open the store at {path!r}: {reason}") from None
        if not os.path.isdir(path):
            raise StoreError(f"cannot open the store at {path!r}: it is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise StoreError(f"cannot open the store at {path!r}: the directory is not writable")
        try:
            db = Rdict(path, _options(budget or Budget.of()))
        except Exception as exc:
            raise _open_error(path, exc) from exc
        return cls(db, path, fsync)

    def _live(self) -> Rdict:
        db = self._db
        if db is None:
            raise StoreError(f"the store at {self._path!r} is closed")
        return db

    def _get(self, db: Rdict, key: bytes) -> bytes | None:
        value = db.get(key)
        if value is None or isinstance(value, bytes):
            return value
        raise StoreError(f"unexpected {type(value).__name__} value in the store")

    def _failure(self, action: str, exc: BaseException) -> StoreError:
        return StoreError(f"cannot {action} the store at {self._path!r}: {_one_line(exc)}")

    def recover(self) -> list[QueueRecord]:
        """Every queue ever written, with its last seq, cursor and epoch, sorted by name.

        Called once at start-up. The cost is a few seeks per queue, however many messages a
        queue holds: the last seq is found by one reverse seek from the end of its range.
        """
        db = self._live()
        try:
            names: list[bytes] = []
            bounds = ReadOptions()
            bounds.set_iterate_upper_bound(_QUEUE_END)
            for key in db.keys(from_key=_QUEUE, read_opt=bounds):
                if not isinstance(key, bytes):
                    raise StoreError(f"unexpected {type(key).__name__} key in the store")
                names.append(key[len(_QUEUE) :])
            records = []
            it = db.iter()
            for name in names:
                prefix = _MESSAGE + name + _SEP
                it.seek_for_prev(prefix + _LAST_SEQ_BYTES)
                last_seq = 0
                if it.valid():
                    key = it.key()
                    if isinstance(key, bytes) and key.startswith(prefix):
                        last_seq = int.from_bytes(key[len(prefix) :], "big")
                it.status()
                acked = self._get(db, _CURSOR + name)
                epoch = self._get(db, _EPOCH + name)
                records.append(
                    QueueRecord(
                        name=name.decode(),
                        last_seq=last_seq,
                        acked=0 if acked is None else _decode_u64(acked, "cursor"),
                        epoch=0 if epoch is None else _decode_u64(epoch, "epoch"),
                    )
                )
            del it
        except StoreError:
            raise
        except Exception as exc:
            raise self._failure("recover from", exc) from exc
        return records

    def read(self, queue: str, first: int, limit: int, max_bytes: int) -> list[StoredMessage]:
        """Consecutive stored messages of ``queue`` from ``first`` on (``Store.read``).

        Only the messages returned are loaded, however long the queue.
        """
        if limit <= 0 or not 1 <= first <= _MAX_U64:
            return []
        name = _name(queue)
        prefix = _MESSAGE + name + _SEP
        db = self._live()
        out: list[StoredMessage] = []
        expected = first
        total = 0
        try:
            bounds = ReadOptions()
            bounds.set_iterate_upper_bound(_MESSAGE + name + _SEP_END)
            for key, value in db.items(from_key=prefix + first.to_bytes(8, "big"), read_opt=bounds):
                if not (isinstance(key, bytes) and isinstance(value, bytes)):
                    raise StoreError("unexpected non-bytes entry in the store")
                seq = int.from_bytes(key[len(prefix) :], "big")
                if seq != expected:
                    break
                message = _decode_message(seq, value)
                out.append(message)
                total += len(message.data)
                if len(out) >= limit or total >= max_bytes:
                    break
                expected += 1
        except StoreError:
            raise
        except Exception as exc:
            raise self._failure("read", exc) from exc
        return out

    def find_key(self, queue: str, key: str) -> StoredMessage | None:
        """The message stored under idempotency ``key`` in ``queue``, or None
        (``Store.find_key``): the key's index entry, then the message it names."""
        name = _name(queue)
        db = self._live()
        try:
            seq = self._get(db, _KEY + name + _SEP + key.encode())
            if seq is None:
                return None
            value = self._get(db, _MESSAGE + name + _SEP + seq)
        except StoreError:
            raise
        except Exception as exc:
            raise self._failure("read", exc) from exc
        if value is None:
            raise StoreError(f"idempotency key {key!r} of queue {queue!r} names a missing message")
        return _decode_message(_decode_u64(seq, "idempotency key"), value)

    def write(self, batch: Batch) -> None:
        """Write ``batch`` atomically; with ``fsync`` it is durable when this returns.

        Called from the shell's writer thread; reads may run concurrently on another thread.
        Raises ``StoreError`` if RocksDB fails: the batch may then be partly visible to reads
        (written but not synced). The shell reports it with ``Server.batch_failed``, which
        refuses the adds as ``unavailable`` (maybe stored: retry with an idempotency key).
        """
        if not batch:
            return
        db = self._live()
        wb = WriteBatch(raw_mode=True)  # a WriteBatch is consumed by one write: one per call
        put = wb.put
        registry: dict[str, bytes] = {}
        for queue, message, key in batch.messages:
            name = registry.get(queue)
            if name is None:
                name = registry[queue] = _name(queue)
            seq = _u64(message.seq, "seq")
            put(_MESSAGE + name + _SEP + seq, _message_value(message))
            if key is not None:
                put(_KEY + name + _SEP + key.encode(), seq)
        for queue, acked in batch.cursors.items():
            name = registry[queue] = _name(queue)
            put(_CURSOR + name, _u64(acked, "acked"))
        for queue, epoch in batch.epochs.items():
            name = registry[queue] = _name(queue)
            put(_EPOCH + name, _u64(epoch, "epoch"))
        for name in registry.values():
            put(_QUEUE + name, b"")
        try:
            # Unsynced write then flush_wal(sync): the fsync runs without the GIL, so the event
            # loop thread keeps running while the disk catches up (see the module docstring).
            db.write(wb, self._write_options)
            if self._fsync:
                db.flush_wal(True)
        except Exception as exc:
            raise self._failure("write to", exc) from exc

    def close(self) -> None:
        """Flush and close the database; calling it again does nothing.

        Call it after the writer thread has stopped: a write running concurrently would fail.
        """
        db, self._db = self._db, None
        if db is None:
            return
        try:
            db.close()
        except Exception as exc:
            raise self._failure("close", exc) from exc
