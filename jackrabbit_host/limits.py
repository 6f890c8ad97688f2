"""Shell policy: the limits and timeouts both shells apply around the core, in one place.

The core decides everything about the protocol; what it cannot see (sockets before TLS, the
kernel's buffers, how long to wait for threads or a peer's hang-up) each shell decides with
these numbers, so that the asyncio and the threads shell behave alike (protocol §9). The
limits on data in flight are not here but shares of ``--memory-budget``
(``jackrabbit_core.config.Budget``: ``high_water``, ``low_water``, ``read_stop``).

How each shell reads its sockets is its own (the event loop slices plaintext by time, a
reader thread by size), and is documented where it is done (``jackrabbit_asyncio.link``,
``jackrabbit_threads.server``).
"""

from __future__ import annotations

from typing import Final

from jackrabbit_core.config import Config

# -- who gets in (``jackrabbit_host.admission``) ------------------------------------------------

#: Connections beyond ``--max-connections`` still let through TLS, so the core can answer
#: them HTTP 503 (protocol §1.2) rather than have them dropped without a word.
SPARE_SLOTS: Final = 16
#: TLS handshakes in progress at once (each holds some tens of KB of OpenSSL's state).
MAX_HANDSHAKES: Final = 128
#: Seconds a connection has from its accept to finish TLS (or the whole handshake timeout,
#: protocol §9, if that is shorter): a real client needs a round trip or two.
TLS_TIMEOUT: Final = 5.0
#: Seconds a begun handshake may wait for its peer before a newcomer may take its place.
PEER_STALL: Final = 1.0
#: Connections accepted per wake-up before the handshakes in progress get a turn.
ACCEPT_BATCH: Final = 64
#: Seconds accepting pauses when ``accept`` fails with nothing to free (out of memory, or of
#: file descriptors with no handshake to drop).
ACCEPT_PAUSE: Final = 0.05
#: Pending connections the kernel may queue for us.
BACKLOG: Final = 1024
#: Seconds between two log lines about refused connections or failed accepts.
LOG_EVERY: Final = 10.0

# -- the end of a connection, and of the server -----------------------------------------------

#: Seconds a closed connection may take to send what it holds and see the peer hang up before
#: its socket is closed by force.
CLOSE_TIMEOUT: Final = 5.0
#: Seconds a shutdown waits for clients to leave and the last batch to be written ...
SHUTDOWN_TIMEOUT: Final = 5.0
#: ... and how long, within that, a connection may go without a byte moving either way before
#: it is dropped: a client that reads answers the close at once, one that does not never will.
SHUTDOWN_STALL: Final = 0.5


def tls_timeout(config: Config) -> float:
    """Seconds from accept to the end of TLS: ``TLS_TIMEOUT``, or the handshake timeout if
    that is shorter."""
    return min(TLS_TIMEOUT, config.handshake_timeout)


def slots(config: Config) -> int:
    """Connections held at most, counted from their accept on: ``--max-connections`` plus
    ``SPARE_SLOTS``."""
    return config.max_connections + SPARE_SLOTS
