"""The front door: plain HTTP answers and the admission of upgrades (protocol §1.2-§1.4).

Every request that is not yet a WebSocket stops here first. Plain requests are answered
(``/healthz``, ``/metrics``, 404, 405, 426); an upgrade is admitted to a queue, or refused with
a status: over capacity or shutting down (503), no such queue path (404), or refused by the
authentication hook (401/403). Nothing here outlives the request, except a ``/metrics`` body
being rendered a slice per turn for the scrapes waiting on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from . import routes
from .actions import ClusterStatus
from .connection import HttpRequest, UpgradeRequest
from .exceptions import InvalidState
from .metrics import Counters, Exposition, QueueState

__all__ = [
    "MAX_INQUIRIES",
    "MAX_SCRAPES",
    "SCRAPE_STEP",
    "Admit",
    "Authenticator",
    "FrontDoor",
    "Refusal",
    "Reply",
]

#: Queues rendered into a ``/metrics`` body per turn (a few milliseconds), and scrapes that may
#: wait for one body at a time; more get 503 (protocol §1.2).
SCRAPE_STEP: Final = 1000
MAX_SCRAPES: Final = 8
#: The subprotocol naming protocol v1, chosen when a client offers it (protocol §1.3).
SUBPROTOCOL: Final = "jackrabbit.v1"
#: Requests that may wait for one ``/api/cluster`` answer at a time; more get 503.
MAX_INQUIRIES: Final = 8

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the HTTP request with this, then close."""

    status: int
    body: bytes
    content_type: bytes = b"text/plain; charset=utf-8"
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Admit:
    """Accept the upgrade: the connection serves ``queue``, answering with ``subprotocol``."""

    queue: str
    subprotocol: str | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """An authenticator's answer that refuses an upgrade (protocol §1.4)."""

    status: int  #: 401 or 403
    reason: str


#: The authentication hook (protocol §1.4): sees every upgrade request before it is accepted;
#: returns None to let it through or a ``Refusal``. None is configured by default.
Authenticator = Callable[[UpgradeRequest], Refusal | None]

_METRICS_TYPE: Final = b"text/plain; version=0.0.4"


class FrontDoor:
    """Answers plain HTTP requests and admits upgrades (see the module docstring)."""

    __slots__ = (
        "_authenticate",
        "_clustered",
        "_counters",
        "_exposition",
        "_inquiry",
        "_out",
        "_queues",
        "_scrapers",
        "_tickets",
        "shutting_down",
    )

    def __init__(
        self,
        counters: Counters,
        authenticate: Authenticator | None,
        queues: Callable[[], Sequence[tuple[str, QueueState]]],
        *,
        clustered: bool = False,
        tickets: Callable[[], int] | None = None,
    ) -> None:
        self._counters = counters
        self._authenticate = authenticate
        #: Every queue's state, by name, when a view of them is asked for.
        self._queues = queues
        #: Set by the server's shutdown: every request is answered 503 from then on.
        self.shutting_down = False
        self._exposition: Exposition | None = None
        self._scrapers: list[int] = []
        self._clustered = clustered
        self._tickets = tickets
        #: The ``ClusterStatus`` out and the requests waiting for its answer.
        self._inquiry: tuple[int, list[int]] | None = None
        self._out: list[ClusterStatus] = []

    def outputs(self) -> list[ClusterStatus]:
        """What to ask the host since the last call."""
        out, self._out = self._out, []
        return out

    @property
    def busy(self) -> bool:
        """A ``/metrics`` body is being rendered: call ``step`` on the next turn."""
        return self._exposition is not None

    def request(
        self, conn: int, request: HttpRequest, over_capacity: bool, open_connections: int
    ) -> Reply | None:
        """A plain request: the reply, or None when it waits for the ``/metrics`` body."""
        path = routes.path_of(request.target)
        if over_capacity or self.shutting_down:
            return Reply(503, b"too many connections\n")
        if path in (routes.HEALTH_PATH, routes.METRICS_PATH):
            if request.method not in ("GET", "HEAD"):
                return Reply(405, b"method not allowed\n", headers=((b"allow", b"GET, HEAD"),))
            if path == routes.HEALTH_PATH:
                return Reply(200, b"ok\n")
            return self._scrape(conn, open_connections)
        if path == routes.CLUSTER_PATH and self._clustered:
            if request.method not in ("GET", "HEAD"):
                return Reply(405, b"method not allowed\n", headers=((b"allow", b"GET, HEAD"),))
            return self._inquire(conn)
        if routes.queue_for(request.target) is not None:
            return Reply(426, b"use a WebSocket upgrade\n", headers=((b"upgrade", b"websocket"),))
        return Reply(404, b"not found\n")

    def upgrade(self, request: UpgradeRequest, over_capacity: bool) -> Admit | Reply:
        """An upgrade request: admitted to its queue, or refused with a status."""
        if over_capacity or self.shutting_down:
            return Reply(503, b"too many connections\n")
        queue = routes.queue_for(request.target)
        if queue is None:
            return Reply(404, b"no such queue path\n")
        if self._authenticate is not None:
            refusal = self._authenticate(request)
            if refusal is not None:
                return Reply(refusal.status, refusal.reason.encode() + b"\n")
        # A browser that offered subprotocols fails the handshake unless one is chosen; a
        # bearer token offered as one is never echoed (protocol §1.3).
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in request.subprotocols else None
        return Admit(queue, subprotocol)

    def step(self) -> tuple[list[int], Reply] | None:
        """Render the next slice of the ``/metrics`` body; once it is whole, the scrapes
        waiting for it and the reply they all get."""
        exposition = self._exposition
        body = None if exposition is None else exposition.step(SCRAPE_STEP)
        if body is None:
            return None
        self._exposition = None
        scrapers, self._scrapers = self._scrapers, []
        return scrapers, Reply(200, body, _METRICS_TYPE)

    def answered(self, ticket: int, body: bytes | None) -> tuple[list[int], Reply]:
        """The host's answer to ``ClusterStatus`` ``ticket``: the requests waiting for it and
        the reply they all get (503 when the host could not describe the cluster)."""
        inquiry = self._inquiry
        if inquiry is None or inquiry[0] != ticket:
            return [], Reply(503, b"")
        self._inquiry = None
        if body is None:
            return inquiry[1], Reply(503, b"cluster status unavailable\n")
        return inquiry[1], Reply(200, body, b"application/json")

    def _inquire(self, conn: int) -> Reply | None:
        """``GET /api/cluster``: one question to the host at a time, shared by the requests
        that come while it is out."""
        inquiry = self._inquiry
        if inquiry is None:
            if self._tickets is None:
                raise InvalidState("a clustered front door needs tickets")
            inquiry = self._inquiry = (self._tickets(), [])
            self._out.append(ClusterStatus(inquiry[0]))
        elif len(inquiry[1]) >= MAX_INQUIRIES:
            return Reply(503, b"too many cluster requests at once\n")
        inquiry[1].append(conn)
        return None

    def _scrape(self, conn: int, open_connections: int) -> Reply | None:
        if len(self._scrapers) >= MAX_SCRAPES:
            return Reply(503, b"too many scrapes at once\n")
        self._scrapers.append(conn)
        if self._exposition is None:
            self._exposition = Exposition(self._counters, open_connections, self._queues())
        return None
