"""The front door: plain HTTP answers and the admission of upgrades (protocol §1.2-§1.4, §11).

Every request that is not yet a WebSocket stops here first. Plain requests are answered
(``/healthz``, ``/metrics``, ``/api/cluster`` in cluster mode, 404, 405, 426); an upgrade is
admitted to a queue, or refused with a status: over capacity or shutting down (503), no such
queue path (404), refused by the authentication hook (a relay's proof, §10.3), an ``Origin`` not
allowed (403), no or invalid credentials (401) or no grant on the queue (403).

Access control (protocol §11) is decided here once per request, with the ``AccessPolicy`` the
server was given (none without ``--auth``): an admitted upgrade carries what its caller may do
on its queue, which the facade caches for the connection's commands. Refusals are counted per
reason and reported to the ``Audit`` callable; invalid credentials slow their address down
(``penalties``): its requests wait in ``_held`` until their time comes.

Nothing here outlives the request, except a ``/metrics`` body being rendered a slice per turn
for the scrapes waiting on it, the ``/api/cluster`` question out to the host, and the
requests held back from slowed addresses.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from . import routes
from .access import (
    EVERYTHING,
    OPEN,
    AccessPolicy,
    Action,
    Audit,
    Caller,
    Denial,
    Failure,
)
from .actions import ClusterStatus
from .connection import HttpRequest, UpgradeRequest
from .exceptions import InvalidState
from .http1 import Headers
from .metrics import Counters, Exposition, QueueState
from .penalties import MAX_HELD, Penalties, address_key

__all__ = [
    "MAX_INQUIRIES",
    "MAX_SCRAPES",
    "SCRAPE_STEP",
    "Admit",
    "Authenticator",
    "FrontDoor",
    "Hold",
    "Refusal",
    "Remote",
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

Request = HttpRequest | UpgradeRequest


@dataclass(frozen=True, slots=True)
class Remote:
    """Where a connection comes from, as its shell saw it at ``connect`` (protocol §11.3)."""

    #: The peer's IP address (no port): what failures are counted under and logs show.
    address: str
    #: The subject of the client certificate the TLS layer verified, if one was presented.
    subject: str | None = None


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
    #: What the connection may do on ``queue`` (protocol §11.5).
    allowed: frozenset[Action] = EVERYTHING
    #: Who it is, with ``--auth``.
    caller: Caller | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """An authentication hook's answer that refuses an upgrade (protocol §1.4)."""

    status: int  #: 401 or 403
    reason: str


#: The authentication hook (protocol §1.4): sees every upgrade request before access control
#: (§11) does; returns None to let it through or a ``Refusal``. A cluster's nodes check relay
#: proofs with it (§11.3); None is configured otherwise.
Authenticator = Callable[[UpgradeRequest], Refusal | None]


@dataclass(frozen=True, slots=True)
class Hold:
    """Answer later: the request comes from an address being slowed down (protocol §11.7).
    ``FrontDoor.release`` hands it back when its time comes."""


_METRICS_TYPE: Final = b"text/plain; version=0.0.4"
_HOLD: Final = Hold()


