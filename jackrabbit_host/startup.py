"""Start-up steps both shells take before they serve."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from jackrabbit_core import Authenticator, Server, Store
from jackrabbit_core.access import AccessPolicy
from jackrabbit_core.config import Config
from jackrabbit_core.exceptions import ConfigError

from . import relay
from .access import AuditLog
from .ids import uuid4_bytes_factory
from .rocks import RocksStore
from .speedups import c_unmasker

if TYPE_CHECKING:  # psycopg is an optional extra: imported only in cluster mode
    from .cluster import ClusterNode

#: What a node of a cluster needs that the base install does not have.
CLUSTER_EXTRA = "--cluster needs psycopg: pip install 'jackrabbit[cluster]'"


def open_store(config: Config) -> Store:
    """Open the database: the RocksDB directory, or with ``--cluster`` the PostgreSQL
    database. Raises ``StoreError`` or ``ConfigError`` with a one-line message.

    The shells call it after loading the certificate (``jackrabbit_host.tls``), which for
    ``--dev`` makes it first: a certificate error then leaves no new directory behind.
    """
    if config.cluster is None:
        return RocksStore.open(config.db, fsync=config.fsync == "always", budget=config.budget)
    try:
        from .postgres import PgStore
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "psycopg":
            raise ConfigError(CLUSTER_EXTRA) from None
        raise
    return PgStore.open(config.cluster)


def cluster_node(config: Config, store: Store, port: int) -> ClusterNode | None:
    """With ``--cluster``, this node's membership, not yet registered (``ClusterNode.join``
    does that, then ``start``); None alone. ``port`` is the port it listens on, for the
    default name (``HOST:PORT``) and address (``wss://HOST:PORT``)."""
    if config.cluster is None:
        return None
    from .cluster import ClusterNode, new_node
    from .postgres import PgStore

    if not isinstance(store, PgStore):
        raise ConfigError("--cluster needs the PostgreSQL store")
    host = f"[{config.host}]" if ":" in config.host else config.host
    advertise = config.advertise
    if advertise is None:
        if config.host in _WILDCARDS:
            raise ConfigError(f"--cluster with --host {config.host} needs --advertise")
        advertise = f"wss://{host}:{port}"
    name = config.node_name or f"{host}:{port}"
    return ClusterNode(store, new_node(name, advertise), config.lease, relay.link_context(config))


def door(config: Config, store: Store) -> Authenticator | None:
    """The authentication hook of a node of a cluster: an upgrade relayed by another node
    must carry a valid proof (``jackrabbit_host.relay.gate``). None alone."""
    secret = getattr(store, "secret", None)
    if config.cluster is None or not isinstance(secret, bytes):
        return None
    return relay.gate(secret, time.time)


#: Addresses that listen everywhere, which other nodes cannot dial.
_WILDCARDS: Final = ("0.0.0.0", "::", "")


def core_server(
    config: Config, store: Store, now: float, access: AccessPolicy | None = None
) -> Server:
    """The core, started from what ``store`` recovered, with what both shells give it: UUID4
    message ids, the wall clock in milliseconds for ``created_at``, the C unmasker when it is
    installed (``speedups``), the ``--auth`` policy (``access.load_access``) and the log of
    its refusals; in cluster mode, the check of relays' proofs (``door``)."""
    return Server(
        config,
        store.recover(),
        new_id=uuid4_bytes_factory(),
        clock_ms=lambda: time.time_ns() // 1_000_000,
        now=now,
        access=access,
        audit=AuditLog(),
        unmasker=c_unmasker(),
        authenticate=door(config, store),
    )
