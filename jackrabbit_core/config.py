"""The server's settings, as the core reads them (the command line that fills them in is
``jackrabbit_host.options``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

#: The package's version (``pyproject.toml`` reads it from here; ``--version`` prints it).
__version__ = "0.1.0"

FsyncPolicy = Literal["always", "never"]

MIB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a server needs to know before it starts. Times are in seconds."""

    host: str = "0.0.0.0"
    port: int = 443
    db: str = "tmp"
    chain_cert: str = "certs/chain.pem"
    private_key: str = "certs/private_key.pem"
    dev: bool = False
    fsync: FsyncPolicy = "always"
    max_message_bytes: int = MIB
    heartbeat: float = 5.0
    max_connections: int = 1024
    handover_timeout: float = 30.0
    handshake_timeout: float = 10.0
    #: Unconfirmed adds one connection may have before the shell stops reading from it.
    max_pending_adds: int = 10_000
    #: ... and the bytes of data in them (whichever limit comes first).
    max_pending_bytes: int = 4 * MIB
    #: The ``--auth`` file (protocol §11); None: anyone may do anything.
    auth: str | None = None
    #: ``--client-ca``: the CA that client certificates are verified against.
    client_ca: str | None = None
    #: ``--allow-origin``: the web origins whose pages may open WebSockets; empty: any.
    allow_origins: tuple[str, ...] = ()
    #: Cluster mode (protocol §10): the PostgreSQL connection string replacing the embedded
    #: store, or None. It may hold a password: never shown (``repr``), logged or served.
    cluster: str | None = field(default=None, repr=False)
    #: This node's name in the cluster (``HOST:PORT`` when not given).
    node_name: str | None = None
    #: How the other nodes reach this one, ``wss://HOST:PORT`` (``wss://`` + the listening
    #: address when not given).
    advertise: str | None = None
    #: Seconds a node holds its queues without renewing its lease.
    lease: float = 5.0

    @property
    def clustered(self) -> bool:
        """Whether this node is one of a cluster (``--cluster``)."""
        return self.cluster is not None

    @property
    def dead_after(self) -> float:
        """How long a silent peer is tolerated: two heartbeat intervals (protocol §9)."""
        return 2 * self.heartbeat
