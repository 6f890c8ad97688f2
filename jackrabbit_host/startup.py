"""Start-up steps both shells take before they serve."""

from __future__ import annotations

from jackrabbit_core.config import Config
from jackrabbit_core.exceptions import ConfigError
from jackrabbit_core.storage import Store

from .rocks import RocksStore

#: What a node of a cluster needs that the base install does not have.
CLUSTER_EXTRA = "--cluster needs psycopg: pip install 'jackrabbit[cluster]'"


def open_store(config: Config) -> Store:
    """Open the database: the RocksDB directory, or with ``--cluster`` the PostgreSQL
    database. Raises ``StoreError`` or ``ConfigError`` with a one-line message.

    The shells call it after loading the certificate (``jackrabbit_host.tls``), which for
    ``--dev`` makes it first: a certificate error then leaves no new directory behind.
    """
    if config.cluster is None:
        return RocksStore.open(config.db, fsync=config.fsync == "always")
    try:
        from .postgres import PgStore
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "psycopg":
            raise ConfigError(CLUSTER_EXTRA) from None
        raise
    return PgStore.open(config.cluster)
