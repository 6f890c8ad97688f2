"""Start-up steps both shells take before they serve."""

from __future__ import annotations

from jackrabbit_core.config import Config

from .rocks import RocksStore


def open_store(config: Config) -> RocksStore:
    """Open the database; raises ``StoreError`` with a one-line message.

    The shells call it after loading the certificate (``jackrabbit_host.tls``), which for
    ``--dev`` makes it first: a certificate error then leaves no new directory behind.
    """
    return RocksStore.open(config.db, fsync=config.fsync == "always")
