"""The server's settings, as the core reads them (the command line that fills them in is
``jackrabbit_host.options``), and how the memory budget is split (``Budget``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

#: The package's version (``pyproject.toml`` reads it from here; ``--version`` prints it).
__version__ = "0.1.0"

FsyncPolicy = Literal["always", "never"]

MIB: Final = 1024 * 1024
#: The default ``--memory-budget``: the shares below are what the server used before there was
#: a budget, measured to keep full throughput on both shells.
DEFAULT_MEMORY_BUDGET: Final = 64 * MIB
#: The smallest budget accepted: below it the shares get smaller than one large message.
MIN_MEMORY_BUDGET: Final = 8 * MIB


@dataclass(frozen=True, slots=True)
class Budget:
    """``--memory-budget`` split into every limit on the data a server holds in flight.

    Past the fixed cost of a process (CPython, OpenSSL, RocksDB's code: about 34 MiB), a
    server's memory follows how much data it may hold at once; each limit on that is a share
    of one budget, so that one number sets them all (README, "Command line"):

    ==================  ======  =========  ==============================================
    share               of it   at 64 MiB  what it bounds
    ==================  ======  =========  ==============================================
    ``write_buffers``   1/4     16 MiB     RocksDB's memtables, all together (two of
                                           ``write_buffer``, 1/8)
    ``block_cache``     1/16    4 MiB      RocksDB's block cache (index, filters, data)
    ``read_bytes``      1/8     8 MiB      data in one read of a backlog from the store
    ``pending_bytes``   1/16    4 MiB      data of one producer's adds not yet durable
                                           (then it is no longer read, protocol §7.1)
    ``pump_bytes``      1/16    4 MiB      data one pump hands a consumer's transport
                                           before its write buffer may push back
    ``high_water``      1/64    1 MiB      bytes queued for one connection past which it
                                           is not writable (again under ``low_water``,
                                           1/256: 256 KiB)
    ``read_stop``       1/4     16 MiB     bytes queued for one connection past which the
                                           shell reads nothing more from it
    ==================  ======  =========  ==============================================

    The store's shares and one read are held once; the others are per connection, and only
    a connection that is busy that way holds them (an idle one holds none). So the peak is
    about the store's 5/16 plus one read, plus for each producer at full speed 1/16 and each
    consumer at full speed 1/16 + 1/64; ``read_stop`` only bounds a peer that never reads.
    """

    total: int
    write_buffers: int
    #: One RocksDB memtable: two fit in ``write_buffers``.
    write_buffer: int
    block_cache: int
    read_bytes: int
    pending_bytes: int
    pump_bytes: int
    high_water: int
    low_water: int
    read_stop: int

    @classmethod
    def of(cls, total: int = DEFAULT_MEMORY_BUDGET) -> Budget:
        """``total`` bytes split as the table above says."""
        return cls(
            total=total,
            write_buffers=total // 4,
            write_buffer=total // 8,
            block_cache=total // 16,
            read_bytes=total // 8,
            pending_bytes=total // 16,
            pump_bytes=total // 16,
            high_water=total // 64,
            low_water=total // 256,
            read_stop=total // 4,
        )


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
    #: Unconfirmed adds one connection may have before the shell stops reading from it (their
    #: bytes are limited by the budget's ``pending_bytes``, whichever limit comes first).
    max_pending_adds: int = 10_000
    #: Bytes of data in flight, split into every limit on it (``Budget``).
    memory_budget: int = DEFAULT_MEMORY_BUDGET
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

    @property
    def budget(self) -> Budget:
        """``memory_budget`` split into its shares."""
        return Budget.of(self.memory_budget)
