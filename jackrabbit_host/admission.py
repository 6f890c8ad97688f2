"""Who gets in before TLS: the one admission policy of both shells, without I/O.

Before its TLS handshake is done a peer has proved nothing, so what it can make the server hold
is bounded here (protocol §9); the shell owns the sockets and asks ``Door`` what to do:

- Every connection counts from its accept on: the handshakes in progress plus the connections
  past them (``held``) never exceed ``slots`` (``--max-connections`` plus
  ``limits.SPARE_SLOTS``). When no handshake is in progress and every slot is taken, a new
  connection is closed at once (``refuse``).
- At most ``limits.MAX_HANDSHAKES`` handshakes are in progress. Before taking one more
  connection over either bound, the shell makes room (``make_room``): the oldest handshake
  whose peer has sent nothing is dropped (after one last look at its socket), else the one
  that has waited longest for its peer if that is over ``limits.PEER_STALL``. Silent sockets,
  however many, thus cannot push out a client that is busy handshaking; and if every
  handshake is moving, newcomers wait in the kernel's backlog, which costs us nothing, until
  one is done or stalls.
- A handshake not done ``timeout`` seconds after its accept is dropped (``expired``).
- When ``accept`` fails for want of file descriptors, the oldest handshake is dropped to free
  one; on any other failure accepting pauses for ``limits.ACCEPT_PAUSE``.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from .limits import ACCEPT_PAUSE, LOG_EVERY, MAX_HANDSHAKES, PEER_STALL

__all__ = ["Door", "Handshake"]


class Handshake(Protocol):
    """A shell's connection in its TLS handshake."""

    #: When its peer last sent bytes (the shell's clock); None while it has sent nothing.
    heard_at: float | None


H = TypeVar("H", bound=Handshake)


class Door(Generic[H]):
    """The handshakes in progress, in accept order, and the rules above. ``now`` is the
    shell's monotonic clock; the shell drops and refuses sockets, the door says which."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        slots: int,
        timeout: float,
        limit: int = MAX_HANDSHAKES,
        stall: float = PEER_STALL,
    ) -> None:
        self._log = log
        self.slots = slots
        self._timeout = timeout
        self._limit = limit
        self._stall = stall
        #: Each handshake in progress with its deadline, in accept order (so in deadline order).
        self._pending: dict[H, float] = {}
        self._refused = 0
        self._refusals_logged = -LOG_EVERY
        self._failures_logged = -LOG_EVERY

    def __len__(self) -> int:
        """Handshakes in progress."""
        return len(self._pending)

    def handshakes(self) -> list[H]:
        """The handshakes in progress, oldest first."""
        return list(self._pending)

    def add(self, handshake: H, now: float) -> None:
        """A connection was accepted; its handshake begins."""
        self._pending[handshake] = now + self._timeout

    def discard(self, handshake: H) -> None:
        """Its handshake is done, or it was dropped."""
        self._pending.pop(handshake, None)

    def make_room(
        self, held: int, now: float, look: Callable[[H], None], drop: Callable[[H], None]
    ) -> float | None:
        """Make room for one more connection, given ``held`` connections past their handshake.

        ``drop(h)`` closes a handshake (and ``discard``\\ s it); ``look(h)`` reads what a silent
        one's peer may have sent meanwhile. Returns None when the next connection may be
        accepted (``refuse`` it if every slot is taken), or the time until which newcomers
        should wait in the backlog (or until a handshake ends, whichever is first).
        """
        pending = self._pending
        while pending and len(pending) >= min(self._limit, self.slots - held):
            silent = next((h for h in pending if h.heard_at is None), None)
            if silent is not None:
                look(silent)
                if silent in pending and silent.heard_at is None:
                    drop(silent)
                continue
            waiting = min(pending, key=_heard_at)
            until = _heard_at(waiting) + self._stall
            if now < until:
                return until
            drop(waiting)
        return None

    def full(self, held: int) -> bool:
        """Whether a connection accepted now must be refused: every slot is taken."""
        return len(self._pending) + held >= self.slots

    def refuse(self, now: float) -> None:
        """A connection was refused (closed at once): say so now and then, not each time."""
        self._refused += 1
        if now - self._refusals_logged >= LOG_EVERY:
            self._log.warning(
                "refused %d connection(s): all %d slots are taken", self._refused, self.slots
            )
            self._refusals_logged, self._refused = now, 0

    def expired(self, now: float) -> list[H]:
        """The handshakes past their deadline, forgotten (the shell drops them)."""
        pending = self._pending
        late: list[H] = []
        for handshake, deadline in pending.items():
            if deadline > now:
                break
            late.append(handshake)
        for handshake in late:
            del pending[handshake]
        return late

    def next_deadline(self) -> float | None:
        """When the oldest handshake runs out of time (None: none in progress)."""
        return next(iter(self._pending.values()), None)

    def accept_failed(self, exc: OSError, now: float) -> H | float:
        """``accept`` raised ``exc``: the handshake to drop to free a file descriptor (then
        accept again), or the time until which accepting pauses."""
        if exc.errno in (errno.EMFILE, errno.ENFILE) and self._pending:
            return next(iter(self._pending))
        if now - self._failures_logged >= LOG_EVERY:
            self._log.warning("accept failed: %s", exc)
            self._failures_logged = now
        return now + ACCEPT_PAUSE


def _heard_at(handshake: Handshake) -> float:
    heard_at = handshake.heard_at
    assert heard_at is not None
    return heard_at
