"""Start-up steps both shells take before they serve."""

from __future__ import annotations

import time

from jackrabbit_core import Server, Store
from jackrabbit_core.access import AccessPolicy
from jackrabbit_core.config import Config

from .access import AuditLog
from .ids import uuid4_bytes_factory
from .rocks import RocksStore
from .speedups import c_unmasker


def open_store(config: Config) -> RocksStore:
    """Open the database; raises ``StoreError`` with a one-line message.

    The shells call it after loading the certificate (``jackrabbit_host.tls``), which for
    ``--dev`` makes it first: a certificate error then leaves no new directory behind.
    """
    return RocksStore.open(config.db, fsync=config.fsync == "always")


def core_server(
    config: Config, store: Store, now: float, access: AccessPolicy | None = None
) -> Server:
    """The core, started from what ``store`` recovered, with what both shells give it: UUID4
    message ids, the wall clock in milliseconds for ``created_at``, the C unmasker when it is
    installed (``speedups``), the ``--auth`` policy (``access.load_access``) and the log of
    its refusals."""
    return Server(
        config,
        store.recover(),
        new_id=uuid4_bytes_factory(),
        clock_ms=lambda: time.time_ns() // 1_000_000,
        now=now,
        access=access,
        audit=AuditLog(),
        unmasker=c_unmasker(),
    )
