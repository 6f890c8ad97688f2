"""Start-up steps both shells take before they serve."""

from __future__ import annotations

from jackrabbit_core.config import Config
from jackrabbit_core.devcerts import ensure_dev_certificates

from .rocks import RocksStore


def open_store(config: Config) -> RocksStore:
    """The start-up steps that touch the disk, in the order both shells need them: make the
    ``--dev`` certificates if asked, then open the database. Raises ``ConfigError`` or
    ``StoreError`` with a one-line message."""
    if config.dev:
        ensure_dev_certificates(config.db)
    return RocksStore.open(config.db, fsync=config.fsync == "always")
