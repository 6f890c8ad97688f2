"""Error codes of v1 ``error`` events and the WebSocket close codes the server uses.

``docs/protocol.md`` §5 describes each one; these names are part of the wire contract.
"""

from __future__ import annotations

from typing import Final, Literal

ErrorCode = Literal[
    "bad_request",
    "unknown_command",
    "too_large",
    "not_subscribed",
    "not_active",
    "bad_ack",
    "no_standby",
    "unavailable",
    "forbidden",
]

BAD_REQUEST: Final = "bad_request"
UNKNOWN_COMMAND: Final = "unknown_command"
TOO_LARGE: Final = "too_large"
NOT_SUBSCRIBED: Final = "not_subscribed"
NOT_ACTIVE: Final = "not_active"
BAD_ACK: Final = "bad_ack"
NO_STANDBY: Final = "no_standby"
#: The store failed to write: the add was not stored and may be retried.
UNAVAILABLE: Final = "unavailable"
#: The connection's principal lacks the grant the request needs (protocol §11.5).
FORBIDDEN: Final = "forbidden"

# WebSocket close codes (RFC 6455 §7.4.1), protocol §2.4.
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_INVALID_PAYLOAD: Final = 1007
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011
#: The queue moved to another node of the cluster: reconnect (protocol §11.4).
CLOSE_SERVICE_RESTART: Final = 1012