class FrontDoor:
    """Answers plain HTTP requests and admits upgrades (see the module docstring)."""

    __slots__ = (
        "_audit",
        "_authenticate",
        "_clustered",
        "_counters",
        "_exposition",
        "_held",
        "_held_by",
        "_inquiry",
        "_order",
        "_origins",
        "_out",
        "_penalties",
        "_queues",
        "_scrapers",
        "_tickets",
        "access",
        "shutting_down",
    )

    def __init__(
        self,
        counters: Counters,
        queues: Callable[[], Sequence[tuple[str, QueueState]]],
        *,
        access: AccessPolicy | None = None,
        origins: Iterable[str] = (),
        audit: Audit | None = None,
        authenticate: Authenticator | None = None,
        clustered: bool = False,
        tickets: Callable[[], int] | None = None,
    ) -> None:
        self._counters = counters
        #: Every queue's state, by name, when a view of them is asked for.
        self._queues = queues
        #: The access policy (``--auth``); None lets everyone do everything (protocol §11.1).
        self.access = access
        #: The ``--allow-origin`` values; empty: any origin (protocol §11.8).
        self._origins = frozenset(_normal_origin(origin) for origin in origins)
        self._audit = audit
        self._authenticate = authenticate
        #: Set by the server's shutdown: every request is answered 503 from then on.
        self.shutting_down = False
        self._exposition: Exposition | None = None
        self._scrapers: list[int] = []
        self._penalties = Penalties()
        #: Requests of slowed addresses: (when to answer, order, conn, request, remote).
        self._held: list[tuple[float, int, int, Request, Remote]] = []
        self._held_by: dict[str, int] = {}
        self._order = itertools.count()
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

    # -- plain requests -------------------------------------------------------------------

    def request(
        self,
        conn: int,
        request: HttpRequest,
        over_capacity: bool,
        open_connections: int,
        remote: Remote,
        now: float,
        *,
        released: bool = False,
    ) -> Reply | Hold | None:
        """A plain request: the reply, ``Hold``, or None when it waits for the ``/metrics``
        body. ``released``: it was held and its time has come."""
        path = routes.path_of(request.target)
        if over_capacity or self.shutting_down:
            return Reply(503, b"too many connections\n")
        cluster = path == routes.CLUSTER_PATH and self._clustered
        if cluster or path in (routes.HEALTH_PATH, routes.METRICS_PATH):
            if request.method not in ("GET", "HEAD"):
                return Reply(405, b"method not allowed\n", headers=((b"allow", b"GET, HEAD"),))
            if path == routes.HEALTH_PATH:
                return Reply(200, b"ok\n")
            if self.access is not None:
                if not released and (held := self._slowed(conn, request, remote, now)):
                    return held
                caller = self.who(request.headers, remote, now)
                if isinstance(caller, Reply):
                    return caller
                if not caller.may_anywhere("admin"):
                    message = f"{path} needs an admin grant"
                    return self._refused(caller.policy.refuse(caller, message), remote, None, now)
            return self._inquire(conn) if cluster else self._scrape(conn, open_connections)
        if routes.queue_for(request.target) is not None:
            return Reply(426, b"use a WebSocket upgrade\n", headers=((b"upgrade", b"websocket"),))
        return Reply(404, b"not found\n")

    def who(self, headers: Headers, remote: Remote, now: float) -> Caller | Reply:
        """Who a plain HTTP request comes from: the way for an endpoint that decides per
        queue to ask "may this caller do ACTION on QUEUE" (``caller.may(action, queue)``;
        the admin endpoints ask it with ``admin``, protocol §11.4).

        Without ``--auth`` the caller may do everything. Invalid credentials get the ``401``
        reply to send instead (counted, reported, and slowing their address down).
        """
        policy = self.access
        if policy is None:
            return Caller(OPEN, OPEN.anonymous, None)
        caller = policy.identify(headers, (), remote.subject)
        if isinstance(caller, Failure):
            return self._refused(caller, remote, None, now)
        return caller

    # -- upgrades -------------------------------------------------------------------------

    def upgrade(
        self,
        conn: int,
        request: UpgradeRequest,
        over_capacity: bool,
        remote: Remote,
        now: float,
        *,
        released: bool = False,
    ) -> Admit | Reply | Hold:
        """An upgrade request: admitted to its queue with what it may do there, refused with
        a status, or held (``released``: it was, and its time has come)."""
        if over_capacity or self.shutting_down:
            return Reply(503, b"too many connections\n")
        queue = routes.queue_for(request.target)
        if queue is None:
            return Reply(404, b"no such queue path\n")
        if self._authenticate is not None:
            refusal = self._authenticate(request)
            if refusal is not None:
                return Reply(refusal.status, refusal.reason.encode() + b"\n")
        if self._origins and not self._origin_allowed(request.headers):
            failure = Failure(403, "origin", "this Origin is not allowed")
            return self._refused(failure, remote, queue, now)
        # A browser that offered subprotocols fails the handshake unless one is chosen; a
        # bearer token offered as one is never echoed (protocol §1.3).
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in request.subprotocols else None
        policy = self.access
        if policy is None:
            return Admit(queue, subprotocol)
        if not released and (held := self._slowed(conn, request, remote, now)):
            return held
        identified = policy.identify(request.headers, request.subprotocols, remote.subject)
        verdict = policy.admit(identified, queue)
        if isinstance(verdict, Failure):
            return self._refused(verdict, remote, queue, now)
        caller, allowed = verdict
        return Admit(queue, subprotocol, allowed, caller)

    def _origin_allowed(self, headers: Headers) -> bool:
        """No ``Origin`` (not a browser), or every one given is listed (protocol §11.8)."""
        return all(
            _normal_origin(value.decode("latin-1")) in self._origins
            for name, value in headers
            if name == b"origin"
        )

    # -- refusals and slowed addresses (protocol §11.6, §11.7) -----------------------------

    def denied(self, denial: Denial) -> None:
        """Count a refusal and report it to the audit (the facade's per-command refusals
        and revocations come through here too)."""
        self._counters.auth_failures[denial.reason] += 1
        if self._audit is not None:
            self._audit(denial)

    def _refused(self, failure: Failure, remote: Remote, queue: str | None, now: float) -> Reply:
        if failure.reason == "invalid_credentials":
            self._penalties.failed(remote.address, now)
        self.denied(
            Denial(failure.reason, remote.address, failure.principal, queue, failure.message)
        )
        body = f"{failure.message}\n".encode()
        return Reply(failure.status, body, headers=failure.headers)

    def _slowed(
        self, conn: int, request: Request, remote: Remote, now: float
    ) -> Hold | Reply | None:
        """Hold the request if its address is being slowed down; 429 if it already has
        ``MAX_HELD`` requests waiting."""
        delay = self._penalties.delay(remote.address, now)
        if delay <= 0:
            return None
        key = address_key(remote.address)
        waiting = self._held_by.get(key, 0)
        if waiting >= MAX_HELD:
            return Reply(429, b"too many failed attempts: slow down\n", headers=_RETRY_AFTER)
        self._held_by[key] = waiting + 1
        heapq.heappush(self._held, (now + delay, next(self._order), conn, request, remote))
        return _HOLD

    def release(self, now: float) -> list[tuple[int, Request, Remote]]:
        """The held requests whose time has come: answer each again with ``released``."""
        due: list[tuple[int, Request, Remote]] = []
        held = self._held
        while held and held[0][0] <= now:
            _, _, conn, request, remote = heapq.heappop(held)
            key = address_key(remote.address)
            left = self._held_by.pop(key) - 1
            if left:
                self._held_by[key] = left
            due.append((conn, request, remote))
        return due

    def deadline(self) -> float | None:
        """When the next held request is due (``release``), if any is held."""
        return self._held[0][0] if self._held else None

    # -- /metrics -------------------------------------------------------------------------

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

    # -- /api/cluster ---------------------------------------------------------------------

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


_RETRY_AFTER: Final = ((b"retry-after", b"5"),)


def _normal_origin(origin: str) -> str:
    """An origin as compared: lowercase, without a trailing slash (RFC 6454 §6.2)."""
    return origin.strip().lower().rstrip("/")
