"""Slowing down an address that keeps presenting invalid credentials (protocol §11.7).

A token of 128 random bits cannot be guessed; this makes trying cost time anyway, for the
address trying and for nobody else. Each address's invalid attempts are counted; past
``FREE_FAILURES`` of them, every request from it (right or wrong) is answered only after a
delay that doubles with each further failure, up to ``MAX_DELAY``, and at most ``MAX_HELD`` of
its requests wait at once (more are answered ``429`` at once). An address is forgiven
``FORGIVE_AFTER`` seconds after its last failure.

The table is bounded: ``MAX_ADDRESSES`` entries, the one whose last failure is oldest dropped
first, so an attacker with many addresses can make the server forget some offenders sooner,
never hold more. IPv6 peers are counted per /64, the block one host usually has.
"""

from __future__ import annotations

import ipaddress
from typing import Final

#: Invalid attempts an address may make before it is slowed down.
FREE_FAILURES: Final = 5
#: The delay after the first failure past the free ones, in seconds; it doubles after each.
FIRST_DELAY: Final = 0.25
#: The longest delay, in seconds: shorter than the handshake timeout (protocol §9).
MAX_DELAY: Final = 5.0
#: Seconds without a failure after which an address starts afresh.
FORGIVE_AFTER: Final = 600.0
#: Addresses remembered at most.
MAX_ADDRESSES: Final = 10_000
#: Requests of one slowed address that may wait for their answer at once.
MAX_HELD: Final = 4


def address_key(address: str) -> str:
    """What failures are counted under: the address, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Penalties:
    """Invalid attempts per address, and the delay they earn (see the module docstring)."""

    __slots__ = ("_failures",)

    def __init__(self) -> None:
        #: address key -> (failures, time of the last one), oldest last failure first.
        self._failures: dict[str, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._failures)

    def failed(self, address: str, now: float) -> None:
        """``address`` presented invalid credentials at ``now``."""
        key = address_key(address)
        count = self._current(key, now)
        self._failures.pop(key, None)  # re-inserted last: the table stays in time order
        if len(self._failures) >= MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]
        self._failures[key] = (count + 1, now)

    def delay(self, address: str, now: float) -> float:
        """How long a request from ``address`` must wait before it is answered (0: none)."""
        if not self._failures:
            return 0.0
        excess = self._current(address_key(address), now) - FREE_FAILURES
        if excess < 0:
            return 0.0
        return min(MAX_DELAY, FIRST_DELAY * 2.0 ** min(excess, 16))

    def _current(self, key: str, now: float) -> int:
        entry = self._failures.get(key)
        if entry is None:
            return 0
        count, last = entry
        if now - last >= FORGIVE_AFTER:
            del self._failures[key]
            return 0
        return count
