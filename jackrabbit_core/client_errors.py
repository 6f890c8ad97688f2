"""What a client's requests raise: one hierarchy for both runtimes' ``Client`` classes.

The tree::

    ClientError                  a request or the connection was refused: ``code``, ``message``
    ├── AccessDenied             ``unauthorized`` (HTTP 401 on the upgrade) or ``forbidden``
    │                            (HTTP 403, or a request the credentials do not allow)
    └── ConnectionLost           ``closed`` or ``refused``: the connection is gone or was never
                                 made (also a ``ConnectionError``)

``jackrabbit_asyncio`` and ``jackrabbit_threads`` re-export these classes, so the same failure
raises the same type whichever runtime runs the client. They are not ``JackrabbitError``\\ s:
those are the server's and the command line's own failures (a bad flag, a broken store), while
these are the answers of a server the client talks to. ``ClientProtocol`` makes them; a
runtime only raises them.
"""

from __future__ import annotations

from typing import Final

#: ``ConnectionLost`` codes: the connection ended, or the server refused the upgrade.
CLOSED: Final = "closed"
REFUSED: Final = "refused"
#: ``AccessDenied`` codes (protocol §1.4): no valid credentials (401), or credentials that do
#: not allow it (403 on the upgrade, the ``forbidden`` error on a request).
UNAUTHORIZED: Final = "unauthorized"
FORBIDDEN: Final = "forbidden"


class ClientError(Exception):
    """A request was refused: ``code`` is the protocol's error code (``not_active``,
    ``no_standby``, ``too_large``...; protocol §5), ``message`` the explanation."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AccessDenied(ClientError):
    """The server refused these credentials (``unauthorized``) or this use of them
    (``forbidden``). Retrying with the same token does not help, so a reconnecting client
    stops when its upgrade is answered 401 or 403."""


class ConnectionLost(ClientError, ConnectionError):
    """The connection is gone (or was never made): ``code`` is ``"closed"`` or ``"refused"``.

    For a pending ``add`` this means *unknown*: the message may or may not be stored (give it
    an idempotency ``key`` to retry safely, protocol §6.8).
    """


def client_error(code: str, message: str) -> ClientError:
    """The exception for an error ``code``: each code has one class, whoever reports it."""
    if code in (CLOSED, REFUSED):
        return ConnectionLost(code, message)
    if code in (UNAUTHORIZED, FORBIDDEN):
        return AccessDenied(code, message)
    return ClientError(code, message)
