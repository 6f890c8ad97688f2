"""How fast ``rocksdict`` takes 100-byte values in synced batches, raw (no server)."""

from __future__ import annotations

import os
import tempfile
import time

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from . import Limit

VALUE = b"v" * 100


def _run(db: Rdict, batch: int, seconds: float, sync: bool, flush_wal: bool,
         start_key: int) -> tuple[int, float]:
    opts = WriteOptions()
    opts.sync = sync
    written = 0
    key = start_key
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline and written < 5_000_000:
        wb = WriteBatch(raw_mode=True)
        for _ in range(batch):
            wb.put(key.to_bytes(8, "big"), VALUE)
            key += 1
        db.write(wb, opts)
        if flush_wal:
            db.flush_wal(True)
        written += batch
    return written, time.perf_counter() - t0


def measure(seconds: float, where: str | None = None) -> list[Limit]:
    """Synced batches of 1, 100 and 1,000 puts, and 1,000 unsynced + ``flush_wal(True)``."""
    out: list[Limit] = []
    with tempfile.TemporaryDirectory(prefix="jr-bench-rocks-", dir=where) as tmp:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        db = Rdict(os.path.join(tmp, "db"), opts)
        try:
            key = 0
            cases = [(1, True, False), (100, True, False), (1000, True, False),
                     (1000, False, True)]
            for batch, sync, flush in cases:
                n, secs = _run(db, batch, seconds, sync, flush, key)
                key += n
                how = "synced write" if sync else "write + flush_wal(sync)"
                out.append(Limit(
                    f"rocksdict, batches of {batch:,}, {how}", n / secs, "puts/s",
                    f"{n / batch / secs:,.0f} batches/s",
                    compare=batch == 1000 and sync,
                ))
        finally:
            db.close()
    return out
