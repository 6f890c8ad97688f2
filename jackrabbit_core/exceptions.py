"""Exceptions raised by the sans-I/O core.

The tree::

    JackrabbitError
    ├── ConfigError          the command line or a setting is wrong (the shell prints it, exits 2)
    ├── StoreError           the database could not be opened, read or written
    └── InvalidState         the *shell* misused the core (also an ``AssertionError``)

What a *peer* does wrong never raises out of the core: a malformed request becomes an ``error``
event, an HTTP status or a WebSocket close with a code and a reason (``docs/protocol.md`` §5).
Only a bug in the calling shell raises ``InvalidState``, the way ``h11`` separates
``LocalProtocolError`` from ``RemoteProtocolError``.
"""

from __future__ import annotations


class JackrabbitError(Exception):
    """Base class of every exception the core raises on purpose."""


class ConfigError(JackrabbitError):
    """A command-line flag or setting is invalid; the message is one line for the user."""


class StoreError(JackrabbitError):
    """The RocksDB store failed: could not open, read or write (the message says which)."""


class InvalidState(JackrabbitError, AssertionError):
    """The shell called the core in a way its documented API forbids."""
