"""jackrabbit's sans-I/O core: protocol, queues, failover and the store, with no sockets,
threads or clock reads. Both runtime shells drive ``Server`` (and clients ``ClientProtocol``);
see ``server.py`` for the calling contract and ``docs/protocol.md`` for the rules.
"""

from .access import AccessPolicy, Caller, Denial, Grant, Principal
from .actions import (
    Action,
    CloseTransport,
    ClusterStatus,
    FindKey,
    Locate,
    PauseReading,
    ReadMessages,
    Relay,
    ResumeReading,
    Send,
    WatchFlush,
    WriteBatch,
)
from .client import ClientProtocol
from .config import Config
from .exceptions import ConfigError, InvalidState, JackrabbitError, StoreError
from .server import Authenticator, Refusal, Server
from .storage import Batch, QueueRecord, Store

__all__ = [
    "AccessPolicy",
    "Action",
    "Authenticator",
    "Batch",
    "Caller",
    "ClientProtocol",
    "CloseTransport",
    "ClusterStatus",
    "Config",
    "ConfigError",
    "Denial",
    "FindKey",
    "Grant",
    "InvalidState",
    "JackrabbitError",
    "Locate",
    "PauseReading",
    "Principal",
    "QueueRecord",
    "ReadMessages",
    "Refusal",
    "Relay",
    "ResumeReading",
    "Send",
    "Server",
    "Store",
    "StoreError",
    "WatchFlush",
    "WriteBatch",
]
