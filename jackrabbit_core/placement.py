"""Which queues this node serves: every queue when it runs alone, in a cluster only those it
holds a lease for (protocol §10).

The leases live in the cluster's database, which the host talks to; this part knows only what
the host told it, and asks for the rest as actions. The rules:

1. **Serving.** Alone, a node serves every queue. In a cluster it serves a queue from the host's
   ``adopted`` (the host took the queue's lease for this node) until it releases it.
2. **Asking.** An upgrade for a queue not served here waits while the host is asked once per
   queue (``Locate``); the upgrades that arrive meanwhile wait for the same answer. Adopted:
   they are accepted. Served by another node: they are relayed there. Failed: refused (503).
3. **One lease, one deadline.** The node's lease covers every queue it serves and runs until
   ``lease_until`` on the shell's monotonic clock; the host moves it with each renewal
   (``renewed``), measured from before the renewal was sent, so it ends no later than the
   database's. Once ``now`` passes it, every queue is released: another node may take them as
   soon as the database's clock says the lease is over, and two nodes must never serve a queue
   at once.
4. **Releasing** (the deadline passed, the host lost the lease, a write was fenced off): the
   queue's state is forgotten and its connections are closed; clients reconnect and reach the
   node that serves it next. A write already out with the store may still hold the queue: the
   queue is *draining* until that write is decided, and is not asked for again before, so a
   new lease never starts while an old write for the queue is in flight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from .access import EVERYTHING, Action, Caller
from .actions import Locate
from .connection import UpgradeRequest

__all__ = ["RELAY_HEADER", "Placement", "Waiting", "relayed"]

#: The header a relaying node adds to the upgrade it forwards (protocol §10.3).
RELAY_HEADER: Final = b"jackrabbit-relay"


def relayed(request: UpgradeRequest) -> bool:
    """Whether another node relayed ``request`` here (its proof was checked at the door)."""
    return any(name == RELAY_HEADER for name, _ in request.headers)


@dataclass(frozen=True, slots=True)
class Waiting:
    """An upgrade waiting to hear where its queue is served."""

    conn: int
    request: UpgradeRequest
    subprotocol: str | None
    #: What the connection may do on the queue, and who it is (protocol §11.5).
    allowed: frozenset[Action] = EVERYTHING
    caller: Caller | None = None


class Placement:
    """The queues this node serves, the upgrades waiting for one, the lease's deadline."""

    __slots__ = ("_asked", "_draining", "_lease_until", "_out", "_served", "_waiting", "clustered")

    def __init__(self, clustered: bool) -> None:
        self.clustered = clustered
        self._served: set[str] = set()
        #: Upgrades waiting per queue, in arrival order.
        self._waiting: dict[str, list[Waiting]] = {}
        #: Queues with a ``Locate`` out.
        self._asked: set[str] = set()
        #: Released queues a write in flight still holds (rule 4).
        self._draining: set[str] = set()
        self._lease_until = -math.inf
        self._out: list[Locate] = []

    def outputs(self) -> list[Locate]:
        """What to ask the host, in order, since the last call."""
        out, self._out = self._out, []
        return out

    @property
    def served(self) -> set[str]:
        """The queues this node serves in a cluster (read-only use)."""
        return self._served

    def serves(self, queue: str) -> bool:
        """Whether connections for ``queue`` are accepted here now (rule 1)."""
        return not self.clustered or queue in self._served

    def wait(self, waiting: Waiting, queue: str) -> None:
        """An upgrade for ``queue``, not served here, waits for the host's answer (rule 2)."""
        self._waiting.setdefault(queue, []).append(waiting)
        self._ask(queue)

    def adopted(self, queue: str, lease_until: float) -> list[Waiting]:
        """This node serves ``queue`` from now on: the upgrades that waited for it."""
        self._asked.discard(queue)
        self._served.add(queue)
        self.renewed(lease_until)
        return self._waiting.pop(queue, [])

    def answered(self, queue: str) -> list[Waiting]:
        """``queue`` is served elsewhere, or could not be located: the upgrades that waited."""
        self._asked.discard(queue)
        return self._waiting.pop(queue, [])

    def renewed(self, lease_until: float) -> None:
        """The lease runs until ``lease_until`` now (rule 3)."""
        self._lease_until = max(self._lease_until, lease_until)

    def release(self, queues: set[str], draining: set[str]) -> set[str]:
        """Stop serving ``queues`` (rule 4); ``draining`` are those a write in flight holds.
        Returns the ones that were served."""
        released = queues & self._served
        self._served -= released
        self._draining |= draining & released
        if not self._served:
            self._lease_until = -math.inf
        return released

    def drained(self, queues: set[str]) -> None:
        """The write that held ``queues`` is decided: ask for those with upgrades waiting."""
        self._draining -= queues
        for queue in queues:
            if queue in self._waiting:
                self._ask(queue)

    def expired(self, now: float) -> set[str]:
        """Every served queue once the lease's deadline has passed (rule 3), else none."""
        if self._served and now >= self._lease_until:
            return set(self._served)
        return set()

    def deadline(self) -> float | None:
        """When the lease ends, while something is served."""
        return self._lease_until if self._served else None

    def _ask(self, queue: str) -> None:
        if queue in self._asked or queue in self._draining:
            return
        self._asked.add(queue)
        self._out.append(Locate(queue))
